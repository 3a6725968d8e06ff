//! The review queue against the fake HubSpot: a write whose record is in doubt waits for a
//! person, the decision is carried out once, and the Stripe object follows it from then on.

use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot, Record};
use tributary_tests::{Pipeline, TestApp, each_backend, wait_for};

/// A `customer.*` event for customer `cus` of `email` and `phone`.
fn customer_event(id: &str, kind: &str, cus: &str, email: &str, phone: &str) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": kind,
        "data": {"object": {
            "id": cus, "object": "customer", "email": email, "name": "Ana Lopez",
            "phone": phone, "metadata": {"company": "Acme"}
        }}
    })
}

/// A HubSpot pipeline whose customers flow upserts contacts by `matched` with `review`.
async fn reviewed_pipeline(
    app: &TestApp,
    fake: &FakeHubSpot,
    matched: Value,
    review: Value,
) -> Pipeline {
    fake.define_property("contacts", "stripe_customer_id", false);
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url}
        }))
        .await;
    let flow = json!({
        "name": "Customers", "connection_id": p.connection_id,
        "trigger": {"events": ["customer.created", "customer.updated"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": matched,
                   "fields": {"firstname": "{{ object.name | split(' ') | first }}",
                              "lastname": "{{ object.name | split(' ') | last }}",
                              "company": "{{ object.metadata.company }}",
                              "phone": "{{ object.phone }}",
                              "stripe_customer_id": "{{ object.id }}"},
                   "review": review}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

/// Two contacts that look like Ana Lopez of Acme, and one that does not.
fn near_duplicates(fake: &FakeHubSpot) -> (String, String) {
    let a = fake.insert(
        "contacts",
        json!({"email": "ana.lopez@acme.io", "firstname": "Ana", "lastname": "Lopez",
               "company": "Acme", "phone": "+1-555-0101", "jobtitle": "CFO"}),
    );
    let b = fake.insert(
        "contacts",
        json!({"email": "ana@acme.com", "firstname": "Ana", "lastname": "Lopez", "company": "Acme",
               "website": "acme.io"}),
    );
    fake.insert(
        "contacts",
        json!({"email": "bob@acme.io", "firstname": "Bob", "lastname": "Lopez", "company": "Acme"}),
    );
    (a, b)
}

fn contact<'r>(records: &'r [Record], id: &str) -> &'r Record {
    records
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("contact {id} in {records:?}"))
}

/// The tenant's open review items, once there are `n`.
async fn open_reviews(app: &TestApp, p: &Pipeline, n: usize) -> Vec<Value> {
    wait_for(20, "the review item", || async {
        let items = app.get("/v1/reviews?status=open", &p.tenant.token).await;
        assert_eq!(items.status, StatusCode::OK, "{}", items.text);
        let data = items.body["data"].as_array().cloned().unwrap_or_default();
        // The item is kept first, then its delivery is held.
        let held = data.iter().all(|item| item["delivery_status"] == "waiting");
        (data.len() == n && held).then_some(data)
    })
    .await
}

async fn decide(app: &TestApp, p: &Pipeline, id: &str, body: Value) -> tributary_tests::Reply {
    app.post(&format!("/v1/reviews/{id}/decision"), &p.tenant.token, body)
        .await
}

/// A decision needs a candidate's id, and the first one stands.
async fn decides_once(app: &TestApp, p: &Pipeline, id: &str, a: &str, b: &str) {
    let no_record = decide(app, p, id, json!({"decision": "pick"})).await;
    assert_eq!(no_record.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        no_record.body["errors"][0]["field"], "record_id",
        "{}",
        no_record.text
    );
    let stranger = decide(app, p, id, json!({"decision": "pick", "record_id": a})).await;
    assert_eq!(
        stranger.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stranger.text
    );
    assert!(
        stranger.text.contains(b),
        "names the candidates: {}",
        stranger.text
    );

    let picked = decide(app, p, id, json!({"decision": "pick", "record_id": b})).await;
    assert_eq!(picked.status, StatusCode::OK, "{}", picked.text);
    assert_eq!(picked.body["status"], "decided");
    assert_eq!(picked.body["decision"], "pick");
    assert!(
        picked.body["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    let again = decide(app, p, id, json!({"decision": "create"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(
        again.text.contains("already decided: pick"),
        "{}",
        again.text
    );
}

/// After the pick: Stripe's redelivery, a forced replay and the customer's next event all
/// write the picked contact, and nothing new.
async fn follows_the_pick(
    app: &TestApp,
    p: &Pipeline,
    fake: &FakeHubSpot,
    event_id: &str,
    b: &str,
) {
    // Stripe's redelivery is a duplicate; a forced replay writes B again and makes nothing.
    let redelivered = app
        .send_event(
            p,
            &customer_event(
                "evt_r1",
                "customer.created",
                "cus_r1",
                "ana@acme.co",
                "+1-555-0199",
            ),
        )
        .await;
    assert_eq!(redelivered.status, StatusCode::OK, "{}", redelivered.text);
    assert_eq!(redelivered.body["duplicate"], true, "{}", redelivered.text);
    let replay = app
        .post(
            &format!("/v1/events/{event_id}/replay"),
            &p.tenant.token,
            json!({"force": true}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
    let replayed = app.finished_event(&p.tenant.token, event_id).await;
    assert_eq!(
        replayed["deliveries"][0]["crm_record_id"],
        json!(b),
        "{replayed}"
    );
    assert_eq!(fake.records("contacts").len(), 3);

    // A later event of the same customer follows the link to B without asking again.
    let later = app
        .deliver(
            p,
            &customer_event(
                "evt_r2",
                "customer.updated",
                "cus_r1",
                "ana@acme.co",
                "+1-555-0142",
            ),
        )
        .await;
    assert_eq!(later["status"], "processed", "{later}");
    let contacts = fake.records("contacts");
    assert_eq!(contacts.len(), 3);
    assert_eq!(contact(&contacts, b).properties["phone"], "+1-555-0142");
    let all = app.get("/v1/reviews", &p.tenant.token).await;
    assert_eq!(
        all.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        all.text
    );
}

#[tokio::test]
async fn a_near_duplicate_waits_for_a_person_and_the_picked_contact_keeps_the_customer() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let (a, b) = near_duplicates(&fake);
        let p = reviewed_pipeline(
            &app,
            &fake,
            json!({"email": "{{ object.email }}"}),
            json!({"policy": "pause", "typos": 2,
                   "similar": {"firstname": "{{ object.name | split(' ') | first }}",
                               "lastname": "{{ object.name | split(' ') | last }}",
                               "company": "{{ object.metadata.company }}"}}),
        )
        .await;

        // A typo of B's address: no contact has it, two look like the same person, and only
        // B's address is within two edits.
        let sent = app
            .send_event(
                &p,
                &customer_event(
                    "evt_r1",
                    "customer.created",
                    "cus_r1",
                    "ana@acme.co",
                    "+1-555-0199",
                ),
            )
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let items = open_reviews(&app, &p, 1).await;
        let item = &items[0];
        assert_eq!(item["reason"], "similar", "{item}");
        assert_eq!(item["object"], "contacts");
        assert_eq!(item["delivery_status"], "waiting");
        assert_eq!(item["can_merge"], true, "HubSpot merges contacts");
        assert_eq!(item["incoming"]["match"]["email"], "ana@acme.co");
        let candidates: Vec<&str> = item["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            candidates,
            [b.as_str()],
            "A's address is no typo of this one: {item}"
        );
        assert_eq!(item["candidates"][0]["record"]["email"], "ana@acme.com");
        let differs = &item["candidates"][0]["differs"];
        assert!(
            differs.as_array().unwrap().contains(&json!("email")),
            "{differs}"
        );
        assert!(
            !differs.as_array().unwrap().contains(&json!("lastname")),
            "{differs}"
        );
        assert_eq!(
            fake.records("contacts").len(),
            3,
            "nothing written while it waits"
        );
        let event_id = sent.str("/event_id");
        let event = app
            .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
            .await;
        assert_ne!(event.body["status"], "processed", "{}", event.text);

        let id = item["id"].as_str().unwrap();
        decides_once(&app, &p, id, &a, &b).await;

        let done = app.finished_event(&p.tenant.token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["deliveries"][0]["crm_record_id"], json!(b), "{done}");
        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 3, "no new contact: {contacts:?}");
        assert_eq!(
            contact(&contacts, &b).properties["stripe_customer_id"],
            "cus_r1"
        );
        assert!(
            contact(&contacts, &a)
                .properties
                .get("stripe_customer_id")
                .is_none()
        );
        let shown = app.get(&format!("/v1/reviews/{id}"), &p.tenant.token).await;
        assert_eq!(shown.body["delivery_status"], "succeeded", "{}", shown.text);

        follows_the_pick(&app, &p, &fake, &event_id, &b).await;
        fake.stop().await;
    })
    .await;
}

/// A `several` item merged into `kept` by a person; the event once it has finished.
async fn merged_by_a_person(
    app: &TestApp,
    p: &Pipeline,
    item: &Value,
    event_id: &str,
    kept: &str,
) -> Value {
    assert_eq!(item["reason"], "several", "{item}");
    let id = item["id"].as_str().unwrap();
    let merged = decide(app, p, id, json!({"decision": "merge", "record_id": kept})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.text);
    let done = app.finished_event(&p.tenant.token, event_id).await;
    assert_eq!(done["status"], "processed", "{done}");
    done
}

#[tokio::test]
async fn several_matches_are_merged_by_a_person_or_by_the_steps_rules() {
    each_backend(|app| async move {
        // A person merges: the match (first and last name) finds both Ana Lopez contacts.
        let fake = FakeHubSpot::start();
        let (a, b) = near_duplicates(&fake);
        let by_name = json!({"firstname": "{{ object.name | split(' ') | first }}",
                             "lastname": "{{ object.name | split(' ') | last }}"});
        let p = reviewed_pipeline(&app, &fake, by_name.clone(), json!({"policy": "pause"})).await;
        let sent = app
            .send_event(
                &p,
                &customer_event(
                    "evt_m1",
                    "customer.created",
                    "cus_m1",
                    "ana@acme.io",
                    "+1-555-0199",
                ),
            )
            .await;
        let items = open_reviews(&app, &p, 1).await;
        assert_eq!(items[0]["candidates"].as_array().unwrap().len(), 2);
        merged_by_a_person(&app, &p, &items[0], &sent.str("/event_id"), &a).await;
        assert_eq!(
            fake.merges(),
            [("contacts".to_string(), a.clone(), b.clone())]
        );
        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 2, "B was merged into A: {contacts:?}");
        assert_eq!(
            contact(&contacts, &a).properties["stripe_customer_id"],
            "cus_m1"
        );
        fake.stop().await;

        // The step's own rules: the most complete candidate (A, with a phone and a job title)
        // survives and takes B's website, which it lacks; no person is asked.
        let fake = FakeHubSpot::start();
        let (a, b) = near_duplicates(&fake);
        let p = reviewed_pipeline(
            &app,
            &fake,
            by_name,
            json!({"policy": "merge", "winner": "most_complete", "copy": ["website", "jobtitle"]}),
        )
        .await;
        let done = app
            .deliver(
                &p,
                &customer_event("evt_m2", "customer.created", "cus_m2", "ana@acme.io", ""),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["deliveries"][0]["crm_record_id"], json!(a), "{done}");
        assert_eq!(
            fake.merges(),
            [("contacts".to_string(), a.clone(), b.clone())]
        );
        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 2);
        assert_eq!(contact(&contacts, &a).properties["website"], "acme.io");
        assert_eq!(
            contact(&contacts, &a).properties["stripe_customer_id"],
            "cus_m2"
        );
        let operation: Value = done["deliveries"][0]["operation"].clone();
        assert_eq!(operation["decided"], "merge", "{operation}");
        let none = app.get("/v1/reviews", &p.tenant.token).await;
        assert_eq!(none.body["data"], json!([]), "{}", none.text);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_dismissed_item_writes_nothing_and_a_long_wait_alerts() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        near_duplicates(&fake);
        let p = reviewed_pipeline(
            &app,
            &fake,
            json!({"email": "{{ object.email }}"}),
            json!({"policy": "pause", "alert_after_minutes": 30,
                   "similar": {"lastname": "{{ object.name | split(' ') | last }}",
                               "company": "{{ object.metadata.company }}"}}),
        )
        .await;
        let sent = app
            .send_event(
                &p,
                &customer_event(
                    "evt_d1",
                    "customer.created",
                    "cus_d1",
                    "ana@elsewhere.io",
                    "",
                ),
            )
            .await;
        let items = open_reviews(&app, &p, 1).await;
        assert_eq!(
            items[0]["candidates"].as_array().unwrap().len(),
            3,
            "every Lopez of Acme"
        );
        // The console's inbox shows it side by side, with a button per decision.
        let jar = crate::console::signed_in(&app, &p.tenant.email).await;
        let (status, inbox) = crate::console::page(&app, "/console/reviews", &jar).await;
        assert_eq!(status, StatusCode::OK, "{inbox}");
        assert!(inbox.contains("<mark>ana.lopez@acme.io</mark>"), "{inbox}");
        assert!(
            inbox.contains("Merge all into"),
            "HubSpot merges contacts: {inbox}"
        );

        // Past its alert time, the item is told to a channel that takes review.waiting.
        let channel = app
            .post(
                "/v1/notification-channels",
                &p.tenant.token,
                json!({"name": "Ops", "kind": "webhook", "url": "http://127.0.0.1:9/hooks",
                       "alerts": ["review.waiting"]}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
        let id = items[0]["id"].as_str().unwrap().to_string();
        entity::reviews::Entity::update_many()
            .set(entity::reviews::ActiveModel {
                alert_at: Set(chrono::Utc::now() - chrono::Duration::minutes(1)),
                ..Default::default()
            })
            .filter(entity::reviews::Column::Id.eq(id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
        let keyring = std::sync::Arc::new(
            tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING).unwrap(),
        );
        let notifier = tributary_worker::alerts::Notifier::new(
            app.db.clone(),
            keyring,
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(3600),
            tributary_worker::settings::VendorUrls::Any,
        )
        .unwrap();
        notifier.check().await.unwrap();
        let alerts = app
            .get(
                &format!("/v1/notification-channels/{}/alerts", channel.str("/id")),
                &p.tenant.token,
            )
            .await;
        assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.text);
        let told: Vec<&Value> = alerts.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "review.waiting")
            .collect();
        assert_eq!(told.len(), 1, "{}", alerts.text);
        assert!(
            told[0]["summary"].as_str().unwrap().contains(&id),
            "{}",
            told[0]
        );

        let dismissed = decide(&app, &p, &id, json!({"decision": "dismiss"})).await;
        assert_eq!(dismissed.status, StatusCode::OK, "{}", dismissed.text);
        let done = app
            .finished_event(&p.tenant.token, &sent.str("/event_id"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["deliveries"][0]["status"], "skipped");
        assert_eq!(done["deliveries"][0]["reason"], "review: dismissed");
        assert_eq!(fake.records("contacts").len(), 3, "nothing written");
        // Erasing the customer's data on request takes the item with it.
        let erased = app
            .post(
                "/v1/erasures",
                &p.tenant.token,
                json!({"email": "ana@elsewhere.io"}),
            )
            .await;
        assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
        let left = app.get("/v1/reviews", &p.tenant.token).await;
        assert_eq!(left.body["data"], json!([]), "{}", left.text);
        fake.stop().await;
    })
    .await;
}

/// A Salesforce pipeline whose customers flow has the one `step`.
async fn salesforce_pipeline(
    app: &TestApp,
    fake: &tributary_fakes::salesforce::FakeSalesforce,
    step: Value,
) -> Pipeline {
    use tributary_fakes::salesforce;
    let p = app
        .pipeline_with(json!({
            "name": "Salesforce", "provider": "salesforce",
            "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                     "username": salesforce::USERNAME,
                     "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
            "settings": {"login_url": fake.login_url, "api_version": "60.0"}
        }))
        .await;
    let flow = json!({
        "name": "Customers", "connection_id": p.connection_id,
        "trigger": {"events": ["customer.created", "customer.updated"]},
        "steps": [step]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

/// A review item of Opportunities on the pipeline's connection, as the worker writes one.
async fn opportunity_item(app: &TestApp, p: &Pipeline, done: &Value) -> String {
    let row = crate::isolation::review_row(
        &p.tenant.id,
        "del_opportunity",
        done["id"].as_str().unwrap(),
        done["deliveries"][0]["flow_id"].as_str().unwrap(),
        &p.connection_id,
    );
    let row = entity::reviews::ActiveModel {
        step: Set("deal".into()),
        object: Set("Opportunity".into()),
        summary: Set("2 Opportunity records match Name Acme".into()),
        incoming: Set(r#"{"match":{"Name":"Acme"},"fields":{}}"#.into()),
        candidates: Set(r#"[{"id":"006A"},{"id":"006B"}]"#.into()),
        ..row
    };
    crate::isolation::insert_review(app, row).await
}

#[tokio::test]
async fn a_person_merges_salesforce_contacts_through_its_soap_api() {
    use tributary_fakes::salesforce::FakeSalesforce;
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let a = fake.insert(
            "Contact",
            json!({"LastName": "Lopez", "Phone": "+1-555-0101"}),
        );
        let b = fake.insert(
            "Contact",
            json!({"LastName": "Lopez", "Email": "ana@acme.com"}),
        );
        let p = salesforce_pipeline(
            &app,
            &fake,
            json!({"id": "contact", "action": "upsert", "object": "Contact",
                   "match": {"LastName": "{{ object.name | split(' ') | last }}"},
                   "fields": {"Phone": "{{ object.phone }}"},
                   "review": {"policy": "pause"}}),
        )
        .await;
        let sent = app
            .send_event(
                &p,
                &customer_event(
                    "evt_sm1",
                    "customer.created",
                    "cus_sm1",
                    "ana@acme.co",
                    "+1-555-0177",
                ),
            )
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let items = open_reviews(&app, &p, 1).await;
        assert_eq!(items[0]["can_merge"], true, "Salesforce merges Contacts");
        let done = merged_by_a_person(&app, &p, &items[0], &sent.str("/event_id"), &a).await;
        assert_eq!(done["deliveries"][0]["crm_record_id"], json!(a), "{done}");
        assert_eq!(
            fake.merges(),
            [("Contact".to_string(), a.clone(), b.clone())]
        );
        let kept = fake.record("Contact", &a).unwrap();
        assert_eq!(
            kept["Email"], "ana@acme.com",
            "the merged contact's email filled the gap"
        );
        assert_eq!(
            kept["Phone"], "+1-555-0177",
            "the event's own value is written to it"
        );
        let gone = fake
            .records("Contact")
            .into_iter()
            .find(|r| r["Id"] == json!(b))
            .unwrap();
        assert_eq!(gone["IsDeleted"], true, "{gone:?}");
        assert_eq!(gone["MasterRecordId"], json!(a));

        // Opportunities do not merge at Salesforce: a person may pick or create, not merge.
        let opportunity = opportunity_item(&app, &p, &done).await;
        let shown = app
            .get(&format!("/v1/reviews/{opportunity}"), &p.tenant.token)
            .await;
        assert_eq!(shown.body["can_merge"], false, "{}", shown.text);
        let refused = decide(
            &app,
            &p,
            &opportunity,
            json!({"decision": "merge", "record_id": "006A"}),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(
            refused.body["errors"][0]["field"], "decision",
            "{}",
            refused.text
        );
    })
    .await;
}

#[tokio::test]
async fn a_salesforce_duplicate_rule_refusal_waits_for_a_person_who_creates_anyway() {
    use tributary_fakes::salesforce::FakeSalesforce;
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        // The org alerts on a Contact with another's last name and phone.
        fake.duplicate_rule("Contact", &["LastName", "Phone"], true);
        let existing = fake.insert(
            "Contact",
            json!({"LastName": "Lopez", "Email": "ana@acme.com", "Phone": "+1-555-0199"}),
        );
        let p = salesforce_pipeline(
            &app,
            &fake,
            json!({"id": "contact", "action": "upsert", "object": "Contact",
                   "match": {"Email": "{{ object.email }}", "LastName": "{{ object.name | split(' ') | last }}"},
                   "fields": {"Phone": "{{ object.phone }}"},
                   "review": {"policy": "pause"}}),
        )
        .await;
        let sent = app
            .send_event(&p, &customer_event("evt_s1", "customer.created", "cus_s1", "ana@acme.co", "+1-555-0199"))
            .await;
        let items = open_reviews(&app, &p, 1).await;
        let item = &items[0];
        assert_eq!(item["reason"], "duplicates", "{item}");
        assert!(item["summary"].as_str().unwrap().contains("salesforce's duplicate rules"), "{item}");
        assert_eq!(item["candidates"][0]["id"], json!(existing), "{item}");
        assert_eq!(item["candidates"][0]["record"]["Email"], "ana@acme.com", "the record's details");
        assert_eq!(fake.records("Contact").len(), 1);

        assert_eq!(item["can_merge"], true, "Salesforce merges Contacts");

        // A person says it is someone else: saved despite the alerting rule.
        let decided = decide(&app, &p, item["id"].as_str().unwrap(), json!({"decision": "create"})).await;
        assert_eq!(decided.status, StatusCode::OK, "{}", decided.text);
        let done = app.finished_event(&p.tenant.token, &sent.str("/event_id")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let contacts = fake.records("Contact");
        assert_eq!(contacts.len(), 2, "{contacts:?}");
        let made = done["deliveries"][0]["crm_record_id"].as_str().unwrap().to_string();
        assert_ne!(made, existing);

        // The customer's next event updates the contact the decision made.
        let later = app
            .deliver(&p, &customer_event("evt_s2", "customer.updated", "cus_s1", "ana@acme.co", "+1-555-0142"))
            .await;
        assert_eq!(later["status"], "processed", "{later}");
        assert_eq!(later["deliveries"][0]["crm_record_id"], json!(made), "{later}");
        assert_eq!(fake.records("Contact").len(), 2);
        assert_eq!(fake.record("Contact", &made).unwrap()["Phone"], "+1-555-0142");
        let all = app.get("/v1/reviews", &p.tenant.token).await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 1, "{}", all.text);
    })
    .await;
}

#[tokio::test]
async fn the_sandbox_merges_similar_records_by_the_steps_rules() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        // New customers become contacts as they are; a changed customer is reviewed.
        let step = |review: Option<Value>| {
            let mut step = json!({"id": "contact", "action": "upsert", "object": "contacts",
                "match": {"email": "{{ object.email }}"},
                "fields": {"lastname": "{{ object.name | split(' ') | last }}",
                           "phone": "{{ object.phone or '' }}"}});
            if let Some(review) = review {
                step["review"] = review;
            }
            step
        };
        for (name, kind, review) in [
            ("New", "customer.created", None),
            (
                "Changed",
                "customer.updated",
                Some(json!({"policy": "merge", "similar": {"lastname": "{{ object.name | split(' ') | last }}"}})),
            ),
        ] {
            let flow = json!({"name": name, "connection_id": p.connection_id,
                              "trigger": {"events": [kind]}, "steps": [step(review)]});
            let created = app.post("/v1/flows", &p.tenant.token, flow).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        }
        for (id, cus, email, phone) in [("evt_x1", "cus_x1", "ana@a.io", ""), ("evt_x2", "cus_x2", "ana@b.io", "+1-555-0100")] {
            let done = app.deliver(&p, &customer_event(id, "customer.created", cus, email, phone)).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        let before = app.records(&p.tenant.token, &p.connection_id, "contacts").await;
        assert_eq!(before.len(), 2, "{before:?}");

        let done = app
            .deliver(&p, &customer_event("evt_x3", "customer.updated", "cus_x3", "ana@c.io", ""))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let after = app.records(&p.tenant.token, &p.connection_id, "contacts").await;
        assert_eq!(after.len(), 1, "the two Lopez contacts are one now: {after:?}");
        let kept = &after[0];
        let with_phone = before.iter().find(|r| r["fields"]["phone"] == "+1-555-0100").unwrap();
        assert_eq!(kept["id"], with_phone["id"], "the most complete survives: {kept}");
        // The event's own values are written to it: this customer has no phone.
        assert_eq!(kept["fields"]["phone"], "", "{kept}");
        assert_eq!(done["deliveries"][0]["operation"]["decided"], "merge", "{done}");
    })
    .await;
}
