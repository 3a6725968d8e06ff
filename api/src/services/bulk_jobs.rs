//! Bulk actions: retry every dead delivery, or replay every event, that matches a filter. The
//! request finds the matches (at most `TRIBUTARY_MAX_BULK_ITEMS`), stores them as the job's
//! items and answers 202 with their count; a background loop of the api then takes the job
//! with a lease (as backfills are taken: a crashed process's job is resumed when its lease
//! ends) and runs its items in batches, each through the very code of a single retry or
//! replay, as the caller who asked. An item that code refuses (a delivery being sent right now,
//! an event erased meanwhile) is counted as failed with the reason, never forced. A tenant has
//! one bulk job queued or running at a time.

use std::sync::{Arc, Weak};
use std::time::Duration;

use entity::{
    Role, TenantOwned, bulk_job_items, bulk_jobs, connections, deliveries, events, flows,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary_worker::schema::EventStatus;
use tributary_worker::statuses::{delivery_status as ds, status as event_status};
use utoipa::ToSchema;

use super::event_search::{EventSearch, FilterId, SearchTerm};
use super::events::ReplayIn;
use super::{audit, new_id, now};
use crate::error::{ApiError, FieldError, is_unique_violation};
use crate::extract::{Actor, Page, TenantContext, Validate};
use crate::state::AppState;

pub const KIND_RETRY: &str = "delivery_retry";
pub const KIND_REPLAY: &str = "event_replay";

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
    "`delivery_retry` (`POST /v1/deliveries/retry`) or `event_replay` (`POST /v1/events/replay`).",
    [KIND_RETRY, KIND_REPLAY]
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
struct EventMatch<'a> {
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
    fn select(&self, tenant_id: &str) -> Select<events::Entity> {
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
    fn event_match(&self) -> EventMatch<'_> {
        EventMatch {
            event_type: self.event_type.as_deref(),
            created_gte: self.created_gte,
            created_lt: self.created_lt,
        }
    }
}

impl BulkReplayIn {
    fn event_match(&self) -> EventMatch<'_> {
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
        super::valid(errors)
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
        super::valid(errors)
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
}

/// 422 naming `field` unless `id` is one of the tenant's rows of `E`.
async fn check_ref<E: TenantOwned>(
    state: &AppState,
    ctx: &TenantContext,
    field: &str,
    id: Option<&FilterId>,
    what: &str,
) -> Result<(), ApiError> {
    let Some(id) = id else { return Ok(()) };
    let found = E::find_by_id_in_tenant(&ctx.tenant_id, id.as_str())
        .one(&state.db)
        .await?;
    if found.is_none() {
        return Err(ApiError::field(
            field,
            format!("no {what} with this id in your tenant"),
        ));
    }
    Ok(())
}

/// The ids `select` finds, oldest first, refused when there are more than the limit.
async fn matches<E: EntityTrait>(
    state: &AppState,
    select: Select<E>,
    id_column: E::Column,
    what: &str,
) -> Result<Vec<String>, ApiError> {
    let max = state.settings.limits.max_bulk_items;
    let ids: Vec<String> = select
        .select_only()
        .column(id_column)
        .order_by_asc(id_column)
        .limit(max + 1)
        .into_tuple()
        .all(&state.db)
        .await?;
    if ids.len() as u64 > max {
        return Err(ApiError::field(
            "body",
            format!(
                "more than {max} {what} match; a bulk job takes at most {max} \
                 (TRIBUTARY_MAX_BULK_ITEMS): narrow the filter, e.g. with flow_id, \
                 connection_id, event_type or created_gte/created_lt"
            ),
        ));
    }
    Ok(ids)
}

pub async fn retry(
    state: &AppState,
    ctx: &TenantContext,
    input: BulkRetryIn,
) -> Result<BulkAcceptedOut, ApiError> {
    ctx.require(Role::Admin)?;
    check_ref::<flows::Entity>(state, ctx, "flow_id", input.flow_id.as_ref(), "flow").await?;
    check_ref::<connections::Entity>(
        state,
        ctx,
        "connection_id",
        input.connection_id.as_ref(),
        "connection",
    )
    .await?;
    let wanted = input.status.as_deref().unwrap_or(ds::DEAD);
    let mut select = deliveries::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(deliveries::Column::Status.eq(wanted))
        .filter(
            deliveries::Column::EventId.in_subquery(
                input
                    .event_match()
                    .select(&ctx.tenant_id)
                    .select_only()
                    .column(events::Column::Id)
                    .into_query(),
            ),
        );
    if let Some(flow) = &input.flow_id {
        select = select.filter(deliveries::Column::FlowId.eq(flow.as_str()));
    }
    if let Some(connection) = &input.connection_id {
        select = select.filter(deliveries::Column::ConnectionId.eq(connection.as_str()));
    }
    let ids = matches(state, select, deliveries::Column::Id, "deliveries").await?;
    let filter = json!({"status": wanted, "flow_id": input.flow_id.as_ref().map(FilterId::as_str),
        "connection_id": input.connection_id.as_ref().map(FilterId::as_str),
        "event_type": input.event_type, "created_gte": input.created_gte,
        "created_lt": input.created_lt});
    create(state, ctx, KIND_RETRY, shown(filter), false, ids).await
}

pub async fn replay(
    state: &AppState,
    ctx: &TenantContext,
    input: BulkReplayIn,
) -> Result<BulkAcceptedOut, ApiError> {
    ctx.require(Role::Admin)?;
    check_ref::<flows::Entity>(state, ctx, "flow_id", input.flow_id.as_ref(), "flow").await?;
    check_ref::<connections::Entity>(
        state,
        ctx,
        "connection_id",
        input.connection_id.as_ref(),
        "connection",
    )
    .await?;
    let search = EventSearch {
        search: input.search.clone(),
        flow_id: input.flow_id.clone(),
        connection_id: input.connection_id.clone(),
    };
    let mut select = search.narrow(input.event_match().select(&ctx.tenant_id), &ctx.tenant_id);
    if let Some(s) = &input.status {
        select = select.filter(events::Column::Status.eq(s.as_str()));
    }
    let ids = matches(state, select, events::Column::Id, "events").await?;
    let filter = json!({"status": input.status, "search": input.search.as_ref().map(SearchTerm::as_str),
        "flow_id": input.flow_id.as_ref().map(FilterId::as_str),
        "connection_id": input.connection_id.as_ref().map(FilterId::as_str),
        "event_type": input.event_type, "created_gte": input.created_gte,
        "created_lt": input.created_lt, "force": input.force});
    create(state, ctx, KIND_REPLAY, shown(filter), input.force, ids).await
}

/// The filter as shown on the job: what was given, without the fields left out.
fn shown(mut filter: serde_json::Value) -> String {
    if let Some(map) = filter.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    filter.to_string()
}

/// The tenant's job that is queued or running, if any.
async fn active<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Option<bulk_jobs::Model>, ApiError> {
    Ok(bulk_jobs::Entity::find()
        .filter(bulk_jobs::Column::ActiveTenantId.eq(tenant_id))
        .one(db)
        .await?)
}

fn busy_with(job: Option<&str>) -> ApiError {
    let detail = match job {
        Some(job) => format!(
            "bulk job {job} is still running in your tenant; one runs at a time: follow it at \
             GET /v1/bulk-jobs/{job} and start the next when it is done"
        ),
        None => "another bulk job was started in your tenant just now; one runs at a time: \
                 see GET /v1/bulk-jobs"
            .into(),
    };
    ApiError::Conflict {
        detail,
        field: None,
    }
}

async fn create(
    state: &AppState,
    ctx: &TenantContext,
    kind: &str,
    filter: String,
    force: bool,
    ids: Vec<String>,
) -> Result<BulkAcceptedOut, ApiError> {
    let at = now();
    let empty = ids.is_empty();
    let job = bulk_jobs::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        kind: kind.into(),
        status: if empty { status::DONE } else { status::QUEUED }.into(),
        filter,
        force,
        total: ids.len() as i32,
        done: 0,
        failed: 0,
        last_error: None,
        actor_type: ctx.actor.kind().into(),
        actor_id: ctx.actor.id().into(),
        role: ctx.role,
        client_address: ctx.client_address.clone(),
        active_tenant_id: (!empty).then(|| ctx.tenant_id.clone()),
        runs: 0,
        lease_until: None,
        created_at: at,
        updated_at: at,
        finished_at: empty.then_some(at),
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    if !empty && let Some(running) = active(&txn, &ctx.tenant_id).await? {
        return Err(busy_with(Some(&running.id)));
    }
    forget_old_jobs(&txn, &ctx.tenant_id).await?;
    if let Err(e) = bulk_jobs::Entity::insert(bulk_jobs::ActiveModel::from(job.clone()))
        .exec(&txn)
        .await
    {
        if is_unique_violation(&e) {
            drop(txn);
            let running = active(&state.db, &ctx.tenant_id).await?;
            return Err(busy_with(running.as_ref().map(|j| j.id.as_str())));
        }
        return Err(e.into());
    }
    for chunk in ids.chunks(200) {
        bulk_job_items::Entity::insert_many(chunk.iter().map(|id| bulk_job_items::ActiveModel {
            job_id: Set(job.id.clone()),
            item_id: Set(id.clone()),
            tenant_id: Set(ctx.tenant_id.clone()),
            status: Set(item_status::PENDING.into()),
            reason: Set(None),
        }))
        .exec(&txn)
        .await?;
    }
    audit::log(&txn, ctx, "bulk_job.create", "bulk_job", &job.id).await?;
    txn.commit().await?;
    tracing::info!(bulk_job_id = %job.id, kind, items = job.total, "bulk job accepted");
    Ok(BulkAcceptedOut {
        job_id: job.id,
        count: job.total,
        status: job.status,
    })
}

/// Deletes the tenant's finished jobs beyond the newest [`KEEP_FINISHED`], with their items.
async fn forget_old_jobs<C: ConnectionTrait>(db: &C, tenant_id: &str) -> Result<(), ApiError> {
    let old: Vec<String> = bulk_jobs::Entity::find_in_tenant(tenant_id)
        .filter(bulk_jobs::Column::ActiveTenantId.is_null())
        .select_only()
        .column(bulk_jobs::Column::Id)
        .order_by_desc(bulk_jobs::Column::Id)
        .offset(KEEP_FINISHED)
        .limit(100)
        .into_tuple()
        .all(db)
        .await?;
    if old.is_empty() {
        return Ok(());
    }
    bulk_job_items::Entity::delete_many()
        .filter(bulk_job_items::Column::TenantId.eq(tenant_id))
        .filter(bulk_job_items::Column::JobId.is_in(old.iter().map(String::as_str)))
        .exec(db)
        .await?;
    bulk_jobs::Entity::delete_many()
        .filter(bulk_jobs::Column::TenantId.eq(tenant_id))
        .filter(bulk_jobs::Column::Id.is_in(old.iter().map(String::as_str)))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<BulkJobDetailOut, ApiError> {
    let job = super::owned::<bulk_jobs::Entity, _>(&state.db, ctx, id).await?;
    let failures = bulk_job_items::Entity::find()
        .filter(bulk_job_items::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
        .filter(bulk_job_items::Column::Status.eq(item_status::FAILED))
        .order_by_asc(bulk_job_items::Column::ItemId)
        .limit(SHOWN_FAILURES)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|item| BulkFailureOut {
            id: item.item_id,
            reason: item.reason.unwrap_or_default(),
        })
        .collect();
    Ok(BulkJobDetailOut {
        job: job.into(),
        failures,
    })
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<BulkJobOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            bulk_jobs::Entity::find_in_tenant(&ctx.tenant_id),
            bulk_jobs::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}

/// Looks for due jobs every `interval` while the app lives (`state` is dropped with it).
pub async fn run_forever(state: Weak<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Err(e) = start_due(&state).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "looking for bulk jobs failed; the next round tries again"
            );
        }
    }
}

/// Starts a job just made without waiting for the next round.
pub fn kick(state: Arc<AppState>) {
    tokio::spawn(async move {
        if let Err(e) = start_due(&state).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "starting a bulk job failed; the next round tries again"
            );
        }
    });
}

/// How long a claim holds without progress before another process may take the job over
/// (`TRIBUTARY_SWEEP_GRACE`, the patience for lost work everywhere).
fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.sweep_grace).unwrap_or(chrono::Duration::seconds(60))
}

/// Claims the jobs that are due (queued, or running with a lapsed lease) and runs each in its
/// own task.
async fn start_due(state: &Arc<AppState>) -> Result<(), ApiError> {
    let due = bulk_jobs::Entity::find()
        .filter(bulk_jobs::Column::Status.is_in([status::QUEUED, status::RUNNING]))
        .filter(
            Condition::any()
                .add(bulk_jobs::Column::LeaseUntil.is_null())
                .add(bulk_jobs::Column::LeaseUntil.lt(now())),
        )
        .order_by_asc(bulk_jobs::Column::Id)
        .limit(20)
        .all(&state.db)
        .await?;
    for job in due {
        let Some(job) = claim(state, job).await? else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            if let Err(e) = run(&state, job).await {
                tracing::warn!(bulk_job_id = %id, error = %e, "bulk job stopped; it resumes when its lease ends");
            }
        });
    }
    Ok(())
}

/// Takes the lease of a job as read; `None` when another process got it first.
async fn claim(
    state: &AppState,
    job: bulk_jobs::Model,
) -> Result<Option<bulk_jobs::Model>, ApiError> {
    let at = now().max(job.updated_at + chrono::Duration::microseconds(1));
    let claimed = bulk_jobs::Model {
        status: status::RUNNING.into(),
        runs: job.runs + 1,
        lease_until: Some(at + lease(state)),
        updated_at: at,
        ..job.clone()
    };
    let applied = bulk_jobs::Entity::update_many()
        .set(bulk_jobs::ActiveModel {
            status: Set(claimed.status.clone()),
            runs: Set(claimed.runs),
            lease_until: Set(claimed.lease_until),
            updated_at: Set(at),
            ..Default::default()
        })
        .filter(bulk_jobs::Column::Id.eq(job.id.as_str()))
        .filter(bulk_jobs::Column::UpdatedAt.eq(job.updated_at))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    Ok(applied.then_some(claimed))
}

/// Writes the job's counts (from its items) and, when `finish` is set, ends it with that
/// status; otherwise renews the lease. False if the lease was lost to another process.
async fn save(
    state: &AppState,
    job: &mut bulk_jobs::Model,
    finish: Option<(&str, Option<String>)>,
) -> Result<bool, ApiError> {
    let count = |wanted: &'static str| {
        bulk_job_items::Entity::find()
            .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
            .filter(bulk_job_items::Column::Status.eq(wanted))
            .count(&state.db)
    };
    let done = count(item_status::DONE).await? as i32;
    let failed = count(item_status::FAILED).await? as i32;
    let at = now().max(job.updated_at + chrono::Duration::microseconds(1));
    let mut update = bulk_jobs::ActiveModel {
        done: Set(done),
        failed: Set(failed),
        lease_until: Set(Some(at + lease(state))),
        updated_at: Set(at),
        ..Default::default()
    };
    if let Some((end, error)) = &finish {
        update.status = Set(end.to_string());
        update.last_error = Set(error.clone());
        update.lease_until = Set(None);
        update.active_tenant_id = Set(None);
        update.finished_at = Set(Some(at));
    }
    let applied = bulk_jobs::Entity::update_many()
        .set(update)
        .filter(bulk_jobs::Column::Id.eq(job.id.as_str()))
        .filter(bulk_jobs::Column::UpdatedAt.eq(job.updated_at))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    job.updated_at = at;
    Ok(applied)
}

/// The caller who asked for the job, as the single retry or replay sees its caller.
fn context_of(job: &bulk_jobs::Model) -> TenantContext {
    TenantContext {
        tenant_id: job.tenant_id.clone(),
        role: job.role,
        actor: match job.actor_type.as_str() {
            "api_key" => Actor::ApiKey(job.actor_id.clone()),
            _ => Actor::User(job.actor_id.clone()),
        },
        session_id: None,
        client_address: job.client_address.clone(),
    }
}

/// Runs a claimed job's pending items to the end, or until its lease is lost.
async fn run(state: &AppState, mut job: bulk_jobs::Model) -> Result<(), ApiError> {
    if job.runs > MAX_RUNS {
        let error = format!(
            "stopped {MAX_RUNS} times before finishing (the process running it ended); the \
             items not yet run were left as they were"
        );
        save(state, &mut job, Some((status::FAILED, Some(error)))).await?;
        return Ok(());
    }
    let ctx = context_of(&job);
    loop {
        let items = bulk_job_items::Entity::find()
            .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
            .filter(bulk_job_items::Column::Status.eq(item_status::PENDING))
            .order_by_asc(bulk_job_items::Column::ItemId)
            .limit(BATCH)
            .all(&state.db)
            .await?;
        if items.is_empty() {
            save(state, &mut job, Some((status::DONE, None))).await?;
            tracing::info!(bulk_job_id = %job.id, "bulk job done");
            return Ok(());
        }
        for item in items {
            let outcome = if job.kind == KIND_REPLAY {
                super::events::replay(state, &ctx, &item.item_id, ReplayIn { force: job.force })
                    .await
                    .map(drop)
            } else {
                super::events::retry_delivery(state, &ctx, &item.item_id)
                    .await
                    .map(drop)
            };
            let (outcome, reason) = item_outcome(&job.kind, outcome);
            bulk_job_items::Entity::update_many()
                .set(bulk_job_items::ActiveModel {
                    status: Set(outcome.into()),
                    reason: Set(reason),
                    ..Default::default()
                })
                .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
                .filter(bulk_job_items::Column::ItemId.eq(item.item_id.as_str()))
                .exec(&state.db)
                .await?;
        }
        if !save(state, &mut job, None).await? {
            tracing::warn!(bulk_job_id = %job.id, "another process took the bulk job over");
            return Ok(());
        }
    }
}

/// What one item's retry or replay came to: `done`, or `failed` with the reason.
fn item_outcome(kind: &str, outcome: Result<(), ApiError>) -> (&'static str, Option<String>) {
    match outcome {
        // Reset and marked queued; only the push failed, and the sweeper pushes it.
        Ok(()) | Err(ApiError::Unavailable(_)) => (item_status::DONE, None),
        Err(ApiError::NotFound) => (
            item_status::FAILED,
            Some(format!(
                "the {} no longer exists",
                if kind == KIND_REPLAY {
                    "event"
                } else {
                    "delivery"
                }
            )),
        ),
        Err(ApiError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "a bulk job's item failed");
            (
                item_status::FAILED,
                Some("an internal error; try this one on its own".into()),
            )
        }
        Err(refused) => (item_status::FAILED, Some(refused.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_item_keeps_its_reason() {
        let busy = ApiError::Busy {
            detail: "delivery d is being sent to the vendor right now".into(),
            retry_after: 3,
        };
        let (outcome, reason) = item_outcome(KIND_RETRY, Err(busy));
        assert_eq!(outcome, item_status::FAILED);
        assert!(reason.unwrap().contains("being sent"));
        assert_eq!(
            item_outcome(KIND_REPLAY, Err(ApiError::NotFound))
                .1
                .as_deref(),
            Some("the event no longer exists")
        );
        assert_eq!(item_outcome(KIND_RETRY, Ok(())).0, item_status::DONE);
    }

    #[test]
    fn the_filter_shown_leaves_out_what_was_not_given() {
        let shown: serde_json::Value = serde_json::from_str(&shown(
            json!({"status": "dead", "flow_id": null, "event_type": "charge.succeeded"}),
        ))
        .unwrap();
        assert_eq!(
            shown,
            json!({"status": "dead", "event_type": "charge.succeeded"})
        );
    }
}
