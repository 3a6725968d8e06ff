//! The fake Salesforce's error answers: the API's error arrays and the OAuth error bodies.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::json;

pub(super) fn sf_error(status: u16, code: &str, message: &str, fields: &[&str]) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .json(json!([{ "message": message, "errorCode": code, "fields": fields }]))
}

pub(super) fn oauth_error(code: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": code, "error_description": description }))
}
