//! `/v1/environments`: a tenant's environments besides `production`. A request acts in the
//! environment its `Tributary-Environment` header names (absent: `production`).

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{TenantContext, ValidJson};
use crate::services::environments::{self, EnvironmentIn, EnvironmentOut, EnvironmentPatch};
use crate::services::promotion::{self, PromoteIn, PromoteOut};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
struct EnvironmentsOut {
    data: Vec<EnvironmentOut>,
}

/// Create an environment
///
/// Makes an environment (`development`, `staging`, …) with its own Stripe accounts,
/// connections, flows, events and deliveries, invisible from the others; it starts with a
/// sandbox CRM connection. Requests act in it with the header `Tributary-Environment: <name>`.
/// Admins and owners only; at most 10 besides `production` (409 beyond, or for a name taken).
#[utoipa::path(tag = "environments", operation_id = "environments.create",
    request_body(content = EnvironmentIn, example = json!({"name": "staging"})),
    responses(
        (status = 201, description = "The environment, with a sandbox CRM connection in it.", body = EnvironmentOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/environments")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<EnvironmentIn>,
) -> Result<HttpResponse, ApiError> {
    let made = environments::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/environments/{}", made.name)))
        .json(made))
}

/// List environments
///
/// `production` first, then the tenant's other environments by name; `current` marks the one
/// this request acts in.
#[utoipa::path(tag = "environments", operation_id = "environments.list",
    responses(
        (status = 200, description = "Every environment of the tenant.", body = EnvironmentsOut),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/environments")]
async fn list(state: Data<AppState>, ctx: TenantContext) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(EnvironmentsOut {
        data: environments::list(&state, &ctx).await?,
    }))
}

/// Get an environment
///
/// One environment of the tenant, by name; `current` says whether this request acts in it.
#[utoipa::path(tag = "environments", operation_id = "environments.get",
    params(("name" = String, Path, description = "The environment's name")),
    responses(
        (status = 200, description = "The environment.", body = EnvironmentOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/environments/{name}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(environments::get(&state, &ctx, &name).await?))
}

/// Change an environment
///
/// `mixed_modes: true` lets the environment hold Stripe accounts of the other mode: test-mode
/// ones in `production`, live ones elsewhere (refused with 409 by default, so a test event never
/// reaches a production CRM and a live one never reaches a test CRM). Turning it off is refused
/// with 409 while the environment holds such accounts, which the answer names. Admins and
/// owners only.
#[utoipa::path(tag = "environments", operation_id = "environments.update",
    params(("name" = String, Path, description = "The environment's name")),
    request_body(content = EnvironmentPatch, example = json!({"mixed_modes": true})),
    responses(
        (status = 200, description = "The environment as it is now.", body = EnvironmentOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[patch("/v1/environments/{name}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    name: Path<String>,
    ValidJson(input): ValidJson<EnvironmentPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(environments::update(&state, &ctx, &name, input).await?))
}

/// Delete an environment
///
/// Deletes an environment that holds no Stripe account, flow or event (409 naming what it
/// still holds); its connections go with it. `production` cannot be deleted (409).
#[utoipa::path(tag = "environments", operation_id = "environments.delete",
    params(("name" = String, Path, description = "The environment's name")),
    responses(
        (status = 204, description = "The environment is deleted."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/environments/{name}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    name: Path<String>,
) -> Result<HttpResponse, ApiError> {
    environments::delete(&state, &ctx, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Promote a flow
///
/// Copies the flow's current version into another environment of the tenant (`to`), its
/// connections mapped to the target's: as `connections` maps them, else to the target's
/// connection of the same name. The copy is checked there first — as a flow, and each CRM
/// write against the target CRM's schema (422 naming each field the target lacks). A flow of
/// the same name in the target gets a new version (its history stays its own); else one is
/// made. Recorded in the audit log as `flow.promote.<to>`.
#[utoipa::path(tag = "flows", operation_id = "flows.promote",
    params(("id" = String, Path, description = "The flow's id")),
    request_body(content = PromoteIn, example = json!({"to": "production", "connections": {}})),
    responses(
        (status = 200, description = "The flow as it is now in the target environment.", body = PromoteOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows/{id}/promote")]
async fn promote(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<PromoteIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(promotion::promote(&state, &ctx, &id, input).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(promote);
}
