//! The Stripe event envelope: tells a webhook body that is an event from one that is not, and
//! pulls out the few fields Tributary routes on. Lenient about everything else, because
//! envelopes from 2015 to today differ (see `parse`); it does not check signatures.

use serde_json::{Map, Value};

/// The longest `id` or `type` accepted; Stripe's are a few dozen characters, and both end up in
/// indexed database columns.
const MAX_KEY_LEN: usize = 255;

/// The routing fields of one Stripe event, plus its `data.object`. The raw body stays the
/// source of truth (it is stored byte-for-byte); this is what the inbox and flows key on.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Stripe's event id (`evt_…`): the idempotency key of the inbox.
    pub id: String,
    /// The event type, e.g. `charge.succeeded`: what flows trigger on.
    pub event_type: String,
    /// When Stripe created the event (Unix seconds): orders updates to the same object.
    pub created: i64,
    /// `false` for test-mode events; an envelope without the field counts as test mode.
    pub livemode: bool,
    /// The API version the payload is rendered in, verbatim (`2024-06-20`,
    /// `2025-03-31.basil`, `2016-03-07; orders_beta=v3`); `None` when absent or null.
    pub api_version: Option<String>,
    /// The connected account (`acct_…`) for Connect events; `None` for the platform's own.
    pub account: Option<String>,
    /// `data.object`, always a JSON object.
    pub object: Value,
    /// `data.object.id`, when it is a string.
    pub object_id: Option<String>,
    /// `data.object.object` (`charge`, `checkout.session`, …), when it is a string.
    pub object_type: Option<String>,
}

/// Why a body is not a Stripe event. Messages are fit for a problem+json `detail` and quote
/// nothing from the body but a short `object` marker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body does not parse as JSON.
    #[error("the body is not a Stripe event: it is not valid JSON ({0})")]
    NotJson(String),
    /// The body is JSON but not an object (an array, a string, …).
    #[error("the body is not a Stripe event: it is JSON but not an object")]
    NotAnObject,
    /// The top-level `object` is present and is not `"event"` (a bare charge, a `data`
    /// fragment, a v2 thin event, …).
    #[error("the body is not a Stripe event: its `object` is {found}, not \"event\"")]
    NotAnEvent {
        /// A short description of what `object` holds instead.
        found: String,
    },
    /// A field every Stripe event has is missing or null.
    #[error("the body is not a Stripe event: it has no `{field}`")]
    MissingField {
        /// The dotted path of the field.
        field: &'static str,
    },
    /// A field has the wrong JSON type or an impossible value.
    #[error("the body is not a Stripe event: `{field}` must be {expected}")]
    InvalidField {
        /// The dotted path of the field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

/// Parses a webhook body into an [`Envelope`].
///
/// Required: a JSON object with a string `id` and `type`, an integer `created`, and an object
/// `data.object`; a top-level `object`, when present, must be `"event"`. Everything else is
/// optional and any shape is accepted: `request` as a string (before 2017), an object or null;
/// `data.previous_attributes` present, null or absent; `api_version`, `account`, `livemode`
/// and `pending_webhooks` absent.
pub fn parse(raw: &[u8]) -> Result<Envelope, EnvelopeError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::NotJson("the body is empty".to_owned()));
    }
    let value: Value =
        serde_json::from_slice(raw).map_err(|error| EnvelopeError::NotJson(error.to_string()))?;
    parse_value(value)
}

/// [`parse`] for a body that is already JSON, e.g. an event kept in the inbox or posted to a
/// flow preview.
pub fn parse_value(value: Value) -> Result<Envelope, EnvelopeError> {
    let Value::Object(mut event) = value else {
        return Err(EnvelopeError::NotAnObject);
    };

    match event.get("object") {
        None | Some(Value::Null) => {}
        Some(Value::String(marker)) if marker == "event" => {}
        Some(other) => {
            return Err(EnvelopeError::NotAnEvent {
                found: describe(other),
            });
        }
    }

    let id = key_string(&event, "id")?;
    let event_type = key_string(&event, "type")?;

    let mut data = match event.remove("data") {
        Some(Value::Object(data)) => data,
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField { field: "data" }),
        Some(_) => {
            return Err(EnvelopeError::InvalidField {
                field: "data",
                expected: "an object",
            });
        }
    };
    let object = match data.remove("object") {
        Some(object @ Value::Object(_)) => object,
        None | Some(Value::Null) => {
            return Err(EnvelopeError::MissingField {
                field: "data.object",
            });
        }
        Some(_) => {
            return Err(EnvelopeError::InvalidField {
                field: "data.object",
                expected: "an object",
            });
        }
    };

    let created = match event.get("created") {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingField { field: "created" }),
        Some(value) => value.as_i64().ok_or(EnvelopeError::InvalidField {
            field: "created",
            expected: "an integer number of Unix seconds",
        })?,
    };
    let livemode = match event.get("livemode") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(livemode)) => *livemode,
        Some(_) => {
            return Err(EnvelopeError::InvalidField {
                field: "livemode",
                expected: "true or false",
            });
        }
    };
    let api_version = optional_string(&event, "api_version")?;
    let account = optional_string(&event, "account")?;

    let object_id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    let object_type = object
        .get("object")
        .and_then(Value::as_str)
        .map(str::to_owned);

    Ok(Envelope {
        id,
        event_type,
        created,
        livemode,
        api_version,
        account,
        object,
        object_id,
        object_type,
    })
}

fn key_string(event: &Map<String, Value>, field: &'static str) -> Result<String, EnvelopeError> {
    match event.get(field) {
        None | Some(Value::Null) => Err(EnvelopeError::MissingField { field }),
        Some(Value::String(value)) if !value.is_empty() && value.len() <= MAX_KEY_LEN => {
            Ok(value.clone())
        }
        Some(_) => Err(EnvelopeError::InvalidField {
            field,
            expected: "a non-empty string of at most 255 bytes",
        }),
    }
}

fn optional_string(
    event: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match event.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(EnvelopeError::InvalidField {
            field,
            expected: "a string or null",
        }),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(marker) if marker.chars().count() <= 64 => format!("{marker:?}"),
        Value::String(_) => "a long string".to_owned(),
        Value::Object(_) => "a JSON object (is this an event's `data` member?)".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::*;

    fn modern() -> Value {
        json!({
            "id": "evt_1PgqTvEnvelope000001",
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1_722_000_000,
            "data": {"object": {"id": "ch_3PgqTvEnvelope00001", "object": "charge", "amount": 500}},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": "charge.succeeded"
        })
    }

    fn with(mut event: Value, pointer: &str, value: Option<Value>) -> Value {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        let parent = event
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {parent:?}"));
        match value {
            Some(value) => parent.insert(key.to_owned(), value),
            None => parent.remove(key),
        };
        event
    }

    fn ok(event: Value) -> Envelope {
        let raw = serde_json::to_vec(&event).unwrap_or_default();
        parse(&raw).unwrap_or_else(|error| panic!("{error}: {event}"))
    }

    fn err(event: Value) -> EnvelopeError {
        let raw = serde_json::to_vec(&event).unwrap_or_default();
        parse(&raw).expect_err("not an event")
    }

    #[test]
    fn modern_event() {
        let envelope = ok(modern());
        assert_eq!(envelope.id, "evt_1PgqTvEnvelope000001");
        assert_eq!(envelope.event_type, "charge.succeeded");
        assert_eq!(envelope.created, 1_722_000_000);
        assert!(!envelope.livemode);
        assert_eq!(envelope.api_version.as_deref(), Some("2024-06-20"));
        assert_eq!(envelope.account, None);
        assert_eq!(envelope.object["amount"], 500);
        assert_eq!(
            envelope.object_id.as_deref(),
            Some("ch_3PgqTvEnvelope00001")
        );
        assert_eq!(envelope.object_type.as_deref(), Some("charge"));
    }

    #[test]
    fn pretty_printed_body_with_stripes_empty_containers() {
        let raw = b"{\n  \"id\": \"evt_1\",\n  \"object\": \"event\",\n  \"created\": 1,\n  \
            \"data\": {\n    \"object\": {\n      \"object\": \"customer\",\n      \
            \"tax_ids\": [\n\n      ],\n      \"metadata\": {\n      }\n    }\n  },\n  \
            \"type\": \"customer.created\"\n}";
        let envelope = parse(raw).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(envelope.object_type.as_deref(), Some("customer"));
        assert_eq!(envelope.object_id, None);
    }

    #[test]
    fn legacy_event_with_string_request() {
        let event = json!({
            "id": "evt_16YKQiLegacyShape01",
            "object": "event",
            "api_version": "2016-03-07; orders_beta=v3",
            "created": 1_439_229_084,
            "data": {"object": {"id": "cus_6lsBLegacy01", "object": "customer"}},
            "livemode": false,
            "pending_webhooks": 0,
            "request": "req_6lsBLegacy01",
            "type": "customer.created"
        });
        let envelope = ok(event);
        assert_eq!(
            envelope.api_version.as_deref(),
            Some("2016-03-07; orders_beta=v3")
        );
        assert_eq!(envelope.object_type.as_deref(), Some("customer"));
    }

    #[test]
    fn request_in_every_shape() {
        for request in [
            json!("req_abc"),
            json!({"id": "req_abc", "idempotency_key": "6f1c0a8e-key"}),
            json!({"id": null, "idempotency_key": null}),
            Value::Null,
        ] {
            ok(with(modern(), "/request", Some(request)));
        }
        ok(with(modern(), "/request", None));
    }

    #[test]
    fn previous_attributes_present_null_or_absent() {
        let updated = with(
            modern(),
            "/data/previous_attributes",
            Some(json!({"status": "trialing", "metadata": {"plan": null}})),
        );
        let envelope = ok(updated);
        assert_eq!(envelope.object["amount"], 500);
        ok(with(
            modern(),
            "/data/previous_attributes",
            Some(Value::Null),
        ));
        ok(modern());
    }

    #[test]
    fn optional_fields_may_be_missing_or_null() {
        let event = with(modern(), "/api_version", None);
        let event = with(event, "/pending_webhooks", None);
        let event = with(event, "/livemode", None);
        let event = with(event, "/object", None);
        let event = with(event, "/request", None);
        let envelope = ok(event);
        assert_eq!(envelope.api_version, None);
        assert!(!envelope.livemode);

        let event = with(modern(), "/api_version", Some(Value::Null));
        let event = with(event, "/account", Some(Value::Null));
        let event = with(event, "/object", Some(Value::Null));
        let envelope = ok(event);
        assert_eq!(envelope.api_version, None);
        assert_eq!(envelope.account, None);
    }

    #[test]
    fn connect_event_names_its_account_and_livemode() {
        let event = with(modern(), "/account", Some(json!("acct_1PgqConnected01")));
        let event = with(event, "/livemode", Some(json!(true)));
        let envelope = ok(event);
        assert_eq!(envelope.account.as_deref(), Some("acct_1PgqConnected01"));
        assert!(envelope.livemode);
    }

    #[test]
    fn newer_api_versions_and_unknown_fields() {
        let event = with(modern(), "/api_version", Some(json!("2025-03-31.basil")));
        let event = with(event, "/context", Some(json!("ctx_future_field")));
        let event = with(event, "/data/object/object", Some(json!("invoice_payment")));
        let envelope = ok(event);
        assert_eq!(envelope.api_version.as_deref(), Some("2025-03-31.basil"));
        assert_eq!(envelope.object_type.as_deref(), Some("invoice_payment"));
    }

    #[test]
    fn object_without_id_or_type_marker() {
        let event = with(modern(), "/data/object", Some(json!({"amount": 1})));
        let envelope = ok(event);
        assert_eq!(envelope.object_id, None);
        assert_eq!(envelope.object_type, None);
        let event = with(
            modern(),
            "/data/object",
            Some(json!({"id": 7, "object": 8})),
        );
        let envelope = ok(event);
        assert_eq!(envelope.object_id, None);
        assert_eq!(envelope.object_type, None);
    }

    #[test]
    fn deleted_object_stub() {
        let event = with(
            modern(),
            "/data/object",
            Some(json!({"id": "cus_Deleted000001", "object": "customer", "deleted": true})),
        );
        let event = with(event, "/type", Some(json!("customer.deleted")));
        let envelope = ok(event);
        assert_eq!(envelope.object_id.as_deref(), Some("cus_Deleted000001"));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for raw in [
            &b""[..],
            b"  \n",
            b"not json",
            b"{\"id\":",
            b"{} trailing",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse(raw), Err(EnvelopeError::NotJson(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn refuses_json_that_is_not_an_object() {
        for raw in [
            &b"[]"[..],
            b"[{\"id\":\"evt_1\"}]",
            b"\"evt_1\"",
            b"42",
            b"null",
            b"true",
        ] {
            assert_eq!(parse(raw), Err(EnvelopeError::NotAnObject), "{raw:?}");
        }
    }

    #[test]
    fn refuses_other_objects() {
        let charge = json!({"id": "ch_1", "object": "charge", "amount": 1, "created": 1});
        assert_eq!(
            err(charge),
            EnvelopeError::NotAnEvent {
                found: "\"charge\"".to_owned()
            }
        );
        let thin = with(modern(), "/object", Some(json!("v2.core.event")));
        assert!(err(thin).to_string().contains("\"v2.core.event\""));
        let fragment =
            json!({"object": {"id": "ch_1", "object": "charge"}, "previous_attributes": {}});
        assert!(matches!(err(fragment), EnvelopeError::NotAnEvent { .. }));
        let numeric = with(modern(), "/object", Some(json!(1)));
        assert!(matches!(err(numeric), EnvelopeError::NotAnEvent { .. }));
    }

    #[test]
    fn refuses_missing_required_fields() {
        for (pointer, field) in [
            ("/id", "id"),
            ("/type", "type"),
            ("/data", "data"),
            ("/data/object", "data.object"),
            ("/created", "created"),
        ] {
            assert_eq!(
                err(with(modern(), pointer, None)),
                EnvelopeError::MissingField { field },
                "{pointer}"
            );
            assert_eq!(
                err(with(modern(), pointer, Some(Value::Null))),
                EnvelopeError::MissingField { field },
                "{pointer} null"
            );
        }
        assert_eq!(err(json!({})), EnvelopeError::MissingField { field: "id" });
    }

    #[test]
    fn refuses_wrongly_typed_fields() {
        for (pointer, value, field) in [
            ("/id", json!(123), "id"),
            ("/id", json!(""), "id"),
            ("/id", json!("e".repeat(256)), "id"),
            ("/type", json!(["charge.succeeded"]), "type"),
            ("/data", json!("charge"), "data"),
            ("/data/object", json!([]), "data.object"),
            ("/data/object", json!("ch_1"), "data.object"),
            ("/created", json!("1722000000"), "created"),
            ("/created", json!(1.5), "created"),
            ("/created", json!(u64::MAX), "created"),
            ("/livemode", json!("false"), "livemode"),
            ("/api_version", json!(20240620), "api_version"),
            ("/account", json!({"id": "acct_1"}), "account"),
        ] {
            match err(with(modern(), pointer, Some(value))) {
                EnvelopeError::InvalidField { field: got, .. } => assert_eq!(got, field),
                other => panic!("{pointer}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            err(with(modern(), "/data/object", None)).to_string(),
            "the body is not a Stripe event: it has no `data.object`"
        );
        assert_eq!(
            err(with(modern(), "/created", Some(json!("x")))).to_string(),
            "the body is not a Stripe event: `created` must be an integer number of Unix seconds"
        );
        assert!(
            parse(b"nope")
                .expect_err("not JSON")
                .to_string()
                .starts_with("the body is not a Stripe event: it is not valid JSON (")
        );
        let long = with(modern(), "/object", Some(json!("x".repeat(100))));
        assert!(!err(long).to_string().contains("xxxxxxxxxx"));
    }

    /// Conformance: every real envelope under `$TRIBUTARY_VENDOR_SPECS/stripe/events/` parses.
    /// pay-rails files are only an event's `data` member (`{object, previous_attributes?}`), not
    /// events: they are counted and must be refused as such.
    #[test]
    fn parses_every_vendor_event() {
        let Some(root) = crate::vendor_specs("parses_every_vendor_event") else {
            return;
        };
        let dir = Path::new(&root).join("stripe").join("events");
        let mut files = Vec::new();
        collect_json_files(&dir, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no JSON files under {}", dir.display());

        let (mut events, mut fragments) = (0, 0);
        for file in &files {
            let raw =
                std::fs::read(file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let value: Value = serde_json::from_slice(&raw)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let candidates = match value {
                Value::Array(items) => items,
                single => vec![single],
            };
            for candidate in candidates {
                if is_data_fragment(&candidate) {
                    assert!(
                        matches!(
                            parse_value(candidate),
                            Err(EnvelopeError::NotAnEvent { .. })
                        ),
                        "{}: a data fragment was taken for an event",
                        file.display()
                    );
                    fragments += 1;
                    continue;
                }
                let raw_id = candidate["id"].as_str().map(str::to_owned);
                let raw_type = candidate["type"].as_str().map(str::to_owned);
                let raw_object_id = candidate
                    .pointer("/data/object/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let envelope = parse_value(candidate)
                    .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
                assert_eq!(Some(envelope.id), raw_id, "{}", file.display());
                assert_eq!(Some(envelope.event_type), raw_type, "{}", file.display());
                assert_eq!(envelope.object_id, raw_object_id, "{}", file.display());
                events += 1;
            }
        }
        println!(
            "vendor events: {} files, {events} events parsed, {fragments} data fragments \
             refused as non-events",
            files.len()
        );
        assert!(events > 0, "no event envelopes under {}", dir.display());
    }

    fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
                .path();
            if path.is_dir() {
                collect_json_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
    }

    /// An event's `data` member on its own: only `object` (a JSON object) and optionally
    /// `previous_attributes`.
    fn is_data_fragment(value: &Value) -> bool {
        value.as_object().is_some_and(|map| {
            map.get("object").is_some_and(Value::is_object)
                && map
                    .keys()
                    .all(|key| key == "object" || key == "previous_attributes")
        })
    }
}
