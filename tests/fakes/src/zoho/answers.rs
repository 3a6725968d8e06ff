//! The fake Zoho CRM's answers: error bodies, per-record results and its users.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{INTEGRATION_USER_ID, OTHER_USER_ID};

pub(super) fn user() -> Value {
    json!({"name": "Fake Admin", "id": INTEGRATION_USER_ID, "email": "admin@example.com"})
}

/// The API's caller, as records name it.
pub(super) fn integration_user() -> Value {
    json!({"name": "Fake Admin", "id": INTEGRATION_USER_ID})
}

/// Someone working in Zoho's UI, as records name them.
pub(super) fn other_user() -> Value {
    json!({"name": "Fake User", "id": OTHER_USER_ID})
}

pub(super) fn whole_error(status: u16, code: &str, message: &str, details: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(json!({
        "code": code, "details": details, "message": message, "status": "error"
    }))
}

pub(super) fn record_error(
    code: &str,
    message: &str,
    api_name: &str,
    index: usize,
    extra: Value,
) -> Value {
    let mut details =
        json!({"api_name": api_name, "json_path": format!("$.data[{index}].{api_name}")});
    if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

/// A record's success entry, its times and users as the record holds them.
pub(super) fn success(record: &Map<String, Value>, action: &str) -> Value {
    let field = |name: &str| record.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "code": "SUCCESS",
        "duplicate_field": null,
        "action": action,
        "details": {"Modified_Time": field("Modified_Time"), "Modified_By": field("Modified_By"),
                    "Created_Time": field("Created_Time"), "id": field("id"),
                    "Created_By": field("Created_By")},
        "message": if action == "insert" { "record added" } else { "record updated" },
        "status": "success"
    })
}

/// The HTTP status for a `data` answer: all good, some good, or none.
pub(super) fn batch_status(results: &[Value], ok: StatusCode) -> HttpResponse {
    let good = results.iter().filter(|r| r["status"] == "success").count();
    let status = if good == results.len() {
        ok
    } else if good == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::MULTI_STATUS
    };
    HttpResponse::build(status).json(json!({ "data": results }))
}
