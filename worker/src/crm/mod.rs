//! CRM adapters and the one classification of their errors that the retry policy reads.
//!
//! Every vendor implements [`Adapter`]; the CRM-write step kinds (`steps/crm_write.rs`) and
//! `http` steps call [`apply`] with one of the three [`Write`]s and never learn which vendor
//! they talk to. What each provider is (settings, OAuth, hosts) lives in [`providers`]. The
//! sandbox is the exception that proves the rule: its records live in Tributary's own
//! database, so the engine writes them inside its own transaction.

pub mod config;
mod error;
mod fields;
pub mod http_crm;
pub mod hubspot;
pub mod providers;
pub mod salesforce;
pub mod sandbox;
pub mod session;
pub mod zoho;

use entity::connections;
use serde_json::{Map, Value};

use crate::flow::Operation;
pub use error::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Write};
pub use fields::{as_text, fallback_fields, fallback_warning, known_ids, merged};
pub use session::{Adapter, Call, Connector, Exchanged, Reply, Request, Session, Trail};

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

/// Executes one write against the connection's vendor; says too which requests it sent
/// (for the delivery's history).
pub async fn apply(
    connector: &Connector,
    connection: &connections::Model,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
) -> (Result<CrmOutcome, CrmError>, Trail) {
    let opened = adapter_of(connection)
        .and_then(|adapter| Ok((adapter, Call::open(connector, connection, adapter)?)));
    let (adapter, mut call) = match opened {
        Ok(opened) => opened,
        Err(error) => return (Err(error), Trail::default()),
    };
    let result = adapter.apply(&mut call, kind, op, linked).await;
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
    let mut call = Call::open(connector, connection, adapter)?;
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
        let mut call = match Call::open(connector, connection, adapter) {
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
