//! Bulk actions: retry every dead delivery, or replay every event, that matches a filter; and
//! dry runs too large to answer at once (`dry_runs`). The
//! request finds the matches (at most `TRIBUTARY_MAX_BULK_ITEMS`), stores them as the job's
//! items and answers 202 with their count; a background loop of the api then takes the job
//! with a lease (as backfills are taken: a crashed process's job is resumed when its lease
//! ends) and runs its items in batches, each through the very code of a single retry or
//! replay, as the caller who asked. An item that code refuses (a delivery being sent right now,
//! an event erased meanwhile) is counted as failed with the reason, never forced. A tenant has
//! one bulk job queued or running at a time.

use tributary_worker::statuses::delivery_status as ds;

mod dry_runs;
mod jobs;
mod runner;
mod types;

pub use dry_runs::{get, start as dry_run};
pub use jobs::{list, replay, retry};
pub use runner::{kick, run_forever};
pub use types::{
    BulkAcceptedOut, BulkFailureOut, BulkJobDetailOut, BulkJobKind, BulkJobOut, BulkJobStatus,
    BulkReplayIn, BulkRetryIn, BulkRetryStatus,
};

pub const KIND_RETRY: &str = "delivery_retry";
pub const KIND_REPLAY: &str = "event_replay";
pub const KIND_DRY_RUN: &str = "dry_run";

pub mod status {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const ALL: &[&str] = &[QUEUED, RUNNING, DONE, FAILED];
}

mod item_status {
    pub const PENDING: &str = "pending";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
}

/// The delivery statuses a bulk retry takes: dead letters, and deliveries waiting on their
/// connection (after fixing what they wait for).
pub const RETRY_STATUSES: &[&str] = &[ds::DEAD, ds::WAITING];

/// Items run between two saves of the job's progress (and renewals of its lease).
const BATCH: u64 = 25;
/// Times a job is taken up (a process stopped while running it) before it is given up.
const MAX_RUNS: i32 = 5;
/// Finished jobs a tenant keeps (with their items); older ones go when a new one is made.
const KEEP_FINISHED: u64 = 20;
/// Failed items shown on a job.
const SHOWN_FAILURES: u64 = 20;
