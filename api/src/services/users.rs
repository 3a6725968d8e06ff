//! A tenant's people and their roles. Admins manage admins and members; only owners touch
//! owners; the last owner can be neither demoted nor removed.

use entity::{Role, TenantOwned, users};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{Email, Password};
use super::{audit, check_password, new_id, now, parse_email};
use crate::auth::throttle;
use crate::error::{ApiError, FieldError, is_unique_violation};
use crate::extract::{Actor, IfMatch, Page, TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<users::Model> for UserOut {
    fn from(u: users::Model) -> Self {
        UserOut {
            id: u.id,
            email: u.email,
            role: u.role,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    #[schema(value_type = Email)]
    pub email: String,
    /// The initial password, at least 10 characters.
    #[schema(value_type = Password)]
    pub password: SecretString,
    pub role: Role,
}

impl Validate for UserIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(message) = parse_email(&self.email) {
            errors.push(FieldError::new("email", message));
        }
        check_password("password", self.password.expose_secret(), &mut errors);
        super::valid(errors)
    }
}

/// Absent fields stay as they are; `{}` changes nothing and answers the user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<Role>,
    /// A new password; anyone may change their own. Any password change ends every session
    /// of that user (they sign in again with the new password).
    #[schema(value_type = Option<Password>)]
    pub password: Option<SecretString>,
    /// The password in use now: required to change one's own password; not needed when an
    /// owner or admin resets someone else's.
    #[schema(value_type = Option<String>, format = Password)]
    pub current_password: Option<SecretString>,
}

impl Validate for UserPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(password) = &self.password {
            check_password("password", password.expose_secret(), &mut errors);
        }
        super::valid(errors)
    }
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: UserIn,
) -> Result<UserOut, ApiError> {
    ctx.require(Role::Admin)?;
    if input.role == Role::Owner {
        ctx.require(Role::Owner)?;
    }
    let email = parse_email(&input.email).map_err(|m| ApiError::field("email", m))?;
    let password_hash = state.password_work.hash(input.password).await?;
    let at = now();
    let user = users::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        email,
        password_hash,
        role: input.role,
        created_at: at,
        updated_at: at,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
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
    audit::log(&txn, ctx, "user.create", "user", &user.id).await?;
    txn.commit().await?;
    Ok(user.into())
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<UserOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            users::Entity::find_in_tenant(&ctx.tenant_id),
            users::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(UserOut::from).collect(), has_more))
}

pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<UserOut, ApiError> {
    find(&state.db, ctx, id).await.map(UserOut::from)
}

async fn find<C: ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    id: &str,
) -> Result<users::Model, ApiError> {
    super::owned::<users::Entity, _>(db, ctx, id).await
}

async fn owner_count<C: ConnectionTrait>(db: &C, tenant_id: &str) -> Result<u64, ApiError> {
    Ok(users::Entity::find_in_tenant(tenant_id)
        .filter(users::Column::Role.eq(Role::Owner))
        .count(db)
        .await?)
}

fn last_owner() -> ApiError {
    ApiError::Conflict {
        detail: "a tenant keeps at least one owner".into(),
        field: None,
    }
}

/// Checks the caller's current password before they change their own, counted against the
/// login throttle of their address like a login attempt.
async fn check_current_password(
    state: &AppState,
    user: &users::Model,
    current: Option<SecretString>,
    client_address: &str,
) -> Result<(), ApiError> {
    let current = current.ok_or_else(|| {
        ApiError::field(
            "current_password",
            "is required to change your own password",
        )
    })?;
    let attempt = match throttle::admit(&state.db, client_address, &user.email).await? {
        throttle::Admission::Check(attempt) => attempt,
        throttle::Admission::Refused(seconds) => return Err(ApiError::TooManyRequests(seconds)),
    };
    let valid = match state
        .password_work
        .verify(current, user.password_hash.clone())
        .await
    {
        Ok(valid) => valid,
        Err(e) => {
            attempt.abandoned(&state.db).await?;
            return Err(e.into());
        }
    };
    if !valid {
        return Err(ApiError::field(
            "current_password",
            "does not match your password",
        ));
    }
    attempt.succeeded(&state.db).await?;
    Ok(())
}

pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    patch: UserPatch,
    client_address: &str,
    if_match: &IfMatch,
) -> Result<UserOut, ApiError> {
    let role = patch.role;
    let authorize = |user: &users::Model| {
        let is_self = ctx.actor == Actor::User(user.id.clone());
        if role.is_some() || !is_self {
            ctx.require(Role::Admin)?;
        }
        if user.role == Role::Owner || role == Some(Role::Owner) {
            ctx.require(Role::Owner)?;
        }
        Ok::<bool, ApiError>(is_self)
    };
    // Checked before any argon2 work, and again inside the transaction.
    let user = find(&state.db, ctx, id).await?;
    let is_self = authorize(&user)?;
    if patch.role.is_none() && patch.password.is_none() {
        // Nothing to change (like a merge patch of `{}`): the user as they are.
        return Ok(user.into());
    }
    if is_self && patch.password.is_some() {
        check_current_password(state, &user, patch.current_password, client_address).await?;
    }
    let password_hash = match patch.password {
        Some(password) => Some(state.password_work.hash(password).await?),
        None => None,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let user = super::owned_for_update::<users::Entity, _>(&txn, ctx, id).await?;
    authorize(&user)?;
    if_match.check(&UserOut::from(user.clone()), "user")?;
    if user.role == Role::Owner
        && patch.role.is_some_and(|r| r != Role::Owner)
        && owner_count(&txn, &ctx.tenant_id).await? <= 1
    {
        return Err(last_owner());
    }
    let mut active: users::ActiveModel = user.into();
    if let Some(role) = patch.role {
        active.role = Set(role);
    }
    let password_changed = password_hash.is_some();
    if let Some(hash) = password_hash {
        active.password_hash = Set(hash);
    }
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    if password_changed {
        revoke_user_sessions(&txn, &ctx.tenant_id, &updated.id).await?;
    }
    audit::log(&txn, ctx, "user.update", "user", &updated.id).await?;
    txn.commit().await?;
    Ok(updated.into())
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let user = find(&txn, ctx, id).await?;
    ctx.require(Role::Admin)?;
    if user.role == Role::Owner {
        ctx.require(Role::Owner)?;
        if owner_count(&txn, &ctx.tenant_id).await? <= 1 {
            return Err(last_owner());
        }
    }
    users::Entity::delete_by_id_in_tenant(&ctx.tenant_id, id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "user.delete", "user", id).await?;
    txn.commit().await?;
    Ok(())
}

/// The conflict of an email address already registered.
pub fn email_taken() -> ApiError {
    ApiError::Conflict {
        detail: "this email address is already registered".into(),
        field: Some("email".into()),
    }
}

/// Revokes every refresh token (every session) of a user, as a password change must.
pub async fn revoke_user_sessions<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    entity::refresh_tokens::Entity::update_many()
        .col_expr(
            entity::refresh_tokens::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(entity::refresh_tokens::Column::TenantId.eq(tenant_id))
        .filter(entity::refresh_tokens::Column::UserId.eq(user_id))
        .filter(entity::refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
