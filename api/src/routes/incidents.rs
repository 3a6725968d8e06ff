//! `/v1/incidents`: what the anomaly detectors found, and acknowledging it.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, get, post, put};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson, ValidQuery};
use crate::services::incidents::{self, IncidentOut, IncidentsQuery, SensitivityIo};
use crate::state::AppState;

/// List incidents
///
/// Anomalies the detectors found in the tenant's own activity, newest first: an event series
/// gone silent, a spike of events, a flow's failure rate jumping. Each stays `open` while its
/// detector still finds it and is `resolved` when the signal is normal again; `?status=open`
/// lists what needs a look.
#[utoipa::path(tag = "incidents", operation_id = "incidents.list", params(IncidentsQuery, ListQuery),
    responses(
        (status = 200, description = "A page of incidents, newest first.", body = ListResponse<IncidentOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/incidents")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidQuery(query): ValidQuery<IncidentsQuery>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = incidents::list(&state, &ctx, &query, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get an incident
///
/// One incident with its evidence: what was expected and observed, in which window, how
/// unlikely that is under the usual rate, and where to look.
#[utoipa::path(tag = "incidents", operation_id = "incidents.get",
    params(("id" = String, Path, description = "The incident's id")),
    responses(
        (status = 200, description = "The incident.", body = IncidentOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/incidents/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(incidents::get(&state, &ctx, &id).await?))
}

/// Acknowledge an incident
///
/// Says a person has seen it (admins and owners); recorded in the audit log. The incident
/// stays open until its signal is normal again. Acknowledging it again changes nothing.
#[utoipa::path(tag = "incidents", operation_id = "incidents.acknowledge",
    params(("id" = String, Path, description = "The incident's id")),
    responses(
        (status = 200, description = "The incident, acknowledged.", body = IncidentOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/incidents/{id}/acknowledge")]
async fn acknowledge(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(incidents::acknowledge(&state, &ctx, &id).await?))
}

/// Get the detectors' sensitivity
///
/// How readily each anomaly detector speaks in this environment: `off`, `low`, `normal` (the
/// default) or `high`.
#[utoipa::path(tag = "incidents", operation_id = "anomaly_sensitivity.get",
    responses(
        (status = 200, description = "Each detector's level.", body = SensitivityIo),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/anomaly-sensitivity")]
async fn get_sensitivity(
    state: Data<AppState>,
    ctx: TenantContext,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(incidents::sensitivity(&state, &ctx).await?))
}

/// Set the detectors' sensitivity
///
/// Every detector's level at once (one left out is `normal`), for admins and owners; audited.
/// `high` speaks earlier and more often, `low` only at the most unlikely, `off` never (and
/// what that detector had open resolves at the next round).
#[utoipa::path(tag = "incidents", operation_id = "anomaly_sensitivity.replace",
    request_body(content = SensitivityIo, examples(
        ("quieter" = (summary = "No spike incidents; amounts only when very odd", value = json!({"spike": "off", "amount": "low"}))))),
    responses(
        (status = 200, description = "Each detector's level now.", body = SensitivityIo),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[put("/v1/anomaly-sensitivity")]
async fn put_sensitivity(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<SensitivityIo>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(incidents::set_sensitivity(&state, &ctx, input).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(get_one)
        .service(acknowledge)
        .service(get_sensitivity)
        .service(put_sensitivity);
}
