//! The fake Zoho CRM's API domain: its routes, the current user and the records writes
//! (insert, update, upsert), search and read. Every write is noted as a change, which the
//! channels watching its module hear of once the request is answered.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answers::{batch_status, integration_user, record_error, success, user, whole_error};
use super::listing::{MAX_FIELDS, MAX_PER_PAGE, bad, delete, fields, list};
use super::state::same;
use super::watch::{notify_changes, watch};
use super::{Shared, State};

/// Checks the caller's token, the injected throttle and the day's API credits, and counts the
/// call against the credits.
fn admit(s: &mut State, req: &HttpRequest) -> Result<(), HttpResponse> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(bearer) = header.strip_prefix("Zoho-oauthtoken ") else {
        return Err(whole_error(
            401,
            "AUTHENTICATION_FAILURE",
            "Authentication failed",
            json!({}),
        ));
    };
    match s.access_tokens.get(bearer) {
        Some(expiry) if *expiry > Utc::now() => {}
        _ => {
            return Err(whole_error(
                401,
                "INVALID_TOKEN",
                "invalid oauth token",
                json!({}),
            ));
        }
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut response = whole_error(
            429,
            "TOO_MANY_REQUESTS",
            "The number of API requests has exceeded the limit. Try again later.",
            json!({}),
        );
        response.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_str(&s.retry_after.to_string()).unwrap(),
        );
        return Err(response);
    }
    if (Utc::now() - s.day_start).num_seconds() >= 86_400 {
        s.day_start = Utc::now();
        s.used = 0;
    }
    if s.used >= s.credits {
        return Err(whole_error(
            429,
            "TOO_MANY_REQUESTS",
            "The number of API requests has exceeded the limit. Try again later.",
            json!({}),
        ));
    }
    s.used += 1;
    Ok(())
}

/// The records of a request's `data` array (at most 100), and the whole body.
fn data(body: &[u8]) -> Result<(Vec<Map<String, Value>>, Value), HttpResponse> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|_| whole_error(400, "INVALID_DATA", "body is not valid JSON", json!({})))?;
    let Some(items) = body.get("data").and_then(Value::as_array) else {
        return Err(whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "required param missing",
            json!({"param": "data"}),
        ));
    };
    if items.len() > 100 {
        return Err(whole_error(
            400,
            "LIMIT_EXCEEDED",
            "the number of records exceeds 100",
            json!({"limit": 100}),
        ));
    }
    let records = items
        .iter()
        .map(|i| i.as_object().cloned().unwrap_or_default())
        .collect();
    Ok((records, body))
}

fn module_known(s: &State, module: &str) -> bool {
    s.modules.contains_key(module)
}

fn invalid_module() -> HttpResponse {
    whole_error(
        400,
        "INVALID_MODULE",
        "the module name given seems to be invalid",
        json!({}),
    )
}

pub(super) fn api(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let mut s = state.lock().unwrap();
    if let Err(response) = admit(&mut s, req) {
        return response;
    }
    let path = req.path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().as_str().to_string();
    let rest = match segments.as_slice() {
        ["crm", version, rest @ ..] if version.starts_with('v') => rest,
        _ => {
            return whole_error(
                404,
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
                json!({}),
            );
        }
    };
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let since = req
        .headers()
        .get("if-modified-since")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let response = route(&mut s, &method, rest, &query, since.as_deref(), body);
    notify_changes(&mut s);
    response
}

fn route(
    s: &mut State,
    method: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    since: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    match (method, rest) {
        ("GET", ["users"]) => HttpResponse::Ok().json(json!({"users": [user()]})),
        (_, ["actions", "watch"]) => watch(s, method, query, body),
        ("GET", ["settings", "fields"]) => fields(s, query),
        ("GET", [module]) => list(s, module, query, since),
        ("DELETE", [module]) => delete(s, module, query.get("ids").map(String::as_str)),
        ("DELETE", [module, id]) => delete(s, module, Some(id)),
        ("POST", [module]) | ("POST", [module, "upsert"]) | ("PUT", [module]) => {
            write_records(s, method, module, rest.len() == 2, body)
        }
        ("PUT", [module, id]) => update_one(s, module, id, body),
        ("GET", [module, "search"]) => search(s, module, query),
        ("GET", [module, id]) => match s.by_id(module, id) {
            Some(i) => HttpResponse::Ok().json(json!({"data": [s.records[*module][i]]})),
            None => HttpResponse::NoContent().finish(),
        },
        _ => whole_error(
            404,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        ),
    }
}

/// `POST /{module}` (insert), `POST /{module}/upsert` and `PUT /{module}` (update by each
/// record's `id`).
fn write_records(
    s: &mut State,
    method: &str,
    module: &str,
    upsert: bool,
    body: &[u8],
) -> HttpResponse {
    let module = module.to_string();
    if !module_known(s, &module) {
        return invalid_module();
    }
    let (records, body) = match data(body) {
        Ok(d) => d,
        Err(response) => return response,
    };
    let check_fields: Vec<String> =
        match body.get("duplicate_check_fields").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            None => s.modules[&module]
                .iter()
                .filter(|(_, f)| f.unique)
                .map(|(k, _)| k.clone())
                .collect(),
        };
    let mut results = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let result = if method == "PUT" {
            let id = record.get("id").and_then(Value::as_str).unwrap_or("");
            update(s, &module, id, record, index)
        } else if upsert {
            let existing = check_fields.iter().find_map(|f| {
                record
                    .get(f)
                    .and_then(Value::as_str)
                    .and_then(|v| s.find(&module, f, v))
                    .map(|i| {
                        (
                            f.clone(),
                            s.records[&module][i]["id"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                        )
                    })
            });
            match existing {
                Some((field, id)) => {
                    let mut r = update(s, &module, &id, record, index);
                    if r["status"] == "success" {
                        r["duplicate_field"] = json!(field);
                    }
                    r
                }
                None => insert(s, &module, record, index),
            }
        } else {
            insert(s, &module, record, index)
        };
        results.push(result);
    }
    let ok = if method == "POST" && !upsert {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    batch_status(&results, ok)
}

/// `PUT /{module}/{id}`: updates one record with the first of `data`.
fn update_one(s: &mut State, module: &str, id: &str, body: &[u8]) -> HttpResponse {
    let module = module.to_string();
    if !module_known(s, &module) {
        return invalid_module();
    }
    let (records, _) = match data(body) {
        Ok(d) => d,
        Err(response) => return response,
    };
    let Some(record) = records.first() else {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "required param missing",
            json!({"param": "data"}),
        );
    };
    let result = update(s, &module, id, record, 0);
    batch_status(&[result], StatusCode::OK)
}

/// `GET /{module}/search` by `criteria`, `email` or `phone`: the first `per_page` records
/// (at most 200), with only `id` and the `fields` named when it names some; 204 when none match.
fn search(s: &State, module: &str, query: &HashMap<String, String>) -> HttpResponse {
    let module = module.to_string();
    if !module_known(s, &module) {
        return invalid_module();
    }
    let conditions = if let Some(criteria) = query.get("criteria") {
        match parse_criteria(criteria) {
            Some(c) => c,
            None => {
                return whole_error(
                    400,
                    "INVALID_QUERY",
                    "invalid query formed",
                    json!({"param": "criteria"}),
                );
            }
        }
    } else if let Some(email) = query.get("email") {
        vec![("Email".to_string(), "equals".to_string(), email.clone())]
    } else if let Some(phone) = query.get("phone") {
        vec![("Phone".to_string(), "equals".to_string(), phone.clone())]
    } else {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "criteria"}),
        );
    };
    let per_page = match query.get("per_page").map(|text| text.parse::<usize>()) {
        None => MAX_PER_PAGE,
        Some(Ok(n)) if (1..=MAX_PER_PAGE).contains(&n) => n,
        Some(_) => return bad("per_page", "invalid data"),
    };
    let wanted: Vec<&str> = query
        .get("fields")
        .map(|f| f.split(',').filter(|n| !n.is_empty()).collect())
        .unwrap_or_default();
    if wanted.len() > MAX_FIELDS {
        return whole_error(
            400,
            "LIMIT_EXCEEDED",
            "the number of fields exceeds the limit",
            json!({"param": "fields", "limit": MAX_FIELDS}),
        );
    }
    let found: Vec<Value> = s
        .records
        .get(&module)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            conditions.iter().all(|(field, op, value)| {
                let actual = r.get(field);
                match op.as_str() {
                    "equals" => actual.is_some_and(|a| same(field, a, value)),
                    "starts_with" => actual
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.to_lowercase().starts_with(&value.to_lowercase())),
                    _ => false,
                }
            })
        })
        .map(Value::Object)
        .collect();
    if found.is_empty() {
        return HttpResponse::NoContent().finish();
    }
    let more = found.len() > per_page;
    let shown: Vec<Value> = found
        .into_iter()
        .take(per_page)
        .map(|record| match record {
            Value::Object(all) if !wanted.is_empty() => Value::Object(
                all.into_iter()
                    .filter(|(name, _)| name == "id" || wanted.contains(&name.as_str()))
                    .collect(),
            ),
            other => other,
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "info": {"per_page": per_page, "count": shown.len(), "page": 1, "more_records": more},
        "data": shown,
    }))
}

fn insert(s: &mut State, module: &str, record: &Map<String, Value>, index: usize) -> Value {
    let clean = match s.check(module, record, index, true) {
        Ok(c) => c,
        Err(error) => return error,
    };
    if let Some((field, id)) = s.duplicate(module, &clean, None) {
        return record_error(
            "DUPLICATE_DATA",
            "duplicate data",
            &field,
            index,
            json!({"id": id, "duplicate_record": {"id": id, "module": {"api_name": module}}}),
        );
    }
    let mut record = clean;
    s.stamp(&mut record, integration_user(), true);
    let id = s.insert(module, record);
    s.changed(module, "insert", &id, Map::new());
    success(
        &s.records[module][s.by_id(module, &id).unwrap_or(0)],
        "insert",
    )
}

fn update(
    s: &mut State,
    module: &str,
    id: &str,
    record: &Map<String, Value>,
    index: usize,
) -> Value {
    let Some(i) = s.by_id(module, id) else {
        return record_error(
            "INVALID_DATA",
            "the related id given seems to be invalid",
            "id",
            index,
            json!({}),
        );
    };
    let clean = match s.check(module, record, index, false) {
        Ok(c) => c,
        Err(error) => return error,
    };
    if let Some((field, existing)) = s.duplicate(module, &clean, Some(id)) {
        return record_error(
            "DUPLICATE_DATA",
            "duplicate data",
            &field,
            index,
            json!({"id": existing, "duplicate_record": {"id": existing, "module": {"api_name": module}}}),
        );
    }
    let changes: Map<String, Value> = clean
        .into_iter()
        .filter(|(name, value)| s.records[module][i].get(name) != Some(value))
        .collect();
    let mut record = s.records[module][i].clone();
    record.extend(changes.clone());
    s.stamp(&mut record, integration_user(), false);
    s.records.get_mut(module).unwrap()[i] = record;
    s.changed(module, "update", id, changes);
    success(&s.records[module][i], "update")
}

/// `((Email:equals:a@b.c)and(Last_Name:starts_with:W))` → conditions, all of which must hold.
fn parse_criteria(criteria: &str) -> Option<Vec<(String, String, String)>> {
    let mut conditions = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let mut chars = criteria.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '(' => {
                depth += 1;
                current.clear();
            }
            ')' => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                if !current.is_empty() {
                    let mut parts = current.splitn(3, ':');
                    let (field, op, value) = (parts.next()?, parts.next()?, parts.next()?);
                    conditions.push((field.to_string(), op.to_string(), value.to_string()));
                    current.clear();
                }
            }
            _ => current.push(c),
        }
    }
    // Between conditions only "and" is supported.
    (depth == 0 && !conditions.is_empty()).then_some(conditions)
}
