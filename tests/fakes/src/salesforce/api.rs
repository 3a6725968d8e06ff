//! The fake Salesforce's org instance: session and limit checks, sObjects (create, read,
//! update, upsert by external id, delete to the recycle bin, describe), SOQL (`query`,
//! `queryAll` and their next pages) and limits; and the two servers' routing.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Map, Value, json};

use super::answers::sf_error;
use super::changes::is_deleted;
use super::oauth::{login, revoke};
use super::query::{next_page, run_query};
use super::state::get_field;
use super::{API_USER_ID, CLIENT_ID, Shared, State};
use crate::{RequestLog, Served, query_map};

/// Checks the caller's session and the daily limit, and counts the call.
fn admit(s: &mut State, req: &HttpRequest) -> Result<(), HttpResponse> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if s.sessions.get(bearer) != Some(&true) {
        return Err(sf_error(
            401,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
            &[],
        ));
    }
    if s.limit_exhausted {
        return Err(sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        ));
    }
    s.used += 1;
    s.calls += 1;
    Ok(())
}

/// A request body that must be a JSON object.
fn json_body(body: &[u8]) -> Result<Map<String, Value>, HttpResponse> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(sf_error(
            400,
            "JSON_PARSER_ERROR",
            "The request body is not a JSON object",
            &[],
        )),
    }
}

/// A percent-encoded path segment, decoded.
fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("v={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(super) fn api(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let mut s = state.lock().unwrap();
    // The SOAP API reads its session from the body, not the Authorization header.
    if req.method() == actix_web::http::Method::POST && req.path().starts_with("/services/Soap/u/")
    {
        return super::soap::call(&mut s, req, body);
    }
    if let Err(response) = admit(&mut s, req) {
        return response;
    }
    let path = req.path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().as_str().to_string();
    let (version, rest) = match segments.as_slice() {
        ["services", "data", version, rest @ ..] if version.starts_with('v') => (*version, rest),
        _ => {
            return sf_error(
                404,
                "NOT_FOUND",
                "The requested resource does not exist",
                &[],
            );
        }
    };
    match (method.as_str(), rest) {
        ("GET", ["limits"]) => HttpResponse::Ok().json(json!({
            "DailyApiRequests": {"Max": s.max, "Remaining": s.max.saturating_sub(s.used)}
        })),
        ("GET", [kind @ ("query" | "queryAll")]) => {
            let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default();
            match query.get("q") {
                Some(soql) => run_query(&mut s, soql, version, *kind == "queryAll"),
                None => sf_error(400, "MALFORMED_QUERY", "q is required", &[]),
            }
        }
        ("GET", ["query" | "queryAll", cursor]) => next_page(&mut s, cursor, version),
        ("GET", ["sobjects", object, "describe"]) if s.known_object(object) => {
            HttpResponse::Ok().json(s.describe(object))
        }
        ("DELETE", ["sobjects", object, id]) => delete(&mut s, object, id),
        ("POST", ["sobjects", object]) => create(&mut s, req, version, object, body),
        ("GET", ["sobjects", object, id]) => read(&s, req, version, object, id),
        ("PATCH", ["sobjects", object, id]) => update(&mut s, object, id, body),
        ("PATCH", ["sobjects", object, field, value]) => {
            upsert(&mut s, version, object, field, &decode(value), body)
        }
        ("PATCH", ["composite", "sobjects", object, field]) => {
            upsert_collection(&mut s, version, object, field, body)
        }
        _ => sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        ),
    }
}

/// `POST /sobjects/{object}`.
fn create(
    s: &mut State,
    req: &HttpRequest,
    version: &str,
    object: &str,
    body: &[u8],
) -> HttpResponse {
    if !s.known_object(object) {
        return sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        );
    }
    let fields = match json_body(body).and_then(|b| s.validate(object, &b, true)) {
        Ok(f) => f,
        Err(response) => return response,
    };
    if let Some(refused) = super::duplicates::refusal(s, req, version, object, &fields) {
        return refused;
    }
    let id = s.create(object, fields);
    HttpResponse::Created().json(json!({"id": id, "success": true, "errors": []}))
}

/// `GET /sobjects/{object}/{id}`, optionally only the `fields` asked for.
fn read(s: &State, req: &HttpRequest, version: &str, object: &str, id: &str) -> HttpResponse {
    match s.record_index(object, id) {
        Some(i) => {
            let record = &s.records[object][i];
            let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default();
            let mut out = Map::new();
            out.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}),
            );
            match query.get("fields") {
                Some(list) => {
                    for f in list.split(',') {
                        if let Some((k, v)) = get_field(record, f.trim()) {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                    out.insert("Id".into(), json!(id));
                }
                None => out.extend(record.clone()),
            }
            HttpResponse::Ok().json(out)
        }
        None => sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        ),
    }
}

/// `PATCH /sobjects/{object}/{id}`.
fn update(s: &mut State, object: &str, id: &str, body: &[u8]) -> HttpResponse {
    let Some(i) = s.record_index(object, id) else {
        return sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        );
    };
    let fields = match json_body(body).and_then(|b| s.validate(object, &b, false)) {
        Ok(f) => f,
        Err(response) => return response,
    };
    s.modify(object, i, fields, API_USER_ID);
    HttpResponse::NoContent().finish()
}

/// `DELETE /sobjects/{object}/{id}`: to the recycle bin.
fn delete(s: &mut State, object: &str, id: &str) -> HttpResponse {
    match s.record_index(object, id) {
        Some(i) => {
            s.recycle(object, i, API_USER_ID);
            HttpResponse::NoContent().finish()
        }
        None if s.find_any(id).is_some() => {
            sf_error(404, "ENTITY_IS_DELETED", "entity is deleted", &[])
        }
        None => sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        ),
    }
}

/// `PATCH /sobjects/{object}/{field}/{value}`: upsert by an external id field (`value`
/// decoded from its path segment).
fn upsert(
    s: &mut State,
    version: &str,
    object: &str,
    field: &str,
    value: &str,
    body: &[u8],
) -> HttpResponse {
    let value = value.to_string();
    let external = s
        .fields
        .get(object)
        .and_then(|f| f.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)))
        .filter(|(_, def)| def.external_id)
        .map(|(k, _)| k.clone());
    let Some(field) = external else {
        return sf_error(
            404,
            "NOT_FOUND",
            &format!("Provided external ID field does not exist or is not accessible: {field}"),
            &[],
        );
    };
    let body = match json_body(body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    if let Some((_, given)) = get_field(&body, &field)
        && given.as_str() != Some(value.as_str())
    {
        return sf_error(
            400,
            "INVALID_FIELD",
            &format!(
                "The value of the external ID field {field} in the body does not match the URL"
            ),
            &[field.as_str()],
        );
    }
    let matches: Vec<usize> = s
        .records
        .get(object)
        .map(|rs| {
            rs.iter()
                .enumerate()
                .filter(|(_, r)| {
                    !is_deleted(r) && r.get(&field).and_then(Value::as_str) == Some(value.as_str())
                })
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    match matches.as_slice() {
        [] => {
            let mut fields = match s.validate(object, &body, true) {
                Ok(f) => f,
                Err(response) => return response,
            };
            fields.insert(field.clone(), json!(value));
            let id = s.create(object, fields);
            HttpResponse::Created()
                .json(json!({"id": id, "success": true, "errors": [], "created": true}))
        }
        [i] => {
            let fields = match s.validate(object, &body, false) {
                Ok(f) => f,
                Err(response) => return response,
            };
            s.modify(object, *i, fields, API_USER_ID);
            let id = s.records[object][*i]["Id"].clone();
            HttpResponse::Ok()
                .json(json!({"id": id, "success": true, "errors": [], "created": false}))
        }
        several => {
            let urls: Vec<String> = several
                .iter()
                .map(|i| {
                    let id = s.records[object][*i]["Id"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    format!("/services/data/{version}/sobjects/{object}/{id}")
                })
                .collect();
            HttpResponse::build(StatusCode::MULTIPLE_CHOICES).json(urls)
        }
    }
}

/// Most records one sObject Collections request takes.
const COLLECTION_MAX: usize = 200;

/// `PATCH /composite/sobjects/{object}/{field}`: upserts a collection by an external id field,
/// each record on its own (`allOrNone` false): a 200 with one SaveResult per record, in order,
/// failures as `{"success": false, "errors": [{"statusCode", "message", "fields"}]}`.
fn upsert_collection(
    s: &mut State,
    version: &str,
    object: &str,
    field: &str,
    body: &[u8],
) -> HttpResponse {
    let body = match json_body(body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return sf_error(400, "JSON_PARSER_ERROR", "records is required", &[]);
    };
    if records.len() > COLLECTION_MAX {
        return sf_error(
            400,
            "EXCEEDED_ID_LIMIT",
            &format!("record limit exceeded: at most {COLLECTION_MAX} records"),
            &[],
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut results = Vec::new();
    for record in records {
        let mut record = record.as_object().cloned().unwrap_or_default();
        let kind = record.remove("attributes");
        if kind
            .as_ref()
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
            != Some(object)
        {
            return sf_error(
                400,
                "INVALID_TYPE",
                &format!("each record's attributes.type must be {object}"),
                &[],
            );
        }
        let value = get_field(&record, field)
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
            .to_string();
        if !seen.insert(value.clone()) {
            results.push(failed(
                "DUPLICATE_EXTERNAL_ID",
                &format!("Duplicate external id specified: {value}"),
                &[field],
            ));
            continue;
        }
        let bytes = Value::Object(record).to_string();
        let response = upsert(s, version, object, field, &value, bytes.as_bytes());
        results.push(save_result(response));
    }
    HttpResponse::Ok().json(results)
}

/// A single upsert's answer as a collection's SaveResult.
fn save_result(response: HttpResponse) -> Value {
    use actix_web::body::MessageBody;
    let status = response.status();
    let body = response
        .into_body()
        .try_into_bytes()
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    if status.is_success() {
        return json!({"id": body["id"], "success": true, "errors": [],
                      "created": status == StatusCode::CREATED});
    }
    if status == StatusCode::MULTIPLE_CHOICES {
        return failed(
            "DUPLICATE_EXTERNAL_ID",
            &format!("more than one record found for external id field: {body}"),
            &[],
        );
    }
    let errors: Vec<Value> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| json!({"statusCode": e["errorCode"], "message": e["message"], "fields": e["fields"]}))
        .collect();
    json!({"success": false, "errors": errors})
}

fn failed(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

pub(super) fn serve(state: Shared, log: RequestLog, is_login: bool) -> Served {
    Served::answering_slowly(log, move |req, body| {
        if is_login {
            let answer = match (req.method().as_str(), req.path()) {
                ("POST", "/services/oauth2/token") => login(&state, body),
                ("POST", "/services/oauth2/revoke") => revoke(&state, body),
                ("GET", "/services/oauth2/authorize") => {
                    state
                        .lock()
                        .unwrap()
                        .auth
                        .authorize(query_map(req), CLIENT_ID, &[])
                }
                _ => HttpResponse::NotFound().json(json!({"error": "not_found"})),
            };
            return (answer, None);
        }
        if state.lock().unwrap().flights.refuses() {
            return (
                sf_error(
                    403,
                    "REQUEST_LIMIT_EXCEEDED",
                    "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
                    &[],
                ),
                None,
            );
        }
        let mut response = api(&state, req, body);
        let mut s = state.lock().unwrap();
        let delay = s.flights.take_off();
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("sforce-limit-info"),
            actix_web::http::header::HeaderValue::from_str(&format!(
                "api-usage={}/{}",
                s.used, s.max
            ))
            .unwrap(),
        );
        (response, delay)
    })
}
