//! API keys: created by admins with at most their own role, shown once, revoked by deletion
//! by someone whose role is at least the key's.

use entity::{Role, TenantOwned, api_keys};
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::fields::Name;
use super::{audit, check_name, new_id, now};
use crate::auth;
use crate::error::{ApiError, FieldError};
use crate::extract::{Actor, Page, TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    #[schema(value_type = Name, example = "CI deploys")]
    pub name: String,
    /// At most the creator's own role.
    pub role: Role,
}

impl Validate for ApiKeyIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("name", &self.name, &mut errors);
        super::valid(errors)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The key's public lookup prefix (`trb_{prefix}_…`).
    pub prefix: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<api_keys::Model> for ApiKeyOut {
    fn from(k: api_keys::Model) -> Self {
        ApiKeyOut {
            id: k.id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A new key; `key` is returned this once and cannot be read again.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    #[schema(example = "trb_0a1b2c3d4e5f_…")]
    pub key: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: ApiKeyIn,
) -> Result<ApiKeyCreated, ApiError> {
    ctx.require(Role::Admin)?;
    if input.role > ctx.role {
        return Err(ApiError::field(
            "role",
            "cannot be higher than your own role",
        ));
    }
    let generated = auth::api_keys::generate();
    let created_by = match &ctx.actor {
        Actor::User(id) => Some(id.clone()),
        Actor::ApiKey(_) => None,
    };
    let row = api_keys::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        name: input.name.trim().to_string(),
        role: input.role,
        prefix: generated.prefix,
        key_hash: generated.hash,
        created_by,
        created_at: now(),
        last_used_at: None,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    api_keys::Entity::insert(api_keys::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "api_key.create", "api_key", &row.id).await?;
    txn.commit().await?;
    Ok(ApiKeyCreated {
        id: row.id,
        name: row.name,
        role: row.role,
        prefix: row.prefix,
        key: generated.key,
        created_at: row.created_at,
    })
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<ApiKeyOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            api_keys::Entity::find_in_tenant(&ctx.tenant_id),
            api_keys::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(ApiKeyOut::from).collect(), has_more))
}

/// One key, without the key itself.
pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<ApiKeyOut, ApiError> {
    super::owned::<api_keys::Entity, _>(&state.db, ctx, id)
        .await
        .map(ApiKeyOut::from)
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let key = super::owned::<api_keys::Entity, _>(&txn, ctx, id).await?;
    ctx.require(Role::Admin)?;
    // As with people: only an owner touches an owner's key.
    ctx.require(key.role)?;
    api_keys::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &key.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "api_key.delete", "api_key", &key.id).await?;
    txn.commit().await?;
    Ok(())
}
