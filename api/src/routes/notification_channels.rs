//! `/v1/notification-channels`: where a tenant's alerts go, a test send, and the alerts sent.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::notification_channels::{
    self as channels, AlertOut, NotificationChannelIn, NotificationChannelOut,
    NotificationChannelPatch, NotificationTestOut,
};

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.create",
    request_body = NotificationChannelIn,
    responses(
        (status = 201, description = "The channel; a generated `secret` is shown only in this response.", body = NotificationChannelOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/notification-channels")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<NotificationChannelIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(channels::create(&state, &ctx, input).await?))
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of channels, newest first.", body = ListResponse<NotificationChannelOut>),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[get("/v1/notification-channels")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = channels::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.get",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The channel.", body = NotificationChannelOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[get("/v1/notification-channels/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(NotificationChannelOut::from(
        channels::find(&state, &ctx, &id).await?,
    )))
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.update",
    request_body = NotificationChannelPatch,
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The updated channel.", body = NotificationChannelOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[patch("/v1/notification-channels/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(patch): ValidJson<NotificationChannelPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(channels::update(&state, &ctx, &id, patch).await?))
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.delete",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 204, description = "The channel and its alert history are gone."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[delete("/v1/notification-channels/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    channels::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.test",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "Whether the receiver took a test notice (`ok`), and what it answered.", body = NotificationTestOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[post("/v1/notification-channels/{id}/test")]
async fn test(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(channels::test(&state, &ctx, &id).await?))
}

#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.alerts",
    params(("id" = String, Path, description = "The channel's id"), ListQuery),
    responses(
        (status = 200, description = "The channel's alert conditions, newest first: what was said, how often, and whether it went out.", body = ListResponse<AlertOut>),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[get("/v1/notification-channels/{id}/alerts")]
async fn alerts(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = channels::alerts(&state, &ctx, &id, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(test)
        .service(alerts);
}
