//! Dry runs in the background (`"background": true`): a bulk job of kind `dry_run` whose items
//! are the chosen events, run [`BATCH`] at a time through the very code of an answered dry run,
//! each batch taking a preview-rate token (waiting for one, never refused). What an event came
//! to is kept on its item when it changed or newly fails — in full for the first
//! [`KEPT_RESULTS`], as counts beyond — and the job's answer (`dry_run` on
//! `GET /v1/bulk-jobs/{id}`) is read back from them. The run compares with the version that was
//! current when it was asked for: if the flow changes meanwhile, the job fails saying so.

use std::time::Duration;

use entity::{Role, TenantOwned, bulk_job_items, bulk_jobs, events};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tributary_worker::flow::ValidationError;

use super::types::BulkAcceptedOut;
use super::{KIND_DRY_RUN, item_status};
use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::services::dry_run;
use crate::services::dry_run::types::{DryRunIn, DryRunOut, DryRunResult, MAX_JOB_EVENTS};
use crate::state::AppState;

/// Events a background dry run evaluates between two saves of its progress (and per
/// preview-rate token, as an answered dry run takes one per 100).
pub const BATCH: u64 = 100;
/// Results kept in full per job; beyond, an event only counts.
pub const KEPT_RESULTS: u64 = 500;

/// What the job keeps as its filter: the request, and what it compares with.
#[derive(Serialize, Deserialize)]
struct Asked {
    flow_id: String,
    /// The flow's version when the run was asked for.
    current_version: i32,
    /// The version tried; none for a draft.
    version: Option<i32>,
    /// The draft's own problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ValidationError>,
    dry_run: DryRunIn,
}

/// What one event came to, as kept on its item.
#[derive(Serialize, Deserialize)]
struct Kept {
    changed: bool,
    failing: bool,
    result: Option<DryRunResult>,
}

/// Accepts a background dry run: checks it as an answered one is checked, chooses its events
/// now, and makes the job.
pub async fn start(
    state: &AppState,
    ctx: &TenantContext,
    flow_id: &str,
    input: DryRunIn,
) -> Result<BulkAcceptedOut, ApiError> {
    ctx.require(Role::Admin)?;
    let most = MAX_JOB_EVENTS.min(state.settings.limits.max_bulk_items as i64);
    if input.limit.is_some_and(|n| n > most) {
        return Err(ApiError::field(
            "limit",
            format!(
                "a background dry run takes at most {most} events \
                 (TRIBUTARY_MAX_BULK_ITEMS on this server)"
            ),
        ));
    }
    let prepared = dry_run::prepare(state, ctx, flow_id, &input).await?;
    let ids: Vec<String> = dry_run::select_events(state, ctx, &prepared, &input)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect();
    let asked = Asked {
        flow_id: prepared.flow.id.clone(),
        current_version: prepared.flow.version,
        version: prepared.tried_version(),
        errors: prepared.errors().to_vec(),
        dry_run: input,
    };
    let filter = serde_json::to_string(&asked).map_err(anyhow::Error::from)?;
    super::jobs::create(state, ctx, KIND_DRY_RUN, filter, false, ids).await
}

/// Waits for a preview-rate token: a background run is slowed by the tenant's previews, never
/// refused.
async fn pace(state: &AppState, tenant_id: &str) {
    while let Err(seconds) = state.preview_rate.take_n(tenant_id, 1) {
        tokio::time::sleep(Duration::from_secs(seconds.clamp(1, 5))).await;
    }
}

/// Runs one batch of the job's pending items. `Ok(Err(reason))` when the job cannot go on
/// (its flow was deleted or changed).
pub(super) async fn run_batch(
    state: &AppState,
    ctx: &TenantContext,
    job: &bulk_jobs::Model,
    items: Vec<bulk_job_items::Model>,
) -> Result<Result<(), String>, ApiError> {
    let asked: Asked = serde_json::from_str(&job.filter).map_err(anyhow::Error::from)?;
    pace(state, &ctx.tenant_id).await;
    // A draft is validated again, which takes a preview token of its own: wait for it too.
    let prepared = loop {
        match dry_run::prepare(state, ctx, &asked.flow_id, &asked.dry_run).await {
            Ok(prepared) => break prepared,
            Err(ApiError::TooManyRequests(seconds)) => {
                tokio::time::sleep(Duration::from_secs(seconds.clamp(1, 5))).await;
            }
            Err(ApiError::NotFound) => return Ok(Err("the flow was deleted".into())),
            Err(e @ ApiError::Internal(_)) => return Err(e),
            Err(refused) => return Ok(Err(format!("the dry run cannot go on: {refused}"))),
        }
    };
    if prepared.flow.version != asked.current_version {
        return Ok(Err(format!(
            "the flow changed while the dry run ran (version {} is current now; the run compares \
             with version {}): run it again",
            prepared.flow.version, asked.current_version
        )));
    }
    let rows = events::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(events::Column::Id.is_in(items.iter().map(|i| i.item_id.as_str())))
        .filter(events::Column::RedactedAt.is_null())
        .all(&state.db)
        .await?;
    let results = match dry_run::run_rows(state, ctx, &prepared, rows).await {
        Ok(results) => results,
        Err(e @ ApiError::Internal(_)) => return Err(e),
        // A batch over the template-run time limit fails the same way every time.
        Err(refused) => return Ok(Err(format!("a batch of the dry run failed: {refused}"))),
    };
    let mut kept = bulk_job_items::Entity::find()
        .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
        .filter(bulk_job_items::Column::Result.is_not_null())
        .count(&state.db)
        .await?;
    let mut by_event: std::collections::HashMap<String, DryRunResult> = results
        .into_iter()
        .map(|r| (r.event_id.clone(), r))
        .collect();
    for item in items {
        let (status, reason, result) = match by_event.remove(&item.item_id) {
            None => (
                item_status::FAILED,
                Some("the event no longer exists (erased or deleted)".to_string()),
                None,
            ),
            Some(result) => {
                let changed = !result.changes.is_empty();
                let noted = changed || result.failing;
                let result = noted.then(|| {
                    kept += 1;
                    Kept {
                        changed,
                        failing: result.failing,
                        result: (kept <= KEPT_RESULTS).then_some(result),
                    }
                });
                let json = result
                    .map(|k| serde_json::to_string(&k))
                    .transpose()
                    .map_err(anyhow::Error::from)?;
                (item_status::DONE, None, json)
            }
        };
        bulk_job_items::Entity::update_many()
            .set(bulk_job_items::ActiveModel {
                status: Set(status.into()),
                reason: Set(reason),
                result: Set(result),
                ..Default::default()
            })
            .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
            .filter(bulk_job_items::Column::ItemId.eq(item.item_id.as_str()))
            .exec(&state.db)
            .await?;
    }
    Ok(Ok(()))
}

/// One bulk job, with its first failures and, for a finished dry run, its answer.
pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<super::BulkJobDetailOut, ApiError> {
    let mut detail = super::jobs::get(state, ctx, id).await?;
    if detail.job.kind == KIND_DRY_RUN && detail.job.status == super::status::DONE {
        detail.dry_run = answer(state, &ctx.tenant_id, &detail.job).await?;
    }
    Ok(detail)
}

/// A finished dry-run job's answer: the counts over every event it ran, and the first
/// [`KEPT_RESULTS`] events that changed or newly fail, newest first.
async fn answer(
    state: &AppState,
    tenant_id: &str,
    job: &super::BulkJobOut,
) -> Result<Option<DryRunOut>, ApiError> {
    let Ok(asked) = serde_json::from_value::<Asked>(job.filter.clone()) else {
        return Ok(None);
    };
    let items = bulk_job_items::Entity::find()
        .filter(bulk_job_items::Column::TenantId.eq(tenant_id))
        .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
        .filter(bulk_job_items::Column::Result.is_not_null())
        .all(&state.db)
        .await?;
    let (mut changed, mut failing, mut results) = (0, 0, Vec::new());
    for kept in items
        .iter()
        .filter_map(|item| serde_json::from_str::<Kept>(item.result.as_deref()?).ok())
    {
        changed += usize::from(kept.changed);
        failing += usize::from(kept.failing);
        results.extend(kept.result);
    }
    results.sort_by(|a, b| b.event_id.cmp(&a.event_id));
    Ok(Some(DryRunOut {
        version: asked.version,
        current_version: asked.current_version,
        events: usize::try_from(job.done).unwrap_or_default(),
        changed,
        failing,
        errors: asked.errors,
        results,
    }))
}
