//! Environments inside a tenant: each holds its own Stripe accounts, connections, flows,
//! events and deliveries, chosen per request by `Tributary-Environment` (absent: production),
//! or by the environment an API key is bound to; a new one starts with a sandbox CRM; flows are
//! promoted from one to another with their connections mapped, and refused when the target CRM
//! lacks a field they write.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{Reply, TestApp, charge_event, each_backend, stripe_signature};

/// A request acting in `environment`.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    environment: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .header("tributary-environment", environment);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::read(request.send().await.expect("sent")).await
}

fn names(list: &Reply) -> Vec<String> {
    list.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A Stripe account in `environment`: its id, webhook path and secret.
async fn account(app: &TestApp, token: &str, environment: &str) -> (String, String, String) {
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let made = call(
        app,
        Method::POST,
        "/v1/stripe-accounts",
        token,
        environment,
        Some(json!({"name": format!("Stripe {environment}"), "webhook_secret": secret})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let url = made.str("/webhook_url");
    let path = url
        .strip_prefix(&app.settings.public_url)
        .unwrap()
        .to_string();
    (made.str("/id"), path, secret)
}

async fn send(app: &TestApp, path: &str, secret: &str, event: &Value) -> Reply {
    let body = serde_json::to_vec(event).unwrap();
    let signature = stripe_signature(&body, secret, chrono::Utc::now().timestamp());
    app.webhook(path, &body, Some(&signature)).await
}

fn contact_flow(connection_id: &str, name: &str) -> Value {
    json!({"name": name, "connection_id": connection_id,
           "trigger": {"events": ["charge.succeeded"]},
           "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                      "match": {"email": "{{ object.billing_details.email | lower }}"},
                      "fields": {"name": "{{ object.billing_details.name }}"}}]})
}

#[tokio::test]
async fn each_environment_keeps_its_own_accounts_connections_flows_and_events() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        app.contact_flow(&p, json!({"name": "{{ object.billing_details.name }}"}))
            .await;

        // A new environment, with a sandbox CRM in it.
        let made = app
            .post("/v1/environments", token, json!({"name": "staging"}))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        assert_eq!(made.body["name"], "staging");
        assert_eq!(made.headers["location"], "/v1/environments/staging");
        let listed = app.get("/v1/environments", token).await;
        assert_eq!(names(&listed), ["production", "staging"], "{}", listed.text);
        assert_eq!(listed.body["data"][0]["current"], true, "{}", listed.text);
        let staged = call(&app, Method::GET, "/v1/connections", token, "staging", None).await;
        assert_eq!(staged.status, StatusCode::OK, "{}", staged.text);
        let sandbox = &staged.body["data"][0];
        assert_eq!(
            staged.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            staged.text
        );
        assert_eq!(sandbox["provider"], "sandbox", "{}", staged.text);
        let sandbox_id = sandbox["id"].as_str().unwrap().to_string();
        // Production's connection and flow are not there, nor staging's in production.
        let flows = call(&app, Method::GET, "/v1/flows", token, "staging", None).await;
        assert!(
            flows.body["data"].as_array().unwrap().is_empty(),
            "{}",
            flows.text
        );
        let foreign = call(
            &app,
            Method::GET,
            &format!("/v1/connections/{}", p.connection_id),
            token,
            "staging",
            None,
        )
        .await;
        foreign.assert_problem(StatusCode::NOT_FOUND);
        app.get(&format!("/v1/connections/{sandbox_id}"), token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);

        // Staging's own account and flow: its event runs staging's flow only.
        let (_, path, secret) = account(&app, token, "staging").await;
        let flow = call(
            &app,
            Method::POST,
            "/v1/flows",
            token,
            "staging",
            Some(contact_flow(&sandbox_id, "Staging contacts")),
        )
        .await;
        assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
        let event = charge_event(
            "evt_stage1",
            "ch_stage1",
            "ada@example.com",
            "Ada Staging",
            500,
            chrono::Utc::now().timestamp(),
        );
        let sent = send(&app, &path, &secret, &event).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let id = sent.str("/event_id");
        let done = tributary_tests::wait_for(20, "the staging event to finish", || async {
            let e = call(
                &app,
                Method::GET,
                &format!("/v1/events/{id}"),
                token,
                "staging",
                None,
            )
            .await;
            (e.body["status"] == "processed").then_some(e.body)
        })
        .await;
        assert_eq!(done["deliveries"].as_array().unwrap().len(), 1, "{done}");
        let staged_records = call(
            &app,
            Method::GET,
            &format!("/v1/connections/{sandbox_id}/records?object=contacts"),
            token,
            "staging",
            None,
        )
        .await;
        assert_eq!(
            staged_records.body["data"].as_array().map(Vec::len),
            Some(1),
            "{}",
            staged_records.text
        );
        assert!(
            app.records(token, &p.connection_id, "contacts")
                .await
                .is_empty(),
            "production's CRM untouched"
        );
        let production_events = app.get("/v1/events", token).await;
        assert!(
            production_events.body["data"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{}",
            production_events.text
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_environments_are_refused_and_only_empty_ones_deleted() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let made = app
            .post("/v1/environments", token, json!({"name": "staging"}))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let one = app.get("/v1/environments/staging", token).await;
        assert_eq!(one.body["name"], "staging", "{}", one.text);
        assert_eq!(one.body["current"], false, "{}", one.text);
        app.get("/v1/environments/nope", token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        let staged = call(&app, Method::GET, "/v1/connections", token, "staging", None).await;
        let sandbox_id = staged.body["data"][0]["id"].as_str().unwrap().to_string();
        let flow = call(
            &app,
            Method::POST,
            "/v1/flows",
            token,
            "staging",
            Some(contact_flow(&sandbox_id, "Staging contacts")),
        )
        .await;
        assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);

        // An environment the tenant does not have: refused, naming the header.
        let unknown = call(&app, Method::GET, "/v1/flows", token, "qa", None).await;
        unknown.assert_problem(StatusCode::BAD_REQUEST);
        assert!(
            unknown.text.contains("Tributary-Environment"),
            "{}",
            unknown.text
        );
        // Another tenant's environment of the same name is not this tenant's.
        let other = app.signup("Other").await;
        let theirs = call(
            &app,
            Method::GET,
            "/v1/flows",
            &other.token,
            "staging",
            None,
        )
        .await;
        theirs.assert_problem(StatusCode::BAD_REQUEST);

        // Deleting: production never; staging not while it holds a flow.
        app.delete("/v1/environments/production", token)
            .await
            .assert_problem(StatusCode::CONFLICT);
        let held = app.delete("/v1/environments/staging", token).await;
        held.assert_problem(StatusCode::CONFLICT);
        assert!(held.text.contains("flows"), "{}", held.text);
        let empty = app
            .post("/v1/environments", token, json!({"name": "qa"}))
            .await;
        assert_eq!(empty.status, StatusCode::CREATED, "{}", empty.text);
        assert_eq!(
            app.delete("/v1/environments/qa", token).await.status,
            StatusCode::NO_CONTENT
        );
        app.delete("/v1/environments/qa", token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        let again = app
            .post("/v1/environments", token, json!({"name": "staging"}))
            .await;
        again.assert_problem(StatusCode::CONFLICT);
        let bad = app
            .post("/v1/environments", token, json!({"name": "Staging!"}))
            .await;
        assert_eq!(
            bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["name"]
        );
    })
    .await;
}

#[tokio::test]
async fn an_api_key_bound_to_an_environment_acts_only_there() {
    each_backend(|app| async move {
        let owner = app.signup("Keys").await;
        let made = app
            .post(
                "/v1/environments",
                &owner.token,
                json!({"name": "development"}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let key = app
            .post(
                "/v1/api-keys",
                &owner.token,
                json!({"name": "dev CI", "role": "admin", "environment": "development"}),
            )
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
        assert_eq!(key.body["environment"], "development", "{}", key.text);
        let secret = key.str("/key");
        // Without the header it acts in development (where the sandbox connection is).
        let listed = app.get("/v1/connections", &secret).await;
        assert_eq!(
            listed.body["data"].as_array().map(Vec::len),
            Some(1),
            "{}",
            listed.text
        );
        let envs = app.get("/v1/environments", &secret).await;
        let current: Vec<&Value> = envs.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["current"] == true)
            .collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["name"], "development", "{}", envs.text);
        // Naming another environment: refused.
        let elsewhere = call(
            &app,
            Method::GET,
            "/v1/connections",
            &secret,
            "production",
            None,
        )
        .await;
        elsewhere.assert_problem(StatusCode::FORBIDDEN);
        // A key bound to an environment the tenant lacks is refused when made.
        let nowhere = app
            .post(
                "/v1/api-keys",
                &owner.token,
                json!({"name": "x", "role": "member", "environment": "nope"}),
            )
            .await;
        assert_eq!(
            nowhere.assert_problem(StatusCode::NOT_FOUND),
            ["environment"]
        );
    })
    .await;
}

/// A tenant with a staging environment, a HubSpot connection named alike in staging and
/// production, and a staging flow writing a custom property: its token, the staging and
/// production connections' ids, and the flow's promote path.
async fn staged_flow(app: &TestApp, fake: &FakeHubSpot) -> (String, String, String, String) {
    let owner = app.signup("Promote").await;
    let token = &owner.token;
    let made = app
        .post("/v1/environments", token, json!({"name": "staging"}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let hubspot_connection = json!({"name": "HubSpot", "provider": "hubspot",
        "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
        "settings": {"base_url": fake.base_url}});
    let staging_crm = call(
        app,
        Method::POST,
        "/v1/connections",
        token,
        "staging",
        Some(hubspot_connection.clone()),
    )
    .await;
    assert_eq!(
        staging_crm.status,
        StatusCode::CREATED,
        "{}",
        staging_crm.text
    );
    let production_crm = app.post("/v1/connections", token, hubspot_connection).await;
    assert_eq!(
        production_crm.status,
        StatusCode::CREATED,
        "{}",
        production_crm.text
    );
    let flow = json!({"name": "Contacts", "connection_id": staging_crm.str("/id"),
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
               "match": {"email": "{{ object.billing_details.email | lower }}"},
               "fields": {"firstname": "{{ object.billing_details.name | first_name }}",
                  "stripe_customer_id": "{{ object.customer }}"}}]});
    let staged = call(app, Method::POST, "/v1/flows", token, "staging", Some(flow)).await;
    assert_eq!(staged.status, StatusCode::CREATED, "{}", staged.text);
    let promote = format!("/v1/flows/{}/promote", staged.str("/id"));
    (
        owner.token.clone(),
        staging_crm.str("/id"),
        production_crm.str("/id"),
        promote,
    )
}

#[tokio::test]
async fn promotion_maps_connections_and_refuses_fields_the_target_crm_lacks() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let (token, staging_crm, production_crm, promote) = staged_flow(&app, &fake).await;
        let token = token.as_str();

        // The target HubSpot lacks the custom property: refused, naming it; nothing made.
        let refused = call(
            &app,
            Method::POST,
            &promote,
            token,
            "staging",
            Some(json!({"to": "production"})),
        )
        .await;
        assert_eq!(
            refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["steps[0].fields.stripe_customer_id"]
        );
        assert!(
            app.get("/v1/flows", token).await.body["data"]
                .as_array()
                .unwrap()
                .is_empty()
        );

        // Once it exists, the flow is copied with the connection mapped by name.
        fake.define_property("contacts", "stripe_customer_id", false);
        let promoted = call(
            &app,
            Method::POST,
            &promote,
            token,
            "staging",
            Some(json!({"to": "production"})),
        )
        .await;
        assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text);
        assert_eq!(promoted.body["created"], true, "{}", promoted.text);
        assert_eq!(
            promoted.body["flow"]["connection_id"],
            production_crm.as_str(),
            "{}",
            promoted.text
        );
        let listed = app.get("/v1/flows", token).await;
        assert_eq!(
            listed.body["data"][0]["name"], "Contacts",
            "{}",
            listed.text
        );
        // Promoted again: a new version of the same production flow, which keeps its history.
        let again = call(
            &app,
            Method::POST,
            &promote,
            token,
            "staging",
            Some(json!({"to": "production"})),
        )
        .await;
        assert_eq!(again.body["created"], false, "{}", again.text);
        assert_eq!(again.body["flow"]["version"], 2, "{}", again.text);
        // Mapped explicitly to a connection the target lacks: refused, naming it.
        let wrong = call(
            &app,
            Method::POST,
            &promote,
            token,
            "staging",
            Some(json!({"to": "production", "connections": {staging_crm.clone(): "nope"}})),
        )
        .await;
        assert_eq!(
            wrong.assert_problem(StatusCode::NOT_FOUND),
            [format!("connections.{}", staging_crm)]
        );
        // Promoted to where it is: a conflict naming `to`.
        let here = call(
            &app,
            Method::POST,
            &promote,
            token,
            "staging",
            Some(json!({"to": "staging"})),
        )
        .await;
        assert_eq!(here.assert_problem(StatusCode::CONFLICT), ["to"]);
        // Recorded in the audit log.
        let audit = app.get("/v1/audit-log", token).await;
        assert!(
            audit.text.contains("flow.promote.production"),
            "{}",
            audit.text
        );
    })
    .await;
}
