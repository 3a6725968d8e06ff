//! Sign-up, login, token refresh, "who am I", and a person's tenants and switching between
//! them.

use chrono::Duration;
use entity::{Role, TenantOwned, api_keys, memberships, refresh_tokens, tenants, users};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{Email, LoginEmail, Name, Password, check_login_email};
use super::users::{UserOut, email_taken};
use super::{check_name, check_password, new_id, now, parse_email};
use crate::auth::seats;
use crate::auth::{self, throttle};
use crate::error::{ApiError, FieldError, is_unique_violation};
use crate::extract::{Actor, TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupIn {
    #[schema(value_type = Name, example = "Acme Inc")]
    pub tenant_name: String,
    #[schema(value_type = Email, example = "ada@example.com")]
    pub email: String,
    /// At least 10 characters.
    #[schema(value_type = Password)]
    pub password: SecretString,
}

impl Validate for SignupIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("tenant_name", &self.tenant_name, &mut errors);
        if let Err(message) = parse_email(&self.email) {
            errors.push(FieldError::new("email", message));
        }
        check_password("password", self.password.expose_secret(), &mut errors);
        super::valid(errors)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    #[schema(value_type = LoginEmail)]
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

impl Validate for LoginIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_login_email("email", &self.email, &mut errors);
        super::valid(errors)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

impl Validate for RefreshIn {}

/// An access token and the refresh token that renews it.
#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Single use: each refresh returns a new one, and presenting a used one revokes them all.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    pub id: String,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<tenants::Model> for TenantOut {
    fn from(t: tenants::Model) -> Self {
        TenantOut {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SignupOut {
    pub tenant: TenantOut,
    pub user: UserOut,
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// The API key a request was made with.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeApiKey {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeOut {
    pub tenant: TenantOut,
    /// The environment the request acts in (`production` unless it named another).
    #[schema(example = "production")]
    pub environment: String,
    /// The caller's effective role.
    pub role: Role,
    /// Set when the caller is a person.
    pub user: Option<UserOut>,
    /// Set when the caller is an API key.
    pub api_key: Option<MeApiKey>,
}

/// Sign-up, metered per client address (`TRIBUTARY_SIGNUP_RATE`). The password is hashed
/// before the email is looked at, so a taken email costs the same time as a new one; the 409
/// that follows still says the email is registered (the rate bounds how fast anyone can ask).
pub async fn signup(
    state: &AppState,
    input: SignupIn,
    client_address: &str,
) -> Result<SignupOut, ApiError> {
    if !state.settings.signup_open {
        return Err(ApiError::Forbidden(
            "self-service sign-up is closed on this installation".into(),
        ));
    }
    let rate = state.settings.signup_rate;
    let window = Duration::from_std(rate.period).unwrap_or(Duration::hours(1));
    let counted = throttle::count(&state.db, &throttle::signup_key(client_address), window).await?;
    if counted.failures > i32::try_from(rate.count).unwrap_or(i32::MAX) {
        tracing::info!(client = %client_address, "sign-up rate exceeded");
        return Err(ApiError::TooManyRequests(throttle::seconds_until(
            now(),
            counted.window_started_at + window,
        )));
    }
    let email = parse_email(&input.email).map_err(|m| ApiError::field("email", m))?;
    let password_hash = state.password_work.hash(input.password).await?;
    let at = now();
    let tenant = tenants::Model {
        id: new_id(),
        name: input.tenant_name.trim().to_string(),
        parent_id: None,
        environment: tributary_worker::PRODUCTION.into(),
        mixed_modes: false,
        anomaly_sensitivity: None,
        created_at: at,
        updated_at: at,
    };
    let user = users::Model {
        id: new_id(),
        tenant_id: tenant.id.clone(),
        email,
        password_hash,
        role: Role::Owner,
        created_at: at,
        updated_at: at,
    };

    let txn = tributary_worker::db::begin_write(&state.db).await?;
    tenants::Entity::insert(tenants::ActiveModel::from(tenant.clone()))
        .exec(&txn)
        .await?;
    users::Entity::insert(users::ActiveModel::from(user.clone()))
        .exec(&txn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                email_taken()
            } else {
                e.into()
            }
        })?;
    let actor = Actor::User(user.id.clone());
    super::audit::record(
        &txn,
        &tenant.id,
        &actor,
        "tenant.create",
        "tenant",
        Some(&tenant.id),
        Some(client_address),
    )
    .await?;
    let pair = issue_pair(&txn, state, &user.id, &user.tenant_id, None).await?;
    txn.commit().await?;
    remember_address(state, client_address, &user.email).await;

    tracing::info!(tenant_id = %tenant.id, user_id = %user.id, "tenant signed up");
    Ok(SignupOut {
        tenant: tenant.into(),
        user: user.into(),
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: pair.token_type,
        expires_in: pair.expires_in,
    })
}

pub async fn login(
    state: &AppState,
    input: LoginIn,
    client_address: &str,
) -> Result<TokenPair, ApiError> {
    let email = input.email.trim().to_lowercase();
    // Counted before the password is checked: concurrent attempts cannot outrun the count.
    let attempt = match throttle::admit(&state.db, client_address, &email).await? {
        throttle::Admission::Check(attempt) => attempt,
        throttle::Admission::Refused(seconds) => {
            tracing::info!(client = %client_address, "login throttled");
            return Err(ApiError::TooManyRequests(seconds));
        }
    };

    let user = users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(&state.db)
        .await?;
    // Unknown emails verify against a dummy hash: the same work, so the same time.
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_password_hash.clone());
    let valid = match state.password_work.verify(input.password, phc).await {
        Ok(valid) => valid,
        Err(e) => {
            attempt.abandoned(&state.db).await?;
            return Err(e.into());
        }
    };

    match user {
        Some(user) if valid => {
            attempt.succeeded(&state.db).await?;
            let txn = tributary_worker::db::begin_write(&state.db).await?;
            // A login opens the person's home tenant; `POST /v1/auth/switch` the others.
            let pair = issue_pair(&txn, state, &user.id, &user.tenant_id, None).await?;
            txn.commit().await?;
            tracing::info!(user_id = %user.id, client = %client_address, "login");
            Ok(pair)
        }
        _ => {
            tracing::info!(client = %client_address, "failed login");
            Err(ApiError::Unauthorized(
                "the email or password is wrong".into(),
            ))
        }
    }
}

/// Makes the address known to the login throttle for this account. The answer is already
/// committed (a refresh token may have been spent), so a failure here is only logged.
async fn remember_address(state: &AppState, client_address: &str, email: &str) {
    if let Err(e) = throttle::mark_known(&state.db, client_address, email).await {
        tracing::warn!(error = %e, "could not record a known login address");
    }
}

/// Ends the caller's session: every refresh token of its family is revoked, and access tokens
/// issued for it stop at their next request.
pub async fn logout(state: &AppState, ctx: &TenantContext) -> Result<(), ApiError> {
    let Some(session) = &ctx.session_id else {
        return Err(ApiError::Forbidden(
            "an API key has no session to end; revoke the key with DELETE /v1/api-keys/{id}".into(),
        ));
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    // The person's row, locked as a refresh locks it, so a refresh in flight cannot add a live
    // token after this (their home row, in whichever tenant the session is).
    users::Entity::find_by_id(ctx.actor.id())
        .lock_exclusive()
        .one(&txn)
        .await?;
    revoke_family(&txn, session).await?;
    txn.commit().await?;
    tracing::info!(user_id = %ctx.actor.id(), "logout");
    Ok(())
}

pub async fn refresh(
    state: &AppState,
    input: RefreshIn,
    client_address: &str,
) -> Result<TokenPair, ApiError> {
    let invalid = || ApiError::Unauthorized("the refresh token is invalid or expired".into());
    let hash = auth::token_hash(input.refresh_token.expose_secret());
    let token = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash))
        .one(&state.db)
        .await?
        .ok_or_else(invalid)?;
    let at = now();
    if token.revoked_at.is_some() || token.expires_at <= at {
        return Err(invalid());
    }

    let txn = tributary_worker::db::begin_write(&state.db).await?;
    // The person's row is locked first, as a password change or a membership's removal locks
    // it: a refresh racing either finishes before the revocation (and is revoked with the
    // rest) or sees its token revoked. The session's tenant must still be theirs.
    let user = users::Entity::find_by_id(token.user_id.as_str())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(invalid)?;
    let user = seats::of(&txn, user, &token.tenant_id)
        .await?
        .ok_or_else(invalid)?
        .user;
    // Claim the token; if someone already did, it is being reused.
    let claimed = refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::UsedAt,
            sea_orm::sea_query::Expr::value(at),
        )
        .filter(refresh_tokens::Column::Id.eq(token.id.as_str()))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        txn.rollback().await?;
        let revoked = refresh_tokens::Entity::find_by_id(token.id.clone())
            .one(&state.db)
            .await?
            .is_none_or(|t| t.revoked_at.is_some() && t.used_at.is_none());
        if revoked {
            return Err(invalid());
        }
        revoke_family(&state.db, &token.family_id).await?;
        tracing::warn!(family = %token.family_id, user_id = %token.user_id, "refresh token reused; family revoked");
        return Err(ApiError::Unauthorized(
            "this refresh token was already used; every session of this login is now revoked, sign in again".into(),
        ));
    }
    let pair = issue_pair(
        &txn,
        state,
        &user.id,
        &token.tenant_id,
        Some(token.family_id),
    )
    .await?;
    txn.commit().await?;
    remember_address(state, client_address, &user.email).await;
    Ok(pair)
}

async fn revoke_family<C: ConnectionTrait>(db: &C, family_id: &str) -> Result<(), ApiError> {
    refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A token pair for the person `user_id` in `tenant_id` (their home tenant or one they are a
/// member of), in session `family_id` (a new session when `None`).
async fn issue_pair<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    user_id: &str,
    tenant_id: &str,
    family_id: Option<String>,
) -> Result<TokenPair, ApiError> {
    let family_id = family_id.unwrap_or_else(new_id);
    let (access_token, expires_in) = state.jwt.issue(user_id, tenant_id, &family_id)?;
    let refresh_token = format!("rt_{}", tributary_worker::secrets::random_token::<32>());
    let at = now();
    let ttl = Duration::from_std(state.settings.refresh_token_ttl).unwrap_or(Duration::days(30));
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(new_id()),
        tenant_id: Set(tenant_id.to_string()),
        user_id: Set(user_id.to_string()),
        family_id: Set(family_id),
        token_hash: Set(auth::token_hash(&refresh_token)),
        expires_at: Set(at + ttl),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(at),
    })
    .exec(db)
    .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in,
    })
}

pub async fn me(state: &AppState, ctx: &TenantContext) -> Result<MeOut, ApiError> {
    let tenant = tenants::Entity::find_by_id(ctx.account_id.clone())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let (user, api_key) = match &ctx.actor {
        Actor::User(id) => (
            seats::find(&state.db, id, &ctx.account_id)
                .await?
                .map(UserOut::from),
            None,
        ),
        Actor::ApiKey(id) => (
            None,
            api_keys::Entity::find_by_id_in_tenant(&ctx.account_id, id)
                .one(&state.db)
                .await?
                .map(|k| MeApiKey {
                    id: k.id,
                    name: k.name,
                }),
        ),
    };
    Ok(MeOut {
        tenant: tenant.into(),
        environment: ctx.environment.clone(),
        role: ctx.role,
        user,
        api_key,
    })
}

/// A tenant the signed-in person can switch to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantChoice {
    pub id: String,
    pub name: String,
    /// The person's role there.
    pub role: Role,
    /// Whether it is the tenant of this request (of the token it was made with).
    pub current: bool,
    /// Whether it is the person's home tenant, where their account and password live; the
    /// others are tenants they were invited into.
    pub home: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchIn {
    /// The tenant to switch to: the `id` of one of `GET /v1/me/tenants`.
    #[schema(example = "01939b7e-8c2a-7d4e-9f10-2b3c4d5e6f70")]
    pub tenant_id: String,
}

impl Validate for SwitchIn {}

/// The tenants the caller can act in: a person's home tenant first, then the tenants they were
/// invited into, oldest membership first; an API key's own tenant only.
pub async fn tenants(state: &AppState, ctx: &TenantContext) -> Result<Vec<TenantChoice>, ApiError> {
    let Actor::User(user_id) = &ctx.actor else {
        let tenant = tenants::Entity::find_by_id(ctx.account_id.clone())
            .one(&state.db)
            .await?
            .ok_or(ApiError::NotFound)?;
        return Ok(vec![TenantChoice {
            id: tenant.id,
            name: tenant.name,
            role: ctx.role,
            current: true,
            home: true,
        }]);
    };
    let user = users::Entity::find_by_id(user_id.as_str())
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the user of this token no longer exists".into()))?;
    // A person's own memberships, across tenants: the one query here not scoped by a tenant.
    let joined = memberships::Entity::find()
        .filter(memberships::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(memberships::Column::Id)
        .all(&state.db)
        .await?;
    let seats: Vec<(String, Role, bool)> =
        std::iter::once((user.tenant_id.clone(), user.role, true))
            .chain(joined.into_iter().map(|m| (m.tenant_id, m.role, false)))
            .collect();
    let names: std::collections::HashMap<String, String> = tenants::Entity::find()
        .filter(tenants::Column::Id.is_in(seats.iter().map(|(id, _, _)| id.clone())))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    Ok(seats
        .into_iter()
        .filter_map(|(id, role, home)| {
            let name = names.get(&id)?.clone();
            Some(TenantChoice {
                current: id == ctx.account_id,
                id,
                name,
                role,
                home,
            })
        })
        .collect())
}

/// The refusal of a tenant the person has no seat in. It says the same whether or not the
/// tenant exists.
fn not_a_member() -> ApiError {
    ApiError::NoSuchField {
        field: "tenant_id".into(),
        detail: "you are not a member of this tenant".into(),
    }
}

/// A new session (token pair) for the signed-in person in another of their tenants, as a login
/// starts one; `end_current` also ends the session the request was made with (the console's
/// cookies hold one session at a time). Recorded in the audit log of both tenants.
pub async fn switch(
    state: &AppState,
    ctx: &TenantContext,
    input: &SwitchIn,
    end_current: bool,
) -> Result<TokenPair, ApiError> {
    let Actor::User(user_id) = &ctx.actor else {
        return Err(ApiError::Forbidden(
            "an API key belongs to one tenant and has no session to switch; sign in as a person"
                .into(),
        ));
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    // Locked as a refresh and a membership's removal lock it: a switch racing a removal either
    // finishes first (and its session is revoked with the rest) or finds no membership.
    let user = users::Entity::find_by_id(user_id.as_str())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the user of this token no longer exists".into()))?;
    let seat = seats::of(&txn, user, &input.tenant_id)
        .await?
        .ok_or_else(not_a_member)?;
    if end_current && let Some(session) = &ctx.session_id {
        revoke_family(&txn, session).await?;
    }
    let target = input.tenant_id.as_str();
    let pair = issue_pair(&txn, state, &seat.user.id, target, None).await?;
    let client = ctx.client_address.as_deref();
    if ctx.account_id != target {
        // The tenant left learns only that the person switched away, not where to.
        let (actor, tenant) = (&ctx.actor, &ctx.account_id);
        super::audit::record(
            &txn,
            tenant,
            actor,
            "session.switch_out",
            "tenant",
            None,
            client,
        )
        .await?;
    }
    super::audit::record(
        &txn,
        target,
        &ctx.actor,
        "session.switch_in",
        "tenant",
        Some(target),
        client,
    )
    .await?;
    txn.commit().await?;
    tracing::info!(user_id = %seat.user.id, tenant_id = %target, "switched tenant");
    Ok(pair)
}
