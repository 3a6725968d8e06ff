//! The tenant context: the one place a bearer token (JWT or API key) becomes "this tenant,
//! this role, this actor". Every service function takes it; none reads tenant ids elsewhere.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use chrono::Utc;
use entity::{Role, TenantOwned, api_keys, refresh_tokens};
use futures::future::LocalBoxFuture;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    ApiKey(String),
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Actor::User(id) | Actor::ApiKey(id) => id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantContext {
    /// What the request acts on: the tenant's row of the environment it acts in (the tenant
    /// itself in `production`). Every environment-owned row is scoped by it.
    pub tenant_id: String,
    /// The tenant itself, whose people, API keys and audit log these are, in any environment.
    pub account_id: String,
    /// The environment's name (`production` unless the request chose another).
    pub environment: String,
    /// The environment the caller's API key is bound to, if it is.
    pub bound_environment: Option<String>,
    pub role: Role,
    pub actor: Actor,
    /// The session (refresh-token family) of a person's access token; `None` for API keys.
    pub session_id: Option<String>,
    /// The caller's address as the trusted proxies tell it, for the audit log.
    pub client_address: Option<String>,
}

impl TenantContext {
    /// The same caller acting in another environment of its tenant (`tenant_id` is that
    /// environment's row).
    pub fn in_environment(&self, tenant_id: &str, environment: &str) -> TenantContext {
        TenantContext {
            tenant_id: tenant_id.to_string(),
            environment: environment.to_string(),
            ..self.clone()
        }
    }

    /// Refuses with 403 unless the caller's role is at least `minimum`.
    pub fn require(&self, minimum: Role) -> Result<(), ApiError> {
        if self.role >= minimum {
            Ok(())
        } else {
            Err(ApiError::forbidden_role())
        }
    }
}

impl FromRequest for TenantContext {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Already authenticated by a middleware (idempotency keys belong to a caller).
        if let Some(context) = req.extensions().get::<TenantContext>().cloned() {
            return Box::pin(async move { Ok(context) });
        }
        let state = req.app_data::<Data<AppState>>().cloned();
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_string())
            });
        // The console's session cookie, only when no Authorization header is sent; a change
        // made with it must carry the session's CSRF token as a header.
        let token = match bearer {
            Some(token) => Ok(Some(token)),
            None => super::session_cookie::cookie_token(req),
        };
        let client = super::client::from_request_parts(req);
        let asked = super::environment::requested(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("app state missing")))?;
            let token = token?.ok_or_else(|| {
                ApiError::Unauthorized(
                    "send Authorization: Bearer <access token or API key>".into(),
                )
            })?;
            let mut context = authenticate(&state, &token).await?;
            context.client_address = Some(client);
            let bound = context.bound_environment.clone();
            let chosen = super::environment::choose(
                &state,
                &context.account_id,
                asked.as_ref(),
                bound.as_deref(),
            )
            .await?;
            Ok(match chosen {
                Some((id, name)) => context.in_environment(&id, &name),
                None => context,
            })
        })
    }
}

pub async fn authenticate(state: &AppState, token: &str) -> Result<TenantContext, ApiError> {
    if token.starts_with(auth::api_keys::KEY_SCHEME) {
        let invalid = || ApiError::Unauthorized("the API key is invalid or revoked".into());
        let prefix = auth::api_keys::prefix_of(token).ok_or_else(invalid)?;
        let key = api_keys::Entity::find()
            .filter(api_keys::Column::Prefix.eq(prefix))
            .one(&state.db)
            .await?
            .ok_or_else(invalid)?;
        if !auth::api_keys::matches(token, &key.key_hash) {
            return Err(invalid());
        }
        let now = Utc::now();
        let stale = key
            .last_used_at
            .is_none_or(|t| now - t > chrono::Duration::seconds(60));
        let context = TenantContext {
            tenant_id: key.tenant_id.clone(),
            account_id: key.tenant_id.clone(),
            environment: tributary_worker::PRODUCTION.into(),
            bound_environment: key.environment.clone(),
            role: key.role,
            actor: Actor::ApiKey(key.id.clone()),
            session_id: None,
            client_address: None,
        };
        if stale {
            let mut active: api_keys::ActiveModel = key.into();
            active.last_used_at = Set(Some(now));
            active.update(&state.db).await?;
        }
        return Ok(context);
    }

    let claims = state
        .jwt
        .verify(token)
        .map_err(|_| ApiError::Unauthorized("the access token is invalid or expired".into()))?;
    // The person's home tenant, or one they are a member of: a removed membership (like a
    // deleted user) stops the token here, at its next request, with the role read afresh.
    let seat = auth::seats::find(&state.db, &claims.sub, &claims.tid)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "the user of this token no longer exists or no longer belongs to this tenant"
                    .into(),
            )
        })?;
    // A logout, a password change or a reused refresh token revokes the session: its access
    // tokens stop here, at their next request. Sessions belong to one tenant each.
    let live = refresh_tokens::Entity::find_in_tenant(&claims.tid)
        .filter(refresh_tokens::Column::FamilyId.eq(claims.sid.as_str()))
        .filter(refresh_tokens::Column::UserId.eq(seat.user.id.as_str()))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .one(&state.db)
        .await?
        .is_some();
    if !live {
        return Err(ApiError::Unauthorized(
            "this session has ended; sign in again".into(),
        ));
    }
    Ok(TenantContext {
        account_id: claims.tid.clone(),
        tenant_id: claims.tid,
        environment: tributary_worker::PRODUCTION.into(),
        bound_environment: None,
        role: seat.role,
        actor: Actor::User(seat.user.id),
        session_id: Some(claims.sid),
        client_address: None,
    })
}
