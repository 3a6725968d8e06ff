//! CRM connections. Credentials are sealed like every secret and never returned. For now the
//! built-in `sandbox` provider is the one that runs; the vendors' providers arrive with their
//! adapters and are refused with a message saying so.

use entity::{Role, TenantOwned, connections, sandbox_records};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tributary_worker::crm::sandbox;
use utoipa::ToSchema;

use super::{audit, check_name, new_id, now};
use crate::app::AppState;
use crate::error::{ApiError, FieldError};
use crate::extract::{Page, TenantContext, Validate};

pub const PROVIDERS: &[&str] = &["sandbox", "hubspot", "salesforce", "zoho", "http"];
/// Providers whose adapter runs in this version.
pub const AVAILABLE_PROVIDERS: &[&str] = &["sandbox"];

/// How the connection authenticates; `type` decides the other fields.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AuthIn {
    #[serde(rename = "type")]
    #[schema(example = "none")]
    pub auth_type: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionIn {
    #[schema(example = "Sandbox")]
    pub name: String,
    /// `sandbox`, `hubspot`, `salesforce`, `zoho` or `http`.
    #[schema(example = "sandbox")]
    pub provider: String,
    /// Defaults to `{"type": "none"}` for the sandbox.
    pub auth: Option<AuthIn>,
    /// Provider settings; unknown keys are refused.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
}

fn check_provider(
    provider: &str,
    auth: Option<&AuthIn>,
    settings: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    if !PROVIDERS.contains(&provider) {
        errors.push(FieldError::new(
            "provider",
            "must be one of sandbox, hubspot, salesforce, zoho, http",
        ));
        return;
    }
    if !AVAILABLE_PROVIDERS.contains(&provider) {
        errors.push(FieldError::new(
            "provider",
            format!("the {provider} adapter is not available in this version yet; use sandbox"),
        ));
        return;
    }
    if let Some(auth) = auth
        && auth.auth_type != "none"
    {
        errors.push(FieldError::new(
            "auth.type",
            "the sandbox takes no credentials: use \"none\"",
        ));
    }
    for (field, message) in sandbox::check_settings(settings) {
        errors.push(FieldError::new(field, message));
    }
}

impl Validate for ConnectionIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("name", &self.name, &mut errors);
        check_provider(
            &self.provider,
            self.auth.as_ref(),
            &self.settings,
            &mut errors,
        );
        super::valid(errors)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    pub name: Option<String>,
    pub auth: Option<AuthIn>,
    /// Replaces the settings.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    /// `active` or `disabled`.
    pub status: Option<String>,
}

impl Validate for ConnectionPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            check_name("name", name, &mut errors);
        }
        if let Some(status) = &self.status
            && !matches!(status.as_str(), "active" | "disabled")
        {
            errors.push(FieldError::new("status", "must be active or disabled"));
        }
        super::valid(errors)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthOut {
    /// The kind of credentials held; the credentials themselves are never returned.
    #[serde(rename = "type")]
    pub auth_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionOut {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub auth: AuthOut,
    #[schema(value_type = Object)]
    pub settings: Value,
    /// `active`, `pending_authorization`, `needs_reauth`, `paused` or `disabled`.
    pub status: String,
    pub status_reason: Option<String>,
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<connections::Model> for ConnectionOut {
    fn from(c: connections::Model) -> Self {
        ConnectionOut {
            settings: serde_json::from_str(&c.settings).unwrap_or(Value::Object(Map::new())),
            id: c.id,
            name: c.name,
            provider: c.provider,
            auth: AuthOut {
                auth_type: c.auth_type,
            },
            status: c.status,
            status_reason: c.status_reason,
            paused_until: c.paused_until,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTestOut {
    pub ok: bool,
    pub detail: String,
}

/// A record held by a sandbox connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxRecordOut {
    pub id: String,
    pub object: String,
    #[schema(value_type = Object)]
    pub fields: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub async fn find(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<connections::Model, ApiError> {
    super::owned::<connections::Entity, _>(&state.db, ctx, id).await
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: ConnectionIn,
) -> Result<ConnectionOut, ApiError> {
    ctx.require(Role::Admin)?;
    let at = now();
    let row = connections::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        name: input.name.trim().to_string(),
        provider: input.provider,
        auth_type: "none".into(),
        credentials: None,
        settings: Value::Object(input.settings).to_string(),
        status: "active".into(),
        status_reason: None,
        paused_until: None,
        created_at: at,
        updated_at: at,
    };
    let txn = crate::db::begin_write(&state.db).await?;
    connections::Entity::insert(connections::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "connection.create", "connection", &row.id).await?;
    txn.commit().await?;
    Ok(row.into())
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<ConnectionOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            connections::Entity::find_in_tenant(&ctx.tenant_id),
            connections::Column::Id,
        )
        .await?;
    Ok((
        rows.into_iter().map(ConnectionOut::from).collect(),
        has_more,
    ))
}

pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    patch: ConnectionPatch,
) -> Result<ConnectionOut, ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let settings = patch
        .settings
        .clone()
        .unwrap_or_else(|| serde_json::from_str(&existing.settings).unwrap_or_default());
    let mut errors = Vec::new();
    check_provider(
        &existing.provider,
        patch.auth.as_ref(),
        &settings,
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let mut active: connections::ActiveModel = existing.into();
    if let Some(name) = patch.name {
        active.name = Set(name.trim().to_string());
    }
    if patch.settings.is_some() {
        active.settings = Set(Value::Object(settings).to_string());
    }
    if let Some(status) = patch.status {
        active.status = Set(status);
        active.status_reason = Set(None);
        active.paused_until = Set(None);
    }
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    audit::log(&txn, ctx, "connection.update", "connection", id).await?;
    txn.commit().await?;
    if updated.status == "active" {
        super::events::release_waiting(state, &updated).await?;
    }
    Ok(updated.into())
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let txn = crate::db::begin_write(&state.db).await?;
    sandbox_records::Entity::delete_many()
        .filter(sandbox_records::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(sandbox_records::Column::ConnectionId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    connections::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &existing.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "connection.delete", "connection", id).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn test(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<ConnectionTestOut, ApiError> {
    let connection = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let count = sandbox_records::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .all(&state.db)
        .await
        .map(|rows| rows.len());
    Ok(match count {
        Ok(count) => ConnectionTestOut {
            ok: connection.status == "active",
            detail: format!(
                "sandbox reachable, {count} records, status {}",
                connection.status
            ),
        },
        Err(e) => ConnectionTestOut {
            ok: false,
            detail: format!("sandbox storage failed: {e}"),
        },
    })
}

pub async fn records(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    object: Option<&str>,
    page: &Page,
) -> Result<(Vec<SandboxRecordOut>, bool), ApiError> {
    let connection = find(state, ctx, id).await?;
    if connection.provider != "sandbox" {
        return Err(ApiError::field(
            "id",
            "only sandbox connections hold records in Tributary",
        ));
    }
    let mut select = sandbox_records::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()));
    if let Some(object) = object {
        select = select.filter(sandbox_records::Column::Object.eq(object));
    }
    let (rows, has_more) = page
        .fetch(&state.db, select, sandbox_records::Column::Id)
        .await?;
    Ok((
        rows.into_iter()
            .map(|r| SandboxRecordOut {
                fields: serde_json::from_str(&r.fields).unwrap_or(Value::Null),
                id: r.id,
                object: r.object,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect(),
        has_more,
    ))
}
