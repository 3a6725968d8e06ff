//! A tenant's people and their roles. Admins manage admins and members; only owners touch
//! owners; the last owner can be neither demoted nor removed.
//!
//! A tenant's people are its own (their home tenant: their account and password live here)
//! and its members, people of other tenants invited by email (see `memberships`). A member's
//! role here is this tenant's to change, and removing them removes only the membership; their
//! password and account are never this tenant's to touch.

use std::collections::HashMap;

use entity::{Role, TenantOwned, memberships, users};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::{Email, Password};
use super::{audit, check_password, new_id, now, parse_email};
use crate::auth::seats::{self, Seat};
use crate::auth::throttle;
use crate::error::{ApiError, FieldError, is_unique_violation};
use crate::extract::{Actor, IfMatch, Page, TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: String,
    pub email: String,
    /// Their role in this tenant.
    pub role: Role,
    /// Whether this tenant is the person's home (where their account and password live);
    /// false for a member invited from another tenant, whose password only they can change.
    pub home: bool,
    /// When they joined this tenant.
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<users::Model> for UserOut {
    fn from(u: users::Model) -> Self {
        UserOut {
            id: u.id,
            email: u.email,
            role: u.role,
            home: true,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<Seat> for UserOut {
    fn from(seat: Seat) -> Self {
        match seat.membership {
            None => seat.user.into(),
            Some(m) => member_out(seat.user, m),
        }
    }
}

/// A member as their tenant sees them: the person, with the membership's role and times.
fn member_out(user: users::Model, membership: memberships::Model) -> UserOut {
    UserOut {
        id: user.id,
        email: user.email,
        role: membership.role,
        home: false,
        created_at: membership.created_at,
        updated_at: membership.updated_at,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    #[schema(value_type = Email)]
    pub email: String,
    /// The initial password of a new person, at least 10 characters; required for them (a
    /// 409 naming `password` without it). Not used for a person already registered in another
    /// tenant: they become a member here and keep their own password.
    #[schema(value_type = Option<Password>)]
    pub password: Option<SecretString>,
    pub role: Role,
}

impl Validate for UserIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(message) = parse_email(&self.email) {
            errors.push(FieldError::new("email", message));
        }
        if let Some(password) = &self.password {
            check_password("password", password.expose_secret(), &mut errors);
        }
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
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(&state.db)
        .await?;
    if let Some(person) = existing {
        if person.tenant_id == ctx.account_id {
            return Err(email_taken());
        }
        // A person of another tenant joins this one; their password is never set here.
        return add_member(state, ctx, person, input.role).await;
    }
    let password = input.password.ok_or_else(|| ApiError::Conflict {
        detail: "a new person needs a first password of at least 10 characters (only a person \
                 already registered in another tenant is invited without one)"
            .into(),
        field: Some("password".into()),
    })?;
    let password_hash = state.password_work.hash(password).await?;
    let at = now();
    let user = users::Model {
        id: new_id(),
        tenant_id: ctx.account_id.clone(),
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

/// A person of another tenant becomes a member of the caller's, with `role`.
async fn add_member(
    state: &AppState,
    ctx: &TenantContext,
    person: users::Model,
    role: Role,
) -> Result<UserOut, ApiError> {
    let at = now();
    let membership = memberships::Model {
        id: new_id(),
        user_id: person.id.clone(),
        tenant_id: ctx.account_id.clone(),
        role,
        created_at: at,
        updated_at: at,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    memberships::Entity::insert(memberships::ActiveModel::from(membership.clone()))
        .exec(&txn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                already_member()
            } else {
                e.into()
            }
        })?;
    audit::log(&txn, ctx, "membership.create", "user", &person.id).await?;
    txn.commit().await?;
    Ok(member_out(person, membership))
}

/// The tenant's own people and its members, newest first (by the person's id).
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<UserOut>, bool), ApiError> {
    let members = Query::select()
        .column(memberships::Column::UserId)
        .from(memberships::Entity)
        .and_where(memberships::Column::TenantId.eq(ctx.account_id.as_str()))
        .to_owned();
    let people = users::Entity::find().filter(
        Condition::any()
            .add(users::Column::TenantId.eq(ctx.account_id.as_str()))
            .add(users::Column::Id.in_subquery(members)),
    );
    let (rows, has_more) = page.fetch(&state.db, people, users::Column::Id).await?;
    let invited: Vec<String> = rows
        .iter()
        .filter(|u| u.tenant_id != ctx.account_id)
        .map(|u| u.id.clone())
        .collect();
    let mut joined: HashMap<String, memberships::Model> = HashMap::new();
    if !invited.is_empty() {
        joined = memberships::Entity::find_in_tenant(&ctx.account_id)
            .filter(memberships::Column::UserId.is_in(invited))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|m| (m.user_id.clone(), m))
            .collect();
    }
    let out = rows
        .into_iter()
        .filter_map(|u| {
            if u.tenant_id == ctx.account_id {
                return Some(UserOut::from(u));
            }
            // A membership removed between the two reads: not one of the tenant's any more.
            let membership = joined.remove(&u.id)?;
            Some(member_out(u, membership))
        })
        .collect();
    Ok((out, has_more))
}

pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<UserOut, ApiError> {
    find(&state.db, ctx, id).await.map(UserOut::from)
}

/// One of the tenant's people (its own or a member), or 404.
async fn find<C: ConnectionTrait>(db: &C, ctx: &TenantContext, id: &str) -> Result<Seat, ApiError> {
    seats::find(db, id, &ctx.account_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// [`find`], with the person's row locked until `txn` ends (as a refresh, a logout and a
/// switch lock it).
async fn find_for_update<C: ConnectionTrait>(
    txn: &C,
    ctx: &TenantContext,
    id: &str,
) -> Result<Seat, ApiError> {
    let person = users::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    seats::of(txn, person, &ctx.account_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Whether the caller may set this person's password. A member's password belongs to their
/// home tenant's account, and a person who belongs to other tenants too changes their own:
/// anyone who could set it could sign in to those tenants as them.
async fn check_password_change<C: ConnectionTrait>(
    db: &C,
    seat: &Seat,
    is_self: bool,
) -> Result<(), ApiError> {
    if !seat.home() {
        return Err(ApiError::Forbidden(
            "this person's password belongs to their account in another tenant: only they \
             change it, signed in to their home tenant"
                .into(),
        ));
    }
    if !is_self
        && memberships::Entity::find()
            .filter(memberships::Column::UserId.eq(seat.user.id.as_str()))
            .count(db)
            .await?
            > 0
    {
        return Err(ApiError::Forbidden(
            "this person also belongs to other tenants: only they change their password (with \
             current_password)"
                .into(),
        ));
    }
    Ok(())
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
    let authorize = |seat: &Seat| {
        let is_self = ctx.actor == Actor::User(seat.user.id.clone());
        if role.is_some() || !is_self {
            ctx.require(Role::Admin)?;
        }
        if seat.role == Role::Owner || role == Some(Role::Owner) {
            ctx.require(Role::Owner)?;
        }
        Ok::<bool, ApiError>(is_self)
    };
    // Checked before any argon2 work, and again inside the transaction.
    let seat = find(&state.db, ctx, id).await?;
    let is_self = authorize(&seat)?;
    if patch.role.is_none() && patch.password.is_none() {
        // Nothing to change (like a merge patch of `{}`): the user as they are.
        return Ok(seat.into());
    }
    if patch.password.is_some() {
        check_password_change(&state.db, &seat, is_self).await?;
    }
    if is_self && patch.password.is_some() {
        check_current_password(state, &seat.user, patch.current_password, client_address).await?;
    }
    let password_hash = match patch.password {
        Some(password) => Some(state.password_work.hash(password).await?),
        None => None,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let seat = find_for_update(&txn, ctx, id).await?;
    let is_self = authorize(&seat)?;
    if password_hash.is_some() {
        check_password_change(&txn, &seat, is_self).await?;
    }
    if_match.check(&UserOut::from(seat.clone()), "user")?;
    let updated = match seat.membership {
        Some(membership) => {
            let mut active: memberships::ActiveModel = membership.into();
            if let Some(role) = patch.role {
                active.role = Set(role);
            }
            active.updated_at = Set(now());
            let membership = active.update(&txn).await?;
            audit::log(&txn, ctx, "membership.update", "user", id).await?;
            member_out(seat.user, membership)
        }
        None => {
            let user = update_home(&txn, ctx, seat.user, patch.role, password_hash).await?;
            audit::log(&txn, ctx, "user.update", "user", id).await?;
            user.into()
        }
    };
    txn.commit().await?;
    Ok(updated)
}

/// Changes one of the tenant's own people: their role and password (which ends every session
/// they have, in every tenant).
async fn update_home<C: ConnectionTrait>(
    txn: &C,
    ctx: &TenantContext,
    user: users::Model,
    role: Option<Role>,
    password_hash: Option<String>,
) -> Result<users::Model, ApiError> {
    if user.role == Role::Owner
        && role.is_some_and(|r| r != Role::Owner)
        && owner_count(txn, &ctx.account_id).await? <= 1
    {
        return Err(last_owner());
    }
    let mut active: users::ActiveModel = user.into();
    if let Some(role) = role {
        active.role = Set(role);
    }
    let password_changed = password_hash.is_some();
    if let Some(hash) = password_hash {
        active.password_hash = Set(hash);
    }
    active.updated_at = Set(now());
    let updated = active.update(txn).await?;
    if password_changed {
        revoke_person_sessions(txn, &updated.id).await?;
    }
    Ok(updated)
}

/// Removes one of the tenant's own people (and with them their memberships elsewhere and
/// every session), or a member: their membership and their sessions in this tenant only.
pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let seat = find_for_update(&txn, ctx, id).await?;
    ctx.require(Role::Admin)?;
    if seat.role == Role::Owner {
        ctx.require(Role::Owner)?;
        if seat.home() && owner_count(&txn, &ctx.account_id).await? <= 1 {
            return Err(last_owner());
        }
    }
    match &seat.membership {
        Some(membership) => {
            memberships::Entity::delete_by_id_in_tenant(&ctx.account_id, &membership.id)
                .exec(&txn)
                .await?;
            revoke_user_sessions(&txn, &ctx.account_id, id).await?;
            audit::log(&txn, ctx, "membership.delete", "user", id).await?;
        }
        None => {
            users::Entity::delete_by_id_in_tenant(&ctx.account_id, id)
                .exec(&txn)
                .await?;
            audit::log(&txn, ctx, "user.delete", "user", id).await?;
        }
    }
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

/// The conflict of inviting a person who already belongs to this tenant.
fn already_member() -> ApiError {
    ApiError::Conflict {
        detail: "this person already belongs to this tenant".into(),
        field: Some("email".into()),
    }
}

/// Revokes every refresh token (every session) of a person in one tenant, as removing them
/// from it must.
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

/// Revokes every session of a person in every tenant, as a password change must.
pub async fn revoke_person_sessions<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
) -> Result<(), ApiError> {
    entity::refresh_tokens::Entity::update_many()
        .col_expr(
            entity::refresh_tokens::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(entity::refresh_tokens::Column::UserId.eq(user_id))
        .filter(entity::refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
