//! The fake HubSpot's routing: the OAuth routes, auth and rate limits, scopes, and the CRM
//! routes (objects, batch reads, v4 default associations and association lists).

use std::collections::HashMap;

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Value, json};

use super::answers::{correlation, error, now_text, object_json};
use super::oauth::{token_endpoint, token_metadata};
use super::objects::{create, locate, patch, search, upsert};
use super::state::plural;
use super::{CLIENT_ID, PRIVATE_APP_TOKEN, Shared, State};
use crate::query_map;

/// Answers one request; the caller logs it.
pub(super) fn handle(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let path = req.path().to_string();
    let method = req.method().as_str().to_string();
    if method == "POST" && path == "/oauth/v1/token" {
        return token_endpoint(state, body);
    }
    if method == "GET" && path == "/oauth/authorize" {
        return state
            .lock()
            .unwrap()
            .auth
            .authorize(query_map(req), CLIENT_ID, &[]);
    }
    if method == "GET"
        && let Some(access) = path.strip_prefix("/oauth/v1/access-tokens/")
    {
        return token_metadata(state, access);
    }
    if method == "DELETE"
        && let Some(refresh) = path.strip_prefix("/oauth/v1/refresh-tokens/")
    {
        let mut s = state.lock().unwrap();
        s.refresh_tokens.retain(|t| t != refresh);
        s.revoked.push(refresh.to_string());
        return HttpResponse::NoContent().finish();
    }

    let mut s = state.lock().unwrap();
    if let Err(response) = admit(&mut s, req) {
        return response;
    }
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, "VALIDATION_ERROR", &format!("Invalid input JSON: {e}")),
        }
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let Some(scope) = required_scope(&method, &segments)
        && s.scopes.as_ref().is_some_and(|held| !held.contains(&scope))
    {
        let mut response = HttpResponse::Forbidden().json(json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
            "correlationId": correlation(),
            "errors": [{"message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]}}],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES",
        }));
        s.limits.headers(&mut response);
        return response;
    }
    let mut response = route(&mut s, &method, &path, &segments, &query, &json_body);
    s.limits.headers(&mut response);
    response
}

/// Checks the caller's token, the injected throttle and the rate limits.
fn admit(s: &mut State, req: &HttpRequest) -> Result<(), HttpResponse> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if bearer != PRIVATE_APP_TOKEN {
        match s.access_tokens.get(&bearer) {
            None => {
                return Err(error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                ));
            }
            Some(expiry) if *expiry <= Utc::now() => {
                return Err(error(
                    401,
                    "EXPIRED_AUTHENTICATION",
                    "The OAuth token used to make this call expired 0 second(s) ago.",
                ));
            }
            Some(_) => {}
        }
    }
    s.limits.arrived();
    if s.throttle > 0 {
        s.throttle -= 1;
        let seconds = s.retry_after;
        s.limits.announced(seconds);
        let mut response = HttpResponse::TooManyRequests()
            .insert_header(("retry-after", s.retry_after.to_string()))
            .json(json!({
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation(),
                "policyName": "SECONDLY",
            }));
        s.limits.headers(&mut response);
        return Err(response);
    }
    if let Err(policy) = s.limits.take() {
        let limit = if policy == "DAILY" {
            "daily"
        } else {
            "ten_secondly_rolling"
        };
        let mut response = HttpResponse::TooManyRequests().json(json!({
            "status": "error",
            "message": format!("You have reached your {limit} limit."),
            "errorType": "RATE_LIMIT",
            "correlationId": correlation(),
            "policyName": policy,
            "groupName": "publicapi",
        }));
        s.limits.headers(&mut response);
        return Err(response);
    }
    Ok(())
}

/// Answers an authorized CRM API call.
fn route(
    s: &mut State,
    method: &str,
    path: &str,
    segments: &[&str],
    query: &HashMap<String, String>,
    json_body: &Value,
) -> HttpResponse {
    match (method, segments) {
        ("GET", ["crm", "v3", "objects", object]) => match plural(object) {
            Some(object) => list(s, object, query),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("GET", ["crm", "v3", "properties", object]) => match plural(object) {
            Some(object) => super::properties::list(s, object),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object]) => match plural(object) {
            Some(object) => create(s, object, json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("GET", ["crm", "v3", "objects", object, id]) => match plural(object) {
            Some(object) => match locate(s, object, id, query.get("idProperty")) {
                Some(i) => HttpResponse::Ok().json(object_json(&s.records[object][i])),
                None => error(404, "OBJECT_NOT_FOUND", "resource not found"),
            },
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("PATCH", ["crm", "v3", "objects", object, id]) => match plural(object) {
            Some(object) => patch(s, object, id, query.get("idProperty"), json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "batch", "upsert"]) => match plural(object) {
            Some(object) => upsert(s, object, json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "merge"]) => match plural(object) {
            Some(object) => super::merge::merge(s, object, json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "search"]) => match plural(object) {
            Some(object) => search(s, object, json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "batch", "read"]) => match plural(object) {
            Some(object) => super::associated::batch_read(s, object, json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("GET", ["crm", "v4", "objects", from, from_id, "associations", to]) => {
            match (plural(from), plural(to)) {
                (Some(from), Some(to)) => super::associated::list(s, from, from_id, to, query),
                _ => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
            }
        }
        (
            "PUT",
            [
                "crm",
                "v4",
                "objects",
                from,
                from_id,
                "associations",
                "default",
                to,
                to_id,
            ],
        ) => match (plural(from), plural(to)) {
            (Some(from), Some(to)) => associate(s, from, from_id, to, to_id),
            _ => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        _ => error(404, "NOT_FOUND", &format!("No route for {method} {path}")),
    }
}

/// `GET /crm/v3/objects/{type}`: the first `limit` records.
fn list(s: &State, object: &str, query: &HashMap<String, String>) -> HttpResponse {
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let records = s.records.get(object).cloned().unwrap_or_default();
    let results: Vec<Value> = records.iter().take(limit).map(object_json).collect();
    let mut answer = json!({ "results": results });
    if records.len() > limit {
        answer["paging"] = json!({"next": {"after": records[limit].id}});
    }
    HttpResponse::Ok().json(answer)
}

/// `PUT /crm/v4/objects/{from}/{from_id}/associations/default/{to}/{to_id}`.
fn associate(s: &mut State, from: &str, from_id: &str, to: &str, to_id: &str) -> HttpResponse {
    if s.by_id(from, from_id).is_none() || s.by_id(to, to_id).is_none() {
        error(
            404,
            "OBJECT_NOT_FOUND",
            "One or more objects were not found",
        )
    } else {
        let link = (
            from.to_string(),
            from_id.to_string(),
            to.to_string(),
            to_id.to_string(),
        );
        if !s.associations.contains(&link) {
            s.associations.push(link);
        }
        HttpResponse::Ok().json(json!({
            "status": "COMPLETE",
            "results": [{
                "from": {"id": from_id}, "to": {"id": to_id},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}
            }],
            "startedAt": now_text(), "completedAt": now_text()
        }))
    }
}

/// The scope an API call needs: `crm.objects.{type}.read` to read or search, `.write` to write
/// (an association writes the object it starts from).
fn required_scope(method: &str, segments: &[&str]) -> Option<String> {
    let (object, write) = match segments {
        ["crm", "v3", "objects", object, "search"] => (*object, false),
        ["crm", "v3", "objects", object, ..] => (*object, method != "GET"),
        ["crm", "v4", "objects", object, ..] => (*object, method != "GET"),
        _ => return None,
    };
    let access = if write { "write" } else { "read" };
    plural(object).map(|object| format!("crm.objects.{object}.{access}"))
}
