//! A flow's history put to use: one version, the structural difference between two, and
//! rollback to one. A rollback is a replace with that version's document (the same checks,
//! `If-Match` handling and `flow.update` audit entry as `PUT /v1/flows/{id}`), so it is a new
//! version equal to the old one and history is never rewritten.

pub mod diff;

use entity::{Role, TenantOwned, flow_versions, flows as flow_rows};
use sea_orm::{ColumnTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::flows::{self, FlowOut, FlowVersionOut};
use crate::error::{ApiError, FieldError};
use crate::extract::{TenantContext, Validate};
use crate::state::AppState;
use diff::Change;

/// Which versions to compare.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older version; by default the one before `to`. `0` stands for no flow at all, so
    /// everything of `to` is `added`.
    #[param(minimum = 0, maximum = 2147483647)]
    pub from: Option<i64>,
    /// The newer version; by default the current one.
    #[param(minimum = 0, maximum = 2147483647)]
    pub to: Option<i64>,
}

impl Validate for DiffQuery {}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiffOut {
    pub from: i64,
    pub to: i64,
    /// Every difference, in a stable order: the flow's own keys, then the steps in `to`'s
    /// order, then the steps `to` no longer has.
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackIn {
    /// The version to restore, as `GET /v1/flows/{id}/versions` lists it.
    #[schema(minimum = 1, maximum = 2147483647, example = 1)]
    pub version: i64,
}

impl Validate for RollbackIn {}

/// One stored version of a flow of the caller's tenant.
pub async fn stored(
    state: &AppState,
    ctx: &TenantContext,
    flow_id: &str,
    version: i64,
) -> Result<Option<flow_versions::Model>, ApiError> {
    let Ok(version) = i32::try_from(version) else {
        return Ok(None);
    };
    Ok(flow_versions::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(flow_versions::Column::FlowId.eq(flow_id))
        .filter(flow_versions::Column::Version.eq(version))
        .one(&state.db)
        .await?)
}

fn out(row: flow_versions::Model) -> FlowVersionOut {
    FlowVersionOut {
        version: row.version,
        flow: serde_json::from_str(&row.spec).unwrap_or(Value::Null),
        created_at: row.created_at,
    }
}

fn no_version(field: &str, version: impl std::fmt::Display) -> ApiError {
    ApiError::NoSuchField {
        field: field.into(),
        detail: format!("the flow has no version {version}"),
    }
}

/// `GET /v1/flows/{id}/versions/{v}`: 404 for an unknown flow or version (or one that is not
/// a number).
pub async fn version(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    version: &str,
) -> Result<FlowVersionOut, ApiError> {
    let flow = flows::find(state, ctx, id).await?;
    let found = match version.parse::<i64>() {
        Ok(number) => stored(state, ctx, &flow.id, number).await?,
        Err(_) => None,
    };
    found
        .map(out)
        .ok_or_else(|| ApiError::NoSuch(format!("the flow has no version {version}")))
}

/// The document of version `number` of `flow` for a diff; version 0 is no flow (`{}`).
async fn document(
    state: &AppState,
    ctx: &TenantContext,
    flow: &flow_rows::Model,
    number: i64,
    field: &str,
) -> Result<Value, ApiError> {
    if number == 0 {
        return Ok(Value::Object(Default::default()));
    }
    let row = stored(state, ctx, &flow.id, number)
        .await?
        .ok_or_else(|| no_version(field, number))?;
    Ok(serde_json::from_str(&row.spec).unwrap_or(Value::Null))
}

pub async fn diff(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    query: &DiffQuery,
) -> Result<DiffOut, ApiError> {
    let flow = flows::find(state, ctx, id).await?;
    let to = query.to.unwrap_or(i64::from(flow.version));
    let from = query.from.unwrap_or(to.saturating_sub(1).max(0));
    let after = document(state, ctx, &flow, to, "to").await?;
    let before = document(state, ctx, &flow, from, "from").await?;
    Ok(DiffOut {
        from,
        to,
        changes: diff::flows(&before, &after),
    })
}

/// `POST /v1/flows/{id}/rollback`: a replace with version `n`'s document. A version that can
/// no longer be saved (its connection was deleted since, a limit was lowered) is a 409 naming
/// `version`: the request is well formed, the state refuses it.
pub async fn rollback(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: &RollbackIn,
    if_match: Option<&str>,
) -> Result<FlowOut, ApiError> {
    let flow = flows::find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let row = stored(state, ctx, &flow.id, input.version)
        .await?
        .ok_or_else(|| no_version("version", input.version))?;
    let document: Value = serde_json::from_str(&row.spec).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored version {} of flow {} does not parse: {e}",
            row.version,
            flow.id
        ))
    })?;
    flows::replace(state, ctx, &flow.id, document, if_match)
        .await
        .map_err(|error| match error {
            ApiError::Validation(errors) => ApiError::Conflict {
                detail: format!(
                    "version {} cannot be restored as it is: {}",
                    row.version,
                    describe(&errors)
                ),
                field: Some("version".into()),
            },
            other => other,
        })
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
