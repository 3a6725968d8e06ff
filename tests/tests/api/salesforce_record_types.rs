//! Record types chosen by name, against the fake Salesforce on every backend: a step's
//! `RecordTypeName` (or a name given as `RecordTypeId`) and a connection's `record_type_id`
//! holding a name are resolved through the org's active record types, read once and cached;
//! a name that matches none dead-letters the delivery naming those there are.

use serde_json::{Value, json};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_tests::{Pipeline, TestApp, each_backend};

/// A subscription event; its metadata's `record_type` is what the flows here name.
fn subscription(id: &str, customer: &str, record_type: &str) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "customer.subscription.created",
        "data": {"object": {"id": format!("sub_{id}"), "object": "subscription",
                            "customer": customer, "status": "active",
                            "metadata": {"record_type": record_type}}}
    })
}

/// A connection with `settings` and a flow creating an opportunity per subscription with
/// `fields` besides its name, stage and close date.
async fn opportunity_flow(
    app: &TestApp,
    fake: &FakeSalesforce,
    settings: Value,
    fields: Value,
) -> Pipeline {
    let mut all = json!({"login_url": fake.login_url});
    all.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let p = app
        .pipeline_with(json!({
            "name": "Salesforce", "provider": "salesforce",
            "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                     "username": salesforce::USERNAME,
                     "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
            "settings": all
        }))
        .await;
    let mut step_fields = json!({"Name": "New business {{ object.customer }}",
                                 "StageName": "Prospecting",
                                 "CloseDate": "{{ event.created | date }}"});
    step_fields
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let flow = json!({
        "name": "Subscriptions to opportunities", "connection_id": p.connection_id,
        "trigger": {"events": ["customer.subscription.created"]},
        "steps": [{"id": "opportunity", "action": "create", "object": "Opportunity",
                   "fields": step_fields}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.text
    );
    p
}

fn record_type_queries(fake: &FakeSalesforce) -> usize {
    fake.log
        .all()
        .iter()
        .filter(|l| l.path.contains("FROM+RecordType") || l.path.contains("FROM%20RecordType"))
        .count()
}

fn setup(fake: &FakeSalesforce) -> (String, String) {
    let enterprise = fake.add_record_type("Opportunity", "Enterprise Deal", "Enterprise", true);
    let renewal = fake.add_record_type("Opportunity", "Renewal", "Renewal", true);
    fake.add_record_type("Opportunity", "Legacy", "Legacy", false);
    fake.add_record_type("Account", "Partner", "Partner", true);
    (enterprise, renewal)
}

#[tokio::test]
async fn a_step_names_the_record_type_and_the_lookup_is_cached() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (enterprise, renewal) = setup(&fake);
        let p = opportunity_flow(
            &app,
            &fake,
            json!({}),
            json!({"RecordTypeName": "{{ object.metadata.record_type }}"}),
        )
        .await;
        // By DeveloperName, and by label.
        let done = app
            .deliver(&p, &subscription("evt_rt1", "cus_a", "Enterprise"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let done = app
            .deliver(&p, &subscription("evt_rt2", "cus_b", "Renewal"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let mut types: Vec<String> = fake
            .records("Opportunity")
            .iter()
            .map(|r| r["RecordTypeId"].as_str().unwrap().to_string())
            .collect();
        types.sort();
        let mut wanted = vec![enterprise, renewal];
        wanted.sort();
        assert_eq!(types, wanted);
        assert_eq!(record_type_queries(&fake), 1, "read once, then cached");

        // A record type added since is found by reading them again once.
        let added = fake.add_record_type("Opportunity", "Expansion Deal", "Expansion", true);
        let done = app
            .deliver(&p, &subscription("evt_rt3", "cus_c", "Expansion Deal"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let made = fake.records("Opportunity");
        assert_eq!(made.last().unwrap()["RecordTypeId"], added.as_str());
        assert_eq!(record_type_queries(&fake), 2);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_connections_record_type_and_a_steps_record_type_id_may_be_names() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (enterprise, renewal) = setup(&fake);
        let p = opportunity_flow(
            &app,
            &fake,
            json!({"record_type_id": "Enterprise Deal"}),
            json!({}),
        )
        .await;
        let done = app.deliver(&p, &subscription("evt_rt4", "cus_d", "")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            fake.records("Opportunity")[0]["RecordTypeId"],
            enterprise.as_str()
        );
        // A name where the id goes, ignoring case; it wins over the connection's.
        let p = opportunity_flow(
            &app,
            &fake,
            json!({"record_type_id": "Enterprise"}),
            json!({"RecordTypeId": "renewal"}),
        )
        .await;
        let done = app.deliver(&p, &subscription("evt_rt5", "cus_e", "")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            fake.records("Opportunity")[1]["RecordTypeId"],
            renewal.as_str()
        );
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_record_type_name_dead_letters_listing_the_active_ones() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        setup(&fake);
        let p = opportunity_flow(
            &app,
            &fake,
            json!({}),
            json!({"RecordTypeName": "{{ object.metadata.record_type }}"}),
        )
        .await;
        // An inactive record type is not one to choose.
        let done = app
            .deliver(&p, &subscription("evt_rt6", "cus_f", "Legacy"))
            .await;
        let delivery = &done["deliveries"][0];
        assert_eq!(delivery["status"], "dead", "{done}");
        assert_eq!(delivery["error"]["kind"], "invalid", "{done}");
        let message = delivery["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"Legacy\""), "{message}");
        assert!(
            message.contains("Enterprise (Enterprise Deal)"),
            "{message}"
        );
        assert!(message.contains("Renewal (Renewal)"), "{message}");
        assert!(!message.contains("Partner"), "{message}");
        assert!(fake.records("Opportunity").is_empty());
        fake.stop().await;
    })
    .await;
}
