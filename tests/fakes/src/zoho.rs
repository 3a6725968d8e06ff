//! A fake Zoho CRM: an accounts server (the OAuth token endpoint) and an API domain (records:
//! insert, update, upsert with `duplicate_check_fields`, search, read; the current user), sharing
//! one state, so a test can tell that calls go to the token response's `api_domain`.
//!
//! As Zoho does: a refused refresh answers HTTP 200 with `{"error": "invalid_code"}`; API calls
//! need `Authorization: Zoho-oauthtoken …`; every record in a `data` array gets its own result
//! (`SUCCESS`, `DUPLICATE_DATA`, `INVALID_DATA`, `MANDATORY_NOT_FOUND`) naming the field; a
//! refused record changes nothing.
//!
//! Its own limits: API credits per day (over them, 429 `TOO_MANY_REQUESTS` without
//! `Retry-After`, which Zoho does not promise), and at most 30 live access tokens per refresh
//! token (Zoho Accounts' limit; one more is refused with `Access Denied`, "too many requests").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{Authorizer, RequestLog, Served, query_map, token};

pub const CLIENT_ID: &str = "1000.FAKEZOHOCLIENT";
pub const CLIENT_SECRET: &str = "fake-zoho-secret";

#[derive(Clone)]
struct Field {
    data_type: String,
    mandatory: bool,
    unique: bool,
}

struct State {
    next_id: u64,
    modules: HashMap<String, HashMap<String, Field>>,
    records: HashMap<String, Vec<Map<String, Value>>>,
    access_tokens: HashMap<String, DateTime<Utc>>,
    refresh_tokens: Vec<String>,
    ttl: i64,
    throttle: usize,
    retry_after: u64,
    api_domain: String,
    accounts_url: String,
    auth: Authorizer,
    revoked: Vec<String>,
    /// API calls allowed per day, and those made since `day_start`.
    credits: u64,
    used: u64,
    day_start: DateTime<Utc>,
    /// Live access tokens one refresh token may hold at once.
    tokens_per_refresh: usize,
    /// access token → the refresh token that minted it
    minted_by: HashMap<String, String>,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeZoho {
    pub accounts_url: String,
    pub api_domain: String,
    pub log: RequestLog,
    state: Shared,
    accounts: Served,
    api: Served,
}

fn field(data_type: &str, mandatory: bool, unique: bool) -> Field {
    Field {
        data_type: data_type.to_string(),
        mandatory,
        unique,
    }
}

fn default_modules() -> HashMap<String, HashMap<String, Field>> {
    let mut modules = HashMap::new();
    let contacts: HashMap<String, Field> = [
        ("First_Name", field("text", false, false)),
        ("Last_Name", field("text", true, false)),
        ("Email", field("email", false, true)),
        ("Phone", field("phone", false, false)),
        ("Mobile", field("phone", false, false)),
        ("Account_Name", field("lookup", false, false)),
        ("Description", field("textarea", false, false)),
        ("Mailing_City", field("text", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let leads: HashMap<String, Field> = [
        ("First_Name", field("text", false, false)),
        ("Last_Name", field("text", true, false)),
        ("Company", field("text", false, false)),
        ("Email", field("email", false, true)),
        ("Phone", field("phone", false, false)),
        ("Lead_Status", field("picklist", false, false)),
        ("Lead_Source", field("picklist", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let deals: HashMap<String, Field> = [
        ("Deal_Name", field("text", true, false)),
        ("Stage", field("picklist", true, false)),
        ("Amount", field("double", false, false)),
        ("Closing_Date", field("date", false, false)),
        ("Contact_Name", field("lookup", false, false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    modules.insert("Contacts".to_string(), contacts);
    modules.insert("Leads".to_string(), leads);
    modules.insert("Deals".to_string(), deals);
    modules
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

fn user() -> Value {
    json!({"name": "Fake Admin", "id": "5725767000000411001", "email": "admin@example.com"})
}

fn whole_error(status: u16, code: &str, message: &str, details: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(json!({
        "code": code, "details": details, "message": message, "status": "error"
    }))
}

fn record_error(code: &str, message: &str, api_name: &str, index: usize, extra: Value) -> Value {
    let mut details =
        json!({"api_name": api_name, "json_path": format!("$.data[{index}].{api_name}")});
    if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

fn success(id: &str, action: &str, duplicate_field: Option<&str>) -> Value {
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

fn looks_like_email(text: &str) -> bool {
    let mut parts = text.split('@');
    matches!((parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None) if !local.is_empty() && domain.contains('.'))
}

fn same(field: &str, a: &Value, b: &str) -> bool {
    match a.as_str() {
        Some(a) if field == "Email" => a.eq_ignore_ascii_case(b),
        Some(a) => a == b,
        None => matches!(a, Value::Number(n) if n.to_string() == b),
    }
}

impl State {
    fn new() -> Self {
        State {
            next_id: 5725767000000500000,
            modules: default_modules(),
            records: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            ttl: 3600,
            throttle: 0,
            retry_after: 1,
            api_domain: String::new(),
            accounts_url: String::new(),
            auth: Authorizer::default(),
            revoked: Vec::new(),
            credits: 50_000,
            used: 0,
            day_start: Utc::now(),
            tokens_per_refresh: 30,
            minted_by: HashMap::new(),
        }
    }

    fn find(&self, module: &str, field: &str, value: &str) -> Option<usize> {
        self.records
            .get(module)?
            .iter()
            .position(|r| r.get(field).is_some_and(|v| same(field, v, value)))
    }

    fn by_id(&self, module: &str, id: &str) -> Option<usize> {
        self.records
            .get(module)?
            .iter()
            .position(|r| r.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Checks one record's fields; `Err` is its per-record error entry.
    fn check(
        &self,
        module: &str,
        record: &Map<String, Value>,
        index: usize,
        inserting: bool,
    ) -> Result<Map<String, Value>, Value> {
        let fields = &self.modules[module];
        let mut clean = Map::new();
        for (name, value) in record {
            if name == "id" {
                continue;
            }
            let Some(def) = fields.get(name) else {
                // Zoho ignores fields a module does not have.
                continue;
            };
            let ok = match def.data_type.as_str() {
                "double" | "currency" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "email" => value.as_str().is_some_and(looks_like_email),
                "date" => value
                    .as_str()
                    .is_some_and(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()),
                "lookup" => value.is_object() || value.is_string(),
                _ => value.is_string() || value.is_null(),
            };
            if !ok {
                return Err(record_error(
                    "INVALID_DATA",
                    "invalid data",
                    name,
                    index,
                    json!({"expected_data_type": def.data_type}),
                ));
            }
            clean.insert(name.clone(), value.clone());
        }
        if inserting {
            for (name, def) in fields {
                if def.mandatory && clean.get(name).is_none_or(|v| v.is_null() || v == "") {
                    return Err(record_error(
                        "MANDATORY_NOT_FOUND",
                        "required field not found",
                        name,
                        index,
                        json!({}),
                    ));
                }
            }
        }
        Ok(clean)
    }

    /// A unique field of `record` another record already holds: (field, existing id).
    fn duplicate(
        &self,
        module: &str,
        record: &Map<String, Value>,
        except: Option<&str>,
    ) -> Option<(String, String)> {
        for (name, def) in &self.modules[module] {
            if !def.unique {
                continue;
            }
            if let Some(value) = record.get(name).and_then(Value::as_str)
                && let Some(i) = self.find(module, name, value)
            {
                let id = self.records[module][i]["id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if Some(id.as_str()) != except {
                    return Some((name.clone(), id));
                }
            }
        }
        None
    }

    fn insert(&mut self, module: &str, mut record: Map<String, Value>) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        record.insert("id".into(), json!(id));
        self.records
            .entry(module.to_string())
            .or_default()
            .push(record);
        id
    }
}

/// The HTTP status for a `data` answer: all good, some good, or none.
fn batch_status(results: &[Value], ok: StatusCode) -> HttpResponse {
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

fn token_endpoint(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    // Zoho takes the parameters in the query string or a form body.
    let mut form: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    form.extend(serde_urlencoded::from_bytes::<HashMap<String, String>>(body).unwrap_or_default());
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut s = state.lock().unwrap();
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return HttpResponse::Ok().json(json!({"error": "invalid_client"}));
    }
    let mut new_refresh = None;
    let minting = match get("grant_type") {
        "refresh_token" => get("refresh_token").to_string(),
        _ => String::new(),
    };
    match get("grant_type") {
        "refresh_token" if s.refresh_tokens.iter().any(|t| t == get("refresh_token")) => {
            let now = Utc::now();
            let live = s
                .minted_by
                .iter()
                .filter(|(access, by)| {
                    **by == minting && s.access_tokens.get(*access).is_some_and(|e| *e > now)
                })
                .count();
            if live >= s.tokens_per_refresh {
                return HttpResponse::BadRequest().json(json!({
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously. Please try again after some time.",
                    "status": "failure",
                }));
            }
        }
        "authorization_code" => {
            if let Err(reason) = s.auth.redeem(&form) {
                let error = if reason == crate::REDIRECT_MISMATCH {
                    "invalid_redirect_uri"
                } else {
                    "invalid_code"
                };
                return HttpResponse::Ok().json(json!({ "error": error }));
            }
            let refresh = token("1000.fake-refresh.");
            s.refresh_tokens.push(refresh.clone());
            new_refresh = Some(refresh);
        }
        _ => return HttpResponse::Ok().json(json!({"error": "invalid_code"})),
    }
    let access = token("1000.fake-access.");
    let expiry = Utc::now() + chrono::Duration::seconds(s.ttl);
    s.access_tokens.insert(access.clone(), expiry);
    if !minting.is_empty() {
        s.minted_by.insert(access.clone(), minting);
    }
    let mut answer = json!({
        "access_token": access,
        "scope": "ZohoCRM.modules.ALL ZohoCRM.users.READ",
        "api_domain": s.api_domain,
        "token_type": "Bearer",
        "expires_in": s.ttl,
    });
    if let Some(refresh) = new_refresh {
        answer["refresh_token"] = json!(refresh);
    }
    HttpResponse::Ok().json(answer)
}

fn api(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let mut s = state.lock().unwrap();
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(bearer) = header.strip_prefix("Zoho-oauthtoken ") else {
        return whole_error(
            401,
            "AUTHENTICATION_FAILURE",
            "Authentication failed",
            json!({}),
        );
    };
    match s.access_tokens.get(bearer) {
        Some(expiry) if *expiry > Utc::now() => {}
        _ => return whole_error(401, "INVALID_TOKEN", "invalid oauth token", json!({})),
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
        return response;
    }
    if (Utc::now() - s.day_start).num_seconds() >= 86_400 {
        s.day_start = Utc::now();
        s.used = 0;
    }
    if s.used >= s.credits {
        return whole_error(
            429,
            "TOO_MANY_REQUESTS",
            "The number of API requests has exceeded the limit. Try again later.",
            json!({}),
        );
    }
    s.used += 1;
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
    let data = || -> Result<(Vec<Map<String, Value>>, Value), HttpResponse> {
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
    };
    let module_known = |s: &State, module: &str| s.modules.contains_key(module);
    match (method.as_str(), rest) {
        ("GET", ["users"]) => HttpResponse::Ok().json(json!({"users": [user()]})),
        ("POST", [module]) | ("POST", [module, "upsert"]) | ("PUT", [module]) => {
            let module = module.to_string();
            if !module_known(&s, &module) {
                return whole_error(
                    400,
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    json!({}),
                );
            }
            let (records, body) = match data() {
                Ok(d) => d,
                Err(response) => return response,
            };
            let upsert = rest.len() == 2;
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
                    update(&mut s, &module, id, record, index)
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
                            let mut r = update(&mut s, &module, &id, record, index);
                            if r["status"] == "success" {
                                r["duplicate_field"] = json!(field);
                            }
                            r
                        }
                        None => insert(&mut s, &module, record, index),
                    }
                } else {
                    insert(&mut s, &module, record, index)
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
        ("PUT", [module, id]) => {
            let module = module.to_string();
            if !module_known(&s, &module) {
                return whole_error(
                    400,
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    json!({}),
                );
            }
            let (records, _) = match data() {
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
            let result = update(&mut s, &module, id, record, 0);
            batch_status(&[result], StatusCode::OK)
        }
        ("GET", [module, "search"]) => {
            let module = module.to_string();
            if !module_known(&s, &module) {
                return whole_error(
                    400,
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    json!({}),
                );
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
                            "starts_with" => actual.and_then(Value::as_str).is_some_and(|a| {
                                a.to_lowercase().starts_with(&value.to_lowercase())
                            }),
                            _ => false,
                        }
                    })
                })
                .map(Value::Object)
                .collect();
            if found.is_empty() {
                return HttpResponse::NoContent().finish();
            }
            HttpResponse::Ok().json(json!({
                "data": found,
                "info": {"per_page": 200, "count": found.len(), "page": 1, "more_records": false}
            }))
        }
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
    let id = s.insert(module, clean);
    success(&id, "insert", None)
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
    s.records.get_mut(module).unwrap()[i].extend(clean);
    success(id, "update", None)
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

fn serve(state: Shared, log: RequestLog, is_accounts: bool) -> Served {
    Served::answering(log, move |req, body| {
        if !is_accounts {
            return api(&state, req, body);
        }
        match (req.method().as_str(), req.path()) {
            ("POST", "/oauth/v2/token") => token_endpoint(&state, req, body),
            ("POST", "/oauth/v2/token/revoke") => {
                let token = query_map(req).remove("token").unwrap_or_default();
                let mut s = state.lock().unwrap();
                s.refresh_tokens.retain(|t| *t != token);
                s.revoked.push(token);
                HttpResponse::Ok().json(json!({"status": "success"}))
            }
            ("GET", "/oauth/v2/auth") => {
                let mut s = state.lock().unwrap();
                let accounts = s.accounts_url.clone();
                s.auth.authorize(
                    query_map(req),
                    CLIENT_ID,
                    &[("location", "us"), ("accounts-server", &accounts)],
                )
            }
            _ => HttpResponse::NotFound().finish(),
        }
    })
}

impl FakeZoho {
    /// Starts the accounts server and the API domain on `127.0.0.1:0`.
    pub fn start() -> FakeZoho {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let accounts = serve(state.clone(), log.clone(), true);
        let api = serve(state.clone(), log.clone(), false);
        {
            let mut s = state.lock().unwrap();
            s.api_domain = api.base_url.clone();
            s.accounts_url = accounts.base_url.clone();
        }
        FakeZoho {
            accounts_url: accounts.base_url.clone(),
            api_domain: api.base_url.clone(),
            log,
            state,
            accounts,
            api,
        }
    }

    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("1000.fake-refresh.");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
    }

    pub fn set_access_token_ttl(&self, seconds: i64) {
        self.state.lock().unwrap().ttl = seconds;
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

    /// Refresh tokens revoked through `/oauth/v2/token/revoke`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Every access token issued so far is invalid from now on.
    pub fn expire_access_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        for expiry in self.state.lock().unwrap().access_tokens.values_mut() {
            *expiry = past;
        }
    }

    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// API calls allowed per day from now on (the count restarts); over them, 429 without
    /// `Retry-After`.
    pub fn set_api_credits(&self, credits: u64) {
        let mut s = self.state.lock().unwrap();
        s.credits = credits;
        s.used = 0;
        s.day_start = Utc::now();
    }

    /// Live access tokens one refresh token may hold at once (Zoho's is 30).
    pub fn set_tokens_per_refresh_token(&self, cap: usize) {
        self.state.lock().unwrap().tokens_per_refresh = cap;
    }

    /// The next `requests` API calls answer 429 with `Retry-After`: an injected fault (the
    /// fake's own credit limit, [`FakeZoho::set_api_credits`], sends none).
    pub fn throttle(&self, requests: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle = requests;
        s.retry_after = retry_after_secs;
    }

    /// Adds a custom field (`text`, `double`, `currency`, `email`, `phone`, `integer`).
    pub fn define_field(&self, module: &str, api_name: &str, data_type: &str) {
        self.state
            .lock()
            .unwrap()
            .modules
            .entry(module.to_string())
            .or_default()
            .insert(api_name.to_string(), field(data_type, false, false));
    }

    /// Seeds a record without checks; returns its id.
    pub fn insert(&self, module: &str, fields: Value) -> String {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().insert(module, fields)
    }

    pub fn records(&self, module: &str) -> Vec<Map<String, Value>> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(module)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn stop(&self) {
        self.accounts.stop().await;
        self.api.stop().await;
    }
}
