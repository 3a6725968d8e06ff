//! Seeds 002 and 004 end to end against the fake Salesforce: JWT bearer and refresh-token
//! sessions on the token response's instance, Closed Won by metadata id with a SOQL fallback,
//! multiple matches and missing records dead-lettered with the reason, subscription status on
//! the account with a task, failed payments as tasks for the account owner, and a daily limit
//! that pauses the connection instead of hammering the org.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_tests::{Pipeline, TestApp, each_backend, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": now(),
        "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind, "data": {"object": object}
    })
}

fn payment_succeeded(id: &str, opportunity: Option<&str>, customer: &str, amount: i64) -> Value {
    let mut metadata = json!({});
    if let Some(opportunity) = opportunity {
        metadata["salesforce_opportunity_id"] = json!(opportunity);
    }
    event(
        id,
        "payment_intent.succeeded",
        json!({"id": format!("pi_{id}"), "object": "payment_intent", "amount": amount,
               "amount_received": amount, "currency": "usd", "customer": customer,
               "status": "succeeded", "created": now(), "metadata": metadata}),
    )
}

fn setup_org(fake: &FakeSalesforce) {
    for field in ["Stripe_Subscription_ID__c", "MRR__c", "ARR__c"] {
        fake.define_field("Opportunity", field, false);
    }
    fake.define_field("Opportunity", "Stripe_Customer_ID__c", true);
    fake.define_field("Account", "Stripe_Customer_ID__c", true);
    fake.define_field("Account", "Subscription_Status__c", false);
    // The org's won stage is not called "Closed Won": it must be discovered.
    fake.set_stages(&[
        ("Prospecting", false, false),
        ("Negotiation", false, false),
        ("Won - Paid", true, true),
        ("Lost", true, false),
    ]);
}

fn opportunity(fake: &FakeSalesforce, name: &str, customer: Option<&str>) -> String {
    let mut fields = json!({"Name": name, "StageName": "Negotiation", "CloseDate": "2030-01-01"});
    if let Some(customer) = customer {
        fields["Stripe_Customer_ID__c"] = json!(customer);
    }
    fake.insert("Opportunity", fields)
}

async fn jwt_connection(app: &TestApp, fake: &FakeSalesforce, template: &str) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "Salesforce", "provider": "salesforce",
            "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                     "username": salesforce::USERNAME,
                     "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
            "settings": {"login_url": fake.login_url, "api_version": "60.0"}
        }))
        .await;
    app.flow_from_template(&p, template).await;
    p
}

fn dead_reason(event: &Value) -> (String, String) {
    let d = &event["deliveries"][0];
    assert_eq!(d["status"], "dead", "{event}");
    (
        d["error"]["kind"].as_str().unwrap_or("").to_string(),
        d["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a_payment_closes_the_opportunity_won_at_the_discovered_stage() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let p = jwt_connection(&app, &fake, "salesforce-opportunity-closed-won").await;
        let opp = opportunity(&fake, "Stark renewal", None);

        let done = app
            .deliver(
                &p,
                &payment_succeeded("evt_s1", Some(&opp), "cus_s1", 49900),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let record = fake.record("Opportunity", &opp).unwrap();
        assert_eq!(record["StageName"], "Won - Paid", "{record:?}");
        assert_eq!(record["Amount"].as_f64(), Some(499.0), "{record:?}");
        assert_eq!(record["Stripe_Customer_ID__c"], "cus_s1");
        assert_eq!(
            record["CloseDate"],
            chrono::Utc::now().format("%Y-%m-%d").to_string()
        );
        assert_eq!(done["deliveries"][0]["crm_record_id"], opp.as_str());

        // One JWT assertion made the session; the API calls went to the instance, not login.
        let log = fake.log.all();
        let grants: Vec<_> = log
            .iter()
            .filter(|l| l.path.ends_with("/services/oauth2/token"))
            .collect();
        assert_eq!(grants.len(), 1);
        assert!(grants[0].body.contains("jwt-bearer"), "{}", grants[0].body);
        assert!(
            fake.log
                .matching(
                    "PATCH",
                    &format!("/services/data/v60.0/sobjects/Opportunity/{opp}")
                )
                .len()
                == 1
        );
        let connection = app.connection(&p).await;
        assert_eq!(
            connection["info"]["won_stage"], "Won - Paid",
            "{connection}"
        );
        assert!(
            connection["info"]["api_usage"]
                .as_str()
                .unwrap_or("")
                .starts_with("api-usage="),
            "{connection}"
        );

        // The connection test makes one cheap call with the cached session.
        let test = app
            .post(
                &format!("/v1/connections/{}/test", p.connection_id),
                &p.tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(test.body["ok"], true, "{}", test.text);
        assert!(
            test.body["detail"]
                .as_str()
                .unwrap()
                .contains("daily API requests left"),
            "{}",
            test.text
        );

        // The stage is cached: a second payment asks OpportunityStage no more.
        let stage_queries = || {
            fake.log
                .all()
                .iter()
                .filter(|l| l.path.contains("OpportunityStage"))
                .count()
        };
        let before = stage_queries();
        let second = app
            .deliver(&p, &payment_succeeded("evt_s2", Some(&opp), "cus_s1", 100))
            .await;
        assert_eq!(second["status"], "processed", "{second}");
        assert_eq!(stage_queries(), before);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_opportunity_falls_back_to_soql_then_dead_letters() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let p = jwt_connection(&app, &fake, "salesforce-opportunity-closed-won").await;
        let by_customer = opportunity(&fake, "Found by customer", Some("cus_known"));

        // The metadata names a deleted opportunity: the Stripe customer finds the right one.
        let found = app
            .deliver(
                &p,
                &payment_succeeded("evt_f1", Some("006000000000099AAA"), "cus_known", 1000),
            )
            .await;
        assert_eq!(found["status"], "processed", "{found}");
        assert_eq!(
            found["deliveries"][0]["crm_record_id"],
            by_customer.as_str()
        );
        assert_eq!(
            fake.record("Opportunity", &by_customer).unwrap()["StageName"],
            "Won - Paid"
        );
        assert!(
            fake.log
                .all()
                .iter()
                .any(|l| l.path.contains("/query") && l.path.contains("cus_known")),
            "a SOQL lookup by Stripe_Customer_ID__c"
        );

        // Neither the id nor the customer exist: dead, saying what was tried.
        let lost = app
            .deliver(
                &p,
                &payment_succeeded("evt_f2", Some("006000000000098AAA"), "cus_nobody", 1000),
            )
            .await;
        assert_eq!(lost["status"], "failed", "{lost}");
        let (kind, message) = dead_reason(&lost);
        assert_eq!(kind, "not_found");
        assert!(
            message.contains("006000000000098AAA") && message.contains("cus_nobody"),
            "{message}"
        );

        // Two opportunities of one customer: dead with both candidates.
        let a = opportunity(&fake, "Twin A", Some("cus_twin"));
        let b = opportunity(&fake, "Twin B", Some("cus_twin"));
        let twins = app
            .deliver(&p, &payment_succeeded("evt_f3", None, "cus_twin", 1000))
            .await;
        let (kind, message) = dead_reason(&twins);
        assert_eq!(kind, "permanent");
        assert!(message.contains(&a) && message.contains(&b), "{message}");
        assert_eq!(
            fake.record("Opportunity", &a).unwrap()["StageName"],
            "Negotiation"
        );
    })
    .await;
}

#[tokio::test]
async fn an_upsert_by_external_id_never_duplicates_and_refuses_several_matches() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let p = jwt_connection(&app, &fake, "salesforce-opportunity-closed-won").await;
        let flow = json!({
            "name": "Customers to accounts", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.created", "customer.updated"]},
            "steps": [{"id": "account", "action": "upsert", "object": "Account",
                       "match": {"Stripe_Customer_ID__c": "{{ object.id }}"},
                       "fields": {"Name": "{{ object.name }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let customer = |id: &str, name: &str| {
            event(
                id,
                "customer.created",
                json!({"id": "cus_up", "object": "customer", "name": name}),
            )
        };
        let first = app
            .deliver(&p, &customer("evt_up1", "Wayne Enterprises"))
            .await;
        assert_eq!(first["status"], "processed", "{first}");
        // Renamed in Stripe, in the same second as likely as not: an update that continues from
        // the creation (its previous_attributes are the created values) is applied.
        let mut renamed = customer("evt_up2", "Wayne Enterprises Inc");
        renamed["type"] = json!("customer.updated");
        renamed["data"]["previous_attributes"] = json!({"name": "Wayne Enterprises"});
        let second = app.deliver(&p, &renamed).await;
        assert_eq!(second["status"], "processed", "{second}");
        let accounts = fake.records("Account");
        assert_eq!(accounts.len(), 1, "{accounts:?}");
        assert_eq!(accounts[0]["Name"], "Wayne Enterprises Inc");

        fake.insert(
            "Account",
            json!({"Name": "Dup 1", "Stripe_Customer_ID__c": "cus_dup"}),
        );
        fake.insert(
            "Account",
            json!({"Name": "Dup 2", "Stripe_Customer_ID__c": "cus_dup"}),
        );
        let dup = app
            .deliver(
                &p,
                &event(
                    "evt_up3",
                    "customer.created",
                    json!({"id": "cus_dup", "object": "customer", "name": "X"}),
                ),
            )
            .await;
        let d = dup["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["object"] == "Account")
            .unwrap()
            .clone();
        assert_eq!(d["status"], "dead", "{dup}");
        assert_eq!(d["error"]["vendor_status"], 300);
        assert!(
            d["error"]["message"].as_str().unwrap().contains("several"),
            "{d}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_invoice_becomes_a_task_for_the_account_owner() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let owner = "005000000000777AAA";
        let account = fake.insert("Account", json!({"Name": "Acme", "OwnerId": owner}));
        let p = jwt_connection(&app, &fake, "salesforce-payment-failed-task").await;
        let invoice = event(
            "evt_inv1",
            "invoice.payment_failed",
            json!({"id": "in_1", "object": "invoice", "number": "INV-0042", "amount_due": 129900,
                   "currency": "usd", "attempt_count": 2, "customer": "cus_acme",
                   "next_payment_attempt": 1893456000, "subscription": "sub_9",
                   "metadata": {"salesforce_account_id": account}}),
        );
        let done = app.deliver(&p, &invoice).await;
        assert_eq!(done["status"], "processed", "{done}");
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        let task = &tasks[0];
        assert_eq!(task["WhatId"], account.as_str());
        assert_eq!(task["OwnerId"], owner, "assigned to the account owner");
        assert_eq!(task["Priority"], "High");
        assert_eq!(
            task["Subject"],
            "Payment Failed - Immediate Action Required"
        );
        let description = task["Description"].as_str().unwrap();
        for expected in ["INV-0042", "1299.00", "Attempts: 2", "2030-01-01", "sub_9"] {
            assert!(
                description.contains(expected),
                "{expected} in {description}"
            );
        }

        // A forced replay re-runs the event but never its `create`: once the replay's run has
        // finished, Salesforce was asked to create one Task, and holds one.
        assert_eq!(done["runs"], 1, "{done}");
        let event_id = done["id"].as_str().unwrap();
        let replay = app
            .post(
                &format!("/v1/events/{event_id}/replay"),
                &p.tenant.token,
                json!({"force": true}),
            )
            .await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
        let replayed = wait_for(20, "the forced replay's run to finish", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            (e.body["status"] == "processed" && e.body["runs"].as_i64() >= Some(2))
                .then_some(e.body)
        })
        .await;
        let task_delivery = |event: &Value| {
            event["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["step"] == "task")
                .cloned()
                .unwrap_or_else(|| panic!("no task delivery in {event}"))
        };
        let (before, after) = (task_delivery(&done), task_delivery(&replayed));
        assert_eq!(after["attempts"], 1, "{replayed}");
        assert_eq!(after["updated_at"], before["updated_at"], "{replayed}");
        assert_eq!(
            fake.log.matching("POST", "/sobjects/Task").len(),
            1,
            "one Task create was sent"
        );
        assert_eq!(fake.records("Task").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_failed_invoice_gets_its_decline_reason_and_account_from_stripe() {
    for backend in tributary_tests::backends() {
        use tributary_fakes::stripe::{FakeStripe, SECRET_KEY};
        let stripe = FakeStripe::start();
        let app = TestApp::spawn_with(
            backend,
            &[("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str())],
        )
        .await;
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let account = fake.insert(
            "Account",
            json!({"Name": "Acme", "OwnerId": "005000000000777AAA"}),
        );
        let p = jwt_connection(&app, &fake, "salesforce-payment-failed-task").await;
        app.use_stripe_key(&p, SECRET_KEY).await;
        stripe.put(
            json!({"id": "cus_acme2", "object": "customer", "email": "ap@acme.example",
            "metadata": {"salesforce_account_id": account}, "livemode": false}),
        );
        stripe.put(json!({"id": "ch_declined", "object": "charge", "amount": 129900, "currency": "usd",
            "status": "failed", "failure_code": "card_declined", "customer": "cus_acme2", "livemode": false}));
        stripe.put(json!({"id": "pi_declined", "object": "payment_intent", "amount": 129900,
            "currency": "usd", "status": "requires_payment_method", "customer": "cus_acme2",
            "latest_charge": "ch_declined", "livemode": false,
            "last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}}));
        // The invoice names no Salesforce account: the Customer's metadata does.
        let invoice = event(
            "evt_inv2",
            "invoice.payment_failed",
            json!({"id": "in_2", "object": "invoice", "number": "INV-0043", "amount_due": 129900,
                   "currency": "usd", "attempt_count": 1, "customer": "cus_acme2",
                   "payment_intent": "pi_declined", "metadata": {}}),
        );
        let done = app.deliver(&p, &invoice).await;
        assert_eq!(done["status"], "processed", "{done}");
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0]["WhatId"], account.as_str());
        let description = tasks[0]["Description"].as_str().unwrap();
        assert!(
            description.contains("Reason: insufficient_funds"),
            "{description}"
        );
        let fetched: Vec<String> = stripe
            .requests()
            .all()
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert!(
            fetched
                .iter()
                .any(|p| p.starts_with("/v1/payment_intents/pi_declined")
                    && p.contains("latest_charge")),
            "{fetched:?}"
        );
        assert!(
            fetched
                .iter()
                .any(|p| p.starts_with("/v1/customers/cus_acme2"))
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn subscription_changes_are_written_to_the_account_with_a_task() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let account = fake.insert(
            "Account",
            json!({"Name": "Initech", "Stripe_Customer_ID__c": "cus_ini"}),
        );
        let p = jwt_connection(&app, &fake, "salesforce-subscription-status").await;
        let mut updated = event(
            "evt_sub1",
            "customer.subscription.updated",
            json!({"id": "sub_ini", "object": "subscription", "customer": "cus_ini", "status": "past_due",
                   "metadata": {}}),
        );
        updated["data"]["previous_attributes"] = json!({"status": "active"});
        let done = app.deliver(&p, &updated).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            fake.record("Account", &account).unwrap()["Subscription_Status__c"],
            "Past Due"
        );
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["WhatId"], account.as_str());
        assert_eq!(tasks[0]["Priority"], "High");
        assert!(
            tasks[0]["Subject"]
                .as_str()
                .unwrap()
                .contains("active → past_due")
        );
    })
    .await;
}

#[tokio::test]
async fn the_daily_limit_pauses_the_connection_instead_of_hammering() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let p = jwt_connection(&app, &fake, "salesforce-opportunity-closed-won").await;
        let opp = opportunity(&fake, "Later", None);
        fake.exhaust_daily_limit(true);

        let sent = app
            .send_event(&p, &payment_succeeded("evt_l1", Some(&opp), "cus_l", 100))
            .await;
        let event_id = sent.str("/event_id");
        let connection = wait_for(10, "the connection to pause", || async {
            let c = app.connection(&p).await;
            (c["status"] == "paused").then_some(c)
        })
        .await;
        assert!(
            connection["status_reason"]
                .as_str()
                .unwrap()
                .contains("REQUEST_LIMIT_EXCEEDED")
        );
        let until =
            chrono::DateTime::parse_from_rfc3339(connection["paused_until"].as_str().unwrap())
                .unwrap();
        assert!(
            until > chrono::Utc::now() + chrono::Duration::minutes(50),
            "{connection}"
        );
        // A second event waits too, without calling Salesforce: once the worker has run it (its
        // delivery is held by the pause), Salesforce has still seen no new request.
        let calls = fake.log.all().len();
        let other = app
            .send_event(&p, &payment_succeeded("evt_l2", Some(&opp), "cus_l", 200))
            .await;
        let other_id = other.str("/event_id");
        let held = wait_for(
            10,
            "the second event's run to be held by the pause",
            || async {
                let e = app
                    .get(&format!("/v1/events/{other_id}"), &p.tenant.token)
                    .await;
                let d = &e.body["deliveries"][0];
                (e.body["runs"].as_i64() >= Some(1)
                    && d["status"] == "retrying"
                    && d["reason"] == "connection paused")
                    .then(|| e.body.clone())
            },
        )
        .await;
        assert_eq!(held["status"], "queued", "{held}");
        assert_eq!(held["deliveries"][0]["attempts"], 0, "{held}");
        assert_eq!(fake.log.all().len(), calls, "no call while paused");
        let e = app
            .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
            .await;
        assert_eq!(e.body["status"], "queued", "{}", e.text);
        assert_eq!(e.body["deliveries"][0]["status"], "retrying");

        // The limit resets; the tenant resumes the connection and both events run.
        fake.exhaust_daily_limit(false);
        let resumed = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"status": "active"}),
            )
            .await;
        assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.text);
        for id in [event_id, other_id] {
            let done = app.finished_event(&p.tenant.token, &id).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        assert_eq!(
            fake.record("Opportunity", &opp).unwrap()["StageName"],
            "Won - Paid"
        );
    })
    .await;
}

#[tokio::test]
async fn a_refresh_token_session_is_renewed_when_salesforce_expires_it() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "refresh_token", "client_id": salesforce::CLIENT_ID,
                         "client_secret": salesforce::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"login_url": fake.login_url, "won_stage": "Won - Paid"}
            }))
            .await;
        app.flow_from_template(&p, "salesforce-opportunity-closed-won")
            .await;
        let opp = opportunity(&fake, "Renewal", None);
        let first = app
            .deliver(&p, &payment_succeeded("evt_rt1", Some(&opp), "cus_rt", 100))
            .await;
        assert_eq!(first["status"], "processed", "{first}");
        fake.expire_sessions();
        let second = app
            .deliver(&p, &payment_succeeded("evt_rt2", Some(&opp), "cus_rt", 200))
            .await;
        assert_eq!(second["status"], "processed", "{second}");
        assert_eq!(
            second["deliveries"][0]["attempts"], 1,
            "refreshed within the attempt"
        );
        assert_eq!(fake.log.matching("POST", "/services/oauth2/token").len(), 2);
        assert_eq!(
            fake.record("Opportunity", &opp).unwrap()["Amount"].as_f64(),
            Some(2.0)
        );
        assert!(
            !fake
                .log
                .all()
                .iter()
                .any(|l| l.path.contains("OpportunityStage")),
            "the won_stage setting overrides discovery"
        );
    })
    .await;
}

#[tokio::test]
async fn new_opportunities_get_the_connections_record_type() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        let record_type = "012000000000042AAA";
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "record_type_id": record_type}
            }))
            .await;
        let flow = json!({
            "name": "Subscriptions to opportunities", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.subscription.created"]},
            "steps": [{"id": "opportunity", "action": "upsert", "object": "Opportunity",
                       "match": {"Stripe_Customer_ID__c": "{{ object.customer }}"},
                       "fields": {"Name": "New business {{ object.customer }}",
                                  "StageName": "{{ settings.won_stage }}",
                                  "CloseDate": "{{ event.created | date }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let done = app
            .deliver(
                &p,
                &event("evt_rt", "customer.subscription.created",
                       json!({"id": "sub_rt", "object": "subscription", "customer": "cus_rt", "status": "active"})),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let opportunities = fake.records("Opportunity");
        assert_eq!(opportunities.len(), 1);
        assert_eq!(opportunities[0]["RecordTypeId"], record_type);
        assert_eq!(opportunities[0]["StageName"], "Won - Paid");
        assert_eq!(opportunities[0]["Stripe_Customer_ID__c"], "cus_rt");
    })
    .await;
}

#[tokio::test]
async fn a_rotated_refresh_token_is_kept_for_the_next_refresh() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup_org(&fake);
        fake.rotate_refresh_tokens(true);
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "refresh_token", "client_id": salesforce::CLIENT_ID,
                         "client_secret": salesforce::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"login_url": fake.login_url, "won_stage": "Won - Paid"}
            }))
            .await;
        app.flow_from_template(&p, "salesforce-opportunity-closed-won")
            .await;
        let opp = opportunity(&fake, "Rotating", None);
        // Three sessions in a row, each from the refresh token the previous refresh returned.
        for (i, amount) in [100, 200, 300].into_iter().enumerate() {
            fake.expire_sessions();
            let done = app
                .deliver(
                    &p,
                    &payment_succeeded(&format!("evt_rot{i}"), Some(&opp), "cus_rot", amount),
                )
                .await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        let grants = fake.log.matching("POST", "/services/oauth2/token");
        assert_eq!(grants.len(), 3);
        assert!(
            grants.iter().all(|g| g.status == 200),
            "every refresh used a live token"
        );
        assert_eq!(app.connection(&p).await["status"], "active");
    })
    .await;
}
