//! HubSpot app webhooks: the v3 request signature and the batch body, turned into
//! [`CrmEvent`]s.
//!
//! HubSpot POSTs a JSON array of up to 100 events, signed with `X-HubSpot-Signature-v3`:
//! `base64(HMAC-SHA256(key = app client secret, msg = METHOD + URI + raw body + timestamp))`,
//! the timestamp being `X-HubSpot-Request-Timestamp` (epoch milliseconds) exactly as sent.
//! HubSpot retries a delivery answered with any 4xx or 5xx, so [`parse_batch`] skips a bad item
//! (with a reason) instead of failing the batch; only a body that is not a batch at all fails.
//!
//! Decisions where HubSpot's documentation is silent or its SDKs disagree:
//!
//! - **Future timestamps**: rejected when more than [`TOLERANCE_MS`] ahead of our clock, the
//!   same window as for old ones. The SDKs accept any future timestamp; a bounded window still
//!   tolerates clock skew while keeping a captured request from being replayable later.
//! - **Age equal to the tolerance passes**; one millisecond more is stale (`age > 300000`, as the
//!   Node and PHP SDKs).
//! - **Signature before age**: a request whose signature does not match is reported as not
//!   matching, whatever its timestamp, so the age is only ever reported for genuine requests.
//! - **URI decoding**: HubSpot signs the URI with twelve percent-escapes decoded (`%3A` → `:`,
//!   `%2F` → `/`, …) and every other escape left as is. Its table is uppercase; whether it also
//!   decodes `%3a` is not documented, so both readings are accepted: the URI with the twelve
//!   escapes decoded in either case, and, when that differs, with only the uppercase ones decoded.
//! - Empty secrets are ignored; any remaining secret may match (rotation).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::CrmEvent;

/// How far a signed timestamp may be from our clock, either way: 5 minutes, in milliseconds.
pub const TOLERANCE_MS: i64 = 300_000;

/// The most items [`parse_batch`] accepts in one body. HubSpot sends at most 100; anything far
/// beyond that is not HubSpot.
pub const MAX_BATCH: usize = 1_000;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-HubSpot-Signature-v3";

/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-HubSpot-Request-Timestamp";

/// The twelve escapes HubSpot decodes before signing, and what each stands for.
const DECODED: [(&str, char); 12] = [
    ("3A", ':'),
    ("2F", '/'),
    ("3F", '?'),
    ("40", '@'),
    ("21", '!'),
    ("24", '$'),
    ("27", '\''),
    ("28", '('),
    ("29", ')'),
    ("2A", '*'),
    ("2C", ','),
    ("3B", ';'),
];

/// Why a HubSpot delivery failed verification. No message names a secret or the signature we
/// expected; each is fit to answer the sender with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-HubSpot-Signature-v3` header, or an empty one.
    #[error("no X-HubSpot-Signature-v3 header was provided; is this request really from HubSpot?")]
    MissingSignature,
    /// No `X-HubSpot-Request-Timestamp` header, or an empty one.
    #[error(
        "no X-HubSpot-Request-Timestamp header was provided; it is required to verify a v3 signature"
    )]
    MissingTimestamp,
    /// The timestamp header is not a whole number.
    #[error("the X-HubSpot-Request-Timestamp header is not a whole number of epoch milliseconds")]
    MalformedTimestamp,
    /// The signature header is not base64 of a SHA-256 HMAC.
    #[error("the X-HubSpot-Signature-v3 header is not a base64-encoded HMAC-SHA256")]
    MalformedSignature,
    /// No client secret is configured to check against.
    #[error("no HubSpot app client secret is configured to verify this request")]
    NoSecret,
    /// The signature matches but the timestamp is more than five minutes old.
    #[error(
        "the X-HubSpot-Request-Timestamp is {age_ms} ms old, \
         more than the {TOLERANCE_MS} ms allowed"
    )]
    Stale {
        /// How many milliseconds before "now" the request was signed.
        age_ms: i64,
    },
    /// The signature matches but the timestamp is more than five minutes in the future.
    #[error(
        "the X-HubSpot-Request-Timestamp is {ahead_ms} ms in the future, \
         more than the {TOLERANCE_MS} ms allowed"
    )]
    Future {
        /// How many milliseconds after "now" the request claims to be signed.
        ahead_ms: i64,
    },
    /// The signature matches under none of the configured secrets.
    #[error(
        "the X-HubSpot-Signature-v3 does not match the request under the configured client \
         secret(s); check the app's client secret, the public URL and that the body is unmodified"
    )]
    Mismatch,
}

/// Verifies a HubSpot v3 signature.
///
/// `method` and `uri` are those HubSpot called: the full public URL with scheme, host, path and
/// query (behind a proxy, the public one), with its escapes as received; `body` the raw request
/// body. `timestamp` and `signature` are the header values. The request is genuine if the
/// signature matches under any of `secrets` and the timestamp is within [`TOLERANCE_MS`] of
/// `now_ms`, in the past or (unlike HubSpot's SDKs) in the future; see the module docs for the
/// URI's escapes and the order of the checks.
pub fn verify_v3(
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    secrets: &[&str],
    now_ms: i64,
) -> Result<(), SignatureError> {
    let signature = present(signature).ok_or(SignatureError::MissingSignature)?;
    let timestamp = present(timestamp).ok_or(SignatureError::MissingTimestamp)?;
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let given = STANDARD
        .decode(signature)
        .map_err(|_| SignatureError::MalformedSignature)?;

    let mut secrets = secrets.iter().filter(|s| !s.is_empty()).peekable();
    if secrets.peek().is_none() {
        return Err(SignatureError::NoSecret);
    }
    let mut uris = vec![decode_uri(uri, true)];
    let uppercase_only = decode_uri(uri, false);
    if uppercase_only != uris[0] {
        uris.push(uppercase_only);
    }
    let mut matched = Choice::from(0);
    for secret in secrets {
        for uri in &uris {
            let expected = mac(method, uri, body, timestamp, secret);
            matched |= expected.as_slice().ct_eq(&given);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }

    let age_ms = now_ms.saturating_sub(signed_at);
    if age_ms > TOLERANCE_MS {
        return Err(SignatureError::Stale { age_ms });
    }
    if age_ms < -TOLERANCE_MS {
        return Err(SignatureError::Future {
            ahead_ms: age_ms.saturating_neg(),
        });
    }
    Ok(())
}

/// The `X-HubSpot-Signature-v3` value HubSpot would send for this request: `uri` as it is
/// called (its twelve escapes are decoded here, uppercase or lowercase), `timestamp` as the
/// header carries it. For tests and for sending test deliveries through the real check.
pub fn sign_v3(method: &str, uri: &str, body: &[u8], timestamp: &str, secret: &str) -> String {
    STANDARD.encode(mac(method, &decode_uri(uri, true), body, timestamp, secret))
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn mac(method: &str, uri: &str, body: &[u8], timestamp: &str, secret: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts a key of any length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `uri` with HubSpot's twelve escapes decoded (also in lowercase when `any_case`); every
/// other escape, and every other character, is kept as is.
fn decode_uri(uri: &str, any_case: bool) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        let decoded = escape.and_then(|hex| {
            DECODED
                .iter()
                .find(|(code, _)| *code == hex || (any_case && code.eq_ignore_ascii_case(hex)))
                .map(|(_, c)| *c)
        });
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A webhook body, read: its events, and the items that could not be read with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The readable items, sorted by `occurredAt` (HubSpot does not keep order); items with
    /// the same time keep the order of the body.
    pub events: Vec<CrmEvent>,
    /// One reason for each item skipped, naming its position in the body (from 0).
    pub skipped: Vec<String>,
}

/// Reads a HubSpot webhook body: a JSON array of at most [`MAX_BATCH`] event objects.
///
/// Each item becomes a [`CrmEvent`] keyed `{portalId}:{subscriptionId}:{eventId}:{occurredAt}`
/// (HubSpot's `eventId` alone is not unique); `previous` is left empty for the caller. An
/// event is an echo when `app_id` is given and the item's `sourceId` equals it: HubSpot names
/// the acting app there for changes made through an integration. An item that is not an object
/// or lacks `eventId`, `objectId`, `subscriptionType` (or `eventType`) or `occurredAt` is
/// skipped and named in [`Batch::skipped`], so one bad item does not make HubSpot retry the
/// whole batch. Values keep the JSON types HubSpot sent (`propertyValue` is a string).
pub fn parse_batch(body: &[u8], app_id: Option<&str>) -> Result<Batch, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the HubSpot webhook body is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(format!(
            "the HubSpot webhook body must be a JSON array of events, not {}",
            kind(&value)
        ));
    };
    if items.len() > MAX_BATCH {
        return Err(format!(
            "the HubSpot webhook body has {} events; at most {MAX_BATCH} are accepted",
            items.len()
        ));
    }
    let mut batch = Batch {
        events: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        match event(item, app_id) {
            Ok(event) => batch.events.push(event),
            Err(reason) => batch.skipped.push(format!("item {index}: {reason}")),
        }
    }
    batch.events.sort_by_key(|e| e.occurred_at_ms);
    Ok(batch)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The HubSpot account (portal) an event came from: its item's `portalId`.
pub fn portal_of(event: &CrmEvent) -> Option<String> {
    text(event.vendor.get("portalId"))
}

/// A shared app's batch, split by portal in the order the portals first appear; events without
/// a `portalId` come last, under `None`. Each event is an echo when its `sourceId` is the app
/// that sent it (`appId`): the operator's app writes for Tributary only.
pub fn by_portal(events: Vec<CrmEvent>) -> Vec<(Option<String>, Vec<CrmEvent>)> {
    let mut groups: Vec<(Option<String>, Vec<CrmEvent>)> = Vec::new();
    for mut event in events {
        let app = text(event.vendor.get("appId"));
        if app.is_some() && text(event.vendor.get("sourceId")) == app {
            event.echo = true;
        }
        let portal = portal_of(&event);
        match groups.iter_mut().find(|(p, _)| *p == portal) {
            Some((_, group)) => group.push(event),
            None => groups.push((portal, vec![event])),
        }
    }
    groups.sort_by_key(|(portal, _)| portal.is_none());
    groups
}

/// An id as text: HubSpot sends numbers; a string is taken as is.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn event(item: Value, app_id: Option<&str>) -> Result<CrmEvent, String> {
    let Value::Object(fields) = &item else {
        return Err(format!("{} is not an event object", kind(&item)));
    };
    let event_id = text(fields.get("eventId")).ok_or("no eventId")?;
    let object_id =
        text(fields.get("objectId")).ok_or_else(|| format!("event {event_id} has no objectId"))?;
    let event_type = fields
        .get("subscriptionType")
        .or_else(|| fields.get("eventType"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("event {event_id} has no subscriptionType"))?
        .to_string();
    let occurred_at_ms = occurred_at(fields.get("occurredAt"))
        .ok_or_else(|| format!("event {event_id} has no occurredAt in epoch milliseconds"))?;
    let key = format!(
        "{}:{}:{event_id}:{occurred_at_ms}",
        text(fields.get("portalId")).unwrap_or_default(),
        text(fields.get("subscriptionId")).unwrap_or_default(),
    );
    let echo = app_id.is_some_and(|app| text(fields.get("sourceId")).as_deref() == Some(app));
    Ok(CrmEvent {
        source: "hubspot",
        key,
        object: object_name(&event_type, fields),
        record: record(&event_type, &object_id, fields),
        event_type,
        record_id: object_id,
        occurred_at_ms,
        previous: Map::new(),
        echo,
        vendor: item,
    })
}

fn occurred_at(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `deal` for `deal.propertyChange`; for the generic `object.*` events the object named by
/// `objectTypeId` (`0-1` contact, `0-2` company, `0-3` deal, `0-5` ticket, else the raw id).
fn object_name(event_type: &str, fields: &Map<String, Value>) -> String {
    let prefix = event_type.split('.').next().unwrap_or(event_type);
    if prefix != "object" {
        return prefix.to_string();
    }
    match text(fields.get("objectTypeId")).as_deref() {
        Some("0-1") => "contact".into(),
        Some("0-2") => "company".into(),
        Some("0-3") => "deal".into(),
        Some("0-5") => "ticket".into(),
        Some(other) => other.to_string(),
        None => prefix.to_string(),
    }
}

/// The record as the event tells it: its id, the changed property's new value for a property
/// change, the winner and the merged ids for a merge.
fn record(event_type: &str, object_id: &str, fields: &Map<String, Value>) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("id".into(), Value::String(object_id.to_string()));
    if let Some(name) = fields.get("propertyName").and_then(Value::as_str)
        && !name.is_empty()
        && name != "id"
    {
        let value = fields.get("propertyValue").cloned().unwrap_or(Value::Null);
        record.insert(name.to_string(), value);
    }
    if event_type.ends_with(".merge") {
        for field in ["primaryObjectId", "mergedObjectIds"] {
            if let Some(value) = fields.get(field) {
                record.insert(field.to_string(), value.clone());
            }
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    // WEBHOOKS.md §6 A6: HubSpot's Python SDK `test_get_signature__v3`.
    const A6_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const A6_URI: &str = "https://www.example.com/webhook_uri";
    const A6_BODY: &[u8] = b"{'example_field':'example_value'}";
    const A6_TS: &str = "1693657560000";
    const A6_SIG: &str = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";

    // WEBHOOKS.md §6 B: the project's own vector with escapes in the query.
    const B_SECRET: &str = "3f0c5e9a-7b21-4d8e-a6f4-19c2d0b7e5aa";
    const B_URI: &str =
        "https://hooks.example.com/hubspot/webhooks?tenant=acme%3Aeu&redirect=%2Fdone";
    const B_URI_NO_QUERY: &str = "https://hooks.example.com/hubspot/webhooks";
    const B_TS: &str = "1735689600000";
    const B_NOW: i64 = 1_735_689_600_000;
    const B_BODY: &str = concat!(
        r#"[{"eventId":4218806431,"subscriptionId":2712345,"portalId":62515,"appId":54321,"#,
        r#""occurredAt":1735689598123,"subscriptionType":"deal.propertyChange","attemptNumber":0,"#,
        r#""objectId":9876543210,"propertyName":"dealstage","propertyValue":"closedwon","#,
        r#""changeSource":"CRM_UI","sourceId":"userId:1234567"},"#,
        r#"{"eventId":4218806432,"subscriptionId":2712399,"portalId":62515,"appId":54321,"#,
        r#""occurredAt":1735689598456,"subscriptionType":"object.propertyChange","#,
        r#""objectTypeId":"0-1","attemptNumber":0,"objectId":512,"propertyName":"email","#,
        r#""propertyValue":"ada@example.com","changeSource":"INTEGRATION","sourceId":"54321"}]"#
    );
    const B_SIG: &str = "9z9C3CNNsbvw7xWC2i8XKiMBqBT4MxFMTKpcF7BtE4s=";
    const B_SIG_UNDECODED: &str = "LkD/XMCxsR5X+/GQdVDiqKYvVjldV3GhM9RxYTU7AGk=";
    const B_SIG_NO_QUERY: &str = "0VUPSrSZwGTvZIJSN0NWfJMp4VwV525Eri5UQH0srVM=";

    fn check_b(
        uri: &str,
        ts: Option<&str>,
        sig: Option<&str>,
        now: i64,
    ) -> Result<(), SignatureError> {
        verify_v3("POST", uri, B_BODY.as_bytes(), ts, sig, &[B_SECRET], now)
    }

    #[test]
    fn vector_a6_verifies() {
        let now = 1_693_657_560_000;
        let result = verify_v3(
            "POST",
            A6_URI,
            A6_BODY,
            Some(A6_TS),
            Some(A6_SIG),
            &[A6_SECRET],
            now,
        );
        assert_eq!(result, Ok(()));
        assert_eq!(sign_v3("POST", A6_URI, A6_BODY, A6_TS, A6_SECRET), A6_SIG);
    }

    #[test]
    fn vector_b_is_signed_over_the_decoded_uri() {
        assert_eq!(B_BODY.len(), 603);
        assert_eq!(check_b(B_URI, Some(B_TS), Some(B_SIG), B_NOW), Ok(()));
        assert_eq!(
            sign_v3("POST", B_URI, B_BODY.as_bytes(), B_TS, B_SECRET),
            B_SIG
        );
        // What the SDKs compute from the undecoded URI is not HubSpot's signature.
        assert_eq!(
            check_b(B_URI, Some(B_TS), Some(B_SIG_UNDECODED), B_NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check_b(B_URI_NO_QUERY, Some(B_TS), Some(B_SIG_NO_QUERY), B_NOW),
            Ok(())
        );
        assert_eq!(
            check_b(B_URI_NO_QUERY, Some(B_TS), Some(B_SIG), B_NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_twelve_escapes_are_decoded_in_either_case_and_no_others() {
        let lower = "https://hooks.example.com/hubspot/webhooks?tenant=acme%3aeu&redirect=%2fdone";
        assert_eq!(check_b(lower, Some(B_TS), Some(B_SIG), B_NOW), Ok(()));
        let all = "%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B|%3a%2f%3f%40%21%24%27%28%29%2a%2c%3b";
        assert_eq!(decode_uri(all, true), ":/?@!$'()*,;|:/?@!$'()*,;");
        assert_eq!(
            decode_uri(all, false),
            // `%40` … `%29` have no letter, so no case either.
            ":/?@!$'()*,;|%3a%2f%3f@!$'()%2a%2c%3b"
        );
        assert_eq!(decode_uri("a%20b%26c%3Dd%%2%3", true), "a%20b%26c%3Dd%%2%3");
        // A lowercase escape left encoded by the signer is accepted too.
        let mixed = "https://x.example/h?a=%3a&b=%3A";
        let signed_as = "https://x.example/h?a=%3a&b=:";
        let sig = STANDARD.encode(mac("POST", signed_as, b"[]", B_TS, B_SECRET));
        let result = verify_v3(
            "POST",
            mixed,
            b"[]",
            Some(B_TS),
            Some(&sig),
            &[B_SECRET],
            B_NOW,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_with_their_distance() {
        let sign = |ts: i64| sign_v3("POST", B_URI, B_BODY.as_bytes(), &ts.to_string(), B_SECRET);
        for (ts, expected) in [
            (B_NOW - TOLERANCE_MS, Ok(())),
            (
                B_NOW - TOLERANCE_MS - 1,
                Err(SignatureError::Stale { age_ms: 300_001 }),
            ),
            (
                B_NOW - 3_600_000,
                Err(SignatureError::Stale { age_ms: 3_600_000 }),
            ),
            (B_NOW + TOLERANCE_MS, Ok(())),
            (
                B_NOW + TOLERANCE_MS + 1,
                Err(SignatureError::Future { ahead_ms: 300_001 }),
            ),
        ] {
            let ts_text = ts.to_string();
            let got = check_b(B_URI, Some(&ts_text), Some(&sign(ts)), B_NOW);
            assert_eq!(got, expected, "timestamp {ts}");
        }
        let message = check_b(B_URI, Some(B_TS), Some(B_SIG), B_NOW + 600_000)
            .unwrap_err()
            .to_string();
        assert!(message.contains("600000 ms old"), "{message}");
        // A wrong signature is a mismatch, whatever the age.
        assert_eq!(
            check_b(B_URI, Some(B_TS), Some(A6_SIG), B_NOW + 600_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn both_headers_are_required_and_must_be_well_formed() {
        assert_eq!(
            check_b(B_URI, Some(B_TS), None, B_NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check_b(B_URI, Some(B_TS), Some(" "), B_NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check_b(B_URI, None, Some(B_SIG), B_NOW),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check_b(B_URI, Some(""), Some(B_SIG), B_NOW),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            check_b(B_URI, None, None, B_NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            check_b(B_URI, Some("1735689600"), Some(B_SIG), B_NOW),
            Err(SignatureError::Mismatch),
            "seconds instead of milliseconds sign a different message"
        );
        assert_eq!(
            check_b(B_URI, Some("2025-01-01"), Some(B_SIG), B_NOW),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            check_b(B_URI, Some(B_TS), Some("not base64!"), B_NOW),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn any_configured_secret_may_match_and_none_is_printed() {
        let body = B_BODY.as_bytes();
        let wrong = "00000000-0000-0000-0000-000000000000";
        let only_wrong = verify_v3(
            "POST",
            B_URI,
            body,
            Some(B_TS),
            Some(B_SIG),
            &[wrong],
            B_NOW,
        );
        assert_eq!(only_wrong, Err(SignatureError::Mismatch));
        let rotated = verify_v3(
            "POST",
            B_URI,
            body,
            Some(B_TS),
            Some(B_SIG),
            &[wrong, B_SECRET],
            B_NOW,
        );
        assert_eq!(rotated, Ok(()));
        let none = verify_v3(
            "POST",
            B_URI,
            body,
            Some(B_TS),
            Some(B_SIG),
            &["", ""],
            B_NOW,
        );
        assert_eq!(none, Err(SignatureError::NoSecret));
        let message = only_wrong.unwrap_err().to_string();
        assert!(
            !message.contains(wrong) && !message.contains(B_SIG),
            "{message}"
        );
    }

    // WEBHOOKS.md §2: the realistic example body.
    const EXAMPLE: &str = r#"[
      {"eventId": 4218806431, "subscriptionId": 2712345, "portalId": 62515, "appId": 54321,
       "occurredAt": 1735689598123, "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
       "objectId": 9876543210, "propertyName": "dealstage", "propertyValue": "closedwon",
       "changeSource": "CRM_UI", "sourceId": "userId:1234567"},
      {"eventId": 4218806432, "subscriptionId": 2712399, "portalId": 62515, "appId": 54321,
       "occurredAt": 1735689598456, "subscriptionType": "object.propertyChange", "objectTypeId": "0-1",
       "attemptNumber": 0, "objectId": 512, "propertyName": "email", "propertyValue": "ada@example.com",
       "changeSource": "INTEGRATION", "sourceId": "54321"},
      {"eventId": 4218806433, "subscriptionId": 2712346, "portalId": 62515, "appId": 54321,
       "occurredAt": 1735689599001, "subscriptionType": "contact.creation", "attemptNumber": 2,
       "objectId": 513, "changeFlag": "CREATED", "changeSource": "IMPORT"}
    ]"#;

    #[test]
    fn the_example_batch_becomes_three_events() {
        let batch = parse_batch(EXAMPLE.as_bytes(), Some("54321")).unwrap();
        assert!(batch.skipped.is_empty(), "{:?}", batch.skipped);
        let [deal, contact, created] = batch.events.as_slice() else {
            panic!("three events: {:?}", batch.events);
        };
        assert_eq!(deal.source, "hubspot");
        assert_eq!(deal.key, "62515:2712345:4218806431:1735689598123");
        assert_eq!(deal.event_type, "deal.propertyChange");
        assert_eq!(deal.object, "deal");
        assert_eq!(deal.record_id, "9876543210");
        assert_eq!(deal.occurred_at_ms, 1_735_689_598_123);
        assert_eq!(
            Value::Object(deal.record.clone()),
            serde_json::json!({"id": "9876543210", "dealstage": "closedwon"})
        );
        assert!(deal.previous.is_empty());
        assert_eq!(deal.vendor["changeSource"], "CRM_UI");
        assert_eq!(deal.vendor["objectId"], 9_876_543_210_u64);

        assert_eq!(contact.key, "62515:2712399:4218806432:1735689598456");
        assert_eq!(contact.event_type, "object.propertyChange");
        assert_eq!(contact.object, "contact");
        assert_eq!(contact.record["email"], "ada@example.com");

        assert_eq!(created.key, "62515:2712346:4218806433:1735689599001");
        assert_eq!(created.event_type, "contact.creation");
        assert_eq!(created.object, "contact");
        assert_eq!(
            Value::Object(created.record.clone()),
            serde_json::json!({"id": "513"})
        );

        let echoes: Vec<bool> = batch.events.iter().map(|e| e.echo).collect();
        assert_eq!(echoes, [false, true, false]);
        let other_app = parse_batch(EXAMPLE.as_bytes(), Some("99999")).unwrap();
        assert!(other_app.events.iter().all(|e| !e.echo));
        let no_app = parse_batch(EXAMPLE.as_bytes(), None).unwrap();
        assert!(no_app.events.iter().all(|e| !e.echo));
    }

    #[test]
    fn a_body_that_is_not_a_batch_is_refused() {
        let err = parse_batch(br#"{"eventId": 1}"#, None).unwrap_err();
        assert!(
            err.contains("must be a JSON array") && err.contains("an object"),
            "{err}"
        );
        assert!(
            parse_batch(b"not json", None)
                .unwrap_err()
                .contains("not JSON")
        );
        let too_many = format!("[{}]", vec!["{}"; MAX_BATCH + 1].join(","));
        assert!(
            parse_batch(too_many.as_bytes(), None)
                .unwrap_err()
                .contains("1001 events")
        );
        assert_eq!(parse_batch(b"[]", None).unwrap().events, []);
    }

    #[test]
    fn bad_items_are_skipped_with_a_reason_and_the_rest_kept() {
        let body = br#"[
          {"eventId": 7, "subscriptionId": 1, "portalId": 2, "occurredAt": 5,
           "subscriptionType": "deal.deletion"},
          "not an event",
          {"eventId": 8, "subscriptionId": 1, "portalId": 2, "occurredAt": 3,
           "eventType": "object.merge", "objectTypeId": "0-7", "objectId": 40,
           "primaryObjectId": 40, "mergedObjectIds": [41, 42], "newObjectId": 40},
          {"eventId": 9, "objectId": 1, "occurredAt": 3}
        ]"#;
        let batch = parse_batch(body, None).unwrap();
        assert_eq!(batch.skipped.len(), 3, "{:?}", batch.skipped);
        assert!(
            batch.skipped[0].starts_with("item 0:") && batch.skipped[0].contains("no objectId")
        );
        assert!(batch.skipped[1].starts_with("item 1:") && batch.skipped[1].contains("a string"));
        assert!(
            batch.skipped[2].starts_with("item 3:")
                && batch.skipped[2].contains("subscriptionType")
        );
        let [merge] = batch.events.as_slice() else {
            panic!("{:?}", batch.events)
        };
        assert_eq!(merge.event_type, "object.merge");
        assert_eq!(merge.object, "0-7");
        assert_eq!(
            Value::Object(merge.record.clone()),
            serde_json::json!({"id": "40", "primaryObjectId": 40, "mergedObjectIds": [41, 42]})
        );
    }

    #[test]
    fn events_are_sorted_by_when_they_happened() {
        let body = br#"[
          {"eventId": 1, "portalId": 9, "subscriptionId": 1, "occurredAt": 20, "objectId": 1, "subscriptionType": "company.creation"},
          {"eventId": 2, "portalId": 9, "subscriptionId": 1, "occurredAt": 10, "objectId": 2, "subscriptionType": "ticket.deletion"}
        ]"#;
        let batch = parse_batch(body, None).unwrap();
        let ids: Vec<&str> = batch.events.iter().map(|e| e.record_id.as_str()).collect();
        assert_eq!(ids, ["2", "1"]);
        assert_eq!(batch.events[1].object, "company");
    }
}
