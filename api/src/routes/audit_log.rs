//! `/v1/audit-log`: who changed what, for admins.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext};
use crate::services::audit::{self, AuditEntryOut};
use crate::state::AppState;

/// List the audit log
///
/// Every change in the tenant, newest first: who (a user or an API key) did what to which
/// resource. Admins and owners only.
#[utoipa::path(tag = "audit-log", operation_id = "audit_log.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of changes, newest first.", body = ListResponse<AuditEntryOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/audit-log")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = audit::list(&state.db, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list);
}
