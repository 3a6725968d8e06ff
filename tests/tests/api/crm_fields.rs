//! `GET /v1/connections/{id}/fields?object=`: a CRM object's fields for the field-mapping
//! designer, from the fake Salesforce's describe, the fake HubSpot's properties, the fake Zoho's
//! field settings and the sandbox's stored records; required fields first, then by label. Any
//! role reads them; another tenant's connection is 404; an `http` connection has no schema
//! (409); a bad object name is 422 naming `object`; an object the CRM lacks is 404.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Pipeline, Reply, TestApp, charge_event, each_backend};

async fn fields(app: &TestApp, token: &str, connection_id: &str, object: &str) -> Reply {
    app.get(
        &format!("/v1/connections/{connection_id}/fields?object={object}"),
        token,
    )
    .await
}

/// The fields of a 200 answer, checking its shape and order (required first, then by label).
fn listed(reply: &Reply, object: &str, source: &str) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["object"], object, "{}", reply.text);
    assert_eq!(reply.body["source"], source, "{}", reply.text);
    let all = reply.body["fields"].as_array().cloned().unwrap_or_default();
    for field in &all {
        let keys: Vec<&String> = field.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), 5, "{field}");
        assert!(
            field["name"].is_string() && field["label"].is_string(),
            "{field}"
        );
        assert!(field["type"].is_string(), "{field}");
        assert!(
            field["required"].is_boolean() && field["unique"].is_boolean(),
            "{field}"
        );
    }
    let order: Vec<(bool, String)> = all
        .iter()
        .map(|f| {
            let label = f["label"].as_str().unwrap_or_default().to_lowercase();
            (!f["required"].as_bool().unwrap_or(false), label)
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "required first, then by label: {}",
        reply.text
    );
    all
}

fn field<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {all:?}"))
}

fn names(all: &[Value], flag: &str) -> Vec<String> {
    let mut out: Vec<String> = all
        .iter()
        .filter(|f| f[flag] == true)
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

/// A member of the pipeline's tenant can read the fields, and the object must be known.
async fn member_reads_and_unknown_is_404(app: &TestApp, p: &Pipeline, object: &str) {
    let (_, member) = app.user_with_role(&p.tenant, "member").await;
    let reply = fields(app, &member, &p.connection_id, object).await;
    assert_eq!(reply.status, StatusCode::OK, "member: {}", reply.text);
    let unknown = fields(app, &p.tenant.token, &p.connection_id, "NoSuchThing").await;
    unknown.assert_problem(StatusCode::NOT_FOUND);
    assert!(
        unknown.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("NoSuchThing")),
        "{}",
        unknown.text
    );
}

#[tokio::test]
async fn salesforce_fields_come_from_the_describe() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        fake.define_field("Contact", "Stripe_Customer_Id__c", true);
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "api_version": "60.0"}
            }))
            .await;
        let reply = fields(&app, &p.tenant.token, &p.connection_id, "Contact").await;
        let all = listed(&reply, "Contact", "vendor");
        // LastName is the one field a new contact needs; the owner defaults to the caller.
        assert_eq!(names(&all, "required"), ["LastName"], "{}", reply.text);
        assert_eq!(names(&all, "unique"), ["Stripe_Customer_Id__c"]);
        assert_eq!(all[0]["name"], "LastName");
        assert_eq!(field(&all, "LastName")["label"], "Last Name");
        assert_eq!(field(&all, "LastName")["type"], "string");
        assert_eq!(field(&all, "AccountId")["type"], "reference");
        // The org's own fields can be neither created nor updated.
        for system in ["Id", "CreatedDate", "SystemModstamp", "IsDeleted"] {
            assert!(
                all.iter().all(|f| f["name"] != system),
                "{system}: {}",
                reply.text
            );
        }
        let opportunity = fields(&app, &p.tenant.token, &p.connection_id, "Opportunity").await;
        let all = listed(&opportunity, "Opportunity", "vendor");
        assert_eq!(names(&all, "required"), ["CloseDate", "Name", "StageName"]);
        assert_eq!(
            fake.log
                .matching("GET", "/services/data/v60.0/sobjects/Contact/describe")
                .len(),
            1
        );
        member_reads_and_unknown_is_404(&app, &p, "Contact").await;
    })
    .await;
}

#[tokio::test]
async fn hubspot_fields_are_its_writable_properties() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        fake.define_property("contacts", "stripe_customer_id", true);
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        let reply = fields(&app, &p.tenant.token, &p.connection_id, "contacts").await;
        let all = listed(&reply, "contacts", "vendor");
        assert!(names(&all, "required").is_empty(), "{}", reply.text);
        assert_eq!(names(&all, "unique"), ["email", "stripe_customer_id"]);
        assert_eq!(field(&all, "firstname")["type"], "string");
        assert_eq!(field(&all, "lifecyclestage")["type"], "enumeration");
        // Properties HubSpot maintains are read-only and left out.
        for own in ["hs_object_id", "createdate", "lastmodifieddate"] {
            assert!(
                all.iter().all(|f| f["name"] != own),
                "{own}: {}",
                reply.text
            );
        }
        assert_eq!(
            fake.log
                .matching("GET", "/crm/v3/properties/contacts")
                .len(),
            1
        );
        let deals = fields(&app, &p.tenant.token, &p.connection_id, "deals").await;
        let all = listed(&deals, "deals", "vendor");
        assert_eq!(field(&all, "amount")["type"], "number");
        member_reads_and_unknown_is_404(&app, &p, "contacts").await;
    })
    .await;
}

#[tokio::test]
async fn zoho_fields_come_from_the_module_settings() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        let p = app
            .pipeline_with(json!({
                "name": "Zoho CRM", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8"}
            }))
            .await;
        let reply = fields(&app, &p.tenant.token, &p.connection_id, "Leads").await;
        let all = listed(&reply, "Leads", "vendor");
        assert_eq!(names(&all, "required"), ["Last_Name"], "{}", reply.text);
        assert_eq!(names(&all, "unique"), ["Email"]);
        assert_eq!(field(&all, "Last_Name")["label"], "Last Name");
        assert_eq!(field(&all, "Lead_Status")["type"], "picklist");
        // Zoho fills the system fields itself.
        for own in ["id", "Created_Time", "Modified_By"] {
            assert!(
                all.iter().all(|f| f["name"] != own),
                "{own}: {}",
                reply.text
            );
        }
        let deals = fields(&app, &p.tenant.token, &p.connection_id, "Deals").await;
        let all = listed(&deals, "Deals", "vendor");
        assert_eq!(names(&all, "required"), ["Deal_Name", "Stage"]);
        let requests = fake.log.matching("GET", "/crm/v8/settings/fields");
        assert!(
            requests.iter().any(|r| r.path.contains("module=Leads")),
            "{requests:?}"
        );
        member_reads_and_unknown_is_404(&app, &p, "Leads").await;
    })
    .await;
}

#[tokio::test]
async fn sandbox_fields_are_those_its_records_hold() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = p.tenant.token.clone();
        // Nothing written yet: nothing seen.
        let empty = fields(&app, &token, &p.connection_id, "contacts").await;
        assert!(
            listed(&empty, "contacts", "seen").is_empty(),
            "{}",
            empty.text
        );

        app.contact_flow(
            &p,
            json!({"name": "{{ object.billing_details.name }}", "amount": "{{ object.amount }}"}),
        )
        .await;
        let now = chrono::Utc::now().timestamp();
        let event = charge_event(
            "evt_fields1",
            "ch_fields1",
            "ada@example.com",
            "Ada",
            4200,
            now,
        );
        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        let records = app.records(&token, &p.connection_id, "contacts").await;
        assert_eq!(records.len(), 1, "{records:?}");

        let reply = fields(&app, &token, &p.connection_id, "contacts").await;
        let all = listed(&reply, "contacts", "seen");
        let mut seen: Vec<&str> = all.iter().filter_map(|f| f["name"].as_str()).collect();
        seen.sort();
        let mut stored: Vec<&str> = records[0]["fields"]
            .as_object()
            .expect("fields")
            .keys()
            .map(String::as_str)
            .collect();
        stored.sort();
        assert_eq!(seen, stored, "{}", reply.text);
        assert!(
            seen.contains(&"email") && seen.contains(&"name"),
            "{seen:?}"
        );
        assert_eq!(field(&all, "email")["type"], "string");
        assert!(names(&all, "required").is_empty() && names(&all, "unique").is_empty());

        let (_, member) = app.user_with_role(&p.tenant, "member").await;
        let as_member = fields(&app, &member, &p.connection_id, "contacts").await;
        assert_eq!(listed(&as_member, "contacts", "seen"), all);
    })
    .await;
}

#[tokio::test]
async fn refusals_name_what_is_wrong() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = p.tenant.token.clone();
        let id = p.connection_id.clone();

        // Another tenant cannot tell the connection exists.
        let other = app.signup("Other").await;
        fields(&app, &other.token, &id, "contacts")
            .await
            .assert_problem(StatusCode::NOT_FOUND);

        // A missing or malformed object name names `object`.
        let missing = app
            .get(&format!("/v1/connections/{id}/fields"), &token)
            .await;
        assert_eq!(
            missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["object"]
        );
        let long = "a".repeat(81);
        for bad in ["", "9lives", "a-b", "a%20b", "%C3%A9", long.as_str()] {
            let reply = fields(&app, &token, &id, bad).await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                ["object"],
                "{bad}: {}",
                reply.text
            );
        }

        // An HTTP CRM has no schema to read.
        let http = app
            .post(
                "/v1/connections",
                &token,
                json!({"name": "Our CRM", "provider": "http", "auth": {"type": "none"},
                       "settings": {"base_url": "http://127.0.0.1:9/api"}}),
            )
            .await;
        assert_eq!(http.status, StatusCode::CREATED, "{}", http.text);
        let reply = fields(&app, &token, &http.str("/id"), "contacts").await;
        reply.assert_problem(StatusCode::CONFLICT);
        assert!(
            reply.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no schema")),
            "{}",
            reply.text
        );
    })
    .await;
}
