//! Quota-aware delivery: every CRM request takes a slot of its connection's rate budget,
//! shared by every worker process (the database, or Redis when the queue is Redis), so two
//! processes together stay under HubSpot's limit; the limit is learned from HubSpot's headers;
//! and a `Retry-After` holds every process until it has passed.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{
    Pipeline, TestApp, WorkerProcess, charge_event, each_backend, each_backend_with,
};

/// The api takes webhooks and sweeps; the worker processes each test starts run the flows.
const NO_EMBEDDED_WORKER: &[(&str, &str)] = &[
    ("TRIBUTARY_EMBEDDED_WORKER", "false"),
    ("TRIBUTARY_SWEEP_INTERVAL", "200ms"),
];

async fn hubspot(app: &TestApp, fake: &FakeHubSpot, settings: Value) -> Pipeline {
    let mut settings = settings;
    settings["base_url"] = json!(fake.base_url);
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": settings
        }))
        .await;
    // A create per event: upserts by email would share batch calls (tests/api/batching.rs),
    // and these tests count requests against the limit.
    let flow = json!({
        "name": "Contacts", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "create", "object": "contacts",
                   "fields": {"email": "{{ object.billing_details.email }}",
                              "firstname": "{{ object.billing_details.name }}"}}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

/// Sends `n` charges at once and waits until each is processed; their emails.
async fn burst(app: &TestApp, p: &Pipeline, tag: &str, n: usize) -> Vec<String> {
    app.charges_processed(p, tag, "budget.example", n, std::time::Duration::ZERO)
        .await
}

/// Every email written once to the fake.
fn assert_written_once(fake: &FakeHubSpot, emails: &[String]) {
    let mut written: Vec<String> = fake
        .records("contacts")
        .iter()
        .map(|r| {
            r.properties["email"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    written.sort();
    let mut expected = emails.to_vec();
    expected.sort();
    assert_eq!(written, expected);
}

#[tokio::test]
async fn two_worker_processes_share_one_budget_and_stay_under_the_limit() {
    each_backend_with(NO_EMBEDDED_WORKER, |app| async move {
        let fake = FakeHubSpot::start();
        // HubSpot at 6 requests per rolling 3 s, and the connection told so. Each process
        // alone would keep to it; two pacing on their own would send twice as fast.
        fake.set_rate_limits(6, 3_000, 250_000);
        let p = hubspot(
            &app,
            &fake,
            json!({"rate_limit": {"requests": 6, "per_seconds": 3}}),
        )
        .await;
        let first = WorkerProcess::start(app.settings.clone());
        let second = WorkerProcess::start(app.settings.clone());
        let emails = burst(&app, &p, "shared", 12).await;
        first.kill();
        second.kill();

        assert_written_once(&fake, &emails);
        let log = fake.log.all();
        let refused: Vec<_> = log.iter().filter(|l| l.status == 429).collect();
        assert!(refused.is_empty(), "429s: {refused:?}");
        // One create per event, 12 in all at under 2 a second (two processes pacing on their
        // own would send them in 3).
        assert_eq!(log.len(), 12, "{log:?}");
        let span = log.last().unwrap().at - log.first().unwrap().at;
        assert!(
            span >= chrono::Duration::seconds(5),
            "12 requests in {span}"
        );

        // The connection's budget shows the limit it keeps to.
        let shown = app
            .get(
                &format!("/v1/connections/{}/rate-limit", p.connection_id),
                &p.tenant.token,
            )
            .await;
        let limit = &shown.body;
        assert_eq!(
            (
                limit["requests"].clone(),
                limit["per_seconds"].clone(),
                limit["source"].clone()
            ),
            (json!(6), json!(3.0), json!("setting")),
            "{}",
            shown.text
        );
        assert!(limit["held_until"].is_null(), "{limit}");
    })
    .await;
}

#[tokio::test]
async fn the_limit_is_learned_from_hubspots_headers() {
    each_backend_with(NO_EMBEDDED_WORKER, |app| async move {
        let fake = FakeHubSpot::start();
        fake.set_rate_limits(6, 3_000, 250_000);
        // No setting: HubSpot's default (100 per 10 s) until its headers say 6 per 3 s.
        let p = hubspot(&app, &fake, json!({})).await;
        let path = format!("/v1/connections/{}/rate-limit", p.connection_id);
        let before = app.get(&path, &p.tenant.token).await;
        assert_eq!(
            (
                before.body["requests"].clone(),
                before.body["source"].clone()
            ),
            (json!(100), json!("default")),
            "{}",
            before.text
        );
        let first = WorkerProcess::start(app.settings.clone());
        let second = WorkerProcess::start(app.settings.clone());
        let emails = burst(&app, &p, "learned", 8).await;
        first.kill();
        second.kill();

        assert_written_once(&fake, &emails);
        // Once the first answer has taught the limit, no 429 after the first interval.
        let log = fake.log.all();
        let start = log.first().unwrap().at;
        let late: Vec<_> = log
            .iter()
            .filter(|l| l.status == 429 && l.at - start > chrono::Duration::milliseconds(3_500))
            .collect();
        assert!(late.is_empty(), "429s after the first interval: {late:?}");
        assert_eq!(fake.early_requests(), 0);
        let after = app.get(&path, &p.tenant.token).await;
        let limit = &after.body;
        assert_eq!(
            (
                limit["requests"].clone(),
                limit["per_seconds"].clone(),
                limit["source"].clone()
            ),
            (json!(6), json!(3.0), json!("learned")),
            "{}",
            after.text
        );
    })
    .await;
}

#[tokio::test]
async fn a_retry_after_holds_every_process_until_it_has_passed() {
    each_backend_with(NO_EMBEDDED_WORKER, |app| async move {
        let fake = FakeHubSpot::start();
        let p = hubspot(
            &app,
            &fake,
            json!({"rate_limit": {"requests": 10, "per_seconds": 1}}),
        )
        .await;
        let first = WorkerProcess::start(app.settings.clone());
        let second = WorkerProcess::start(app.settings.clone());
        // The first request is answered 429, Retry-After: 2; requests the other process had
        // already lined up must wait too.
        fake.throttle(1, 2);
        let emails = burst(&app, &p, "held", 6).await;
        first.kill();
        second.kill();

        assert_written_once(&fake, &emails);
        assert_eq!(fake.early_requests(), 0, "{:?}", fake.log.all());
        let log = fake.log.all();
        // After the 429, only requests already on their way came before its Retry-After ran out.
        let refused = log.iter().find(|l| l.status == 429).expect("the 429").at;
        let early: Vec<_> = log
            .iter()
            .filter(|l| {
                let after = l.at - refused;
                after > chrono::Duration::milliseconds(250)
                    && after < chrono::Duration::milliseconds(1_950)
            })
            .collect();
        assert!(
            early.is_empty(),
            "requests inside Retry-After: 2: {early:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn one_tenants_backlog_takes_nothing_of_anothers_budget() {
    each_backend(|app| async move {
        // Tenant A's HubSpot allows two requests a second, and A has a backlog of 12.
        let slow = FakeHubSpot::start();
        let a = hubspot(
            &app,
            &slow,
            json!({"rate_limit": {"requests": 2, "per_seconds": 1}}),
        )
        .await;
        let fast = FakeHubSpot::start();
        let b = hubspot(&app, &fast, json!({})).await;
        assert_ne!(a.tenant.id, b.tenant.id);
        let now = chrono::Utc::now().timestamp();
        let mut backlog = Vec::new();
        for i in 0..12 {
            let event = charge_event(
                &format!("evt_a{i}"),
                &format!("ch_a{i}"),
                &format!("a{i}@budget.example"),
                "A",
                100,
                now,
            );
            let sent = app.send_event(&a, &event).await;
            assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
            backlog.push(sent.str("/event_id"));
        }
        // B's event goes through its own budget and the job slots A's share leaves free.
        let started = std::time::Instant::now();
        let event = charge_event("evt_b", "ch_b", "b@budget.example", "B", 100, now);
        let done = app.deliver(&b, &event).await;
        let took = started.elapsed();
        assert_eq!(done["status"], "processed", "{done}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "B waited {took:?} behind A's backlog"
        );
        assert!(
            slow.records("contacts").len() < 12,
            "A's backlog was still waiting for its budget"
        );
        for id in backlog {
            let finished = app.finished_event(&a.tenant.token, &id).await;
            assert_eq!(finished["status"], "processed", "{finished}");
        }
        assert_eq!(slow.records("contacts").len(), 12);
        let refused: Vec<_> = slow
            .log
            .all()
            .into_iter()
            .filter(|l| l.status == 429)
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
    })
    .await;
}
