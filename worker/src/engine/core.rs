//! The engine and what its stages share: the `Engine` itself, the outcome of a step, how a
//! failed attempt is recorded, and the small helpers every stage uses. Its imports are the
//! stages' prelude (`use super::core::*`), so each stage file starts from the same names.

pub(super) use crate::sealed;
pub(super) use std::collections::{BTreeMap, HashMap};
pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

pub(super) use anyhow::Context;
pub(super) use chrono::{DateTime, Utc};
pub(super) use entity::{TenantOwned, connections, deliveries, events, flows, record_links};
pub(super) use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
};
pub(super) use serde_json::Value;

pub(super) use crate::crm::{self, CrmError, ErrorKind, Trail};
pub(super) use crate::flow::{self, Action, FlowSpec, Operation, RenderContext};
pub(super) use crate::history::{self, Attempt, outcome};
pub(super) use crate::queue::{ProcessEvent, Queue};
pub(super) use crate::settings::RetrySettings;

pub(super) use super::fairness::{Fairness, note_current_delivery};
pub(super) use crate::statuses::{delivery_status as ds, status};

/// Exponential backoff with full jitter, never sooner than the vendor's `Retry-After`.
pub fn retry_delay(retry: &RetrySettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = retry
        .base_delay
        .saturating_mul(1u32 << exponent)
        .min(retry.max_delay);
    let random = u64::from_le_bytes(crate::secrets::random_bytes::<8>());
    let jittered = Duration::from_nanos(random % (ceiling.as_nanos().max(1) as u64));
    jittered.max(retry_after.unwrap_or_default())
}

pub struct Engine {
    pub db: DatabaseConnection,
    pub queue: Queue,
    pub retry: RetrySettings,
    /// Talks to the vendors.
    pub crm: Arc<crm::Connector>,
    /// Talks to Stripe (`stripe.retrieve` steps, refetch-on-apply).
    pub stripe: Arc<crate::stripe::StripeApi>,
    /// Each tenant's share of this process's job slots.
    pub fairness: Arc<Fairness>,
    /// Test-only fault hooks (off in production).
    pub faults: crate::faults::Faults,
}

/// Stripe objects fetched during one run of one event, by object, id and expansions, so a
/// flow (or several) asking for the same object again is served without another call.
pub(super) type Fetched = HashMap<String, Value>;

/// What one run of one event shares between its flows.
pub(super) struct EventRun<'a> {
    pub(super) now: DateTime<Utc>,
    pub(super) fetched: Fetched,
    /// The event's deliveries as they were when the run started.
    pub(super) existing: &'a [deliveries::Model],
}

/// Whether a stored flow calls `password()` or `token(…)` anywhere.
pub(super) fn uses_generated_secrets(spec: &str) -> bool {
    spec.contains("password(") || spec.contains("token(")
}

/// Rate-limited attempts after which a delivery is dead-lettered anyway.
pub(super) const MAX_THROTTLED_ATTEMPTS: i32 = 50;

/// Caps a failure's `Retry-After` and pause at [`crate::vendor_time::MAX_HOLD`]; returns the
/// warning to keep on the delivery when either was cut.
pub(super) fn clamp_waits(error: &mut CrmError) -> Option<String> {
    use crate::vendor_time::clamp_hold;
    let mut warning = None;
    if let Some(wait) = error.retry_after {
        let (wait, cut) = clamp_hold(wait, "Retry-After");
        error.retry_after = Some(wait);
        warning = warning.or(cut);
    }
    if let Some(pause) = error.pause {
        let (pause, cut) = clamp_hold(pause, "pause");
        error.pause = Some(pause);
        warning = warning.or(cut);
    }
    warning
}

/// Delivery statuses that still have work to do.
pub(super) const OPEN: &[&str] = &[ds::PENDING, ds::RETRYING, ds::WAITING];

pub(super) fn is_open(status: &str) -> bool {
    OPEN.contains(&status)
}

/// How a failed attempt is recorded.
pub(super) struct Failure {
    pub(super) retry: bool,
    pub(super) attempts: i32,
    pub(super) throttled: i32,
    pub(super) duration_ms: i64,
    /// The claim (its `updated_at`) a vendor call was made under, if any.
    pub(super) claim: Option<DateTime<Utc>>,
    /// Kept on the delivery (e.g. a vendor's wait that was cut to the maximum hold).
    pub(super) warning: Option<String>,
    /// What the attempt asked for, redacted (see [`asked`]); else the operation is named.
    pub(super) request: Option<String>,
}

impl Failure {
    /// An attempt that cannot be retried and never reached the CRM.
    pub(super) fn final_attempt(delivery: &deliveries::Model) -> Self {
        Failure {
            retry: false,
            attempts: delivery.attempts + 1,
            throttled: delivery.throttled_attempts,
            duration_ms: 0,
            claim: None,
            warning: None,
            request: None,
        }
    }
}

/// What an attempt that reached (or tried to reach) a vendor did, for recording its failure.
pub(super) struct Tried {
    pub(super) attempts: i32,
    pub(super) duration_ms: i64,
    /// The claim (its `updated_at`) a vendor call was made under, if any.
    pub(super) claim: Option<DateTime<Utc>>,
    /// The vendor requests it sent.
    pub(super) trail: Trail,
}

/// Which writes to a delivery still apply.
#[derive(Clone, Copy)]
pub(super) enum Guard<'a> {
    /// While it is in one of these statuses.
    Status(&'a [&'a str]),
    /// While this run's claim (the delivery's `updated_at` as read) holds.
    Claim,
}

impl Guard<'_> {
    /// Under the claim a vendor call was made with, or else while the delivery is open.
    pub(super) fn of(claim: Option<DateTime<Utc>>) -> Guard<'static> {
        match claim {
            Some(_) => Guard::Claim,
            None => Guard::Status(OPEN),
        }
    }
}

/// The reason a delivery waits when its vendor refused the credentials.
pub(super) const NEEDS_REAUTH: &str = "connection needs_reauth";

/// Seconds from `at` until now.
pub(super) fn seconds_since(at: DateTime<Utc>) -> f64 {
    (crate::now() - at).num_milliseconds() as f64 / 1000.0
}

pub(super) fn elapsed_ms(started: std::time::Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// What an attempt asked for, as its history shows it: the vendor requests it sent (method,
/// host and path), or else the operation; generated secrets and `secrets` (the connection's
/// credentials) taken out.
pub(super) fn asked(
    trail: Option<&Trail>,
    delivery: &deliveries::Model,
    op: Option<&Operation>,
    secrets: &[String],
) -> String {
    let text = trail.and_then(Trail::summary).unwrap_or_else(|| match op {
        Some(op) if op.action == Action::StripeRetrieve => format!(
            "{} {} {}",
            op.action,
            op.object,
            op.record_id.as_deref().unwrap_or_default()
        ),
        Some(op) => format!("{} {}", op.action, op.object),
        None => format!("{} {}", delivery.action, delivery.object),
    });
    let text = match op {
        Some(op) => op.redact(&text),
        None => text,
    };
    history::scrub(text.trim_end(), secrets)
}

/// A successful write as its history keeps it: the status of the vendor's last answer and
/// the start of that answer, redacted.
pub(super) fn succeeded_attempt(
    delivery: &deliveries::Model,
    op: &Operation,
    outcome: &crm::CrmOutcome,
    duration_ms: i64,
    trail: &Trail,
    secrets: &[String],
) -> Attempt {
    Attempt {
        outcome: outcome::SUCCEEDED,
        duration_ms,
        request: Some(asked(Some(trail), delivery, Some(op), secrets)),
        vendor_status: trail.status.map(i32::from),
        response: outcome
            .response
            .as_ref()
            .map(|answer| history::scrub(&op.redact(&answer.to_string()), secrets)),
        ..Default::default()
    }
}

/// An attempt that found a newer event already applied to the record.
pub(super) fn skipped_as_stale(
    delivery: &deliveries::Model,
    op: &Operation,
    warning: &str,
    duration_ms: i64,
) -> Attempt {
    Attempt {
        outcome: outcome::SKIPPED,
        duration_ms,
        request: Some(asked(None, delivery, Some(op), &[])),
        reason: Some(format!("stale: {warning}")),
        ..Default::default()
    }
}

/// A delivery's columns once its write succeeded; clears the last attempt's error.
pub(super) fn succeeded(
    op: &Operation,
    outcome: &crm::CrmOutcome,
    attempts: i32,
    duration_ms: i64,
) -> anyhow::Result<deliveries::ActiveModel> {
    Ok(deliveries::ActiveModel {
        status: Set(ds::SUCCEEDED.into()),
        attempts: Set(attempts),
        crm_record_id: Set(Some(outcome.record_id.clone()).filter(|id| !id.is_empty())),
        operation: Set(op.stored_json()),
        warnings: Set(serde_json::to_string(&outcome.warnings)?),
        error_kind: Set(None),
        error_message: Set(None),
        vendor_status: Set(None),
        vendor_body: Set(None),
        reason: Set(None),
        next_attempt_at: Set(None),
        duration_ms: Set(Some(duration_ms)),
        response: Set(outcome
            .response
            .as_ref()
            .map(|r| op.redact(&stored_response(r)))),
        updated_at: Set(crate::now()),
        ..Default::default()
    })
}

/// A vendor answer as stored for later steps, cut off at 64 KiB.
pub(super) fn stored_response(response: &Value) -> String {
    let text = response.to_string();
    if text.len() <= 65_536 {
        text
    } else {
        serde_json::json!({ "truncated": true }).to_string()
    }
}

/// A step rendered for its delivery.
pub(super) enum Rendered {
    Run(Box<Operation>),
    /// Its `when` was false; the delivery is skipped.
    Skipped,
    /// A template failed; the delivery is dead.
    Failed,
}

/// What refetch-on-apply gives a flow to run on.
pub(super) enum Refetched {
    /// The object as Stripe holds it now.
    Current(Value),
    /// The event's own snapshot (the object cannot be fetched again).
    Snapshot,
    /// The fetch failed: the flow waits (until the retry is due, if one is).
    Wait(Option<DateTime<Utc>>),
}

pub(super) enum StepResult {
    /// The step has its outcome: a record id (unless it was skipped without one) and the
    /// vendor's answer, if it gave one.
    Done(Option<String>, Option<Value>),
    /// A retry is scheduled for this time; later steps wait.
    Retrying(DateTime<Utc>),
    /// Dead, or in another run's hands: later steps wait.
    Stop,
}

pub(super) fn action_name(action: Action) -> &'static str {
    action.as_str()
}
