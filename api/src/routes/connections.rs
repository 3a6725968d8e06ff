//! `/v1/connections`: CRM connections, their test call, their objects' fields and the sandbox's
//! records.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, patch, post};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{
    IfMatch, ListQuery, ListResponse, Page, TenantContext, ValidJson, ValidQuery, tag_of,
};
use crate::services::connections::{
    self, ConnectionIn, ConnectionOut, ConnectionPatch, ConnectionTestOut, RateLimitOut,
    SandboxRecordOut,
};
use crate::services::schema::{self, ObjectFieldsOut};
use crate::services::watches::{PollOut, WatchOut};
use crate::state::AppState;

/// Create a connection
///
/// Connects a CRM: `sandbox` (built in, no credentials), `hubspot`, `salesforce`, `zoho` or any
/// `http` CRM. Credentials are sealed and never returned. With `auth.type` `oauth` the connection
/// starts `pending_authorization` and the answer carries an `authorize_url`. A tenant has at
/// most `TRIBUTARY_MAX_CONNECTIONS` connections (409 beyond).
#[utoipa::path(tag = "connections", operation_id = "connections.create", request_body(content = ConnectionIn,
        examples(
            ("sandbox" = (summary = "The built-in sandbox CRM (no credentials)",
                value = json!({"name": "Sandbox", "provider": "sandbox"}))),
            ("hubspot" = (summary = "HubSpot with a private-app token",
                value = json!({"name": "HubSpot prod", "provider": "hubspot",
                    "auth": {"type": "token", "token": "pat-na1-…"}}))),
            ("hubspot_oauth" = (summary = "HubSpot through the OAuth browser flow (answers an authorize_url)",
                value = json!({"name": "HubSpot", "provider": "hubspot", "auth": {"type": "oauth"}}))),
            ("salesforce" = (summary = "Salesforce with the JWT bearer flow",
                value = json!({"name": "Salesforce", "provider": "salesforce",
                    "auth": {"type": "jwt_bearer", "client_id": "3MVG9…", "username": "integration@acme.com",
                        "private_key": "-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----\n"},
                    "settings": {"login_url": "https://login.salesforce.com", "api_version": "60.0"}}))),
            ("zoho" = (summary = "Zoho CRM with a refresh token, EU data centre",
                value = json!({"name": "Zoho", "provider": "zoho", "settings": {"data_center": "eu"},
                    "auth": {"type": "refresh_token", "client_id": "1000.…", "client_secret": "…", "refresh_token": "1000.…"}}))),
            ("http" = (summary = "Any HTTP CRM, requests signed with HMAC",
                value = json!({"name": "Our CRM", "provider": "http",
                    "settings": {"base_url": "https://crm.example.com/api", "headers": {"X-Tenant": "acme"}},
                    "auth": {"type": "hmac", "secret": "…", "header": "X-Signature"}}))),
            ("smtp" = (summary = "A mail server for email steps",
                value = json!({"name": "Onboarding mail", "provider": "smtp",
                    "settings": {"host": "smtp.example.com", "port": 587, "tls": "starttls",
                                 "from": "welcome@example.com", "from_name": "Acme"},
                    "auth": {"type": "basic", "username": "mailer", "password": "…"}}))))),
    responses(
        (status = 201, description = "The connection.", body = ConnectionOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/connections")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<ConnectionIn>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::create(&state, &ctx, input).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/connections/{}", connection.id),
        ))
        .json(connection))
}

/// List connections
///
/// The tenant's CRM connections, newest first.
#[utoipa::path(tag = "connections", operation_id = "connections.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of connections, newest first.", body = ListResponse<ConnectionOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/connections")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = connections::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a connection
///
/// One connection: its provider, settings, status and what the vendor reported about it; never its
/// credentials. Its rate budget is at `GET /v1/connections/{id}/rate-limit`.
#[utoipa::path(tag = "connections", operation_id = "connections.get", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/connections/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(connections::out(
        &state,
        connections::find(&state, &ctx, &id).await?,
    )))
}

/// A connection's rate budget
///
/// The rate budget every process's requests to the connection share: the limit and where it
/// comes from (its `rate_limit` setting, the vendor's headers, the vendor's documented
/// default), the requests reserved ahead across every process, and any hold (a vendor's
/// `Retry-After`). Live state, so apart from the connection, whose `ETag` names its version.
#[utoipa::path(tag = "connections", operation_id = "connections.rate_limit", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection's rate budget as it stands.", body = RateLimitOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/connections/{id}/rate-limit")]
async fn rate_limit(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::find(&state, &ctx, &id).await?;
    Ok(HttpResponse::Ok().json(connections::rate_limit(&state, &connection).await?))
}

/// Update a connection
///
/// Renames it, replaces its credentials or settings, or disables and re-enables it. New
/// credentials make a `needs_reauth` connection `active` again and release its waiting deliveries.
/// With `If-Match`, only over the version read.
#[utoipa::path(tag = "connections", operation_id = "connections.update", request_body(content = ConnectionPatch,
        examples(
            ("disable" = (summary = "Stop deliveries for now", value = json!({"status": "disabled"}))),
            ("credentials" = (summary = "New credentials", value = json!({"auth": {"type": "token", "token": "pat-na1-…"}}))))),
    params(("id" = String, Path, description = "The connection's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` a GET gave; a change made meanwhile answers 412 instead of being overwritten")),
    responses(
        (status = 200, description = "The updated connection (its `ETag` header names this version); waiting deliveries are released when it is active.", body = ConnectionOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[patch("/v1/connections/{id}")]
async fn update(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    if_match: IfMatch,
    ValidJson(patch): ValidJson<ConnectionPatch>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::update(&state, &ctx, &id, patch, &if_match).await?;
    // The tag of the connection as GET shows it: without the one-time `authorize_url`.
    let tag = tag_of(&ConnectionOut {
        authorize_url: None,
        ..connection.clone()
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, tag))
        .json(connection))
}

/// Delete a connection
///
/// Deletes the connection; a sandbox connection's records go with it.
#[utoipa::path(tag = "connections", operation_id = "connections.delete", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 204, description = "The connection (and a sandbox's records) are gone."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/connections/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    connections::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Test a connection
///
/// Makes one cheap authenticated call to the CRM and reports whether it worked, with the vendor's
/// status and the error kind on failure.
#[utoipa::path(tag = "connections", operation_id = "connections.test", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The result of one cheap authenticated call.", body = ConnectionTestOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/connections/{id}/test")]
async fn test(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(connections::test(&state, &ctx, &id).await?))
}

/// List what a connection watches
///
/// For connections with `settings.watch`: each object's polling cursor, the API calls polling
/// made (they count against the org's daily limit), when it was polled and is polled next,
/// Zoho's notification channel and its expiry, and the last error.
#[utoipa::path(tag = "connections", operation_id = "connections.watches", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection's watches.", body = Vec<WatchOut>),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/connections/{id}/watches")]
async fn watches(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(crate::services::watches::list(&state, &ctx, &id).await?))
}

/// Poll a connection's CRM now
///
/// Polls every object the connection watches (Salesforce on `SystemModstamp`, Zoho on
/// `Modified_Time`) without waiting for `poll_seconds`, or enables and renews a Zoho
/// notification channel; the changes found are stored as events and run the CRM's flows. A
/// connection that is not an active Salesforce or Zoho connection watching something answers
/// 409 naming what to change.
#[utoipa::path(tag = "connections", operation_id = "connections.poll", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "What the poll stored, and each watch after it.", body = PollOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 502, response = inline(responses::BadGateway))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/connections/{id}/poll")]
async fn poll(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(crate::services::watches::poll(&state, &ctx, &id).await?))
}

/// Reauthorize a connection
///
/// Starts the OAuth browser flow again for an `oauth` connection: the answer carries a new
/// single-use `authorize_url`.
#[utoipa::path(tag = "connections", operation_id = "connections.reauthorize", params(("id" = String, Path, description = "The connection's id")),
    responses(
        (status = 200, description = "The connection with a new `authorize_url`; completing it makes the connection active and runs its waiting deliveries.", body = ConnectionOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
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

impl crate::extract::Validate for RecordsFilter {}

/// List a sandbox connection's records
///
/// The records the built-in sandbox CRM holds for this connection, newest first, optionally of one
/// object (`leads`, `contacts`, …). Only sandbox connections have records here.
#[utoipa::path(tag = "connections", operation_id = "connections.records",
    params(("id" = String, Path, description = "The sandbox connection's id"), RecordsFilter, ListQuery),
    responses(
        (status = 200, description = "A page of the sandbox's records, newest first.", body = ListResponse<SandboxRecordOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FieldsQuery {
    /// The CRM object whose fields to list: Salesforce's `Contact`, HubSpot's `contacts`,
    /// Zoho's `Leads`, a sandbox's `contacts`.
    #[param(required = true, value_type = String, min_length = 1, max_length = 80,
        pattern = "^[A-Za-z_][A-Za-z0-9_]{0,79}$", example = "Contact")]
    pub object: Option<String>,
}

impl crate::extract::Validate for FieldsQuery {
    fn validate(&self) -> Result<(), Vec<crate::error::FieldError>> {
        match self.object.as_deref() {
            None => Err(vec![crate::error::FieldError::new(
                "object",
                "name the CRM object whose fields to list",
            )]),
            Some(object) if !tributary_worker::crm::is_object_name(object) => {
                Err(vec![crate::error::FieldError::new(
                    "object",
                    format!("must match {}", tributary_worker::crm::OBJECT_NAME_PATTERN),
                )])
            }
            Some(_) => Ok(()),
        }
    }
}

/// List a CRM object's fields
///
/// The fields of one object in the connection's CRM, for mapping Stripe data onto them:
/// required fields first, then by label. Salesforce's come from the object's describe (fields
/// that can be created or updated), HubSpot's from its properties (those whose value can be
/// written), Zoho's from the module's field settings (those not read-only), all with `source`
/// `vendor`; a sandbox's are the fields its stored records of the object hold (`source`
/// `seen`, typed by their JSON values). An object the CRM does not have answers 404; an `http`
/// or `smtp` connection, which has no schema to read, 409; so do credentials the CRM refuses
/// and a CRM that cannot be reached or fails now (409 saying which; try again later). A read
/// changes nothing, not even the connection's status.
#[utoipa::path(tag = "connections", operation_id = "connections.fields",
    params(("id" = String, Path, description = "The connection's id"), FieldsQuery),
    responses(
        (status = 200, description = "The object's fields, required first, then by label.", body = ObjectFieldsOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/connections/{id}/fields")]
async fn fields(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidQuery(query): ValidQuery<FieldsQuery>,
) -> Result<HttpResponse, ApiError> {
    let object = query.object.unwrap_or_default();
    Ok(HttpResponse::Ok().json(schema::fields(&state, &ctx, &id, &object).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(rate_limit)
        .service(update)
        .service(remove)
        .service(test)
        .service(reauthorize)
        .service(watches)
        .service(poll)
        .service(records)
        .service(fields);
}
