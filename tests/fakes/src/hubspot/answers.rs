//! The fake HubSpot's answers: error bodies and records as the API shows them.

use actix_web::HttpResponse;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::Record;

pub(super) fn correlation() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn error(status: u16, category: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "status": "error",
        "message": message,
        "correlationId": correlation(),
        "category": category,
    }))
}

pub(super) fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn object_json(record: &Record) -> Value {
    let mut properties = record.properties.clone();
    properties.insert("hs_object_id".into(), json!(record.id));
    properties
        .entry("createdate")
        .or_insert_with(|| json!(now_text()));
    properties.insert("lastmodifieddate".into(), json!(now_text()));
    json!({
        "id": record.id,
        "properties": properties,
        "createdAt": properties["createdate"],
        "updatedAt": properties["lastmodifieddate"],
        "archived": false,
    })
}

pub(super) fn properties_of(body: &Value) -> Result<Map<String, Value>, HttpResponse> {
    match body.get("properties") {
        Some(Value::Object(map)) => Ok(map.clone()),
        None => Ok(Map::new()),
        Some(_) => Err(error(
            400,
            "VALIDATION_ERROR",
            "properties must be an object",
        )),
    }
}
