//! The fake Zoho CRM's reads of many records and their deletion: field metadata
//! (`/settings/fields`), listing a module (`fields`, `ids`, `sort_by`, `sort_order`, `page`,
//! `per_page`, `If-Modified-Since`) and `DELETE` by id.

use std::cmp::Ordering;
use std::collections::HashMap;

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::State;
use super::answers::whole_error;

/// Fields every record has besides its module's own.
const SYSTEM_FIELDS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("Created_Time", "datetime"),
    ("Modified_Time", "datetime"),
    ("Created_By", "ownerlookup"),
    ("Modified_By", "ownerlookup"),
];

/// Most field names one list may ask for, most records a page holds, and the deepest record
/// pages reach (past it Zoho wants a `page_token`).
pub(super) const MAX_FIELDS: usize = 50;
pub(super) const MAX_PER_PAGE: usize = 200;
const PAGE_REACH: usize = 2000;

fn invalid_module() -> HttpResponse {
    whole_error(
        400,
        "INVALID_MODULE",
        "the module name given seems to be invalid",
        json!({}),
    )
}

/// `GET /settings/fields?module=`: the module's fields, system fields first.
pub(super) fn fields(s: &State, query: &HashMap<String, String>) -> HttpResponse {
    let Some(module) = query.get("module") else {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "module"}),
        );
    };
    let Some(own) = s.modules.get(module) else {
        return invalid_module();
    };
    let mut names: Vec<(&String, &super::Field)> = own.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    // Zoho fills the system fields itself: their values are read-only.
    let mut fields: Vec<Value> = SYSTEM_FIELDS
        .iter()
        .map(|(name, kind)| {
            json!({"api_name": name, "field_label": label_of(name), "data_type": kind,
                   "system_mandatory": false, "read_only": true, "field_read_only": true,
                   "unique": null})
        })
        .collect();
    fields.extend(names.into_iter().map(|(name, f)| {
        // A unique field's settings are an object; other fields have none.
        let unique = f.unique.then(|| json!({"casesensitive": "false"}));
        json!({"api_name": name, "field_label": label_of(name), "data_type": f.data_type,
               "system_mandatory": f.mandatory, "read_only": false, "field_read_only": false,
               "unique": unique})
    }));
    HttpResponse::Ok().json(json!({ "fields": fields }))
}

/// A field's label as Zoho's defaults read: `Last_Name` as `Last Name`, `id` as `Record Id`.
fn label_of(api_name: &str) -> String {
    match api_name {
        "id" => "Record Id".to_string(),
        name => name.replace('_', " "),
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn bad(param: &str, message: &str) -> HttpResponse {
    whole_error(400, "INVALID_DATA", message, json!({"param": param}))
}

/// The records of `module` a list asks for, in order.
fn selected(
    s: &State,
    module: &str,
    query: &HashMap<String, String>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Map<String, Value>>, HttpResponse> {
    let ids: Option<Vec<&str>> = query.get("ids").map(|ids| ids.split(',').collect());
    let mut records: Vec<Map<String, Value>> = s
        .records
        .get(module)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            ids.as_ref()
                .is_none_or(|ids| ids.contains(&r["id"].as_str().unwrap_or("")))
        })
        .filter(|r| {
            since.is_none_or(|since| {
                r.get("Modified_Time")
                    .and_then(Value::as_str)
                    .and_then(parse_time)
                    .is_some_and(|at| at > since)
            })
        })
        .collect();
    let sort_by = query.get("sort_by").map_or("id", String::as_str);
    if !["id", "Created_Time", "Modified_Time"].contains(&sort_by) {
        return Err(bad("sort_by", "invalid data"));
    }
    let descending = match query.get("sort_order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(bad("sort_order", "invalid data")),
    };
    let key = |r: &Map<String, Value>| -> (i64, u64) {
        let id = r["id"].as_str().and_then(|i| i.parse().ok()).unwrap_or(0);
        let at = r
            .get(sort_by)
            .and_then(Value::as_str)
            .and_then(parse_time)
            .map_or(0, |t| t.timestamp_millis());
        (if sort_by == "id" { 0 } else { at }, id)
    };
    records.sort_by(|a, b| {
        let order: Ordering = key(a).cmp(&key(b));
        if descending { order.reverse() } else { order }
    });
    Ok(records)
}

/// `GET /{module}`: all records (with `fields`), or those named by `ids`, sorted and paged;
/// with `If-Modified-Since`, only those modified after it, and 304 when there are none.
pub(super) fn list(
    s: &State,
    module: &str,
    query: &HashMap<String, String>,
    since: Option<&str>,
) -> HttpResponse {
    if !s.modules.contains_key(module) {
        return invalid_module();
    }
    let wanted: Vec<&str> = query
        .get("fields")
        .map(|f| f.split(',').filter(|n| !n.is_empty()).collect())
        .unwrap_or_default();
    if wanted.is_empty() && !query.contains_key("ids") {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "fields"}),
        );
    }
    if wanted.len() > MAX_FIELDS {
        return whole_error(
            400,
            "LIMIT_EXCEEDED",
            "the number of fields exceeds the limit",
            json!({"param": "fields", "limit": MAX_FIELDS}),
        );
    }
    let since = match since {
        Some(text) => match parse_time(text) {
            Some(at) => Some(at),
            None => return bad("If-Modified-Since", "invalid date time"),
        },
        None => None,
    };
    let number = |name: &str, default: usize| -> Option<usize> {
        match query.get(name) {
            None => Some(default),
            Some(text) => text.parse().ok().filter(|n| *n >= 1),
        }
    };
    let (Some(page), Some(per_page)) = (number("page", 1), number("per_page", MAX_PER_PAGE)) else {
        return bad("page", "invalid data");
    };
    let per_page = per_page.min(MAX_PER_PAGE);
    if page * per_page > PAGE_REACH {
        return whole_error(
            400,
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "cannot fetch more than 2000 records; use page_token",
            json!({"limit": PAGE_REACH}),
        );
    }
    let records = match selected(s, module, query, since) {
        Ok(records) => records,
        Err(response) => return response,
    };
    let start = (page - 1) * per_page;
    let shown: Vec<Value> = records
        .iter()
        .skip(start)
        .take(per_page)
        .map(|r| {
            let mut out = Map::new();
            for (name, value) in r {
                if name == "id" || wanted.is_empty() || wanted.contains(&name.as_str()) {
                    out.insert(name.clone(), value.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    if shown.is_empty() {
        return match since {
            Some(_) => HttpResponse::NotModified().finish(),
            None => HttpResponse::NoContent().finish(),
        };
    }
    HttpResponse::Ok().json(json!({
        "data": shown,
        "info": {"per_page": per_page, "count": shown.len(), "page": page,
                 "sort_by": query.get("sort_by").map_or("id", String::as_str),
                 "sort_order": query.get("sort_order").map_or("desc", String::as_str),
                 "more_records": records.len() > start + per_page}
    }))
}

/// `DELETE /{module}/{id}` and `DELETE /{module}?ids=…`: one result per id.
pub(super) fn delete(s: &mut State, module: &str, ids: Option<&str>) -> HttpResponse {
    if !s.modules.contains_key(module) {
        return invalid_module();
    }
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
        return whole_error(
            400,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": "ids"}),
        );
    };
    let mut results = Vec::new();
    for id in ids.split(',') {
        results.push(match s.remove(module, id) {
            true => json!({"code": "SUCCESS", "details": {"id": id},
                           "message": "record deleted", "status": "success"}),
            false => json!({"code": "INVALID_DATA", "details": {"id": id},
                            "message": "the related id given seems to be invalid",
                            "status": "error"}),
        });
    }
    super::answers::batch_status(&results, actix_web::http::StatusCode::OK)
}
