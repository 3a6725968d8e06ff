//! `/v1/stripe-accounts` and their `webhook-secrets`.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{
    IfMatch, ListQuery, ListResponse, Page, TenantContext, ValidJson, ValidQuery, tag_of,
};
use crate::services::backfills::{self, BackfillIn, BackfillOut};
use crate::services::stripe_accounts::{
    self, StripeAccountIn, StripeAccountOut, StripeAccountPatch, WebhookSecretIn, WebhookSecretOut,
};
use crate::services::test_events::{self, TestEventIn, TestEventOut, TestEventQuery};
use crate::services::webhook_endpoints;
use crate::state::AppState;

/// Register a Stripe account
///
/// Registers a Stripe account and its signing secret. The answer carries the account's
/// `webhook_url`, to give Stripe as the endpoint. Secrets are sealed and only their last four
/// characters are returned. The account's `livemode` comes from the key's prefix, or from
/// `livemode` when only a signing secret is given; a `livemode` that contradicts the key, or a
/// key that names no mode, is refused with 422. `production` takes live-mode accounts and the
/// other environments test-mode ones, unless the environment has `mixed_modes` (409 naming
/// `secret_key` or `livemode` otherwise).
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.create", request_body(content = StripeAccountIn,
        example = json!({"name": "Acme live", "secret_key": "sk_live_51Hx0000000000000000", "webhook_secret": "whsec_0123456789abcdef"})),
    responses(
        (status = 201, description = "The account with its webhook URL.", body = StripeAccountOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/stripe-accounts")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<StripeAccountIn>,
) -> Result<HttpResponse, ApiError> {
    let account = stripe_accounts::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/stripe-accounts/{}", account.id),
        ))
        .json(account))
}

/// List Stripe accounts
///
/// The tenant's Stripe accounts, newest first, with their webhook URLs.
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of accounts, newest first.", body = ListResponse<StripeAccountOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/stripe-accounts")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = stripe_accounts::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a Stripe account
///
/// One Stripe account with its webhook URL and active signing secrets (last four characters).
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.get",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account.", body = StripeAccountOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/stripe-accounts/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(stripe_accounts::get(&state, &ctx, &id).await?))
}

/// Update a Stripe account
///
/// Renames it, sets or clears its API key or pinned API version, changes the signature
/// tolerance, or tells the mode of an account whose mode is unknown. With `If-Match`, only over
/// the version read. An account never changes mode: a key (or `livemode`) of the other mode is
/// refused with 409.
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.update", request_body(content = StripeAccountPatch,
        example = json!({"name": "Acme (live)", "tolerance_seconds": 600})),
    params(("id" = String, Path, description = "The account's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` a GET gave; a change made meanwhile answers 412 instead of being overwritten")),
    responses(
        (status = 200, description = "The updated account (its `ETag` header names this version).", body = StripeAccountOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[patch("/v1/stripe-accounts/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    if_match: IfMatch,
    ValidJson(patch): ValidJson<StripeAccountPatch>,
) -> Result<HttpResponse, ApiError> {
    let account = stripe_accounts::update(&state, &ctx, &id, patch, &if_match).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, tag_of(&account)))
        .json(account))
}

/// Delete a Stripe account
///
/// Deletes the account and its signing secrets; its webhook URL answers 404 from now on.
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.delete",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 204, description = "The account and its signing secrets are gone; its webhook URL answers 404."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/stripe-accounts/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    stripe_accounts::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Add a webhook signing secret
///
/// Adds a signing secret beside the others, for rotating Stripe's endpoint secret without losing
/// events.
#[utoipa::path(tag = "stripe-accounts", operation_id = "webhook_secrets.create", request_body(content = WebhookSecretIn,
        example = json!({"secret": "whsec_0123456789abcdef"})),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 201, description = "The secret is active alongside the others.", body = WebhookSecretOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/stripe-accounts/{id}/webhook-secrets")]
async fn add_secret(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<WebhookSecretIn>,
) -> Result<HttpResponse, ApiError> {
    let secret = stripe_accounts::add_webhook_secret(&state, &ctx, &id, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/stripe-accounts/{id}/webhook-secrets/{}", secret.id),
        ))
        .json(secret))
}

/// Get a webhook signing secret
///
/// One active signing secret of the account: its last four characters and when it was added.
#[utoipa::path(tag = "stripe-accounts", operation_id = "webhook_secrets.get",
    params(("id" = String, Path, description = "The account's id"), ("sid" = String, Path, description = "The secret's id")),
    responses(
        (status = 200, description = "The secret (its last four characters).", body = WebhookSecretOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/stripe-accounts/{id}/webhook-secrets/{sid}")]
async fn get_secret(
    state: Data<AppState>,
    ctx: TenantContext,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, sid) = path.into_inner();
    Ok(
        HttpResponse::Ok()
            .json(stripe_accounts::get_webhook_secret(&state, &ctx, &id, &sid).await?),
    )
}

/// Retire a webhook signing secret
///
/// Retires a signing secret: webhooks signed with it fail verification from now on.
#[utoipa::path(tag = "stripe-accounts", operation_id = "webhook_secrets.delete",
    params(("id" = String, Path, description = "The account's id"), ("sid" = String, Path, description = "The secret's id")),
    responses(
        (status = 204, description = "The secret is retired; webhooks signed with it now fail."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
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

/// Send a test event
///
/// Stripe's "send test webhook", inside the product: a realistic test-mode event of the type,
/// with fresh ids, signed with the account's newest secret and sent through the real ingress
/// (409 for a live account, whose flows write to real records). It then runs
/// through the tenant's flows like any other event; with `?wait=10` the answer comes when the
/// event has finished (or after 10 s), and its `status` says which.
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.test_event", request_body(content = TestEventIn,
        example = json!({"type": "checkout.session.completed"})),
    params(("id" = String, Path, description = "The account's id"), TestEventQuery),
    responses(
        (status = 202, description = "A realistic event of that type, signed with the account's newest secret, went through the real ingress.", body = TestEventOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/stripe-accounts/{id}/test-events")]
async fn test_event(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidQuery(query): ValidQuery<TestEventQuery>,
    ValidJson(input): ValidJson<TestEventIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(test_events::send(&state, &ctx, &id, input, query).await?))
}

/// Register the account's webhook endpoint at Stripe
///
/// Creates the account's endpoint at Stripe (or updates the one it made, or adopts one already
/// registered for the same URL: never a duplicate) for its `webhook_url`, with exactly the
/// event types the tenant's enabled flows need and the account's pinned `api_version`. The
/// signing secret Stripe returns for a new endpoint is kept as one of the account's secrets.
/// When flows change later, the endpoint's event types follow. Needs the account's secret key
/// (or a restricted key with Webhook Endpoints write).
#[utoipa::path(tag = "stripe-accounts", operation_id = "stripe_accounts.register_webhook",
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account, with `webhook_endpoint` as Stripe now holds it.", body = StripeAccountOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 502, response = inline(responses::BadGateway))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/stripe-accounts/{id}/register-webhook")]
async fn register_webhook(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(webhook_endpoints::register(&state, &ctx, &id).await?))
}

/// Backfill events from Stripe
///
/// Reads the account's events at Stripe since `since` (at most 30 days ago; Stripe keeps no
/// older ones), oldest first, and ingests each one the inbox lacks through the same pipeline
/// as webhooks. Runs in the background and survives restarts; follow it with
/// `GET …/backfills/{bid}`.
#[utoipa::path(tag = "stripe-accounts", operation_id = "backfills.create",
    request_body(content = BackfillIn,
        example = json!({"since": "2026-11-30T00:00:00Z", "types": ["checkout.session.completed", "charge.succeeded"]})),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 202, description = "The backfill, pending; it starts within seconds.", body = BackfillOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/stripe-accounts/{id}/backfills")]
async fn create_backfill(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<BackfillIn>,
) -> Result<HttpResponse, ApiError> {
    let backfill = backfills::create(&state, &ctx, &id, input).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/v1/stripe-accounts/{id}/backfills/{}", backfill.id),
        ))
        .json(backfill))
}

/// List an account's backfills
///
/// Backfills and scheduled reconciliations of the account, newest first, with their progress.
#[utoipa::path(tag = "stripe-accounts", operation_id = "backfills.list",
    params(("id" = String, Path, description = "The account's id"), ListQuery),
    responses(
        (status = 200, description = "A page of backfills, newest first.", body = ListResponse<BackfillOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/stripe-accounts/{id}/backfills")]
async fn list_backfills(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = backfills::list(&state, &ctx, &id, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a backfill
///
/// One backfill's progress: pages read, events found, ingested, already present, failed.
#[utoipa::path(tag = "stripe-accounts", operation_id = "backfills.get",
    params(("id" = String, Path, description = "The account's id"),
        ("bid" = String, Path, description = "The backfill's id")),
    responses(
        (status = 200, description = "The backfill.", body = BackfillOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/stripe-accounts/{id}/backfills/{bid}")]
async fn get_backfill(
    state: Data<AppState>,
    ctx: TenantContext,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, bid) = path.into_inner();
    Ok(HttpResponse::Ok().json(backfills::get(&state, &ctx, &id, &bid).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(add_secret)
        .service(get_secret)
        .service(remove_secret)
        .service(test_event)
        .service(register_webhook)
        .service(create_backfill)
        .service(list_backfills)
        .service(get_backfill);
}
