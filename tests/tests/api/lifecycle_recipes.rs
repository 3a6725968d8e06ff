//! The payment-lifecycle recipes end to end, against the fake Salesforce, HubSpot and Stripe:
//! charges become Payment__c records with seed 002's statuses, refunds and disputes update them
//! and alert the account owner, a cancellation becomes a Task for the Customer Success Manager
//! and a `notify` notice each notification channel receives once, whatever the retries and
//! replays, a PaymentIntent becomes a HubSpot contact with HubSpot's amounts, and the lifecycle
//! test events can be sent.

use std::sync::{Arc, Mutex};

use actix_web::HttpResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::stripe::{FakeStripe, SECRET_KEY};
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{Pipeline, TestApp, backends, stripe_signature, wait_for};

const OWNER: &str = "005000000000777AAA";
const CSM: &str = "005000000000888AAA";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, object: Value, previous: Option<Value>) -> Value {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": now(),
        "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": kind, "data": data
    })
}

async fn spawn(backend: tributary_tests::Backend, stripe: &FakeStripe) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str())],
    )
    .await
}

/// The Payment__c object the Salesforce recipes write, as a tenant would create it.
fn payment_object(fake: &FakeSalesforce) {
    fake.define_field("Payment__c", "Stripe_Charge_ID__c", true);
    for field in [
        "Status__c",
        "Amount__c",
        "Amount_Refunded__c",
        "Amount_Disputed__c",
        "Currency__c",
        "Stripe_Customer_ID__c",
        "Decline_Code__c",
        "Failure_Message__c",
        "Payment_Date__c",
    ] {
        fake.define_field("Payment__c", field, false);
    }
}

/// A Salesforce connection with a flow from `template`, its Stripe account on the fake Stripe.
async fn salesforce(app: &TestApp, fake: &FakeSalesforce, template: &str) -> Pipeline {
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
    app.use_stripe_key(&p, SECRET_KEY).await;
    p
}

async fn processed(app: &TestApp, p: &Pipeline, event: &Value) -> Value {
    let done = app.deliver(p, event).await;
    assert_eq!(done["status"], "processed", "{done}");
    done
}

fn payment(fake: &FakeSalesforce, charge: &str) -> serde_json::Map<String, Value> {
    let found: Vec<_> = fake
        .records("Payment__c")
        .into_iter()
        .filter(|r| r.get("Stripe_Charge_ID__c") == Some(&json!(charge)))
        .collect();
    assert_eq!(found.len(), 1, "one Payment__c for {charge}: {found:?}");
    found.into_iter().next().unwrap()
}

fn stark_charge(id: &str, amount_refunded: i64) -> Value {
    json!({"id": id, "object": "charge", "amount": 14900, "amount_refunded": amount_refunded,
           "refunded": amount_refunded >= 14900, "currency": "usd", "customer": "cus_stark",
           "status": "succeeded", "metadata": {}, "livemode": false, "created": now()})
}

#[tokio::test]
async fn refunds_and_disputes_update_the_payment_and_alert_the_account() {
    for backend in backends() {
        let stripe = FakeStripe::start();
        let app = spawn(backend, &stripe).await;
        let fake = FakeSalesforce::start();
        payment_object(&fake);
        let account = fake.insert("Account", json!({"Name": "Stark", "OwnerId": OWNER}));
        let existing = fake.insert(
            "Payment__c",
            json!({"Stripe_Charge_ID__c": "ch_stark", "Status__c": "Completed", "Amount__c": 149.0}),
        );
        let p = salesforce(&app, &fake, "salesforce-refunds-and-disputes").await;
        stripe.put(
            json!({"id": "cus_stark", "object": "customer", "livemode": false,
                          "metadata": {"salesforce_account_id": account}}),
        );
        stripe.put(stark_charge("ch_stark", 14900));

        // A full refund: the charge names no account, its Customer does.
        let refunded = event(
            "evt_ref1",
            "charge.refunded",
            stark_charge("ch_stark", 14900),
            Some(json!({"amount_refunded": 0, "refunded": false})),
        );
        processed(&app, &p, &refunded).await;
        let record = payment(&fake, "ch_stark");
        assert_eq!(
            record["Id"],
            existing.as_str(),
            "the existing record, updated"
        );
        assert_eq!(record["Status__c"], "Refunded");
        assert_eq!(record["Amount_Refunded__c"].as_f64(), Some(149.0));
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0]["Subject"], "Stripe refund - charge fully refunded");
        assert_eq!(tasks[0]["WhatId"], account.as_str());
        assert_eq!(tasks[0]["OwnerId"], OWNER, "the account owner's");
        assert_eq!(tasks[0]["Priority"], "Normal");

        // A dispute names only its charge: fetched, with its Customer, for the account.
        let due_by = now() + 10 * 86_400;
        let dispute = |status: &str| {
            json!({"id": "dp_stark", "object": "dispute", "amount": 14900, "charge": "ch_stark",
                   "currency": "usd", "reason": "fraudulent", "status": status, "metadata": {},
                   "evidence_details": {"due_by": due_by, "has_evidence": false,
                                        "past_due": false, "submission_count": 0},
                   "created": now(), "livemode": false})
        };
        let opened = event(
            "evt_dp1",
            "charge.dispute.created",
            dispute("needs_response"),
            None,
        );
        processed(&app, &p, &opened).await;
        let record = payment(&fake, "ch_stark");
        assert_eq!(record["Status__c"], "Disputed");
        assert_eq!(record["Amount_Disputed__c"].as_f64(), Some(149.0));
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        let task = &tasks[1];
        let due = chrono::DateTime::from_timestamp(due_by, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(
            task["Subject"],
            format!("Stripe dispute opened - respond by {due}")
        );
        assert_eq!(task["ActivityDate"], due.as_str());
        assert_eq!(task["Priority"], "High");
        assert_eq!(task["WhatId"], account.as_str());
        assert_eq!(task["OwnerId"], OWNER);
        let description = task["Description"].as_str().unwrap();
        assert!(description.contains("reason: fraudulent"), "{description}");
        let fetched = stripe.requests().matching("GET", "/v1/charges/ch_stark");
        assert_eq!(fetched.len(), 1, "{fetched:?}");
        assert!(fetched[0].path.contains("customer"), "{}", fetched[0].path);

        let won = event("evt_dp2", "charge.dispute.closed", dispute("won"), None);
        processed(&app, &p, &won).await;
        assert_eq!(payment(&fake, "ch_stark")["Status__c"], "Dispute Won");
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[2]["Subject"], "Stripe dispute won");
        assert_eq!(tasks[2]["Status"], "Completed");
        assert_eq!(fake.records("Payment__c").len(), 1, "one payment all along");
        app.cleanup_handle().run().await;
    }
}

/// One notice a receiver took: its signature header and JSON body.
#[derive(Debug, Clone)]
struct Received {
    signature: Option<String>,
    body: Value,
    raw: Vec<u8>,
}

/// A local notification channel receiver: answers the statuses of `script` first, then 200.
struct Receiver {
    served: Served,
    got: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let refused: Arc<Mutex<usize>> = Arc::default();
        let script = Arc::new(Mutex::new(script.to_vec()));
        let (store, count) = (got.clone(), refused.clone());
        let served = Served::answering(RequestLog::default(), move |req, body| {
            let status = {
                let mut script = script.lock().unwrap();
                if script.is_empty() {
                    200
                } else {
                    script.remove(0)
                }
            };
            if status == 200 {
                store.lock().unwrap().push(Received {
                    signature: req
                        .headers()
                        .get("tributary-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body: serde_json::from_slice(body).unwrap_or(Value::Null),
                    raw: body.to_vec(),
                });
            } else {
                *count.lock().unwrap() += 1;
            }
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
        });
        Receiver {
            served,
            got,
            refused,
        }
    }

    fn url(&self) -> String {
        format!("{}/hooks/tributary", self.served.base_url)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn channel(app: &TestApp, p: &Pipeline, body: Value) {
    let created = app
        .post("/v1/notification-channels", &p.tenant.token, body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

fn subscription(id: &str, customer: &str, metadata: Value) -> Value {
    json!({"id": id, "object": "subscription", "customer": customer, "status": "canceled",
           "cancel_at_period_end": false, "canceled_at": now(), "ended_at": now(),
           "cancellation_details": {"comment": null, "feedback": "too_expensive",
                                    "reason": "cancellation_requested"},
           "metadata": metadata, "livemode": false, "created": now() - 86_400})
}

#[tokio::test]
async fn a_cancellation_reaches_the_csm_and_each_channel_once_even_when_replayed() {
    for backend in backends() {
        let stripe = FakeStripe::start();
        let app = spawn(backend, &stripe).await;
        let fake = FakeSalesforce::start();
        payment_object(&fake);
        let account = fake.insert("Account", json!({"Name": "Initech", "OwnerId": OWNER}));
        let p = salesforce(&app, &fake, "salesforce-failed-payments-and-cancellations").await;
        // The webhook channel fails once: the step retries, and sends to it only.
        let hook = Receiver::start(&[503]);
        let slack = Receiver::start(&[]);
        let secret = "a-shared-signing-secret-0123";
        channel(
            &app,
            &p,
            json!({"name": "Ops hook", "kind": "webhook", "url": hook.url(),
                                 "secret": secret, "alerts": ["flow.failing"]}),
        )
        .await;
        channel(
            &app,
            &p,
            json!({"name": "#churn", "kind": "slack", "url": slack.url(),
                                 "alerts": ["deliveries.dead_letters"]}),
        )
        .await;

        let metadata = json!({"salesforce_account_id": account, "salesforce_csm_id": CSM});
        let deleted = event(
            "evt_can1",
            "customer.subscription.deleted",
            subscription("sub_ini", "cus_ini", metadata),
            None,
        );
        let done = processed(&app, &p, &deleted).await;
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(
            tasks[0]["Subject"],
            "Subscription Canceled - Customer Success Follow-up"
        );
        assert_eq!(tasks[0]["WhatId"], account.as_str());
        assert_eq!(tasks[0]["OwnerId"], CSM, "the CSM, not the account owner");
        assert_eq!(tasks[0]["Priority"], "High");
        let alert = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "alert")
            .cloned()
            .expect("the alert's delivery");
        assert_eq!(alert["status"], "succeeded", "{alert}");
        assert_eq!(
            alert["attempts"], 2,
            "one failed attempt, one retry: {alert}"
        );

        let [notice] = hook
            .received()
            .try_into()
            .expect("one notice at the webhook");
        assert_eq!(*hook.refused.lock().unwrap(), 1);
        assert_eq!(notice.body["type"], "flow.notify", "{}", notice.body);
        assert_eq!(notice.body["tenant_id"], p.tenant.id.as_str());
        assert_eq!(notice.body["data"]["subject"], "Subscription canceled");
        assert_eq!(notice.body["data"]["fields"]["subscription_id"], "sub_ini");
        assert_eq!(
            notice.body["data"]["fields"]["salesforce_task_id"],
            tasks[0]["Id"]
        );
        assert_eq!(notice.body["data"]["event_id"], done["id"]);
        let message = notice.body["data"]["message"].as_str().unwrap();
        assert!(
            message.contains("sub_ini") && message.contains("was canceled"),
            "{message}"
        );
        assert!(message.contains("cancellation requested"), "{message}");
        let header = notice.signature.clone().expect("a signed notice");
        let t: i64 = header
            .split(',')
            .find_map(|part| part.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .expect("t=");
        assert_eq!(header, stripe_signature(&notice.raw, secret, t));
        let [text] = slack.received().try_into().expect("one message in Slack");
        assert_eq!(
            text.body,
            json!({"text": format!("Subscription canceled\n{message}")})
        );

        // A forced replay runs the event again, and says nothing twice.
        let event_id = done["id"].as_str().unwrap();
        let replay = app
            .post(
                &format!("/v1/events/{event_id}/replay"),
                &p.tenant.token,
                json!({"force": true}),
            )
            .await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
        wait_for(20, "the replay's run", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            (e.body["status"] == "processed" && e.body["runs"].as_i64() >= Some(2)).then_some(())
        })
        .await;
        assert_eq!(hook.received().len(), 1, "no second notice");
        assert_eq!(slack.received().len(), 1, "no second Slack message");
        assert_eq!(fake.records("Task").len(), 1, "no second Task");

        scheduled_cancellations(&app, &p, &stripe, &fake, &account, &slack).await;
        csm_of_the_account(&app, &p, &fake, &account).await;
        hook.served.stop().await;
        slack.served.stop().await;
        app.cleanup_handle().run().await;
    }
}

/// An update that newly sets cancel_at_period_end is a cancellation; without a CSM the Task
/// goes to the account owner; an update that does not newly set it is nothing.
async fn scheduled_cancellations(
    app: &TestApp,
    p: &Pipeline,
    stripe: &FakeStripe,
    fake: &FakeSalesforce,
    account: &str,
    slack: &Receiver,
) {
    stripe.put(
        json!({"id": "cus_ini2", "object": "customer", "name": "Initech Labs",
                      "livemode": false, "metadata": {"salesforce_account_id": account}}),
    );
    let mut object = subscription("sub_ini2", "cus_ini2", json!({}));
    object["status"] = json!("active");
    object["cancel_at_period_end"] = json!(true);
    object["cancel_at"] = json!(now() + 20 * 86_400);
    let scheduled = event(
        "evt_can2",
        "customer.subscription.updated",
        object.clone(),
        Some(json!({"cancel_at_period_end": false, "cancel_at": null})),
    );
    processed(app, p, &scheduled).await;
    let tasks = fake.records("Task");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(
        tasks[1]["Subject"],
        "Subscription Set to Cancel - Customer Success Follow-up"
    );
    assert_eq!(
        tasks[1]["OwnerId"], OWNER,
        "no CSM: Salesforce's account owner"
    );
    let description = tasks[1]["Description"].as_str().unwrap();
    assert!(
        description.contains("of customer Initech Labs"),
        "{description}"
    );
    assert!(
        description.contains("is set to cancel at the end of its period"),
        "{description}"
    );
    let said = slack.received();
    assert_eq!(said.len(), 2);
    assert!(
        said[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("Subscription set to cancel\n")
    );

    // A later change of the same subscription, still set to cancel: no new follow-up.
    let again = event(
        "evt_can3",
        "customer.subscription.updated",
        object,
        Some(json!({"metadata": {"plan": "old"}})),
    );
    let done = app.deliver(p, &again).await;
    assert!(
        done["deliveries"].as_array().is_none_or(|d| d.is_empty()),
        "{done}"
    );
    assert_eq!(fake.records("Task").len(), 2);
    assert_eq!(slack.received().len(), 2);
}

#[tokio::test]
async fn charges_become_payment_records_with_seed_002_statuses() {
    for backend in backends() {
        let stripe = FakeStripe::start();
        let app = spawn(backend, &stripe).await;
        let fake = FakeSalesforce::start();
        payment_object(&fake);
        // Stripe_Payment_Intent_ID__c and Account__c were not created: the step falls back.
        let p = salesforce(&app, &fake, "salesforce-payment-record").await;
        let charge = |id: &str, status: &str| {
            json!({"id": id, "object": "charge", "amount": 14900, "currency": "usd",
                   "customer": "cus_pay", "payment_intent": format!("pi_{id}"), "status": status,
                   "created": 1_726_358_400, "amount_refunded": 0, "disputed": false,
                   "failure_code": (status == "failed").then_some("card_declined"),
                   "metadata": {"salesforce_account_id": "001000000000123AAA"}})
        };
        for (id, kind, status, mapped) in [
            ("ch_p1", "charge.succeeded", "succeeded", "Completed"),
            ("ch_p2", "charge.failed", "failed", "Failed"),
            ("ch_p3", "charge.pending", "pending", "Pending"),
        ] {
            let done = processed(
                &app,
                &p,
                &event(&format!("evt_{id}"), kind, charge(id, status), None),
            )
            .await;
            let record = payment(&fake, id);
            assert_eq!(record["Status__c"], mapped, "{kind}");
            assert_eq!(record["Amount__c"].as_f64(), Some(149.0));
            assert_eq!(record["Currency__c"], "USD");
            assert_eq!(record["Payment_Date__c"], "2024-09-15T00:00:00Z");
            assert_eq!(record["Stripe_Customer_ID__c"], "cus_pay");
            let warnings = done["deliveries"][0]["warnings"].to_string();
            assert!(
                warnings.contains("Salesforce refused the properties Account__c"),
                "the step fell back to the core fields: {done}"
            );
        }
        // The pending charge succeeds later: the same record, now Completed.
        processed(
            &app,
            &p,
            &event(
                "evt_p3b",
                "charge.updated",
                charge("ch_p3", "succeeded"),
                Some(json!({"status": "pending"})),
            ),
        )
        .await;
        assert_eq!(payment(&fake, "ch_p3")["Status__c"], "Completed");
        assert_eq!(fake.records("Payment__c").len(), 3);

        // With every field created, the charge.failed test event lands a Failed payment with
        // its decline code.
        fake.define_field("Payment__c", "Stripe_Payment_Intent_ID__c", false);
        fake.define_field("Payment__c", "Account__c", false);
        let token = &p.tenant.token;
        let sent = app
            .post(
                &format!("/v1/stripe-accounts/{}/test-events?wait=20", p.account_id),
                token,
                json!({"type": "charge.failed"}),
            )
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        let done = app.finished_event(token, &sent.str("/event_id")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let failed: Vec<_> = fake
            .records("Payment__c")
            .into_iter()
            .filter(|r| r.get("Decline_Code__c") == Some(&json!("insufficient_funds")))
            .collect();
        assert_eq!(failed.len(), 1, "{:?}", fake.records("Payment__c"));
        assert_eq!(failed[0]["Status__c"], "Failed");
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn a_payment_intent_becomes_a_hubspot_contact_with_hubspot_amounts() {
    for backend in backends() {
        let stripe = FakeStripe::start();
        let app = spawn(backend, &stripe).await;
        let fake = FakeHubSpot::start();
        for property in ["stripe_customer_id", "last_charge_amount", "hs_lead_status"] {
            fake.define_property("contacts", property, false);
        }
        fake.define_property("deals", "stripe_charge_id", true);
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        app.flow_from_template(&p, "hubspot-payment-intent-contact")
            .await;
        app.use_stripe_key(&p, SECRET_KEY).await;
        stripe.put(json!({"id": "cus_tony", "object": "customer", "email": "Tony@StarkIndustries.com",
                          "name": "Tony Stark", "phone": "+1-555-0100", "livemode": false, "metadata": {}}));
        let intent = json!({"id": "pi_tony", "object": "payment_intent", "amount": 14900,
            "amount_received": 14900, "currency": "usd", "customer": "cus_tony",
            "latest_charge": "ch_tony", "receipt_email": null, "status": "succeeded",
            "created": now(), "livemode": false,
            "metadata": {"company": "Stark Industries", "deal_name": "Arc Reactor Deployment"}});
        processed(
            &app,
            &p,
            &event("evt_pi1", "payment_intent.succeeded", intent, None),
        )
        .await;

        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        let contact = &contacts[0].properties;
        assert_eq!(contact["email"], "tony@starkindustries.com");
        assert_eq!(contact["firstname"], "Tony");
        assert_eq!(contact["lastname"], "Stark");
        assert_eq!(
            contact["last_charge_amount"], "149.00",
            "as HubSpot shows amounts"
        );
        assert_eq!(contact["hs_lead_status"], "CONNECTED");
        assert_eq!(contact["stripe_customer_id"], "cus_tony");
        let deals = fake.records("deals");
        assert_eq!(deals.len(), 1, "{deals:?}");
        assert_eq!(deals[0].properties["amount"], "149.00");
        assert_eq!(deals[0].properties["stripe_charge_id"], "ch_tony");
        assert_eq!(deals[0].properties["dealname"], "Arc Reactor Deployment");
        assert_eq!(fake.associations().len(), 1, "the deal is the contact's");
        assert_eq!(
            stripe
                .requests()
                .matching("GET", "/v1/customers/cus_tony")
                .len(),
            1
        );

        // A receipt e-mail needs no read from Stripe; yen have no decimals.
        let yen = json!({"id": "pi_yen", "object": "payment_intent", "amount": 500000,
            "amount_received": 500000, "currency": "jpy", "customer": null,
            "latest_charge": "ch_yen", "receipt_email": "pepper@stark.com", "status": "succeeded",
            "created": now(), "livemode": false, "metadata": {}});
        processed(
            &app,
            &p,
            &event("evt_pi2", "payment_intent.succeeded", yen, None),
        )
        .await;
        let pepper = fake
            .records("contacts")
            .into_iter()
            .find(|c| c.properties["email"] == "pepper@stark.com")
            .expect("Pepper's contact");
        assert_eq!(pepper.properties["last_charge_amount"], "500000");
        let customer_reads = stripe
            .requests()
            .all()
            .into_iter()
            .filter(|r| r.path.starts_with("/v1/customers"))
            .count();
        assert_eq!(
            customer_reads, 1,
            "only the first payment read its Customer"
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn the_lifecycle_test_events_can_be_sent() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        for kind in [
            "charge.refunded",
            "charge.refund.updated",
            "charge.dispute.created",
            "charge.dispute.closed",
            "charge.failed",
            "customer.subscription.deleted",
            "payment_intent.succeeded",
            "invoice.payment_failed",
        ] {
            let sent = app
                .post(
                    &format!("/v1/stripe-accounts/{}/test-events", p.account_id),
                    token,
                    json!({"type": kind}),
                )
                .await;
            assert_eq!(sent.status, StatusCode::ACCEPTED, "{kind}: {}", sent.text);
            assert_eq!(sent.body["type"], kind);
            assert!(
                sent.str("/stripe_event_id").starts_with("evt_test_"),
                "{}",
                sent.text
            );
            let stored = app
                .get(&format!("/v1/events/{}", sent.str("/event_id")), token)
                .await;
            assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
            assert_eq!(stored.body["type"], kind, "{}", stored.text);
        }
        app.cleanup_handle().run().await;
    }
}

/// With `settings.csm_field`, a subscription that names no CSM gets the user the Account's
/// field names, read by the recipe's find step.
async fn csm_of_the_account(app: &TestApp, p: &Pipeline, fake: &FakeSalesforce, account: &str) {
    const ACCOUNT_CSM: &str = "005000000000999AAA";
    fake.define_field("Account", "CSM__c", false);
    fake.touch(account, json!({"CSM__c": ACCOUNT_CSM}));
    let patched = app
        .patch(
            &format!("/v1/connections/{}", p.connection_id),
            &p.tenant.token,
            json!({"settings": {"login_url": fake.login_url, "api_version": "60.0",
                                "csm_field": "CSM__c"}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let metadata = json!({"salesforce_account_id": account});
    let deleted = event(
        "evt_can4",
        "customer.subscription.deleted",
        // Initech Labs, whose Customer names the account and no CSM.
        subscription("sub_ini4", "cus_ini2", metadata),
        None,
    );
    let done = processed(app, p, &deleted).await;
    let found = done["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["step"] == "account")
        .unwrap_or_else(|| panic!("no find delivery: {done}"));
    assert_eq!(found["status"], "succeeded", "{found}");
    assert_eq!(found["crm_record_id"], account, "{found}");
    let tasks = fake.records("Task");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert_eq!(tasks[2]["OwnerId"], ACCOUNT_CSM, "the Account's CSM field");
    assert_eq!(tasks[2]["WhatId"], account);
}
