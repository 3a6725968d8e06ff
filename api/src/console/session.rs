//! The console's session: the API's own token pair, kept in httpOnly, SameSite=Strict cookies,
//! and a CSRF token (double-submit: a cookie the page reads, sent back as `X-CSRF-Token`) that
//! every change made with the cookie must carry. Sign-up, sign-in, sign-out and switching
//! tenant are the API's own services; the cookies are only where the tokens live.

use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use secrecy::SecretString;
use serde::Deserialize;

use super::html::{page, redirect, render};
use crate::error::ApiError;
use crate::extract::session_cookie::{
    ACCESS, CSRF, CSRF_HEADER, REFRESH, csrf_matches, read_cookie, same_site,
};
use crate::extract::{ClientAddress, TenantContext};
use crate::services::sessions::{
    self, LoginIn, RefreshIn, SignupIn, SwitchIn, TenantChoice, TokenPair,
};
use crate::state::AppState;

/// How long a console session's refresh cookie lives (the refresh token's own expiry governs).
pub(super) const REFRESH_SECONDS: i64 = 30 * 24 * 3600;

/// A `Set-Cookie` value: the whole site, SameSite=Strict, `max_age` seconds (0 clears it),
/// `Secure` when the installation is served over https.
pub(super) fn cookie(
    name: &str,
    value: &str,
    http_only: bool,
    max_age: i64,
    secure: bool,
) -> (&'static str, String) {
    let http_only = if http_only { "; HttpOnly" } else { "" };
    let secure = if secure { "; Secure" } else { "" };
    (
        "set-cookie",
        format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict{http_only}{secure}"),
    )
}

/// Whether the console is served over https (its cookies are then `Secure`).
pub(super) fn secure(state: &AppState) -> bool {
    state.settings.public_url.starts_with("https://")
}

/// A new CSRF token, for a new session.
fn new_csrf() -> String {
    tributary_worker::secrets::random_token::<24>()
}

/// Sets the session's cookies on a response.
fn keep(response: &mut HttpResponseBuilder, pair: &TokenPair, csrf: &str, secure: bool) {
    let access = pair.expires_in as i64;
    response
        .append_header(cookie(ACCESS, &pair.access_token, true, access, secure))
        .append_header(cookie(
            REFRESH,
            &pair.refresh_token,
            true,
            REFRESH_SECONDS,
            secure,
        ))
        .append_header(cookie(CSRF, csrf, false, REFRESH_SECONDS, secure));
}

/// Clears the session's cookies.
fn forget(response: &mut HttpResponseBuilder, secure: bool) {
    for (name, http_only) in [(ACCESS, true), (REFRESH, true), (CSRF, false)] {
        response.append_header(cookie(name, "", http_only, 0, secure));
    }
}

/// Who a console page is for: the session's tenant context, and a refreshed token pair when
/// the access token had expired (set on the page's response).
pub struct Viewer {
    pub ctx: TenantContext,
    pub refreshed: Option<TokenPair>,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    /// The tenants the person can switch to (the current one among them), for the header.
    pub tenants: Vec<TenantChoice>,
    /// The tenant's environments (the current one among them), for the header.
    pub environments: Vec<crate::services::environments::EnvironmentOut>,
    /// Whether cookies are `Secure`.
    secure: bool,
}

impl Viewer {
    /// A page's response, keeping a refreshed session.
    pub fn respond(&self, html: String) -> HttpResponse {
        let mut response = page();
        if let Some(pair) = &self.refreshed {
            keep(&mut response, pair, &self.csrf, self.secure);
        }
        response.body(html)
    }
}

/// The tenants of the header's switcher; `None` when the person is gone meanwhile (the page
/// sends them to sign in).
async fn tenants_of(
    state: &AppState,
    ctx: &TenantContext,
) -> Result<Option<Vec<TenantChoice>>, ApiError> {
    match sessions::tenants(state, ctx).await {
        Ok(tenants) => Ok(Some(tenants)),
        Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// A console page's context: in the environment its cookie names, else (no cookie, or one
/// naming an environment since deleted) in `production`.
async fn in_cookie_environment(
    state: &AppState,
    ctx: TenantContext,
    req: &HttpRequest,
) -> Result<TenantContext, ApiError> {
    use crate::extract::environment::{choose, from_cookie};
    let asked = from_cookie(req);
    Ok(
        match choose(state, &ctx.account_id, asked.as_ref(), None).await? {
            Some((id, name)) => ctx.in_environment(&id, &name),
            None => ctx,
        },
    )
}

/// The signed-in viewer of a console page, else `None` (the page sends them to sign in).
pub async fn viewer(req: &HttpRequest, state: &AppState) -> Result<Option<Viewer>, ApiError> {
    let csrf = read_cookie(req, CSRF);
    if let Some(access) = read_cookie(req, ACCESS)
        && let Some(csrf) = &csrf
        && let Ok(ctx) = crate::extract::authenticate(state, &access).await
    {
        let Some(tenants) = tenants_of(state, &ctx).await? else {
            return Ok(None);
        };
        let ctx = in_cookie_environment(state, ctx, req).await?;
        return Ok(Some(Viewer {
            environments: crate::services::environments::list(state, &ctx).await?,
            tenants,
            ctx,
            refreshed: None,
            csrf: csrf.clone(),
            secure: secure(state),
        }));
    }
    let Some(refresh) = read_cookie(req, REFRESH) else {
        return Ok(None);
    };
    let client = crate::extract::request_address(req);
    let input = RefreshIn {
        refresh_token: SecretString::from(refresh),
    };
    let pair = match sessions::refresh(state, input, &client).await {
        Ok(pair) => pair,
        Err(ApiError::Unauthorized(_)) => return Ok(None),
        Err(other) => return Err(other),
    };
    let ctx = crate::extract::authenticate(state, &pair.access_token).await?;
    let Some(tenants) = tenants_of(state, &ctx).await? else {
        return Ok(None);
    };
    let ctx = in_cookie_environment(state, ctx, req).await?;
    Ok(Some(Viewer {
        environments: crate::services::environments::list(state, &ctx).await?,
        tenants,
        ctx,
        refreshed: Some(pair),
        csrf: csrf.unwrap_or_else(new_csrf),
        secure: secure(state),
    }))
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub struct SignUpForm {
    company: String,
    email: String,
    password: String,
}

/// The sign-in page, with the problem of the last attempt if any.
pub async fn sign_in_page(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if viewer(&req, &state).await?.is_some() {
        return Ok(redirect("/console/"));
    }
    Ok(page().body(render("login.html", minijinja::context! {})?))
}

pub async fn sign_in(
    req: HttpRequest,
    state: Data<AppState>,
    client: ClientAddress,
    Form(form): Form<SignInForm>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    let input = LoginIn {
        email: form.email.clone(),
        password: SecretString::from(form.password),
    };
    match sessions::login(&state, input, &client.0).await {
        Ok(pair) => {
            let mut response = HttpResponse::SeeOther();
            keep(&mut response, &pair, &new_csrf(), secure(&state));
            Ok(response.insert_header(("location", "/console/")).finish())
        }
        Err(error) => refused("login.html", &form.email, error),
    }
}

pub async fn sign_up_page() -> Result<HttpResponse, ApiError> {
    Ok(page().body(render("signup.html", minijinja::context! {})?))
}

pub async fn sign_up(
    req: HttpRequest,
    state: Data<AppState>,
    client: ClientAddress,
    Form(form): Form<SignUpForm>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    let input = SignupIn {
        tenant_name: form.company.clone(),
        email: form.email.clone(),
        password: SecretString::from(form.password),
    };
    if let Err(errors) = crate::extract::Validate::validate(&input) {
        return refused("signup.html", &form.email, ApiError::Validation(errors));
    }
    match sessions::signup(&state, input, &client.0).await {
        Ok(out) => {
            let pair = TokenPair {
                access_token: out.access_token,
                refresh_token: out.refresh_token,
                token_type: out.token_type,
                expires_in: out.expires_in,
            };
            let mut response = HttpResponse::SeeOther();
            keep(&mut response, &pair, &new_csrf(), secure(&state));
            Ok(response.insert_header(("location", "/console/")).finish())
        }
        Err(error) => refused("signup.html", &form.email, error),
    }
}

/// A form page again, saying why the last attempt was refused (as the API would, by field).
fn refused(template: &str, email: &str, error: ApiError) -> Result<HttpResponse, ApiError> {
    let message = match &error {
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unauthorized(_)
        | ApiError::Forbidden(_)
        | ApiError::Conflict { .. }
        | ApiError::TooManyRequests(_)
        | ApiError::Unavailable(_) => error.to_string(),
        _ => return Err(error),
    };
    let status = error.status_code();
    let html = render(
        template,
        minijinja::context! { error => message, email => email },
    )?;
    let mut response = page();
    response.status(status);
    Ok(response.body(html))
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: String,
}

/// Ends the session (as `POST /v1/logout` does) and clears its cookies.
pub async fn sign_out(
    req: HttpRequest,
    state: Data<AppState>,
    Form(form): Form<SignOutForm>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    if !csrf_matches(&req, &form.csrf) {
        return Err(ApiError::Forbidden(
            "the sign-out form is not this session's".into(),
        ));
    }
    if let Some(viewer) = viewer(&req, &state).await? {
        sessions::logout(&state, &viewer.ctx).await?;
    }
    let mut response = HttpResponse::SeeOther();
    forget(&mut response, secure(&state));
    Ok(response
        .insert_header(("location", "/console/login"))
        .finish())
}

fn refuse_cross_site(req: &HttpRequest) -> Result<(), ApiError> {
    if same_site(req) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a form of the console must be posted from the console's own pages".into(),
        ))
    }
}

/// `POST /console/refresh`: renews the session's access token with its refresh token, for a
/// page whose `/v1` request found it expired (the page then sends its request again). Needs
/// the session's CSRF token as `X-CSRF-Token`; 401 when the session has ended.
pub async fn refresh(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    let presented = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !csrf_matches(&req, presented) {
        return Err(ApiError::Forbidden(
            "renewing the console's session needs its X-CSRF-Token header".into(),
        ));
    }
    match viewer(&req, &state).await? {
        Some(viewer) => {
            let mut response = HttpResponse::NoContent();
            if let Some(pair) = &viewer.refreshed {
                keep(&mut response, pair, &viewer.csrf, viewer.secure);
            }
            Ok(response.finish())
        }
        None => Err(ApiError::Unauthorized(
            "this session has ended; sign in again".into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct SwitchForm {
    csrf: String,
    tenant_id: String,
}

/// `POST /console/switch`: the header's tenant switcher. Starts a session in another of the
/// person's tenants (as `POST /v1/auth/switch` does), ends the one the cookies held, sets the
/// new session's cookies and opens the new tenant's overview. Needs the session's CSRF token
/// (the form's `csrf`) and a same-site post; a tenant the person does not belong to is a 404.
pub async fn switch(
    req: HttpRequest,
    state: Data<AppState>,
    Form(form): Form<SwitchForm>,
) -> Result<HttpResponse, ApiError> {
    refuse_cross_site(&req)?;
    if !csrf_matches(&req, &form.csrf) {
        return Err(ApiError::Forbidden(
            "the tenant switcher's form is not this session's".into(),
        ));
    }
    let Some(viewer) = viewer(&req, &state).await? else {
        return Ok(redirect("/console/login"));
    };
    let input = SwitchIn {
        tenant_id: form.tenant_id,
    };
    let pair = sessions::switch(&state, &viewer.ctx, &input, true).await?;
    let mut response = HttpResponse::SeeOther();
    keep(&mut response, &pair, &viewer.csrf, viewer.secure);
    Ok(response.insert_header(("location", "/console/")).finish())
}
