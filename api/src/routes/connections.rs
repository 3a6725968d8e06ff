//! `/v1/connections`: CRM connections, their test call and the sandbox's records.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson, ValidQuery};
use crate::services::connections::{
    self, ConnectionIn, ConnectionOut, ConnectionPatch, ConnectionTestOut, SandboxRecordOut,
};

#[utoipa::path(tag = "connections", operation_id = "connections.create", request_body = ConnectionIn,
    responses(
        (status = 201, description = "The connection.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/connections")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<ConnectionIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(connections::create(&state, &ctx, input).await?))
}

#[utoipa::path(tag = "connections", operation_id = "connections.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of connections, newest first.", body = ListResponse<ConnectionOut>),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer" = [])))]
#[get("/v1/connections")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = connections::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

#[utoipa::path(tag = "connections", operation_id = "connections.get", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[get("/v1/connections/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ConnectionOut::from(
        connections::find(&state, &ctx, &id).await?,
    )))
}

#[utoipa::path(tag = "connections", operation_id = "connections.update", request_body = ConnectionPatch,
    params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The updated connection; waiting deliveries are released when it is active.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[patch("/v1/connections/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(patch): ValidJson<ConnectionPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(connections::update(&state, &ctx, &id, patch).await?))
}

#[utoipa::path(tag = "connections", operation_id = "connections.delete", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 204, description = "The connection (and a sandbox's records) are gone."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[delete("/v1/connections/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    connections::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(tag = "connections", operation_id = "connections.test", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The result of one cheap authenticated call.", body = ConnectionTestOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[post("/v1/connections/{id}/test")]
async fn test(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(connections::test(&state, &ctx, &id).await?))
}

#[utoipa::path(tag = "connections", operation_id = "connections.reauthorize", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection with a new `authorize_url`; completing it makes the connection active and runs its waiting deliveries.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/connections/{id}/reauthorize")]
async fn reauthorize(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(connections::reauthorize(&state, &ctx, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsFilter {
    /// Only records of this object, e.g. `contacts`.
    pub object: Option<String>,
}

#[utoipa::path(tag = "connections", operation_id = "connections.records",
    params(("id" = String, Path, description = "The sandbox connection's id"), RecordsFilter, ListQuery),
    responses(
        (status = 200, description = "A page of the sandbox's records, newest first.", body = ListResponse<SandboxRecordOut>),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[get("/v1/connections/{id}/records")]
async fn records(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidQuery(filter): ValidQuery<RecordsFilter>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) =
        connections::records(&state, &ctx, &id, filter.object.as_deref(), &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(test)
        .service(reauthorize)
        .service(records);
}
