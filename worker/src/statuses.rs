//! The statuses of events and deliveries: the words stored in the database and shown by the
//! API. A leaf module, so anything may import it without depending on the engine.

pub mod status {
    pub const RECEIVED: &str = "received";
    pub const QUEUED: &str = "queued";
    pub const PROCESSED: &str = "processed";
    pub const FAILED: &str = "failed";
    pub const IGNORED: &str = "ignored";
    /// Every event status, in lifecycle order.
    pub const ALL: &[&str] = &[RECEIVED, QUEUED, PROCESSED, FAILED, IGNORED];
}

pub mod delivery_status {
    pub const PENDING: &str = "pending";
    pub const SUCCEEDED: &str = "succeeded";
    pub const RETRYING: &str = "retrying";
    pub const WAITING: &str = "waiting";
    pub const DEAD: &str = "dead";
    pub const SKIPPED: &str = "skipped";
    /// Every delivery status.
    pub const ALL: &[&str] = &[PENDING, SUCCEEDED, RETRYING, WAITING, DEAD, SKIPPED];
}

/// The decisions a review item takes (see `crate::review`), as stored in `reviews.decision`
/// and an operation's `decided`.
pub mod decision {
    pub const PICK: &str = "pick";
    pub const CREATE: &str = "create";
    pub const MERGE: &str = "merge";
    pub const DISMISS: &str = "dismiss";
    pub const ALL: &[&str] = &[PICK, CREATE, MERGE, DISMISS];
}
