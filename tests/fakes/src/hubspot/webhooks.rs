//! The fake HubSpot's webhook deliveries: event items shaped as HubSpot sends them, and a
//! [`WebhookSender`] that POSTs them to an app's target URL as HubSpot does.
//!
//! As HubSpot: the body is a JSON array of at most 100 events (a longer list goes in several
//! requests); every request carries `X-HubSpot-Signature-v3` and `X-HubSpot-Request-Timestamp`
//! (epoch ms), signed over the URL called with its twelve reserved escapes decoded, and the
//! legacy `X-HubSpot-Signature` `v1`; an answer that is not 2xx, or none within 5 seconds, is a
//! failure and the request is sent again, re-signed, with each item's `attemptNumber` one
//! higher, up to 10 times. Unlike HubSpot: the retries come after a short fixed delay instead
//! of spread over a day, requests go one at a time (HubSpot keeps up to 10 in flight per
//! account), and a batch is retried whole (HubSpot retries each notification).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use url::Url;

use super::post::{self, signature_v1, signature_v3};

/// The most events HubSpot puts in one request.
pub const MAX_PER_REQUEST: usize = 100;
/// How many times HubSpot sends a failed request again.
pub const HUBSPOT_RETRIES: u32 = 10;
/// How long HubSpot waits for an answer before counting the request as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The delay between tries unless set: short, for tests (HubSpot spreads its over ~24 hours).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(50);
/// The app id the builders' tests use (the one in HubSpot's examples).
pub const APP_ID: u64 = 54321;

pub const SIGNATURE_V3_HEADER: &str = "X-HubSpot-Signature-v3";
pub const TIMESTAMP_HEADER: &str = "X-HubSpot-Request-Timestamp";
pub const SIGNATURE_V1_HEADER: &str = "X-HubSpot-Signature";
pub const SIGNATURE_VERSION_HEADER: &str = "X-HubSpot-Signature-Version";

static NEXT_EVENT_ID: AtomicU64 = AtomicU64::new(5_000_000_001);

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stable subscription id for an event type (and property): one app subscription each.
fn subscription_id(event_type: &str, property: Option<&str>) -> u64 {
    let name = format!("{event_type}/{}", property.unwrap_or(""));
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    1_000_000 + hash % 9_000_000
}

/// The fields every event item has, with a fresh `eventId` and `occurredAt` = now.
fn item(
    portal_id: u64,
    app_id: u64,
    event_type: &str,
    object_id: u64,
    property: Option<&str>,
) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert(
        "eventId".into(),
        json!(NEXT_EVENT_ID.fetch_add(1, Ordering::Relaxed)),
    );
    item.insert(
        "subscriptionId".into(),
        json!(subscription_id(event_type, property)),
    );
    item.insert("portalId".into(), json!(portal_id));
    item.insert("appId".into(), json!(app_id));
    item.insert("occurredAt".into(), json!(now_ms()));
    item.insert("subscriptionType".into(), json!(event_type));
    item.insert("attemptNumber".into(), json!(0));
    item.insert("objectId".into(), json!(object_id));
    item
}

/// Who made a change: a user (`userId:…`, from the UI) or an app (its id, through the API).
fn source(item: &mut Map<String, Value>, source_id: Option<&str>) {
    let change_source = match source_id {
        Some(id) if !id.starts_with("userId:") => "INTEGRATION",
        _ => "CRM_UI",
    };
    item.insert("changeSource".into(), json!(change_source));
    if let Some(id) = source_id {
        item.insert("sourceId".into(), json!(id));
    }
}

/// A `{object}.propertyChange` item (`object` as `contact`, `company`, `deal`, `ticket`, …):
/// `property` now has `value` (a string, as HubSpot sends it). `source_id` is who changed it:
/// `userId:<id>` for a user, the acting app's id for an integration (an echo when it is the
/// receiving app's own), `None` to leave it out.
pub fn property_change(
    portal_id: u64,
    app_id: u64,
    object: &str,
    object_id: u64,
    property: &str,
    value: &str,
    source_id: Option<&str>,
) -> Value {
    let event_type = format!("{object}.propertyChange");
    let mut item = item(portal_id, app_id, &event_type, object_id, Some(property));
    item.insert("propertyName".into(), json!(property));
    item.insert("propertyValue".into(), json!(value));
    source(&mut item, source_id);
    Value::Object(item)
}

/// A `deal.propertyChange` item; see [`property_change`].
pub fn deal_property_change(
    portal_id: u64,
    app_id: u64,
    object_id: u64,
    property: &str,
    value: &str,
    source_id: Option<&str>,
) -> Value {
    property_change(
        portal_id, app_id, "deal", object_id, property, value, source_id,
    )
}

/// A generic `object.creation` item for the object type `object_type_id` (`0-1` contacts,
/// `0-2` companies, `0-3` deals, `0-5` tickets, …).
pub fn object_creation(portal_id: u64, app_id: u64, object_type_id: &str, object_id: u64) -> Value {
    let mut item = item(portal_id, app_id, "object.creation", object_id, None);
    item.insert("objectTypeId".into(), json!(object_type_id));
    item.insert("changeFlag".into(), json!("CREATED"));
    source(&mut item, None);
    Value::Object(item)
}

/// A `contact.creation` item.
pub fn contact_creation(portal_id: u64, app_id: u64, object_id: u64) -> Value {
    let mut item = item(portal_id, app_id, "contact.creation", object_id, None);
    item.insert("changeFlag".into(), json!("CREATED"));
    source(&mut item, None);
    Value::Object(item)
}

/// A `{object}.deletion` item (`object` as `contact`, `deal`, …).
pub fn deletion(portal_id: u64, app_id: u64, object: &str, object_id: u64) -> Value {
    let event_type = format!("{object}.deletion");
    let mut item = item(portal_id, app_id, &event_type, object_id, None);
    item.insert("changeFlag".into(), json!("DELETED"));
    source(&mut item, None);
    Value::Object(item)
}

/// One request the sender made.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Which request of this sender it carried, from 0 (one per batch of up to 100 events).
    pub request: usize,
    /// 0 for the first try, then 1, 2, … as in the items' `attemptNumber`.
    pub attempt_number: u32,
    pub at: DateTime<Utc>,
    /// The URL called.
    pub url: String,
    /// The headers sent besides `Host`, `Content-Type`, `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    /// The body sent, exactly.
    pub body: String,
    /// The answer's status, if there was one.
    pub status: Option<u16>,
    /// The answer's body, if there was one.
    pub answer: Option<String>,
    /// Why there was no answer (refused connection, nothing within the timeout, …).
    pub error: Option<String>,
}

impl Attempt {
    /// Whether the target accepted it (2xx).
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// A header sent, by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Delivers webhook batches to one target URL as HubSpot does (see the module docs), and
/// keeps every attempt for the test to check. Cheap to clone; clones share the attempts.
#[derive(Clone)]
pub struct WebhookSender {
    target: Url,
    signed_url: Option<String>,
    secret: String,
    retries: u32,
    retry_delay: Duration,
    timeout: Duration,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    requests: Arc<AtomicUsize>,
}

impl WebhookSender {
    /// A sender to `target_url` (an `http://` URL, with any query), signing with the app's
    /// client `secret`; HubSpot's 10 retries and 5-second timeout, a [`DEFAULT_RETRY_DELAY`].
    pub fn new(target_url: &str, secret: &str) -> WebhookSender {
        WebhookSender {
            target: Url::parse(target_url).expect("the webhook target is a URL"),
            signed_url: None,
            secret: secret.to_string(),
            retries: HUBSPOT_RETRIES,
            retry_delay: DEFAULT_RETRY_DELAY,
            timeout: RESPONSE_TIMEOUT,
            attempts: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// How many times a failed request is sent again (0: never).
    pub fn retries(mut self, retries: u32) -> WebhookSender {
        self.retries = retries;
        self
    }

    /// The wait before each retry.
    pub fn retry_delay(mut self, delay: Duration) -> WebhookSender {
        self.retry_delay = delay;
        self
    }

    /// How long to wait for an answer before counting the request as failed.
    pub fn timeout(mut self, timeout: Duration) -> WebhookSender {
        self.timeout = timeout;
        self
    }

    /// Signs as if HubSpot had called `public_url` (e.g. the `https://` address a proxy
    /// forwards to the target) instead of the target URL itself.
    pub fn signed_as(mut self, public_url: &str) -> WebhookSender {
        self.signed_url = Some(public_url.to_string());
        self
    }

    /// The URL the signature covers: the target (or [`Self::signed_as`]'s) as called.
    pub fn signed_url(&self) -> &str {
        self.signed_url.as_deref().unwrap_or(self.target.as_str())
    }

    /// The `X-HubSpot-Signature-v3` of a POST of `body` with this timestamp header.
    pub fn signature(&self, body: &[u8], timestamp: &str) -> String {
        signature_v3("POST", self.signed_url(), body, timestamp, &self.secret)
    }

    /// The headers HubSpot sends with `body`, signed now.
    pub fn headers(&self, body: &[u8]) -> Vec<(String, String)> {
        let timestamp = now_ms().to_string();
        vec![
            (SIGNATURE_V3_HEADER.into(), self.signature(body, &timestamp)),
            (TIMESTAMP_HEADER.into(), timestamp),
            (SIGNATURE_V1_HEADER.into(), signature_v1(body, &self.secret)),
            (SIGNATURE_VERSION_HEADER.into(), "v1".into()),
        ]
    }

    /// Delivers `items` in requests of at most [`MAX_PER_REQUEST`], one after the other, each
    /// retried until accepted or out of retries. True when every request was accepted.
    pub async fn send(&self, items: &[Value]) -> bool {
        let mut all = true;
        for batch in items.chunks(MAX_PER_REQUEST) {
            all &= self.deliver(batch).await;
        }
        all
    }

    /// One request with `body` and `headers` exactly as given (besides `Content-Type` and the
    /// framing), without retry, recorded as attempt 0 of a new request: for tampered
    /// signatures, stale timestamps and malformed bodies.
    pub async fn post_raw(&self, body: &[u8], headers: Vec<(String, String)>) -> Attempt {
        let request = self.requests.fetch_add(1, Ordering::Relaxed);
        self.attempt(request, 0, body, headers).await
    }

    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    async fn deliver(&self, batch: &[Value]) -> bool {
        let request = self.requests.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(self.retry_delay).await;
            }
            let items: Vec<Value> = batch.iter().map(|i| with_attempt(i, attempt)).collect();
            let body = serde_json::to_vec(&items).expect("JSON items serialise");
            let headers = self.headers(&body);
            if self
                .attempt(request, attempt, &body, headers)
                .await
                .delivered()
            {
                return true;
            }
        }
        false
    }

    async fn attempt(
        &self,
        request: usize,
        attempt_number: u32,
        body: &[u8],
        headers: Vec<(String, String)>,
    ) -> Attempt {
        let at = Utc::now();
        let sent: Vec<(&str, String)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let answer = post::post(&self.target, &sent, body, self.timeout).await;
        let (status, answer, error) = match answer {
            Ok(answer) => (Some(answer.status), Some(answer.body), None),
            Err(error) => (None, None, Some(error)),
        };
        let attempt = Attempt {
            request,
            attempt_number,
            at,
            url: self.target.to_string(),
            headers,
            body: String::from_utf8_lossy(body).into_owned(),
            status,
            answer,
            error,
        };
        self.attempts.lock().unwrap().push(attempt.clone());
        attempt
    }
}

/// `item` as sent on try `attempt`: its `attemptNumber` that much higher.
fn with_attempt(item: &Value, attempt: u32) -> Value {
    let mut item = item.clone();
    if let Some(fields) = item.as_object_mut() {
        let first = fields
            .get("attemptNumber")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        fields.insert("attemptNumber".into(), json!(first + u64::from(attempt)));
    }
    item
}

#[cfg(test)]
mod tests;
