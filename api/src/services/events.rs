//! The inbox as tenants see it: events with their deliveries and the deliveries' attempts,
//! replay, and the dead-letter queue with retry.

use std::collections::HashMap;

use entity::{Role, TenantOwned, connections, deliveries, delivery_attempts, events};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_worker::flow::Action;
use tributary_worker::history::KEPT_ATTEMPTS;
use tributary_worker::queue::ProcessEvent;
use tributary_worker::schema::{
    AttemptOutcome, CrmErrorKind, DeliveryStatus, EventSource, EventStatus,
};
use tributary_worker::statuses::{delivery_status as ds, status};
use utoipa::{IntoParams, ToSchema};

use super::fields::check_one_of;
use super::now;
use crate::error::{ApiError, FieldError};
use crate::extract::{Page, TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: String,
    /// Stripe's event id; for a CRM-side event, the vendor's event key.
    pub stripe_event_id: String,
    /// The Stripe account the event came from; empty for a CRM-side event.
    pub stripe_account_id: String,
    /// Where the event came from: `stripe`, `hubspot`, `salesforce` or `zoho`.
    #[schema(value_type = EventSource)]
    pub source: String,
    /// The connection a CRM-side event came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The Stripe object the event is about (`data.object.id`).
    pub stripe_object_id: Option<String>,
    /// `received`, `queued`, `processed`, `failed` or `ignored` (no flow matched).
    #[schema(value_type = EventStatus)]
    pub status: String,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// Stripe's `created`, unix seconds.
    pub created: i64,
    pub runs: i32,
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub processed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the event's personal data was erased (`POST /v1/erasures`); its payload then
    /// holds only ids, and it cannot be replayed.
    pub redacted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<events::Model> for EventOut {
    fn from(e: events::Model) -> Self {
        EventOut {
            id: e.id,
            stripe_event_id: e.stripe_event_id,
            connection_id: (e.source != "stripe").then(|| e.stripe_account_id.clone()),
            stripe_account_id: if e.source == "stripe" {
                e.stripe_account_id
            } else {
                String::new()
            },
            source: e.source,
            event_type: e.event_type,
            stripe_object_id: e.stripe_object_id,
            status: e.status,
            livemode: e.livemode,
            api_version: e.api_version,
            created: e.event_created,
            runs: e.runs,
            next_run_at: e.next_run_at,
            received_at: e.received_at,
            processed_at: e.processed_at,
            redacted_at: e.redacted_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryError {
    /// `auth`, `rate_limited`, `invalid`, `not_found`, `transient` or `permanent`.
    #[schema(value_type = CrmErrorKind)]
    pub kind: String,
    pub message: String,
    pub vendor_status: Option<i32>,
    pub vendor_body: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub event_id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub connection_id: String,
    pub step: String,
    #[schema(value_type = Action)]
    pub action: String,
    pub object: String,
    /// `pending`, `succeeded`, `retrying`, `waiting`, `dead` or `skipped`.
    #[schema(value_type = DeliveryStatus)]
    pub status: String,
    pub attempts: i32,
    pub crm_record_id: Option<String>,
    /// The operation the latest attempt sent.
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub operation: Option<Value>,
    pub error: Option<DeliveryError>,
    pub warnings: Vec<String>,
    /// Why it was skipped (`stale`, `condition`) or dead-lettered.
    pub reason: Option<String>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub duration_ms: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<deliveries::Model> for DeliveryOut {
    fn from(d: deliveries::Model) -> Self {
        DeliveryOut {
            operation: d
                .operation
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok()),
            error: d.error_kind.clone().map(|kind| DeliveryError {
                kind,
                message: d.error_message.clone().unwrap_or_default(),
                vendor_status: d.vendor_status,
                vendor_body: d.vendor_body.clone(),
            }),
            warnings: serde_json::from_str(&d.warnings).unwrap_or_default(),
            id: d.id,
            event_id: d.event_id,
            flow_id: d.flow_id,
            flow_version: d.flow_version,
            connection_id: d.connection_id,
            step: d.step,
            action: d.action,
            object: d.object,
            status: d.status,
            attempts: d.attempts,
            crm_record_id: d.crm_record_id,
            reason: d.reason,
            next_attempt_at: d.next_attempt_at,
            duration_ms: d.duration_ms,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptError {
    /// `auth`, `rate_limited`, `invalid`, `not_found`, `transient` or `permanent`.
    #[schema(value_type = CrmErrorKind, example = "transient")]
    pub kind: String,
    #[schema(example = "HTTP CRM answered 500")]
    pub message: String,
}

/// One attempt of a delivery: when, how long, what was asked, what the vendor answered, and
/// what became of it. Credentials and generated secrets never appear in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// 1, 2, 3… over the delivery's whole life: a retry goes on counting (while the
    /// delivery's `attempts` starts again). A delivery keeps its latest 50.
    #[schema(example = 2)]
    pub attempt: i32,
    #[schema(example = "2026-12-06T10:15:02.113Z")]
    pub started_at: chrono::DateTime<chrono::Utc>,
    #[schema(example = 182)]
    pub duration_ms: i64,
    #[schema(value_type = AttemptOutcome, example = "retrying")]
    pub outcome: String,
    /// What was asked: the vendor requests sent (method, host and path; never a header or the
    /// query string), or else the operation (`upsert contacts`).
    #[schema(example = "POST crm.example.com/customers")]
    pub request: Option<String>,
    /// The status of the vendor's answer, when there was one.
    #[schema(example = 500)]
    pub vendor_status: Option<i32>,
    pub error: Option<AttemptError>,
    /// The start of the vendor's answer (at most 2 KiB), with credentials and generated
    /// secrets taken out.
    #[schema(example = "{\"error\":\"internal error\"}")]
    pub response_excerpt: Option<String>,
    /// Why it ended so: `attempts_exhausted`, `not_retryable`, `stale: …`, `connection
    /// needs_reauth`, `panic`, or the assertion that did not hold.
    pub reason: Option<String>,
}

impl From<delivery_attempts::Model> for AttemptOut {
    fn from(a: delivery_attempts::Model) -> Self {
        AttemptOut {
            error: a.error_kind.map(|kind| AttemptError {
                kind,
                message: a.error_message.unwrap_or_default(),
            }),
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            outcome: a.outcome,
            request: a.request,
            vendor_status: a.vendor_status,
            response_excerpt: a.response_excerpt,
            reason: a.reason,
        }
    }
}

/// A delivery with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// Its attempts, oldest first: the latest 50 it keeps (`GET /v1/deliveries/{id}`), or
    /// the latest 10 in its event (`GET /v1/events/{id}`).
    pub history: Vec<AttemptOut>,
    /// In an event's view: where the record it wrote is seen in the vendor's own UI, when the
    /// vendor has one and its address is known (a Salesforce org's Lightning page, a HubSpot
    /// record with the connection's `portal_id` setting, Stripe's Dashboard for `stripe.*`
    /// steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetailOut {
    #[serde(flatten)]
    pub event: EventOut,
    /// The event as Stripe sent it.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub payload: Value,
    /// Its deliveries, each with its latest 10 attempts.
    pub deliveries: Vec<DeliveryDetailOut>,
}

/// Attempts of each delivery an event's view shows: an event may have many deliveries.
pub const EVENT_VIEW_ATTEMPTS: i32 = 10;

/// Filters of the event list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// An event type, e.g. `charge.succeeded`.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events with this status.
    #[param(value_type = Option<EventStatus>)]
    pub status: Option<String>,
    /// Only events from this source: `stripe`, `hubspot`, `salesforce` or `zoho`.
    #[param(value_type = Option<EventSource>)]
    pub source: Option<String>,
    /// Stripe `created` at or after (unix seconds).
    pub created_gte: Option<i64>,
    /// Stripe `created` at or before (unix seconds).
    pub created_lte: Option<i64>,
}

impl Validate for EventFilter {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_one_of("status", self.status.as_deref(), status::ALL, &mut errors);
        check_one_of(
            "source",
            self.source.as_deref(),
            tributary_worker::inbound::ALL_SOURCES,
            &mut errors,
        );
        super::valid(errors)
    }
}

/// Filters of the delivery list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only deliveries with this status; `dead` lists the dead-letter queue.
    #[param(value_type = Option<DeliveryStatus>)]
    pub status: Option<String>,
    /// Only the deliveries of this event.
    pub event_id: Option<String>,
    /// Only the deliveries of this flow.
    pub flow_id: Option<String>,
}

impl Validate for DeliveryFilter {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_one_of("status", self.status.as_deref(), ds::ALL, &mut errors);
        super::valid(errors)
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// Also re-run steps that succeeded (never doubling a `create`).
    #[serde(default)]
    pub force: bool,
}

impl Validate for ReplayIn {}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedOut {
    pub event_id: String,
    /// The event's status now: `queued`.
    #[schema(value_type = EventStatus)]
    pub status: String,
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
    filter: &EventFilter,
    search: &super::event_search::EventSearch,
) -> Result<(Vec<EventOut>, bool), ApiError> {
    let mut select = search.narrow(
        events::Entity::find_in_tenant(&ctx.tenant_id),
        &ctx.tenant_id,
    );
    if let Some(source) = &filter.source {
        select = select.filter(events::Column::Source.eq(source.as_str()));
    }
    if let Some(t) = &filter.event_type {
        select = select.filter(events::Column::EventType.eq(t.as_str()));
    }
    if let Some(s) = &filter.status {
        select = select.filter(events::Column::Status.eq(s.as_str()));
    }
    if let Some(gte) = filter.created_gte {
        select = select.filter(events::Column::EventCreated.gte(gte));
    }
    if let Some(lte) = filter.created_lte {
        select = select.filter(events::Column::EventCreated.lte(lte));
    }
    let (rows, has_more) = page.fetch(&state.db, select, events::Column::Id).await?;
    Ok((rows.into_iter().map(EventOut::from).collect(), has_more))
}

async fn find(state: &AppState, ctx: &TenantContext, id: &str) -> Result<events::Model, ApiError> {
    super::owned::<events::Entity, _>(&state.db, ctx, id).await
}

pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<EventDetailOut, ApiError> {
    let event = find(state, ctx, id).await?;
    let deliveries = deliveries::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(deliveries::Column::EventId.eq(event.id.as_str()))
        .order_by_asc(deliveries::Column::Id)
        .all(&state.db)
        .await?;
    // The latest few attempts of every delivery, in one query.
    let latest = Expr::cust(format!(
        r#""delivery_attempts"."attempt" > (SELECT MAX("kept"."attempt") FROM "delivery_attempts" "kept" WHERE "kept"."delivery_id" = "delivery_attempts"."delivery_id") - {EVENT_VIEW_ATTEMPTS}"#
    ));
    let mut histories: HashMap<String, Vec<AttemptOut>> = HashMap::new();
    for attempt in delivery_attempts::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(delivery_attempts::Column::EventId.eq(event.id.as_str()))
        .filter(latest)
        .order_by_asc(delivery_attempts::Column::DeliveryId)
        .order_by_asc(delivery_attempts::Column::Attempt)
        .order_by_asc(delivery_attempts::Column::Id)
        .all(&state.db)
        .await?
    {
        histories
            .entry(attempt.delivery_id.clone())
            .or_default()
            .push(attempt.into());
    }
    let mut links =
        super::record_links::for_deliveries(state, ctx, event.livemode, &deliveries).await?;
    Ok(EventDetailOut {
        payload: serde_json::from_str(&event.payload).unwrap_or(Value::Null),
        event: event.into(),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryDetailOut {
                history: histories.remove(&d.id).unwrap_or_default(),
                record_url: links.remove(&d.id),
                delivery: d.into(),
            })
            .collect(),
    })
}

/// One delivery with the attempts it keeps, oldest first.
pub async fn get_delivery(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<DeliveryDetailOut, ApiError> {
    let delivery = super::owned::<deliveries::Entity, _>(&state.db, ctx, id).await?;
    let mut history: Vec<AttemptOut> = delivery_attempts::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(delivery_attempts::Column::DeliveryId.eq(delivery.id.as_str()))
        .order_by_desc(delivery_attempts::Column::Attempt)
        .order_by_desc(delivery_attempts::Column::Id)
        .limit(KEPT_ATTEMPTS as u64)
        .all(&state.db)
        .await?
        .into_iter()
        .map(AttemptOut::from)
        .collect();
    history.reverse();
    Ok(DeliveryDetailOut {
        delivery: delivery.into(),
        history,
        record_url: None,
    })
}

/// Marks the event due now and queues it.
pub(crate) async fn requeue(state: &AppState, event_id: &str) -> Result<(), ApiError> {
    let at = now();
    events::Entity::update_many()
        .set(events::ActiveModel {
            status: Set(status::QUEUED.into()),
            queued_at: Set(Some(at)),
            next_run_at: Set(Some(at)),
            processed_at: Set(None),
            updated_at: Set(at),
            ..Default::default()
        })
        .filter(events::Column::Id.eq(event_id))
        .exec(&state.db)
        .await?;
    // At the event's own priority: a replayed backfill stays behind live events.
    let priority = events::Entity::find_by_id(event_id.to_string())
        .one(&state.db)
        .await?
        .map_or(tributary_worker::queue::priority::LIVE, |e| e.priority);
    let job = ProcessEvent {
        event_id: event_id.to_string(),
        priority,
    };
    state.queue.push(job, None).await.map_err(|e| {
        tracing::warn!(
            event_id,
            error = format!("{e:#}"),
            "push failed; the sweeper will queue it"
        );
        ApiError::Unavailable(
            "the queue is not reachable; the event will be queued when it is".into(),
        )
    })
}

/// Makes a delivery pending again with a fresh set of attempts, but only if it is still in
/// the state the caller saw: a run that finished it meanwhile is never undone.
async fn reset<C: sea_orm::ConnectionTrait>(
    db: &C,
    delivery: &deliveries::Model,
    seen: &[&str],
) -> Result<bool, ApiError> {
    let applied = deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            status: Set(ds::PENDING.into()),
            attempts: Set(0),
            next_attempt_at: Set(None),
            reason: Set(None),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
        .filter(deliveries::Column::Status.is_in(seen.iter().copied()))
        // A run that claimed it meanwhile keeps it: never two calls to the vendor at once.
        .filter(deliveries::Column::UpdatedAt.eq(delivery.updated_at))
        .exec(db)
        .await?
        .rows_affected
        == 1;
    Ok(applied)
}

/// An erased event's payload holds only ids: running its flows again would write blanks.
fn refuse_erased(event: &events::Model) -> Result<(), ApiError> {
    match event.redacted_at {
        Some(_) => Err(ApiError::Conflict {
            detail: "this event's data was erased on request; it cannot run again".into(),
            field: None,
        }),
        None => Ok(()),
    }
}

/// Every status but `succeeded`.
const UNFINISHED: &[&str] = &[
    ds::PENDING,
    ds::RETRYING,
    ds::WAITING,
    ds::DEAD,
    ds::SKIPPED,
];

/// A delivery a worker is calling the vendor for right now (claimed with a live lease):
/// resetting it would let a second worker send the same write. The answer says when the
/// lease ends, by which time the call has finished or been given up.
fn refuse_in_flight(delivery: &deliveries::Model) -> Result<(), ApiError> {
    let lease_end = delivery.next_attempt_at.filter(|_| {
        delivery.status == ds::RETRYING && delivery.reason.as_deref() == Some(IN_FLIGHT)
    });
    match lease_end {
        Some(end) if end > now() => Err(ApiError::Busy {
            detail: format!(
                "delivery {} is being sent to the vendor right now; try again after {} (its \
                 result will show on the delivery first)",
                delivery.id,
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            retry_after: u64::try_from((end - now()).num_seconds())
                .unwrap_or(0)
                .max(1),
        }),
        _ => Ok(()),
    }
}

/// The reason a claimed delivery carries while its vendor call runs.
const IN_FLIGHT: &str = "in_flight";

pub async fn replay(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: ReplayIn,
) -> Result<AcceptedOut, ApiError> {
    let event = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    refuse_erased(&event)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let rows = deliveries::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(deliveries::Column::EventId.eq(event.id.as_str()))
        .all(&txn)
        .await?;
    for delivery in &rows {
        refuse_in_flight(delivery)?;
    }
    for delivery in rows {
        let reset_done = if delivery.status != ds::SUCCEEDED {
            reset(&txn, &delivery, UNFINISHED).await?
        } else if input.force && delivery.action != "create" {
            reset(&txn, &delivery, &[ds::SUCCEEDED]).await?
        } else {
            true
        };
        if !reset_done {
            return Err(ApiError::Busy {
                detail: format!(
                    "delivery {} changed while the replay was being made (a worker took it); try \
                     again",
                    delivery.id
                ),
                retry_after: 1,
            });
        }
    }
    super::audit::log(&txn, ctx, "event.replay", "event", &event.id).await?;
    txn.commit().await?;
    requeue(state, &event.id).await?;
    Ok(AcceptedOut {
        event_id: event.id,
        status: status::QUEUED.into(),
    })
}

pub async fn list_deliveries(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
    filter: &DeliveryFilter,
) -> Result<(Vec<DeliveryOut>, bool), ApiError> {
    let mut select = deliveries::Entity::find_in_tenant(&ctx.tenant_id);
    if let Some(s) = &filter.status {
        select = select.filter(deliveries::Column::Status.eq(s.as_str()));
    }
    if let Some(e) = &filter.event_id {
        select = select.filter(deliveries::Column::EventId.eq(e.as_str()));
    }
    if let Some(f) = &filter.flow_id {
        select = select.filter(deliveries::Column::FlowId.eq(f.as_str()));
    }
    let (rows, has_more) = page
        .fetch(&state.db, select, deliveries::Column::Id)
        .await?;
    Ok((rows.into_iter().map(DeliveryOut::from).collect(), has_more))
}

pub async fn retry_delivery(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<AcceptedOut, ApiError> {
    let delivery = super::owned::<deliveries::Entity, _>(&state.db, ctx, id).await?;
    ctx.require(Role::Admin)?;
    if delivery.status == ds::SUCCEEDED {
        return Err(ApiError::Conflict {
            detail: "this delivery already succeeded; replay its event with force to re-run it"
                .into(),
            field: None,
        });
    }
    refuse_in_flight(&delivery)?;
    refuse_erased(&find(state, ctx, &delivery.event_id).await?)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    if !reset(&txn, &delivery, UNFINISHED).await? {
        return Err(ApiError::Busy {
            detail: "this delivery changed meanwhile (a worker took it or finished it); look at \
                     it again"
                .into(),
            retry_after: 1,
        });
    }
    super::audit::log(&txn, ctx, "delivery.retry", "delivery", &delivery.id).await?;
    txn.commit().await?;
    requeue(state, &delivery.event_id).await?;
    Ok(AcceptedOut {
        event_id: delivery.event_id,
        status: status::QUEUED.into(),
    })
}

/// Re-queues the events whose deliveries waited on a connection that is active again.
/// Retrying deliveries that wait for their connection (a pause, a vendor's rate limit)
/// rather than for their own failure to clear.
fn held() -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(
            deliveries::Column::Reason
                .is_in(["connection paused", "connection held: rate limited"]),
        )
        .add(deliveries::Column::ErrorKind.eq("rate_limited"))
}

pub async fn release_waiting(
    state: &AppState,
    connection: &connections::Model,
) -> Result<(), ApiError> {
    // Deliveries held back by the connection's pause or rate limit are due now, too.
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            next_attempt_at: Set(Some(now())),
            ..Default::default()
        })
        .filter(deliveries::Column::TenantId.eq(connection.tenant_id.as_str()))
        .filter(deliveries::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(deliveries::Column::Status.eq(ds::RETRYING))
        .filter(held())
        .exec(&state.db)
        .await?;
    let waiting = deliveries::Entity::find_in_tenant(&connection.tenant_id)
        .filter(deliveries::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(deliveries::Column::Status.eq(ds::WAITING))
                .add(
                    sea_orm::Condition::all()
                        .add(deliveries::Column::Status.eq(ds::RETRYING))
                        .add(held()),
                ),
        )
        .all(&state.db)
        .await?;
    let mut event_ids: Vec<String> = waiting.iter().map(|d| d.event_id.clone()).collect();
    event_ids.sort();
    event_ids.dedup();
    for event_id in event_ids {
        requeue(state, &event_id).await?;
    }
    Ok(())
}
