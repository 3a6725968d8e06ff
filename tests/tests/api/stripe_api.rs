//! Talking to Stripe, against the stateful fake in `tests/fakes`: enrichment steps and
//! refetch-on-apply, one-click webhook endpoints, backfill and reconciliation.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::stripe::{API_VERSION, FakeStripe, SECRET_KEY};
use tributary_tests::{
    Backend, Pipeline, Reply, TestApp, backends, metric, stripe_signature, wait_for,
};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn spawn(backend: Backend, fake: &FakeStripe, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str())];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(backend, &vars).await
}

/// A tenant with a sandbox connection and a Stripe account holding the fake's key, pinned to
/// the fake's API version.
async fn pipeline(app: &TestApp, key: &str) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    app.use_stripe_key(&p, key).await;
    p
}

fn charge(id: &str, customer: &str, created: i64) -> Value {
    json!({"id": id, "object": "charge", "amount": 4200, "currency": "usd", "customer": customer,
           "billing_details": {"email": null, "name": null}, "metadata": {"tier": "silver"},
           "created": created, "livemode": false, "status": "succeeded"})
}

fn customer(id: &str, email: &str) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Grace Hopper",
           "metadata": {}, "created": 1_700_000_000, "livemode": false})
}

fn enrich_flow(connection_id: &str, name: &str) -> Value {
    json!({"name": name, "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "customer", "action": "stripe.retrieve", "object": "customer",
             "record_id": "{{ object.customer }}"},
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ steps.customer.object.email }}"},
             "fields": {"name": "{{ steps.customer.object.name }}", "flow": name}}]})
}

#[tokio::test]
async fn a_charge_fills_the_contact_from_the_retrieved_customer() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[]).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app, SECRET_KEY).await;
        let token = &p.tenant.token;
        fake.put(customer("cus_enrich1", "grace@example.com"));
        // Two flows need the same customer: Stripe is asked once.
        for name in ["first", "second"] {
            let flow = app
                .post("/v1/flows", token, enrich_flow(&p.connection_id, name))
                .await;
            assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
        }
        fake.fail_next(1, 429);
        let event = FakeStripe::event(
            "charge.succeeded",
            charge("ch_enrich1", "cus_enrich1", now()),
            now(),
        );
        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        let retrieves: Vec<&Value> = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["step"] == "customer")
            .collect();
        assert_eq!(retrieves.len(), 2);
        for d in &retrieves {
            assert_eq!(d["action"], "stripe.retrieve");
            assert_eq!(d["status"], "succeeded");
            assert_eq!(d["crm_record_id"], "cus_enrich1");
            assert_eq!(d["attempts"], 1, "the 429 was retried inside the call");
        }
        let contacts = app.records(token, &p.connection_id, "contacts").await;
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(contacts[0]["fields"]["email"], "grace@example.com");
        assert_eq!(contacts[0]["fields"]["name"], "Grace Hopper");

        let gets: Vec<_> = fake
            .stripe_requests()
            .into_iter()
            .filter(|r| r.request.path.starts_with("/v1/customers/cus_enrich1"))
            .collect();
        assert_eq!(
            gets.iter().filter(|r| r.request.status == 200).count(),
            1,
            "one retrieval for both flows (after one 429): {gets:?}"
        );
        assert!(
            gets.iter()
                .all(|r| r.stripe_version.as_deref() == Some(API_VERSION)),
            "Stripe-Version is pinned to the account's"
        );
        assert!(
            gets.iter().all(|r| r.request.authorization.as_deref()
                == Some(format!("Bearer {SECRET_KEY}").as_str()))
        );
        fake.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_missing_object_or_permission_is_dead_with_what_to_fix() {
    for backend in tributary_tests::backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[]).await;
        let restricted = "rk_test_51TributaryRestrictedKey0000000000";
        fake.restrict(restricted, &["charge_read", "event_read"]);
        let p = pipeline(&app, restricted).await;
        let token = &p.tenant.token;
        fake.put(customer("cus_locked", "locked@example.com"));
        app.post("/v1/flows", token, enrich_flow(&p.connection_id, "locked"))
            .await;

        let denied = app
            .deliver(
                &p,
                &FakeStripe::event(
                    "charge.succeeded",
                    charge("ch_l1", "cus_locked", now()),
                    now(),
                ),
            )
            .await;
        assert_eq!(denied["status"], "failed", "{denied}");
        let step = &denied["deliveries"][0];
        assert_eq!(step["status"], "dead");
        assert_eq!(step["error"]["kind"], "permanent");
        assert_eq!(step["error"]["vendor_status"], 403);
        let message = step["error"]["message"].as_str().unwrap();
        assert!(message.contains("rak_customer_read"), "{message}");
        assert!(message.contains("lacks this permission"), "{message}");

        // A full key, but a customer Stripe does not have.
        app.patch(
            &format!("/v1/stripe-accounts/{}", p.account_id),
            token,
            json!({"secret_key": SECRET_KEY}),
        )
        .await;
        let missing = app
            .deliver(
                &p,
                &FakeStripe::event(
                    "charge.succeeded",
                    charge("ch_l2", "cus_nobody", now()),
                    now(),
                ),
            )
            .await;
        let step = &missing["deliveries"][0];
        assert_eq!(step["status"], "dead", "{missing}");
        assert_eq!(step["error"]["kind"], "not_found");
        assert!(
            step["error"]["message"]
                .as_str()
                .unwrap()
                .contains("No such customer: 'cus_nobody'")
        );
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            0
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn refetch_runs_the_flow_on_the_objects_current_state() {
    for backend in tributary_tests::backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[]).await;
        let p = pipeline(&app, SECRET_KEY).await;
        let token = &p.tenant.token;
        let mut current = charge("ch_refetch", "cus_r", now());
        current["metadata"]["tier"] = json!("gold");
        fake.put(current);
        let flow = json!({"name": "tiers", "connection_id": p.connection_id, "refetch": true,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "deal", "action": "upsert", "object": "deals",
                       "match": {"charge": "{{ object.id }}"}, "fields": {"tier": "{{ object.metadata.tier }}"}}]});
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        // The event's snapshot says silver; Stripe now says gold.
        let done = app
            .deliver(
                &p,
                &FakeStripe::event(
                    "charge.succeeded",
                    charge("ch_refetch", "cus_r", now()),
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let deals = app.records(token, &p.connection_id, "deals").await;
        assert_eq!(deals[0]["fields"]["tier"], "gold");
        let refetch = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "_refetch")
            .expect("the refetch is a delivery");
        assert_eq!(refetch["status"], "succeeded");
        assert_eq!(refetch["crm_record_id"], "ch_refetch");
        app.cleanup_handle().run().await;
    }
}

fn webhook_secret_count(account: &Value) -> usize {
    account["webhook_secrets"].as_array().unwrap().len()
}

/// Registers the webhook with no flow (refused), then twice after adding a flow; returns the
/// two successful replies.
async fn register_twice_after_a_flow(app: &TestApp, p: &Pipeline) -> (Reply, Reply) {
    let token = &p.tenant.token;
    let path = format!("/v1/stripe-accounts/{}/register-webhook", p.account_id);

    let none = app.post(&path, token, json!({})).await;
    none.assert_problem(StatusCode::CONFLICT);
    let flow = json!({"name": "subs", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded", "customer.subscription.*"]},
        "steps": [{"id": "n", "action": "create", "object": "notes", "fields": {"t": "{{ event.type }}"}}]});
    app.post("/v1/flows", token, flow).await;

    let first = app.post(&path, token, json!({})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let second = app.post(&path, token, json!({})).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    (first, second)
}

/// Checks Stripe holds one endpoint for the flows' events, and that deliveries signed with its
/// secret are accepted.
async fn check_one_endpoint_that_accepts_its_deliveries(
    app: &TestApp,
    fake: &FakeStripe,
    p: &Pipeline,
    first: &Reply,
    second: &Reply,
) {
    let endpoints = fake.webhook_endpoints();
    assert_eq!(endpoints.len(), 1, "one endpoint: {endpoints:?}");
    let endpoint = &endpoints[0];
    assert_eq!(endpoint["url"], first.str("/webhook_url"));
    assert_eq!(endpoint["api_version"], API_VERSION);
    let mut enabled: Vec<String> = endpoint["enabled_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    enabled.sort();
    assert!(enabled.contains(&"charge.succeeded".to_string()));
    for t in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ] {
        assert!(enabled.contains(&t.to_string()), "{t} in {enabled:?}");
    }
    assert!(
        enabled
            .iter()
            .all(|e| e == "charge.succeeded" || e.starts_with("customer.subscription."))
    );
    assert_eq!(second.body["webhook_endpoint"]["id"], endpoint["id"]);
    assert_eq!(
        webhook_secret_count(&second.body),
        2,
        "the new endpoint's secret is kept beside the first"
    );

    // Stripe's deliveries, signed with the endpoint's secret, are accepted.
    let secret = endpoint["secret"].as_str().unwrap();
    let body = serde_json::to_vec(&FakeStripe::event(
        "charge.succeeded",
        charge("ch_reg", "cus_reg", now()),
        now(),
    ))
    .unwrap();
    let accepted = app
        .webhook(
            &p.webhook_path,
            &body,
            Some(&stripe_signature(&body, secret, now())),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
}

/// Adds a flow for a new event type and checks the one endpoint gains it by itself.
async fn check_a_new_flow_reaches_the_endpoint(app: &TestApp, fake: &FakeStripe, p: &Pipeline) {
    let invoices = json!({"name": "invoices", "connection_id": p.connection_id,
        "trigger": {"events": ["invoice.paid"]},
        "steps": [{"id": "n", "action": "create", "object": "notes", "fields": {"t": "{{ event.type }}"}}]});
    app.post("/v1/flows", &p.tenant.token, invoices).await;
    wait_for(10, "the endpoint to gain invoice.paid", || async {
        let endpoints = fake.webhook_endpoints();
        endpoints[0]["enabled_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "invoice.paid")
            .then_some(())
    })
    .await;
    assert_eq!(fake.webhook_endpoints().len(), 1);
}

/// Deletes the endpoint at Stripe, changes a flow, and checks the endpoint is made again with
/// its new secret kept, so deliveries signed with it verify.
async fn check_a_deleted_endpoint_is_made_again(app: &TestApp, fake: &FakeStripe, p: &Pipeline) {
    let token = &p.tenant.token;
    let gone = fake.webhook_endpoints()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/webhook_endpoints/{gone}", fake.base_url))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let refunds = json!({"name": "refunds", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.refunded"]},
        "steps": [{"id": "n", "action": "create", "object": "notes", "fields": {"t": "{{ event.type }}"}}]});
    app.post("/v1/flows", token, refunds).await;
    let remade = wait_for(10, "the endpoint to be made again", || async {
        let endpoints = fake.webhook_endpoints();
        endpoints
            .first()
            .filter(|e| e["id"] != gone.as_str())
            .cloned()
    })
    .await;
    let account = wait_for(10, "its secret to be kept", || async {
        let a = app
            .get(&format!("/v1/stripe-accounts/{}", p.account_id), token)
            .await;
        (webhook_secret_count(&a.body) == 3 && a.body["webhook_endpoint"]["id"] == remade["id"])
            .then_some(a.body)
    })
    .await;
    assert_eq!(account["webhook_endpoint"]["id"], remade["id"]);
    assert!(
        account["webhook_endpoint"]["sync_error"].is_null(),
        "{account}"
    );
    let body = serde_json::to_vec(&FakeStripe::event(
        "charge.refunded",
        charge("ch_remade", "cus_reg", now()),
        now(),
    ))
    .unwrap();
    // The ingress reuses an account's secrets for up to a second (a change made in the
    // background reaches it then), as Stripe's own retries would find.
    let secret = remade["secret"].as_str().unwrap().to_string();
    wait_for(
        5,
        "a delivery signed with the new secret to verify",
        || async {
            let accepted = app
                .webhook(
                    &p.webhook_path,
                    &body,
                    Some(&stripe_signature(&body, &secret, now())),
                )
                .await;
            (accepted.status == StatusCode::OK).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn registering_twice_keeps_one_endpoint_that_follows_the_flows() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[]).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app, SECRET_KEY).await;
        let token = &p.tenant.token;

        let (first, second) = register_twice_after_a_flow(&app, &p).await;
        check_one_endpoint_that_accepts_its_deliveries(&app, &fake, &p, &first, &second).await;

        // A new flow's event type reaches the endpoint by itself.
        check_a_new_flow_reaches_the_endpoint(&app, &fake, &p).await;

        // Someone deletes the endpoint in Stripe's dashboard; the next flow change makes it
        // again and keeps its new signing secret, so Stripe's deliveries still verify.
        check_a_deleted_endpoint_is_made_again(&app, &fake, &p).await;

        // Deleting the account deletes its endpoint at Stripe.
        let deleted = app
            .delete(&format!("/v1/stripe-accounts/{}", p.account_id), token)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
        assert!(fake.webhook_endpoints().is_empty());
        fake.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn registration_needs_a_key_and_says_so() {
    for backend in tributary_tests::backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[]).await;
        let p = app.pipeline(json!({})).await;
        let reply = app
            .post(
                &format!("/v1/stripe-accounts/{}/register-webhook", p.account_id),
                &p.tenant.token,
                json!({}),
            )
            .await;
        let fields = reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["secret_key"]);
        let backfill = app
            .post(
                &format!("/v1/stripe-accounts/{}/backfills", p.account_id),
                &p.tenant.token,
                json!({"since": now() - 3600}),
            )
            .await;
        assert_eq!(
            backfill.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["secret_key"]
        );
        app.cleanup_handle().run().await;
    }
}

/// The inbox's events of a tenant, oldest first by when they were stored.
async fn inbox(app: &TestApp, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(id) => format!("/v1/events?limit=100&starting_after={id}"),
            None => "/v1/events?limit=100".to_string(),
        };
        let page = app.get(&path, token).await;
        let data = page.body["data"].as_array().unwrap().clone();
        after = data.last().map(|e| e["id"].as_str().unwrap().to_string());
        all.extend(data);
        if page.body["has_more"] != true {
            break;
        }
    }
    all.reverse();
    all
}

#[tokio::test]
async fn a_backfill_after_downtime_ingests_exactly_the_missing_events_in_order() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[("TRIBUTARY_BACKFILL_PAGE_SIZE", "4")]).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app, SECRET_KEY).await;
        let token = &p.tenant.token;
        let start = now() - 3 * 3600;
        // 14 events over three hours; the 9 in the middle were never delivered (downtime).
        let mut created_order = Vec::new();
        for i in 0..14 {
            let event = FakeStripe::event(
                "charge.succeeded",
                charge(&format!("ch_bf{i}"), "cus_bf", start + i * 600),
                start + i * 600,
            );
            let delivered = !(3..12).contains(&i);
            let id = fake.add_event(event.clone(), delivered);
            if delivered {
                let sent = app.send_event(&p, &event).await;
                assert_eq!(sent.status, StatusCode::OK);
            }
            created_order.push(id);
        }
        let too_old = app
            .post(
                &format!("/v1/stripe-accounts/{}/backfills", p.account_id),
                token,
                json!({"since": now() - 31 * 86_400}),
            )
            .await;
        assert_eq!(
            too_old.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["since"]
        );
        assert!(too_old.text.contains("30 days"), "{}", too_old.text);

        let created = app
            .post(
                &format!("/v1/stripe-accounts/{}/backfills", p.account_id),
                token,
                json!({"since": chrono::DateTime::from_timestamp(start - 60, 0).unwrap().to_rfc3339()}),
            )
            .await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
        let id = created.str("/id");
        let done = wait_for(30, "the backfill to finish", || async {
            let b = app
                .get(
                    &format!("/v1/stripe-accounts/{}/backfills/{id}", p.account_id),
                    token,
                )
                .await;
            (b.body["status"] == "succeeded" || b.body["status"] == "failed").then_some(b.body)
        })
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["progress"]["events_found"], 14, "{done}");
        assert_eq!(done["progress"]["ingested"], 9, "{done}");
        assert_eq!(done["progress"]["already_present"], 5, "{done}");
        assert_eq!(done["progress"]["failed"], 0, "{done}");
        assert!(
            done["progress"]["pages_read"].as_i64().unwrap() >= 8,
            "{done}"
        );

        let events = inbox(&app, token).await;
        assert_eq!(events.len(), 14, "no duplicates");
        let backfilled: Vec<&str> = events
            .iter()
            .filter(|e| {
                created_order[3..12].contains(&e["stripe_event_id"].as_str().unwrap().to_string())
            })
            .map(|e| e["stripe_event_id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = created_order[3..12].iter().map(String::as_str).collect();
        assert_eq!(backfilled, expected, "ingested oldest first");
        let listed = app
            .get(
                &format!("/v1/stripe-accounts/{}/backfills", p.account_id),
                token,
            )
            .await;
        assert_eq!(listed.body["data"][0]["id"], id.as_str());
        fake.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn one_accounts_backfill_does_not_hold_up_anothers() {
    for backend in tributary_tests::backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake, &[("TRIBUTARY_BACKFILL_PAGE_SIZE", "2")]).await;
        let other_key = "sk_test_51TributaryFakeStripeSecondKey000000";
        fake.add_secret_key(other_key);
        let a = pipeline(&app, SECRET_KEY).await;
        let b = pipeline(&app, other_key).await;
        let start = now() - 3600;
        for i in 0..16 {
            fake.add_event(
                FakeStripe::event(
                    "charge.succeeded",
                    charge(&format!("ch_fair{i}"), "cus_f", start + i),
                    start + i,
                ),
                false,
            );
        }
        let mut ids = Vec::new();
        for p in [&a, &b] {
            let created = app
                .post(
                    &format!("/v1/stripe-accounts/{}/backfills", p.account_id),
                    &p.tenant.token,
                    json!({"since": start - 10}),
                )
                .await;
            assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
            ids.push(created.str("/id"));
        }
        for (p, id) in [&a, &b].iter().zip(&ids) {
            wait_for(60, "both backfills to finish", || async {
                let r = app
                    .get(
                        &format!("/v1/stripe-accounts/{}/backfills/{id}", p.account_id),
                        &p.tenant.token,
                    )
                    .await;
                (r.body["status"] == "succeeded").then_some(())
            })
            .await;
        }
        // The two accounts' requests interleave: neither waited for the other to finish.
        let keys: Vec<String> = fake
            .stripe_requests()
            .into_iter()
            .filter(|r| r.request.path.starts_with("/v1/events"))
            .map(|r| r.request.authorization.unwrap_or_default())
            .collect();
        let a_last = keys.iter().rposition(|k| k.contains(SECRET_KEY)).unwrap();
        let b_first = keys.iter().position(|k| k.contains(other_key)).unwrap();
        let b_last = keys.iter().rposition(|k| k.contains(other_key)).unwrap();
        let a_first = keys.iter().position(|k| k.contains(SECRET_KEY)).unwrap();
        assert!(
            b_first < a_last && a_first < b_last,
            "interleaved: a {a_first}..{a_last}, b {b_first}..{b_last}"
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn reconciliation_repairs_a_dropped_webhook_by_itself() {
    for backend in tributary_tests::backends() {
        let fake = FakeStripe::start();
        let app = spawn(
            backend,
            &fake,
            &[
                ("TRIBUTARY_RECONCILE_INTERVAL", "1s"),
                ("TRIBUTARY_RECONCILE_WINDOW", "1h"),
            ],
        )
        .await;
        let p = pipeline(&app, SECRET_KEY).await;
        let token = &p.tenant.token;
        let flow = json!({"name": "deals", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "deal", "action": "upsert", "object": "deals",
                       "match": {"charge": "{{ object.id }}"}, "fields": {"amount": "{{ object.amount }}"}}]});
        app.post("/v1/flows", token, flow).await;
        // Stripe could not deliver this one, and nothing else brought it.
        fake.add_event(
            FakeStripe::event(
                "charge.succeeded",
                charge("ch_dropped", "cus_d", now() - 120),
                now() - 120,
            ),
            false,
        );
        let deal = wait_for(30, "reconciliation to bring the dropped event", || async {
            let deals = app.records(token, &p.connection_id, "deals").await;
            deals.into_iter().next()
        })
        .await;
        assert_eq!(deal["fields"]["charge"], "ch_dropped");
        let account = wait_for(10, "the repair to be counted", || async {
            let a = app
                .get(&format!("/v1/stripe-accounts/{}", p.account_id), token)
                .await;
            (a.body["reconciliation"]["repaired"] == 1).then_some(a.body)
        })
        .await;
        assert!(account["reconciliation"]["last_run_at"].is_string());
        let run = account["reconciliation"]["last_backfill_id"]
            .as_str()
            .unwrap();
        let backfill = app
            .get(
                &format!("/v1/stripe-accounts/{}/backfills/{run}", p.account_id),
                token,
            )
            .await;
        assert_eq!(backfill.body["kind"], "reconcile");
        assert_eq!(backfill.body["delivery_success"], false);
        let asked: Vec<String> = fake
            .requests()
            .all()
            .into_iter()
            .map(|r| r.path)
            .filter(|p| p.starts_with("/v1/events?"))
            .collect();
        assert!(
            asked.iter().all(|p| p.contains("delivery_success=false")),
            "{asked:?}"
        );
        // A later run finds nothing new to repair: once it has finished (the account names
        // another reconciliation, and its clock moved), it found the dropped event already in
        // the inbox, ingested nothing, and nothing more reached the CRM.
        let at = |account: &Value| {
            chrono::DateTime::parse_from_rfc3339(
                account["reconciliation"]["last_run_at"].as_str().unwrap(),
            )
            .unwrap()
        };
        let again = wait_for(20, "a later reconciliation to finish", || async {
            let a = app
                .get(&format!("/v1/stripe-accounts/{}", p.account_id), token)
                .await;
            let latest = a.body["reconciliation"]["last_backfill_id"].as_str()?;
            (latest != run && at(&a.body) > at(&account)).then(|| a.body.clone())
        })
        .await;
        let later = app
            .get(
                &format!(
                    "/v1/stripe-accounts/{}/backfills/{}",
                    p.account_id,
                    again["reconciliation"]["last_backfill_id"]
                        .as_str()
                        .unwrap()
                ),
                token,
            )
            .await;
        assert_eq!(later.body["kind"], "reconcile", "{}", later.text);
        assert_eq!(later.body["status"], "succeeded", "{}", later.text);
        assert_eq!(
            later.body["progress"]["already_present"], 1,
            "{}",
            later.text
        );
        assert_eq!(later.body["progress"]["ingested"], 0, "{}", later.text);
        assert_eq!(again["reconciliation"]["repaired"], 1);
        let inbox = app.get("/v1/events", token).await;
        assert_eq!(
            inbox.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            inbox.text
        );
        assert_eq!(app.records(token, &p.connection_id, "deals").await.len(), 1);
        assert!(
            metric(&app, "tributary_reconciled_events_total")
                .await
                .is_some_and(|v| v >= 1.0)
        );
        app.cleanup_handle().run().await;
    }
}
