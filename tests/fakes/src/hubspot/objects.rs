//! The fake HubSpot's CRM v3 object writes and search: create, patch, batch upsert, search.

use actix_web::HttpResponse;
use serde_json::{Value, json};

use super::answers::{error, now_text, object_json, properties_of};
use super::state::singular;
use super::{Record, State};

pub(super) fn locate(
    s: &State,
    object: &str,
    id: &str,
    id_property: Option<&String>,
) -> Option<usize> {
    match id_property.map(String::as_str) {
        Some(property) if property != "hs_object_id" => s.find(object, property, id),
        _ => s.by_id(object, id),
    }
}

pub(super) fn create(s: &mut State, object: &str, body: &Value) -> HttpResponse {
    let properties = match properties_of(body) {
        Ok(p) => p,
        Err(response) => return response,
    };
    if let Err(response) = s.validate(object, &properties) {
        return response;
    }
    if let Some(existing) = s.conflict(object, &properties, None) {
        return error(
            409,
            "CONFLICT",
            &format!(
                "{} already exists. Existing ID: {existing}",
                singular(object)
            ),
        );
    }
    let record = s.insert(object, properties);
    HttpResponse::Created().json(object_json(&record))
}

pub(super) fn patch(
    s: &mut State,
    object: &str,
    id: &str,
    id_property: Option<&String>,
    body: &Value,
) -> HttpResponse {
    let properties = match properties_of(body) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let Some(i) = locate(s, object, id, id_property) else {
        return error(404, "OBJECT_NOT_FOUND", "resource not found");
    };
    if let Err(response) = s.validate(object, &properties) {
        return response;
    }
    let own = s.records[object][i].id.clone();
    if let Some(existing) = s.conflict(object, &properties, Some(&own)) {
        return error(
            409,
            "CONFLICT",
            &format!(
                "{} already exists. Existing ID: {existing}",
                singular(object)
            ),
        );
    }
    let record = &mut s.records.get_mut(object).unwrap()[i];
    record.properties.extend(properties);
    HttpResponse::Ok().json(object_json(record))
}

/// HubSpot's check of an email address: a local part, an `@` and a dotted domain.
fn looks_like_email(text: &str) -> bool {
    text.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    })
}

/// Most inputs one batch call takes.
const BATCH_MAX: usize = 100;

pub(super) fn upsert(s: &mut State, object: &str, body: &Value) -> HttpResponse {
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return error(400, "VALIDATION_ERROR", "inputs is required");
    };
    // Check the request's shape first: a malformed batch writes nothing. Inputs whose
    // properties are refused are listed in a 207's `errors`; the others are written.
    if inputs.len() > BATCH_MAX {
        return error(
            400,
            "VALIDATION_ERROR",
            &format!("a batch holds at most {BATCH_MAX} inputs"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for input in inputs {
        let id = input.get("id").and_then(Value::as_str).unwrap_or("");
        if !seen.insert(id.to_lowercase()) {
            return error(
                400,
                "VALIDATION_ERROR",
                &format!("Duplicate IDs found in batch input: [{id}]"),
            );
        }
    }
    let mut plan = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let Some(id_property) = input.get("idProperty").and_then(Value::as_str) else {
            return error(400, "VALIDATION_ERROR", "idProperty is required for upsert");
        };
        let unique = s.properties[object]
            .get(id_property)
            .is_some_and(|p| p.unique);
        if !unique {
            return error(
                400,
                "VALIDATION_ERROR",
                &format!(
                    "{id_property} is not a unique-value property of {object} and cannot be an idProperty"
                ),
            );
        }
        let Some(id) = input.get("id").and_then(Value::as_str) else {
            return error(400, "VALIDATION_ERROR", "id must be a string");
        };
        let properties = match properties_of(input) {
            Ok(p) => p,
            Err(response) => return response,
        };
        if id_property == "email" && !looks_like_email(id) {
            errors.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!("Email address {id} is invalid"),
                "context": {"ids": [id]},
                "errors": [],
                "links": {},
            }));
            continue;
        }
        if let Err(refused) = s.check_properties(object, &properties) {
            let names: Vec<&String> = refused.iter().map(|(name, _, _)| name).collect();
            let details: Vec<Value> = refused
                .iter()
                .map(|(name, code, message)| {
                    json!({"message": message, "code": code, "context": {"propertyName": [name]}})
                })
                .collect();
            errors.push(json!({
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": format!("Property values were not valid for the input with id {id}"),
                "context": {"propertyName": names, "ids": [id]},
                "errors": details,
                "links": {},
            }));
            continue;
        }
        plan.push((id_property.to_string(), id.to_string(), properties));
    }
    let mut results = Vec::new();
    for (id_property, id, mut properties) in plan {
        match s.find(object, &id_property, &id) {
            Some(i) => {
                let record = &mut s.records.get_mut(object).unwrap()[i];
                record.properties.extend(properties);
                let mut answer = object_json(record);
                answer["new"] = json!(false);
                results.push(answer);
            }
            None => {
                properties.insert(id_property, json!(id));
                let record = s.insert(object, properties);
                let mut answer = object_json(&record);
                answer["new"] = json!(true);
                results.push(answer);
            }
        }
    }
    if errors.is_empty() {
        return HttpResponse::Ok().json(json!({
            "status": "COMPLETE",
            "results": results,
            "startedAt": now_text(),
            "completedAt": now_text(),
        }));
    }
    HttpResponse::build(actix_web::http::StatusCode::MULTI_STATUS).json(json!({
        "status": "COMPLETE",
        "results": results,
        "numErrors": errors.len(),
        "errors": errors,
        "startedAt": now_text(),
        "completedAt": now_text(),
    }))
}

pub(super) fn matches_filter(record: &Record, filter: &Value) -> bool {
    let name = filter
        .get("propertyName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let operator = filter
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("EQ");
    let wanted = filter.get("value").and_then(Value::as_str).unwrap_or("");
    let actual = if name == "hs_object_id" {
        Some(record.id.as_str())
    } else {
        record.properties.get(name).and_then(Value::as_str)
    };
    let equal = actual.is_some_and(|a| {
        if name == "email" {
            a.eq_ignore_ascii_case(wanted)
        } else {
            a == wanted
        }
    });
    match operator {
        "EQ" => equal,
        "NEQ" => !equal,
        "HAS_PROPERTY" => actual.is_some(),
        "NOT_HAS_PROPERTY" => actual.is_none(),
        _ => false,
    }
}

/// Most results one search page holds.
const MAX_SEARCH_LIMIT: u64 = 200;

/// Properties every search result carries, asked for or not.
const ALWAYS_SHOWN: &[&str] = &["hs_object_id", "createdate", "lastmodifieddate"];

/// A search result: with `properties` asked for, those of them the object has (null when the
/// record has no value) and the ones every result shows; without, all it has.
fn search_result(s: &State, object: &str, record: &Record, asked: &[&str]) -> Value {
    let mut shown = object_json(record);
    if asked.is_empty() {
        return shown;
    }
    let all = shown["properties"].as_object().cloned().unwrap_or_default();
    let known = &s.properties[object];
    let properties: serde_json::Map<String, Value> = asked
        .iter()
        .filter(|name| known.contains_key(**name) || ALWAYS_SHOWN.contains(name))
        .chain(ALWAYS_SHOWN)
        .map(|name| {
            (
                name.to_string(),
                all.get(*name).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    shown["properties"] = Value::Object(properties);
    shown
}

pub(super) fn search(s: &State, object: &str, body: &Value) -> HttpResponse {
    let groups = body
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10);
    if limit > MAX_SEARCH_LIMIT {
        return error(
            400,
            "VALIDATION_ERROR",
            &format!("limit must be at most {MAX_SEARCH_LIMIT}"),
        );
    }
    let asked: Vec<&str> = body
        .get("properties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let records = s.records.get(object).cloned().unwrap_or_default();
    let found: Vec<&Record> = records
        .iter()
        .filter(|record| {
            groups.is_empty()
                || groups.iter().any(|group| {
                    group
                        .get("filters")
                        .and_then(Value::as_array)
                        .is_none_or(|filters| filters.iter().all(|f| matches_filter(record, f)))
                })
        })
        .collect();
    let limit = limit as usize;
    let mut answer = json!({
        "total": found.len(),
        "results": found
            .iter()
            .take(limit)
            .map(|r| search_result(s, object, r, &asked))
            .collect::<Vec<_>>(),
    });
    if found.len() > limit {
        answer["paging"] = json!({"next": {"after": limit.to_string()}});
    }
    HttpResponse::Ok().json(answer)
}
