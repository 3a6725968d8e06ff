//! The header's environment switcher: `POST /console/environment` sets the cookie naming the
//! environment the console's pages and their `/v1` requests act in (as the
//! `Tributary-Environment` header does for API clients).

use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::html::redirect;
use super::pages::show;
use super::session::{self, REFRESH_SECONDS};
use crate::error::ApiError;
use crate::extract::environment::COOKIE;
use crate::extract::session_cookie::{csrf_matches, same_site};
use crate::services::environments;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EnvironmentForm {
    csrf: String,
    environment: String,
}

pub async fn switch_environment(
    req: HttpRequest,
    state: Data<AppState>,
    Form(form): Form<EnvironmentForm>,
) -> Result<HttpResponse, ApiError> {
    if !same_site(&req) || !csrf_matches(&req, &form.csrf) {
        return Err(ApiError::Forbidden(
            "the environment switcher's form is not this session's".into(),
        ));
    }
    let Some(viewer) = session::viewer(&req, &state).await? else {
        return Ok(redirect("/console/login"));
    };
    let name = form.environment.trim();
    let known = environments::valid_name(name)
        && environments::resolve(&state.db, &viewer.ctx.account_id, name)
            .await?
            .is_some();
    if !known {
        return Err(ApiError::NoSuch(format!("no environment {name}")));
    }
    let mut response = HttpResponse::SeeOther();
    response.append_header(session::cookie(
        COOKIE,
        name,
        true,
        REFRESH_SECONDS,
        session::secure(&state),
    ));
    Ok(response.insert_header(("location", "/console/")).finish())
}

/// The environments page: the tenant's environments, one added, one deleted.
pub async fn environment_list(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    show(
        &viewer,
        "environments.html",
        "environments",
        minijinja::context! {},
    )
}
