//! Salesforce's answers: the request sender that records the org's API usage, and the error
//! array read into one message and a kind.

use std::time::Duration;

use serde_json::{Value, json};

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
    if limit {
        error.pause = Some(Duration::from_secs(3600));
        error.retry_after = Some(Duration::from_secs(3600));
    } else if kind == ErrorKind::RateLimited {
        error.retry_after = reply.retry_after().or(Some(Duration::from_secs(5)));
    }
    error
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
