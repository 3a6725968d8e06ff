//! Job definitions and queue names shared by the api (producer) and the worker (consumer).

use serde::{Deserialize, Serialize};

/// Queue names are explicit constants: a Rust type name would change when a type moves and
/// silently split producers from consumers.
pub const PROCESS_EVENT_QUEUE: &str = "process_event";

/// Process one stored Stripe event: run every enabled flow that matches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// Tributary's id of the event row.
    pub event_id: String,
}
