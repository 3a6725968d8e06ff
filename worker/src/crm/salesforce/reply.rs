//! Salesforce's answers: the request sender that records the org's API usage, and the error
//! array read into one message and a kind.

use std::time::Duration;

use serde_json::{Value, json};

use crate::crm::limits;
use crate::crm::session::{Call, Reply, Request, kind_of_status};
use crate::crm::{CrmError, CrmOutcome, ErrorKind};

/// Reads Salesforce's error array into one message and a kind.
pub(crate) fn classify(reply: &Reply) -> CrmError {
    let body = reply.json().unwrap_or(Value::Null);
    let errors: Vec<Value> = match &body {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![body.clone()],
        _ => Vec::new(),
    };
    let codes: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            e.get("errorCode")
                .or_else(|| e.get("statusCode"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let described: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e
                .get("errorCode")
                .or_else(|| e.get("statusCode"))
                .and_then(Value::as_str)
                .unwrap_or("ERROR");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("");
            let fields: Vec<&str> = e
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if fields.is_empty() {
                format!("{code}: {message}")
            } else {
                format!("{code}: {message} (fields: {})", fields.join(", "))
            }
        })
        .collect();
    let mut kind = kind_of_status(reply.status);
    if reply.status == 403 {
        kind = ErrorKind::Permanent;
    }
    if reply.status == 300 {
        kind = ErrorKind::Permanent;
    }
    let limit = codes.iter().any(|c| c == "REQUEST_LIMIT_EXCEEDED");
    if limit {
        kind = ErrorKind::RateLimited;
    }
    if codes.iter().any(|c| c == "INVALID_SESSION_ID") {
        kind = ErrorKind::Auth;
    }
    if codes
        .iter()
        .any(|c| c == "UNABLE_TO_LOCK_ROW" || c == "SERVER_UNAVAILABLE")
    {
        kind = ErrorKind::Transient;
    }
    let message = if described.is_empty() {
        format!("Salesforce answered {}", reply.status)
    } else {
        format!("Salesforce {}: {}", reply.status, described.join("; "))
    };
    let mut error = reply.error(kind, message);
    error.duplicates = duplicates(&errors);
    if limit && limits::concurrency_refused("salesforce", reply.status, &reply.body) {
        // Too many long-running requests at once, ours or other apps': new ones are taken
        // again as soon as some end. Every process holds off (see `note_limits`); no pause.
        error.retry_after = Some(limits::CONCURRENCY_HOLD);
    } else if limit {
        error.pause = Some(Duration::from_secs(3600));
        error.retry_after = Some(Duration::from_secs(3600));
    } else if kind == ErrorKind::RateLimited {
        error.retry_after = reply.retry_after().or(Some(Duration::from_secs(5)));
    }
    error
}

/// The records a `DUPLICATES_DETECTED` refusal names (`duplicateResult.matchResults[]
/// .matchRecords[].record`): each its `id` and the fields Salesforce showed (all of them when
/// the request asked `includeRecordDetails=true`).
fn duplicates(errors: &[Value]) -> Vec<serde_json::Map<String, Value>> {
    errors
        .iter()
        .filter(|e| e.get("errorCode").and_then(Value::as_str) == Some("DUPLICATES_DETECTED"))
        .filter_map(|e| {
            e.pointer("/duplicateResult/matchResults")
                .and_then(Value::as_array)
        })
        .flatten()
        .filter_map(|m| m.get("matchRecords").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("record").and_then(Value::as_object))
        .filter_map(|record| {
            let id = record.get("Id").and_then(Value::as_str)?;
            let mut shown = serde_json::Map::new();
            shown.insert("id".into(), Value::String(id.to_string()));
            for (name, value) in record {
                if name != "Id" && name != "attributes" {
                    shown.insert(name.clone(), value.clone());
                }
            }
            Some(shown)
        })
        .collect()
}

/// The `Sforce-Duplicate-Rule-Header` of a write whose step reviews doubtful matches: the
/// duplicates' fields in the refusal, and a save despite an alerting rule once a person
/// decided to create.
pub(super) fn duplicate_rule_header(op: &crate::flow::Operation) -> Option<String> {
    op.review.as_ref()?;
    let allow = op.decided.as_deref() == Some(crate::statuses::decision::CREATE);
    Some(format!(
        "allowSave={allow}; includeRecordDetails=true; runAsCurrentUser=false"
    ))
}

/// Sends a request of the connection's call, recording the org's API usage
/// (`Sforce-Limit-Info`) on the connection.
pub(crate) async fn send(call: &mut Call<'_>, request: Request) -> Result<Reply, CrmError> {
    let reply = call.send(&request).await?;
    if let Some(usage) = reply.header("sforce-limit-info") {
        call.info
            .insert("api_usage".into(), Value::String(usage.to_string()));
    }
    Ok(reply)
}

/// A path segment, percent-encoded (spaces as `%20`).
pub(super) fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// One write attempt: done, or Salesforce's refusal to read.
pub(super) enum Written {
    Done(CrmOutcome),
    Refused(Reply),
}

/// A write done, its record `id` and Salesforce's answer (the id alone when it sent none).
pub(super) fn written(id: &str, body: Value) -> Written {
    let response = if body.is_null() {
        json!({ "id": id })
    } else {
        body
    };
    Written::Done(CrmOutcome {
        record_id: id.to_string(),
        warnings: Vec::new(),
        response: Some(response),
    })
}

/// The refusal of a match that found several records.
pub(super) fn several(object: &str, ids: &[String], what: &str) -> CrmError {
    CrmError::new(
        ErrorKind::Permanent,
        format!(
            "several Salesforce {object} records match {what}: {}; make the match unique or name the record",
            ids.join(", ")
        ),
    )
}
