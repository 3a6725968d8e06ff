//! The event pipeline end to end: signed webhooks in, records in the sandbox CRM out, on every
//! database and queue backend.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::held::HeldCrm;
use tributary_tests::{
    Pipeline, TestApp, charge_event, each_backend, each_backend_with, stripe_signature, wait_for,
};

fn charge_flow(connection_id: &str) -> Value {
    json!({
        "name": "Paid charges to the sandbox",
        "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"], "filter": "object.currency == 'usd'"},
        "steps": [
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ object.billing_details.email | lower }}"},
             "fields": {"firstname": "{{ object.billing_details.name | first_name }}",
                        "lastname": "{{ object.billing_details.name | last_name }}",
                        "last_charge_amount": "{{ object.amount | major_units(object.currency) }}"}},
            {"id": "deal", "action": "upsert", "object": "deals",
             "match": {"stripe_charge_id": "{{ object.id }}"},
             "fields": {"dealname": "{{ object.metadata.deal_name | default('Stripe charge ' ~ object.id) }}",
                        "amount": "{{ object.amount | major_units(object.currency) }}",
                        "contact_id": "{{ steps.contact.id }}"}}
        ]
    })
}

async fn with_flow(app: &TestApp, settings: Value) -> Pipeline {
    let pipeline = app.pipeline(settings).await;
    let flow = app
        .post(
            "/v1/flows",
            &pipeline.tenant.token,
            charge_flow(&pipeline.connection_id),
        )
        .await;
    assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
    pipeline
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Creates the charge flow with an added `create` of a note: the sandbox never merges creates,
/// so only the engine keeps a replay from writing a second note.
async fn add_the_charge_flow_with_a_note(app: &TestApp, p: &Pipeline) {
    let mut flow = charge_flow(&p.connection_id);
    flow["steps"].as_array_mut().unwrap().push(json!(
        {"id": "note", "action": "create", "object": "notes",
         "fields": {"charge": "{{ object.id }}", "deal": "{{ steps.deal.id }}"}}
    ));
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// Sends the charge for the first time and checks its deliveries and the records it made;
/// returns Tributary's id for the event and the finished event.
async fn check_the_first_delivery(app: &TestApp, p: &Pipeline, event: &Value) -> (String, Value) {
    let token = &p.tenant.token;
    let first = app.send_event(p, event).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["received"], true);
    assert_eq!(first.body["duplicate"], false);
    assert_eq!(first.body["stripe_event_id"], "evt_1");
    let event_id = first.str("/event_id");

    let done = app.finished_event(token, &event_id).await;
    assert_eq!(done["status"], "processed", "{done}");
    let deliveries = done["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    for d in deliveries {
        assert_eq!(d["status"], "succeeded", "{d}");
        assert_eq!(d["flow_version"], 1);
        assert_eq!(d["attempts"], 1);
    }
    assert_eq!(done["payload"], *event, "the raw event is kept");

    let contacts = app.records(token, &p.connection_id, "contacts").await;
    assert_eq!(contacts.len(), 1);
    let contact = &contacts[0]["fields"];
    assert_eq!(contact["email"], "tony@stark.com");
    assert_eq!(contact["firstname"], "Tony");
    assert_eq!(contact["lastname"], "Stark");
    assert_eq!(contact["last_charge_amount"].as_f64(), Some(149.0));
    let deals = app.records(token, &p.connection_id, "deals").await;
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0]["fields"]["stripe_charge_id"], "ch_1");
    assert_eq!(deals[0]["fields"]["dealname"], "Stripe charge ch_1");
    assert_eq!(
        deals[0]["fields"]["contact_id"], contacts[0]["id"],
        "steps.contact.id links them"
    );
    (event_id, done)
}

/// Sends the same event twice more and checks both are duplicates, then checks a replay with
/// a mistyped option is refused.
async fn check_duplicates_and_a_mistyped_replay(
    app: &TestApp,
    p: &Pipeline,
    event: &Value,
    event_id: &str,
) {
    // The same event twice more: acknowledged as duplicates, never processed again.
    for _ in 0..2 {
        let again = app.send_event(p, event).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(again.str("/event_id"), event_id);
    }
    // A replay with a mistyped option is refused, not silently run without it.
    let typo = app
        .post(
            &format!("/v1/events/{event_id}/replay"),
            &p.tenant.token,
            json!({"forse": true}),
        )
        .await;
    assert_eq!(
        typo.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        vec!["forse"]
    );
}

/// Forces a replay and checks it re-ran the upserts but not the create, leaving one record
/// of each.
async fn check_a_forced_replay_skips_the_create(
    app: &TestApp,
    p: &Pipeline,
    event_id: &str,
    done: &Value,
) {
    let token = &p.tenant.token;
    assert_eq!(done["runs"], 1, "{done}");
    let replay = app
        .post(
            &format!("/v1/events/{event_id}/replay"),
            token,
            json!({"force": true}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
    let replayed = wait_for(20, "the forced replay's run to finish", || async {
        let e = app.get(&format!("/v1/events/{event_id}"), token).await;
        (e.body["status"] == "processed" && e.body["runs"].as_i64() >= Some(2)).then_some(e.body)
    })
    .await;
    let updated = |event: &Value, step: &str| {
        event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == step)
            .map(|d| d["updated_at"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {step} delivery in {event}"))
    };
    assert_ne!(
        updated(&replayed, "deal"),
        updated(done, "deal"),
        "the upsert ran again: {replayed}"
    );
    assert_eq!(
        updated(&replayed, "note"),
        updated(done, "note"),
        "the create did not: {replayed}"
    );
    assert_eq!(
        app.records(token, &p.connection_id, "contacts").await.len(),
        1
    );
    assert_eq!(app.records(token, &p.connection_id, "deals").await.len(), 1);
    assert_eq!(
        app.records(token, &p.connection_id, "notes").await.len(),
        1,
        "a forced replay never re-runs a create"
    );
}

/// Sends a second charge by the same person and one in another currency; checks the contact
/// is updated, a second deal appears and the other currency is ignored.
async fn check_a_second_charge_and_another_currency(app: &TestApp, p: &Pipeline) {
    let token = &p.tenant.token;
    // A second charge by the same person: the contact is updated, a second deal appears.
    let second = app
        .send_event(
            p,
            &charge_event("evt_2", "ch_2", "tony@stark.com", "Tony Stark", 5000, now()),
        )
        .await;
    app.finished_event(token, &second.str("/event_id")).await;
    let contacts = app.records(token, &p.connection_id, "contacts").await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0]["fields"]["last_charge_amount"].as_f64(),
        Some(50.0)
    );
    assert_eq!(app.records(token, &p.connection_id, "deals").await.len(), 2);

    // A charge in another currency does not pass the trigger filter.
    let mut eur = charge_event("evt_3", "ch_3", "x@example.com", "X", 100, now());
    eur["data"]["object"]["currency"] = json!("eur");
    let ignored = app.send_event(p, &eur).await;
    assert_eq!(
        app.finished_event(token, &ignored.str("/event_id")).await["status"],
        "ignored"
    );
}

#[tokio::test]
async fn a_signed_charge_becomes_sandbox_records_once() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        // The charge flow and a `create` of a note: the sandbox never merges creates, so only
        // the engine keeps a replay from writing a second note.
        add_the_charge_flow_with_a_note(&app, &p).await;
        let event = charge_event(
            "evt_1",
            "ch_1",
            "Tony@Stark.com",
            "Tony Stark",
            14900,
            now(),
        );

        let (event_id, done) = check_the_first_delivery(&app, &p, &event).await;
        check_duplicates_and_a_mistyped_replay(&app, &p, &event, &event_id).await;
        // A forced replay re-runs the upserts, never the create: once its run has finished,
        // still one contact, one deal, one note.
        check_a_forced_replay_skips_the_create(&app, &p, &event_id, &done).await;
        check_a_second_charge_and_another_currency(&app, &p).await;

        let listed = app
            .get("/v1/events?type=charge.succeeded&status=processed", token)
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    each_backend(|app| async move {
        let p = with_flow(&app, json!({})).await;
        let token = &p.tenant.token;
        let body = serde_json::to_vec(&charge_event(
            "evt_bad",
            "ch_bad",
            "a@b.co",
            "A B",
            100,
            now(),
        ))
        .unwrap();

        let wrong_secret = stripe_signature(&body, "whsec_not_the_secret", now());
        app.webhook(&p.webhook_path, &body, Some(&wrong_secret))
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
        let stale = stripe_signature(&body, &p.secret, now() - 301);
        let reply = app.webhook(&p.webhook_path, &body, Some(&stale)).await;
        reply.assert_problem(StatusCode::BAD_REQUEST);
        assert!(!reply.text.contains(&p.secret));
        app.webhook(&p.webhook_path, &body, None)
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
        app.webhook(&p.webhook_path, &body, Some("garbage"))
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
        let mut altered = body.clone();
        let signature = stripe_signature(&body, &p.secret, now());
        altered[10] ^= 1;
        app.webhook(&p.webhook_path, &altered, Some(&signature))
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
        app.webhook("/webhooks/stripe/no-such-token", &body, Some(&signature))
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        let huge = vec![b' '; 1024 * 1024 + 1];
        app.webhook(&p.webhook_path, &huge, Some(&signature))
            .await
            .assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
        let not_event = br#"{"hello": "world"}"#;
        let sig = stripe_signature(not_event, &p.secret, now());
        app.webhook(&p.webhook_path, not_event, Some(&sig))
            .await
            .assert_problem(StatusCode::BAD_REQUEST);

        let events = app.get("/v1/events", token).await;
        assert_eq!(
            events.body["data"].as_array().unwrap().len(),
            0,
            "nothing stored: {}",
            events.text
        );

        // The per-account tolerance is honoured.
        app.patch(
            &format!("/v1/stripe-accounts/{}", p.account_id),
            token,
            json!({"tolerance_seconds": 600}),
        )
        .await;
        let older = stripe_signature(&body, &p.secret, now() - 400);
        assert_eq!(
            app.webhook(&p.webhook_path, &body, Some(&older))
                .await
                .status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn rotated_signing_secrets_work_until_retired() {
    each_backend(|app| async move {
        let p = with_flow(&app, json!({})).await;
        let token = &p.tenant.token;
        let new_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let added = app
            .post(
                &format!("/v1/stripe-accounts/{}/webhook-secrets", p.account_id),
                token,
                json!({"secret": new_secret}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED);
        let account = app
            .get(&format!("/v1/stripe-accounts/{}", p.account_id), token)
            .await;
        let old_last4 = &p.secret[p.secret.len() - 4..];
        let old_id = account.body["webhook_secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["last4"] == old_last4)
            .expect("the original secret")["id"]
            .as_str()
            .unwrap()
            .to_string();

        let body = serde_json::to_vec(&charge_event(
            "evt_r1",
            "ch_r1",
            "r@x.co",
            "R X",
            100,
            now(),
        ))
        .unwrap();
        let with_old = stripe_signature(&body, &p.secret, now());
        let with_new = stripe_signature(&body, &new_secret, now());
        assert_eq!(
            app.webhook(&p.webhook_path, &body, Some(&with_old))
                .await
                .status,
            StatusCode::OK
        );
        // Stripe sends one v1 per active secret during a roll: any match is enough.
        let both = format!("{with_new},v1={}", with_old.split("v1=").nth(1).unwrap());
        assert_eq!(
            app.webhook(&p.webhook_path, &body, Some(&both))
                .await
                .status,
            StatusCode::OK
        );

        let retired = app
            .delete(
                &format!(
                    "/v1/stripe-accounts/{}/webhook-secrets/{old_id}",
                    p.account_id
                ),
                token,
            )
            .await;
        assert_eq!(retired.status, StatusCode::NO_CONTENT, "{}", retired.text);
        let body2 = serde_json::to_vec(&charge_event(
            "evt_r2",
            "ch_r2",
            "r@x.co",
            "R X",
            100,
            now(),
        ))
        .unwrap();
        app.webhook(
            &p.webhook_path,
            &body2,
            Some(&stripe_signature(&body2, &p.secret, now())),
        )
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
        assert_eq!(
            app.webhook(
                &p.webhook_path,
                &body2,
                Some(&stripe_signature(&body2, &new_secret, now()))
            )
            .await
            .status,
            StatusCode::OK
        );
    })
    .await;
}

fn subscription_event(id: &str, created: i64, status: &str) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created, "livemode": false,
        "type": "customer.subscription.updated", "request": "req_123",
        "data": {"object": {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
                 "items": {"data": [{"price": {"unit_amount": 99900, "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}, "quantity": 1}]}},
                 "previous_attributes": {"status": "trialing"}}
    })
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_one() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow = json!({
            "name": "Subscription status", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.subscription.*"]},
            "steps": [{"id": "account", "action": "upsert", "object": "accounts",
                       "match": {"stripe_customer_id": "{{ object.customer }}"},
                       "fields": {"subscription_status": "{{ object.status }}", "mrr": "{{ object | mrr }}"}}]
        });
        assert_eq!(app.post("/v1/flows", token, flow).await.status, StatusCode::CREATED);

        let newer = app.send_event(&p, &subscription_event("evt_new", 2_000_000_000, "past_due")).await;
        app.finished_event(token, &newer.str("/event_id")).await;
        let older = app.send_event(&p, &subscription_event("evt_old", 1_900_000_000, "active")).await;
        let done = app.finished_event(token, &older.str("/event_id")).await;
        let delivery = &done["deliveries"][0];
        assert_eq!(delivery["status"], "skipped", "{delivery}");
        assert_eq!(delivery["reason"], "stale");

        let accounts = app.records(token, &p.connection_id, "accounts").await;
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0]["fields"]["subscription_status"], "past_due");
        assert_eq!(accounts[0]["fields"]["mrr"].as_f64(), Some(999.0));
    })
    .await;
}

async fn account_status(app: &TestApp, token: &str, connection: &str) -> Value {
    let accounts = app.records(token, connection, "accounts").await;
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    accounts[0]["fields"]["subscription_status"].clone()
}

/// Stripe's `created` has one-second resolution: of two events of the same second, the one
/// applied first is kept unless the other comes later in the object's life (created → changed
/// → deleted), and the tie is recorded as a stale skip.
#[tokio::test]
async fn events_of_the_same_second_are_ordered_deterministically() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow = json!({
            "name": "Subscription status", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.subscription.*"]},
            "steps": [{"id": "account", "action": "upsert", "object": "accounts",
                       "match": {"stripe_customer_id": "{{ object.customer }}"},
                       "fields": {"subscription_status": "{{ object.status }}"}}]
        });
        assert_eq!(
            app.post("/v1/flows", token, flow).await.status,
            StatusCode::CREATED
        );
        let at = 2_000_000_000;

        // An update, then a creation of the same second that arrived late: the creation is
        // earlier in the subscription's life and must not overwrite the update.
        let mut updated = subscription_event("evt_t1", at, "active");
        let first = app.send_event(&p, &updated).await;
        app.finished_event(token, &first.str("/event_id")).await;
        let mut created = subscription_event("evt_t0", at, "incomplete");
        created["type"] = json!("customer.subscription.created");
        let late = app.send_event(&p, &created).await;
        let done = app.finished_event(token, &late.str("/event_id")).await;
        let delivery = &done["deliveries"][0];
        assert_eq!(delivery["status"], "skipped", "{delivery}");
        assert_eq!(delivery["reason"], "stale");
        assert!(
            delivery["warnings"][0]
                .as_str()
                .unwrap()
                .contains("same second"),
            "{delivery}"
        );
        assert_eq!(
            account_status(&app, token, &p.connection_id).await,
            "active"
        );

        // Two updates of the same second: the first applied is kept, the tie skipped.
        updated["id"] = json!("evt_t2");
        updated["data"]["object"]["status"] = json!("past_due");
        let tie = app.send_event(&p, &updated).await;
        let done = app.finished_event(token, &tie.str("/event_id")).await;
        assert_eq!(done["deliveries"][0]["reason"], "stale", "{done}");
        assert_eq!(
            account_status(&app, token, &p.connection_id).await,
            "active"
        );

        // An update whose previous_attributes are the applied values continues from it:
        // applied, whatever the second.
        let mut next = subscription_event("evt_t2b", at, "unpaid");
        next["data"]["previous_attributes"] = json!({"status": "active"});
        let after = app.send_event(&p, &next).await;
        let done = app.finished_event(token, &after.str("/event_id")).await;
        assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
        assert_eq!(
            account_status(&app, token, &p.connection_id).await,
            "unpaid"
        );

        // A deletion of the same second comes later in the object's life: applied.
        let mut deleted = subscription_event("evt_t3", at, "canceled");
        deleted["type"] = json!("customer.subscription.deleted");
        let end = app.send_event(&p, &deleted).await;
        let done = app.finished_event(token, &end.str("/event_id")).await;
        assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
        assert_eq!(
            account_status(&app, token, &p.connection_id).await,
            "canceled"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failing_step_retries_then_dead_letters_and_replays() {
    each_backend(|app| async move {
        let p = with_flow(&app, json!({"simulate_failure": {"deals": "transient"}})).await;
        let token = &p.tenant.token;
        let sent = app
            .send_event(
                &p,
                &charge_event("evt_f", "ch_f", "f@x.co", "F X", 700, now()),
            )
            .await;
        let event_id = sent.str("/event_id");
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "failed", "{done}");

        let dead = app.get("/v1/deliveries?status=dead", token).await;
        let dead = dead.body["data"].as_array().unwrap().clone();
        assert_eq!(dead.len(), 1);
        let delivery = &dead[0];
        assert_eq!(delivery["step"], "deal");
        assert_eq!(delivery["attempts"], 3, "TRIBUTARY_RETRY_MAX_ATTEMPTS");
        assert_eq!(delivery["error"]["kind"], "transient");
        assert_eq!(delivery["error"]["vendor_status"], 503);
        assert_eq!(delivery["reason"], "attempts_exhausted");
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            1,
            "the contact step succeeded"
        );

        // The CRM recovers; the dead letter is retried from the API.
        let fixed = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                token,
                json!({"settings": {}}),
            )
            .await;
        assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
        // The flow is edited before the retry: the retried step runs, and records, version 2.
        let flows = app.get("/v1/flows", token).await;
        let flow_id = flows.body["data"][0]["id"].as_str().unwrap().to_string();
        let mut edited = charge_flow(&p.connection_id);
        edited["name"] = json!("Paid charges, edited");
        let put = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/flows/{flow_id}"),
                Some(token),
                Some(edited),
            )
            .await;
        assert_eq!(put.body["version"], 2, "{}", put.text);
        let retry = app
            .post(
                &format!("/v1/deliveries/{}/retry", delivery["id"].as_str().unwrap()),
                token,
                json!({}),
            )
            .await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        let versions: Vec<(String, i64)> = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["step"].as_str().unwrap().to_string(),
                    d["flow_version"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            versions.contains(&("contact".into(), 1)) && versions.contains(&("deal".into(), 2)),
            "{versions:?}"
        );
        assert_eq!(app.records(token, &p.connection_id, "deals").await.len(), 1);
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            1,
            "the succeeded step did not run again"
        );
        let retry_again = app
            .post(
                &format!("/v1/deliveries/{}/retry", delivery["id"].as_str().unwrap()),
                token,
                json!({}),
            )
            .await;
        retry_again.assert_problem(StatusCode::CONFLICT);
    })
    .await;
}

/// A tenant whose CRM hangs takes every job slot its share allows (2 of the 4, the default
/// share being half), its other jobs wait their turn, and another tenant's event still
/// finishes within 5 s.
#[tokio::test]
async fn one_tenants_failures_do_not_hold_up_another() {
    each_backend_with(
        &[
            ("TRIBUTARY_WORKER_CONCURRENCY", "4"),
            ("TRIBUTARY_TENANT_MAX_IN_FLIGHT", "2"),
        ],
        |app| async move {
            let crm = HeldCrm::start(503);
            let failing = app
                .pipeline_with(json!({"name": "Hanging CRM", "provider": "http",
                    "auth": {"type": "token", "token": "t"},
                    "settings": {"base_url": crm.base_url(), "timeout_seconds": 60}}))
                .await;
            let flow = json!({
                "name": "Create", "connection_id": failing.connection_id,
                "trigger": {"events": ["charge.succeeded"]},
                "steps": [{"id": "record", "action": "create", "object": "records",
                           "fields": {"charge": "{{ object.id }}"}}]
            });
            let created = app.post("/v1/flows", &failing.tenant.token, flow).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let healthy = with_flow(&app, json!({})).await;
            for i in 0..8 {
                let sent = app
                    .send_event(
                        &failing,
                        &charge_event(
                            &format!("evt_x{i}"),
                            &format!("ch_x{i}"),
                            "x@x.co",
                            "X",
                            100,
                            now(),
                        ),
                    )
                    .await;
                assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
            }
            // The hanging tenant holds every slot its share allows.
            wait_for(20, "the hanging CRM to hold two calls", || {
                let calls = crm.calls();
                async move { (calls >= 2).then_some(()) }
            })
            .await;

            let started = std::time::Instant::now();
            let ok = app
                .send_event(
                    &healthy,
                    &charge_event("evt_ok", "ch_ok", "ok@x.co", "O K", 100, now()),
                )
                .await;
            let done = app
                .finished_event(&healthy.tenant.token, &ok.str("/event_id"))
                .await;
            let took = started.elapsed();
            assert_eq!(done["status"], "processed", "{done}");
            assert!(
                took < std::time::Duration::from_secs(5),
                "the healthy tenant's event took {took:?}"
            );
            assert_eq!(
                crm.calls(),
                2,
                "never more of one tenant's jobs at once than its share"
            );
            crm.release();
            crm.served.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_test_event_travels_the_whole_pipeline() {
    each_backend(|app| async move {
        let p = with_flow(&app, json!({})).await;
        let token = &p.tenant.token;
        let sent = app
            .post(
                &format!("/v1/stripe-accounts/{}/test-events", p.account_id),
                token,
                json!({"type": "charge.succeeded"}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        let done = app.finished_event(token, &sent.str("/event_id")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["type"], "charge.succeeded");
        let contacts = wait_for(5, "a contact", || async {
            let records = app.records(token, &p.connection_id, "contacts").await;
            (!records.is_empty()).then_some(records)
        })
        .await;
        assert!(
            contacts[0]["fields"]["email"]
                .as_str()
                .is_some_and(|e| e.contains('@'))
        );

        let unknown = app
            .post(
                &format!("/v1/stripe-accounts/{}/test-events", p.account_id),
                token,
                json!({"type": "made.up"}),
            )
            .await;
        assert_eq!(
            unknown.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["type"]
        );
    })
    .await;
}

#[tokio::test]
async fn the_readme_quickstart_lands_a_lead_in_the_sandbox() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let templates = app.get("/v1/flow-templates", token).await;
        let template = templates.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "sandbox-lead-from-checkout")
            .expect("the quickstart's template")
            .clone();
        let mut flow = template["flow"].clone();
        flow["connection_id"] = json!(p.connection_id);
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        let sent = app
            .post(
                &format!("/v1/stripe-accounts/{}/test-events", p.account_id),
                token,
                json!({"type": "checkout.session.completed"}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        let done = app.finished_event(token, &sent.str("/event_id")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let leads = app.records(token, &p.connection_id, "leads").await;
        assert_eq!(leads.len(), 1, "{leads:?}");
        assert!(
            leads[0]["fields"]["email"]
                .as_str()
                .is_some_and(|e| e.contains('@')),
            "{}",
            leads[0]
        );
    })
    .await;
}
