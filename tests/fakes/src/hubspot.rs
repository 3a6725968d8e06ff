//! A fake HubSpot CRM: CRM v3 objects (create, read, patch, batch upsert, search), v4 default
//! associations and the OAuth token endpoint, with HubSpot's auth rules, rate-limit headers
//! and error bodies.
//!
//! Property values are strings, as HubSpot's API requires; a write naming a property the
//! object does not have is refused with `PROPERTY_DOESNT_EXIST` and changes nothing.
//!
//! Each refusal has the one shape HubSpot uses for that endpoint: single-object writes answer
//! 400 with the invalid properties as JSON inside `message` (no `errors` array); batch upsert
//! answers 207 multi-status, writing the valid inputs and listing each refused one in `errors`
//! (`StandardError`, details in its own `errors` with `code` and `context.propertyName`).
//!
//! Rate limits are the fake's own: a per-interval budget (100 per 10 s) and a daily one
//! (250,000), both announced in the `X-HubSpot-RateLimit-*` headers of every answer; over
//! either, 429 with `policyName` `TEN_SECONDLY_ROLLING` or `DAILY` and no `Retry-After` (HubSpot
//! promises none). Tokens carry scopes; a call without the endpoint's scope gets HubSpot's 403
//! `MISSING_SCOPES` naming the scope required.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{Authorizer, RequestLog, Served, query_map, token};

pub const PRIVATE_APP_TOKEN: &str = "pat-na1-00000000-fake-private-app";
pub const CLIENT_ID: &str = "hubspot-fake-client";
pub const CLIENT_SECRET: &str = "hubspot-fake-secret";

/// A stored record; every property value is a string.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub properties: Map<String, Value>,
}

struct Property {
    unique: bool,
}

struct State {
    next_id: u64,
    /// object type → property name → definition
    properties: HashMap<String, HashMap<String, Property>>,
    records: HashMap<String, Vec<Record>>,
    associations: Vec<(String, String, String, String)>,
    /// access token → expiry
    access_tokens: HashMap<String, DateTime<Utc>>,
    refresh_tokens: Vec<String>,
    ttl: i64,
    throttle: usize,
    retry_after: u64,
    auth: Authorizer,
    revoked: Vec<String>,
    limits: Limits,
    /// The scopes every token holds; `None`: all of them.
    scopes: Option<Vec<String>>,
}

/// HubSpot's API limits: a budget per interval and a daily one.
struct Limits {
    max: u64,
    interval_ms: u64,
    daily: u64,
    window_start: std::time::Instant,
    in_window: u64,
    day_start: std::time::Instant,
    today: u64,
}

impl Limits {
    fn new() -> Self {
        Limits {
            max: 100,
            interval_ms: 10_000,
            daily: 250_000,
            window_start: std::time::Instant::now(),
            in_window: 0,
            day_start: std::time::Instant::now(),
            today: 0,
        }
    }

    /// Counts one request; `Err` names the policy it broke.
    fn take(&mut self) -> Result<(), &'static str> {
        let now = std::time::Instant::now();
        if now.duration_since(self.window_start).as_millis() >= u128::from(self.interval_ms) {
            self.window_start = now;
            self.in_window = 0;
        }
        if now.duration_since(self.day_start).as_secs() >= 86_400 {
            self.day_start = now;
            self.today = 0;
        }
        if self.today >= self.daily {
            return Err("DAILY");
        }
        if self.in_window >= self.max {
            return Err("TEN_SECONDLY_ROLLING");
        }
        self.in_window += 1;
        self.today += 1;
        Ok(())
    }

    fn headers(&self, response: &mut HttpResponse) {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-hubspot-ratelimit-daily", self.daily),
            (
                "x-hubspot-ratelimit-daily-remaining",
                self.daily.saturating_sub(self.today),
            ),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                self.interval_ms,
            ),
            ("x-hubspot-ratelimit-max", self.max),
            (
                "x-hubspot-ratelimit-remaining",
                self.max.saturating_sub(self.in_window),
            ),
        ] {
            headers.insert(
                actix_web::http::header::HeaderName::from_static(name),
                actix_web::http::header::HeaderValue::from(value),
            );
        }
    }
}

pub struct FakeHubSpot {
    pub base_url: String,
    pub log: RequestLog,
    state: Arc<Mutex<State>>,
    served: Served,
}

fn plural(object: &str) -> Option<&'static str> {
    match object {
        "contacts" | "contact" | "0-1" => Some("contacts"),
        "companies" | "company" | "0-2" => Some("companies"),
        "deals" | "deal" | "0-3" => Some("deals"),
        _ => None,
    }
}

fn default_properties() -> HashMap<String, HashMap<String, Property>> {
    let mut all = HashMap::new();
    for (object, names, unique) in [
        (
            "contacts",
            &[
                "email",
                "firstname",
                "lastname",
                "phone",
                "company",
                "website",
                "lifecyclestage",
                "jobtitle",
                "city",
                "country",
            ][..],
            "email",
        ),
        (
            "companies",
            &["name", "domain", "phone", "city"][..],
            "domain",
        ),
        (
            "deals",
            &[
                "dealname",
                "dealstage",
                "pipeline",
                "amount",
                "closedate",
                "deal_currency_code",
                "description",
            ][..],
            "",
        ),
    ] {
        let map: HashMap<String, Property> = names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Property {
                        unique: *n == unique,
                    },
                )
            })
            .collect();
        all.insert(object.to_string(), map);
    }
    all
}

fn correlation() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn error(status: u16, category: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "status": "error",
        "message": message,
        "correlationId": correlation(),
        "category": category,
    }))
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn object_json(record: &Record) -> Value {
    let mut properties = record.properties.clone();
    properties.insert("hs_object_id".into(), json!(record.id));
    properties
        .entry("createdate")
        .or_insert_with(|| json!(now_text()));
    properties.insert("lastmodifieddate".into(), json!(now_text()));
    json!({
        "id": record.id,
        "properties": properties,
        "createdAt": properties["createdate"],
        "updatedAt": properties["lastmodifieddate"],
        "archived": false,
    })
}

impl State {
    fn new() -> Self {
        State {
            next_id: 1000,
            properties: default_properties(),
            records: HashMap::new(),
            associations: Vec::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            ttl: 1800,
            throttle: 0,
            retry_after: 1,
            auth: Authorizer::default(),
            revoked: Vec::new(),
            limits: Limits::new(),
            scopes: None,
        }
    }

    /// Checks a write's properties: known and string-valued. `Err` holds one (name, code,
    /// message) per refused property.
    fn check_properties(
        &self,
        object: &str,
        properties: &Map<String, Value>,
    ) -> Result<(), Vec<(String, &'static str, String)>> {
        let known = &self.properties[object];
        let mut refused = Vec::new();
        for (name, value) in properties {
            if !known.contains_key(name) {
                let message = format!("Property \"{name}\" does not exist");
                refused.push((name.clone(), "PROPERTY_DOESNT_EXIST", message));
            } else if !value.is_string() {
                let message =
                    format!("{value} is not a valid value for {name}: it must be a string");
                refused.push((name.clone(), "INVALID_STRING", message));
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// A single-object write's refusal: 400, the invalid properties as JSON in `message`.
    fn validate(&self, object: &str, properties: &Map<String, Value>) -> Result<(), HttpResponse> {
        let refused = self.check_properties(object, properties).err();
        let Some(refused) = refused else {
            return Ok(());
        };
        let invalid: Vec<Value> = refused
            .iter()
            .map(|(name, code, message)| {
                json!({"isValid": false, "message": message, "error": code, "name": name,
                       "localizedErrorMessage": message})
            })
            .collect();
        Err(HttpResponse::BadRequest().json(json!({
            "status": "error",
            "message": format!("Property values were not valid: {}", Value::Array(invalid)),
            "correlationId": correlation(),
            "category": "VALIDATION_ERROR",
        })))
    }

    fn find(&self, object: &str, property: &str, value: &str) -> Option<usize> {
        self.records.get(object)?.iter().position(|r| {
            r.properties
                .get(property)
                .and_then(Value::as_str)
                .is_some_and(|v| {
                    if property == "email" {
                        v.eq_ignore_ascii_case(value)
                    } else {
                        v == value
                    }
                })
        })
    }

    fn by_id(&self, object: &str, id: &str) -> Option<usize> {
        self.records.get(object)?.iter().position(|r| r.id == id)
    }

    /// A unique property whose value another record already holds.
    fn conflict(
        &self,
        object: &str,
        properties: &Map<String, Value>,
        except: Option<&str>,
    ) -> Option<String> {
        for (name, def) in &self.properties[object] {
            if !def.unique {
                continue;
            }
            if let Some(value) = properties.get(name).and_then(Value::as_str)
                && let Some(i) = self.find(object, name, value)
            {
                let id = &self.records[object][i].id;
                if Some(id.as_str()) != except {
                    return Some(id.clone());
                }
            }
        }
        None
    }

    fn insert(&mut self, object: &str, properties: Map<String, Value>) -> Record {
        self.next_id += 1;
        let mut properties = properties;
        properties.insert("createdate".into(), json!(now_text()));
        let record = Record {
            id: self.next_id.to_string(),
            properties,
        };
        self.records
            .entry(object.to_string())
            .or_default()
            .push(record.clone());
        record
    }
}

type Shared = Arc<Mutex<State>>;

fn singular(object: &str) -> &'static str {
    match object {
        "contacts" => "Contact",
        "companies" => "Company",
        _ => "Deal",
    }
}

fn properties_of(body: &Value) -> Result<Map<String, Value>, HttpResponse> {
    match body.get("properties") {
        Some(Value::Object(map)) => Ok(map.clone()),
        None => Ok(Map::new()),
        Some(_) => Err(error(
            400,
            "VALIDATION_ERROR",
            "properties must be an object",
        )),
    }
}

/// Answers one request; the caller logs it.
fn handle(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
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
    if method == "DELETE"
        && let Some(refresh) = path.strip_prefix("/oauth/v1/refresh-tokens/")
    {
        let mut s = state.lock().unwrap();
        s.refresh_tokens.retain(|t| t != refresh);
        s.revoked.push(refresh.to_string());
        return HttpResponse::NoContent().finish();
    }

    let mut s = state.lock().unwrap();
    // Auth.
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
                return error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                );
            }
            Some(expiry) if *expiry <= Utc::now() => {
                return error(
                    401,
                    "EXPIRED_AUTHENTICATION",
                    "The OAuth token used to make this call expired 0 second(s) ago.",
                );
            }
            Some(_) => {}
        }
    }
    if s.throttle > 0 {
        s.throttle -= 1;
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
        return response;
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
    let mut response = match (method.as_str(), segments.as_slice()) {
        ("GET", ["crm", "v3", "objects", object]) => match plural(object) {
            Some(object) => {
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
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object]) => match plural(object) {
            Some(object) => create(&mut s, object, &json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("GET", ["crm", "v3", "objects", object, id]) => match plural(object) {
            Some(object) => match locate(&s, object, id, query.get("idProperty")) {
                Some(i) => HttpResponse::Ok().json(object_json(&s.records[object][i])),
                None => error(404, "OBJECT_NOT_FOUND", "resource not found"),
            },
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("PATCH", ["crm", "v3", "objects", object, id]) => match plural(object) {
            Some(object) => patch(&mut s, object, id, query.get("idProperty"), &json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "batch", "upsert"]) => match plural(object) {
            Some(object) => upsert(&mut s, object, &json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        ("POST", ["crm", "v3", "objects", object, "search"]) => match plural(object) {
            Some(object) => search(&s, object, &json_body),
            None => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
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
            (Some(from), Some(to)) => {
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
            _ => error(404, "OBJECT_NOT_FOUND", "Unknown object type"),
        },
        _ => error(404, "NOT_FOUND", &format!("No route for {method} {path}")),
    };
    s.limits.headers(&mut response);
    response
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

fn token_endpoint(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return HttpResponse::BadRequest()
            .json(json!({"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}));
    }
    let mut s = state.lock().unwrap();
    let refresh = match get("grant_type") {
        "refresh_token" => {
            let refresh = get("refresh_token").to_string();
            if !s.refresh_tokens.contains(&refresh) {
                return HttpResponse::BadRequest().json(json!({
                    "status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"
                }));
            }
            refresh
        }
        "authorization_code" => {
            if let Err(reason) = s.auth.redeem(&form) {
                let status = if reason == crate::REDIRECT_MISMATCH {
                    "BAD_REDIRECT_URI"
                } else {
                    "BAD_AUTH_CODE"
                };
                return HttpResponse::BadRequest()
                    .json(json!({"status": status, "message": reason}));
            }
            let refresh = token("na1-fake-refresh-");
            s.refresh_tokens.push(refresh.clone());
            refresh
        }
        _ => {
            return HttpResponse::BadRequest()
                .json(json!({"status": "BAD_GRANT_TYPE", "message": "unsupported grant_type"}));
        }
    };
    let access = token("CN-fake-access-");
    // Any `expires_in` can be announced (even absurd ones); the fake's own clock saturates.
    let expiry = chrono::TimeDelta::try_seconds(s.ttl)
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    s.access_tokens.insert(access.clone(), expiry);
    HttpResponse::Ok().json(json!({
        "token_type": "bearer",
        "refresh_token": refresh,
        "access_token": access,
        "expires_in": s.ttl,
    }))
}

fn locate(s: &State, object: &str, id: &str, id_property: Option<&String>) -> Option<usize> {
    match id_property.map(String::as_str) {
        Some(property) if property != "hs_object_id" => s.find(object, property, id),
        _ => s.by_id(object, id),
    }
}

fn create(s: &mut State, object: &str, body: &Value) -> HttpResponse {
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

fn patch(
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

fn upsert(s: &mut State, object: &str, body: &Value) -> HttpResponse {
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return error(400, "VALIDATION_ERROR", "inputs is required");
    };
    // Check the request's shape first: a malformed batch writes nothing. Inputs whose
    // properties are refused are listed in a 207's `errors`; the others are written.
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

fn matches_filter(record: &Record, filter: &Value) -> bool {
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

fn search(s: &State, object: &str, body: &Value) -> HttpResponse {
    let groups = body
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(10) as usize;
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
    HttpResponse::Ok().json(json!({
        "total": found.len(),
        "results": found.iter().take(limit).map(|r| object_json(r)).collect::<Vec<_>>(),
    }))
}

impl FakeHubSpot {
    /// Starts the fake on `127.0.0.1:0` on the current tokio runtime.
    pub fn start() -> FakeHubSpot {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let handler_state = state.clone();
        let served = Served::answering(log.clone(), move |req, body| {
            handle(&handler_state, req, body)
        });
        FakeHubSpot {
            base_url: served.base_url.clone(),
            log,
            state,
            served,
        }
    }

    /// A valid OAuth refresh token for [`CLIENT_ID`].
    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("na1-fake-refresh-");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_access_token_ttl(&self, seconds: i64) {
        self.state.lock().unwrap().ttl = seconds;
    }

    /// Every OAuth access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        for expiry in self.state.lock().unwrap().access_tokens.values_mut() {
            *expiry = past;
        }
    }

    /// Every refresh token issued so far is refused from now on.
    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// Registers a redirect URI for the fake's OAuth app (the callback Tributary sends).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.state.lock().unwrap().auth.register_redirect_uri(uri);
    }

    /// The user refuses the next authorization request.
    pub fn deny_next_authorization(&self) {
        self.state.lock().unwrap().auth.deny_next();
    }

    /// Query parameters of every authorization request.
    pub fn authorization_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().auth.requests.clone()
    }

    /// Refresh tokens revoked through `DELETE /oauth/v1/refresh-tokens/{token}`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// The next `requests` CRM API requests answer 429 with `Retry-After`: an injected fault
    /// (HubSpot's own limits, [`FakeHubSpot::set_rate_limits`], send no `Retry-After`).
    pub fn throttle(&self, requests: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle = requests;
        s.retry_after = retry_after_secs;
    }

    /// The API limits: `max` requests per `interval_ms`, `daily` per day; the counts restart.
    pub fn set_rate_limits(&self, max: u64, interval_ms: u64, daily: u64) {
        let mut s = self.state.lock().unwrap();
        s.limits = Limits::new();
        s.limits.max = max;
        s.limits.interval_ms = interval_ms;
        s.limits.daily = daily;
    }

    /// The scopes every token holds from now on (by default, all).
    pub fn grant_scopes(&self, scopes: &[&str]) {
        self.state.lock().unwrap().scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
    }

    /// Adds a property to an object; a unique one can be an upsert's `idProperty`.
    pub fn define_property(&self, object: &str, name: &str, unique: bool) {
        let object = plural(object).expect("a known object type");
        self.state
            .lock()
            .unwrap()
            .properties
            .get_mut(object)
            .unwrap()
            .insert(name.to_string(), Property { unique });
    }

    /// Seeds a record; returns its id.
    pub fn insert(&self, object: &str, properties: Value) -> String {
        let object = plural(object).expect("a known object type");
        let properties = properties.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().insert(object, properties).id
    }

    /// The records of an object, in creation order.
    pub fn records(&self, object: &str) -> Vec<Record> {
        let object = plural(object).expect("a known object type");
        self.state
            .lock()
            .unwrap()
            .records
            .get(object)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut r| {
                r.properties.remove("createdate");
                r
            })
            .collect()
    }

    /// (from type, from id, to type, to id) of every association made.
    pub fn associations(&self) -> Vec<(String, String, String, String)> {
        self.state.lock().unwrap().associations.clone()
    }

    pub async fn stop(&self) {
        self.served.stop().await;
    }
}
