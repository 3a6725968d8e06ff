//! Salesforce refuses every new request while an org has its limit of long-running requests
//! in flight (25; 5 on Developer Edition). A connection's requests at once are held to
//! `max_concurrent_requests` across every worker process, so two processes together never
//! have more out; and a refusal for the limit (other apps' requests) holds every process for
//! seconds instead of pausing the connection for an hour as a spent daily allocation does.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::salesforce::FakeSalesforce;
use tributary_tests::{Pipeline, TestApp, WorkerProcess, charge_event, each_backend_with};

/// The api takes webhooks and sweeps; the worker processes each test starts run the flows.
const NO_EMBEDDED_WORKER: &[(&str, &str)] = &[
    ("TRIBUTARY_EMBEDDED_WORKER", "false"),
    ("TRIBUTARY_SWEEP_INTERVAL", "200ms"),
];

async fn salesforce(app: &TestApp, fake: &FakeSalesforce, settings: Value) -> Pipeline {
    let p = app.salesforce_pipeline(fake, settings).await;
    let flow = json!({
        "name": "Contacts", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "create", "object": "Contact",
                   "fields": {"Email": "{{ object.billing_details.email }}",
                              "LastName": "{{ object.billing_details.name }}"}}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

fn contact_emails(fake: &FakeSalesforce) -> Vec<String> {
    let mut emails: Vec<String> = fake
        .records("Contact")
        .iter()
        .filter_map(|r| r.get("Email").and_then(Value::as_str).map(str::to_string))
        .collect();
    emails.sort();
    emails
}

#[tokio::test]
async fn two_worker_processes_never_have_more_requests_out_than_the_org_allows() {
    each_backend_with(NO_EMBEDDED_WORKER, |app| async move {
        let fake = FakeSalesforce::start();
        // On the test's clock: a request counts as long-running after 100 ms, each answer
        // takes 500 ms, and two long ones at once are the org's limit. Each process alone
        // keeping to two would still let the pair have four out.
        fake.limit_long_requests(2, Duration::from_millis(100), Duration::from_millis(500));
        let p = salesforce(&app, &fake, json!({"max_concurrent_requests": 2})).await;
        let path = format!("/v1/connections/{}/rate-limit", p.connection_id);
        let shown = app.get(&path, &p.tenant.token).await;
        assert_eq!(
            (
                shown.body["max_concurrent_requests"].clone(),
                shown.body["requests_in_flight"].clone()
            ),
            (json!(2), json!(0)),
            "{}",
            shown.text
        );

        let first = WorkerProcess::start(app.settings.clone());
        let second = WorkerProcess::start(app.settings.clone());
        // Sent 50 ms apart, so new requests keep arriving while earlier ones run long.
        let mut emails = app
            .charges_processed(
                &p,
                "long",
                "concurrent.example",
                8,
                Duration::from_millis(50),
            )
            .await;
        first.kill();
        second.kill();

        emails.sort();
        assert_eq!(contact_emails(&fake), emails, "every contact once");
        assert_eq!(fake.concurrency_refusals(), 0, "{:?}", fake.log.all());
        assert!(fake.most_at_once() <= 2, "{} at once", fake.most_at_once());
        // The won stage (read for every flow's templates) is asked once a process, not once
        // an event.
        let stage_queries = fake
            .log
            .all()
            .iter()
            .filter(|l| l.path.contains("OpportunityStage"))
            .count();
        assert!(
            (1..=2).contains(&stage_queries),
            "{stage_queries} won-stage queries"
        );
        // Every lease was given back.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let shown = app.get(&path, &p.tenant.token).await;
            if shown.body["requests_in_flight"] == json!(0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{}", shown.text);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_refusal_for_other_apps_long_requests_holds_seconds_not_an_hour() {
    each_backend_with(NO_EMBEDDED_WORKER, |app| async move {
        let fake = FakeSalesforce::start();
        let p = salesforce(&app, &fake, json!({})).await;
        let worker = WorkerProcess::start(app.settings.clone());
        // The org's other apps hold every long-running request when the first event comes.
        fake.limit_long_requests(0, Duration::ZERO, Duration::ZERO);
        let now = chrono::Utc::now().timestamp();
        let event = charge_event(
            "evt_held",
            "ch_held",
            "held@concurrent.example",
            "Ada",
            100,
            now,
        );
        let sent = app.send_event(&p, &event).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let event_id = sent.str("/event_id");
        // Refused, and the delivery waits a few seconds, not an hour.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while fake.concurrency_refusals() == 0 {
            assert!(std::time::Instant::now() < deadline, "never sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing more is sent for a while: every process holds off the connection.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(fake.concurrency_refusals(), 1, "{:?}", fake.log.all());
        let connection = app
            .get(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
            )
            .await;
        // Paused until the hold ends, seconds away (a spent daily allocation pauses an hour).
        let paused = connection.body["paused_until"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        assert!(
            paused.is_none_or(|t| t < chrono::Utc::now() + chrono::Duration::seconds(30)),
            "{}",
            connection.text
        );
        let held = app
            .get(
                &format!("/v1/connections/{}/rate-limit", p.connection_id),
                &p.tenant.token,
            )
            .await;
        assert!(
            !held.body["held_until"].is_null(),
            "{} {:?}",
            held.text,
            fake.log.all()
        );
        // Some of them end; the event goes through once the hold has passed (an hour's pause
        // would outlast the wait for it).
        fake.limit_long_requests(25, Duration::from_secs(20), Duration::ZERO);
        let done = app.finished_event(&p.tenant.token, &event_id).await;
        worker.kill();
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            contact_emails(&fake),
            vec!["held@concurrent.example".to_string()]
        );
        assert_eq!(fake.concurrency_refusals(), 1, "{:?}", fake.log.all());
    })
    .await;
}
