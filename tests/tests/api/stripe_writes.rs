//! Flows write to Stripe (`stripe.create`, `stripe.update`) against the fake Stripe, which
//! sends back, signed, the events its writes cause: each write is made once whatever the
//! retries and replays (an `Idempotency-Key` per delivery), the event Tributary's own write
//! caused is recorded and skipped, a change made in the Dashboard is not.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::stripe::FakeStripe;
use tributary_tests::{Backend, Pipeline, TestApp, backends, wait_for};

async fn spawn(backend: Backend, fake: &FakeStripe) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str())],
    )
    .await
}

/// A tenant whose Stripe account is wired to the fake Stripe, both ways.
async fn wired(app: &TestApp, fake: &FakeStripe) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    app.connect_fake_stripe(&p, fake).await;
    p
}

async fn events_of_type(app: &TestApp, token: &str, kind: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?type={kind}"), token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

async fn flow(app: &TestApp, token: &str, flow: Value) -> String {
    let created = app.post("/v1/flows", token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/id")
}

fn customer_updates(fake: &FakeStripe, id: &str) -> Vec<tributary_fakes::stripe::StripeLogged> {
    fake.stripe_requests()
        .into_iter()
        .filter(|r| r.request.method == "POST" && r.request.path == format!("/v1/customers/{id}"))
        .collect()
}

#[tokio::test]
async fn a_flow_tags_the_stripe_customer_once_and_its_own_echo_runs_nothing() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake).await;
        let p = wired(&app, &fake).await;
        let token = &p.tenant.token;
        // Seed 002: the CRM id goes into the Customer's metadata, so later events match by id.
        flow(&app, token, json!({
            "name": "Tag customers", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.created"]},
            "steps": [
                {"id": "contact", "action": "upsert", "object": "contacts",
                 "match": {"email": "{{ object.email }}"}, "fields": {"name": "{{ object.name }}"}},
                {"id": "tag", "action": "stripe.update", "object": "customer",
                 "record_id": "{{ object.id }}",
                 "fields": {"metadata": {"crm_contact_id": "{{ steps.contact.id }}"}}}]
        }))
        .await;
        flow(
            &app,
            token,
            json!({
                "name": "Mirror customer changes", "connection_id": p.connection_id,
                "trigger": {"events": ["customer.updated"]},
                "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                           "match": {"email": "{{ object.email }}"},
                           "fields": {"name": "{{ object.name }}"}}]
            }),
        )
        .await;

        fake.dashboard_create(json!({"id": "cus_w1", "object": "customer", "email": "ada@example.com",
            "name": "Ada Lovelace", "metadata": {}, "created": chrono::Utc::now().timestamp(), "livemode": false}));
        let created = wait_for(20, "customer.created stored", || async {
            let found = events_of_type(&app, token, "customer.created").await;
            found.first().cloned()
        })
        .await;
        let done = app
            .finished_event(token, created["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let tag = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "tag")
            .unwrap();
        assert_eq!(tag["status"], "succeeded", "{tag}");
        let contact_id = done["deliveries"][0]["crm_record_id"]
            .as_str()
            .unwrap()
            .to_string();
        let stored = fake.object("cus_w1").unwrap();
        assert_eq!(
            stored["metadata"]["crm_contact_id"],
            contact_id.as_str(),
            "{stored}"
        );

        // The write carried Tributary's key, so the update it caused is recorded, not run.
        let updates = customer_updates(&fake, "cus_w1");
        assert_eq!(updates.len(), 1);
        let key = updates[0].idempotency_key.clone().unwrap();
        assert!(key.starts_with("tributary-"), "{key}");
        let echo = wait_for(20, "the echo stored", || async {
            events_of_type(&app, token, "customer.updated")
                .await
                .first()
                .cloned()
        })
        .await;
        let echo = app
            .finished_event(token, echo["id"].as_str().unwrap())
            .await;
        assert_eq!(
            echo["status"], "ignored",
            "our own write's event runs no flow: {echo}"
        );

        // A replay does not write twice: the finished step is kept.
        let replay = app
            .post(
                &format!("/v1/events/{}/replay", created["id"].as_str().unwrap()),
                token,
                json!({}),
            )
            .await;
        assert!(replay.status.is_success(), "{}", replay.text);
        let again = app
            .finished_event(token, created["id"].as_str().unwrap())
            .await;
        assert_eq!(again["status"], "processed", "{again}");
        assert_eq!(
            customer_updates(&fake, "cus_w1").len(),
            1,
            "one write to Stripe in all"
        );

        // A change made in the Dashboard is not an echo: the mirror flow runs.
        fake.dashboard_update("cus_w1", json!({"name": "Ada King"}));
        let foreign = wait_for(20, "the Dashboard's update", || async {
            let all = events_of_type(&app, token, "customer.updated").await;
            (all.len() == 2).then(|| all[0].clone())
        })
        .await;
        let foreign = app
            .finished_event(token, foreign["id"].as_str().unwrap())
            .await;
        assert_eq!(foreign["status"], "processed", "{foreign}");
        let records = app.records(token, &p.connection_id, "contacts").await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["fields"]["name"], "Ada King", "{records:?}");
        drop(app);
        fake.stop().await;
    }
}

#[tokio::test]
async fn a_failed_payment_gets_a_customer_portal_link_and_bad_writes_are_named() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake).await;
        let p = wired(&app, &fake).await;
        let token = &p.tenant.token;

        let refused = app
            .post("/v1/flows", token, json!({"name": "Bad", "connection_id": p.connection_id,
                "trigger": {"events": ["invoice.payment_failed"]},
                "steps": [{"id": "s", "action": "stripe.create", "object": "refund", "fields": {"charge": "x"}},
                          {"id": "u", "action": "stripe.update", "object": "customer", "fields": {"name": "x"}}]}))
            .await;
        let mut fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(
            fields,
            ["steps[0].object", "steps[1].record_id"],
            "{}",
            refused.text
        );

        flow(&app, token, json!({
            "name": "Portal link on failed payments", "connection_id": p.connection_id,
            "trigger": {"events": ["invoice.payment_failed"]},
            "steps": [
                {"id": "portal", "action": "stripe.create", "object": "billing_portal.session",
                 "fields": {"customer": "{{ object.customer }}", "return_url": "https://example.com/account"}},
                {"id": "task", "action": "create", "object": "tasks",
                 "fields": {"subject": "Payment failed", "portal": "{{ steps.portal.object.url }}"}}]
        }))
        .await;
        fake.put(json!({"id": "cus_pf", "object": "customer", "email": "grace@example.com", "metadata": {}}));
        fake.send_event(FakeStripe::event(
            "invoice.payment_failed",
            json!({"id": "in_pf", "object": "invoice", "customer": "cus_pf", "amount_due": 4900,
                   "currency": "usd", "attempt_count": 1}),
            chrono::Utc::now().timestamp(),
        ));
        let failed = wait_for(20, "invoice.payment_failed stored", || async {
            events_of_type(&app, token, "invoice.payment_failed")
                .await
                .first()
                .cloned()
        })
        .await;
        let done = app
            .finished_event(token, failed["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let tasks = app.records(token, &p.connection_id, "tasks").await;
        let portal = tasks[0]["fields"]["portal"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sessions = fake.objects_of("billing_portal.session");
        assert_eq!(sessions.len(), 1, "{sessions:?}");
        assert_eq!(portal, sessions[0]["url"].as_str().unwrap(), "{tasks:?}");

        // A missing customer is Stripe's 400, named, and not retried.
        fake.send_event(FakeStripe::event(
            "invoice.payment_failed",
            json!({"id": "in_pf2", "object": "invoice", "customer": "cus_missing", "amount_due": 4900,
                   "currency": "usd", "attempt_count": 1}),
            chrono::Utc::now().timestamp(),
        ));
        let second = wait_for(20, "the second failure stored", || async {
            let all = events_of_type(&app, token, "invoice.payment_failed").await;
            (all.len() == 2).then(|| all[0].clone())
        })
        .await;
        let done = app
            .finished_event(token, second["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        let portal = &done["deliveries"][0];
        assert_eq!(portal["status"], "dead", "{portal}");
        let message = portal["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("customer"), "{message}");
        drop(app);
        fake.stop().await;
    }
}
