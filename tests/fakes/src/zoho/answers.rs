//! The fake Zoho CRM's answers: error bodies, per-record results and the current user.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};

pub(super) fn now_text() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

pub(super) fn user() -> Value {
    json!({"name": "Fake Admin", "id": "5725767000000411001", "email": "admin@example.com"})
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

pub(super) fn success(id: &str, action: &str, duplicate_field: Option<&str>) -> Value {
    let by = json!({"name": "Fake Admin", "id": "5725767000000411001"});
    json!({
        "code": "SUCCESS",
        "duplicate_field": duplicate_field,
        "action": action,
        "details": {"Modified_Time": now_text(), "Modified_By": by, "Created_Time": now_text(),
                    "id": id, "Created_By": by},
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
