//! Batching under backlog: upserts to one connection that wait for its rate budget at the same
//! time go out as one batch call (HubSpot's batch upsert, Salesforce's sObject Collections
//! upsert, Zoho's multi-record upsert), each event reading its own record's answer; a record
//! the vendor refuses fails alone; and an event that finds the connection idle is sent at once,
//! by itself.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::Logged;
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend_with, metric};

/// A batch holds the events a worker has in hand for the tenant at once: 16 of 32 here.
const SLOTS: &[(&str, &str)] = &[("TRIBUTARY_WORKER_CONCURRENCY", "32")];

/// Two requests a second: a backlog waits for its slots, and fills the batches.
fn paced() -> Value {
    json!({"requests": 2, "per_seconds": 1})
}

/// Sends every event at once, then waits for each; their outcomes, in order.
async fn backlog(app: &TestApp, p: &Pipeline, events: &[Value]) -> Vec<Value> {
    let mut ids = Vec::new();
    for event in events {
        let reply = app.send_event(p, event).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        ids.push(reply.str("/event_id"));
    }
    let mut done = Vec::new();
    for id in ids {
        done.push(app.finished_event(&p.tenant.token, &id).await);
    }
    done
}

/// The number of records each request to `suffix` carried in `list`, in order.
fn sizes(log: &[Logged], suffix: &str, list: &str) -> Vec<usize> {
    log.iter()
        .filter(|l| l.method != "GET" && l.path.split('?').next().unwrap_or("").ends_with(suffix))
        .map(|l| {
            serde_json::from_str::<Value>(&l.body).unwrap()[list]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect()
}

/// What every batched backlog shows: all its records in fewer calls, some of several, none
/// past the vendor's size.
fn assert_batched(sizes: &[usize], records: usize, max: usize) {
    assert_eq!(sizes.iter().sum::<usize>(), records, "{sizes:?}");
    assert!(
        sizes.len() <= records / 2,
        "{} calls for {records} records: {sizes:?}",
        sizes.len()
    );
    assert!(sizes.iter().any(|n| *n >= 5), "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= max), "{sizes:?}");
}

async fn hubspot(app: &TestApp, fake: &FakeHubSpot) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url, "rate_limit": paced()}
        }))
        .await;
    app.contact_flow(
        &p,
        json!({"firstname": "{{ object.billing_details.name }}"}),
    )
    .await;
    p
}

/// The number of inputs of each batch upsert HubSpot took (not refused with a 429), in order.
fn batch_sizes(fake: &FakeHubSpot) -> Vec<usize> {
    fake.log
        .matching("POST", "/crm/v3/objects/contacts/batch/upsert")
        .iter()
        .filter(|l| l.status != 429)
        .map(|l| {
            serde_json::from_str::<Value>(&l.body).unwrap()["inputs"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect()
}

#[tokio::test]
async fn a_backlog_goes_out_in_batch_calls_and_a_refused_record_fails_alone() {
    // A batch holds the events a worker has in hand for the tenant at once: 16 of 32 here.
    each_backend_with(
        &[("TRIBUTARY_WORKER_CONCURRENCY", "32")],
        |app| async move {
            let fake = FakeHubSpot::start();
            fake.set_rate_limits(2, 1_000, 250_000);
            let p = hubspot(&app, &fake).await;
            // 30 charges at once, one of them with an address HubSpot refuses.
            let now = chrono::Utc::now().timestamp();
            let mut sent = Vec::new();
            for i in 0..30 {
                let email = if i == 17 {
                    "nobody@nowhere".to_string()
                } else {
                    format!("backlog{i}@batch.example")
                };
                let event = charge_event(
                    &format!("evt_backlog{i}"),
                    &format!("ch_backlog{i}"),
                    &email,
                    &format!("Name {i}"),
                    100,
                    now,
                );
                let reply = app.send_event(&p, &event).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
                sent.push((email, reply.str("/event_id")));
            }
            for (email, id) in &sent {
                let done = app.finished_event(&p.tenant.token, id).await;
                if email == "nobody@nowhere" {
                    assert_eq!(done["status"], "failed", "{done}");
                    let delivery = &done["deliveries"][0];
                    assert_eq!(delivery["status"], "dead", "{done}");
                    let message = delivery["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains("Email address nobody@nowhere is invalid"),
                        "{done}"
                    );
                } else {
                    assert_eq!(done["status"], "processed", "{email}: {done}");
                }
            }

            // Every other record written once, with its own name.
            let records = fake.records("contacts");
            assert_eq!(records.len(), 29, "{records:?}");
            for (i, (email, _)) in sent.iter().enumerate().filter(|(i, _)| *i != 17) {
                let record = records
                    .iter()
                    .find(|r| r.properties["email"] == json!(email))
                    .unwrap_or_else(|| panic!("{email} not written"));
                assert_eq!(record.properties["firstname"], json!(format!("Name {i}")));
            }

            // Fewer calls than events, none over HubSpot's 100, none refused for the rate.
            assert_batched(&batch_sizes(&fake), 30, 100);
            // The metric shows calls of more than 5 records (the process's, every test's).
            let calls = metric(
                &app,
                "tributary_crm_batch_records_count{provider=\"hubspot\"}",
            )
            .await
            .expect("the batch metric's count");
            let small = metric(
                &app,
                "tributary_crm_batch_records_bucket{le=\"5.0\",provider=\"hubspot\"}",
            )
            .await
            .expect("the batch metric's bucket of 5");
            assert!(
                calls > small,
                "{calls} HubSpot calls, {small} of 5 records or fewer"
            );
            let refused: Vec<_> = fake
                .log
                .all()
                .into_iter()
                .filter(|l| l.status == 429)
                .collect();
            assert!(refused.is_empty(), "{refused:?}");
            assert_eq!(fake.early_requests(), 0);

            // The connection idle again: one event goes at once, alone.
            tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
            let event = charge_event(
                "evt_idle",
                "ch_idle",
                "idle@batch.example",
                "Idle",
                100,
                now,
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "processed", "{done}");
            assert_eq!(batch_sizes(&fake).last(), Some(&1));
        },
    )
    .await;
}

/// With slots to spare in the rate budget, a busy group's leader waits for its batch to fill
/// instead of sending what little has come: each call counts against the account's daily
/// allocation. The sizes of the calls that wrote.
async fn fast_backlog_sizes(app: &TestApp) -> Vec<usize> {
    let fake = FakeHubSpot::start();
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url,
                         "rate_limit": {"requests": 1000, "per_seconds": 1}}
        }))
        .await;
    app.contact_flow(
        &p,
        json!({"firstname": "{{ object.billing_details.name }}"}),
    )
    .await;
    // The first call is answered 429, Retry-After: 1, so the backlog is waiting when the
    // budget opens again, whatever the machine's speed.
    fake.throttle(1, 1);
    let now = chrono::Utc::now().timestamp();
    let events: Vec<Value> = (0..48)
        .map(|i| {
            let email = format!("fill{i}@batch.example");
            charge_event(
                &format!("evt_fill{i}"),
                &format!("ch_fill{i}"),
                &email,
                "Fill",
                100,
                now,
            )
        })
        .collect();
    for done in backlog(app, &p, &events).await {
        assert_eq!(done["status"], "processed", "{done}");
    }
    assert_eq!(fake.records("contacts").len(), 48);
    batch_sizes(&fake)
}

#[tokio::test]
async fn a_busy_groups_batches_fill_while_the_budget_has_slots_to_spare() {
    each_backend_with(SLOTS, |app| async move {
        let sizes = fast_backlog_sizes(&app).await;
        assert_eq!(sizes.iter().sum::<usize>(), 48, "{sizes:?}");
        // The tenant's 16 slots make a full batch: after the hold one goes out full, and the
        // rest wait for theirs to fill instead of going one or two at a time.
        assert!(sizes.iter().any(|n| *n >= 12), "{sizes:?}");
        assert!(sizes.len() <= 10, "{} calls: {sizes:?}", sizes.len());
    })
    .await;
}

#[tokio::test]
async fn salesforce_upserts_by_external_id_share_collection_calls() {
    each_backend_with(SLOTS, |app| async move {
        let fake = FakeSalesforce::start();
        fake.define_field("Account", "Stripe_Customer_ID__c", true);
        // Two accounts already carry one customer's id: that record's upsert is refused.
        for name in ["Dup 1", "Dup 2"] {
            fake.insert(
                "Account",
                json!({"Name": name, "Stripe_Customer_ID__c": "cus_dup"}),
            );
        }
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "api_version": "60.0",
                             "rate_limit": paced()}
            }))
            .await;
        let flow = json!({
            "name": "Customers to accounts", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.created"]},
            "steps": [{"id": "account", "action": "upsert", "object": "Account",
                       "match": {"Stripe_Customer_ID__c": "{{ object.id }}"},
                       "fields": {"Name": "{{ object.name }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let now = chrono::Utc::now().timestamp();
        let customer = |i: usize| {
            if i == 11 {
                "cus_dup".to_string()
            } else {
                format!("cus_{i}")
            }
        };
        let events: Vec<Value> = (0..24)
            .map(|i| {
                json!({"id": format!("evt_sf{i}"), "object": "event", "api_version": "2024-06-20",
                       "created": now, "livemode": false, "pending_webhooks": 1,
                       "request": {"id": null, "idempotency_key": null}, "type": "customer.created",
                       "data": {"object": {"id": customer(i), "object": "customer",
                                           "name": format!("Customer {i}")}}})
            })
            .collect();
        let done = backlog(&app, &p, &events).await;
        for (i, event) in done.iter().enumerate() {
            if i == 11 {
                assert_eq!(event["status"], "failed", "{event}");
                let message = event["deliveries"][0]["error"]["message"]
                    .as_str()
                    .unwrap_or("");
                assert!(message.contains("DUPLICATE_EXTERNAL_ID"), "{event}");
            } else {
                assert_eq!(event["status"], "processed", "{i}: {event}");
            }
        }
        let accounts = fake.records("Account");
        assert_eq!(accounts.len(), 2 + 23, "{accounts:?}");
        for i in (0..24).filter(|i| *i != 11) {
            let account = accounts
                .iter()
                .find(|a| a["Stripe_Customer_ID__c"] == json!(customer(i)))
                .unwrap_or_else(|| panic!("cus_{i} not written"));
            assert_eq!(account["Name"], json!(format!("Customer {i}")));
        }
        let log = fake.log.all();
        let collections = sizes(
            &log,
            "/composite/sobjects/Account/Stripe_Customer_ID__c",
            "records",
        );
        let singles = log
            .iter()
            .filter(|l| {
                l.method == "PATCH" && l.path.contains("/sobjects/Account/Stripe_Customer_ID__c/")
            })
            .count();
        // A batch of one is the single upsert.
        let mut all = collections.clone();
        all.extend(std::iter::repeat_n(1, singles));
        assert_batched(&all, 24, 200);
        assert!(!collections.is_empty(), "{log:?}");
    })
    .await;
}

#[tokio::test]
async fn zoho_upserts_share_multi_record_calls() {
    each_backend_with(SLOTS, |app| async move {
        let fake = FakeZoho::start();
        let p = app
            .pipeline_with(json!({
                "name": "Zoho CRM", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8",
                             "rate_limit": paced()}
            }))
            .await;
        let flow = json!({
            "name": "Contacts", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "Contacts",
                       "match": {"Email": "{{ object.billing_details.email }}"},
                       "fields": {"Last_Name": "{{ object.billing_details.name }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let now = chrono::Utc::now().timestamp();
        // One address Zoho refuses.
        let email = |i: usize| {
            if i == 5 {
                "nobody@nowhere".to_string()
            } else {
                format!("z{i}@batch.example")
            }
        };
        let events: Vec<Value> = (0..24)
            .map(|i| {
                charge_event(
                    &format!("evt_zb{i}"),
                    &format!("ch_zb{i}"),
                    &email(i),
                    &format!("Name {i}"),
                    100,
                    now,
                )
            })
            .collect();
        let done = backlog(&app, &p, &events).await;
        for (i, event) in done.iter().enumerate() {
            if i == 5 {
                assert_eq!(event["status"], "failed", "{event}");
                let error = &event["deliveries"][0]["error"];
                let message = error["message"].as_str().unwrap_or("");
                assert!(
                    message.contains("INVALID_DATA") && message.contains("Email"),
                    "{event}"
                );
            } else {
                assert_eq!(event["status"], "processed", "{i}: {event}");
            }
        }
        let contacts = fake.records("Contacts");
        assert_eq!(contacts.len(), 23, "{contacts:?}");
        for i in (0..24).filter(|i| *i != 5) {
            let contact = contacts
                .iter()
                .find(|c| c["Email"] == json!(email(i)))
                .unwrap_or_else(|| panic!("{} not written", email(i)));
            assert_eq!(
                contact["Last_Name"],
                json!(format!("Name {i}")),
                "{contact:?}"
            );
        }
        assert_batched(&sizes(&fake.log.all(), "/Contacts/upsert", "data"), 24, 100);
    })
    .await;
}
