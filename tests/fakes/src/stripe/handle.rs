//! The fake Stripe's request pipeline, in Stripe's order: authentication, the rate limiter and
//! scripted failures, the API version, permissions, parameters, idempotency, then the route.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use serde_json::{Map, Value, json};

use super::answer::{error, invalid, no_such, rate_limited, redact, scripted, unrecognized};
use super::balance::list_balance_transactions;
use super::catalog::OBJECT_ROUTES;
use super::endpoints::{create_endpoint, update_endpoint};
use super::lists::{list_endpoints, list_events};
use super::objects::{retrieve_event, retrieve_object};
use super::params::{is_api_version, parse_form};
use super::webhooks::dispatch;
use super::writes::{Origin, write_route};
use super::{ACCOUNT_ID, Answer, Saved, Shared, State};

/// The API key of a request: `Bearer <key>`, `Basic base64(<key>:)` or `Basic <key>`.
fn api_key(req: &HttpRequest) -> Result<String, Answer> {
    let no_key = |header: Option<&str>| {
        let message = match header {
            None => "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".to_string(),
            Some(h) => format!("You did not provide an API key, though you did set your Authorization header to \"{h}\". Using Bearer auth, your Authorization header should look something like 'Authorization: Bearer YOUR_SECRET_KEY'. See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/."),
        };
        error(401, "invalid_request_error", None, None, &message)
    };
    let Some(header) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(no_key(None));
    };
    let (scheme, credentials) = header.split_once(' ').unwrap_or((header, ""));
    let credentials = credentials.trim();
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        {
            Some(decoded) => decoded.split(':').next().unwrap_or("").to_string(),
            None => credentials.to_string(),
        }
    } else {
        String::new()
    };
    if key.is_empty() {
        return Err(no_key(Some(header)));
    }
    Ok(key)
}

/// The route's restricted-key resource, and whether the method writes.
fn resource(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["v1", "events", ..] => Some("event"),
        ["v1", "webhook_endpoints", ..] => Some("webhook"),
        ["v1", "checkout", "sessions", ..] => Some("checkout_session"),
        ["v1", "billing_portal", ..] => Some("customer_portal"),
        ["v1", collection, ..] => OBJECT_ROUTES
            .iter()
            .find(|(path, _, _)| path == collection)
            .map(|(_, _, resource)| *resource),
        _ => None,
    }
}

fn allowed(permissions: &HashSet<String>, resource: &str, write: bool) -> bool {
    let has = |level: &str| {
        permissions.contains(&format!("{resource}_{level}"))
            || permissions.contains(&format!("rak_{resource}_{level}"))
    };
    has("write") || (!write && has("read"))
}

/// Answers one request: the answer, and whether it is a replay of an earlier idempotent one.
pub(super) fn handle(
    state: &Shared,
    req: &HttpRequest,
    body: &[u8],
    request_id: &str,
) -> (Answer, bool) {
    let mut s = state.lock().unwrap();
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();

    let (key, permissions) = match authenticate(&s, req) {
        Ok(found) => found,
        Err(answer) => return (answer, false),
    };
    if let Err(answer) = admit(&mut s, &key) {
        return (answer, false);
    }
    if let Err(answer) = check_version(req) {
        return (answer, false);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let write = method != "GET";
    if let Err(answer) = check_permission(permissions.as_ref(), &segments, write, &key) {
        return (answer, false);
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let params = match read_params(req, &method, &text) {
        Ok(params) => params,
        Err(answer) => return (answer, false),
    };

    // Idempotency: POSTs only, per API key.
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|_| method == "POST");
    let fingerprint = format!("{method} {path}?{}\n{text}", req.query_string());
    if let Some(idem) = &idempotency_key {
        if idem.len() > 255 {
            return (
                invalid(
                    None,
                    "Invalid idempotency key: keys must be at most 255 characters long.",
                ),
                false,
            );
        }
        if let Some(saved) = s.idempotency.get(&(key.clone(), idem.clone())) {
            if saved.fingerprint != fingerprint {
                return (
                    error(
                        400,
                        "idempotency_error",
                        None,
                        None,
                        &format!(
                            "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{idem}' if you meant to execute a different request."
                        ),
                    ),
                    false,
                );
            }
            let answer = saved
                .answer
                .clone()
                .header("idempotent-replayed", "true")
                .header("original-request", &saved.request_id);
            return (answer, true);
        }
    }

    let origin = Origin {
        request_id: request_id.to_string(),
        idempotency_key: idempotency_key.clone(),
        livemode: key.starts_with("sk_live_") || key.starts_with("rk_live_"),
    };
    let answer = route(&mut s, &method, &segments, &params, &origin, &path);

    // Validation failures (400) are not saved: the endpoint never began executing.
    if let Some(idem) = idempotency_key
        && answer.status != 400
    {
        s.idempotency.insert(
            (key, idem),
            Saved {
                fingerprint,
                answer: answer.clone(),
                request_id: request_id.to_string(),
            },
        );
    }
    // The events the request caused go out once it is answered.
    let outbox = std::mem::take(&mut s.outbox);
    drop(s);
    dispatch(state, outbox);
    (answer, false)
}

/// Authentication: the request's API key and its permissions (`None` for a secret key,
/// allowed everything).
fn authenticate(s: &State, req: &HttpRequest) -> Result<(String, Option<HashSet<String>>), Answer> {
    let key = api_key(req)?;
    let Some(permissions) = s.keys.get(&key).cloned() else {
        return Err(error(
            401,
            "invalid_request_error",
            None,
            None,
            &format!("Invalid API Key provided: {}", redact(&key)),
        ));
    };
    Ok((key, permissions))
}

/// The rate limiter and the scripted failures, both ahead of the idempotency layer.
fn admit(s: &mut State, key: &str) -> Result<(), Answer> {
    // The rate limiter runs before idempotency: a 429 is never saved or replayed.
    if s.rate_limit > 0 {
        let limit = s.rate_limit as usize;
        let now = Instant::now();
        let hits = s.hits.entry(key.to_string()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            hits.pop_front();
        }
        if hits.len() >= limit {
            return Err(rate_limited());
        }
        hits.push_back(now);
    }

    // Scripted failures, also ahead of the idempotency layer (as a load balancer's would be).
    if let Some(failure) = s.failures.pop_front() {
        return Err(scripted(&failure));
    }
    Ok(())
}

/// A `Stripe-Version` header must name an API version.
fn check_version(req: &HttpRequest) -> Result<(), Answer> {
    if let Some(version) = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        && !is_api_version(version)
    {
        return Err(invalid(
            None,
            &format!("Invalid Stripe API version: {version}"),
        ));
    }
    Ok(())
}

/// A restricted key needs the route's resource permission.
fn check_permission(
    permissions: Option<&HashSet<String>>,
    segments: &[&str],
    write: bool,
    key: &str,
) -> Result<(), Answer> {
    if let (Some(permissions), Some(resource)) = (permissions, resource(segments))
        && !allowed(permissions, resource, write)
    {
        let level = if write { "write" } else { "read" };
        return Err(error(
            403,
            "invalid_request_error",
            None,
            None,
            &format!(
                "The provided key '{}' does not have the required permissions for this endpoint on account '{ACCOUNT_ID}'. Having the 'rak_{resource}_{level}' permission would allow this request to continue.",
                redact(key)
            ),
        ));
    }
    Ok(())
}

/// Parameters: the query string, and for POST the form body (`text`) on top.
fn read_params(req: &HttpRequest, method: &str, text: &str) -> Result<Map<String, Value>, Answer> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_json = text.trim_start().starts_with('{') || text.trim_start().starts_with('[');
    if !text.trim().is_empty() && (content_type.starts_with("application/json") || looks_json) {
        return Err(invalid(
            None,
            "Invalid request (check that your POST content type is application/x-www-form-urlencoded). If you have any questions, we can help at https://support.stripe.com/.",
        ));
    }
    let mut params = match parse_form(req.query_string()) {
        Ok(p) => p,
        Err(e) => return Err(invalid(None, &format!("Invalid query string: {e}"))),
    };
    if method == "POST" {
        match parse_form(text) {
            Ok(p) => params.extend(p),
            Err(e) => return Err(invalid(None, &format!("Invalid request body: {e}"))),
        }
    }
    Ok(params)
}

pub(super) fn route(
    s: &mut State,
    method: &str,
    segments: &[&str],
    params: &Map<String, Value>,
    origin: &Origin,
    path: &str,
) -> Answer {
    let livemode = origin.livemode;
    if let Some(answer) = write_route(s, method, segments, params, origin) {
        return answer;
    }
    match (method, segments) {
        ("GET", ["v1", "events"]) => list_events(s, params).unwrap_or_else(|a| a),
        ("GET", ["v1", "balance_transactions"]) => {
            list_balance_transactions(s, params).unwrap_or_else(|a| a)
        }
        ("GET", ["v1", "customers"]) => {
            super::customers::list_customers(s, params).unwrap_or_else(|a| a)
        }
        ("GET", ["v1", "customers", "search"]) => {
            super::customers::search_customers(s, params).unwrap_or_else(|a| a)
        }
        ("GET", ["v1", "events", id]) => retrieve_event(s, id, params).unwrap_or_else(|a| a),
        ("GET", ["v1", "webhook_endpoints"]) => list_endpoints(s, params).unwrap_or_else(|a| a),
        ("POST", ["v1", "webhook_endpoints"]) => {
            create_endpoint(s, params, livemode).unwrap_or_else(|a| a)
        }
        ("GET", ["v1", "webhook_endpoints", id]) => {
            match s.endpoints.iter().find(|e| e.value["id"] == *id) {
                Some(endpoint) => Answer::ok(endpoint.value.clone()),
                None => no_such("webhook endpoint", id, "id", 404),
            }
        }
        ("POST", ["v1", "webhook_endpoints", id]) => {
            update_endpoint(s, id, params).unwrap_or_else(|a| a)
        }
        ("DELETE", ["v1", "webhook_endpoints", id]) => {
            match s.endpoints.iter().position(|e| e.value["id"] == *id) {
                Some(i) => {
                    s.endpoints.remove(i);
                    Answer::ok(json!({"id": id, "object": "webhook_endpoint", "deleted": true}))
                }
                None => no_such("webhook endpoint", id, "id", 404),
            }
        }
        ("GET", ["v1", "checkout", "sessions", id]) => {
            retrieve_object(s, "checkout.session", id, params).unwrap_or_else(|a| a)
        }
        ("GET", ["v1", collection, id]) => {
            match OBJECT_ROUTES.iter().find(|(p, _, _)| p == collection) {
                Some((_, object, _)) => {
                    retrieve_object(s, object, id, params).unwrap_or_else(|a| a)
                }
                None => unrecognized(method, path),
            }
        }
        _ => unrecognized(method, path),
    }
}
