//! A flow's history and safe change: `/v1/flows/{id}/versions/{v}`, `/diff`, `/rollback` and
//! `/dry-run`.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{MaybeJson, TenantContext, ValidJson, ValidQuery};
use crate::services::bulk_jobs::{self, BulkAcceptedOut};
use crate::services::dry_run::types::{DryRunIn, DryRunOut};
use crate::services::flow_history::{self, DiffOut, DiffQuery, RollbackIn};
use crate::services::flows::{self, FlowOut, FlowVersionOut};
use crate::state::AppState;

/// Get a flow version
///
/// One version of the flow, as `GET /v1/flows/{id}/versions` lists it.
#[utoipa::path(tag = "flows", operation_id = "flows.version_get",
    params(("id" = String, Path, description = "The flow's id"),
        ("v" = i64, Path, minimum = 1, maximum = 2147483647, description = "The version number")),
    responses(
        (status = 200, description = "The version: its number, the whole flow as it was, and when it was saved.", body = FlowVersionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flows/{id}/versions/{v}")]
async fn version_get(
    state: Data<AppState>,
    ctx: TenantContext,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, v) = path.into_inner();
    Ok(HttpResponse::Ok().json(flow_history::version(&state, &ctx, &id, &v).await?))
}

/// Compare two flow versions
///
/// What changed between two versions, structurally: steps are matched by their `id` (a step
/// that changed place is `moved`, with its old and new index), `trigger`, `fields` and
/// `match` are compared key by key. By default `to` is the current version and `from` the one
/// before it; `from=0` compares with no flow at all.
#[utoipa::path(tag = "flows", operation_id = "flows.diff",
    params(("id" = String, Path, description = "The flow's id"), DiffQuery),
    responses(
        (status = 200, description = "Every change from `from` to `to`, in a stable order.", body = DiffOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flows/{id}/diff")]
async fn diff(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidQuery(query): ValidQuery<DiffQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flow_history::diff(&state, &ctx, &id, &query).await?))
}

/// Roll a flow back
///
/// Makes a new version equal to an earlier one, as replacing the flow with that version's
/// document would: it is checked the same way, `If-Match` works the same way (a stale tag
/// answers 412), and the audit log records it as a `flow.update`. History is kept: rolling
/// back to version 2 of a flow at version 5 makes version 6. A version that can no longer be
/// saved as it is (its connection was deleted since) answers 409.
#[utoipa::path(tag = "flows", operation_id = "flows.rollback",
    params(("id" = String, Path, description = "The flow's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` of the flow's current version, e.g. `\"v5\"`; a stale one answers 412")),
    request_body(content = RollbackIn, example = json!({"version": 1})),
    responses(
        (status = 200, description = "The flow at its new version, equal to the one restored (its `ETag` header names it).", body = FlowOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows/{id}/rollback")]
async fn rollback(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    req: HttpRequest,
    ValidJson(input): ValidJson<RollbackIn>,
) -> Result<HttpResponse, ApiError> {
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let flow = flow_history::rollback(&state, &ctx, &id, &input, if_match).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, flows::etag(flow.version)))
        .json(flow))
}

/// Dry-run a flow on stored events
///
/// Runs a stored `version` or a draft `flow` (by default the current version) on stored events
/// and compares, event by event, the operations it would send with those the flow's
/// deliveries sent. Events are `event_ids`, or the newest `limit` (100; at most 500) matching
/// `filter`, by default of the types the triggers listen to. Writes nothing anywhere: no
/// delivery, no CRM or Stripe call. `changed` counts events with at least one change,
/// `failing` those the tried flow fails on while the current version does not. An id in
/// `event_ids` the inbox does not have answers 404. Counts against the preview rate, one per
/// 100 events.
///
/// With `"background": true` (admins and owners; up to 10,000 events) it answers 202 at once
/// with a bulk job: follow its progress at `GET /v1/bulk-jobs/{job_id}`, whose `dry_run` holds
/// the answer when it is done (409 while another bulk job of the tenant runs).
#[utoipa::path(tag = "flows", operation_id = "flows.dry_run",
    params(("id" = String, Path, description = "The flow's id")),
    request_body(content = DryRunIn,
        description = "What to try and on which events; an empty body tries the current version on the newest 100 events its trigger listens to.",
        example = json!({"version": 2, "filter": {"type": "charge.succeeded", "created_gte": 1764547200}, "limit": 100})),
    responses(
        (status = 200, description = "Per event, what the tried flow would send and how it differs from what was sent; nothing is written.", body = DryRunOut),
        (status = 202, description = "`background`: the dry run is a bulk job; follow it at `GET /v1/bulk-jobs/{job_id}`.", body = BulkAcceptedOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 429, response = inline(responses::TooManyRequests))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows/{id}/dry-run")]
async fn dry_run(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    MaybeJson(input): MaybeJson<DryRunIn>,
) -> Result<HttpResponse, ApiError> {
    let input = input.unwrap_or_default();
    if input.background {
        let accepted = bulk_jobs::dry_run(&state, &ctx, &id, input).await?;
        bulk_jobs::kick(state.into_inner());
        return Ok(HttpResponse::Accepted().json(accepted));
    }
    let out: DryRunOut = crate::services::dry_run::dry_run(&state, &ctx, &id, &input).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Mounted before the flows' own routes, so these paths are never read as a flow's.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(version_get)
        .service(diff)
        .service(rollback)
        .service(dry_run);
}
