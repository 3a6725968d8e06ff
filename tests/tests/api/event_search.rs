//! Finding an event (by Stripe event id, Stripe object id, customer email, flow or
//! connection) and acting on many at once (bulk retry of dead letters, bulk replay), end to
//! end through signed webhooks, on every backend.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::held::HeldCrm;
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, each_backend_with, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A charge of `customer` paid by `email`.
fn charge(event_id: &str, charge_id: &str, customer: &str, email: &str) -> Value {
    let mut event = charge_event(event_id, charge_id, email, "Ada Lovelace", 1200, now());
    event["data"]["object"]["customer"] = json!(customer);
    event
}

/// A `customer.updated` event: no flow takes it, so it has no deliveries.
fn customer_updated(event_id: &str, customer: &str, email: &str) -> Value {
    json!({
        "id": event_id, "object": "event", "api_version": "2024-06-20", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": "customer.updated",
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {"id": customer, "object": "customer", "email": email,
                            "name": "Ada Lovelace"}}
    })
}

/// Sends `event` and waits until it has finished; returns Tributary's id for it.
async fn deliver(app: &TestApp, p: &Pipeline, event: &Value) -> String {
    let sent = app.send_event(p, event).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    let id = sent.str("/event_id");
    app.finished_event(&p.tenant.token, &id).await;
    id
}

/// The ids of the events `GET /v1/events?{query}` lists, sorted.
async fn found(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let reply = app
        .get(&format!("/v1/events?limit=100&{query}"), token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
    let mut ids: Vec<String> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn events_are_found_by_stripe_ids_customer_email_flow_and_connection() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow_id = app
            .contact_flow(
                &p,
                json!({"firstname": "{{ object.billing_details.name | first_name }}"}),
            )
            .await;
        let (evt_ada, evt_bob, evt_cus) = (unique("evt"), unique("evt"), unique("evt"));
        let ada_charge = deliver(
            &app,
            &p,
            &charge(&evt_ada, "ch_ada1", "cus_Ada9", "Ada@Example.com"),
        )
        .await;
        let bob_charge = deliver(
            &app,
            &p,
            &charge(&evt_bob, "ch_bob1", "cus_Bob7", "bob@example.com"),
        )
        .await;
        let ada_customer = deliver(
            &app,
            &p,
            &customer_updated(&evt_cus, "cus_Ada9", "ada@example.com"),
        )
        .await;

        // By Stripe event id, by the object's id, by an id the object points at.
        assert_eq!(
            found(&app, token, &format!("search={evt_ada}")).await,
            vec![ada_charge.clone()]
        );
        assert_eq!(
            found(&app, token, "search=ch_bob1").await,
            vec![bob_charge.clone()]
        );
        assert_eq!(
            found(&app, token, "search=cus_Ada9").await,
            sorted(&[&ada_charge, &ada_customer])
        );
        // Ids keep their case: Stripe's ids are case-sensitive.
        assert!(found(&app, token, "search=cus_ada9").await.is_empty());
        // By the customer's email, in any case, wherever the event carries it.
        assert_eq!(
            found(&app, token, "search=ADA%40example.COM").await,
            sorted(&[&ada_charge, &ada_customer])
        );
        // By where the events went: only charges have deliveries.
        assert_eq!(
            found(&app, token, &format!("flow_id={flow_id}")).await,
            sorted(&[&ada_charge, &bob_charge])
        );
        assert_eq!(
            found(&app, token, &format!("connection_id={}", p.connection_id)).await,
            sorted(&[&ada_charge, &bob_charge])
        );
        assert_eq!(
            found(&app, token, &format!("search=cus_Ada9&flow_id={flow_id}")).await,
            vec![ada_charge.clone()]
        );
        assert_eq!(
            found(&app, token, "search=cus_Ada9&type=customer.updated").await,
            vec![ada_customer.clone()]
        );
        assert!(found(&app, token, "search=ch_nobody").await.is_empty());

        // Another tenant, with a charge of the same id and the same email, finds only its own.
        let other = app.pipeline(json!({})).await;
        let theirs = deliver(
            &app,
            &other,
            &charge(&unique("evt"), "ch_ada1", "cus_Other", "ada@example.com"),
        )
        .await;
        let their_token = &other.tenant.token;
        assert_eq!(
            found(&app, their_token, "search=ch_ada1").await,
            vec![theirs.clone()]
        );
        assert_eq!(
            found(&app, their_token, "search=ada%40example.com").await,
            vec![theirs.clone()]
        );
        assert!(
            found(&app, their_token, &format!("search={evt_ada}"))
                .await
                .is_empty()
        );
        assert!(found(&app, their_token, "search=cus_Ada9").await.is_empty());
        assert!(
            found(&app, their_token, &format!("flow_id={flow_id}"))
                .await
                .is_empty()
        );
        assert_eq!(
            found(&app, token, "search=ch_ada1").await,
            vec![ada_charge.clone()]
        );

        // Bad searches are refused naming the field; nothing is listed.
        for (query, field) in [
            ("search=ada%20lovelace".to_string(), "search"),
            ("search=".to_string(), "search"),
            (format!("search={}", "x".repeat(321)), "search"),
            (format!("flow_id={}", "f".repeat(65)), "flow_id"),
            ("connection_id=".to_string(), "connection_id"),
        ] {
            let reply = app.get(&format!("/v1/events?{query}"), token).await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                vec![field.to_string()],
                "{query}"
            );
        }
        assert_eq!(
            found(&app, token, &format!("search={}", "x".repeat(320))).await,
            Vec::<String>::new()
        );

        // Erasing Ada forgets her email and what pointed at her; the events' own ids stay.
        let erased = app
            .post("/v1/erasures", token, json!({"email": "ada@example.com"}))
            .await;
        assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
        assert!(
            found(&app, token, "search=ada%40example.com")
                .await
                .is_empty()
        );
        assert_eq!(
            found(&app, token, "search=ch_ada1").await,
            vec![ada_charge.clone()]
        );
        assert_eq!(
            found(&app, token, "search=cus_Ada9").await,
            vec![ada_customer.clone()]
        );
        assert_eq!(
            found(&app, their_token, "search=ada%40example.com").await,
            vec![theirs],
            "an erasure stays in its tenant"
        );
    })
    .await;
}

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

#[tokio::test]
async fn dead_letters_are_retried_in_bulk_once_the_crm_is_fixed() {
    each_backend(|app| async move {
        let p = app
            .pipeline(json!({"simulate_failure": {"deals": "transient", "tickets": "transient"}}))
            .await;
        let token = &p.tenant.token;
        let deals = create_flow(&app, &p, deal_flow(&p.connection_id, "Deals", "deals")).await;
        let tickets =
            create_flow(&app, &p, deal_flow(&p.connection_id, "Tickets", "tickets")).await;
        let mut events = Vec::new();
        for n in 1..=3 {
            let event = charge(
                &unique("evt"),
                &format!("ch_bulk{n}"),
                "cus_B",
                &format!("b{n}@x.co"),
            );
            events.push(deliver(&app, &p, &event).await);
        }
        assert_eq!(
            dead(&app, token, "").await.len(),
            6,
            "a deal and a ticket per event"
        );

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

        // Deals work again; tickets still fail.
        fix_crm(
            &app,
            &p,
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
        let job = finished_job(&app, token, &job_id).await;
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

        // Every retried deal reaches the CRM exactly once.
        let deals_recorded = wait_for(20, "three deals", || {
            let (app, p) = (&app, &p);
            async move {
                let charges = charges_recorded(app, p, "deals").await;
                (charges.len() >= 3).then_some(charges)
            }
        })
        .await;
        assert_eq!(deals_recorded, vec!["ch_bulk1", "ch_bulk2", "ch_bulk3"]);
        for event in &events {
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
            charges_recorded(&app, &p, "deals").await.len(),
            3,
            "no duplicate"
        );
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            3
        );
        // The other flow's dead letters were not part of it.
        let left = dead(&app, token, "").await;
        assert_eq!(left.len(), 3);
        assert!(
            left.iter().all(|d| d["flow_id"] == json!(tickets)),
            "{left:?}"
        );

        // While a job is running (here: held by another process, its lease far ahead), a
        // second one is refused, naming it.
        hold_job(&app, &job_id, true).await;
        let second = app
            .post("/v1/deliveries/retry", token, json!({"flow_id": tickets}))
            .await;
        second.assert_problem(StatusCode::CONFLICT);
        assert!(second.text.contains(&job_id), "{}", second.text);
        hold_job(&app, &job_id, false).await;

        // Nothing left to retry for that flow: a job with nothing to do, done at once.
        let again = app
            .post("/v1/deliveries/retry", token, json!({"flow_id": deals}))
            .await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
        assert_eq!(
            (again.body["count"].clone(), again.body["status"].clone()),
            (json!(0), json!("done"))
        );

        // The member sees the jobs; another tenant sees none of them and touches nothing here.
        let listed = app.get("/v1/bulk-jobs", &member).await;
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
        assert_eq!(dead(&app, token, "").await.len(), 3);
        let their_list = app.get("/v1/bulk-jobs", &stranger.tenant.token).await;
        assert_eq!(their_list.body["data"].as_array().unwrap().len(), 1);
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

/// Events stored before the upgrade that added search are found too: the migration reads
/// every stored payload and writes its keys.
#[tokio::test]
async fn the_upgrade_indexes_events_already_stored() {
    use entity::{event_keys, events, tenants};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    use tributary_worker::{db, new_id, now as at};

    for backend in tributary_tests::backends() {
        if backend == tributary_tests::Backend::PostgresRedis {
            continue; // the same database as Postgres
        }
        let dir = tempfile::tempdir().unwrap();
        let database = tributary_tests::TestDatabase::create(backend, dir.path()).await;
        let conn = db::connect(&database.url).await.unwrap();
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261206_000012_event_search")
            .expect("the search migration is registered");
        Migrator::up(&conn, Some(before as u32)).await.unwrap();

        let tenant_id = new_id();
        tenants::Entity::insert(tenants::ActiveModel {
            id: Set(tenant_id.clone()),
            name: Set("Upgraded".into()),
            created_at: Set(at()),
            updated_at: Set(at()),
        })
        .exec(&conn)
        .await
        .unwrap();
        let mut stored = Vec::new();
        for (n, payload) in [
            charge("evt_Old1", "ch_Old1", "cus_Old", "Old@Example.com").to_string(),
            "not json".to_string(),
        ]
        .into_iter()
        .enumerate()
        {
            let id = new_id();
            events::Entity::insert(events::ActiveModel {
                id: Set(id.clone()),
                tenant_id: Set(tenant_id.clone()),
                stripe_account_id: Set("acct".into()),
                stripe_event_id: Set(format!("evt_old{n}")),
                event_type: Set("charge.succeeded".into()),
                stripe_object_id: Set(None),
                livemode: Set(false),
                api_version: Set(None),
                event_created: Set(1),
                payload: Set(payload),
                status: Set("processed".into()),
                runs: Set(1),
                next_run_at: Set(None),
                last_error: Set(None),
                received_at: Set(at()),
                queued_at: Set(None),
                processed_at: Set(None),
                updated_at: Set(at()),
                redacted_at: Set(None),
            })
            .exec(&conn)
            .await
            .unwrap();
            stored.push(id);
        }

        Migrator::up(&conn, None).await.unwrap();
        let mut keys: Vec<(String, String)> = event_keys::Entity::find()
            .filter(event_keys::Column::TenantId.eq(tenant_id.as_str()))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|k| {
                assert_eq!(
                    k.event_id, stored[0],
                    "{backend:?}: only the JSON one has keys"
                );
                (k.kind, k.value)
            })
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("email", "old@example.com"),
                ("event", "evt_Old1"),
                ("object", "ch_Old1"),
                ("related", "cus_Old"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
            "{backend:?}"
        );
        conn.close().await.ok();
        database.drop_now().await;
    }
}
