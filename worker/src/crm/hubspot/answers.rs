//! HubSpot's answers as Tributary reads them: errors classified, refused properties named,
//! rate-limit usage kept, and the paths requests go to.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::crm::session::{Call, Reply, Request, kind_of_status};
use crate::crm::{CrmError, CrmOutcome, ErrorKind, as_text};

/// HubSpot's error body, read into a message and a kind.
pub(super) fn classify(reply: &Reply) -> CrmError {
    let body = reply.json().unwrap_or(Value::Null);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let category = body
        .get("category")
        .or_else(|| body.get("errorType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut kind = kind_of_status(reply.status);
    if reply.status == 403 {
        kind = ErrorKind::Permanent;
    }
    // A 403 for a missing scope names the scopes required in its details.
    let scopes: Vec<&str> = body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/context/requiredGranularScopes"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let message = if scopes.is_empty() {
        message
    } else {
        format!("{message} (required scope: {})", scopes.join(", "))
    };
    let shown = match (category.is_empty(), message.is_empty()) {
        (false, false) => format!("HubSpot {} {category}: {message}", reply.status),
        (true, false) => format!("HubSpot {}: {message}", reply.status),
        _ => format!("HubSpot answered {}", reply.status),
    };
    let mut error = reply.error(kind, shown);
    if kind == ErrorKind::RateLimited {
        let daily = body.get("policyName").and_then(Value::as_str) == Some("DAILY")
            || reply.header("x-hubspot-ratelimit-daily-remaining") == Some("0");
        if daily {
            error.pause = Some(Duration::from_secs(3600));
        }
        error.retry_after = reply.retry_after().or_else(|| {
            let remaining = reply.header("x-hubspot-ratelimit-remaining")?;
            let interval = reply.header("x-hubspot-ratelimit-interval-milliseconds")?;
            (remaining.trim() == "0")
                .then(|| interval.trim().parse::<u64>().ok())
                .flatten()
                .map(Duration::from_millis)
        });
        if error.retry_after.is_none() {
            error.retry_after = Some(Duration::from_secs(1));
        }
    }
    error
}

/// The properties HubSpot refused as non-existent, from either error shape it uses.
pub(super) fn unknown_properties(reply: &Reply) -> Vec<String> {
    reply
        .json()
        .map(|body| unknown_in(&body))
        .unwrap_or_default()
}

/// The properties an error object refuses as non-existent: in its `errors` details
/// (`code` and `context.propertyName`, as a batch's multi-status lists them) or as JSON inside
/// its `message` (as a single-object write answers).
pub(super) fn unknown_in(body: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for error in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("");
        if code == "PROPERTY_DOESNT_EXIST" {
            for name in error
                .pointer("/context/propertyName")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                names.push(name.to_string());
            }
        }
    }
    // "Property values were not valid: [{...,"error":"PROPERTY_DOESNT_EXIST","name":"x"}]"
    if let Some(message) = body.get("message").and_then(Value::as_str)
        && let Some(start) = message.find('[')
        && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&message[start..])
    {
        for item in items {
            if item.get("error").and_then(Value::as_str) == Some("PROPERTY_DOESNT_EXIST")
                && let Some(name) = item.get("name").and_then(Value::as_str)
            {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

pub(super) fn as_properties(fields: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(as_text(v))))
        .collect()
}

pub(super) fn object_path(object: &str) -> String {
    format!("/crm/v3/objects/{}", urlencode(object))
}

pub(super) fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// Records the rate-limit headers HubSpot sends with every answer.
pub(super) fn note_usage(call: &mut Call<'_>, reply: &Reply) {
    let mut usage = Map::new();
    for (header, key) in [
        ("x-hubspot-ratelimit-daily", "daily_max"),
        ("x-hubspot-ratelimit-daily-remaining", "daily_remaining"),
        ("x-hubspot-ratelimit-max", "interval_max"),
        ("x-hubspot-ratelimit-remaining", "interval_remaining"),
    ] {
        if let Some(value) = reply
            .header(header)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            usage.insert(key.into(), json!(value));
        }
    }
    if !usage.is_empty() {
        call.info.insert("api_usage".into(), Value::Object(usage));
    }
}

pub(super) async fn send(call: &mut Call<'_>, request: Request) -> Result<Reply, CrmError> {
    let reply = call.send(&request).await?;
    note_usage(call, &reply);
    Ok(reply)
}

pub(super) fn id_of(body: &Value) -> Option<String> {
    match body.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One write attempt with a given set of properties.
pub(super) enum Written {
    Done(CrmOutcome),
    /// HubSpot refused these properties as unknown.
    Unknown(Vec<String>, CrmError),
}

pub(super) fn refused(reply: Reply) -> Written {
    let unknown = unknown_properties(&reply);
    Written::Unknown(unknown, classify(&reply))
}

pub(super) fn done(body: Value) -> Result<Written, CrmError> {
    let id = id_of(&body).ok_or_else(|| {
        CrmError::new(ErrorKind::Transient, "HubSpot's answer named no record id")
    })?;
    Ok(Written::Done(CrmOutcome {
        record_id: id,
        warnings: Vec::new(),
        response: Some(body),
    }))
}

/// A search result as later steps read it: its `id` and its properties beside it.
pub(super) fn found_record(result: &Value) -> Option<Map<String, Value>> {
    let mut record = Map::new();
    record.insert("id".into(), Value::String(id_of(result)?));
    if let Some(properties) = result.get("properties").and_then(Value::as_object) {
        for (name, value) in properties.iter().filter(|(name, _)| *name != "id") {
            record.insert(name.clone(), value.clone());
        }
    }
    Some(record)
}
