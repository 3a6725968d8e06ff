//! CRM adapters and the one classification of their errors that the retry policy reads.
//!
//! Every vendor implements [`Adapter`]; the engine calls [`apply`] and never learns which
//! vendor it talks to. The sandbox is the exception that proves the rule: its records live in
//! Tributary's own database, so the engine writes them inside its own transaction.

pub mod config;
pub mod http_crm;
pub mod hubspot;
pub mod salesforce;
pub mod sandbox;
pub mod session;
pub mod zoho;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use entity::connections;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::flow::Operation;
pub use session::{Call, Connector, Exchanged, Reply, Request, Session, Trail};

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
        }
    }
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

/// One CRM vendor's API.
pub trait Adapter: Sync {
    /// Exchanges the connection's credentials for a session (refresh token, JWT assertion).
    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>>;

    /// The URL relative request paths are joined to.
    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError>;

    /// Executes one rendered step. `linked` is the record this Stripe object was written to
    /// before, which wins over a lookup by `match`.
    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>>;

    /// One cheap authenticated call; says what it saw.
    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>>;

    /// Settings templates see besides the connection's own (e.g. a discovered won stage).
    fn template_settings<'a, 'c: 'a>(
        &'a self,
        _call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, CrmError>> {
        Box::pin(async { Ok(Map::new()) })
    }
}

/// The adapter of a provider that talks to a vendor (not the sandbox).
pub fn adapter(provider: &str) -> Option<&'static dyn Adapter> {
    match provider {
        "hubspot" => Some(&hubspot::HubSpot),
        "salesforce" => Some(&salesforce::Salesforce),
        "zoho" => Some(&zoho::Zoho),
        "http" => Some(&http_crm::HttpCrm),
        _ => None,
    }
}

fn adapter_of(connection: &connections::Model) -> Result<&'static dyn Adapter, CrmError> {
    adapter(&connection.provider).ok_or_else(|| {
        CrmError::new(
            ErrorKind::Permanent,
            format!("the {} provider has no vendor adapter", connection.provider),
        )
    })
}

pub(crate) async fn exchange(call: &Call<'_>) -> Result<Exchanged, CrmError> {
    adapter_of(&call.connection)?.exchange(call).await
}

pub(crate) fn api_base(call: &Call<'_>, session: &Session) -> Result<String, CrmError> {
    adapter_of(&call.connection)?.api_base(call, session)
}

/// Executes one operation against the connection's vendor; says too which requests it sent
/// (for the delivery's history).
pub async fn apply(
    connector: &Connector,
    connection: &connections::Model,
    op: &Operation,
    linked: Option<&str>,
) -> (Result<CrmOutcome, CrmError>, Trail) {
    if connection.provider == "smtp" {
        let result = crate::actions::email::send(connector, connection, op).await;
        return (result, Trail::default());
    }
    let opened = adapter_of(connection)
        .and_then(|adapter| Ok((adapter, Call::open(connector, connection)?)));
    let (adapter, mut call) = match opened {
        Ok(opened) => opened,
        Err(error) => return (Err(error), Trail::default()),
    };
    let result = adapter.apply(&mut call, op, linked).await;
    call.finish().await;
    (result, std::mem::take(&mut call.trail))
}

/// One cheap authenticated call to the connection's vendor.
pub async fn check(
    connector: &Connector,
    connection: &connections::Model,
) -> Result<String, CrmError> {
    if connection.provider == "smtp" {
        return crate::actions::email::check(connector, connection).await;
    }
    let adapter = adapter_of(connection)?;
    let mut call = Call::open(connector, connection)?;
    let result = adapter.check(&mut call).await;
    call.finish().await;
    result
}

/// The settings templates see: the connection's own, plus what the adapter discovers; says
/// too which requests discovering them sent.
pub async fn template_settings(
    connector: &Connector,
    connection: &connections::Model,
) -> (Result<Value, CrmError>, Trail) {
    let mut settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let mut trail = Trail::default();
    if let Some(adapter) = adapter(&connection.provider) {
        let mut call = match Call::open(connector, connection) {
            Ok(call) => call,
            Err(error) => return (Err(error), trail),
        };
        let discovered = adapter.template_settings(&mut call).await;
        call.finish().await;
        trail = std::mem::take(&mut call.trail);
        match discovered {
            Ok(discovered) => {
                for (key, value) in discovered {
                    settings.entry(key).or_insert(value);
                }
            }
            Err(error) => return (Err(error), trail),
        }
    }
    (Ok(Value::Object(settings)), trail)
}

/// Property values as text, the way HubSpot wants them: numbers without exponent, booleans as
/// `true`/`false`, nested values as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Records to write before looking anything up: the one this Stripe object was written to
/// before (upsert and update), then the step's `record_id` (update).
pub fn known_ids<'a>(op: &'a Operation, linked: Option<&'a str>) -> Vec<&'a str> {
    let mut known = Vec::new();
    match op.action {
        crate::flow::Action::Create
        | crate::flow::Action::StripeRetrieve
        | crate::flow::Action::Email
        | crate::flow::Action::Http
        | crate::flow::Action::Assert => {}
        crate::flow::Action::Upsert => known.extend(linked),
        crate::flow::Action::Update => {
            known.extend(linked);
            known.extend(op.record_id.as_deref());
        }
    }
    known.dedup();
    known
}

/// What a CRM adapter answers if a step that is not a CRM write (`stripe.retrieve`, `email`,
/// `http`, `assert`) ever reached it.
pub fn not_a_write(action: crate::flow::Action) -> CrmError {
    CrmError::new(
        ErrorKind::Permanent,
        format!("{action} steps do not write to this CRM"),
    )
}

/// `match` and `fields` in one map; `fields` win.
pub fn merged(op: &Operation) -> Map<String, Value> {
    let mut all = op.match_fields.clone();
    all.extend(op.fields.clone());
    all
}

/// The warning a fallback write leaves.
pub fn fallback_warning(vendor: &str, refused: &[String], kept: &Map<String, Value>) -> String {
    let kept: Vec<&str> = kept.keys().map(String::as_str).collect();
    format!(
        "{vendor} refused the properties {}; wrote only {}",
        refused.join(", "),
        kept.join(", ")
    )
}

/// The fields kept by a fallback write: `match` plus the step's `fallback_fields`.
pub fn fallback_fields(op: &Operation, all: &Map<String, Value>) -> Map<String, Value> {
    all.iter()
        .filter(|(key, _)| {
            op.match_fields.contains_key(*key) || op.fallback_fields.iter().any(|f| f == *key)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
