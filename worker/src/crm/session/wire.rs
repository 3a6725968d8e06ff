//! Requests to a vendor and its replies, and the helpers adapters read replies with.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::crm::config::Credentials;
use crate::crm::error::{CrmError, ErrorKind};

/// Where a text body takes the session's access token (escaped for XML), for APIs that want
/// it in the body (Salesforce's SOAP `SessionHeader`); filled in as the request is sent, so it
/// is never in anything kept.
pub const SESSION_SLOT: &str = "\u{1}session\u{1}";

/// One request to the vendor.
pub struct Request {
    pub method: Method,
    /// Under the API base (`/crm/v3/…`), or an absolute URL.
    pub path: String,
    /// `path` is under the API base's host rather than the API base itself.
    pub at_host: bool,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// A body other than JSON: its content type and text (see [`SESSION_SLOT`]).
    pub text: Option<(String, String)>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            at_host: false,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            text: None,
        }
    }

    /// The path is under the API base's host (`/services/Soap/u/60.0`).
    pub fn at_host(mut self) -> Self {
        self.at_host = true;
        self
    }

    /// An XML body; [`SESSION_SLOT`] in it becomes the session's access token.
    pub fn xml(mut self, body: String) -> Self {
        self.text = Some(("text/xml; charset=UTF-8".into(), body));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// The vendor's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&Utc) - crate::now()).to_std().ok()
    }

    /// The body, shortened for storage and display.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }

    /// An error of `kind` carrying this reply's status and body.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> CrmError {
        CrmError {
            kind,
            message: message.into(),
            vendor_status: Some(self.status),
            vendor_body: Some(self.excerpt()),
            retry_after: None,
            pause: None,
            duplicates: Vec::new(),
        }
    }
}

/// A text field of a token endpoint's answer, which must be there.
pub fn token_field(body: &Value, name: &str, vendor: &str) -> Result<String, CrmError> {
    body.get(name)
        .and_then(Value::as_str)
        .map(|text| text.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            CrmError::new(
                ErrorKind::Transient,
                format!("{vendor}'s token answer has no {name}"),
            )
        })
}

/// The credentials with the refresh token a token answer rotated to, if it rotated it
/// (vendors that rotate invalidate the old one, so it must be kept at once).
pub fn rotated(credentials: &Credentials, body: &Value) -> Option<Credentials> {
    let new = body.get("refresh_token").and_then(Value::as_str)?;
    match credentials {
        Credentials::RefreshToken {
            client_id,
            client_secret,
            refresh_token,
            ..
        } if new != refresh_token && !new.is_empty() => Some(Credentials::RefreshToken {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            refresh_token: new.to_string(),
            access_token: None,
            expires_at: None,
        }),
        _ => None,
    }
}

/// At most 4 KiB of a vendor body.
pub fn excerpt(body: &str) -> String {
    const LIMIT: usize = 4096;
    if body.len() <= LIMIT {
        return body.to_string();
    }
    let mut end = LIMIT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// The classification every adapter starts from; vendors refine it from their error bodies.
pub fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Auth,
        404 | 410 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        400 | 405 | 409 | 413 | 415 | 422 => ErrorKind::Invalid,
        408 | 425 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// A URL without its query string (which may carry values a log should not keep).
pub fn redact_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}
