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
    /// Binds the key to one environment of the tenant: it acts there, and a request naming
    /// another with `Tributary-Environment` is refused. Unbound keys act where each request says.
    #[schema(example = "staging", pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub environment: Option<String>,
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
    /// The environment the key is bound to; none when unbound.
    pub environment: Option<String>,
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
            environment: k.environment,
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
    /// The environment the key is bound to; none when unbound.
    pub environment: Option<String>,
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
    if let Some(environment) = &input.environment
        && super::environments::resolve(&state.db, &ctx.account_id, environment)
            .await?
            .is_none()
    {
        return Err(ApiError::NoSuchField {
            field: "environment".into(),
            detail: format!("the tenant has no environment {environment}"),
        });
    }
    let generated = auth::api_keys::generate();
    let created_by = match &ctx.actor {
        Actor::User(id) => Some(id.clone()),
        Actor::ApiKey(_) => None,
    };
    let row = api_keys::Model {
        id: new_id(),
        tenant_id: ctx.account_id.clone(),
        name: input.name.trim().to_string(),
        role: input.role,
        prefix: generated.prefix,
        key_hash: generated.hash,
        created_by,
        created_at: now(),
        last_used_at: None,
        environment: input.environment,
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
        environment: row.environment,
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
            api_keys::Entity::find_in_tenant(&ctx.account_id),
            api_keys::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(ApiKeyOut::from).collect(), has_more))
}

/// A key of the caller's tenant (keys belong to the tenant, not to one of its environments).
async fn key<C: sea_orm::ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    id: &str,
) -> Result<api_keys::Model, ApiError> {
    api_keys::Entity::find_by_id_in_tenant(&ctx.account_id, id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// One key, without the key itself.
pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<ApiKeyOut, ApiError> {
    key(&state.db, ctx, id).await.map(ApiKeyOut::from)
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let key = key(&txn, ctx, id).await?;
    ctx.require(Role::Admin)?;
    // As with people: only an owner touches an owner's key.
    ctx.require(key.role)?;
    api_keys::Entity::delete_by_id_in_tenant(&ctx.account_id, &key.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "api_key.delete", "api_key", &key.id).await?;
    txn.commit().await?;
    Ok(())
}
