//! `/v1/api-keys`: keys for machines, shown once.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::api_keys::{self, ApiKeyCreated, ApiKeyIn, ApiKeyOut};
use crate::state::AppState;

/// Create an API key
///
/// Creates a key for scripts and machines, with a role no higher than the creator's, optionally
/// bound to one environment (404 naming `environment` for one the tenant lacks). The key itself
/// (`trb_…`) is in this response only; it is stored as a hash and cannot be read again.
#[utoipa::path(tag = "api-keys", operation_id = "api_keys.create", request_body(content = ApiKeyIn,
        example = json!({"name": "CI deploys", "role": "admin"})),
    responses(
        (status = 201, description = "The new key; `key` is shown only in this response.", body = ApiKeyCreated),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/api-keys")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<ApiKeyIn>,
) -> Result<HttpResponse, ApiError> {
    let key = api_keys::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/api-keys/{}", key.id)))
        .json(key))
}

/// Get an API key
///
/// One key, with its prefix and when it was last used; never the key itself.
#[utoipa::path(tag = "api-keys", operation_id = "api_keys.get", params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key; never the key itself.", body = ApiKeyOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/api-keys/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(api_keys::get(&state, &ctx, &id).await?))
}

/// List API keys
///
/// The tenant's keys, newest first, with their prefixes and when each was last used; never the
/// keys themselves.
#[utoipa::path(tag = "api-keys", operation_id = "api_keys.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of keys, newest first; never the keys themselves.", body = ListResponse<ApiKeyOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/api-keys")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = api_keys::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Revoke an API key
///
/// Revokes the key at once: requests made with it are refused from now on. A key with the
/// owner role can be revoked by an owner only.
#[utoipa::path(tag = "api-keys", operation_id = "api_keys.delete", params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "The key is revoked."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/api-keys/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    api_keys::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(remove);
}
