//! Promotion: a flow's current version copied into another environment of the tenant. Its
//! connections are mapped to the target's — as the request maps them, else to the target's
//! connection of the same name — and the copy is checked there first: as a flow (the target's
//! validation), and each CRM write against the target CRM's schema (a field the target lacks
//! refuses the promotion, naming it). The target keeps its own history: a flow of the same name
//! there gets a new version; otherwise one is created.

use std::collections::BTreeMap;

use entity::{Role, TenantOwned, connections, flows as flow_rows};
use sea_orm::{ColumnTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_worker::crm;
use utoipa::ToSchema;

use super::flows::{self, FlowOut};
use super::{audit, environments};
use crate::error::{ApiError, FieldError};
use crate::extract::{TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteIn {
    /// The environment to copy the flow into.
    #[schema(example = "production", pattern = "^[a-z][a-z0-9-]{0,31}$")]
    pub to: String,
    /// Source connection id → target connection id. A connection not named here maps to the
    /// target's connection of the same name.
    #[serde(default)]
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub connections: BTreeMap<String, String>,
}

impl Validate for PromoteIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        if environments::valid_name(&self.to) {
            Ok(())
        } else {
            Err(vec![FieldError::new(
                "to",
                format!("must match {}", environments::NAME_PATTERN),
            )])
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PromoteOut {
    /// The environment the flow is now in.
    pub environment: String,
    /// Whether the target had no flow of this name, so one was made.
    pub created: bool,
    /// Each source connection id and the target connection it became.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub connections: BTreeMap<String, String>,
    /// The flow in the target environment.
    pub flow: FlowOut,
}

/// What a flow document names as connections: the flow's and each step's own.
fn named_connections(flow: &Value) -> Vec<String> {
    let mut ids: Vec<String> = flow["connection_id"]
        .as_str()
        .map(String::from)
        .into_iter()
        .collect();
    for step in flow["steps"].as_array().into_iter().flatten() {
        if let Some(id) = step["connection_id"].as_str() {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Writes the target's ids in place of the source's.
fn remap(flow: &mut Value, map: &BTreeMap<String, String>) {
    let swap = |slot: &mut Value| {
        if let Some(target) = slot.as_str().and_then(|id| map.get(id)) {
            *slot = Value::String(target.clone());
        }
    };
    swap(&mut flow["connection_id"]);
    for step in flow["steps"].as_array_mut().into_iter().flatten() {
        if step.get("connection_id").is_some() {
            swap(&mut step["connection_id"]);
        }
    }
}

/// Each CRM write's fields that the target CRM does not have, as `steps[i].fields.<name>`.
async fn missing_fields(
    state: &AppState,
    target: &connections::Model,
    flow: &Value,
) -> Result<Vec<FieldError>, ApiError> {
    // The sandbox takes any field; an HTTP CRM has no schema to read.
    if !crm::has_schema(&target.provider) || target.provider == "sandbox" {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    let mut known: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, step) in flow["steps"].as_array().into_iter().flatten().enumerate() {
        let writes = matches!(
            step["action"].as_str(),
            Some("upsert" | "create" | "update")
        );
        let (Some(object), true) = (step["object"].as_str(), writes) else {
            continue;
        };
        if step.get("connection_id").is_some() {
            continue;
        }
        if !known.contains_key(object) {
            let (_, fields) = crm::fields(state.connector(), target, object)
                .await
                .map_err(|e| ApiError::Conflict {
                    detail: format!(
                        "the target CRM could not describe {object}, so the flow was not promoted: {}",
                        e.message
                    ),
                    field: None,
                })?;
            known.insert(
                object.to_string(),
                fields.into_iter().map(|f| f.name).collect(),
            );
        }
        let names = &known[object];
        for key in ["match", "fields"] {
            for field in step[key].as_object().into_iter().flat_map(|m| m.keys()) {
                if !names.iter().any(|n| n == field) {
                    problems.push(FieldError::new(
                        format!("steps[{i}].{key}.{field}"),
                        format!("the target CRM's {object} has no field {field}"),
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// Copies the flow `id` of this environment into `input.to`.
pub async fn promote(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: PromoteIn,
) -> Result<PromoteOut, ApiError> {
    ctx.require(Role::Admin)?;
    let source = flows::get(state, ctx, id).await?;
    if input.to == ctx.environment {
        return Err(ApiError::Conflict {
            detail: format!("the flow is in {} already", input.to),
            field: Some("to".into()),
        });
    }
    let Some(target_id) = environments::resolve(&state.db, &ctx.account_id, &input.to).await?
    else {
        return Err(ApiError::NoSuchField {
            field: "to".into(),
            detail: format!("no environment {}", input.to),
        });
    };
    let target_ctx = ctx.in_environment(&target_id, &input.to);
    let mut document = serde_json::to_value(&source.flow).map_err(anyhow::Error::from)?;
    // Each connection the flow names, mapped to one of the target's.
    let mut mapping = BTreeMap::new();
    for source_id in named_connections(&document) {
        let target = match input.connections.get(&source_id) {
            Some(target) => connections::Entity::find_by_id_in_tenant(&target_id, target)
                .one(&state.db)
                .await?
                .ok_or_else(|| ApiError::NoSuchField {
                    field: format!("connections.{source_id}"),
                    detail: format!("{} has no connection {target}", input.to),
                })?,
            None => {
                let from = connections::Entity::find_by_id_in_tenant(&ctx.tenant_id, &source_id)
                    .one(&state.db)
                    .await?
                    .ok_or(ApiError::NotFound)?;
                connections::Entity::find_in_tenant(&target_id)
                    .filter(connections::Column::Name.eq(from.name.as_str()))
                    .one(&state.db)
                    .await?
                    .ok_or_else(|| ApiError::NoSuchField {
                        field: format!("connections.{source_id}"),
                        detail: format!(
                            "{} has no connection named {:?}: name one in connections",
                            input.to, from.name
                        ),
                    })?
            }
        };
        mapping.insert(source_id, target.id);
    }
    remap(&mut document, &mapping);
    let target_connection = match document["connection_id"].as_str() {
        Some(id) => {
            connections::Entity::find_by_id_in_tenant(&target_id, id)
                .one(&state.db)
                .await?
        }
        None => None,
    };
    if let Some(target) = &target_connection {
        let missing = missing_fields(state, target, &document).await?;
        if !missing.is_empty() {
            return Err(ApiError::Validation(missing));
        }
    }
    let existing = flow_rows::Entity::find_in_tenant(&target_id)
        .filter(flow_rows::Column::Name.eq(source.flow.name.as_str()))
        .one(&state.db)
        .await?;
    let created = existing.is_none();
    let flow = match existing {
        Some(row) => flows::replace(state, &target_ctx, &row.id, document, None).await?,
        None => flows::create(state, &target_ctx, document).await?,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    // `flow.promote.<target>` on the source flow; the target's own create or update is
    // recorded too.
    let action = format!("flow.promote.{}", input.to);
    audit::log(&txn, ctx, &action, "flow", id).await?;
    txn.commit().await?;
    Ok(PromoteOut {
        environment: input.to,
        created,
        connections: mapping,
        flow,
    })
}
