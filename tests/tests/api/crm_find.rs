//! The `find` step kind end to end against the fake Salesforce, HubSpot and Zoho CRM and the
//! sandbox: a record found by every match value is read by the next step (its id and its
//! selected fields); finding none succeeds with a count of 0 and lets a `when` create instead.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn paid(event_id: &str, email: &str, name: &str) -> Value {
    charge_event(
        event_id,
        &format!("ch_{event_id}"),
        email,
        name,
        4200,
        now(),
    )
}

async fn create_flow(app: &TestApp, p: &Pipeline, steps: Value) {
    let flow = json!({
        "name": "Find then follow up", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]}, "steps": steps
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

/// The event's delivery of `step`.
fn delivery<'a>(event: &'a Value, step: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["step"] == step))
        .unwrap_or_else(|| panic!("no delivery of {step}: {event}"))
}

/// What the latest attempt of the event's `step` answered, as later steps read it.
async fn answer(app: &TestApp, p: &Pipeline, event: &Value, step: &str) -> Value {
    let id = delivery(event, step)["id"].as_str().unwrap().to_string();
    let history = app
        .get(&format!("/v1/deliveries/{id}"), &p.tenant.token)
        .await;
    let attempts = history.body["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let excerpt = attempts
        .last()
        .and_then(|a| a["response_excerpt"].as_str())
        .unwrap_or_else(|| panic!("no answer of {step}: {}", history.text));
    serde_json::from_str(excerpt).unwrap_or_else(|_| panic!("not JSON: {excerpt}"))
}

/// Checks the find delivery of an event that matched nothing, and that its `when`s chose the
/// create.
async fn found_none(app: &TestApp, p: &Pipeline, event: &Value, followed: &str, created: &str) {
    assert_eq!(event["status"], "processed", "{event}");
    let known = delivery(event, "known");
    assert_eq!(known["status"], "succeeded", "{known}");
    assert_eq!(known["action"], "find");
    let id = known["crm_record_id"].as_str().unwrap_or_default();
    assert!(id.is_empty(), "no record found, no id: {known}");
    assert_eq!(
        answer(app, p, event, "known").await,
        json!({"records": [], "count": 0})
    );
    assert_eq!(delivery(event, followed)["status"], "skipped", "{event}");
    assert_eq!(delivery(event, created)["status"], "succeeded", "{event}");
}

#[tokio::test]
async fn a_salesforce_find_reads_the_record_matching_every_value() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let ada = fake.insert(
            "Contact",
            json!({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com",
                   "Phone": "+44 20 7946 0000"}),
        );
        // The same email, another name: only the record matching both values is found.
        fake.insert(
            "Contact",
            json!({"FirstName": "Augusta", "LastName": "Byron", "Email": "ada@example.com"}),
        );
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "api_version": "60.0"}
            }))
            .await;
        create_flow(
            &app,
            &p,
            json!([
                {"id": "known", "action": "find", "object": "Contact",
                 "match": {"Email": "{{ object.billing_details.email }}", "LastName": "Lovelace"},
                 "select": ["FirstName", "Phone"]},
                {"id": "thanks", "action": "create", "object": "Task", "when": "steps.known.id",
                 "fields": {"WhoId": "{{ steps.known.id }}",
                            "Subject": "Thank {{ steps.known.response.records[0].FirstName }}",
                            "Description": "{{ steps.known.response.count }} found; call {{ steps.known.response.records[0].Phone }}"}},
                {"id": "lead", "action": "create", "object": "Lead", "when": "not steps.known.id",
                 "fields": {"LastName": "{{ object.billing_details.name }}",
                            "Email": "{{ object.billing_details.email }}",
                            "Company": "Found {{ steps.known.response.count }}"}}
            ]),
        )
        .await;

        let done = app
            .deliver(&p, &paid("evt_sf_find1", "ada@example.com", "Ada Lovelace"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let known = delivery(&done, "known");
        assert_eq!(known["status"], "succeeded", "{known}");
        assert_eq!(known["crm_record_id"], ada.as_str());
        assert_eq!(
            answer(&app, &p, &done, "known").await,
            json!({"records": [{"id": ada, "FirstName": "Ada", "Phone": "+44 20 7946 0000"}],
                   "count": 1})
        );
        let queries = fake.log.matching("GET", "/services/data/v60.0/query");
        let soql = queries
            .iter()
            .map(|l| l.path.replace('+', " "))
            .find(|path| path.contains("FROM%20Contact") || path.contains("FROM Contact"))
            .unwrap_or_else(|| panic!("no Contact query: {queries:?}"));
        assert!(soql.contains("LIMIT%20100") || soql.contains("LIMIT 100"), "{soql}");
        let tasks = fake.records("Task");
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0]["WhoId"], ada.as_str());
        assert_eq!(tasks[0]["Subject"], "Thank Ada");
        assert_eq!(tasks[0]["Description"], "1 found; call +44 20 7946 0000");
        assert_eq!(delivery(&done, "lead")["status"], "skipped");
        assert!(fake.records("Lead").is_empty());

        let none = app
            .deliver(&p, &paid("evt_sf_find2", "grace@example.com", "Grace Hopper"))
            .await;
        found_none(&app, &p, &none, "thanks", "lead").await;
        let leads = fake.records("Lead");
        assert_eq!(leads.len(), 1, "{leads:?}");
        assert_eq!(leads[0]["Email"], "grace@example.com");
        assert_eq!(leads[0]["Company"], "Found 0");
        assert_eq!(fake.records("Task").len(), 1, "no task for nobody");
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_hubspot_find_reads_the_selected_properties() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let ada = fake.insert(
            "contacts",
            json!({"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace",
                   "phone": "+44 20 7946 0000", "company": "Analytical Engines"}),
        );
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        create_flow(
            &app,
            &p,
            json!([
                {"id": "known", "action": "find", "object": "contacts",
                 "match": {"email": "{{ object.billing_details.email }}", "lastname": "Lovelace"},
                 "select": ["firstname", "phone"]},
                {"id": "deal", "action": "create", "object": "deals", "when": "steps.known.id",
                 "fields": {"dealname": "Thanks {{ steps.known.response.records[0].firstname }}",
                            "description": "call {{ steps.known.response.records[0].phone }}"},
                 "associate": [{"object": "contacts", "id": "{{ steps.known.id }}"}]},
                {"id": "contact", "action": "create", "object": "contacts",
                 "when": "not steps.known.id",
                 "fields": {"email": "{{ object.billing_details.email }}",
                            "lastname": "found {{ steps.known.response.count }}"}}
            ]),
        )
        .await;

        let done = app
            .deliver(&p, &paid("evt_hs_find1", "Ada@Example.com", "Ada Lovelace"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(delivery(&done, "known")["crm_record_id"], ada.as_str());
        let found = answer(&app, &p, &done, "known").await;
        assert_eq!(found["count"], 1, "{found}");
        let record = &found["records"][0];
        assert_eq!(record["id"], ada.as_str());
        assert_eq!(record["firstname"], "Ada");
        assert_eq!(record["phone"], "+44 20 7946 0000");
        assert!(
            record.get("company").is_none(),
            "only what was selected: {record}"
        );
        let searches = fake.log.matching("POST", "/crm/v3/objects/contacts/search");
        let body: Value = serde_json::from_str(&searches[0].body).unwrap();
        assert_eq!(body["properties"], json!(["firstname", "phone"]));
        assert_eq!(body["limit"], 100);
        assert_eq!(
            body["filterGroups"][0]["filters"].as_array().unwrap().len(),
            2
        );
        let deals = fake.records("deals");
        assert_eq!(deals.len(), 1, "{deals:?}");
        assert_eq!(deals[0].properties["dealname"], "Thanks Ada");
        assert_eq!(deals[0].properties["description"], "call +44 20 7946 0000");
        assert_eq!(
            fake.associations(),
            vec![(
                "deals".to_string(),
                deals[0].id.clone(),
                "contacts".to_string(),
                ada.clone()
            )]
        );

        let none = app
            .deliver(
                &p,
                &paid("evt_hs_find2", "grace@example.com", "Grace Hopper"),
            )
            .await;
        found_none(&app, &p, &none, "deal", "contact").await;
        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 2, "{contacts:?}");
        let grace = contacts
            .iter()
            .find(|c| c.properties["email"] == "grace@example.com")
            .expect("grace was created");
        assert_eq!(grace.properties["lastname"], "found 0");
        assert_eq!(fake.records("deals").len(), 1);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_zoho_find_searches_by_every_value_with_the_selected_fields() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        let ada = fake.insert(
            "Contacts",
            json!({"First_Name": "Ada", "Last_Name": "Lovelace", "Email": "ada@example.com",
                   "Phone": "+44 20 7946 0000", "Mailing_City": "London"}),
        );
        let p = app
            .pipeline_with(json!({
                "name": "Zoho CRM", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8"}
            }))
            .await;
        create_flow(
            &app,
            &p,
            json!([
                {"id": "known", "action": "find", "object": "Contacts",
                 "match": {"Email": "{{ object.billing_details.email }}", "Last_Name": "Lovelace"},
                 "select": ["First_Name", "Phone"]},
                {"id": "note", "action": "update", "object": "Contacts", "when": "steps.known.id",
                 "record_id": "{{ steps.known.id }}",
                 "fields": {"Description": "Paid by {{ steps.known.response.records[0].First_Name }}; call {{ steps.known.response.records[0].Phone }}"}},
                {"id": "contact", "action": "create", "object": "Contacts",
                 "when": "not steps.known.id",
                 "fields": {"Email": "{{ object.billing_details.email }}",
                            "Last_Name": "found {{ steps.known.response.count }}"}}
            ]),
        )
        .await;

        let done = app
            .deliver(&p, &paid("evt_zo_find1", "ada@example.com", "Ada Lovelace"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(delivery(&done, "known")["crm_record_id"], ada.as_str());
        let found = answer(&app, &p, &done, "known").await;
        assert_eq!(found["count"], 1, "{found}");
        assert_eq!(found["records"][0]["id"], ada.as_str());
        assert_eq!(found["records"][0]["First_Name"], "Ada");
        assert!(
            found["records"][0].get("Mailing_City").is_none(),
            "only the fields selected: {found}"
        );
        let searches = fake.log.matching("GET", "/crm/v8/Contacts/search");
        let asked = &searches[0].path;
        assert!(asked.contains("fields=First_Name%2CPhone"), "{asked}");
        assert!(asked.contains("per_page=100"), "{asked}");
        let contacts = fake.records("Contacts");
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(contacts[0]["Description"], "Paid by Ada; call +44 20 7946 0000");

        let none = app
            .deliver(&p, &paid("evt_zo_find2", "grace@example.com", "Grace Hopper"))
            .await;
        found_none(&app, &p, &none, "note", "contact").await;
        let contacts = fake.records("Contacts");
        assert_eq!(contacts.len(), 2, "{contacts:?}");
        assert!(
            contacts
                .iter()
                .any(|c| c["Email"] == "grace@example.com" && c["Last_Name"] == "found 0"),
            "{contacts:?}"
        );
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_sandbox_find_reads_records_a_flow_wrote() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        create_flow(
            &app,
            &p,
            json!([
                {"id": "known", "action": "find", "object": "contacts",
                 "match": {"email": "{{ object.billing_details.email }}"},
                 "select": ["name"]},
                {"id": "welcome", "action": "create", "object": "contacts",
                 "when": "not steps.known.id",
                 "fields": {"email": "{{ object.billing_details.email }}",
                            "name": "{{ object.billing_details.name }}",
                            "greeting": "found {{ steps.known.response.count }}"}},
                {"id": "again", "action": "update", "object": "contacts",
                 "when": "steps.known.id", "record_id": "{{ steps.known.id }}",
                 "fields": {"greeting": "welcome back {{ steps.known.response.records[0].name }}"}}
            ]),
        )
        .await;

        let first = app
            .deliver(&p, &paid("evt_sb_find1", "ada@example.com", "Ada Lovelace"))
            .await;
        found_none(&app, &p, &first, "again", "welcome").await;
        let contacts = app
            .records(&p.tenant.token, &p.connection_id, "contacts")
            .await;
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(contacts[0]["fields"]["greeting"], "found 0");
        let id = contacts[0]["id"].as_str().unwrap().to_string();

        let second = app
            .deliver(&p, &paid("evt_sb_find2", "ada@example.com", "Ada Lovelace"))
            .await;
        assert_eq!(second["status"], "processed", "{second}");
        assert_eq!(delivery(&second, "known")["crm_record_id"], id.as_str());
        assert_eq!(
            answer(&app, &p, &second, "known").await,
            json!({"records": [{"id": id, "name": "Ada Lovelace"}], "count": 1})
        );
        assert_eq!(delivery(&second, "welcome")["status"], "skipped");
        let contacts = app
            .records(&p.tenant.token, &p.connection_id, "contacts")
            .await;
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(
            contacts[0]["fields"]["greeting"],
            "welcome back Ada Lovelace"
        );
    })
    .await;
}

#[tokio::test]
async fn a_find_without_match_is_refused_by_field() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let refused = app
            .post(
                "/v1/flows",
                &p.tenant.token,
                json!({"name": "Find", "connection_id": p.connection_id,
                       "trigger": {"events": ["charge.succeeded"]},
                       "steps": [{"id": "known", "action": "find", "object": "contacts",
                                  "select": ["name"]}]}),
            )
            .await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["steps[0].match"], "{}", refused.text);

        let refused = app
            .post(
                "/v1/flows",
                &p.tenant.token,
                json!({"name": "Find", "connection_id": p.connection_id,
                       "trigger": {"events": ["charge.succeeded"]},
                       "steps": [{"id": "known", "action": "find", "object": "contacts",
                                  "match": {"email": "{{ object.receipt_email }}"},
                                  "select": "name", "fields": {"name": "x"}}]}),
            )
            .await;
        let mut fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(
            fields,
            ["steps[0].fields", "steps[0].select"],
            "{}",
            refused.text
        );
    })
    .await;
}
