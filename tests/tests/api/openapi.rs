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
fn every_operation_has_an_id_and_described_responses() {
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
