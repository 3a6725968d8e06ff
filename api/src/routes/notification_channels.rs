//! `/v1/notification-channels`: where a tenant's alerts go, a test send, and the alerts sent.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{IfMatch, ListQuery, ListResponse, Page, TenantContext, ValidJson, tag_of};
use crate::services::notification_channels::{
    self as channels, AlertOut, NotificationChannelIn, NotificationChannelOut,
    NotificationChannelPatch, NotificationTestOut,
};
use crate::state::AppState;

/// Create a notification channel
///
/// Adds a place for the tenant's alerts: a Slack-compatible incoming webhook (`kind: slack`),
/// or a generic webhook (`kind: webhook`) whose JSON notices are signed in
/// `Tributary-Signature`. A generated signing secret is in this response only.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.create",
    request_body(content = NotificationChannelIn, examples(
        ("slack" = (summary = "A Slack channel", value = json!({"name": "#billing-alerts", "kind": "slack",
            "url": "https://hooks.slack.com/services/T000/B000/XXXX"}))),
        ("webhook" = (summary = "A signed webhook for some alerts", value = json!({"name": "Pager", "kind": "webhook",
            "url": "https://ops.example.com/hooks/tributary",
            "alerts": ["connection.needs_reauth", "flow.failing"], "flow_failure_threshold": 3}))))),
    responses(
        (status = 201, description = "The channel; a generated `secret` is shown only in this response.", body = NotificationChannelOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/notification-channels")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<NotificationChannelIn>,
) -> Result<HttpResponse, ApiError> {
    let channel = channels::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/notification-channels/{}", channel.id),
        ))
        .json(channel))
}

/// List notification channels
///
/// The tenant's channels, newest first, each with when it last sent and its last error; never
/// a URL or a secret.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of channels, newest first.", body = ListResponse<NotificationChannelOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/notification-channels")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = channels::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a notification channel
///
/// One channel: its kind, URL hint, alert kinds, thresholds, and its latest send.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.get",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The channel.", body = NotificationChannelOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
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

/// Update a notification channel
///
/// Changes what is given: name, URL, secret (webhook channels), alert kinds, thresholds, or
/// `enabled`. The kind cannot change.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.update",
    request_body(content = NotificationChannelPatch,
        example = json!({"enabled": false, "dead_letter_threshold": 25})),
    params(("id" = String, Path, description = "The channel's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` a GET gave; a change made meanwhile answers 412 instead of being overwritten")),
    responses(
        (status = 200, description = "The updated channel (its `ETag` header names this version).", body = NotificationChannelOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[patch("/v1/notification-channels/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    if_match: IfMatch,
    ValidJson(patch): ValidJson<NotificationChannelPatch>,
) -> Result<HttpResponse, ApiError> {
    let channel = channels::update(&state, &ctx, &id, patch, &if_match).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, tag_of(&channel)))
        .json(channel))
}

/// Delete a notification channel
///
/// Removes the channel and the record of the alerts it was sent.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.delete",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 204, description = "The channel and its alert history are gone."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/notification-channels/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    channels::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Send a test notice
///
/// Sends a notice of type `test` to the channel now, whatever its alert kinds and period, and
/// tells what the receiver answered.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.test",
    params(("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "Whether the receiver took a test notice (`ok`), and what it answered.", body = NotificationTestOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/notification-channels/{id}/test")]
async fn test(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(channels::test(&state, &ctx, &id).await?))
}

/// List a channel's alerts
///
/// One entry per alert condition the channel was told of (a connection needing
/// re-authorization, the dead-letter threshold, a failing flow): its latest summary, how many
/// times it was sent, and whether the latest send went out.
#[utoipa::path(tag = "notification-channels", operation_id = "notification_channels.alerts",
    params(("id" = String, Path, description = "The channel's id"), ListQuery),
    responses(
        (status = 200, description = "The channel's alert conditions, newest first: what was said, how often, and whether it went out.", body = ListResponse<AlertOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
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
