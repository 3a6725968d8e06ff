//! A fake HubSpot CRM: CRM v3 objects (create, read, batch read, patch, batch upsert, search,
//! merge),
//! v3 properties (read all of an object type), v4 default associations and association lists,
//! the OAuth token endpoint and token metadata, with HubSpot's auth rules, rate-limit headers
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
//!
//! It also delivers an app's webhooks ([`webhooks`]): signed batches of CRM events POSTed to a
//! target URL and retried as HubSpot retries them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{Authorizer, RequestLog, Served};

pub const PRIVATE_APP_TOKEN: &str = "pat-na1-00000000-fake-private-app";
pub const CLIENT_ID: &str = "hubspot-fake-client";
pub const CLIENT_SECRET: &str = "hubspot-fake-secret";
/// The portal installs go into unless told otherwise (the id in HubSpot's examples).
pub const PORTAL_ID: u64 = 62515;

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
    /// The HubSpot account (portal) the next install goes into, as the person picks it on
    /// HubSpot's install page.
    portal: u64,
    /// Refresh and access token → the portal it acts in.
    token_portals: HashMap<String, u64>,
    /// (object, primary id, merged id) of every merge.
    merges: Vec<(String, String, String)>,
}

/// HubSpot's API limits: a budget per rolling interval and a daily one.
struct Limits {
    max: u64,
    interval_ms: u64,
    daily: u64,
    /// When each request of the last interval came.
    window: std::collections::VecDeque<std::time::Instant>,
    day_start: std::time::Instant,
    today: u64,
    /// An announced `Retry-After`: when it was announced, and until when it runs.
    retry_after: Option<(std::time::Instant, std::time::Instant)>,
    /// Requests that came while an announced `Retry-After` was pending (after
    /// [`limits::IN_FLIGHT`]).
    early: u64,
}

pub struct FakeHubSpot {
    pub base_url: String,
    pub log: RequestLog,
    state: Arc<Mutex<State>>,
    served: Served,
}

type Shared = Arc<Mutex<State>>;

mod answers;
mod associated;
mod control;
pub(crate) mod limits;
mod merge;
mod oauth;
mod objects;
mod post;
mod properties;
mod routes;
mod state;
pub mod webhooks;

pub use post::{decode_uri, hmac_sha256, signature_v1, signature_v3};
pub use webhooks::{Attempt, WebhookSender};
