//! Zoho CRM's whole-request errors read into a kind and a message, and the path segments
//! requests are built of.

use std::time::Duration;

use serde_json::Value;

use crate::crm::session::{Reply, kind_of_status};
use crate::crm::{CrmError, CrmOutcome, ErrorKind};

/// A whole-request error (`{"code","details","message","status"}`).
pub(crate) fn classify(reply: &Reply) -> CrmError {
    let body = reply.json().unwrap_or(Value::Null);
    let entry = body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .unwrap_or(&body);
    let code = entry.get("code").and_then(Value::as_str).unwrap_or("");
    let message = entry.get("message").and_then(Value::as_str).unwrap_or("");
    let mut kind = kind_of_status(reply.status);
    match code {
        "INVALID_TOKEN" | "AUTHENTICATION_FAILURE" => kind = ErrorKind::Auth,
        "TOO_MANY_REQUESTS" | "API_LIMIT_EXCEEDED" => kind = ErrorKind::RateLimited,
        "INVALID_MODULE" | "NO_PERMISSION" | "OAUTH_SCOPE_MISMATCH" => kind = ErrorKind::Permanent,
        _ => {}
    }
    if reply.status == 403 && kind != ErrorKind::RateLimited {
        kind = ErrorKind::Permanent;
    }
    let field = entry
        .pointer("/details/api_name")
        .and_then(Value::as_str)
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    let text = if code.is_empty() && message.is_empty() {
        format!("Zoho CRM answered {}", reply.status)
    } else {
        format!("Zoho CRM {} {code}: {message}{field}", reply.status)
    };
    let mut error = reply.error(kind, text);
    if kind == ErrorKind::RateLimited {
        error.retry_after = reply.retry_after().or(Some(Duration::from_secs(60)));
    }
    error
}

/// `text` as one URL path segment.
pub(crate) fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The outcome of one record in a `data` answer.
pub(super) enum RecordResult {
    Success {
        id: String,
        body: Value,
    },
    Duplicate {
        id: Option<String>,
        error: CrmError,
    },
    Refused {
        field: Option<String>,
        error: CrmError,
    },
}

/// The first record's outcome in a `data` answer; a whole-request error when there is none.
pub(super) fn record_result(reply: &Reply) -> RecordResult {
    let body = reply.json().unwrap_or(Value::Null);
    let Some(entry) = body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .cloned()
    else {
        return RecordResult::Refused {
            field: None,
            error: classify(reply),
        };
    };
    let code = entry.get("code").and_then(Value::as_str).unwrap_or("");
    if code == "SUCCESS"
        && let Some(id) = entry.pointer("/details/id").and_then(Value::as_str)
    {
        return RecordResult::Success {
            id: id.to_string(),
            body: entry.clone(),
        };
    }
    let field = entry
        .pointer("/details/api_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = entry.get("message").and_then(Value::as_str).unwrap_or("");
    let kind = match code {
        "INVALID_TOKEN" => ErrorKind::Auth,
        "SUCCESS" => ErrorKind::Transient,
        _ if reply.status >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    };
    let shown = format!(
        "Zoho CRM refused the record: {code}: {message}{}",
        field
            .as_deref()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default()
    );
    let error = reply.error(kind, shown);
    if code == "DUPLICATE_DATA" {
        let id = entry
            .pointer("/details/duplicate_record/id")
            .or_else(|| entry.pointer("/details/id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return RecordResult::Duplicate { id, error };
    }
    RecordResult::Refused { field, error }
}

/// One write attempt with a given set of fields.
pub(super) enum Written {
    Done(CrmOutcome),
    /// A field was refused; the write can be retried without it.
    Refused(Option<String>, CrmError),
}

/// A write done.
pub(super) fn done(id: String, body: Value, warning: Option<String>) -> Written {
    Written::Done(CrmOutcome {
        record_id: id,
        warnings: warning.into_iter().collect(),
        response: Some(body),
    })
}
