//! `/v1/users`: the tenant's people and their roles.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{
    ClientAddress, IfMatch, ListQuery, ListResponse, Page, TenantContext, ValidJson, tag_of,
};
use crate::services::users::{self, UserIn, UserOut, UserPatch};
use crate::state::AppState;

/// Create a user
///
/// Adds a person to the tenant with a role no higher than the caller's.
#[utoipa::path(tag = "users", operation_id = "users.create", request_body(content = UserIn,
        example = json!({"email": "grace@example.com", "password": "another long passphrase", "role": "member"})),
    responses(
        (status = 201, description = "The new user.", body = UserOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/users")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<UserIn>,
) -> Result<HttpResponse, ApiError> {
    let user = users::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/users/{}", user.id)))
        .json(user))
}

/// List users
///
/// The tenant's people, newest first.
#[utoipa::path(tag = "users", operation_id = "users.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of users, newest first.", body = ListResponse<UserOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/users")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = users::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a user
///
/// One person of the tenant.
#[utoipa::path(tag = "users", operation_id = "users.get", params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user.", body = UserOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/users/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(users::get(&state, &ctx, &id).await?))
}

/// Update a user
///
/// Changes a person's role (admins and owners) or password (anyone their own, with
/// `current_password`; owners and admins anyone's they manage). A password change ends every
/// session of that person: their refresh tokens are revoked and their access tokens refused.
#[utoipa::path(tag = "users", operation_id = "users.update", request_body(content = UserPatch,
        examples(
            ("role" = (summary = "Promote to admin", value = json!({"role": "admin"}))),
            ("password" = (summary = "Change your own password", value = json!({"current_password": "the old long passphrase", "password": "a new long passphrase"}))),
            ("reset" = (summary = "Reset someone else's password", value = json!({"password": "a new long passphrase"}))))),
    params(("id" = String, Path, description = "The user's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` a GET gave; a change made meanwhile answers 412 instead of being overwritten")),
    responses(
        (status = 200, description = "The updated user (its `ETag` header names this version).", body = UserOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[patch("/v1/users/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    client: ClientAddress,
    if_match: IfMatch,
    ValidJson(patch): ValidJson<UserPatch>,
) -> Result<HttpResponse, ApiError> {
    let user = users::update(&state, &ctx, &id, patch, &client.0, &if_match).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, tag_of(&user)))
        .json(user))
}

/// Delete a user
///
/// Removes a person and ends their sessions; the last owner cannot be removed.
#[utoipa::path(tag = "users", operation_id = "users.delete", params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user is gone, with their sessions."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/users/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    users::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove);
}
