//! The request and response types of bulk jobs, and the checks of their filters.

use entity::{TenantOwned, bulk_jobs, events};
use sea_orm::{ColumnTrait, QueryFilter, Select};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_worker::schema::EventStatus;
use tributary_worker::statuses::status as event_status;
use utoipa::ToSchema;

use super::{KIND_DRY_RUN, KIND_REPLAY, KIND_RETRY, RETRY_STATUSES, status};
use crate::error::FieldError;
use crate::extract::Validate;
use crate::services::event_search::{FilterId, SearchTerm};

tributary_worker::string_enum_schema!(
    /// A bulk job's status.
    BulkJobStatus,
    "`queued` (not started yet), `running`, `done` (every item was tried: see `done` and \
     `failed`) or `failed` (stopped before the end: see `last_error`).",
    status::ALL.iter().copied()
);

tributary_worker::string_enum_schema!(
    /// What a bulk job does.
    BulkJobKind,
    "`delivery_retry` (`POST /v1/deliveries/retry`), `event_replay` (`POST /v1/events/replay`) \
     or `dry_run` (`POST /v1/flows/{id}/dry-run` with `background`).",
    [KIND_RETRY, KIND_REPLAY, KIND_DRY_RUN]
);

tributary_worker::string_enum_schema!(
    /// The deliveries a bulk retry takes.
    BulkRetryStatus,
    "`dead` (the dead-letter queue, the default) or `waiting` (waiting on their connection).",
    RETRY_STATUSES.iter().copied()
);

/// Which deliveries to retry. Every field narrows the match; `{}` is every dead letter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryIn {
    /// `dead` (default) or `waiting`.
    #[schema(value_type = Option<BulkRetryStatus>)]
    pub status: Option<String>,
    /// Only deliveries of this flow.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub flow_id: Option<FilterId>,
    /// Only deliveries through this connection.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub connection_id: Option<FilterId>,
    /// Only deliveries of events of this type, e.g. `charge.succeeded`.
    #[schema(min_length = 1, max_length = 255)]
    pub event_type: Option<String>,
    /// Only deliveries of events whose Stripe `created` is at or after this (unix seconds).
    pub created_gte: Option<i64>,
    /// Only deliveries of events whose Stripe `created` is before this (unix seconds); later
    /// than `created_gte` when both are given.
    pub created_lt: Option<i64>,
}

/// Which events to replay. Every field narrows the match; `{}` is every event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayIn {
    /// Only events with this status.
    #[schema(value_type = Option<EventStatus>)]
    pub status: Option<String>,
    /// As `GET /v1/events?search=`: a Stripe event id, a Stripe object id or a customer email.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 320, pattern = r"^\S+$")]
    pub search: Option<SearchTerm>,
    /// Only events with a delivery of this flow.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub flow_id: Option<FilterId>,
    /// Only events with a delivery through this connection.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub connection_id: Option<FilterId>,
    /// Only events of this type, e.g. `charge.succeeded`.
    #[schema(min_length = 1, max_length = 255)]
    pub event_type: Option<String>,
    /// Only events whose Stripe `created` is at or after this (unix seconds).
    pub created_gte: Option<i64>,
    /// Only events whose Stripe `created` is before this (unix seconds); later than
    /// `created_gte` when both are given.
    pub created_lt: Option<i64>,
    /// Also re-run steps that succeeded (never doubling a `create`), as a single replay's
    /// `force` does.
    #[serde(default)]
    pub force: bool,
}

/// What both bulk actions filter events by.
#[derive(Debug, Default)]
pub(super) struct EventMatch<'a> {
    event_type: Option<&'a str>,
    created_gte: Option<i64>,
    created_lt: Option<i64>,
}

impl EventMatch<'_> {
    fn check(&self, errors: &mut Vec<FieldError>) {
        if let Some(t) = self.event_type
            && (t.is_empty() || t.chars().count() > 255)
        {
            errors.push(FieldError::new(
                "event_type",
                "must be an event type of 1 to 255 characters",
            ));
        }
        if let (Some(gte), Some(lt)) = (self.created_gte, self.created_lt)
            && gte >= lt
        {
            errors.push(FieldError::new(
                "created_lt",
                "must be later than created_gte",
            ));
        }
    }

    /// The tenant's events this matches, never an erased one (it cannot run again).
    pub(super) fn select(&self, tenant_id: &str) -> Select<events::Entity> {
        let mut select =
            events::Entity::find_in_tenant(tenant_id).filter(events::Column::RedactedAt.is_null());
        if let Some(t) = self.event_type {
            select = select.filter(events::Column::EventType.eq(t));
        }
        if let Some(gte) = self.created_gte {
            select = select.filter(events::Column::EventCreated.gte(gte));
        }
        if let Some(lt) = self.created_lt {
            select = select.filter(events::Column::EventCreated.lt(lt));
        }
        select
    }
}

impl BulkRetryIn {
    pub(super) fn event_match(&self) -> EventMatch<'_> {
        EventMatch {
            event_type: self.event_type.as_deref(),
            created_gte: self.created_gte,
            created_lt: self.created_lt,
        }
    }
}

impl BulkReplayIn {
    pub(super) fn event_match(&self) -> EventMatch<'_> {
        EventMatch {
            event_type: self.event_type.as_deref(),
            created_gte: self.created_gte,
            created_lt: self.created_lt,
        }
    }
}

impl Validate for BulkRetryIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(s) = &self.status
            && !RETRY_STATUSES.contains(&s.as_str())
        {
            errors.push(FieldError::new(
                "status",
                "must be dead or waiting: a bulk retry takes dead letters, or deliveries \
                 waiting on their connection",
            ));
        }
        self.event_match().check(&mut errors);
        crate::services::valid(errors)
    }
}

impl Validate for BulkReplayIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(s) = &self.status
            && !event_status::ALL.contains(&s.as_str())
        {
            errors.push(FieldError::new(
                "status",
                format!("must be one of {}", event_status::ALL.join(", ")),
            ));
        }
        self.event_match().check(&mut errors);
        crate::services::valid(errors)
    }
}

/// A bulk job accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkAcceptedOut {
    /// Follow it at `GET /v1/bulk-jobs/{job_id}`.
    pub job_id: String,
    /// The deliveries (retry) or events (replay) it covers.
    pub count: i32,
    /// `queued`; `done` at once when nothing matched.
    #[schema(value_type = BulkJobStatus)]
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkJobOut {
    pub id: String,
    #[schema(value_type = BulkJobKind)]
    pub kind: String,
    #[schema(value_type = BulkJobStatus)]
    pub status: String,
    /// The filter as it was given.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub filter: serde_json::Value,
    /// Items matched when the job was made.
    pub total: i32,
    /// Items retried or replayed so far.
    pub done: i32,
    /// Items refused so far (a delivery being sent at that moment, an event erased meanwhile):
    /// see `failures` on the job.
    pub failed: i32,
    /// Why the job stopped, when it `failed`.
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<bulk_jobs::Model> for BulkJobOut {
    fn from(job: bulk_jobs::Model) -> Self {
        BulkJobOut {
            filter: serde_json::from_str(&job.filter).unwrap_or_else(|_| json!({})),
            id: job.id,
            kind: job.kind,
            status: job.status,
            total: job.total,
            done: job.done,
            failed: job.failed,
            last_error: job.last_error,
            created_at: job.created_at,
            finished_at: job.finished_at,
        }
    }
}

/// An item the job could not retry or replay, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkFailureOut {
    /// The delivery's (retry) or event's (replay) id.
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkJobDetailOut {
    #[serde(flatten)]
    pub job: BulkJobOut,
    /// The first 20 items that failed, with their reasons.
    pub failures: Vec<BulkFailureOut>,
    /// A `dry_run` job's answer once it is `done`: `events`, `changed` and `failing` count
    /// every event it ran; `results` holds the first 500 events that changed or newly fail
    /// (an unchanged event is only counted), newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<crate::services::dry_run::types::DryRunOut>,
}
