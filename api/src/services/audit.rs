//! The audit log: one row per change, written inside the change's transaction.

use entity::{TenantOwned, audit_log};
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{Actor, Page, TenantContext};

pub async fn record<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    actor: &Actor,
    action: &str,
    resource_type: &str,
    resource_id: Option<&str>,
    client_address: Option<&str>,
) -> Result<(), ApiError> {
    audit_log::Entity::insert(audit_log::ActiveModel {
        id: Set(super::new_id()),
        tenant_id: Set(tenant_id.to_string()),
        actor_type: Set(actor.kind().to_string()),
        actor_id: Set(actor.id().to_string()),
        action: Set(action.to_string()),
        resource_type: Set(resource_type.to_string()),
        resource_id: Set(resource_id.map(str::to_string)),
        created_at: Set(super::now()),
        client_address: Set(client_address.map(str::to_string)),
    })
    .exec(db)
    .await?;
    Ok(())
}

/// Records a change made by the caller.
pub async fn log<C: ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    action: &str,
    resource_type: &str,
    resource_id: &str,
) -> Result<(), ApiError> {
    // A change made in another environment than production says where: `staging:flow.create`.
    let action = if ctx.environment == tributary_worker::PRODUCTION {
        action.to_string()
    } else {
        format!("{}:{action}", ctx.environment)
    };
    record(
        db,
        &ctx.account_id,
        &ctx.actor,
        &action,
        resource_type,
        Some(resource_id),
        ctx.client_address.as_deref(),
    )
    .await
}

tributary_worker::string_enum_schema!(
    /// Who made a change.
    ActorType,
    "`user` (a person's access token) or `api_key`.",
    ["user", "api_key"]
);

/// One change in a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    pub id: String,
    /// `user` or `api_key`.
    #[schema(value_type = ActorType)]
    pub actor_type: String,
    pub actor_id: String,
    /// What happened, `resource.verb`.
    #[schema(example = "stripe_account.create")]
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Where the change came from: the client's address as the trusted proxies tell it
    /// (`TRIBUTARY_TRUSTED_PROXIES`); null for changes made before it was recorded.
    #[schema(example = "203.0.113.7")]
    pub client_address: Option<String>,
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<AuditEntryOut>, bool), ApiError> {
    ctx.require(entity::Role::Admin)?;
    let (rows, has_more) = page
        .fetch(
            db,
            audit_log::Entity::find_in_tenant(&ctx.account_id),
            audit_log::Column::Id,
        )
        .await?;
    let data = rows
        .into_iter()
        .map(|row| AuditEntryOut {
            id: row.id,
            actor_type: row.actor_type,
            actor_id: row.actor_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            created_at: row.created_at,
            client_address: row.client_address,
        })
        .collect();
    Ok((data, has_more))
}
