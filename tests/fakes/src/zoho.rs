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

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{Authorizer, RequestLog, Served};

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

mod answers;
mod control;
mod oauth;
mod records;
mod state;
