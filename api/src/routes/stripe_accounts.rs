//! `/v1/stripe-accounts` and their `webhook-secrets`.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::stripe_accounts::{
    self, StripeAccountIn, StripeAccountOut, StripeAccountPatch, WebhookSecretIn, WebhookSecretOut,
};
use crate::services::test_events::{self, TestEventIn, TestEventOut};

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.create", request_body = StripeAccountIn,
    responses(
        (status = 201, description = "The account with its webhook URL.", body = StripeAccountOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/stripe-accounts")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<StripeAccountIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(stripe_accounts::create(&state, &ctx, input).await?))
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of accounts, newest first.", body = ListResponse<StripeAccountOut>),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[get("/v1/stripe-accounts")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = stripe_accounts::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.get",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account.", body = StripeAccountOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[get("/v1/stripe-accounts/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(stripe_accounts::get(&state, &ctx, &id).await?))
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.update", request_body = StripeAccountPatch,
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The updated account.", body = StripeAccountOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[patch("/v1/stripe-accounts/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(patch): ValidJson<StripeAccountPatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(stripe_accounts::update(&state, &ctx, &id, patch).await?))
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.delete",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 204, description = "The account and its signing secrets are gone; its webhook URL answers 404."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[delete("/v1/stripe-accounts/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    stripe_accounts::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "webhook_secrets.create", request_body = WebhookSecretIn,
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 201, description = "The secret is active alongside the others.", body = WebhookSecretOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/stripe-accounts/{id}/webhook-secrets")]
async fn add_secret(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<WebhookSecretIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created()
        .json(stripe_accounts::add_webhook_secret(&state, &ctx, &id, input).await?))
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "webhook_secrets.delete",
    params(("id" = String, Path, description = "The account's id"), ("sid" = String, Path, description = "The secret's id")),
    responses(
        (status = 204, description = "The secret is retired; webhooks signed with it now fail."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[delete("/v1/stripe-accounts/{id}/webhook-secrets/{sid}")]
async fn remove_secret(
    state: Data<AppState>,
    ctx: TenantContext,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, sid) = path.into_inner();
    stripe_accounts::delete_webhook_secret(&state, &ctx, &id, &sid).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.test_event", request_body = TestEventIn,
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 202, description = "A realistic event of that type, signed with the account's newest secret, went through the real ingress.", body = TestEventOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/stripe-accounts/{id}/test-events")]
async fn test_event(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<TestEventIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(test_events::send(&state, &ctx, &id, input).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(add_secret)
        .service(remove_secret)
        .service(test_event);
}
