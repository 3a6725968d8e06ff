//! The flows API: validation with paths, YAML, versions, preview without side effects, templates.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{charge_event, each_backend};

#[tokio::test]
async fn flows_validate_version_preview_and_accept_yaml() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;

        let bad = json!({"flow": {
            "name": "Bad", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [
                {"id": "a", "action": "upsert", "object": "contacts", "match": {"email": "{{ object.email }}"}},
                {"id": "b", "action": "create", "object": "deals", "fields": {"amount": "{{ object.amount | amout }}"}}
            ]}});
        let checked = app.post("/v1/flows/validate", token, bad).await;
        assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
        assert_eq!(checked.body["valid"], false);
        let errors = checked.body["errors"].as_array().unwrap();
        assert!(errors.iter().any(|e| e["path"] == "steps[1].fields.amount" && e["message"].as_str().unwrap().contains("amout")), "{errors:?}");

        let refused = app.post("/v1/flows", token, json!({"name": "x", "connection_id": "nope", "trigger": {"events": ["charge.succeeded"]}, "steps": []})).await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        // The flow itself is checked first; the connection once the flow is sound.
        assert_eq!(fields, ["steps"], "{}", refused.text);
        let step = json!({"id": "a", "action": "upsert", "object": "contacts", "match": {"email": "{{ object.email }}"}});
        let refused = app.post("/v1/flows", token, json!({"name": "x", "connection_id": "nope", "trigger": {"events": ["charge.succeeded"]}, "steps": [step]})).await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["connection_id"], "{}", refused.text);

        let yaml = format!(
            "name: From YAML\nconnection_id: {}\ntrigger:\n  events: [charge.succeeded]\nsteps:\n  - id: contact\n    action: upsert\n    object: contacts\n    match:\n      email: \"{{{{ object.billing_details.email }}}}\"\n",
            p.connection_id
        );
        let created = app
            .client
            .post(app.url("/v1/flows"))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
            .await
            .unwrap();
        let created = tributary_tests::Reply::read(created).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["version"], 1);
        let id = created.str("/id");

        let mut next = created.body.clone();
        for key in ["id", "version", "created_at", "updated_at"] {
            next.as_object_mut().unwrap().remove(key);
        }
        next["name"] = json!("Renamed");
        let replaced = app.call(reqwest::Method::PUT, &format!("/v1/flows/{id}"), Some(token), Some(next)).await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
        assert_eq!(replaced.body["version"], 2);
        let versions = app.get(&format!("/v1/flows/{id}/versions"), token).await;
        assert_eq!(versions.body["data"].as_array().unwrap().len(), 2);

        let event = charge_event("evt_p", "ch_p", "pre@view.co", "Pre View", 100, 1_700_000_000);
        let preview = app.post(&format!("/v1/flows/{id}/preview"), token, json!({"event": event})).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert_eq!(preview.body["matched"], true);
        assert_eq!(preview.body["operations"][0]["match"]["email"], "pre@view.co");
        assert!(app.records(token, &p.connection_id, "contacts").await.is_empty(), "preview writes nothing");
        let events = app.get("/v1/events", token).await;
        assert!(events.body["data"].as_array().unwrap().is_empty());

        let templates = app.get("/v1/flow-templates", token).await;
        let list = templates.body["data"].as_array().unwrap();
        assert!(list.len() >= 5, "{}", templates.text);
        for provider in ["hubspot", "salesforce", "zoho", "sandbox"] {
            assert!(list.iter().any(|t| t["provider"] == provider), "no {provider} template");
        }
        // A template instantiated with the tenant's connection is a valid flow.
        let sandbox = list.iter().find(|t| t["provider"] == "sandbox").unwrap();
        let mut flow = sandbox["flow"].clone();
        flow["connection_id"] = json!(p.connection_id);
        let valid = app.post("/v1/flows/validate", token, json!({"flow": flow})).await;
        assert_eq!(valid.body["valid"], true, "{}", valid.text);

        assert_eq!(app.delete(&format!("/v1/flows/{id}"), token).await.status, StatusCode::NO_CONTENT);
        app.get(&format!("/v1/flows/{id}"), token).await.assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

/// `POST /v1/flows/validate` reads YAML as `POST /v1/flows` does and answers the flow it read as
/// JSON (the designer's YAML view relies on it); YAML that does not parse is a 400 saying where.
#[tokio::test]
async fn validate_reads_yaml_and_answers_the_flow_it_read() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let send = |body: String| {
            app.client
                .post(app.url("/v1/flows/validate"))
                .bearer_auth(token)
                .header("content-type", "application/yaml")
                .body(body)
                .send()
        };
        let yaml = "name: Quoted \"and\" plain\nconnection_id: CONNECTION\ntrigger:\n  events: [charge.succeeded]\n  filter: object.paid\nsteps:\n  - id: contact\n    action: upsert\n    object: contacts\n    match:\n      email: \"{{ object.billing_details.email | lower }}\"\n    fields:\n      amount: 12\n      note: 'it''s {{ object.id }}'\n";
        let read = tributary_tests::Reply::read(send(yaml.replace("CONNECTION", &p.connection_id)).await.unwrap()).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.body["valid"], true, "{}", read.text);
        assert_eq!(
            read.body["flow"],
            json!({"name": "Quoted \"and\" plain", "connection_id": p.connection_id,
                   "trigger": {"events": ["charge.succeeded"], "filter": "object.paid"},
                   "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                              "match": {"email": "{{ object.billing_details.email | lower }}"},
                              "fields": {"amount": 12, "note": "it's {{ object.id }}"}}]}),
            "{}",
            read.text
        );
        // A JSON body answers its flow too, problems and all.
        let bad = app
            .post("/v1/flows/validate", token, json!({"name": "", "steps": "none"}))
            .await;
        assert_eq!(bad.body["valid"], false, "{}", bad.text);
        assert_eq!(bad.body["flow"], json!({"name": "", "steps": "none"}), "{}", bad.text);

        let broken = tributary_tests::Reply::read(send("name: [unclosed\nsteps: -\n".into()).await.unwrap()).await;
        let fields = broken.assert_problem(StatusCode::BAD_REQUEST);
        assert!(fields.is_empty(), "{}", broken.text);
        assert!(broken.text.contains("not valid YAML"), "{}", broken.text);
    })
    .await;
}

/// A flow exported as YAML (`Accept: application/yaml`) imports back as the same flow: the
/// round trip tenants who keep flows in git make.
#[tokio::test]
async fn a_flow_exports_as_yaml_and_imports_back_the_same() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let id = app
            .contact_flow(&p, json!({"name": "{{ object.billing_details.name }}", "note": "it's \"quoted\"\nand two lines"}))
            .await;
        let exported = app
            .client
            .get(app.url(&format!("/v1/flows/{id}")))
            .bearer_auth(token)
            .header("accept", "application/yaml")
            .send()
            .await
            .unwrap();
        assert_eq!(exported.status(), StatusCode::OK);
        let kind = exported.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("application/yaml"), "{kind}");
        let text = exported.text().await.unwrap();
        assert!(!text.contains(&id) && !text.contains("version"), "the document alone: {text}");
        let imported = app
            .client
            .post(app.url("/v1/flows"))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(text.replacen("name: Contacts", "name: Imported", 1))
            .send()
            .await
            .unwrap();
        let imported = tributary_tests::Reply::read(imported).await;
        assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.text);
        let original = app.get(&format!("/v1/flows/{id}"), token).await;
        assert_eq!(imported.body["name"], "Imported", "{}", imported.text);
        assert_eq!(imported.body["steps"], original.body["steps"], "{}", imported.text);
        assert_eq!(imported.body["trigger"], original.body["trigger"]);
        // JSON stays the default.
        assert_eq!(original.content_type(), "application/json");
    })
    .await;
}
