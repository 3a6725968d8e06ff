//! Flows: a tenant's mapping from Stripe events to CRM writes. Every save is a new version,
//! kept, so each delivery names the version it ran. Validation names the path of every error.

use entity::{Role, TenantOwned, connections, flow_versions, flows};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_worker::crm::config;
use tributary_worker::crm::providers::stores_records;
use tributary_worker::flow::{self, FlowSpec, Preview, ValidationError};
use tributary_worker::settings::VendorUrls;
use tributary_worker::steps::{self, Runs, Wants};
use utoipa::ToSchema;

use super::{audit, new_id, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{Page, TenantContext};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowOut {
    pub id: String,
    /// The current version; every PUT adds one.
    pub version: i32,
    #[serde(flatten)]
    pub flow: FlowSpec,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowVersionOut {
    pub version: i32,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub flow: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The flow to check: the same body as `POST /v1/flows`, or that body wrapped as `{"flow": …}`,
/// optionally with `"preview"` (a [`PreviewIn`]) to also run the valid flow on an event.
#[derive(Debug, Deserialize)]
#[serde(from = "Value")]
pub struct ValidateIn {
    pub flow: Value,
    pub preview: Option<Value>,
}

impl From<Value> for ValidateIn {
    fn from(body: Value) -> Self {
        match body {
            Value::Object(mut map)
                if map.contains_key("flow")
                    && map.keys().all(|k| k == "flow" || k == "preview") =>
            {
                ValidateIn {
                    flow: map.remove("flow").unwrap_or_default(),
                    preview: map.remove("preview"),
                }
            }
            flow => ValidateIn {
                flow,
                preview: None,
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateOut {
    pub valid: bool,
    pub errors: Vec<ValidationError>,
    /// With `preview`, and when the flow is valid: what it would do with that event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    /// With `preview`: the event it ran on, as Stripe sent it (or Stripe's fixture), so a
    /// designer can offer its fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub event: Option<Value>,
    /// The flow as it was read: a YAML document comes back as JSON, so an editor can keep a
    /// YAML view and a JSON one in step.
    #[schema(value_type = serde_json::Value)]
    pub flow: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    /// A Stripe event, as Stripe would send it.
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub event: Option<Value>,
    /// Or the id of an event in the inbox (`GET /v1/events`).
    pub event_id: Option<String>,
    /// Or the newest inbox event of this type, e.g. `charge.succeeded`.
    pub latest: Option<String>,
}

fn to_fields(errors: Vec<ValidationError>) -> ApiError {
    ApiError::Validation(
        errors
            .into_iter()
            .map(|e| FieldError::new(e.path, e.message))
            .collect(),
    )
}

/// The `steps` error of a flow with more steps than `TRIBUTARY_MAX_STEPS_PER_FLOW`, checked
/// before anything else so an oversized flow costs no validation.
fn too_many_steps(state: &AppState, value: &Value) -> Option<ValidationError> {
    let max = state.settings.limits.max_steps_per_flow;
    let steps = value.get("steps")?.as_array()?;
    (steps.len() > max).then(|| ValidationError {
        path: "steps".into(),
        message: format!("at most {max} steps per flow (TRIBUTARY_MAX_STEPS_PER_FLOW)"),
    })
}

/// Parses and checks a flow, including that its connection is the tenant's.
async fn checked(
    state: &AppState,
    ctx: &TenantContext,
    value: &Value,
) -> Result<FlowSpec, ApiError> {
    if let Some(error) = too_many_steps(state, value) {
        return Err(to_fields(vec![error]));
    }
    let spec = flow::parse_flow(value).map_err(to_fields)?;
    let mut errors = Vec::new();
    if spec.name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be at most 200 characters"));
    }
    for (index, step) in spec.steps.iter().enumerate() {
        if step.id.len() > 128 {
            errors.push(FieldError::new(
                format!("steps[{index}].id"),
                "must be at most 128 characters",
            ));
        }
        if step.object.len() > 128 {
            errors.push(FieldError::new(
                format!("steps[{index}].object"),
                "must be at most 128 characters",
            ));
        }
    }
    errors.extend(
        url_errors(value, state.settings.vendor_urls)
            .into_iter()
            .map(|e| FieldError::new(e.path, e.message)),
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let connection = connections::Entity::find_by_id_in_tenant(&ctx.tenant_id, &spec.connection_id)
        .one(&state.db)
        .await?;
    let Some(connection) = connection else {
        return Err(ApiError::field("connection_id", "no such connection"));
    };
    // A CRM trigger listens to the flow's own connection, which must be of that CRM.
    if spec.trigger.source != "stripe" && connection.provider != spec.trigger.source {
        return Err(ApiError::field(
            "trigger.source",
            format!(
                "a {} trigger listens to the flow's connection, which is a {} connection; use a {} connection",
                spec.trigger.source, connection.provider, spec.trigger.source
            ),
        ));
    }
    // A step's own connection must exist and be of the kind the step needs.
    let mut errors = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let Some(id) = &step.connection_id else {
            continue;
        };
        let found = connections::Entity::find_by_id_in_tenant(&ctx.tenant_id, id)
            .one(&state.db)
            .await?;
        let field = format!("steps[{i}].connection_id");
        let wanted = match steps::kind(step.action).runs(true) {
            Runs::Connection(Wants::Provider { provider, .. }) => Some(provider),
            _ => None,
        };
        match (found, wanted) {
            (None, _) => errors.push(FieldError::new(field, "no such connection")),
            (Some(c), Some(wanted)) if c.provider != wanted => errors.push(FieldError::new(
                field,
                format!(
                    "{} steps need a {wanted} connection, not {}",
                    step.action, c.provider
                ),
            )),
            (Some(c), None) if !stores_records(&c.provider) => errors.push(FieldError::new(
                field,
                format!(
                    "{} steps write to a CRM, not to an smtp connection",
                    step.action
                ),
            )),
            _ => {}
        }
    }
    super::valid(errors).map_err(ApiError::Validation)?;
    Ok(spec)
}

/// The http steps' URLs that `TRIBUTARY_VENDOR_URLS` refuses, found when the flow is saved
/// rather than at its first delivery. A host a template writes is checked when the step runs.
fn url_errors(value: &Value, vendor_urls: VendorUrls) -> Vec<ValidationError> {
    let steps = value.get("steps").and_then(Value::as_array);
    let mut errors = Vec::new();
    for (i, step) in steps.into_iter().flatten().enumerate() {
        let Some(fixed) = step
            .get("url")
            .and_then(Value::as_str)
            .and_then(literal_origin)
        else {
            continue;
        };
        if let Err(message) = config::check_url("http", fixed, vendor_urls) {
            errors.push(ValidationError {
                path: format!("steps[{i}].url"),
                message,
            });
        }
    }
    errors
}

/// What of `url` no template writes: all of it, or its scheme and host when a template comes
/// only after them; `None` when a template writes part of the host.
fn literal_origin(url: &str) -> Option<&str> {
    let Some(at) = url.find('{') else {
        return Some(url);
    };
    let prefix = &url[..at];
    let authority = prefix.split_once("://")?.1;
    let end = authority.find(['/', '?', '#'])?;
    Some(&prefix[..prefix.len() - authority.len() + end])
}

fn render(row: flows::Model) -> Result<FlowOut, ApiError> {
    let flow: FlowSpec = serde_json::from_str(&row.spec).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored flow {} does not parse: {e}",
            row.id
        ))
    })?;
    Ok(FlowOut {
        id: row.id,
        version: row.version,
        flow,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub async fn find(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<flows::Model, ApiError> {
    super::owned::<flows::Entity, _>(&state.db, ctx, id).await
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    value: Value,
) -> Result<FlowOut, ApiError> {
    ctx.require(Role::Admin)?;
    let spec = checked(state, ctx, &value).await?;
    let text = serde_json::to_string(&spec).map_err(anyhow::Error::from)?;
    let at = now();
    let row = flows::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        name: spec.name.clone(),
        connection_id: spec.connection_id.clone(),
        enabled: spec.enabled,
        version: 1,
        spec: text.clone(),
        created_at: at,
        updated_at: at,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let max = state.settings.limits.max_flows;
    super::limits::ensure_room::<flows::Entity, _>(
        &txn,
        &ctx.tenant_id,
        max,
        "flows",
        format!("at most {max} flows per tenant (TRIBUTARY_MAX_FLOWS)"),
    )
    .await?;
    flows::Entity::insert(flows::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    insert_version(&txn, &row).await?;
    audit::log(&txn, ctx, "flow.create", "flow", &row.id).await?;
    txn.commit().await?;
    super::webhook_endpoints::resync_later(state, &ctx.tenant_id);
    render(row)
}

async fn insert_version<C: sea_orm::ConnectionTrait>(
    db: &C,
    row: &flows::Model,
) -> Result<(), ApiError> {
    flow_versions::Entity::insert(flow_versions::ActiveModel {
        id: Set(new_id()),
        tenant_id: Set(row.tenant_id.clone()),
        flow_id: Set(row.id.clone()),
        version: Set(row.version),
        spec: Set(row.spec.clone()),
        created_at: Set(row.updated_at),
    })
    .exec(db)
    .await
    .map_err(|e| {
        if crate::error::is_unique_violation(&e) {
            ApiError::Conflict {
                detail: "the flow was changed at the same moment; fetch it and try again".into(),
                field: None,
            }
        } else {
            e.into()
        }
    })?;
    Ok(())
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<FlowOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            flows::Entity::find_in_tenant(&ctx.tenant_id),
            flows::Column::Id,
        )
        .await?;
    Ok((
        rows.into_iter().map(render).collect::<Result<_, _>>()?,
        has_more,
    ))
}

pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<FlowOut, ApiError> {
    render(find(state, ctx, id).await?)
}

/// A flow version's entity tag, as `ETag` gives it and `If-Match` takes it back.
pub fn etag(version: i32) -> String {
    format!("\"v{version}\"")
}

/// Whether an `If-Match` header names `version` (or is `*`); weak tags compare by value.
fn if_match_accepts(header: &str, version: i32) -> bool {
    let current = etag(version);
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current.as_str())
}

pub async fn replace(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    value: Value,
    if_match: Option<&str>,
) -> Result<FlowOut, ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let stale = || {
        ApiError::PreconditionFailed(format!(
            "the flow is at version {} now, not the one If-Match names: GET it again, then \
             replace it",
            existing.version
        ))
    };
    // A bad document is a 422 whatever version it names: checked before `If-Match`.
    let spec = checked(state, ctx, &value).await?;
    if if_match.is_some_and(|header| !if_match_accepts(header, existing.version)) {
        return Err(stale());
    }
    let text = serde_json::to_string(&spec).map_err(anyhow::Error::from)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let version = existing.version + 1;
    // Only over the version that was read: two replaces of one version never both land.
    let applied = flows::Entity::update_many()
        .set(flows::ActiveModel {
            name: Set(spec.name.clone()),
            connection_id: Set(spec.connection_id.clone()),
            enabled: Set(spec.enabled),
            version: Set(version),
            spec: Set(text),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(flows::Column::Id.eq(existing.id.as_str()))
        .filter(flows::Column::Version.eq(existing.version))
        .exec(&txn)
        .await?
        .rows_affected;
    if applied != 1 {
        return Err(stale());
    }
    let updated = flows::Entity::find_by_id(existing.id.clone())
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    insert_version(&txn, &updated).await?;
    audit::log(&txn, ctx, "flow.update", "flow", id).await?;
    txn.commit().await?;
    super::webhook_endpoints::resync_later(state, &ctx.tenant_id);
    render(updated)
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    flows::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &existing.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "flow.delete", "flow", id).await?;
    txn.commit().await?;
    super::webhook_endpoints::resync_later(state, &ctx.tenant_id);
    Ok(())
}

pub async fn versions(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<Vec<FlowVersionOut>, ApiError> {
    let existing = find(state, ctx, id).await?;
    let rows = flow_versions::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(flow_versions::Column::FlowId.eq(existing.id.as_str()))
        .order_by_desc(flow_versions::Column::Version)
        .all(&state.db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|v| FlowVersionOut {
            version: v.version,
            flow: serde_json::from_str(&v.spec).unwrap_or(Value::Null),
            created_at: v.created_at,
        })
        .collect())
}

pub async fn validate(
    state: &AppState,
    ctx: &TenantContext,
    value: &Value,
    preview: Option<&Value>,
) -> Result<ValidateOut, ApiError> {
    if let Some(error) = too_many_steps(state, value) {
        return Ok(ValidateOut {
            valid: false,
            errors: vec![error],
            preview: None,
            event: None,
            flow: value.clone(),
        });
    }
    super::template_runs::count(state, &ctx.tenant_id)?;
    let flow_value = value.clone();
    let mut errors = super::template_runs::run(move || flow::validate(&flow_value)).await?;
    errors.extend(url_errors(value, state.settings.vendor_urls));
    if errors.is_empty()
        && let Some(id) = value.get("connection_id").and_then(Value::as_str)
        && connections::Entity::find_by_id_in_tenant(&ctx.tenant_id, id)
            .one(&state.db)
            .await?
            .is_none()
    {
        errors.push(ValidationError {
            path: "connection_id".into(),
            message: "no such connection".into(),
        });
    }
    let (preview, event) = match preview {
        Some(asked) if errors.is_empty() => match draft_preview(state, ctx, value, asked).await {
            Ok((preview, event)) => (Some(preview), Some(event)),
            Err(error) => {
                errors.push(error);
                (None, None)
            }
        },
        _ => (None, None),
    };
    Ok(ValidateOut {
        valid: errors.is_empty(),
        errors,
        preview,
        event,
        flow: value.clone(),
    })
}

/// A valid draft run on the event `asked` names (`preview.event`, `preview.event_id`, or
/// `preview.latest`: the newest inbox event of that type, else Stripe's fixture of it, so a
/// flow can be previewed before its first event). A problem is the validation's, by path.
async fn draft_preview(
    state: &AppState,
    ctx: &TenantContext,
    flow_value: &Value,
    asked: &Value,
) -> Result<(Preview, Value), ValidationError> {
    let problem = |path: &str, message: String| ValidationError {
        path: path.into(),
        message,
    };
    let input: PreviewIn = serde_json::from_value(asked.clone()).map_err(|e| {
        problem(
            "preview",
            format!("must be {{event | event_id | latest}}: {e}"),
        )
    })?;
    let event = match preview_event(state, ctx, &input).await {
        Ok(event) => event,
        Err(ApiError::Validation(_)) if input.latest.is_some() && input.event.is_none() => {
            let event_type = input.latest.as_deref().unwrap_or_default();
            crate::stripe::fixtures::test_event(event_type, now().timestamp()).ok_or_else(|| {
                problem(
                    "preview.latest",
                    format!("'{event_type}' is not a Stripe event type with a test event"),
                )
            })?
        }
        Err(ApiError::Validation(found)) => {
            let first = found.into_iter().next();
            return Err(first.map_or_else(
                || problem("preview", "no such event".into()),
                |e| problem(&format!("preview.{}", e.field), e.message),
            ));
        }
        Err(other) => return Err(problem("preview", other.to_string())),
    };
    let spec: FlowSpec = serde_json::from_value(flow_value.clone())
        .map_err(|e| problem("preview", e.to_string()))?;
    let settings = preview_settings(state, ctx, &spec.connection_id)
        .await
        .map_err(|e| problem("preview", e.to_string()))?;
    let ran_on = event.clone();
    let preview = super::template_runs::run(move || flow::preview(&spec, &event, &settings, now()))
        .await
        .map_err(|e| problem("preview", e.to_string()))?
        .map_err(|e| problem("preview", e.to_string()))?;
    Ok((preview, ran_on))
}

/// The event a preview runs on: pasted, an inbox event by id, or the newest of a type.
async fn preview_event(
    state: &AppState,
    ctx: &TenantContext,
    input: &PreviewIn,
) -> Result<Value, ApiError> {
    let stored = |row: Option<entity::events::Model>, field: &str, what: String| {
        let row = row.ok_or_else(|| ApiError::field(field, what))?;
        serde_json::from_str::<Value>(&row.payload)
            .map_err(|_| ApiError::field(field, "the stored event is not readable JSON"))
    };
    match (&input.event, &input.event_id, &input.latest) {
        (Some(event), None, None) => Ok(event.clone()),
        (None, Some(event_id), None) => stored(
            entity::events::Entity::find_by_id_in_tenant(&ctx.tenant_id, event_id)
                .one(&state.db)
                .await?,
            "event_id",
            "no such event in your inbox".into(),
        ),
        (None, None, Some(event_type)) => stored(
            entity::events::Entity::find_in_tenant(&ctx.tenant_id)
                .filter(entity::events::Column::EventType.eq(event_type.as_str()))
                .order_by_desc(entity::events::Column::Id)
                .one(&state.db)
                .await?,
            "latest",
            format!("no {event_type} event in your inbox yet"),
        ),
        _ => Err(ApiError::field(
            "event",
            "give exactly one of event (a Stripe event), event_id (an inbox event) or latest (an \
             event type)",
        )),
    }
}

/// The settings a preview (or a dry run) renders with: the connection's, with what its adapter
/// discovered (Salesforce's won stage), as the flow will run; neither calls the CRM.
pub(super) async fn preview_settings(
    state: &AppState,
    ctx: &TenantContext,
    connection_id: &str,
) -> Result<Value, ApiError> {
    let Some(c) = connections::Entity::find_by_id_in_tenant(&ctx.tenant_id, connection_id)
        .one(&state.db)
        .await?
    else {
        return Ok(Value::Object(Default::default()));
    };
    let mut settings: serde_json::Map<String, Value> =
        serde_json::from_str(&c.settings).unwrap_or_default();
    let info: serde_json::Map<String, Value> =
        serde_json::from_str(&c.vendor_info).unwrap_or_default();
    if let Some(stage) = info.get("won_stage") {
        settings.entry("won_stage").or_insert_with(|| stage.clone());
    }
    Ok(Value::Object(settings))
}

pub async fn preview(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: &PreviewIn,
) -> Result<Preview, ApiError> {
    super::template_runs::count(state, &ctx.tenant_id)?;
    let row = find(state, ctx, id).await?;
    let event = &preview_event(state, ctx, input).await?;
    let spec: FlowSpec = serde_json::from_str(&row.spec).map_err(anyhow::Error::from)?;
    if event.get("type").and_then(Value::as_str).is_none()
        || event.pointer("/data/object").is_none()
    {
        return Err(ApiError::field(
            "event",
            "must be a Stripe event with type and data.object",
        ));
    }
    let settings = preview_settings(state, ctx, &spec.connection_id).await?;
    let event = event.clone();
    super::template_runs::run(move || flow::preview(&spec, &event, &settings, now()))
        .await?
        .map_err(|e| ApiError::field("event", e.to_string()))
}

pub fn templates() -> Vec<flow::templates::FlowTemplate> {
    flow::templates::builtin()
}
