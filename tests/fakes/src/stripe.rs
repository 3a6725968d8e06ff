//! A fake Stripe REST API (v1): API-key auth (secret and restricted keys, bearer or basic),
//! form-encoded bodies in Stripe's bracket notation, idempotent POSTs, the objects Tributary
//! reads (customers, subscriptions, invoices, payment intents, charges, checkout sessions,
//! prices, products) with `expand[]`, the events list with its filters and cursors, and
//! webhook endpoints (create, list, retrieve, update, delete, at most 16).
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

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::{Logged, RequestLog, Served};

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

/// Event types `enabled_events` accepts (besides `*`): the types of the resources Tributary
/// deals with, from the `enabled_events` enum of `POST /v1/webhook_endpoints`
/// (API version 2023-08-16). [`FakeStripe::accept_event_types`] adds more.
const EVENT_TYPES: &[&str] = &[
    "charge.captured",
    "charge.dispute.closed",
    "charge.dispute.created",
    "charge.dispute.funds_reinstated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.expired",
    "charge.failed",
    "charge.pending",
    "charge.refund.updated",
    "charge.refunded",
    "charge.succeeded",
    "charge.updated",
    "checkout.session.async_payment_failed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.completed",
    "checkout.session.expired",
    "coupon.created",
    "coupon.deleted",
    "coupon.updated",
    "credit_note.created",
    "credit_note.updated",
    "credit_note.voided",
    "customer.created",
    "customer.deleted",
    "customer.discount.created",
    "customer.discount.deleted",
    "customer.discount.updated",
    "customer.source.created",
    "customer.source.deleted",
    "customer.source.expiring",
    "customer.source.updated",
    "customer.subscription.created",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.updated",
    "customer.tax_id.created",
    "customer.tax_id.deleted",
    "customer.tax_id.updated",
    "customer.updated",
    "invoice.created",
    "invoice.deleted",
    "invoice.finalization_failed",
    "invoice.finalized",
    "invoice.marked_uncollectible",
    "invoice.paid",
    "invoice.payment_action_required",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.sent",
    "invoice.upcoming",
    "invoice.updated",
    "invoice.voided",
    "invoiceitem.created",
    "invoiceitem.deleted",
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.created",
    "payment_intent.partially_funded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_method.attached",
    "payment_method.automatically_updated",
    "payment_method.detached",
    "payment_method.updated",
    "plan.created",
    "plan.deleted",
    "plan.updated",
    "price.created",
    "price.deleted",
    "price.updated",
    "product.created",
    "product.deleted",
    "product.updated",
    "promotion_code.created",
    "promotion_code.updated",
    "refund.created",
    "refund.updated",
    "setup_intent.canceled",
    "setup_intent.created",
    "setup_intent.requires_action",
    "setup_intent.setup_failed",
    "setup_intent.succeeded",
    "subscription_schedule.aborted",
    "subscription_schedule.canceled",
    "subscription_schedule.completed",
    "subscription_schedule.created",
    "subscription_schedule.expiring",
    "subscription_schedule.released",
    "subscription_schedule.updated",
    "tax_rate.created",
    "tax_rate.updated",
];

/// The objects served by id: (path under `/v1/`, `object` value, restricted-key resource).
const OBJECT_ROUTES: &[(&str, &str, &str)] = &[
    ("customers", "customer", "customer"),
    ("subscriptions", "subscription", "subscription"),
    ("invoices", "invoice", "invoice"),
    ("payment_intents", "payment_intent", "payment_intent"),
    ("charges", "charge", "charge"),
    ("checkout/sessions", "checkout.session", "checkout_session"),
    ("prices", "price", "price"),
    ("products", "product", "product"),
];

/// `x-expandableFields` of each served object in the 2023-09-12 spec. Only the fields naming
/// objects the fake stores actually expand; the others are accepted and left as they are.
fn expandable(object: &str) -> Option<&'static [&'static str]> {
    Some(match object {
        "charge" => &[
            "application",
            "application_fee",
            "balance_transaction",
            "billing_details",
            "customer",
            "failure_balance_transaction",
            "fraud_details",
            "invoice",
            "on_behalf_of",
            "outcome",
            "payment_intent",
            "payment_method_details",
            "radar_options",
            "refunds",
            "review",
            "shipping",
            "source_transfer",
            "transfer",
            "transfer_data",
        ],
        "customer" => &[
            "address",
            "cash_balance",
            "default_source",
            "discount",
            "invoice_settings",
            "shipping",
            "sources",
            "subscriptions",
            "tax",
            "tax_ids",
            "test_clock",
        ],
        "invoice" => &[
            "account_tax_ids",
            "application",
            "automatic_tax",
            "charge",
            "custom_fields",
            "customer",
            "customer_address",
            "customer_shipping",
            "customer_tax_ids",
            "default_payment_method",
            "default_source",
            "default_tax_rates",
            "discount",
            "discounts",
            "from_invoice",
            "last_finalization_error",
            "latest_revision",
            "lines",
            "on_behalf_of",
            "payment_intent",
            "payment_settings",
            "quote",
            "rendering_options",
            "shipping_cost",
            "shipping_details",
            "status_transitions",
            "subscription",
            "subscription_details",
            "test_clock",
            "threshold_reason",
            "total_discount_amounts",
            "total_tax_amounts",
            "transfer_data",
        ],
        "subscription" => &[
            "application",
            "automatic_tax",
            "billing_thresholds",
            "cancellation_details",
            "customer",
            "default_payment_method",
            "default_source",
            "default_tax_rates",
            "discount",
            "items",
            "latest_invoice",
            "on_behalf_of",
            "pause_collection",
            "payment_settings",
            "pending_invoice_item_interval",
            "pending_setup_intent",
            "pending_update",
            "schedule",
            "test_clock",
            "transfer_data",
            "trial_settings",
        ],
        "payment_intent" => &[
            "amount_details",
            "application",
            "automatic_payment_methods",
            "customer",
            "invoice",
            "last_payment_error",
            "latest_charge",
            "next_action",
            "on_behalf_of",
            "payment_method",
            "payment_method_options",
            "processing",
            "review",
            "shipping",
            "transfer_data",
        ],
        "checkout.session" => &[
            "after_expiration",
            "automatic_tax",
            "consent",
            "consent_collection",
            "currency_conversion",
            "custom_fields",
            "custom_text",
            "customer",
            "customer_details",
            "invoice",
            "invoice_creation",
            "line_items",
            "payment_intent",
            "payment_link",
            "payment_method_options",
            "phone_number_collection",
            "setup_intent",
            "shipping_address_collection",
            "shipping_cost",
            "shipping_details",
            "shipping_options",
            "subscription",
            "tax_id_collection",
            "total_details",
        ],
        "price" => &[
            "currency_options",
            "custom_unit_amount",
            "product",
            "recurring",
            "tiers",
            "transform_quantity",
        ],
        "product" => &[
            "default_price",
            "features",
            "package_dimensions",
            "tax_code",
        ],
        "event" => &["data", "request"],
        _ => return None,
    })
}

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

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Stripe's error object. `doc_url` follows the code, as Stripe's do.
fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Answer {
    let mut inner = Map::new();
    if let Some(code) = code {
        inner.insert("code".into(), json!(code));
        inner.insert(
            "doc_url".into(),
            json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            )),
        );
    }
    inner.insert("message".into(), json!(message));
    if let Some(param) = param {
        inner.insert("param".into(), json!(param));
    }
    inner.insert("type".into(), json!(kind));
    Answer {
        status,
        body: json!({ "error": inner }),
        headers: Vec::new(),
    }
}

fn invalid(param: Option<&str>, message: &str) -> Answer {
    error(400, "invalid_request_error", None, param, message)
}

fn missing_param(param: &str) -> Answer {
    error(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some(param),
        &format!("Missing required param: {param}."),
    )
}

fn unknown_param(param: &str) -> Answer {
    error(
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some(param),
        &format!("Received unknown parameter: {param}"),
    )
}

fn no_such(kind: &str, id: &str, param: &str, status: u16) -> Answer {
    error(
        status,
        "invalid_request_error",
        Some("resource_missing"),
        Some(param),
        &format!("No such {kind}: '{id}'"),
    )
}

/// `sk_test_****abcd`: the mode prefix, then the last four characters.
fn redact(key: &str) -> String {
    let prefix_len = [
        "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_",
    ]
    .iter()
    .find(|p| key.starts_with(*p))
    .map_or(0, |p| p.len());
    let tail: String = key
        .chars()
        .rev()
        .take(4.min(key.len().saturating_sub(prefix_len)))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}****{tail}", &key[..prefix_len])
}

/// A Stripe-looking id: `prefix` and 24 alphanumerics.
pub fn stripe_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let tail: String = bytes
        .iter()
        .take(23)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}1{tail}")
}

/// Parses a form body (or query string) in Stripe's bracket notation into a JSON tree of
/// strings: `a[]=x&a[]=y` and `a[0]=x&a[1]=y` → arrays, `a[b]=v` → objects, nested as deep as
/// the keys go.
pub fn parse_form(input: &str) -> Result<Map<String, Value>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(input).map_err(|e| e.to_string())?;
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let (base, segments) = split_key(&key);
        let slot = root
            .as_object_mut()
            .unwrap()
            .entry(base)
            .or_insert(Value::Null);
        insert(slot, &segments, value);
    }
    compact(&mut root);
    match root {
        Value::Object(map) => Ok(map),
        _ => unreachable!(),
    }
}

fn split_key(key: &str) -> (String, Vec<String>) {
    let Some(open) = key.find('[') else {
        return (key.to_string(), Vec::new());
    };
    let base = key[..open].to_string();
    let mut segments = Vec::new();
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            // Not bracket notation after all: keep the key whole.
            return (key.to_string(), Vec::new());
        };
        segments.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    if !rest.is_empty() {
        return (key.to_string(), Vec::new());
    }
    (base, segments)
}

fn insert(slot: &mut Value, segments: &[String], value: String) {
    let Some((first, rest)) = segments.split_first() else {
        *slot = Value::String(value);
        return;
    };
    let index = first.parse::<usize>().ok();
    if first.is_empty() || (index.is_some() && !slot.is_object()) {
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        let array = slot.as_array_mut().unwrap();
        let at = match index {
            Some(i) => {
                if array.len() <= i {
                    array.resize(i + 1, Value::Null);
                }
                i
            }
            None => {
                array.push(Value::Null);
                array.len() - 1
            }
        };
        insert(&mut array[at], rest, value);
    } else {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let child = slot
            .as_object_mut()
            .unwrap()
            .entry(first.clone())
            .or_insert(Value::Null);
        insert(child, rest, value);
    }
}

/// Drops the holes sparse indexes left in arrays.
fn compact(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(compact);
        }
        Value::Object(map) => map.values_mut().for_each(compact),
        _ => {}
    }
}

/// A parameter given as `a[]=x`, `a[0]=x` or `a=x`, as a list of strings.
fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Value::String(s) if s.is_empty() => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn string_param(params: &Map<String, Value>, name: &str) -> Result<Option<String>, Answer> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            Some(name),
            &format!("Invalid {name}: must be a string"),
        )),
    }
}

fn integer(text: &str, param: &str) -> Result<i64, Answer> {
    text.parse()
        .map_err(|_| invalid(Some(param), &format!("Invalid integer: {text}")))
}

fn boolean(text: &str, param: &str) -> Result<bool, Answer> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(Some(param), &format!("Invalid boolean: {text}"))),
    }
}

/// `YYYY-MM-DD`, optionally with a release name (`2024-09-30.acacia`).
fn is_api_version(text: &str) -> bool {
    let date = text.split('.').next().unwrap_or("");
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        && text
            .split('.')
            .nth(1)
            .is_none_or(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Matches an event type against a `type` filter with `*` wildcards (`invoice.*`).
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// JSON merge: objects merge key by key, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// Stripe's metadata update rules: `metadata=` clears it, `metadata[k]=` drops `k`.
fn apply_metadata(current: &mut Value, given: &Value) -> Result<(), Answer> {
    match given {
        Value::String(s) if s.is_empty() => {
            *current = json!({});
            Ok(())
        }
        Value::Object(map) => {
            if !current.is_object() {
                *current = json!({});
            }
            let target = current.as_object_mut().unwrap();
            for (key, value) in map {
                match value.as_str() {
                    Some("") => {
                        target.remove(key);
                    }
                    Some(v) => {
                        target.insert(key.clone(), json!(v));
                    }
                    None => {
                        return Err(invalid(
                            Some(&format!("metadata[{key}]")),
                            "Invalid metadata: values must be strings",
                        ));
                    }
                }
            }
            Ok(())
        }
        _ => Err(invalid(
            Some("metadata"),
            "Invalid object: metadata must be a hash",
        )),
    }
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
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

type Shared = Arc<Mutex<State>>;

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

fn handle(state: &Shared, req: &HttpRequest, body: &[u8], request_id: &str) -> (Answer, bool) {
    let mut s = state.lock().unwrap();
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();

    // Authentication.
    let key = match api_key(req) {
        Ok(key) => key,
        Err(answer) => return (answer, false),
    };
    let Some(permissions) = s.keys.get(&key).cloned() else {
        return (
            error(
                401,
                "invalid_request_error",
                None,
                None,
                &format!("Invalid API Key provided: {}", redact(&key)),
            ),
            false,
        );
    };

    // The rate limiter runs before idempotency: a 429 is never saved or replayed.
    if s.rate_limit > 0 {
        let limit = s.rate_limit as usize;
        let now = Instant::now();
        let hits = s.hits.entry(key.clone()).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            hits.pop_front();
        }
        if hits.len() >= limit {
            return (rate_limited(), false);
        }
        hits.push_back(now);
    }

    // Scripted failures, also ahead of the idempotency layer (as a load balancer's would be).
    if let Some(failure) = s.failures.pop_front() {
        return (scripted(&failure), false);
    }

    if let Some(version) = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        && !is_api_version(version)
    {
        return (
            invalid(None, &format!("Invalid Stripe API version: {version}")),
            false,
        );
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let write = method != "GET";
    if let (Some(permissions), Some(resource)) = (&permissions, resource(&segments))
        && !allowed(permissions, resource, write)
    {
        let level = if write { "write" } else { "read" };
        return (
            error(
                403,
                "invalid_request_error",
                None,
                None,
                &format!(
                    "The provided key '{}' does not have the required permissions for this endpoint on account '{ACCOUNT_ID}'. Having the 'rak_{resource}_{level}' permission would allow this request to continue.",
                    redact(&key)
                ),
            ),
            false,
        );
    }

    // Parameters: the query string, and for POST the form body on top.
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(body).into_owned();
    let looks_json = text.trim_start().starts_with('{') || text.trim_start().starts_with('[');
    if !text.trim().is_empty() && (content_type.starts_with("application/json") || looks_json) {
        return (
            invalid(
                None,
                "Invalid request (check that your POST content type is application/x-www-form-urlencoded). If you have any questions, we can help at https://support.stripe.com/.",
            ),
            false,
        );
    }
    let mut params = match parse_form(req.query_string()) {
        Ok(p) => p,
        Err(e) => return (invalid(None, &format!("Invalid query string: {e}")), false),
    };
    if method == "POST" {
        match parse_form(&text) {
            Ok(p) => params.extend(p),
            Err(e) => return (invalid(None, &format!("Invalid request body: {e}")), false),
        }
    }

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

    let livemode = key.starts_with("sk_live_") || key.starts_with("rk_live_");
    let answer = route(&mut s, &method, &segments, &params, livemode, &path);

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
    (answer, false)
}

fn rate_limited() -> Answer {
    error(
        429,
        "invalid_request_error",
        Some("rate_limit"),
        None,
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
    )
}

fn scripted(failure: &Failure) -> Answer {
    let mut answer = match failure.status {
        429 => rate_limited(),
        409 => error(
            409,
            "invalid_request_error",
            Some("lock_timeout"),
            None,
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.",
        ),
        status if status >= 500 => error(
            status,
            "api_error",
            None,
            None,
            "An unknown error occurred. Please try again later.",
        ),
        status => error(
            status,
            "invalid_request_error",
            None,
            None,
            "The request failed (scripted by the fake).",
        ),
    };
    if let Some(retry) = failure.should_retry {
        answer = answer.header("stripe-should-retry", if retry { "true" } else { "false" });
    }
    answer
}

fn route(
    s: &mut State,
    method: &str,
    segments: &[&str],
    params: &Map<String, Value>,
    livemode: bool,
    path: &str,
) -> Answer {
    match (method, segments) {
        ("GET", ["v1", "events"]) => list_events(s, params).unwrap_or_else(|a| a),
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

fn unrecognized(method: &str, path: &str) -> Answer {
    error(
        404,
        "invalid_request_error",
        None,
        None,
        &format!(
            "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        ),
    )
}

fn expand_paths(params: &Map<String, Value>) -> Vec<String> {
    string_list(params.get("expand")).unwrap_or_default()
}

/// Expands `path` (`customer`, `latest_charge.customer`) in `object` from the store.
fn expand(s: &State, object: &mut Value, path: &str, param: &str) -> Result<(), Answer> {
    let (field, rest) = match path.split_once('.') {
        Some((field, rest)) => (field, Some(rest)),
        None => (path, None),
    };
    let kind = object["object"].as_str().unwrap_or("").to_string();
    if let Some(fields) = expandable(&kind)
        && !fields.contains(&field)
    {
        return Err(invalid(
            Some(param),
            &format!("This property cannot be expanded ({field})."),
        ));
    }
    let Some(slot) = object.get_mut(field) else {
        return Err(invalid(
            Some(param),
            &format!("This property cannot be expanded ({field})."),
        ));
    };
    if let Some(id) = slot.as_str()
        && let Some(found) = s.objects.get(id)
    {
        *slot = found.clone();
    }
    if let Some(rest) = rest
        && slot.is_object()
    {
        expand(s, slot, rest, param)?;
    }
    Ok(())
}

fn retrieve_object(
    s: &State,
    kind: &str,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    let mut object = match s.objects.get(id) {
        Some(o) if o["object"] == kind => o.clone(),
        _ => return Err(no_such(kind, id, "id", 404)),
    };
    for (i, path) in expand_paths(params).iter().enumerate() {
        expand(s, &mut object, path, &format!("expand[{i}]"))?;
    }
    Ok(Answer::ok(object))
}

fn retention_cutoff() -> i64 {
    Utc::now().timestamp() - EVENT_RETENTION_DAYS * 86_400
}

fn retrieve_event(s: &State, id: &str, params: &Map<String, Value>) -> Result<Answer, Answer> {
    let cutoff = retention_cutoff();
    let mut event = match s.events.iter().find(|e| e.event["id"] == id) {
        Some(e) if e.created() >= cutoff => e.event.clone(),
        _ => return Err(no_such("event", id, "id", 404)),
    };
    for (i, path) in expand_paths(params).iter().enumerate() {
        expand(s, &mut event, path, &format!("expand[{i}]"))?;
    }
    Ok(Answer::ok(event))
}

/// `limit`: 1 to 100, 10 by default.
fn limit_param(params: &Map<String, Value>) -> Result<usize, Answer> {
    let Some(text) = string_param(params, "limit")? else {
        return Ok(10);
    };
    let limit = integer(&text, "limit")?;
    if !(1..=100).contains(&limit) {
        return Err(invalid(
            Some("limit"),
            "Invalid limit: must be between 1 and 100",
        ));
    }
    Ok(limit as usize)
}

enum Cursor {
    None,
    After(String),
    Before(String),
}

fn cursor_param(params: &Map<String, Value>) -> Result<Cursor, Answer> {
    let after = string_param(params, "starting_after")?.filter(|s| !s.is_empty());
    let before = string_param(params, "ending_before")?.filter(|s| !s.is_empty());
    match (after, before) {
        (Some(_), Some(_)) => Err(invalid(
            None,
            "You may only specify one of these parameters: ending_before, starting_after.",
        )),
        (Some(a), None) => Ok(Cursor::After(a)),
        (None, Some(b)) => Ok(Cursor::Before(b)),
        (None, None) => Ok(Cursor::None),
    }
}

/// One page of `items` (newest first, each with its sort key and id), as Stripe pages:
/// `starting_after` gives the next older items, `ending_before` the newer items closest to
/// the cursor; `has_more` says whether more lie beyond the page in that direction.
/// `all` holds every item's key (for locating the cursor even if filters hide it).
fn paginate(
    all: &[((i64, u64), String)],
    items: Vec<((i64, u64), Value)>,
    cursor: &Cursor,
    limit: usize,
    kind: &str,
) -> Result<(Vec<Value>, bool), Answer> {
    let locate = |id: &str, param: &str| {
        all.iter()
            .find(|(_, i)| i == id)
            .map(|(k, _)| *k)
            .ok_or_else(|| no_such(kind, id, param, 400))
    };
    match cursor {
        Cursor::None => {
            let has_more = items.len() > limit;
            Ok((
                items.into_iter().take(limit).map(|(_, v)| v).collect(),
                has_more,
            ))
        }
        Cursor::After(id) => {
            let at = locate(id, "starting_after")?;
            let older: Vec<Value> = items
                .into_iter()
                .filter(|(k, _)| *k < at)
                .map(|(_, v)| v)
                .collect();
            let has_more = older.len() > limit;
            Ok((older.into_iter().take(limit).collect(), has_more))
        }
        Cursor::Before(id) => {
            let at = locate(id, "ending_before")?;
            let newer: Vec<Value> = items
                .into_iter()
                .filter(|(k, _)| *k > at)
                .map(|(_, v)| v)
                .collect();
            let has_more = newer.len() > limit;
            let skip = newer.len().saturating_sub(limit);
            Ok((newer.into_iter().skip(skip).collect(), has_more))
        }
    }
}

fn list(url: &str, data: Vec<Value>, has_more: bool) -> Answer {
    Answer::ok(json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

fn list_events(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "created",
            "delivery_success",
            "ending_before",
            "expand",
            "limit",
            "starting_after",
            "type",
            "types",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let kind = string_param(params, "type")?;
    let kinds = string_list(params.get("types"));
    if kind.is_some() && kinds.is_some() {
        return Err(invalid(
            None,
            "You may only specify one of these parameters: type, types.",
        ));
    }
    if kinds.as_ref().is_some_and(|k| k.len() > 20) {
        return Err(invalid(
            Some("types"),
            "Invalid array: types must have at most 20 elements",
        ));
    }
    // created: an exact time, or a range.
    let mut bounds: Vec<(&str, i64)> = Vec::new();
    match params.get("created") {
        None => {}
        Some(Value::String(exact)) => bounds.push(("eq", integer(exact, "created")?)),
        Some(Value::Object(range)) => {
            for (op, value) in range {
                if !["gt", "gte", "lt", "lte"].contains(&op.as_str()) {
                    return Err(unknown_param(&format!("created[{op}]")));
                }
                let param = format!("created[{op}]");
                let text = value.as_str().unwrap_or("");
                let op = match op.as_str() {
                    "gt" => "gt",
                    "gte" => "gte",
                    "lt" => "lt",
                    _ => "lte",
                };
                bounds.push((op, integer(text, &param)?));
            }
        }
        Some(_) => return Err(invalid(Some("created"), "Invalid created")),
    }
    let delivery = match string_param(params, "delivery_success")? {
        Some(text) => Some(boolean(&text, "delivery_success")?),
        None => None,
    };

    let cutoff = retention_cutoff();
    let mut kept: Vec<&StoredEvent> = s.events.iter().filter(|e| e.created() >= cutoff).collect();
    kept.sort_by_key(|e| std::cmp::Reverse((e.created(), e.seq)));
    let all: Vec<((i64, u64), String)> = kept
        .iter()
        .map(|e| {
            (
                (e.created(), e.seq),
                e.event["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let items: Vec<((i64, u64), Value)> = kept
        .into_iter()
        .filter(|e| {
            let t = e.event["type"].as_str().unwrap_or("");
            let created = e.created();
            kind.as_ref().is_none_or(|k| glob(k, t))
                && kinds.as_ref().is_none_or(|ks| ks.iter().any(|k| k == t))
                && delivery.is_none_or(|d| d == e.delivered)
                && bounds.iter().all(|(op, v)| match *op {
                    "eq" => created == *v,
                    "gt" => created > *v,
                    "gte" => created >= *v,
                    "lt" => created < *v,
                    _ => created <= *v,
                })
        })
        .map(|e| ((e.created(), e.seq), e.event.clone()))
        .collect();
    let (data, has_more) = paginate(&all, items, &cursor, limit, "event")?;
    Ok(list("/v1/events", data, has_more))
}

fn list_endpoints(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    for name in params.keys() {
        if !["ending_before", "expand", "limit", "starting_after"].contains(&name.as_str()) {
            return Err(unknown_param(name));
        }
    }
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let mut endpoints: Vec<&Endpoint> = s.endpoints.iter().collect();
    endpoints.sort_by_key(|e| std::cmp::Reverse((e.value["created"].as_i64().unwrap_or(0), e.seq)));
    let key = |e: &Endpoint| (e.value["created"].as_i64().unwrap_or(0), e.seq);
    let all: Vec<((i64, u64), String)> = endpoints
        .iter()
        .map(|e| (key(e), e.value["id"].as_str().unwrap_or("").to_string()))
        .collect();
    let items = endpoints
        .iter()
        .map(|e| (key(e), e.value.clone()))
        .collect();
    let (data, has_more) = paginate(&all, items, &cursor, limit, "webhook endpoint")?;
    Ok(list("/v1/webhook_endpoints", data, has_more))
}

fn enabled_events(s: &State, params: &Map<String, Value>) -> Result<Option<Vec<String>>, Answer> {
    let Some(given) = params.get("enabled_events") else {
        return Ok(None);
    };
    let Some(events) = string_list(Some(given)) else {
        return Err(invalid(
            Some("enabled_events"),
            "Invalid array: enabled_events must be an array of strings",
        ));
    };
    if events.is_empty() {
        return Err(invalid(
            Some("enabled_events"),
            "Invalid array: enabled_events must not be empty",
        ));
    }
    for (i, event) in events.iter().enumerate() {
        if event != "*" && !s.event_types.contains(event) {
            let mut known: Vec<&String> = s.event_types.iter().collect();
            known.sort();
            let known: Vec<&str> = std::iter::once("*")
                .chain(known.into_iter().map(String::as_str))
                .collect();
            return Err(invalid(
                Some(&format!("enabled_events[{i}]")),
                &format!(
                    "Invalid enabled_events[{i}]: must be one of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(Some(events))
}

fn check_url(url: &str) -> Result<(), Answer> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        _ => Err(invalid(Some("url"), &format!("Invalid URL: {url}"))),
    }
}

fn create_endpoint(
    s: &mut State,
    params: &Map<String, Value>,
    livemode: bool,
) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "api_version",
            "connect",
            "description",
            "enabled_events",
            "expand",
            "metadata",
            "url",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let Some(url) = string_param(params, "url")?.filter(|u| !u.is_empty()) else {
        return Err(missing_param("url"));
    };
    let Some(events) = enabled_events(s, params)? else {
        return Err(missing_param("enabled_events"));
    };
    check_url(&url)?;
    let api_version = string_param(params, "api_version")?;
    if let Some(version) = &api_version
        && !is_api_version(version)
    {
        return Err(invalid(
            Some("api_version"),
            &format!("Invalid api_version: {version}"),
        ));
    }
    if let Some(connect) = string_param(params, "connect")? {
        boolean(&connect, "connect")?;
    }
    if s.endpoints.len() >= MAX_WEBHOOK_ENDPOINTS {
        let mode = if livemode { "live" } else { "test" };
        return Err(invalid(
            None,
            &format!(
                "You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} {mode} webhook endpoints on this account. Delete an endpoint before creating another."
            ),
        ));
    }
    let mut metadata = json!({});
    if let Some(given) = params.get("metadata") {
        apply_metadata(&mut metadata, given)?;
    }
    let description = string_param(params, "description")?.filter(|d| !d.is_empty());
    let id = stripe_id("we_");
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let value = json!({
        "id": id,
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": null,
        "created": Utc::now().timestamp(),
        "description": description,
        "enabled_events": events,
        "livemode": livemode,
        "metadata": metadata,
        "status": "enabled",
        "url": url,
    });
    let seq = s.next_seq();
    s.endpoints.push(Endpoint {
        seq,
        value: value.clone(),
        secret: secret.clone(),
    });
    let mut answer = value;
    answer["secret"] = json!(secret);
    Ok(Answer::ok(answer))
}

fn update_endpoint(s: &mut State, id: &str, params: &Map<String, Value>) -> Result<Answer, Answer> {
    for name in params.keys() {
        if ![
            "description",
            "disabled",
            "enabled_events",
            "expand",
            "metadata",
            "url",
        ]
        .contains(&name.as_str())
        {
            return Err(unknown_param(name));
        }
    }
    let Some(index) = s.endpoints.iter().position(|e| e.value["id"] == id) else {
        return Err(no_such("webhook endpoint", id, "id", 404));
    };
    let events = enabled_events(s, params)?;
    let url = string_param(params, "url")?;
    if let Some(url) = &url {
        check_url(url)?;
    }
    let disabled = match string_param(params, "disabled")? {
        Some(text) => Some(boolean(&text, "disabled")?),
        None => None,
    };
    let description = string_param(params, "description")?;
    let mut value = s.endpoints[index].value.clone();
    if let Some(given) = params.get("metadata") {
        apply_metadata(&mut value["metadata"], given)?;
    }
    if let Some(events) = events {
        value["enabled_events"] = json!(events);
    }
    if let Some(url) = url {
        value["url"] = json!(url);
    }
    if let Some(disabled) = disabled {
        value["status"] = json!(if disabled { "disabled" } else { "enabled" });
    }
    if let Some(description) = description {
        value["description"] = if description.is_empty() {
            Value::Null
        } else {
            json!(description)
        };
    }
    s.endpoints[index].value = value.clone();
    Ok(Answer::ok(value))
}

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

impl FakeStripe {
    /// Starts the fake on `127.0.0.1:0` on the current tokio runtime. [`SECRET_KEY`] and
    /// [`LIVE_SECRET_KEY`] are valid from the start.
    pub fn start() -> FakeStripe {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let stripe_log: Arc<Mutex<Vec<StripeLogged>>> = Arc::default();
        let (handler_state, handler_log, handler_stripe_log) =
            (state.clone(), log.clone(), stripe_log.clone());
        let served = Served::start(move |cfg| {
            let state = handler_state.clone();
            let log = handler_log.clone();
            let stripe_log = handler_stripe_log.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let request_id = format!("req_{}", &stripe_id("")[1..15]);
                let (answer, replayed) = handle(&state, &req, &body, &request_id);
                let response = respond(answer, &req, &request_id);
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let logged = Logged {
                    at: Utc::now(),
                    method: req.method().to_string(),
                    path: req.uri().to_string(),
                    authorization: header("authorization"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: response.status().as_u16(),
                };
                log.push(logged.clone());
                stripe_log.lock().unwrap().push(StripeLogged {
                    request: logged,
                    stripe_version: header("stripe-version"),
                    idempotency_key: header("idempotency-key"),
                    replayed,
                    request_id,
                });
                async move { response }
            }));
        });
        FakeStripe {
            base_url: served.base_url.clone(),
            log,
            stripe_log,
            state,
            served,
        }
    }

    /// The requests answered so far (method, path and query, `Authorization`, body, status).
    pub fn requests(&self) -> RequestLog {
        self.log.clone()
    }

    /// The requests answered so far with their `Stripe-Version` and `Idempotency-Key`
    /// headers, in the same order as [`FakeStripe::requests`].
    pub fn stripe_requests(&self) -> Vec<StripeLogged> {
        self.stripe_log.lock().unwrap().clone()
    }

    /// The `Stripe-Version` header of each request, in order.
    pub fn stripe_versions(&self) -> Vec<Option<String>> {
        self.stripe_requests()
            .into_iter()
            .map(|l| l.stripe_version)
            .collect()
    }

    /// The `Idempotency-Key` header of each request, in order.
    pub fn idempotency_keys(&self) -> Vec<Option<String>> {
        self.stripe_requests()
            .into_iter()
            .map(|l| l.idempotency_key)
            .collect()
    }

    /// Accepts another secret key (`sk_test_…`/`sk_live_…`) with every permission.
    pub fn add_secret_key(&self, key: &str) {
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(key.to_string(), None);
    }

    /// Accepts a restricted key (`rk_test_…`) with exactly these permissions, e.g.
    /// `["customer_read", "event_read", "webhook_write"]` (the `rak_` prefix is optional);
    /// a `_write` permission includes `_read`. Resources: `customer`, `subscription`,
    /// `invoice`, `payment_intent`, `charge`, `checkout_session`, `price`, `product`,
    /// `event`, `webhook`. Calling it again replaces the key's permissions.
    pub fn restrict(&self, key: &str, permissions: &[&str]) {
        let set = permissions.iter().map(|p| p.to_string()).collect();
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(key.to_string(), Some(set));
    }

    /// Stops accepting a key (as if rolled in the Dashboard): it answers 401 from now on.
    pub fn revoke_key(&self, key: &str) {
        self.state.lock().unwrap().keys.remove(key);
    }

    /// Stores an object (a customer, subscription, invoice, payment intent, charge, checkout
    /// session, price or product), keyed by its `id` and served by the route its `object`
    /// field names. Replaces an object with the same id.
    pub fn put(&self, object: Value) {
        let id = object["id"]
            .as_str()
            .expect("a Stripe object has a string `id`")
            .to_string();
        assert!(
            object["object"].is_string(),
            "a Stripe object has an `object` field"
        );
        self.state.lock().unwrap().objects.insert(id, object);
    }

    /// Merges `patch` into a stored object (objects key by key, anything else replaces) and
    /// returns the result. Panics if no object has that id.
    pub fn update(&self, id: &str, patch: Value) -> Value {
        let mut s = self.state.lock().unwrap();
        let object = s
            .objects
            .get_mut(id)
            .unwrap_or_else(|| panic!("no stored Stripe object {id}"));
        merge(object, patch);
        object.clone()
    }

    /// A stored object.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(id).cloned()
    }

    /// Adds a full event object (see [`FakeStripe::event`]); `delivered` is whether every
    /// webhook delivery succeeded (what `delivery_success` filters on). Returns its id.
    pub fn add_event(&self, event: Value, delivered: bool) -> String {
        let id = event["id"]
            .as_str()
            .expect("an event has a string `id`")
            .to_string();
        assert!(
            event["created"].is_i64(),
            "an event has an integer `created`"
        );
        let mut s = self.state.lock().unwrap();
        let seq = s.next_seq();
        s.events.retain(|e| e.event["id"] != id.as_str());
        s.events.push(StoredEvent {
            seq,
            event,
            delivered,
        });
        id
    }

    /// Changes whether an event's webhooks were all delivered.
    pub fn set_delivered(&self, event_id: &str, delivered: bool) {
        let mut s = self.state.lock().unwrap();
        for e in s.events.iter_mut().filter(|e| e.event["id"] == event_id) {
            e.delivered = delivered;
        }
    }

    /// A realistic event of type `kind` about `object`, created at `created` (Unix seconds):
    /// `evt_…` id, [`API_VERSION`], `livemode` from the object, no pending webhooks and no
    /// originating request (as for events Stripe raises itself).
    pub fn event(kind: &str, object: Value, created: i64) -> Value {
        let livemode = object["livemode"].as_bool().unwrap_or(false);
        json!({
            "id": stripe_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": {"object": object},
            "livemode": livemode,
            "pending_webhooks": 0,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        })
    }

    /// An `*.updated` event: like [`FakeStripe::event`], with `data.previous_attributes`.
    pub fn updated_event(kind: &str, object: Value, previous: Value, created: i64) -> Value {
        let mut event = FakeStripe::event(kind, object, created);
        event["data"]["previous_attributes"] = previous;
        event
    }

    /// The webhook endpoints, oldest first, each with its `secret` (which the API returns only
    /// at creation).
    pub fn webhook_endpoints(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .iter()
            .map(|e| {
                let mut v = e.value.clone();
                v["secret"] = json!(e.secret);
                v
            })
            .collect()
    }

    /// Lets `enabled_events` name these types too.
    pub fn accept_event_types(&self, types: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.event_types.extend(types.iter().map(|t| t.to_string()));
    }

    /// The next `n` authenticated requests fail with `status`: 429 answers Stripe's
    /// `rate_limit` error, 409 a `lock_timeout`, 5xx an `api_error`. The failures happen before
    /// the idempotency layer, so a retry with the same key then does the work.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, status, None);
    }

    /// Like [`FakeStripe::fail_next`], with a `Stripe-Should-Retry` header (`Some(true)` or
    /// `Some(false)`) on each failure.
    pub fn fail_next_with(&self, n: usize, status: u16, should_retry: Option<bool>) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            s.failures.push_back(Failure {
                status,
                should_retry,
            });
        }
    }

    /// Allows each API key at most `per_second` requests in any second (0: no limit); the
    /// next answers 429 `rate_limit`.
    pub fn rate_limit(&self, per_second: u32) {
        let mut s = self.state.lock().unwrap();
        s.rate_limit = per_second;
        s.hits.clear();
    }

    pub async fn stop(&self) {
        self.served.stop().await;
    }
}

fn respond(answer: Answer, req: &HttpRequest, request_id: &str) -> HttpResponse {
    let mut body = answer.body;
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.insert(
            "request_log_url".into(),
            json!(format!(
                "https://dashboard.stripe.com/test/logs/{request_id}?t={}",
                Utc::now().timestamp()
            )),
        );
    }
    let version = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_api_version(v))
        .unwrap_or(API_VERSION)
        .to_string();
    let mut builder = HttpResponse::build(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    builder
        .insert_header(("request-id", request_id.to_string()))
        .insert_header(("stripe-version", version))
        .content_type("application/json");
    for (name, value) in answer.headers {
        builder.insert_header((name, value));
    }
    builder.body(serde_json::to_string_pretty(&body).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reply {
        status: u16,
        headers: reqwest::header::HeaderMap,
        body: Value,
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    async fn send(
        fake: &FakeStripe,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = client()
            .request(method, format!("{}{path}", fake.base_url))
            .bearer_auth(key)
            .header("stripe-version", API_VERSION);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_string());
        }
        if let Some(k) = idempotency_key {
            request = request.header("idempotency-key", k);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(fake: &FakeStripe, path: &str) -> Reply {
        send(fake, reqwest::Method::GET, path, SECRET_KEY, None, None).await
    }

    async fn post(fake: &FakeStripe, path: &str, body: &str) -> Reply {
        send(
            fake,
            reqwest::Method::POST,
            path,
            SECRET_KEY,
            Some(body),
            None,
        )
        .await
    }

    fn ids(reply: &Reply) -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn bracket_notation_parses_to_a_tree() {
        let p = parse_form(
            "enabled_events[]=a&enabled_events[]=b&metadata[k]=v&expand[0]=customer&items[1][price]=p2&items[0][price]=p1&url=x",
        )
        .unwrap();
        assert_eq!(p["enabled_events"], json!(["a", "b"]));
        assert_eq!(p["metadata"], json!({"k": "v"}));
        assert_eq!(p["expand"], json!(["customer"]));
        assert_eq!(p["items"], json!([{"price": "p1"}, {"price": "p2"}]));
        assert_eq!(p["url"], json!("x"));
        assert!(glob("customer.*", "customer.subscription.created"));
        assert!(!glob("invoice.*", "customer.created"));
        assert_eq!(redact("sk_test_123456abcd"), "sk_test_****abcd");
    }

    #[tokio::test]
    async fn events_page_newest_first_in_both_directions_and_filter() {
        let fake = FakeStripe::start();
        let now = Utc::now().timestamp();
        // 25 events, one a second, the newest 76 seconds ago; every third undelivered.
        let mut made = Vec::new();
        for i in 0..25 {
            let kind = if i % 2 == 0 {
                "customer.created"
            } else {
                "invoice.paid"
            };
            let event = FakeStripe::event(
                kind,
                json!({"id": format!("obj_{i}"), "object": "customer"}),
                now - 100 + i,
            );
            made.push(fake.add_event(event, i % 3 != 0));
        }
        // Older than 30 days: never listed.
        let old = FakeStripe::event(
            "customer.created",
            json!({"object": "customer"}),
            now - 31 * 86_400,
        );
        let old_id = fake.add_event(old, true);
        let newest_first: Vec<String> = made.iter().rev().cloned().collect();

        let page1 = get(&fake, "/v1/events?limit=10").await;
        assert_eq!(page1.status, 200);
        assert_eq!(page1.body["object"], "list");
        assert_eq!(page1.body["url"], "/v1/events");
        assert_eq!(page1.body["has_more"], true);
        assert_eq!(ids(&page1), newest_first[..10]);
        let page2 = get(
            &fake,
            &format!("/v1/events?limit=10&starting_after={}", newest_first[9]),
        )
        .await;
        assert_eq!(ids(&page2), newest_first[10..20]);
        assert_eq!(page2.body["has_more"], true);
        let page3 = get(
            &fake,
            &format!("/v1/events?limit=10&starting_after={}", newest_first[19]),
        )
        .await;
        assert_eq!(ids(&page3), newest_first[20..]);
        assert_eq!(
            page3.body["has_more"], false,
            "the 31-day-old event is not listed"
        );

        // Backwards: ending_before gives the newer items next to the cursor.
        let back = get(
            &fake,
            &format!("/v1/events?limit=10&ending_before={}", newest_first[20]),
        )
        .await;
        assert_eq!(ids(&back), newest_first[10..20]);
        assert_eq!(back.body["has_more"], true);
        let back = get(
            &fake,
            &format!("/v1/events?limit=10&ending_before={}", newest_first[10]),
        )
        .await;
        assert_eq!(ids(&back), newest_first[..10]);
        assert_eq!(back.body["has_more"], false);

        // Default limit 10; bad limits and cursors refused.
        assert_eq!(ids(&get(&fake, "/v1/events").await).len(), 10);
        let bad = get(&fake, "/v1/events?limit=101").await;
        assert_eq!(
            (bad.status, bad.body["error"]["param"].clone()),
            (400, json!("limit"))
        );
        let bad = get(
            &fake,
            &format!(
                "/v1/events?starting_after={}&ending_before={}",
                made[0], made[1]
            ),
        )
        .await;
        assert_eq!(bad.status, 400);
        assert_eq!(
            get(&fake, "/v1/events?starting_after=evt_nope")
                .await
                .status,
            400
        );

        // created range: [now-90, now-80) holds events 10..=19.
        let range = get(
            &fake,
            &format!(
                "/v1/events?limit=100&created[gte]={}&created[lt]={}",
                now - 90,
                now - 80
            ),
        )
        .await;
        let expected: Vec<String> = made[10..20].iter().rev().cloned().collect();
        assert_eq!(ids(&range), expected);
        let range = get(
            &fake,
            &format!(
                "/v1/events?limit=100&created[gt]={}&created[lte]={}",
                now - 90,
                now - 80
            ),
        )
        .await;
        let expected: Vec<String> = made[11..21].iter().rev().cloned().collect();
        assert_eq!(ids(&range), expected);

        // delivery_success.
        let failed = get(&fake, "/v1/events?limit=100&delivery_success=false").await;
        let expected: Vec<String> = made
            .iter()
            .enumerate()
            .rev()
            .filter(|(i, _)| i % 3 == 0)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(ids(&failed), expected);
        let delivered = get(&fake, "/v1/events?limit=100&delivery_success=true").await;
        assert_eq!(ids(&delivered).len(), 25 - expected.len());

        // type (with a wildcard) and types[].
        let invoices = get(&fake, "/v1/events?limit=100&type=invoice.*").await;
        assert_eq!(ids(&invoices).len(), 12);
        let both = get(
            &fake,
            "/v1/events?limit=100&types[]=invoice.paid&types[]=customer.created",
        )
        .await;
        assert_eq!(ids(&both).len(), 25);
        assert_eq!(get(&fake, "/v1/events?type=a&types[]=b").await.status, 400);

        // Retrieve by id; the old one is gone.
        let one = get(&fake, &format!("/v1/events/{}", made[3])).await;
        assert_eq!((one.status, one.body["id"].clone()), (200, json!(made[3])));
        assert_eq!(one.body["api_version"], API_VERSION);
        assert_eq!(
            get(&fake, &format!("/v1/events/{old_id}")).await.status,
            404
        );

        // Every request carried the pinned version.
        assert!(
            fake.stripe_versions()
                .iter()
                .all(|v| v.as_deref() == Some(API_VERSION))
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn an_idempotent_post_is_replayed_and_a_changed_body_refused() {
        let fake = FakeStripe::start();
        let body = "url=https://example.com/hook&enabled_events[]=charge.succeeded&enabled_events[]=customer.created";
        let first = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some(body),
            Some("key-1"),
        )
        .await;
        assert_eq!(first.status, 200);
        assert!(first.headers.get("idempotent-replayed").is_none());
        let again = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some(body),
            Some("key-1"),
        )
        .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.body, first.body, "the same response, secret included");
        assert_eq!(fake.webhook_endpoints().len(), 1, "the work was done once");

        let changed = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some("url=https://example.com/other&enabled_events[]=*"),
            Some("key-1"),
        )
        .await;
        assert_eq!(changed.status, 400);
        assert_eq!(changed.body["error"]["type"], "idempotency_error");
        assert!(
            changed.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'key-1'")
        );
        assert_eq!(fake.webhook_endpoints().len(), 1);
        assert_eq!(fake.idempotency_keys(), vec![Some("key-1".to_string()); 3]);
        assert_eq!(fake.requests().all().len(), 3);

        // A JSON body is refused as Stripe refuses it.
        let json_body = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some("{\"url\":\"x\"}"),
            None,
        )
        .await;
        assert_eq!(json_body.status, 400);
        assert!(
            json_body.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("x-www-form-urlencoded")
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn keys_are_checked_and_restricted_keys_refused_what_they_lack() {
        let fake = FakeStripe::start();
        fake.put(json!({"id": "cus_1", "object": "customer", "email": "a@example.com", "livemode": false}));
        fake.put(json!({"id": "ch_1", "object": "charge", "customer": "cus_1", "amount": 2000}));
        fake.restrict("rk_test_abc123", &["customer_read", "event_read"]);

        let unknown = send(
            &fake,
            reqwest::Method::GET,
            "/v1/customers/cus_1",
            "sk_test_unknownabcd",
            None,
            None,
        )
        .await;
        assert_eq!(unknown.status, 401);
        assert_eq!(unknown.body["error"]["type"], "invalid_request_error");
        assert_eq!(
            unknown.body["error"]["message"],
            "Invalid API Key provided: sk_test_****abcd"
        );

        let ok = send(
            &fake,
            reqwest::Method::GET,
            "/v1/customers/cus_1",
            "rk_test_abc123",
            None,
            None,
        )
        .await;
        assert_eq!(
            (ok.status, ok.body["email"].clone()),
            (200, json!("a@example.com"))
        );
        let refused = send(
            &fake,
            reqwest::Method::GET,
            "/v1/charges/ch_1",
            "rk_test_abc123",
            None,
            None,
        )
        .await;
        assert_eq!(refused.status, 403);
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("'rak_charge_read'"), "{message}");
        assert!(message.contains(ACCOUNT_ID));
        let refused = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            "rk_test_abc123",
            Some("url=https://e.com&enabled_events[]=*"),
            None,
        )
        .await;
        assert_eq!(refused.status, 403);
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rak_webhook_write")
        );

        // Basic auth with the key as the username.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_KEY}:"));
        let response = client()
            .get(format!("{}/v1/customers/cus_1", fake.base_url))
            .header("authorization", format!("Basic {basic}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let response = client()
            .get(format!("{}/v1/customers/cus_1", fake.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
        fake.stop().await;
    }

    #[tokio::test]
    async fn objects_answer_404_in_stripes_shape_and_expand() {
        let fake = FakeStripe::start();
        fake.put(json!({"id": "cus_1", "object": "customer", "email": "a@example.com"}));
        fake.put(json!({"id": "ch_1", "object": "charge", "customer": "cus_1", "payment_intent": "pi_1"}));
        fake.put(json!({"id": "pi_1", "object": "payment_intent", "customer": "cus_1", "latest_charge": "ch_1"}));

        let missing = get(&fake, "/v1/customers/cus_x").await;
        assert_eq!(missing.status, 404);
        let e = &missing.body["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], "resource_missing");
        assert_eq!(e["param"], "id");
        assert_eq!(e["message"], "No such customer: 'cus_x'");
        assert_eq!(
            e["doc_url"],
            "https://stripe.com/docs/error-codes/resource-missing"
        );
        assert!(e["request_log_url"].is_string());
        // An id of another type is not found under this route.
        assert_eq!(get(&fake, "/v1/invoices/cus_1").await.status, 404);

        let plain = get(&fake, "/v1/charges/ch_1").await;
        assert_eq!(plain.body["customer"], "cus_1");
        let expanded = get(
            &fake,
            "/v1/charges/ch_1?expand[]=customer&expand[]=payment_intent",
        )
        .await;
        assert_eq!(expanded.body["customer"]["email"], "a@example.com");
        assert_eq!(expanded.body["payment_intent"]["id"], "pi_1");
        let nested = get(
            &fake,
            "/v1/payment_intents/pi_1?expand[]=latest_charge.customer",
        )
        .await;
        assert_eq!(nested.body["latest_charge"]["customer"]["id"], "cus_1");
        let bad = get(&fake, "/v1/charges/ch_1?expand[]=nope").await;
        assert_eq!(bad.status, 400);

        let updated = fake.update(
            "cus_1",
            json!({"email": "b@example.com", "metadata": {"k": "v"}}),
        );
        assert_eq!(updated["email"], "b@example.com");
        assert_eq!(
            get(&fake, "/v1/customers/cus_1").await.body["metadata"]["k"],
            "v"
        );
        fake.stop().await;
    }

    #[tokio::test]
    async fn webhook_endpoints_are_created_updated_deleted_and_capped_at_16() {
        let fake = FakeStripe::start();
        let created = post(&fake, "/v1/webhook_endpoints", "url=https://example.com/hook&enabled_events[]=charge.succeeded&description=mine&metadata[tenant]=t1&api_version=2023-08-16").await;
        assert_eq!(created.status, 200);
        let id = created.body["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("we_"));
        assert!(
            created.body["secret"]
                .as_str()
                .unwrap()
                .starts_with("whsec_")
        );
        assert_eq!(created.body["status"], "enabled");
        assert_eq!(created.body["enabled_events"], json!(["charge.succeeded"]));
        assert_eq!(created.body["metadata"], json!({"tenant": "t1"}));
        assert_eq!(created.body["api_version"], "2023-08-16");

        let fetched = get(&fake, &format!("/v1/webhook_endpoints/{id}")).await;
        assert!(
            fetched.body.get("secret").is_none(),
            "the secret is shown only at creation"
        );
        let updated = post(&fake, &format!("/v1/webhook_endpoints/{id}"), "disabled=true&enabled_events[]=invoice.paid&enabled_events[]=customer.updated&url=https://example.com/new").await;
        assert_eq!(updated.status, 200);
        assert_eq!(updated.body["status"], "disabled");
        assert_eq!(
            updated.body["enabled_events"],
            json!(["invoice.paid", "customer.updated"])
        );
        assert_eq!(updated.body["url"], "https://example.com/new");

        // Validation.
        let bad = post(
            &fake,
            "/v1/webhook_endpoints",
            "url=https://example.com&enabled_events[]=not.a_type",
        )
        .await;
        assert_eq!(
            (bad.status, bad.body["error"]["param"].clone()),
            (400, json!("enabled_events[0]"))
        );
        let bad = post(&fake, "/v1/webhook_endpoints", "enabled_events[]=*").await;
        assert_eq!(bad.body["error"]["code"], "parameter_missing");
        let bad = post(
            &fake,
            "/v1/webhook_endpoints",
            "url=https://e.com&enabled_events[]=*&colour=red",
        )
        .await;
        assert_eq!(bad.body["error"]["code"], "parameter_unknown");

        // 16 at most.
        for i in 1..MAX_WEBHOOK_ENDPOINTS {
            let r = post(
                &fake,
                "/v1/webhook_endpoints",
                &format!("url=https://example.com/{i}&enabled_events[]=*"),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        let over = post(
            &fake,
            "/v1/webhook_endpoints",
            "url=https://example.com/17&enabled_events[]=*",
        )
        .await;
        assert_eq!(over.status, 400);
        assert!(
            over.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("16")
        );
        let listed = get(&fake, "/v1/webhook_endpoints?limit=100").await;
        assert_eq!(listed.body["url"], "/v1/webhook_endpoints");
        assert_eq!(ids(&listed).len(), 16);
        assert_eq!(ids(&listed).last().unwrap(), &id, "newest first");

        let deleted = send(
            &fake,
            reqwest::Method::DELETE,
            &format!("/v1/webhook_endpoints/{id}"),
            SECRET_KEY,
            None,
            None,
        )
        .await;
        assert_eq!(
            deleted.body,
            json!({"id": id, "object": "webhook_endpoint", "deleted": true})
        );
        assert_eq!(
            get(&fake, &format!("/v1/webhook_endpoints/{id}"))
                .await
                .status,
            404
        );
        let again = post(
            &fake,
            "/v1/webhook_endpoints",
            "url=https://example.com/17&enabled_events[]=*",
        )
        .await;
        assert_eq!(again.status, 200, "room again after a delete");
        fake.stop().await;
    }

    #[tokio::test]
    async fn scripted_failures_and_rate_limits() {
        let fake = FakeStripe::start();
        fake.put(json!({"id": "cus_1", "object": "customer"}));
        fake.fail_next_with(1, 500, Some(true));
        fake.fail_next(1, 429);
        let failed = get(&fake, "/v1/customers/cus_1").await;
        assert_eq!(failed.status, 500);
        assert_eq!(failed.body["error"]["type"], "api_error");
        assert_eq!(failed.headers["stripe-should-retry"], "true");
        let limited = get(&fake, "/v1/customers/cus_1").await;
        assert_eq!(limited.status, 429);
        assert_eq!(limited.body["error"]["code"], "rate_limit");
        assert_eq!(get(&fake, "/v1/customers/cus_1").await.status, 200);

        // A failure before the idempotency layer is not replayed.
        fake.fail_next(1, 503);
        let body = "url=https://example.com&enabled_events[]=*";
        let first = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some(body),
            Some("k"),
        )
        .await;
        assert_eq!(first.status, 503);
        let retry = send(
            &fake,
            reqwest::Method::POST,
            "/v1/webhook_endpoints",
            SECRET_KEY,
            Some(body),
            Some("k"),
        )
        .await;
        assert_eq!(retry.status, 200);

        fake.rate_limit(3);
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(get(&fake, "/v1/customers/cus_1").await.status);
        }
        assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
        fake.rate_limit(0);
        assert_eq!(get(&fake, "/v1/customers/cus_1").await.status, 200);
        let unknown = get(&fake, "/v1/nothing").await;
        assert_eq!(unknown.status, 404);
        fake.stop().await;
    }
}
