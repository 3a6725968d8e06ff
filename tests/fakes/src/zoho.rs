//! A fake Zoho CRM: an accounts server (the OAuth token endpoint) and an API domain (records:
//! insert, update, upsert with `duplicate_check_fields`, search, read, list, delete; field
//! metadata; the current user; the Notifications API), sharing one state, so a test can tell
//! that calls go to the token response's `api_domain`.
//!
//! As Zoho does: a refused refresh answers HTTP 200 with `{"error": "invalid_code"}`; API calls
//! need `Authorization: Zoho-oauthtoken …`; every record in a `data` array gets its own result
//! (`SUCCESS`, `DUPLICATE_DATA`, `INVALID_DATA`, `MANDATORY_NOT_FOUND`) naming the field; a
//! refused record changes nothing. Records carry `Created_Time`, `Modified_Time` (ISO-8601 to
//! the second, in the org's time zone) and `Created_By`/`Modified_By`: the API's caller is the
//! integration user ([`INTEGRATION_USER_ID`]); the controls act as another user
//! ([`OTHER_USER_ID`]), like someone editing in Zoho's UI. Listing all records needs `fields`
//! (at most 50), sorts by `id`, `Created_Time` or `Modified_Time`, pages 200 at a time up to
//! the 2,000th record, and with `If-Modified-Since` answers 304 when nothing changed since.
//!
//! Notifications (`/actions/watch`, NOTIFICATIONS.md): channels are enabled with POST, updated
//! with PATCH (given details only; `_delete_events` removes events) or PUT (all details),
//! listed with GET and disabled with DELETE. `token` longer than 50 characters is
//! `INVALID_DATA`; a missing `channel_id`, `events` or `notify_url` is `MANDATORY_NOT_FOUND`;
//! `channel_expiry` omitted or more than a week away becomes one hour; an expired channel is
//! gone, and PATCH or PUT on it answers `NOT_SUBSCRIBED`. Every change to a watched module's
//! records, through the API or the controls, POSTs the callback (its `query_params` read from
//! the `notify_url`) to the channel's `notify_url` over real HTTP from a background task;
//! [`FakeZoho::callbacks`] lists those sent, with the status each got. The fake's own choices
//! where Zoho's docs are silent: `affected_fields` lists the changed field names, or with
//! `return_affected_field_values` one object per record id mapping it to the changed fields'
//! values; a POST naming a live channel replaces it; callbacks go to `http://` URLs only.
//!
//! Its own limits: API credits per day (over them, 429 `TOO_MANY_REQUESTS` without
//! `Retry-After`, which Zoho does not promise), and at most 30 live access tokens per refresh
//! token (Zoho Accounts' limit; one more is refused with `Access Denied`, "too many requests").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};

use crate::{Authorizer, RequestLog, Served};

pub const CLIENT_ID: &str = "1000.FAKEZOHOCLIENT";
pub const CLIENT_SECRET: &str = "fake-zoho-secret";

/// The user the API's callers act as (the current user of every token).
pub const INTEGRATION_USER_ID: &str = "5725767000000411001";
/// The user the controls act as: someone working in Zoho's UI.
pub const OTHER_USER_ID: &str = "5725767000000411002";

#[derive(Clone)]
struct Field {
    data_type: String,
    mandatory: bool,
    unique: bool,
}

/// A notification channel.
#[derive(Clone)]
struct Channel {
    id: String,
    /// `Module.operation`, operation `create`, `edit`, `delete` or `all`.
    events: Vec<String>,
    notify_url: String,
    token: Option<String>,
    expiry: DateTime<Utc>,
    affected_values: bool,
    related: bool,
    condition: Option<Value>,
}

/// A change to a record, waiting to be told to the channels watching its module.
struct Change {
    module: String,
    /// `insert`, `update` or `delete`, as callbacks name them.
    operation: &'static str,
    id: String,
    /// The fields an update changed, with their new values.
    fields: Map<String, Value>,
}

/// A callback the fake sent to a channel's `notify_url`.
#[derive(Debug, Clone)]
pub struct Callback {
    pub at: DateTime<Utc>,
    pub url: String,
    pub body: Value,
    /// The listener's HTTP status; `None` when it could not be reached (see `error`).
    pub status: Option<u16>,
    pub error: Option<String>,
}

type Callbacks = Arc<Mutex<Vec<Callback>>>;

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
    /// Notification channels by id.
    channels: HashMap<String, Channel>,
    /// Changes made by the request or control under way.
    changes: Vec<Change>,
    callbacks: Callbacks,
    /// Added to the real clock (a test moves the fake's time).
    clock: chrono::Duration,
    /// The org's time zone, in which record times are written.
    zone: FixedOffset,
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
mod deliver;
mod listing;
mod oauth;
mod records;
mod state;
#[cfg(test)]
mod tests;
mod watch;
