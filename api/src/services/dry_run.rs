//! Dry-run replay: a stored version or a draft of a flow run on stored events, compared with
//! what the flow's deliveries actually sent for them. Nothing is written, sent or called: no
//! delivery, no CRM or Stripe request (steps that would read from Stripe or the CRM use what
//! the deliveries recorded, else a placeholder, as a preview does). Only the caller's tenant's
//! events and deliveries are read.
//!
//! Bounded: at most 500 events; the run counts against the preview rate
//! (`TRIBUTARY_PREVIEW_RATE`, one token per 100 events) and is evaluated off the async
//! executor, 100 events at a time, each batch within the template-run time limit.

mod compare;
mod replay;
mod select;
pub mod types;

use std::sync::Arc;

use entity::events;
use serde_json::Value;
use tributary_worker::flow::{FlowSpec, ValidationError};

use super::flows;
use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;
use replay::{Origin, Recorded};
use types::{DryRunIn, DryRunOut, DryRunResult};

/// Events evaluated per blocking run (and per preview-rate token).
const BATCH: usize = 100;

/// The flow being tried.
struct Tried {
    /// The stored version; `None` for a draft.
    version: Option<i32>,
    /// `None` when the draft is not a valid flow.
    spec: Option<FlowSpec>,
    /// The draft's validation errors.
    errors: Vec<ValidationError>,
}

/// The stored version `input.version`, the draft `input.flow` (validated as
/// `POST /v1/flows/validate` does), or the current version.
async fn tried(
    state: &AppState,
    ctx: &TenantContext,
    flow: &entity::flows::Model,
    current: &FlowSpec,
    input: &DryRunIn,
) -> Result<Tried, ApiError> {
    if let Some(draft) = &input.flow {
        let checked = flows::validate(state, ctx, draft, None).await?;
        let mut errors = checked.errors;
        let spec = if errors.is_empty() {
            serde_json::from_value::<FlowSpec>(draft.clone())
                .map_err(|e| errors.push(ValidationError::new("flow", e.to_string())))
                .ok()
        } else {
            None
        };
        return Ok(Tried {
            version: None,
            spec,
            errors,
        });
    }
    let Some(number) = input.version.filter(|v| *v != i64::from(flow.version)) else {
        return Ok(Tried {
            version: Some(flow.version),
            spec: Some(current.clone()),
            errors: Vec::new(),
        });
    };
    let row = super::flow_history::stored(state, ctx, &flow.id, number)
        .await?
        .ok_or_else(|| ApiError::NoSuchField {
            field: "version".into(),
            detail: format!("the flow has no version {number}"),
        })?;
    let spec = serde_json::from_str::<FlowSpec>(&row.spec).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored version {number} of flow {} does not parse: {e}",
            flow.id
        ))
    })?;
    Ok(Tried {
        version: Some(row.version),
        spec: Some(spec),
        errors: Vec::new(),
    })
}

/// What one batch's evaluation needs, owned so it can move to a blocking thread.
struct Batch {
    tried: Arc<Tried>,
    /// The current version, when it differs from the tried flow (else the tried flow's
    /// errors are the current version's too, and nothing is failing).
    current: Option<Arc<FlowSpec>>,
    tried_settings: Arc<Value>,
    current_settings: Arc<Value>,
    events: Vec<(events::Model, Recorded)>,
}

/// A dry run made ready: the flow, the version or draft tried, and the settings both see.
pub(crate) struct Prepared {
    pub flow: entity::flows::Model,
    current_spec: Arc<FlowSpec>,
    tried: Arc<Tried>,
    /// The current version when it differs from the tried flow.
    current: Option<Arc<FlowSpec>>,
    tried_settings: Arc<Value>,
    current_settings: Arc<Value>,
}

impl Prepared {
    /// The version tried; `None` for a draft.
    pub fn tried_version(&self) -> Option<i32> {
        self.tried.version
    }

    /// The draft's own problems.
    pub fn errors(&self) -> &[ValidationError] {
        &self.tried.errors
    }
}

/// Finds the flow and what `input` tries on it (404/422 as a dry run answers them).
pub(crate) async fn prepare(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: &DryRunIn,
) -> Result<Prepared, ApiError> {
    let flow = flows::find(state, ctx, id).await?;
    let current: FlowSpec = serde_json::from_str(&flow.spec).map_err(anyhow::Error::from)?;
    let tried = tried(state, ctx, &flow, &current, input).await?;
    let current_settings =
        Arc::new(super::flows::preview_settings(state, ctx, &current.connection_id).await?);
    let tried_settings = match &tried.spec {
        Some(spec) if spec.connection_id != current.connection_id => {
            Arc::new(super::flows::preview_settings(state, ctx, &spec.connection_id).await?)
        }
        _ => current_settings.clone(),
    };
    let same = tried.version == Some(flow.version);
    let current = Arc::new(current);
    Ok(Prepared {
        flow,
        current: (!same).then(|| current.clone()),
        current_spec: current,
        tried: Arc::new(tried),
        tried_settings,
        current_settings,
    })
}

/// The stored events `input` chooses for the prepared run.
pub(crate) async fn select_events(
    state: &AppState,
    ctx: &TenantContext,
    prepared: &Prepared,
    input: &DryRunIn,
) -> Result<Vec<events::Model>, ApiError> {
    let mut specs = vec![prepared.current_spec.as_ref()];
    specs.extend(prepared.tried.spec.as_ref());
    select::events(state, ctx, input, &specs).await
}

/// Runs the prepared flow on `rows`, [`BATCH`] at a time off the async executor.
pub(crate) async fn run_rows(
    state: &AppState,
    ctx: &TenantContext,
    prepared: &Prepared,
    rows: Vec<events::Model>,
) -> Result<Vec<DryRunResult>, ApiError> {
    let mut recorded = select::recorded(state, ctx, &prepared.flow.id, &rows).await?;
    let mut results = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch = Batch {
            tried: prepared.tried.clone(),
            current: prepared.current.clone(),
            tried_settings: prepared.tried_settings.clone(),
            current_settings: prepared.current_settings.clone(),
            events: rows
                .by_ref()
                .take(BATCH)
                .map(|row| {
                    let record = recorded.remove(&row.id).unwrap_or_default();
                    (row, record)
                })
                .collect(),
        };
        results.extend(super::template_runs::run(move || evaluate(batch)).await?);
    }
    Ok(results)
}

/// The answer: the counts over `events` results, and `results` as given.
pub(crate) fn answer(
    prepared: &Prepared,
    events: usize,
    changed: usize,
    failing: usize,
    results: Vec<DryRunResult>,
) -> DryRunOut {
    DryRunOut {
        version: prepared.tried.version,
        current_version: prepared.flow.version,
        events,
        changed,
        failing,
        errors: prepared.tried.errors.clone(),
        results,
    }
}

pub async fn dry_run(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: &DryRunIn,
) -> Result<DryRunOut, ApiError> {
    let prepared = prepare(state, ctx, id, input).await?;
    let rows = select_events(state, ctx, &prepared, input).await?;
    state
        .preview_rate
        .take_n(&ctx.tenant_id, rows.len().div_ceil(BATCH).max(1))
        .map_err(ApiError::TooManyRequests)?;
    let results = run_rows(state, ctx, &prepared, rows).await?;
    let changed = results.iter().filter(|r| !r.changes.is_empty()).count();
    let failing = results.iter().filter(|r| r.failing).count();
    Ok(answer(&prepared, results.len(), changed, failing, results))
}

fn evaluate(batch: Batch) -> Vec<DryRunResult> {
    batch
        .events
        .iter()
        .map(|(row, recorded)| one(&batch, row, recorded))
        .collect()
}

/// One event through the tried flow (and the current version, to tell what newly fails).
fn one(batch: &Batch, row: &events::Model, recorded: &Recorded) -> DryRunResult {
    let mut result = DryRunResult {
        event_id: row.id.clone(),
        stripe_event_id: row.stripe_event_id.clone(),
        event_type: row.event_type.clone(),
        matched: false,
        delivered: !recorded.sent.is_empty() || !recorded.outcomes.is_empty(),
        operations: Vec::new(),
        errors: batch.tried.errors.clone(),
        failing: false,
        changes: Vec::new(),
    };
    let Ok(event) = serde_json::from_str::<Value>(&row.payload) else {
        result.errors.push(ValidationError::new(
            "event",
            "the stored event is not readable JSON",
        ));
        return result;
    };
    let origin = Origin {
        source: row.source.clone(),
        account: row.stripe_account_id.clone(),
    };
    let current_fails = |spec: &FlowSpec| {
        replay::run(spec, &event, &origin, &batch.current_settings, recorded)
            .error
            .is_some()
    };
    let Some(spec) = &batch.tried.spec else {
        // A draft that is not a flow fails wherever the current version runs.
        result.failing = batch.current.as_deref().is_some_and(|c| !current_fails(c));
        return result;
    };
    let run = replay::run(spec, &event, &origin, &batch.tried_settings, recorded);
    result.matched = run.matched;
    let tried: Vec<Value> = run.operations.iter().map(compare::stored_form).collect();
    result.changes = compare::changes(&tried, &recorded.sent, run.error.is_none());
    result.operations = run.operations;
    if let Some(error) = run.error {
        result.errors.push(error);
        result.failing = batch.current.as_deref().is_some_and(|c| !current_fails(c));
    }
    result
}
