//! CRM adapters and the one classification of their errors that the retry policy reads.

pub mod sandbox;

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
        [
            ErrorKind::Auth,
            ErrorKind::RateLimited,
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Transient,
            ErrorKind::Permanent,
        ]
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
    /// The vendor's `Retry-After`: no retry before it.
    pub retry_after: Option<Duration>,
}

impl CrmError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CrmError {
            kind,
            message: message.into(),
            vendor_status: None,
            vendor_body: None,
            retry_after: None,
        }
    }
}

/// A successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmOutcome {
    pub record_id: String,
    pub warnings: Vec<String>,
}
