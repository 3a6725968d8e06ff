//! The worker: runs tenants' flows for queued events against CRM adapters. The api depends on
//! this library for configuration, secrets, the flow engine (validation, preview) and the job
//! definitions; this library never depends on the api.

pub mod actions;
pub mod alerts;
pub mod crm;
pub mod db;
pub mod engine;
pub mod faults;
pub mod flow;
pub mod health;
pub mod inbox;
pub mod lease;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod queue;
pub mod retention;
pub mod runtime;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod stripe;
pub mod telemetry;
pub mod variables;
pub mod vendor_time;

use chrono::{DateTime, Utc};

/// A new time-ordered id (UUIDv7): ids sort by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now, at microsecond precision, the finest both databases keep.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
