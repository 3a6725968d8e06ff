//! A small client of Stripe's REST API, for what Tributary asks of Stripe: retrieving objects
//! (enrichment steps, refetch-on-apply), listing events (backfill and reconciliation) and
//! managing webhook endpoints. It speaks Stripe's conventions: the account's secret or
//! restricted key as a bearer token (opened from its seal only for the call), `Stripe-Version`
//! pinned to the account's API version, form-encoded bodies with bracketed keys, an
//! `Idempotency-Key` on every POST, and Stripe's error object read into [`StripeError`]. 429s
//! and 5xx answers are retried a few times with exponential backoff and jitter, as Stripe's
//! own libraries do (`Stripe-Should-Retry` is honoured both ways). Requests of one account are
//! spaced to stay under Stripe's read limit, so one account's backfill cannot use up the rate
//! another account's calls need.

use crate::sealed;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::stripe_accounts;
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::crm::{CrmError, ErrorKind};
use crate::secrets::{Keyring, SecretContext, expose};

/// The objects a `stripe.retrieve` step can fetch, with their API paths.
pub const RETRIEVABLE: &[(&str, &str)] = &[
    ("customer", "/v1/customers"),
    ("subscription", "/v1/subscriptions"),
    ("invoice", "/v1/invoices"),
    ("payment_intent", "/v1/payment_intents"),
    ("charge", "/v1/charges"),
    ("checkout.session", "/v1/checkout/sessions"),
    ("price", "/v1/prices"),
    ("product", "/v1/products"),
    ("balance_transaction", "/v1/balance_transactions"),
    ("payout", "/v1/payouts"),
];

/// The lists a `stripe.retrieve` step can read whole: (object, API path, the filter parameter
/// the step's `record_id` fills). `balance_transactions` of a payout are what it settled
/// (Stripe answers for automatic payouts only); `customers` of an email are the customers
/// with exactly that email; `customer_search` answers a search query such as
/// `metadata['salesforce_account_id']:'001…'` (Stripe's search may lag writes by a minute).
pub const LISTABLE: &[(&str, &str, &str)] = &[
    ("balance_transactions", "/v1/balance_transactions", "payout"),
    ("customers", "/v1/customers", "email"),
    ("customer_search", "/v1/customers/search", "query"),
];

/// Where the next page of a list starts.
enum Cursor {
    After(String),
    Page(String),
}

/// Items asked for per page of a list: Stripe's maximum.
const LIST_PAGE: usize = 100;

/// The most items one list read gathers; past them its answer says `has_more: true`.
pub const MAX_LIST_ITEMS: usize = 1000;

/// The API path and filter parameter of a list a `stripe.retrieve` step can read.
pub fn list_path(object: &str) -> Option<(&'static str, &'static str)> {
    LISTABLE
        .iter()
        .find(|(name, _, _)| *name == object)
        .map(|(_, path, filter)| (*path, *filter))
}

/// The API path of a retrievable object type (`checkout_session` is accepted for
/// `checkout.session`).
pub fn object_path(object: &str) -> Option<&'static str> {
    let object = if object == "checkout_session" {
        "checkout.session"
    } else {
        object
    };
    RETRIEVABLE
        .iter()
        .find(|(name, _)| *name == object)
        .map(|(_, path)| *path)
}

/// The objects a `stripe.create` step can make: (object, API path, whether a `stripe.update`
/// step can change one with `POST <path>/<id>`).
pub const WRITABLE: &[(&str, &str, bool)] = &[
    ("customer", "/v1/customers", true),
    ("subscription", "/v1/subscriptions", true),
    ("invoiceitem", "/v1/invoiceitems", false),
    (
        "billing_portal.session",
        "/v1/billing_portal/sessions",
        false,
    ),
];

/// The API path a `stripe.create` (`update` false) or `stripe.update` step posts to for
/// `object`; an update adds `/<id>` to it.
pub fn write_path(object: &str, update: bool) -> Option<&'static str> {
    WRITABLE
        .iter()
        .find(|(name, _, updatable)| *name == object && (*updatable || !update))
        .map(|(_, path, _)| *path)
}

/// The objects a `stripe.create` (`update` false) or `stripe.update` step writes.
pub fn writable(update: bool) -> Vec<&'static str> {
    WRITABLE
        .iter()
        .filter(|(_, _, updatable)| *updatable || !update)
        .map(|(name, _, _)| *name)
        .collect()
}

/// How every `Idempotency-Key` of Tributary's own writes to Stripe begins; an event whose
/// `request.idempotency_key` begins so was caused by Tributary (an echo).
pub const IDEMPOTENCY_PREFIX: &str = "tributary-";

/// The longest `Idempotency-Key` Stripe accepts.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` of a write a step makes for an event: [`IDEMPOTENCY_PREFIX`], the
/// step's delivery id (one per event, flow and step), `-`, the step id. A part that is not
/// plain visible ASCII is replaced by `h` and its SHA-256 in hex; so is the step part when the
/// key would be longer than Stripe allows, then the delivery part if it still would. The key
/// is the same for the same delivery, whatever the attempt, and differs between two flows
/// that run on one event.
pub fn write_idempotency_key(delivery_id: &str, step_id: &str) -> String {
    let hashed = |part: &str| {
        use sha2::Digest;
        format!("h{}", hex::encode(sha2::Sha256::digest(part.as_bytes())))
    };
    let plain = |part: &str| {
        if part.chars().all(|c| c.is_ascii_graphic()) {
            part.to_string()
        } else {
            hashed(part)
        }
    };
    let key = |event: &str, step: &str| format!("{IDEMPOTENCY_PREFIX}{event}-{step}");
    let (mut event, mut step) = (plain(delivery_id), plain(step_id));
    if key(&event, &step).len() > MAX_IDEMPOTENCY_KEY {
        step = hashed(step_id);
    }
    if key(&event, &step).len() > MAX_IDEMPOTENCY_KEY {
        event = hashed(delivery_id);
    }
    key(&event, &step)
}

/// Stripe's form encoding of request parameters, as its official libraries flatten them:
/// objects as `a[b][c]=v`, lists always indexed (`items[0][price]=…`), booleans as
/// `true`/`false`, numbers as their text; null is left out, empty text is kept (it unsets a
/// value). Empty objects and lists send nothing.
pub fn form_pairs(params: &Map<String, Value>) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (name, value) in params {
        encode_param(name.clone(), value, &mut pairs);
    }
    pairs
}

fn encode_param(name: String, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => pairs.push((name, b.to_string())),
        Value::Number(n) => pairs.push((name, n.to_string())),
        Value::String(s) => pairs.push((name, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                encode_param(format!("{name}[{i}]"), item, pairs);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                encode_param(format!("{name}[{key}]"), item, pairs);
            }
        }
    }
}

/// Stripe's error object (`{"error": {"type", "code", "param", "message"}}`), or what stood in
/// for it when Stripe could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeError {
    /// The HTTP status, `None` when no answer came.
    pub status: Option<u16>,
    /// `api_error`, `card_error`, `idempotency_error`, `invalid_request_error`, …
    pub error_type: String,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "Stripe answered {status}")?,
            None => f.write_str("Stripe did not answer")?,
        }
        write!(f, " ({}", self.error_type)?;
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        if let Some(param) = &self.param {
            write!(f, ", param {param}")?;
        }
        write!(f, "): {}", self.message)
    }
}

impl std::error::Error for StripeError {}

impl StripeError {
    /// An error raised here rather than answered by Stripe (`connection_error`,
    /// `configuration_error`, …), about `param` if it names one.
    pub fn local(error_type: &str, param: Option<&str>, message: impl Into<String>) -> Self {
        StripeError {
            status: None,
            error_type: error_type.into(),
            code: None,
            param: param.map(str::to_string),
            message: message.into(),
        }
    }

    fn unreachable(message: impl Into<String>) -> Self {
        Self::local("connection_error", None, message)
    }

    /// A restricted key without the permission this call needs.
    pub fn is_missing_permission(&self) -> bool {
        self.status == Some(403)
            || self
                .message
                .contains("does not have the required permission")
    }

    /// How a delivery treats it: a missing object or permission needs a person, a refused key
    /// too; rate limits and Stripe's own trouble are worth retrying.
    pub fn kind(&self) -> ErrorKind {
        match self.error_type.as_str() {
            "configuration_error" => return ErrorKind::Permanent,
            "database_error" => return ErrorKind::Transient,
            _ => {}
        }
        match self.status {
            Some(404) => ErrorKind::NotFound,
            Some(401) => ErrorKind::Permanent,
            Some(403) => ErrorKind::Permanent,
            Some(429) => ErrorKind::RateLimited,
            Some(400) | Some(402) => ErrorKind::Invalid,
            Some(s) if s >= 500 => ErrorKind::Transient,
            None => ErrorKind::Transient,
            Some(_) => ErrorKind::Permanent,
        }
    }

    /// The delivery error for a failed call, its message made to say what to do.
    pub fn to_crm_error(&self) -> CrmError {
        let mut message = self.to_string();
        if self.status == Some(401) {
            message.push_str(" — the account's secret key was refused; PATCH the Stripe account with a valid key");
        } else if self.is_missing_permission() {
            message.push_str(" — the restricted key lacks this permission; grant it in the Stripe dashboard (Developers → API keys) or use a key that has it");
        }
        let mut error = CrmError::new(self.kind(), message);
        error.vendor_status = self.status;
        error
    }
}

/// A Stripe account's key and API version, opened for the calls of one task.
pub struct StripeKey {
    pub account_id: String,
    secret: SecretString,
    pub api_version: Option<String>,
}

impl std::fmt::Debug for StripeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeKey")
            .field("account_id", &self.account_id)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl StripeKey {
    /// Opens the account's sealed secret key; `None` when it has none.
    pub fn open(
        keyring: &Keyring,
        account: &stripe_accounts::Model,
    ) -> Result<Option<StripeKey>, crate::secrets::SecretError> {
        let Some(sealed) = account.secret_key.as_deref() else {
            return Ok(None);
        };
        let secret = keyring.open(
            sealed,
            &SecretContext {
                tenant_id: &account.tenant_id,
                purpose: sealed::STRIPE_SECRET_KEY,
                row_id: &account.id,
            },
        )?;
        Ok(Some(StripeKey {
            account_id: account.id.clone(),
            secret,
            api_version: account.api_version.clone(),
        }))
    }

    /// The key's mode from its prefix (see [`super::mode::key_livemode`]).
    pub fn livemode(&self) -> Option<bool> {
        super::mode::key_livemode(expose(&self.secret))
    }

    /// Whether this is a test-mode key (`sk_test_…`, `rk_test_…`): Stripe allows fewer reads.
    pub fn is_test(&self) -> bool {
        expose(&self.secret).contains("_test_")
    }
}

mod pace;

const MAX_TRIES: u32 = 4;
/// The most a Stripe answer may hold: 16 MiB, room for a page of 100 expanded objects.
const ANSWER_LIMIT: usize = 16 * 1024 * 1024;

/// One client per process; it spaces each account's requests: under a rate budget shared by
/// every process when it has one, else on its own.
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base_url: String,
    next_slot: Arc<Mutex<HashMap<String, Instant>>>,
    budgets: Option<Arc<crate::budget::Budgets>>,
    retry_base: Duration,
}

impl StripeClient {
    pub fn new(base_url: &str) -> anyhow::Result<StripeClient> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("Tributary/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(StripeClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            next_slot: Arc::default(),
            budgets: None,
            retry_base: Duration::from_millis(500),
        })
    }

    /// Spaces each account's requests under the shared budgets, so every process together
    /// keeps to the account's rate.
    pub fn with_budgets(mut self, budgets: Arc<crate::budget::Budgets>) -> Self {
        self.budgets = Some(budgets);
        self
    }

    /// `GET path?query`.
    pub async fn get(
        &self,
        key: &StripeKey,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Value, StripeError> {
        self.send(key, reqwest::Method::GET, path, query, None)
            .await
    }

    /// `POST path` with a form body; `idempotency_key` makes a repeat of the same request
    /// return the first answer instead of acting twice.
    pub async fn post(
        &self,
        key: &StripeKey,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        self.send(
            key,
            reqwest::Method::POST,
            path,
            form,
            Some(idempotency_key),
        )
        .await
    }

    pub async fn delete(&self, key: &StripeKey, path: &str) -> Result<Value, StripeError> {
        self.send(key, reqwest::Method::DELETE, path, &[], None)
            .await
    }

    /// Retrieves one object by type and id, expanding `expand`; for a list of [`LISTABLE`],
    /// every item whose filter is `id` (see [`StripeClient::list`]).
    pub async fn retrieve(
        &self,
        key: &StripeKey,
        object: &str,
        id: &str,
        expand: &[String],
    ) -> Result<Value, StripeError> {
        if let Some((path, filter)) = list_path(object) {
            check_id(object, id)?;
            return self.list(key, path, (filter, id), expand).await;
        }
        let path = object_path(object).ok_or_else(|| {
            StripeError::local(
                "invalid_request_error",
                Some("object"),
                format!("{object} cannot be retrieved"),
            )
        })?;
        check_id(object, id)?;
        let query: Vec<(String, String)> = expand
            .iter()
            .map(|e| ("expand[]".to_string(), e.clone()))
            .collect();
        self.get(key, &format!("{path}/{id}"), &query).await
    }

    /// Every item of a list whose `filter` parameter is the given value, page after page
    /// (`starting_after` the last item), at most [`MAX_LIST_ITEMS`]: one answer shaped as
    /// Stripe's lists are, `{"object": "list", "url", "data", "has_more"}`, `has_more` saying
    /// whether items were left out. `expand` names fields of the items (`data.source`).
    pub async fn list(
        &self,
        key: &StripeKey,
        path: &str,
        filter: (&str, &str),
        expand: &[String],
    ) -> Result<Value, StripeError> {
        let mut data: Vec<Value> = Vec::new();
        let mut after: Option<Cursor> = None;
        let has_more = loop {
            let mut query = vec![
                (filter.0.to_string(), filter.1.to_string()),
                ("limit".to_string(), LIST_PAGE.to_string()),
            ];
            query.extend(list_param("expand", expand));
            match &after {
                Some(Cursor::Page(page)) => query.push(("page".to_string(), page.clone())),
                Some(Cursor::After(id)) => query.push(("starting_after".to_string(), id.clone())),
                None => {}
            }
            let page = self.get(key, path, &query).await?;
            let Some(items) = page.get("data").and_then(Value::as_array) else {
                return Err(StripeError::unreachable("Stripe's answer is not a list"));
            };
            data.extend(items.iter().cloned());
            let more = page.get("has_more").and_then(Value::as_bool) == Some(true);
            // A search result pages by `next_page`; a list by the last item's id.
            after = match page.get("next_page") {
                Some(next) => next.as_str().map(|p| Cursor::Page(p.to_string())),
                None => items
                    .last()
                    .and_then(|item| item.get("id"))
                    .and_then(Value::as_str)
                    .map(|id| Cursor::After(id.to_string())),
            };
            if !more || after.is_none() {
                break false;
            }
            if data.len() >= MAX_LIST_ITEMS {
                break true;
            }
        };
        data.truncate(MAX_LIST_ITEMS);
        Ok(serde_json::json!({
            "object": "list",
            "url": path,
            "data": data,
            "has_more": has_more,
        }))
    }

    async fn send(
        &self,
        key: &StripeKey,
        method: reqwest::Method,
        path: &str,
        params: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let get = method == reqwest::Method::GET;
        let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
        let url = if get && !encoded.is_empty() {
            format!("{}{path}?{encoded}", self.base_url)
        } else {
            format!("{}{path}", self.base_url)
        };
        let mut tries = 0;
        loop {
            tries += 1;
            self.pace(key).await;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(expose(&key.secret));
            if let Some(version) = &key.api_version {
                request = request.header("Stripe-Version", version);
            }
            if let Some(idempotency_key) = idempotency_key {
                request = request.header("Idempotency-Key", idempotency_key);
            }
            if !get {
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(encoded.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let should_retry = response
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let text = match crate::net::read_text(response, ANSWER_LIMIT).await {
                        Ok(text) => text,
                        Err(e) if e.is_too_large() => {
                            return Err(StripeError::unreachable(format!("Stripe's answer: {e}")));
                        }
                        Err(_) => String::new(),
                    };
                    if (200..300).contains(&status) {
                        return serde_json::from_str(&text)
                            .map_err(|_| StripeError::unreachable("Stripe's answer is not JSON"));
                    }
                    let error = parse_error(status, &text);
                    let retry = should_retry.unwrap_or(status == 429 || status >= 500);
                    (error, retry)
                }
                Err(e) => {
                    let message = if e.is_timeout() {
                        "no answer from Stripe in time"
                    } else {
                        "Stripe could not be reached"
                    };
                    (StripeError::unreachable(message), true)
                }
            };
            let (error, retry) = outcome;
            crate::metrics::stripe_request(error.status);
            if !retry || tries >= MAX_TRIES {
                return Err(error);
            }
            let backoff = self.retry_base * 2u32.pow(tries - 1);
            let jitter = rand_fraction();
            tokio::time::sleep(backoff.mul_f64(0.5 + jitter / 2.0)).await;
        }
    }
}

/// An id Tributary puts in a path or a filter: not empty, no path or query syntax, not over
/// Stripe's length; else Stripe's own answer for an object it does not have.
fn check_id(object: &str, id: &str) -> Result<(), StripeError> {
    if id.is_empty() || id.contains(['/', '?', '#']) || id.len() > 255 {
        return Err(StripeError {
            status: Some(404),
            error_type: "invalid_request_error".into(),
            code: Some("resource_missing".into()),
            param: Some("id".into()),
            message: format!("'{id}' is not a Stripe {object} id"),
        });
    }
    Ok(())
}

fn rand_fraction() -> f64 {
    let bytes = crate::secrets::random_bytes::<2>();
    f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX)
}

fn parse_error(status: u16, body: &str) -> StripeError {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &value["error"];
    let text = |field: &str| error[field].as_str().map(str::to_string);
    StripeError {
        status: Some(status),
        error_type: text("type").unwrap_or_else(|| "api_error".into()),
        code: text("code"),
        param: text("param"),
        message: text("message").unwrap_or_else(|| {
            let body: String = body.chars().take(200).collect();
            format!("no error object in the answer: {body}")
        }),
    }
}

/// Form pairs for Stripe's bracket notation: `name[]=v` for each value.
pub fn list_param(name: &str, values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (format!("{name}[]"), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_stripes_error_object() {
        let e = parse_error(
            404,
            r#"{"error":{"type":"invalid_request_error","code":"resource_missing","param":"id","message":"No such customer: 'cus_x'"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "Stripe answered 404 (invalid_request_error, resource_missing, param id): No such customer: 'cus_x'"
        );
        let missing = parse_error(
            403,
            r#"{"error":{"type":"invalid_request_error","message":"The provided key 'rk_test_***' does not have the required permissions for this endpoint"}}"#,
        );
        assert!(missing.is_missing_permission());
        assert!(
            missing
                .to_crm_error()
                .message
                .contains("lacks this permission")
        );
        assert_eq!(parse_error(502, "bad gateway").kind(), ErrorKind::Transient);
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = text
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (name.to_string(), value.to_string())
            })
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn forms_flatten_as_stripes_libraries_do() {
        // The subscription example of the writes notes, from the fields a flow would give.
        let fields = serde_json::json!({
            "customer": "cus_Q1w2e3r4",
            "items": [{"price": "price_1PabcDEF", "quantity": 3}],
            "payment_behavior": "default_incomplete",
            "metadata": {"crm": "hubspot", "crm_deal_id": "9876543210"},
            "expand": ["latest_invoice.payment_intent"],
        });
        let mut encoded = form_pairs(fields.as_object().unwrap());
        encoded.sort();
        assert_eq!(
            encoded,
            pairs(
                "customer=cus_Q1w2e3r4&items[0][price]=price_1PabcDEF&items[0][quantity]=3&payment_behavior=default_incomplete&metadata[crm]=hubspot&metadata[crm_deal_id]=9876543210&expand[0]=latest_invoice.payment_intent"
            )
        );

        // Booleans, numbers, null, empty text, nesting, lists of lists, empty containers.
        let fields = serde_json::json!({
            "cancel_at_period_end": true,
            "off_session": false,
            "amount": 1250,
            "rate": 1.5,
            "description": null,
            "metadata": {"gone": "", "kept": "x", "skipped": null},
            "address": {"line1": "1 Main St", "city": "Paris"},
            "grid": [["a", "b"], [{"k": 1}]],
            "tax_rates": [],
            "shipping": {},
        });
        let mut encoded = form_pairs(fields.as_object().unwrap());
        encoded.sort();
        assert_eq!(
            encoded,
            pairs(
                "address[city]=Paris&address[line1]=1 Main St&amount=1250&cancel_at_period_end=true&grid[0][0]=a&grid[0][1]=b&grid[1][0][k]=1&metadata[gone]=&metadata[kept]=x&off_session=false&rate=1.5"
            )
        );
        // The body the client sends percent-encodes brackets; Stripe reads both forms.
        let body = serde_urlencoded::to_string(form_pairs(
            serde_json::json!({"items": [{"price": "p"}]})
                .as_object()
                .unwrap(),
        ))
        .unwrap();
        assert_eq!(body, "items%5B0%5D%5Bprice%5D=p");
    }

    #[test]
    fn write_idempotency_keys_are_stable_prefixed_and_bounded() {
        let key = write_idempotency_key("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "customer");
        assert_eq!(
            key,
            "tributary-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-customer"
        );
        assert!(key.starts_with(IDEMPOTENCY_PREFIX));
        let long_step = "s".repeat(300);
        let hashed = write_idempotency_key("evt1", &long_step);
        assert!(hashed.len() <= MAX_IDEMPOTENCY_KEY);
        assert!(hashed.starts_with("tributary-evt1-h"));
        assert_eq!(hashed, write_idempotency_key("evt1", &long_step));
        assert_ne!(hashed, write_idempotency_key("evt1", &"t".repeat(300)));
        let long_event = "e".repeat(400);
        let both = write_idempotency_key(&long_event, "customer");
        assert!(both.len() <= MAX_IDEMPOTENCY_KEY && both.starts_with(IDEMPOTENCY_PREFIX));
        assert_eq!(both, write_idempotency_key(&long_event, "customer"));
        let odd = write_idempotency_key("evt1", "kunde_ü");
        assert!(odd.is_ascii() && odd.starts_with("tributary-evt1-h"));
    }

    #[test]
    fn writable_objects_and_their_paths() {
        assert_eq!(write_path("customer", false), Some("/v1/customers"));
        assert_eq!(write_path("subscription", true), Some("/v1/subscriptions"));
        assert_eq!(
            write_path("billing_portal.session", false),
            Some("/v1/billing_portal/sessions")
        );
        assert_eq!(write_path("invoiceitem", true), None);
        assert_eq!(write_path("charge", false), None);
        assert_eq!(writable(true), vec!["customer", "subscription"]);
        assert_eq!(writable(false).len(), 4);
    }

    #[test]
    fn object_paths() {
        assert_eq!(
            object_path("checkout.session"),
            Some("/v1/checkout/sessions")
        );
        assert_eq!(
            object_path("checkout_session"),
            Some("/v1/checkout/sessions")
        );
        assert_eq!(object_path("refund"), None);
        assert_eq!(object_path("payout"), Some("/v1/payouts"));
        assert_eq!(
            object_path("balance_transaction"),
            Some("/v1/balance_transactions")
        );
        // Lists are read whole, never refetched as one object.
        assert_eq!(object_path("balance_transactions"), None);
        assert_eq!(
            list_path("balance_transactions"),
            Some(("/v1/balance_transactions", "payout"))
        );
        assert_eq!(list_path("payout"), None);
    }
}
