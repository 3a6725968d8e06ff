//! What a CRM call can end in: the classification of failures the retry policy reads, and a
//! successful write's outcome. A leaf: everything that talks to a vendor may import it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a failed CRM call is handled, decided once by the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Credentials refused: refresh once, then the connection needs re-authorization.
    Auth,
    /// Wait as the vendor says, then retry.
    RateLimited,
    /// The vendor refused the data: fall back or dead-letter with its message.
    Invalid,
    /// The record is not there: fall back to a lookup, then dead-letter.
    NotFound,
    /// Network trouble or a 5xx: retry with backoff.
    Transient,
    /// Anything that will never succeed as is: dead-letter.
    Permanent,
}

impl ErrorKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Auth,
        ErrorKind::RateLimited,
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Transient,
        ErrorKind::Permanent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// Whether waiting and trying again can help.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Transient)
    }
}

/// A failed CRM call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CrmError {
    pub kind: ErrorKind,
    pub message: String,
    pub vendor_status: Option<u16>,
    pub vendor_body: Option<String>,
    /// The vendor's `Retry-After`: no retry before it, on any delivery of the connection.
    pub retry_after: Option<Duration>,
    /// Pause the whole connection this long (a daily API limit reached).
    pub pause: Option<Duration>,
    /// The records the vendor's duplicate rules say the write would duplicate (Salesforce's
    /// `DUPLICATES_DETECTED`), each its `id` and the fields the vendor showed.
    pub duplicates: Vec<serde_json::Map<String, Value>>,
}

impl CrmError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CrmError {
            kind,
            message: message.into(),
            vendor_status: None,
            vendor_body: None,
            retry_after: None,
            pause: None,
            duplicates: Vec::new(),
        }
    }
}

/// The writes an adapter performs. Steps of other kinds never reach an adapter: their kind
/// runs them (see `crate::steps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Find by the operation's `match` (or the linked record), update it, else create it.
    Upsert,
    /// Always make a new record.
    Create,
    /// Write an existing record found by the link, `record_id` or `match`.
    Update,
}

/// A successful write.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmOutcome {
    pub record_id: String,
    pub warnings: Vec<String>,
    /// The vendor's JSON answer, offered to later steps as `steps.<id>.response`.
    pub response: Option<Value>,
}

impl CrmOutcome {
    pub fn new(record_id: impl Into<String>) -> Self {
        CrmOutcome {
            record_id: record_id.into(),
            warnings: Vec::new(),
            response: None,
        }
    }
}

/// A boxed future, so adapters can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
