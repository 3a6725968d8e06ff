//! A fake Salesforce: a login server (the OAuth token endpoint, with the refresh-token and JWT
//! bearer grants) and an org instance (sObjects, upsert by external id, SOQL, limits), sharing
//! one state, so a test can tell that calls go to the token response's `instance_url`.
//!
//! Errors are Salesforce's arrays (`[{"message", "errorCode", "fields"}]`); every API answer
//! carries `Sforce-Limit-Info`. A refused write changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::{Authorizer, RequestLog, Served, query_map, token};

pub const CLIENT_ID: &str = "3MVG9-fake-consumer-key";
pub const CLIENT_SECRET: &str = "fake-consumer-secret";
pub const USERNAME: &str = "integration@example.com";
/// The integration user; records' default `OwnerId`.
pub const API_USER_ID: &str = "005000000000001AAA";
/// The connected app certificate's private key (a throwaway test key).
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../keys/salesforce-test-key.pem");
/// Its public key, which the fake verifies JWT assertions with.
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../keys/salesforce-test-key.pub.pem");

const TASK_PRIORITIES: &[&str] = &["High", "Normal", "Low"];
const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];

struct Field {
    external_id: bool,
}

struct Stage {
    name: String,
    closed: bool,
    won: bool,
}

struct State {
    next_id: u64,
    fields: HashMap<String, HashMap<String, Field>>,
    records: HashMap<String, Vec<Map<String, Value>>>,
    stages: Vec<Stage>,
    sessions: HashMap<String, bool>,
    refresh_tokens: Vec<String>,
    limit_exhausted: bool,
    rotate: bool,
    used: u64,
    max: u64,
    login_url: String,
    instance_url: String,
    auth: Authorizer,
    revoked: Vec<String>,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeSalesforce {
    pub login_url: String,
    pub instance_url: String,
    pub log: RequestLog,
    state: Shared,
    login: Served,
    instance: Served,
}

fn prefix(object: &str) -> &'static str {
    match object {
        "Account" => "001",
        "Contact" => "003",
        "Opportunity" => "006",
        "Lead" => "00Q",
        "Task" => "00T",
        "User" => "005",
        "RecordType" => "012",
        "OpportunityStage" => "01J",
        _ => "a00",
    }
}

fn standard_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &[
            "Name",
            "OwnerId",
            "Phone",
            "Website",
            "Type",
            "Description",
            "AccountNumber",
        ],
        "Contact" => &[
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "AccountId",
            "OwnerId",
        ],
        "Lead" => &[
            "FirstName",
            "LastName",
            "Email",
            "Company",
            "Status",
            "OwnerId",
        ],
        "Opportunity" => &[
            "Name",
            "StageName",
            "CloseDate",
            "Amount",
            "AccountId",
            "OwnerId",
            "RecordTypeId",
            "Description",
            "Probability",
        ],
        "Task" => &[
            "Subject",
            "Description",
            "Priority",
            "Status",
            "ActivityDate",
            "WhatId",
            "WhoId",
            "OwnerId",
        ],
        _ => &[],
    }
}

fn required_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Account" => &["Name"],
        "Contact" => &["LastName"],
        "Lead" => &["LastName", "Company"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        _ => &[],
    }
}

fn sf_error(status: u16, code: &str, message: &str, fields: &[&str]) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .json(json!([{ "message": message, "errorCode": code, "fields": fields }]))
}

fn oauth_error(code: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": code, "error_description": description }))
}

/// A field of a record, by case-insensitive name.
fn get_field<'a>(record: &'a Map<String, Value>, name: &str) -> Option<(&'a String, &'a Value)> {
    record.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))
}

impl State {
    fn new() -> Self {
        let stages = [
            ("Prospecting", false, false),
            ("Qualification", false, false),
            ("Needs Analysis", false, false),
            ("Proposal/Price Quote", false, false),
            ("Negotiation/Review", false, false),
            ("Closed Won", true, true),
            ("Closed Lost", true, false),
        ]
        .iter()
        .map(|(name, closed, won)| Stage {
            name: name.to_string(),
            closed: *closed,
            won: *won,
        })
        .collect();
        let mut fields = HashMap::new();
        for object in ["Account", "Contact", "Lead", "Opportunity", "Task"] {
            fields.insert(
                object.to_string(),
                standard_fields(object)
                    .iter()
                    .map(|f| (f.to_string(), Field { external_id: false }))
                    .collect(),
            );
        }
        State {
            next_id: 100,
            fields,
            records: HashMap::new(),
            stages,
            sessions: HashMap::new(),
            refresh_tokens: Vec::new(),
            limit_exhausted: false,
            rotate: false,
            used: 0,
            max: 15000,
            login_url: String::new(),
            instance_url: String::new(),
            auth: Authorizer::default(),
            revoked: Vec::new(),
        }
    }

    fn new_id(&mut self, object: &str) -> String {
        self.next_id += 1;
        format!("{}{:012}AAA", prefix(object), self.next_id)
    }

    fn known_object(&self, object: &str) -> bool {
        self.fields.contains_key(object)
    }

    /// The canonical name of a field of `object`, if it has one.
    fn field_name(&self, object: &str, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("Id") {
            return Some("Id".into());
        }
        self.fields
            .get(object)?
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
    }

    fn record_index(&self, object: &str, id: &str) -> Option<usize> {
        self.records
            .get(object)?
            .iter()
            .position(|r| r.get("Id").and_then(Value::as_str) == Some(id))
    }

    fn exists_anywhere(&self, id: &str) -> bool {
        id == API_USER_ID
            || self
                .records
                .values()
                .flatten()
                .any(|r| r.get("Id").and_then(Value::as_str) == Some(id))
    }

    /// Checks a write; returns the fields with canonical names.
    fn validate(
        &self,
        object: &str,
        body: &Map<String, Value>,
        creating: bool,
    ) -> Result<Map<String, Value>, HttpResponse> {
        let mut fields = Map::new();
        for (name, value) in body {
            if name == "attributes" {
                continue;
            }
            let Some(canonical) = self.field_name(object, name).filter(|n| n != "Id") else {
                return Err(sf_error(
                    400,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on sobject of type {object}"),
                    &[],
                ));
            };
            fields.insert(canonical, value.clone());
        }
        for (name, value) in &fields {
            let text = value.as_str();
            let bad = |code: &str, message: String| sf_error(400, code, &message, &[name.as_str()]);
            let picklist = |allowed: bool, label: &str| {
                (!allowed).then(|| {
                    bad(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        format!("{label}: bad value for restricted picklist field: {value}"),
                    )
                })
            };
            let refused = match name.as_str() {
                "StageName" => picklist(
                    text.is_some_and(|t| self.stages.iter().any(|s| s.name == t)),
                    "Stage",
                ),
                "Priority" if object == "Task" => picklist(
                    text.is_some_and(|t| TASK_PRIORITIES.contains(&t)),
                    "Priority",
                ),
                "Status" if object == "Task" => picklist(
                    text.is_some_and(|t| TASK_STATUSES.contains(&t)),
                    "Status",
                ),
                "CloseDate" | "ActivityDate" => text
                    .is_none_or(|t| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err())
                    .then(|| {
                        bad(
                            "JSON_PARSER_ERROR",
                            format!("Cannot deserialize instance of date from VALUE_STRING value {value}"),
                        )
                    }),
                "Amount" | "Probability" => {
                    let numeric =
                        value.is_number() || text.is_some_and(|t| t.parse::<f64>().is_ok());
                    (!numeric).then(|| {
                        bad(
                            "JSON_PARSER_ERROR",
                            format!("Cannot deserialize instance of double from {value}"),
                        )
                    })
                }
                _ => None,
            };
            if let Some(response) = refused {
                return Err(response);
            }
            match name.as_str() {
                "WhatId" | "WhoId" | "AccountId" | "OwnerId" | "RecordTypeId" => {
                    let Some(id) = text else {
                        return Err(bad(
                            "MALFORMED_ID",
                            format!("{name}: id value of incorrect type: {value}"),
                        ));
                    };
                    if id.len() != 15 && id.len() != 18 {
                        return Err(bad(
                            "MALFORMED_ID",
                            format!("{name}: id value of incorrect type: {id}"),
                        ));
                    }
                    let valid = match name.as_str() {
                        "OwnerId" => id.starts_with("005"),
                        "RecordTypeId" => id.starts_with("012"),
                        _ => self.exists_anywhere(id),
                    };
                    if !valid {
                        return Err(bad(
                            "FIELD_INTEGRITY_EXCEPTION",
                            format!("{name}: id value of incorrect type: {id}"),
                        ));
                    }
                }
                _ => {}
            }
        }
        if creating {
            let missing: Vec<&str> = required_fields(object)
                .iter()
                .copied()
                .filter(|f| fields.get(*f).is_none_or(Value::is_null))
                .collect();
            if !missing.is_empty() {
                return Err(sf_error(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    &format!("Required fields are missing: [{}]", missing.join(", ")),
                    &missing,
                ));
            }
        }
        // Numbers sent as text are stored as numbers, as Salesforce does.
        for name in ["Amount", "Probability"] {
            if let Some(Value::String(text)) = fields.get(name)
                && let Ok(number) = text.parse::<f64>()
            {
                fields.insert(name.into(), json!(number));
            }
        }
        Ok(fields)
    }

    fn create(&mut self, object: &str, mut fields: Map<String, Value>) -> String {
        let id = self.new_id(object);
        fields.insert("Id".into(), json!(id));
        if object != "User" && !fields.contains_key("OwnerId") {
            fields.insert("OwnerId".into(), json!(API_USER_ID));
        }
        self.records
            .entry(object.to_string())
            .or_default()
            .push(fields);
        id
    }

    fn stage_records(&self) -> Vec<Map<String, Value>> {
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut m = Map::new();
                m.insert("Id".into(), json!(format!("01J{:012}AAA", i + 1)));
                m.insert("ApiName".into(), json!(s.name));
                m.insert("MasterLabel".into(), json!(s.name));
                m.insert("IsActive".into(), json!(true));
                m.insert("IsClosed".into(), json!(s.closed));
                m.insert("IsWon".into(), json!(s.won));
                m.insert("SortOrder".into(), json!(i + 1));
                m.insert(
                    "DefaultProbability".into(),
                    json!(if s.won {
                        100
                    } else if s.closed {
                        0
                    } else {
                        10 * (i + 1)
                    }),
                );
                m
            })
            .collect()
    }
}

// ----- SOQL -----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Eq,
    Ne,
    Comma,
}

fn tokenize(soql: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = soql.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        if let Some(next) = chars.get(i + 1) {
                            text.push(*next);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if c == '=' {
            out.push(Tok::Eq);
            i += 1;
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            out.push(Tok::Ne);
            i += 2;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "_.-".contains(chars[i])) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected token: '{c}'"));
        }
    }
    Ok(out)
}

struct Query {
    fields: Vec<String>,
    object: String,
    conditions: Vec<(String, bool, Value)>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

fn keyword(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn parse_soql(soql: &str) -> Result<Query, String> {
    let toks = tokenize(soql)?;
    let mut i = 0;
    if !keyword(toks.get(i), "SELECT") {
        return Err("expecting SELECT".into());
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        match toks.get(i) {
            Some(Tok::Word(w)) => fields.push(w.clone()),
            _ => return Err("expecting a field name".into()),
        }
        i += 1;
        if toks.get(i) == Some(&Tok::Comma) {
            i += 1;
        } else {
            break;
        }
    }
    if !keyword(toks.get(i), "FROM") {
        return Err("expecting FROM".into());
    }
    i += 1;
    let object = match toks.get(i) {
        Some(Tok::Word(w)) => w.clone(),
        _ => return Err("expecting an object name".into()),
    };
    i += 1;
    let mut conditions = Vec::new();
    if keyword(toks.get(i), "WHERE") {
        i += 1;
        loop {
            let field = match toks.get(i) {
                Some(Tok::Word(w)) => w.clone(),
                _ => return Err("expecting a field in WHERE".into()),
            };
            let equal = match toks.get(i + 1) {
                Some(Tok::Eq) => true,
                Some(Tok::Ne) => false,
                _ => return Err(format!("unexpected token after {field}")),
            };
            let value = match toks.get(i + 2) {
                Some(Tok::Str(s)) => json!(s),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => json!(true),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => json!(false),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
                Some(Tok::Word(w)) => match w.parse::<f64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Err(format!("unexpected value: {w}")),
                },
                _ => return Err("expecting a value".into()),
            };
            conditions.push((field, equal, value));
            i += 3;
            if keyword(toks.get(i), "AND") {
                i += 1;
            } else {
                break;
            }
        }
    }
    let mut order = None;
    if keyword(toks.get(i), "ORDER") && keyword(toks.get(i + 1), "BY") {
        let field = match toks.get(i + 2) {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err("expecting a field in ORDER BY".into()),
        };
        i += 3;
        let mut ascending = true;
        if keyword(toks.get(i), "ASC") {
            i += 1;
        } else if keyword(toks.get(i), "DESC") {
            ascending = false;
            i += 1;
        }
        order = Some((field, ascending));
    }
    let mut limit = None;
    if keyword(toks.get(i), "LIMIT") {
        limit = match toks.get(i + 1) {
            Some(Tok::Word(w)) => Some(w.parse().map_err(|_| "bad LIMIT".to_string())?),
            _ => return Err("expecting a number after LIMIT".into()),
        };
        i += 2;
    }
    if i != toks.len() {
        return Err(format!("unexpected token at position {i}"));
    }
    Ok(Query {
        fields,
        object,
        conditions,
        order,
        limit,
    })
}

fn values_equal(actual: Option<&Value>, wanted: &Value) -> bool {
    match (actual, wanted) {
        (None | Some(Value::Null), Value::Null) => true,
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

fn run_query(s: &State, soql: &str, version: &str) -> HttpResponse {
    let query = match parse_soql(soql) {
        Ok(q) => q,
        Err(message) => return sf_error(400, "MALFORMED_QUERY", &message, &[]),
    };
    let object = query.object.clone();
    let records = if object.eq_ignore_ascii_case("OpportunityStage") {
        s.stage_records()
    } else if s.known_object(&object) {
        s.records.get(&object).cloned().unwrap_or_default()
    } else {
        return sf_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{object}' is not supported."),
            &[],
        );
    };
    let check_field = |name: &str| -> Result<(), HttpResponse> {
        let known = if object.eq_ignore_ascii_case("OpportunityStage") {
            [
                "Id",
                "ApiName",
                "MasterLabel",
                "IsActive",
                "IsClosed",
                "IsWon",
                "SortOrder",
                "DefaultProbability",
            ]
            .iter()
            .any(|f| f.eq_ignore_ascii_case(name))
        } else {
            s.field_name(&object, name).is_some()
        };
        if known {
            Ok(())
        } else {
            Err(sf_error(
                400,
                "INVALID_FIELD",
                &format!("No such column '{name}' on entity '{object}'."),
                &[],
            ))
        }
    };
    for field in query
        .fields
        .iter()
        .chain(query.conditions.iter().map(|(f, _, _)| f))
        .chain(query.order.iter().map(|(f, _)| f))
    {
        if let Err(response) = check_field(field) {
            return response;
        }
    }
    let mut found: Vec<Map<String, Value>> = records
        .into_iter()
        .filter(|r| {
            query.conditions.iter().all(|(field, equal, wanted)| {
                values_equal(get_field(r, field).map(|(_, v)| v), wanted) == *equal
            })
        })
        .collect();
    if let Some((field, ascending)) = &query.order {
        found.sort_by(|a, b| {
            let key = |r: &Map<String, Value>| get_field(r, field).map(|(_, v)| v.to_string());
            let ordering = key(a).cmp(&key(b));
            if *ascending {
                ordering
            } else {
                ordering.reverse()
            }
        });
    }
    if let Some(limit) = query.limit {
        found.truncate(limit);
    }
    let rows: Vec<Value> = found
        .iter()
        .map(|r| {
            let id = r.get("Id").and_then(Value::as_str).unwrap_or("");
            let mut row = Map::new();
            row.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}),
            );
            for field in &query.fields {
                match get_field(r, field) {
                    Some((name, value)) => row.insert(name.clone(), value.clone()),
                    None => row.insert(field.clone(), Value::Null),
                };
            }
            Value::Object(row)
        })
        .collect();
    HttpResponse::Ok().json(json!({ "totalSize": rows.len(), "done": true, "records": rows }))
}

// ----- handlers -----

fn login(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut s = state.lock().unwrap();
    let mut new_refresh = None;
    let scope = match get("grant_type") {
        "refresh_token" => {
            if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if !s.refresh_tokens.iter().any(|t| t == get("refresh_token")) {
                return oauth_error("invalid_grant", "expired access/refresh token");
            }
            if s.rotate {
                // Refresh token rotation: the old one is spent, a new one comes back.
                let old = get("refresh_token").to_string();
                s.refresh_tokens.retain(|t| *t != old);
                let refresh = token("5Aep861-fake-rotated-");
                s.refresh_tokens.push(refresh.clone());
                new_refresh = Some(refresh);
            }
            "api refresh_token"
        }
        "authorization_code" => {
            if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if let Err(reason) = s.auth.redeem(&form) {
                if reason == crate::REDIRECT_MISMATCH {
                    return oauth_error(
                        "redirect_uri_mismatch",
                        "redirect_uri must match configuration",
                    );
                }
                return oauth_error("invalid_grant", &reason);
            }
            let refresh = token("5Aep861-fake-refresh-");
            s.refresh_tokens.push(refresh.clone());
            new_refresh = Some(refresh);
            "api refresh_token offline_access"
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            if let Err(response) = check_assertion(get("assertion"), &s.login_url) {
                return response;
            }
            "api"
        }
        other => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("grant type not supported: {other}"),
            );
        }
    };
    let access = token("00D000000000001!fake-session-");
    s.sessions.insert(access.clone(), true);
    let issued = Utc::now().timestamp_millis().to_string();
    let mut answer = json!({
        "access_token": access,
        "instance_url": s.instance_url,
        "id": format!("{}/id/00D000000000001AAA/{API_USER_ID}", s.login_url),
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": "ZmFrZS1zaWduYXR1cmU=",
        "scope": scope,
    });
    if let Some(refresh) = new_refresh {
        answer["refresh_token"] = json!(refresh);
    }
    HttpResponse::Ok().json(answer)
}

fn revoke(state: &Shared, body: &[u8]) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let token = form.get("token").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.refresh_tokens.retain(|t| *t != token);
    s.sessions.remove(&token);
    s.revoked.push(token);
    HttpResponse::Ok().finish()
}

fn check_assertion(assertion: &str, login_url: &str) -> Result<(), HttpResponse> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes()).expect("the test key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let claims = match decode::<Value>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(oauth_error(
                "invalid_grant",
                &format!("invalid assertion: {e}"),
            ));
        }
    };
    if claims.get("iss").and_then(Value::as_str) != Some(CLIENT_ID) {
        return Err(oauth_error(
            "invalid_client_id",
            "client identifier invalid",
        ));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(login_url) {
        return Err(oauth_error("invalid_grant", "audience is invalid"));
    }
    if claims.get("sub").and_then(Value::as_str) != Some(USERNAME) {
        return Err(oauth_error(
            "invalid_grant",
            "user hasn't approved this consumer",
        ));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp > Utc::now().timestamp() + 185 {
        return Err(oauth_error(
            "invalid_grant",
            "expiration time is too far in the future",
        ));
    }
    Ok(())
}

fn api(state: &Shared, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let mut s = state.lock().unwrap();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if s.sessions.get(bearer) != Some(&true) {
        return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid", &[]);
    }
    if s.limit_exhausted {
        return sf_error(
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            &[],
        );
    }
    s.used += 1;
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
    let json_body = || -> Result<Map<String, Value>, HttpResponse> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(sf_error(
                400,
                "JSON_PARSER_ERROR",
                "The request body is not a JSON object",
                &[],
            )),
        }
    };
    let decode = |segment: &str| -> String {
        url::form_urlencoded::parse(format!("v={segment}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    match (method.as_str(), rest) {
        ("GET", ["limits"]) => HttpResponse::Ok().json(json!({
            "DailyApiRequests": {"Max": s.max, "Remaining": s.max.saturating_sub(s.used)}
        })),
        ("GET", ["query"]) => {
            let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .map(|q| q.into_inner())
                .unwrap_or_default();
            match query.get("q") {
                Some(soql) => run_query(&s, soql, version),
                None => sf_error(400, "MALFORMED_QUERY", "q is required", &[]),
            }
        }
        ("POST", ["sobjects", object]) => {
            if !s.known_object(object) {
                return sf_error(
                    404,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                    &[],
                );
            }
            let fields = match json_body().and_then(|b| s.validate(object, &b, true)) {
                Ok(f) => f,
                Err(response) => return response,
            };
            let id = s.create(object, fields);
            HttpResponse::Created().json(json!({"id": id, "success": true, "errors": []}))
        }
        ("GET", ["sobjects", object, id]) => match s.record_index(object, id) {
            Some(i) => {
                let record = &s.records[*object][i];
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
        },
        ("PATCH", ["sobjects", object, id]) => {
            let Some(i) = s.record_index(object, id) else {
                return sf_error(
                    404,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                    &[],
                );
            };
            let fields = match json_body().and_then(|b| s.validate(object, &b, false)) {
                Ok(f) => f,
                Err(response) => return response,
            };
            s.records.get_mut(*object).unwrap()[i].extend(fields);
            HttpResponse::NoContent().finish()
        }
        ("PATCH", ["sobjects", object, field, value]) => {
            let value = decode(value);
            let external = s
                .fields
                .get(*object)
                .and_then(|f| f.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)))
                .filter(|(_, def)| def.external_id)
                .map(|(k, _)| k.clone());
            let Some(field) = external else {
                return sf_error(
                    404,
                    "NOT_FOUND",
                    &format!(
                        "Provided external ID field does not exist or is not accessible: {field}"
                    ),
                    &[],
                );
            };
            let body = match json_body() {
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
                .get(*object)
                .map(|rs| {
                    rs.iter()
                        .enumerate()
                        .filter(|(_, r)| {
                            r.get(&field).and_then(Value::as_str) == Some(value.as_str())
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
                    let record = &mut s.records.get_mut(*object).unwrap()[*i];
                    record.extend(fields);
                    let id = record["Id"].clone();
                    HttpResponse::Ok()
                        .json(json!({"id": id, "success": true, "errors": [], "created": false}))
                }
                several => {
                    let urls: Vec<String> = several
                        .iter()
                        .map(|i| {
                            let id = s.records[*object][*i]["Id"]
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
        _ => sf_error(
            404,
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        ),
    }
}

fn serve(state: Shared, log: RequestLog, is_login: bool) -> Served {
    Served::answering(log, move |req, body| {
        if is_login {
            return match (req.method().as_str(), req.path()) {
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
        }
        let mut response = api(&state, req, body);
        let s = state.lock().unwrap();
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("sforce-limit-info"),
            actix_web::http::header::HeaderValue::from_str(&format!(
                "api-usage={}/{}",
                s.used, s.max
            ))
            .unwrap(),
        );
        response
    })
}

impl FakeSalesforce {
    /// Starts the login server and the org instance on `127.0.0.1:0`.
    pub fn start() -> FakeSalesforce {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let login = serve(state.clone(), log.clone(), true);
        let instance = serve(state.clone(), log.clone(), false);
        {
            let mut s = state.lock().unwrap();
            s.login_url = login.base_url.clone();
            s.instance_url = instance.base_url.clone();
        }
        FakeSalesforce {
            login_url: login.base_url.clone(),
            instance_url: instance.base_url.clone(),
            log,
            state,
            login,
            instance,
        }
    }

    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("5Aep861-fake-refresh-");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
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

    /// Tokens revoked through `/services/oauth2/revoke`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Every session issued so far is refused from now on.
    pub fn expire_sessions(&self) {
        for valid in self.state.lock().unwrap().sessions.values_mut() {
            *valid = false;
        }
    }

    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// While set, each refresh spends its refresh token and answers a new one (the connected
    /// app's refresh token rotation).
    pub fn rotate_refresh_tokens(&self, rotate: bool) {
        self.state.lock().unwrap().rotate = rotate;
    }

    /// While set, every API call answers 403 `REQUEST_LIMIT_EXCEEDED`.
    pub fn exhaust_daily_limit(&self, exhausted: bool) {
        self.state.lock().unwrap().limit_exhausted = exhausted;
    }

    pub fn set_api_usage(&self, used: u64, max: u64) {
        let mut s = self.state.lock().unwrap();
        s.used = used;
        s.max = max;
    }

    /// Adds a custom field; an external id can key upserts.
    pub fn define_field(&self, object: &str, name: &str, external_id: bool) {
        self.state
            .lock()
            .unwrap()
            .fields
            .entry(object.to_string())
            .or_default()
            .insert(name.to_string(), Field { external_id });
    }

    /// Replaces the opportunity stages: (name, IsClosed, IsWon).
    pub fn set_stages(&self, stages: &[(&str, bool, bool)]) {
        self.state.lock().unwrap().stages = stages
            .iter()
            .map(|(name, closed, won)| Stage {
                name: name.to_string(),
                closed: *closed,
                won: *won,
            })
            .collect();
    }

    /// Seeds a record without validation; returns its id.
    pub fn insert(&self, object: &str, fields: Value) -> String {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().create(object, fields)
    }

    pub fn record(&self, object: &str, id: &str) -> Option<Map<String, Value>> {
        let s = self.state.lock().unwrap();
        s.record_index(object, id)
            .map(|i| s.records[object][i].clone())
    }

    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(object)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn stop(&self) {
        self.login.stop().await;
        self.instance.stop().await;
    }
}
