//! The committed `openapi/openapi.json` must match what the code generates. Regenerate with
//! `TRIBUTARY_UPDATE_OPENAPI=1 cargo test -p tributary-tests --test api openapi`.

use std::path::PathBuf;

#[test]
fn committed_spec_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = tributary_api::openapi::document_json();
    if std::env::var("TRIBUTARY_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write openapi/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: run `TRIBUTARY_UPDATE_OPENAPI=1 cargo test -p tributary-tests --test api openapi` and commit it"
    );
}

#[test]
fn every_operation_follows_the_conventions() {
    let spec = tributary_api::openapi::document();
    let json = serde_json::to_value(&spec).unwrap();
    let mut seen = std::collections::HashSet::new();
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(id.contains('.'), "{id} is not resource.verb");
            assert!(seen.insert(id.to_string()), "{id} is used twice");
            for field in ["summary", "description"] {
                assert!(
                    operation[field].as_str().is_some_and(|s| !s.is_empty()),
                    "{id} has no {field}: give its handler a doc comment"
                );
            }
            let security = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{id} declares no security"));
            let public = [
                "health.live",
                "health.ready",
                "health.metrics",
                "signup.create",
                "login.create",
                "token.refresh",
                "oauth.callback",
                "webhooks.receive",
                "webhooks.hubspot",
                "webhooks.hubspot_app",
                "webhooks.zoho",
                "webhooks.salesforce",
            ];
            if public.contains(&id) {
                assert!(security.is_empty(), "{id} is public: security(())");
            } else {
                assert_eq!(
                    security,
                    &vec![
                        serde_json::json!({"bearer_jwt": []}),
                        serde_json::json!({"api_key": []})
                    ],
                    "{id} takes an access token or an API key"
                );
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{id} needs credentials, so it documents 401"
                );
            }
            if let Some(body) = operation["requestBody"]["content"].as_object() {
                for (media, content) in body {
                    assert!(
                        content.get("example").is_some() || content.get("examples").is_some(),
                        "{id} {media} body has no example"
                    );
                }
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
        }
    }
}
