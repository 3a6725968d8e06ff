//! What `POST /v1/flows/{id}/dry-run` takes and answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_worker::flow::{Operation, ValidationError};
use tributary_worker::schema::EventStatus;
use tributary_worker::statuses::status;
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::extract::Validate;
use crate::services::fields::check_one_of;
use crate::services::flow_history::diff::ChangeKind;

/// At most this many events per dry run answered at once, and the default.
pub const MAX_EVENTS: i64 = 500;
pub const DEFAULT_EVENTS: i64 = 100;
/// At most this many events per dry run in the background (and never more than
/// `TRIBUTARY_MAX_BULK_ITEMS`).
pub const MAX_JOB_EVENTS: i64 = 10_000;

/// Which flow to try, and on which stored events.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunIn {
    /// A stored version to try, as `GET /v1/flows/{id}/versions` lists them; by default the
    /// current one. Not with `flow`.
    #[schema(minimum = 1, maximum = 2147483647, example = 3)]
    pub version: Option<i64>,
    /// A draft to try, the whole flow as `PUT /v1/flows/{id}` takes it. Not with `version`.
    #[schema(value_type = Option<Object>)]
    pub flow: Option<Value>,
    /// The inbox events to run it on (ids as `GET /v1/events` gives them), at most 500. Not with
    /// `filter`.
    #[schema(max_items = 500)]
    pub event_ids: Option<Vec<String>>,
    /// Or the newest stored events matching this. By default: the events of the types the
    /// current version's and the tried flow's triggers listen to.
    pub filter: Option<DryRunFilter>,
    /// How many events at most (1 to 500, or to 10000 with `background`; 100 by default),
    /// newest first.
    #[schema(minimum = 1, maximum = 10000, example = 100)]
    pub limit: Option<i64>,
    /// Run it as a bulk job and answer 202 at once: follow its progress at
    /// `GET /v1/bulk-jobs/{job_id}`, whose `dry_run` holds the answer when it is done. For runs
    /// beyond 500 events; admins and owners only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

/// Which stored events a dry run reads; every field narrows.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunFilter {
    /// An event type, e.g. `charge.succeeded`; by default the types the triggers listen to.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 255)]
    pub event_type: Option<String>,
    /// Stripe `created` at or after (unix seconds).
    pub created_gte: Option<i64>,
    /// Stripe `created` at or before (unix seconds).
    pub created_lte: Option<i64>,
    /// Only events with this status.
    #[schema(value_type = Option<EventStatus>)]
    pub status: Option<String>,
}

impl Validate for DryRunIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.version.is_some() && self.flow.is_some() {
            for field in ["version", "flow"] {
                errors.push(FieldError::new(
                    field,
                    "give either version (a stored version) or flow (a draft), not both",
                ));
            }
        }
        if self.event_ids.is_some() && self.filter.is_some() {
            for field in ["event_ids", "filter"] {
                errors.push(FieldError::new(
                    field,
                    "give either event_ids or filter, not both",
                ));
            }
        }
        if self.version.is_some_and(|v| v < 1) {
            errors.push(FieldError::new(
                "version",
                "must be a version number from 1",
            ));
        }
        if self
            .event_ids
            .as_ref()
            .is_some_and(|ids| ids.len() > MAX_EVENTS as usize)
        {
            errors.push(FieldError::new(
                "event_ids",
                format!("at most {MAX_EVENTS} events per dry run"),
            ));
        }
        let most = if self.background {
            MAX_JOB_EVENTS
        } else {
            MAX_EVENTS
        };
        if self.limit.is_some_and(|n| !(1..=most).contains(&n)) {
            let more = if self.background {
                String::new()
            } else {
                format!("; up to {MAX_JOB_EVENTS} run in the background with \"background\": true")
            };
            errors.push(FieldError::new(
                "limit",
                format!("must be a whole number from 1 to {most}{more}"),
            ));
        }
        if let Some(filter) = &self.filter {
            check_one_of(
                "filter.status",
                filter.status.as_deref(),
                status::ALL,
                &mut errors,
            );
            if filter
                .event_type
                .as_ref()
                .is_some_and(|t| t.is_empty() || t.chars().count() > 255)
            {
                errors.push(FieldError::new(
                    "filter.type",
                    "must be an event type of 1 to 255 characters",
                ));
            }
        }
        crate::services::valid(errors)
    }
}

/// One value an event's operations would send differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationChange {
    /// The step (a `for_each` item as `<id>[<key>]`).
    #[schema(example = "contact")]
    pub step: String,
    /// The operation's value: `fields.<name>`, `match.<name>`, `headers.<name>`, or `action`,
    /// `object`, `record_id`, `associate`, … as a whole.
    #[schema(example = "fields.lifecyclestage")]
    pub field: String,
    /// `added` (the current version did not send it), `removed` (it would no longer be sent)
    /// or `changed`.
    pub change: ChangeKind,
    /// What the current version's delivery sent (null when added).
    pub before: Value,
    /// What the tried flow would send (null when removed).
    pub after: Value,
}

/// One event, run through the tried flow.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DryRunResult {
    /// The inbox event (`GET /v1/events/{id}`).
    pub event_id: String,
    pub stripe_event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Whether the tried flow's trigger accepts the event.
    pub matched: bool,
    /// Whether the flow has deliveries for the event (else there is nothing to compare with,
    /// and every value is `added`).
    pub delivered: bool,
    /// What the tried flow would send, in order; nothing is sent. Record ids of steps that
    /// never ran appear as placeholders such as `{{steps.contact.id}}`.
    pub operations: Vec<Operation>,
    /// Why the tried flow cannot run on the event: its validation errors, or the error of the
    /// step that would fail, by path.
    pub errors: Vec<ValidationError>,
    /// The tried flow fails on the event and the current version does not.
    pub failing: bool,
    /// How what it would send differs from what the flow's deliveries sent.
    pub changes: Vec<OperationChange>,
}

/// What a dry run found; nothing was written, sent or called.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunOut {
    /// The version tried; null for a draft.
    pub version: Option<i32>,
    /// The flow's current version.
    pub current_version: i32,
    /// How many events were run.
    pub events: usize,
    /// How many events have at least one change.
    pub changed: usize,
    /// How many events the tried flow fails on although the current version does not.
    pub failing: usize,
    /// The draft's own problems (its validation), also on every result; empty when it is valid.
    pub errors: Vec<ValidationError>,
    /// One per event, in the order of `event_ids`, else newest first.
    pub results: Vec<DryRunResult>,
}
