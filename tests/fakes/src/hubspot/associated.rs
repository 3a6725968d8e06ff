//! The fake HubSpot's reads across associations: `GET /crm/v4/objects/{from}/{id}/associations/{to}`
//! (either direction of an association counts, as in HubSpot, paged by `after` with `limit`,
//! default 500) and `POST /crm/v3/objects/{type}/batch/read` (the `properties` asked for,
//! beside `hs_object_id`, `createdate` and `lastmodifieddate`; unknown ids are 207 errors).

use std::collections::HashMap;

use actix_web::HttpResponse;
use serde_json::{Value, json};

use super::State;
use super::answers::{correlation, error, now_text, object_json};

/// `GET /crm/v4/objects/{from}/{from_id}/associations/{to}`.
pub(super) fn list(
    s: &State,
    from: &str,
    from_id: &str,
    to: &str,
    query: &HashMap<String, String>,
) -> HttpResponse {
    if s.by_id(from, from_id).is_none() {
        return error(404, "OBJECT_NOT_FOUND", "resource not found");
    }
    let mut ids: Vec<&str> = Vec::new();
    for (a, a_id, b, b_id) in &s.associations {
        let other = if a == from && a_id == from_id && b == to {
            b_id
        } else if b == from && b_id == from_id && a == to {
            a_id
        } else {
            continue;
        };
        if !ids.contains(&other.as_str()) {
            ids.push(other);
        }
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(500)
        .clamp(1, 500);
    let start: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(limit)
        .map(|id| {
            json!({"toObjectId": id.parse::<u64>().map(Value::from).unwrap_or(json!(id)),
                   "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 19, "label": null}]})
        })
        .collect();
    let mut answer = json!({ "results": page });
    if start + limit < ids.len() {
        answer["paging"] = json!({"next": {"after": (start + limit).to_string()}});
    }
    HttpResponse::Ok().json(answer)
}

/// `POST /crm/v3/objects/{object}/batch/read`.
pub(super) fn batch_read(s: &State, object: &str, body: &Value) -> HttpResponse {
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return error(400, "VALIDATION_ERROR", "inputs is required");
    };
    if inputs.len() > 100 {
        return error(400, "VALIDATION_ERROR", "at most 100 inputs are taken");
    }
    let asked: Vec<&str> = body
        .get("properties")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        let id = match &input["id"] {
            Value::String(id) => id.clone(),
            Value::Number(n) => n.to_string(),
            _ => return error(400, "VALIDATION_ERROR", "each input needs an id"),
        };
        match s.by_id(object, &id) {
            Some(i) => {
                let mut record = object_json(&s.records[object][i]);
                if let Some(properties) = record["properties"].as_object_mut() {
                    properties.retain(|name, _| {
                        asked.contains(&name.as_str())
                            || matches!(
                                name.as_str(),
                                "hs_object_id" | "createdate" | "lastmodifieddate"
                            )
                    });
                }
                results.push(record);
            }
            None => missing.push(id),
        }
    }
    let mut answer = json!({
        "status": "COMPLETE", "results": results,
        "startedAt": now_text(), "completedAt": now_text(),
    });
    if missing.is_empty() {
        return HttpResponse::Ok().json(answer);
    }
    answer["numErrors"] = json!(1);
    answer["errors"] = json!([{
        "status": "error", "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some objects, they may be deleted or not exist.",
        "context": {"ids": missing}, "correlationId": correlation(),
    }]);
    HttpResponse::build(actix_web::http::StatusCode::MULTI_STATUS).json(answer)
}
