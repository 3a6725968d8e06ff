//! Acting on many events at once, end to end through signed webhooks on every backend: bulk
//! retry of dead letters once the CRM is fixed, bulk replay within the limit, and a bulk replay
//! that never sends a write in flight again.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::held::HeldCrm;
use tributary_tests::{Pipeline, TestApp, each_backend, each_backend_with, wait_for};

use super::event_search::{charge, deliver, now, unique};

/// A flow whose `contact` step succeeds and whose `deal` step creates a record, the write a
/// second send would double.
fn deal_flow(connection_id: &str, name: &str, object: &str) -> Value {
    json!({
        "name": name, "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ object.billing_details.email | lower }}"},
             "fields": {"lastname": "{{ object.billing_details.name | last_name }}"}},
            {"id": "deal", "action": "create", "object": object,
             "fields": {"stripe_charge_id": "{{ object.id }}"}}
        ]
    })
}

async fn create_flow(app: &TestApp, p: &Pipeline, flow: Value) -> String {
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/id")
}

async fn dead(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let reply = app
        .get(
            &format!("/v1/deliveries?status=dead&limit=100{query}"),
            token,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().unwrap().clone()
}

async fn fix_crm(app: &TestApp, p: &Pipeline, settings: Value) {
    let fixed = app
        .patch(
            &format!("/v1/connections/{}", p.connection_id),
            &p.tenant.token,
            json!({"settings": settings}),
        )
        .await;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
}

/// Polls the job until it has finished; returns it.
async fn finished_job(app: &TestApp, token: &str, job_id: &str) -> Value {
    wait_for(20, "the bulk job to finish", || async move {
        let job = app.get(&format!("/v1/bulk-jobs/{job_id}"), token).await;
        assert_eq!(job.status, StatusCode::OK, "{}", job.text);
        matches!(job.body["status"].as_str(), Some("done" | "failed")).then_some(job.body)
    })
    .await
}

/// The `stripe_charge_id` of every record of `object`, sorted.
async fn charges_recorded(app: &TestApp, p: &Pipeline, object: &str) -> Vec<String> {
    let mut charges: Vec<String> = app
        .records(&p.tenant.token, &p.connection_id, object)
        .await
        .iter()
        .map(|r| {
            r["fields"]["stripe_charge_id"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    charges.sort();
    charges
}

/// Puts a finished job back as running in another process (`true`), or finishes it again.
async fn hold_job(app: &TestApp, job_id: &str, running: bool) {
    use entity::bulk_jobs;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    let job = bulk_jobs::Entity::find_by_id(job_id.to_string())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    bulk_jobs::Entity::update_many()
        .set(bulk_jobs::ActiveModel {
            status: Set(if running { "running" } else { "done" }.into()),
            active_tenant_id: Set(running.then(|| job.tenant_id.clone())),
            lease_until: Set(running.then(|| chrono::Utc::now() + chrono::Duration::hours(1))),
            ..Default::default()
        })
        .filter(bulk_jobs::Column::Id.eq(job_id))
        .exec(&app.db)
        .await
        .unwrap();
}

/// Sets up a deals flow and a tickets flow and delivers three charges whose deals and tickets
/// all die; returns the two flows' ids and the events' ids.
async fn three_charges_with_dead_deals_and_tickets(
    app: &TestApp,
    p: &Pipeline,
) -> (String, String, Vec<String>) {
    let deals = create_flow(app, p, deal_flow(&p.connection_id, "Deals", "deals")).await;
    let tickets = create_flow(app, p, deal_flow(&p.connection_id, "Tickets", "tickets")).await;
    let mut events = Vec::new();
    for n in 1..=3 {
        let event = charge(
            &unique("evt"),
            &format!("ch_bulk{n}"),
            "cus_B",
            &format!("b{n}@x.co"),
        );
        events.push(deliver(app, p, &event).await);
    }
    assert_eq!(
        dead(app, &p.tenant.token, "").await.len(),
        6,
        "a deal and a ticket per event"
    );
    (deals, tickets, events)
}

/// Checks a member may not retry and bad filters are refused; returns the member's token.
async fn check_member_and_bad_filters_are_refused(
    app: &TestApp,
    p: &Pipeline,
    deals: &str,
) -> String {
    let token = &p.tenant.token;
    // A member reads but does not act.
    let (_, member) = app.user_with_role(&p.tenant, "member").await;
    app.post("/v1/deliveries/retry", &member, json!({"flow_id": deals}))
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    // Filters that name nothing of the tenant's, or nothing valid, are refused.
    for (body, field) in [
        (json!({"status": "succeeded"}), "status"),
        (json!({"flow_id": "no-such-flow"}), "flow_id"),
        (
            json!({"connection_id": "no-such-connection"}),
            "connection_id",
        ),
        (json!({"created_gte": 20, "created_lt": 10}), "created_lt"),
        (json!({"status": "dead", "flow": deals}), "flow"),
    ] {
        let reply = app.post("/v1/deliveries/retry", token, body.clone()).await;
        assert_eq!(
            reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec![field.to_string()],
            "{body}"
        );
    }
    member
}

/// Fixes deals in the CRM, retries the dead deals in bulk and checks the finished job;
/// returns the job's id.
async fn retry_the_deals_once_fixed(app: &TestApp, p: &Pipeline, deals: &str) -> String {
    let token = &p.tenant.token;
    // Deals work again; tickets still fail.
    fix_crm(
        app,
        p,
        json!({"simulate_failure": {"tickets": "transient"}}),
    )
    .await;
    let accepted = app
        .post(
            "/v1/deliveries/retry",
            token,
            json!({"status": "dead", "flow_id": deals, "event_type": "charge.succeeded",
                   "created_gte": now() - 3600}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
    assert_eq!(accepted.body["count"], 3, "{}", accepted.text);
    let job_id = accepted.str("/job_id");
    let job = finished_job(app, token, &job_id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["kind"], "delivery_retry", "{job}");
    assert_eq!(
        (
            job["total"].clone(),
            job["done"].clone(),
            job["failed"].clone()
        ),
        (json!(3), json!(3), json!(0)),
        "{job}"
    );
    assert!(job["finished_at"].is_string(), "{job}");
    assert_eq!(job["filter"]["flow_id"], json!(deals), "{job}");
    assert_eq!(job["failures"], json!([]), "{job}");
    job_id
}

/// Checks every retried deal reached the CRM exactly once and the tickets stayed dead.
async fn check_each_deal_recorded_once(
    app: &TestApp,
    p: &Pipeline,
    deals: &str,
    tickets: &str,
    events: &[String],
) {
    let token = &p.tenant.token;
    let deals_recorded = wait_for(20, "three deals", || async move {
        let charges = charges_recorded(app, p, "deals").await;
        (charges.len() >= 3).then_some(charges)
    })
    .await;
    assert_eq!(deals_recorded, vec!["ch_bulk1", "ch_bulk2", "ch_bulk3"]);
    for event in events {
        app.finished_event(token, event).await;
    }
    let of_deals = app
        .get(&format!("/v1/deliveries?flow_id={deals}&limit=100"), token)
        .await;
    let statuses: Vec<&str> = of_deals.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded"; 6], "{}", of_deals.text);
    assert_eq!(
        charges_recorded(app, p, "deals").await.len(),
        3,
        "no duplicate"
    );
    assert_eq!(
        app.records(token, &p.connection_id, "contacts").await.len(),
        3
    );
    // The other flow's dead letters were not part of it.
    let left = dead(app, token, "").await;
    assert_eq!(left.len(), 3);
    assert!(
        left.iter().all(|d| d["flow_id"] == json!(tickets)),
        "{left:?}"
    );
}

/// Checks a second job is refused while one runs, and a retry with nothing to do is done
/// at once.
async fn check_running_job_blocks_and_empty_retry_is_done(
    app: &TestApp,
    token: &str,
    job_id: &str,
    deals: &str,
    tickets: &str,
) {
    // While a job is running (here: held by another process, its lease far ahead), a
    // second one is refused, naming it.
    hold_job(app, job_id, true).await;
    let second = app
        .post("/v1/deliveries/retry", token, json!({"flow_id": tickets}))
        .await;
    second.assert_problem(StatusCode::CONFLICT);
    assert!(second.text.contains(job_id), "{}", second.text);
    hold_job(app, job_id, false).await;

    // Nothing left to retry for that flow: a job with nothing to do, done at once.
    let again = app
        .post("/v1/deliveries/retry", token, json!({"flow_id": deals}))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(
        (again.body["count"].clone(), again.body["status"].clone()),
        (json!(0), json!("done"))
    );
}

/// Checks the member sees the tenant's jobs and another tenant sees and touches none of them.
async fn check_jobs_stay_in_their_tenant(app: &TestApp, token: &str, member: &str, job_id: &str) {
    let listed = app.get("/v1/bulk-jobs", member).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        2,
        "{}",
        listed.text
    );
    assert_eq!(listed.body["data"][1]["id"], json!(job_id), "newest first");
    let stranger = app.pipeline(json!({})).await;
    app.get(&format!("/v1/bulk-jobs/{job_id}"), &stranger.tenant.token)
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let theirs = app
        .post("/v1/deliveries/retry", &stranger.tenant.token, json!({}))
        .await;
    assert_eq!(theirs.body["count"], 0, "{}", theirs.text);
    assert_eq!(dead(app, token, "").await.len(), 3);
    let their_list = app.get("/v1/bulk-jobs", &stranger.tenant.token).await;
    assert_eq!(their_list.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn dead_letters_are_retried_in_bulk_once_the_crm_is_fixed() {
    each_backend(|app| async move {
        let p = app
            .pipeline(json!({"simulate_failure": {"deals": "transient", "tickets": "transient"}}))
            .await;
        let token = &p.tenant.token;
        let (deals, tickets, events) = three_charges_with_dead_deals_and_tickets(&app, &p).await;
        let member = check_member_and_bad_filters_are_refused(&app, &p, &deals).await;
        let job_id = retry_the_deals_once_fixed(&app, &p, &deals).await;

        // Every retried deal reaches the CRM exactly once.
        check_each_deal_recorded_once(&app, &p, &deals, &tickets, &events).await;
        check_running_job_blocks_and_empty_retry_is_done(&app, token, &job_id, &deals, &tickets)
            .await;

        // The member sees the jobs; another tenant sees none of them and touches nothing here.
        check_jobs_stay_in_their_tenant(&app, token, &member, &job_id).await;
    })
    .await;
}

#[tokio::test]
async fn events_are_replayed_in_bulk_within_the_limit() {
    each_backend_with(&[("TRIBUTARY_MAX_BULK_ITEMS", "2")], |app| async move {
        let app = &app;
        let p = app
            .pipeline(json!({"simulate_failure": {"deals": "transient"}}))
            .await;
        let token = &p.tenant.token;
        create_flow(app, &p, deal_flow(&p.connection_id, "Deals", "deals")).await;
        let mut events = Vec::new();
        for (n, customer) in [(1, "cus_Replay"), (2, "cus_Replay"), (3, "cus_Else")] {
            let event = charge(
                &unique("evt"),
                &format!("ch_r{n}"),
                customer,
                &format!("r{n}@x.co"),
            );
            events.push(deliver(app, &p, &event).await);
        }

        // Three matches are more than this installation's limit of two.
        for (path, body) in [
            ("/v1/events/replay", json!({"status": "failed"})),
            ("/v1/deliveries/retry", json!({})),
        ] {
            let reply = app.post(path, token, body).await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                vec!["body".to_string()],
                "{path}"
            );
            assert!(reply.text.contains("narrow the filter"), "{}", reply.text);
        }
        let (_, member) = app.user_with_role(&p.tenant, "member").await;
        app.post(
            "/v1/events/replay",
            &member,
            json!({"search": "cus_Replay"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        app.post("/v1/events/replay", token, json!({"search": "cus Replay"}))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);

        fix_crm(app, &p, json!({})).await;
        let accepted = app
            .post(
                "/v1/events/replay",
                token,
                json!({"search": "cus_Replay", "status": "failed"}),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
        assert_eq!(accepted.body["count"], 2, "{}", accepted.text);
        let job = finished_job(app, token, &accepted.str("/job_id")).await;
        assert_eq!(
            (
                job["status"].clone(),
                job["kind"].clone(),
                job["done"].clone()
            ),
            (json!("done"), json!("event_replay"), json!(2)),
            "{job}"
        );

        for event in &events[..2] {
            let done = wait_for(20, "the replayed event", || async move {
                let e = app.finished_event(token, event).await;
                (e["status"] == "processed").then_some(e)
            })
            .await;
            assert_eq!(done["status"], "processed");
        }
        assert_eq!(
            charges_recorded(app, &p, "deals").await,
            vec!["ch_r1", "ch_r2"]
        );
        let other = app.get(&format!("/v1/events/{}", events[2]), token).await;
        assert_eq!(other.body["status"], "failed", "not matched, not replayed");
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            3
        );
    })
    .await;
}

#[tokio::test]
async fn a_bulk_replay_never_sends_a_write_that_is_in_flight_again() {
    each_backend(|app| async move {
        let crm = HeldCrm::start(201);
        let p = app
            .pipeline_with(json!({"name": "Held CRM", "provider": "http",
                "auth": {"type": "token", "token": "t"},
                "settings": {"base_url": crm.base_url(), "timeout_seconds": 60}}))
            .await;
        let token = &p.tenant.token;
        let flow = json!({
            "name": "Create", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "record", "action": "create", "object": "records",
                       "fields": {"charge": "{{ object.id }}"}}]
        });
        create_flow(&app, &p, flow).await;
        let event = charge(&unique("evt"), "ch_inflight", "cus_H", "h@x.co");
        let event_id = app.send_event(&p, &event).await.str("/event_id");
        wait_for(20, "the CRM call", || {
            let calls = crm.calls();
            async move { (calls == 1).then_some(()) }
        })
        .await;

        let accepted = app
            .post(
                "/v1/events/replay",
                token,
                json!({"search": "ch_inflight", "force": true}),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
        assert_eq!(accepted.body["count"], 1);
        let job = finished_job(&app, token, &accepted.str("/job_id")).await;
        assert_eq!(
            (job["done"].clone(), job["failed"].clone()),
            (json!(0), json!(1)),
            "{job}"
        );
        assert_eq!(job["failures"][0]["id"], json!(event_id), "{job}");
        assert!(
            job["failures"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("right now"),
            "{job}"
        );

        crm.release();
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
        assert_eq!(crm.calls(), 1, "the CRM received the write once");
    })
    .await;
}
