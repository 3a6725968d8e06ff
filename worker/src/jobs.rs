//! What a queue job carries, whatever the backend: the queue's name, the job, and its
//! priority.

use serde::{Deserialize, Serialize};

/// Queue names are explicit constants: a Rust type name would change when a type moves and
/// silently split producers from consumers.
pub const PROCESS_EVENT_QUEUE: &str = "process_event";

/// Process one stored Stripe event: run every enabled flow that matches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// Tributary's id of the event row.
    pub event_id: String,
    /// The event's priority (`events.priority`): the SQL queues take higher ones first.
    #[serde(default = "live")]
    pub priority: i16,
}

fn live() -> i16 {
    priority::LIVE
}

impl ProcessEvent {
    /// The job of a stored event, at the event's priority.
    pub fn of(event: &entity::events::Model) -> ProcessEvent {
        ProcessEvent {
            event_id: event.id.clone(),
            priority: event.priority,
        }
    }
}

/// How soon an event's job is taken. Live events go before backfilled and reconciled ones, and
/// payment failures before the rest of their kind, so a 50,000-event backfill never keeps a
/// failed payment waiting; every event is still taken in time (the backlog drains whenever no
/// live event is waiting).
pub mod priority {
    pub const BULK: i16 = 0;
    pub const BULK_FAILURE: i16 = 1;
    pub const LIVE: i16 = 2;
    pub const LIVE_FAILURE: i16 = 3;

    /// A payment failing or disputed: what a person needs to act on soonest.
    pub fn is_failure(event_type: &str) -> bool {
        matches!(
            event_type,
            "invoice.payment_failed"
                | "charge.failed"
                | "payment_intent.payment_failed"
                | "invoice.payment_action_required"
        ) || event_type.starts_with("charge.dispute.")
    }

    /// The priority of an event of `event_type`, live or from a backfill/reconciliation.
    pub fn of(event_type: &str, live: bool) -> i16 {
        match (live, is_failure(event_type)) {
            (true, true) => LIVE_FAILURE,
            (true, false) => LIVE,
            (false, true) => BULK_FAILURE,
            (false, false) => BULK,
        }
    }
}
