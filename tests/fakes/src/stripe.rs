//! A fake Stripe REST API (v1): API-key auth (secret and restricted keys, bearer or basic),
//! form-encoded bodies in Stripe's bracket notation, idempotent POSTs, the objects Tributary
//! reads (customers, subscriptions, invoices, payment intents, charges, checkout sessions,
//! prices, products, balance transactions, payouts) with `expand[]`, the balance transactions
//! an automatic payout paid out (`settle_charge`, `pay_out`), the events list with its filters
//! and cursors, webhook endpoints (create, list, retrieve, update, delete, at most 16), and the
//! writes Tributary makes (customers, subscriptions, invoice items, customer-portal sessions).
//! Every write records the events Stripe would (`customer.created`, `customer.updated` with
//! `previous_attributes`, …), each naming the request and `Idempotency-Key` that caused it,
//! and delivers them, signed, to the enabled webhook endpoints that listen for them.
//!
//! Written from Stripe's OpenAPI description (2023-09-12) and its documented behaviour:
//! every error is Stripe's `{"error": {type, code, param, message, doc_url,
//! request_log_url}}` object; lists are `{"object": "list", "url", "has_more", "data"}`,
//! newest first. A test can script failures (`fail_next`), rate-limit a key (`rate_limit`)
//! and restrict a key's permissions (`restrict`).
//!
//! Order of the checks, as Stripe documents it: authentication, then the rate limiter (which
//! runs before the idempotency layer, so a 429 is never replayed), then permissions and
//! request validation, then idempotency and the endpoint itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Logged, RequestLog, Served};
use catalog::EVENT_TYPES;

/// A test-mode secret key the fake accepts with every permission.
pub const SECRET_KEY: &str = "sk_test_51TributaryFakeStripeSecretKey00000000";
/// A live-mode secret key the fake accepts with every permission.
pub const LIVE_SECRET_KEY: &str = "sk_live_51TributaryFakeStripeSecretKey00000000";
/// The account every key belongs to (named in permission errors).
pub const ACCOUNT_ID: &str = "acct_1TributaryFake0001";
/// The account's default API version (the newest in the 2023-09-12 spec's enum).
pub const API_VERSION: &str = "2023-08-16";
/// Stripe allows at most this many webhook endpoints per account.
pub const MAX_WEBHOOK_ENDPOINTS: usize = 16;
/// Stripe keeps events for 30 days.
pub const EVENT_RETENTION_DAYS: i64 = 30;
/// Attempts the fake makes to deliver an event to an endpoint, by default.
pub const DELIVERY_ATTEMPTS: u32 = 4;
/// The fake's wait before retrying a delivery, by default; it doubles after each retry.
pub const RETRY_DELAY: Duration = Duration::from_millis(100);

/// One request the fake answered, with the Stripe headers it carried.
#[derive(Debug, Clone)]
pub struct StripeLogged {
    pub request: Logged,
    /// The `Stripe-Version` request header.
    pub stripe_version: Option<String>,
    /// The `Idempotency-Key` request header.
    pub idempotency_key: Option<String>,
    /// Whether the answer was a replay of an earlier idempotent request.
    pub replayed: bool,
    /// The `Request-Id` the fake answered with.
    pub request_id: String,
}

/// An answer before it becomes an `HttpResponse`; kept as is for idempotent replays.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

struct StoredEvent {
    seq: u64,
    event: Value,
    delivered: bool,
}

impl StoredEvent {
    fn created(&self) -> i64 {
        self.event["created"].as_i64().unwrap_or(0)
    }
}

struct Endpoint {
    seq: u64,
    value: Value,
    secret: String,
}

struct Saved {
    fingerprint: String,
    answer: Answer,
    request_id: String,
}

struct Failure {
    status: u16,
    should_retry: Option<bool>,
}

/// One attempt to deliver an event to a webhook endpoint.
#[derive(Debug, Clone)]
pub struct StripeDelivery {
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status answered, `None` when no answer came.
    pub status: Option<u16>,
    /// Why no answer came.
    pub error: Option<String>,
    /// The `Stripe-Signature` header sent.
    pub signature: String,
    /// The exact body sent (what the signature covers).
    pub body: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl StripeDelivery {
    /// Whether the endpoint answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

struct State {
    /// API key → `None` for a secret key (everything allowed), or a restricted key's
    /// permissions (`customer_read`, `event_read`, `webhook_write`, …).
    keys: HashMap<String, Option<HashSet<String>>>,
    objects: HashMap<String, Value>,
    events: Vec<StoredEvent>,
    endpoints: Vec<Endpoint>,
    seq: u64,
    /// (API key, Idempotency-Key) → the saved answer.
    idempotency: HashMap<(String, String), Saved>,
    failures: VecDeque<Failure>,
    /// Requests per second per key; 0 is no limit.
    rate_limit: u32,
    hits: HashMap<String, VecDeque<Instant>>,
    event_types: HashSet<String>,
    /// Object id → the order it was first stored in.
    object_order: HashMap<String, u64>,
    /// Balance transaction id → the automatic or manual payout that paid it out.
    paid_out: HashMap<String, String>,
    /// Events recorded by the request being answered, to deliver once it is.
    outbox: Vec<String>,
    deliveries: Vec<StripeDelivery>,
    /// Event deliveries still running (retries included).
    in_flight: usize,
    /// Attempts per delivery, and the wait before the first retry (doubling after it).
    delivery_attempts: u32,
    retry_delay: Duration,
}

impl State {
    fn new() -> State {
        let mut keys = HashMap::new();
        keys.insert(SECRET_KEY.to_string(), None);
        keys.insert(LIVE_SECRET_KEY.to_string(), None);
        State {
            keys,
            objects: HashMap::new(),
            events: Vec::new(),
            endpoints: Vec::new(),
            seq: 0,
            idempotency: HashMap::new(),
            failures: VecDeque::new(),
            rate_limit: 0,
            hits: HashMap::new(),
            event_types: EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
            object_order: HashMap::new(),
            paid_out: HashMap::new(),
            outbox: Vec::new(),
            deliveries: Vec::new(),
            in_flight: 0,
            delivery_attempts: DELIVERY_ATTEMPTS,
            retry_delay: RETRY_DELAY,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Stores an object under its id, remembering when it was first stored.
    fn store(&mut self, object: Value) {
        let id = object["id"].as_str().unwrap_or_default().to_string();
        if !self.object_order.contains_key(&id) {
            let seq = self.next_seq();
            self.object_order.insert(id.clone(), seq);
        }
        self.objects.insert(id, object);
    }
}

type Shared = Arc<Mutex<State>>;

/// A running fake Stripe API.
pub struct FakeStripe {
    /// `http://127.0.0.1:<port>`; the API lives under `/v1/`.
    pub base_url: String,
    /// Every request answered, in order.
    pub log: RequestLog,
    stripe_log: Arc<Mutex<Vec<StripeLogged>>>,
    state: Shared,
    served: Served,
}

mod answer;
mod balance;
mod catalog;
mod control;
mod customers;
mod dashboard;
mod endpoints;
mod handle;
mod lists;
mod objects;
mod params;
mod subscriptions;
mod webhooks;
mod writes;

#[cfg(test)]
mod tests;

pub use balance::Settlement;
pub use params::{parse_form, stripe_id};
pub use webhooks::{hmac_sha256, signature_header};
