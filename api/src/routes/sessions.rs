//! Sign-up, login, token refresh, `/v1/me`, and switching between a person's tenants.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpResponse, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::{ApiError, Problem};
use crate::extract::{ClientAddress, ListResponse, TenantContext, ValidJson};
use crate::services::sessions::{
    self, LoginIn, MeOut, RefreshIn, SignupIn, SignupOut, SwitchIn, TenantChoice, TokenPair,
};
use crate::state::AppState;

/// Sign up
///
/// Creates a tenant and its owner and returns a first token pair. No authentication; refused with
/// 403 when the operator closed sign-up, and with 429 and `Retry-After` beyond the sign-up rate
/// of the client's address (`TRIBUTARY_SIGNUP_RATE`).
#[utoipa::path(tag = "auth", operation_id = "signup.create", request_body(content = SignupIn,
        example = json!({"tenant_name": "Acme", "email": "ada@example.com", "password": "correct horse battery"})),
    responses(
        (status = 201, description = "The new tenant, its owner and a first token pair.", body = SignupOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/v1/signup")]
async fn signup(
    state: Data<AppState>,
    client: ClientAddress,
    ValidJson(input): ValidJson<SignupIn>,
) -> Result<HttpResponse, ApiError> {
    // The new tenant and its owner are what `GET /v1/me` shows to the new tokens.
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/v1/me"))
        .json(sessions::signup(&state, input, &client.0).await?))
}

/// Log in
///
/// Exchanges an e-mail and password for an access token (a JWT) and a refresh token. No
/// authentication. Every attempt is counted before the password is checked; repeated failures
/// are throttled with 429 and `Retry-After` (per client address and account, with a bounded
/// ceiling per account), and a server busy checking passwords answers 503 with `Retry-After`.
#[utoipa::path(tag = "auth", operation_id = "login.create", request_body(content = LoginIn,
        example = json!({"email": "ada@example.com", "password": "correct horse battery"})),
    responses(
        (status = 200, description = "A token pair.", body = TokenPair),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/v1/login")]
async fn login(
    state: Data<AppState>,
    client: ClientAddress,
    ValidJson(input): ValidJson<LoginIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::login(&state, input, &client.0).await?))
}

/// Refresh tokens
///
/// Exchanges a refresh token for a new token pair. Each refresh token works once; presenting a
/// spent one revokes the whole login. No other authentication.
#[utoipa::path(tag = "auth", operation_id = "token.refresh", request_body(content = RefreshIn,
        example = json!({"refresh_token": "rt_…"})),
    responses(
        (status = 200, description = "A new token pair; the presented refresh token is spent.", body = TokenPair),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(()))]
#[post("/v1/token/refresh")]
async fn refresh(
    state: Data<AppState>,
    client: ClientAddress,
    ValidJson(input): ValidJson<RefreshIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::refresh(&state, input, &client.0).await?))
}

/// Log out
///
/// Ends the caller's session: the refresh tokens of this login are revoked and its access
/// tokens are refused from their next request. Other sessions of the same person continue. An
/// API key has no session: it is refused with 403 (revoke it with `DELETE /v1/api-keys/{id}`).
#[utoipa::path(tag = "auth", operation_id = "logout.create",
    responses(
        (status = 204, description = "The session is over."),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, description = "Called with an API key, which has no session to end.", body = Problem, content_type = "application/problem+json")),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/logout")]
async fn logout(state: Data<AppState>, ctx: TenantContext) -> Result<HttpResponse, ApiError> {
    sessions::logout(&state, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who am I
///
/// The caller's tenant and role, and the user or API key the request was made with.
#[utoipa::path(tag = "auth", operation_id = "me.get",
    responses(
        (status = 200, description = "The caller, its tenant and its role.", body = MeOut),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/me")]
async fn me(state: Data<AppState>, ctx: TenantContext) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::me(&state, &ctx).await?))
}

/// List my tenants
///
/// The tenants the signed-in person can act in and switch to: their home tenant first, then
/// the tenants they were invited into, each with their role there and whether it is the
/// tenant of this request. An API key lists its own tenant only.
#[utoipa::path(tag = "auth", operation_id = "me.tenants",
    responses(
        (status = 200, description = "Every tenant of the caller (never more than one page).", body = ListResponse<TenantChoice>),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/me/tenants")]
async fn my_tenants(state: Data<AppState>, ctx: TenantContext) -> Result<HttpResponse, ApiError> {
    let data = sessions::tenants(&state, &ctx).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, false)))
}

/// Switch tenant
///
/// Starts a session in another tenant of the signed-in person (one of `GET /v1/me/tenants`)
/// and answers its token pair, as a login does; the session the request was made with goes on.
/// The role is the person's role in that tenant. A tenant the person does not belong to
/// answers 404 naming `tenant_id`, whether or not it exists. API keys belong to one tenant:
/// 403. Recorded in the audit log of both tenants.
#[utoipa::path(tag = "auth", operation_id = "auth.switch", request_body(content = SwitchIn,
        example = json!({"tenant_id": "01939b7e-8c2a-7d4e-9f10-2b3c4d5e6f70"})),
    responses(
        (status = 200, description = "A token pair for the other tenant.", body = TokenPair),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, description = "Called with an API key, which belongs to one tenant.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The person is no member of that tenant (`errors` names `tenant_id`).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/auth/switch")]
async fn switch(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<SwitchIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(sessions::switch(&state, &ctx, &input, false).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(signup)
        .service(login)
        .service(refresh)
        .service(logout)
        .service(me)
        .service(my_tenants)
        .service(switch);
}
