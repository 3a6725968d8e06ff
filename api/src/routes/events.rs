//! `/v1/events` (the inbox, replay) and `/v1/deliveries` (attempts and their history, the
//! dead-letter queue).

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, MaybeJson, Page, TenantContext, ValidQuery};
use crate::services::event_search::EventSearch;
use crate::services::events::{
    self, AcceptedOut, DeliveryDetailOut, DeliveryFilter, DeliveryOut, EventDetailOut, EventFilter,
    EventOut, ReplayIn,
};
use crate::state::AppState;

/// List events
///
/// The inbox: every Stripe event received, newest first, with its status. Filter by `type`,
/// `status` and Stripe's `created` time; find events by Stripe event id, Stripe object id or
/// customer email (`search`), or by the flow or connection they were delivered through.
#[utoipa::path(tag = "events", operation_id = "events.list", params(EventFilter, EventSearch, ListQuery),
    responses(
        (status = 200, description = "A page of received events, newest first.", body = ListResponse<EventOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/events")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidQuery(filter): ValidQuery<EventFilter>,
    ValidQuery(search): ValidQuery<EventSearch>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = events::list(&state, &ctx, &page, &filter, &search).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get an event
///
/// One event with its payload as Stripe sent it and every delivery it caused, each with its
/// latest 10 attempts (`history`, oldest first; `GET /v1/deliveries/{id}` has all it keeps).
#[utoipa::path(tag = "events", operation_id = "events.get", params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event, its payload and its deliveries.", body = EventDetailOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/events/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(events::get(&state, &ctx, &id).await?))
}

/// Replay an event
///
/// Queues the event again: its steps that did not succeed run again. With `force`, steps that
/// succeeded run again too (a `create` is never doubled). An erased event (`redacted_at`) cannot
/// be replayed (409).
#[utoipa::path(tag = "events", operation_id = "events.replay", request_body(content = Option<ReplayIn>,
        description = "Optional: no body replays the steps that did not succeed.",
        example = json!({"force": true})),
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Queued again: steps that did not succeed run again (all but creates with `force`).", body = AcceptedOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 503, response = inline(responses::Unavailable))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/events/{id}/replay")]
async fn replay(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    MaybeJson(input): MaybeJson<ReplayIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted()
        .json(events::replay(&state, &ctx, &id, input.unwrap_or_default()).await?))
}

/// List deliveries
///
/// Every step's attempts against a CRM, newest first; `status=dead` is the dead-letter queue.
/// Filter by `status`, `event_id` or `flow_id`.
#[utoipa::path(tag = "deliveries", operation_id = "deliveries.list", params(DeliveryFilter, ListQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first; `status=dead` is the dead-letter queue.", body = ListResponse<DeliveryOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/deliveries")]
async fn list_deliveries(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidQuery(filter): ValidQuery<DeliveryFilter>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = events::list_deliveries(&state, &ctx, &page, &filter).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a delivery
///
/// One delivery with its history: every attempt it keeps (the latest 50), oldest first, each
/// with its time, duration, request summary, vendor status, error and an excerpt of the
/// vendor's answer, redacted.
#[utoipa::path(tag = "deliveries", operation_id = "deliveries.get", params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery and its attempts, oldest first.", body = DeliveryDetailOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/deliveries/{id}")]
async fn get_delivery(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(events::get_delivery(&state, &ctx, &id).await?))
}

/// Retry a delivery
///
/// Runs a delivery again with a fresh set of attempts, typically a dead letter after the cause was
/// fixed.
#[utoipa::path(tag = "deliveries", operation_id = "deliveries.retry", params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "The delivery runs again with a fresh set of attempts.", body = AcceptedOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/deliveries/{id}/retry")]
async fn retry(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(events::retry_delivery(&state, &ctx, &id).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(get_one)
        .service(replay)
        .service(list_deliveries)
        .service(get_delivery)
        .service(retry);
}
