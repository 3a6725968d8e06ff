//! The environment a request acts in: the one its `Tributary-Environment` header names (for the
//! console's pages and requests, the `tributary_environment` cookie the console sets), else the
//! one its API key is bound to, else `production`. Acting in an environment is acting in its
//! tenant row (`TenantContext::tenant_id`); people, keys and the audit log stay with the tenant
//! (`TenantContext::account_id`).

use actix_web::HttpRequest;
use actix_web::http::header;
use tributary_worker::PRODUCTION;

use crate::error::ApiError;
use crate::state::AppState;
use tributary_worker::environments;

/// The request header naming the environment.
pub const HEADER: &str = "Tributary-Environment";

/// The console's cookie naming the environment its pages act in.
pub const COOKIE: &str = "tributary_environment";

/// The environment a request asks for, and whether its header did (a console cookie that
/// names an environment since deleted, or one of another tenant after switching, falls back to
/// `production`, as the console's pages do; a header never does).
pub struct Asked {
    pub name: String,
    pub by_header: bool,
}

/// The environment `req` asks for: its header, else (for a request the console's session
/// cookie authenticates, with no `Authorization` header) the console's cookie.
pub fn requested(req: &HttpRequest) -> Option<Asked> {
    if let Some(value) = req.headers().get(HEADER) {
        let name = value.to_str().unwrap_or("\u{fffd}").trim().to_string();
        return Some(Asked {
            name,
            by_header: true,
        });
    }
    if req.headers().contains_key(header::AUTHORIZATION) {
        return None;
    }
    from_cookie(req)
}

/// The environment the console's cookie names, if it names one.
pub fn from_cookie(req: &HttpRequest) -> Option<Asked> {
    super::session_cookie::read_cookie(req, COOKIE).map(|value| Asked {
        name: value.trim().to_string(),
        by_header: false,
    })
}

/// Where a request acts: `None` for `production`, else the environment's tenant row and name,
/// from what it asked for (`asked`) and the environment its API key is bound to (`bound`). A
/// header naming an environment the tenant lacks is a 400, one the key is not bound to a 403;
/// a console cookie naming one the tenant lacks (deleted since, or another tenant's after a
/// switch) falls back to `production`.
pub async fn choose(
    state: &AppState,
    account_id: &str,
    asked: Option<&Asked>,
    bound: Option<&str>,
) -> Result<Option<(String, String)>, ApiError> {
    let name = match (asked, bound) {
        (Some(asked), Some(bound)) if asked.name != bound && asked.by_header => {
            return Err(ApiError::Forbidden(format!(
                "this API key acts in the environment {bound} only"
            )));
        }
        (Some(asked), _) => asked.name.as_str(),
        (None, Some(bound)) => bound,
        (None, None) => return Ok(None),
    };
    if name == PRODUCTION {
        return Ok(None);
    }
    match environments::resolve(&state.db, account_id, name).await? {
        Some(id) => Ok(Some((id, name.to_string()))),
        None if asked.is_some_and(|a| !a.by_header) => Ok(None),
        None => Err(ApiError::BadRequestField {
            field: HEADER.into(),
            detail: format!(
                "{HEADER}: the tenant has no environment {:?} (GET /v1/environments lists them)",
                name.chars().take(40).collect::<String>()
            ),
        }),
    }
}
