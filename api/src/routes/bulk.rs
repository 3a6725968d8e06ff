//! Bulk actions: `POST /v1/deliveries/retry`, `POST /v1/events/replay`, and their jobs at
//! `/v1/bulk-jobs`.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::bulk_jobs::{
    self, BulkAcceptedOut, BulkJobDetailOut, BulkJobOut, BulkReplayIn, BulkRetryIn,
};
use crate::state::AppState;

/// Retry many deliveries
///
/// Retries every delivery that matches the filter — by default every dead letter — in the
/// background, each exactly as `POST /v1/deliveries/{id}/retry` would. Answers at once with the
/// job and how many deliveries it covers; follow it at `GET /v1/bulk-jobs/{id}`. A delivery
/// being sent to the vendor at the moment the job reaches it is not retried (counted under
/// `failed`, with the reason). At most `TRIBUTARY_MAX_BULK_ITEMS` (10,000) deliveries: more is
/// a 422 asking to narrow the filter. One bulk job runs at a time per tenant (409).
#[utoipa::path(tag = "deliveries", operation_id = "deliveries.retry_many",
    request_body(content = BulkRetryIn, description = "Which deliveries: every field narrows the match.",
        example = json!({"status": "dead", "flow_id": "0190f5c2-7a3e-7c4e-9b1a-3f6d2e8a9c10",
            "event_type": "charge.succeeded", "created_gte": 1764547200, "created_lt": 1764633600})),
    responses(
        (status = 202, description = "The job, queued, with how many deliveries it covers.", body = BulkAcceptedOut,
            example = json!({"job_id": "0190f5c2-9d41-7c4e-9b1a-3f6d2e8a9c11", "count": 42, "status": "queued"})),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/deliveries/retry")]
async fn retry_many(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<BulkRetryIn>,
) -> Result<HttpResponse, ApiError> {
    let accepted = bulk_jobs::retry(&state, &ctx, input).await?;
    bulk_jobs::kick(state.into_inner());
    Ok(HttpResponse::Accepted().json(accepted))
}

/// Replay many events
///
/// Replays every event that matches the filter in the background, each exactly as
/// `POST /v1/events/{id}/replay` would (with `force`, succeeded steps too, never doubling a
/// `create`). Erased events are left out. Answers at once with the job and how many events it
/// covers; follow it at `GET /v1/bulk-jobs/{id}`. At most `TRIBUTARY_MAX_BULK_ITEMS` (10,000)
/// events: more is a 422 asking to narrow the filter. One bulk job runs at a time per tenant
/// (409).
#[utoipa::path(tag = "events", operation_id = "events.replay_many",
    request_body(content = BulkReplayIn, description = "Which events: every field narrows the match.",
        example = json!({"search": "cus_QXg1o8vcGmoR32", "status": "failed", "created_gte": 1764547200})),
    responses(
        (status = 202, description = "The job, queued, with how many events it covers.", body = BulkAcceptedOut,
            example = json!({"job_id": "0190f5c2-9d41-7c4e-9b1a-3f6d2e8a9c11", "count": 3, "status": "queued"})),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/events/replay")]
async fn replay_many(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<BulkReplayIn>,
) -> Result<HttpResponse, ApiError> {
    let accepted = bulk_jobs::replay(&state, &ctx, input).await?;
    bulk_jobs::kick(state.into_inner());
    Ok(HttpResponse::Accepted().json(accepted))
}

/// List bulk jobs
///
/// The tenant's bulk retries and replays, newest first (the latest 20 finished ones are kept).
#[utoipa::path(tag = "bulk-jobs", operation_id = "bulk_jobs.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of bulk jobs, newest first.", body = ListResponse<BulkJobOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/bulk-jobs")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = bulk_jobs::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a bulk job
///
/// A bulk job's progress: how many items it covers, how many were retried or replayed, how
/// many were refused, and the first refusals with their reasons.
#[utoipa::path(tag = "bulk-jobs", operation_id = "bulk_jobs.get",
    params(("id" = String, Path, description = "The bulk job's id")),
    responses(
        (status = 200, description = "The job and its progress.", body = BulkJobDetailOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/bulk-jobs/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(bulk_jobs::get(&state, &ctx, &id).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(retry_many)
        .service(replay_many)
        .service(list)
        .service(get_one);
}
