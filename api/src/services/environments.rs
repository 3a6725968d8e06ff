//! Environments inside a tenant: `production` (the tenant itself) and those the tenant makes
//! (`development`, `staging`, …), each a tenant row of its own under the tenant
//! (`tenants.parent_id`), so its Stripe accounts, connections, flows, events and deliveries are
//! invisible from the others by the same scoping that keeps tenants apart. A new environment
//! starts with a sandbox CRM connection, so a flow can be built and tried with no outside
//! account, then promoted.

use chrono::{DateTime, Utc};
use entity::{Role, TenantOwned, connections, events, flows, stripe_accounts, tenants};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use tributary_worker::PRODUCTION;
use utoipa::ToSchema;

use super::{audit, new_id, now};
use crate::error::{ApiError, FieldError, is_unique_violation};
use crate::extract::{TenantContext, Validate};
use crate::state::AppState;

/// Environments a tenant may have besides `production`.
pub const MAX_ENVIRONMENTS: u64 = 10;

pub use tributary_worker::environments::{NAME_PATTERN, resolve, valid_name};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentIn {
    /// Lower-case letters, digits and `-`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,31}$", example = "staging")]
    pub name: String,
    /// Let it hold live-mode Stripe accounts too (default false: test-mode ones only).
    #[serde(default)]
    pub mixed_modes: bool,
}

/// A change to an environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentPatch {
    /// Whether it may hold Stripe accounts of the other mode: test-mode ones in `production`,
    /// live ones elsewhere. Turning it off is refused (409) while it holds any.
    pub mixed_modes: bool,
}

impl Validate for EnvironmentPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

impl Validate for EnvironmentIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        if valid_name(&self.name) {
            Ok(())
        } else {
            Err(vec![FieldError::new(
                "name",
                format!("must match {NAME_PATTERN}, e.g. staging"),
            )])
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentOut {
    #[schema(example = "staging")]
    pub name: String,
    /// Whether this request acts in it.
    pub current: bool,
    /// The Stripe mode its accounts are in: `true` (live) for `production`, `false` (test) for
    /// the others.
    pub livemode: bool,
    /// Whether it holds accounts of the other mode too (the tenant opted in).
    pub mixed_modes: bool,
    pub created_at: DateTime<Utc>,
}

fn out(row: &tenants::Model, ctx: &TenantContext) -> EnvironmentOut {
    EnvironmentOut {
        name: row.environment.clone(),
        current: row.environment == ctx.environment,
        livemode: row.environment == PRODUCTION,
        mixed_modes: row.mixed_modes,
        created_at: row.created_at,
    }
}

/// Turns an environment's `mixed_modes` on or off; off is refused (409) while it holds Stripe
/// accounts of the other mode, which it names. Admins and owners only.
pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    name: &str,
    patch: EnvironmentPatch,
) -> Result<EnvironmentOut, ApiError> {
    ctx.require(Role::Admin)?;
    let Some(id) = resolve(&state.db, &ctx.account_id, name).await? else {
        return Err(ApiError::NoSuch(format!("no environment {name}")));
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    // Locked, as `stripe_accounts::check_mode` locks it to add an account of the other mode.
    let row = tenants::Entity::find_by_id(id.clone())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !patch.mixed_modes {
        let production = name == PRODUCTION;
        let others: Vec<String> = stripe_accounts::Entity::find_in_tenant(&id)
            .all(&txn)
            .await?
            .into_iter()
            .filter(|account| {
                super::stripe_accounts::livemode_of(&state.keyring, account)
                    .is_some_and(|live| live != production)
            })
            .map(|account| format!("{} ({})", account.name, account.id))
            .collect();
        if !others.is_empty() {
            return Err(ApiError::Conflict {
                detail: format!(
                    "the {name} environment holds Stripe accounts of the other mode: {}; move \
                     or delete them first",
                    others.join(", ")
                ),
                field: Some("mixed_modes".into()),
            });
        }
    }
    let mut active: tenants::ActiveModel = row.into();
    active.mixed_modes = sea_orm::Set(patch.mixed_modes);
    active.updated_at = sea_orm::Set(now());
    let updated = sea_orm::ActiveModelTrait::update(active, &txn).await?;
    let action = if patch.mixed_modes {
        "environment.mixed_modes.on"
    } else {
        "environment.mixed_modes.off"
    };
    audit::log(&txn, ctx, action, "environment", name).await?;
    txn.commit().await?;
    Ok(out(&updated, ctx))
}

/// `production`, then the tenant's other environments by name.
pub async fn list(state: &AppState, ctx: &TenantContext) -> Result<Vec<EnvironmentOut>, ApiError> {
    let home = tenants::Entity::find_by_id(ctx.account_id.clone())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let others = tenants::Entity::find()
        .filter(tenants::Column::ParentId.eq(ctx.account_id.as_str()))
        .order_by_asc(tenants::Column::Environment)
        .all(&state.db)
        .await?;
    Ok(std::iter::once(&home)
        .chain(others.iter())
        .map(|row| out(row, ctx))
        .collect())
}

/// One environment of the tenant, by name.
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    name: &str,
) -> Result<EnvironmentOut, ApiError> {
    list(state, ctx)
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::NoSuch(format!("no environment {name}")))
}

/// Makes an environment, with a sandbox CRM connection in it. Admins and owners only.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: EnvironmentIn,
) -> Result<EnvironmentOut, ApiError> {
    ctx.require(Role::Admin)?;
    let taken = || ApiError::Conflict {
        detail: format!("the environment {} exists already", input.name),
        field: Some("name".into()),
    };
    if input.name == PRODUCTION {
        return Err(taken());
    }
    let home = tenants::Entity::find_by_id(ctx.account_id.clone())
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let count = tenants::Entity::find()
        .filter(tenants::Column::ParentId.eq(ctx.account_id.as_str()))
        .count(&txn)
        .await?;
    if count >= MAX_ENVIRONMENTS {
        return Err(ApiError::Conflict {
            detail: format!(
                "a tenant has at most {MAX_ENVIRONMENTS} environments besides production; delete one first"
            ),
            field: None,
        });
    }
    let at = now();
    let row = tenants::Model {
        id: new_id(),
        name: format!("{} ({})", home.name, input.name),
        parent_id: Some(ctx.account_id.clone()),
        environment: input.name.clone(),
        mixed_modes: input.mixed_modes,
        anomaly_sensitivity: None,
        created_at: at,
        updated_at: at,
    };
    tenants::Entity::insert(tenants::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                taken()
            } else {
                e.into()
            }
        })?;
    audit::log(&txn, ctx, "environment.create", "environment", &input.name).await?;
    if input.mixed_modes {
        audit::log(
            &txn,
            ctx,
            "environment.mixed_modes.on",
            "environment",
            &input.name,
        )
        .await?;
    }
    txn.commit().await?;
    // Its first connection: the built-in sandbox CRM.
    let inside = ctx.in_environment(&row.id, &row.environment);
    let sandbox = serde_json::from_value(serde_json::json!({
        "name": "Sandbox CRM", "provider": "sandbox", "auth": {"type": "none"}
    }))
    .map_err(anyhow::Error::from)?;
    super::connections::create(state, &inside, sandbox).await?;
    Ok(out(&row, ctx))
}

/// Tables whose rows belong to one environment and go with it.
const OWNED_TABLES: &[&str] = &[
    "sandbox_records",
    "crm_watches",
    "crm_versions",
    "record_links",
    "notification_channels",
    "alerts",
    "idempotency_keys",
    "oauth_states",
    "bulk_job_items",
    "bulk_jobs",
    "email_sends",
    "rate_budgets",
    "request_leases",
];

/// Deletes an environment that holds no Stripe account, flow or event (409 naming what it
/// still holds); its connections and their data go with it. `production` cannot be deleted.
pub async fn delete(state: &AppState, ctx: &TenantContext, name: &str) -> Result<(), ApiError> {
    ctx.require(Role::Admin)?;
    if name == PRODUCTION {
        return Err(ApiError::Conflict {
            detail: "production is the tenant itself and cannot be deleted".into(),
            field: None,
        });
    }
    let Some(id) = resolve(&state.db, &ctx.account_id, name).await? else {
        return Err(ApiError::NoSuch(format!("no environment {name}")));
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let held = [
        (
            "Stripe accounts",
            stripe_accounts::Entity::find_in_tenant(&id)
                .count(&txn)
                .await?,
        ),
        (
            "flows",
            flows::Entity::find_in_tenant(&id).count(&txn).await?,
        ),
        (
            "events",
            events::Entity::find_in_tenant(&id).count(&txn).await?,
        ),
    ];
    let still: Vec<String> = held
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if !still.is_empty() {
        return Err(ApiError::Conflict {
            detail: format!(
                "the environment {name} still holds {}; delete them first",
                still.join(", ")
            ),
            field: None,
        });
    }
    let backend = txn.get_database_backend();
    for table in OWNED_TABLES {
        let sql = format!(
            r#"DELETE FROM "{table}" WHERE "tenant_id" = {}"#,
            placeholder(backend)
        );
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [id.clone().into()],
        ))
        .await?;
    }
    connections::Entity::delete_many()
        .filter(connections::Column::TenantId.eq(id.as_str()))
        .exec(&txn)
        .await?;
    tenants::Entity::delete_by_id(id.clone()).exec(&txn).await?;
    audit::log(&txn, ctx, "environment.delete", "environment", name).await?;
    txn.commit().await?;
    Ok(())
}

fn placeholder(backend: sea_orm::DatabaseBackend) -> &'static str {
    match backend {
        sea_orm::DatabaseBackend::Postgres => "$1",
        _ => "?",
    }
}
