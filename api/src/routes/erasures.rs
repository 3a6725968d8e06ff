//! `/v1/erasures`: a customer's right to be forgotten, for owners and admins.

use actix_web::web::Data;
use actix_web::{HttpResponse, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{TenantContext, ValidJson};
use crate::services::erasures::{self, ErasureIn, ErasureOut};
use crate::state::AppState;

/// Erase a person's data
///
/// Removes one email address's data from the tenant, at once and in one transaction: events
/// whose payload holds it are redacted to their Stripe ids (kept, so Stripe's retries stay
/// duplicates), and unfinished ones are closed; deliveries of those events, or that mention
/// the address, lose what was sent and answered; sandbox CRM records holding it are deleted.
/// Other tenants are untouched. The audit log records the erasure by the address's SHA-256.
/// Owners and admins only. Records already written to an external CRM are the tenant's to
/// erase there.
#[utoipa::path(tag = "erasures", operation_id = "erasures.create", request_body(content = ErasureIn,
        example = json!({"email": "ada@example.com"})),
    responses(
        (status = 200, description = "What was erased, counted.", body = ErasureOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/erasures")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<ErasureIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(erasures::erase(&state, &ctx, input).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create);
}
