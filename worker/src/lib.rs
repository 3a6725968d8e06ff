//! The worker: runs tenants' flows for queued events against CRM adapters. The api depends on
//! this library for configuration, secrets, the flow engine (validation, preview) and the job
//! definitions; this library never depends on the api.

pub mod actions;
pub mod alerts;
pub mod anomaly;
pub mod budget;
pub mod consumer;
pub mod crm;
pub mod db;
pub mod engine;
pub mod environments;
pub mod faults;
pub mod flow;
pub mod gate;
pub mod health;
pub mod history;
pub mod inbound;
pub mod inbox;
pub mod jobs;
pub mod lanes;
pub mod lease;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod queue;
pub mod retention;
pub mod review;
pub mod runtime;
pub mod schema;
pub mod sealed;
pub mod secrets;
pub mod settings;
pub mod statuses;
pub mod steps;
pub mod stripe;
pub mod telemetry;
pub mod variables;
pub mod vendor_time;

/// The vendors' specs and real payloads for conformance tests: `$TRIBUTARY_VENDOR_SPECS`.
/// Unset, a test is skipped and says so on stderr past the harness's capture (one line naming
/// the test); with `CI=true` it fails instead, naming the variable.
#[cfg(test)]
pub(crate) fn vendor_specs(test: &str) -> Option<std::path::PathBuf> {
    use std::io::Write;
    match std::env::var_os("TRIBUTARY_VENDOR_SPECS").filter(|v| !v.is_empty()) {
        // Said on purpose (`.ci/run` when no vendor specs lie beside the checkout): a skip.
        Some(root) if root == "none" => {
            let line = format!("SKIPPED {test}: TRIBUTARY_VENDOR_SPECS=none\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
        Some(root) => Some(root.into()),
        None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CI=true but TRIBUTARY_VENDOR_SPECS is not set: {test} cannot run")
        }
        None => {
            let line = format!(
                "SKIPPED {test}: set TRIBUTARY_VENDOR_SPECS to the vendor-specs directory\n"
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

use chrono::{DateTime, Utc};

pub use environments::PRODUCTION;

/// A new time-ordered id (UUIDv7): ids sort by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now, at microsecond precision, the finest both databases keep.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
