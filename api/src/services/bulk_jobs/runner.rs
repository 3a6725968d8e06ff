//! The background loop that takes due bulk jobs with a lease and runs their items.

use std::sync::{Arc, Weak};
use std::time::Duration;

use entity::{bulk_job_items, bulk_jobs};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{BATCH, KIND_DRY_RUN, KIND_REPLAY, MAX_RUNS, item_status, status};
use crate::error::ApiError;
use crate::extract::{Actor, TenantContext};
use crate::services::events::ReplayIn;
use crate::services::now;
use crate::state::AppState;

/// Looks for due jobs every `interval` while the app lives (`state` is dropped with it).
pub async fn run_forever(state: Weak<AppState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        if let Err(e) = start_due(&state).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "looking for bulk jobs failed; the next round tries again"
            );
        }
    }
}

/// Starts a job just made without waiting for the next round.
pub fn kick(state: Arc<AppState>) {
    tokio::spawn(async move {
        if let Err(e) = start_due(&state).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "starting a bulk job failed; the next round tries again"
            );
        }
    });
}

/// How long a claim holds without progress before another process may take the job over
/// (`TRIBUTARY_SWEEP_GRACE`, the patience for lost work everywhere).
fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.sweep_grace).unwrap_or(chrono::Duration::seconds(60))
}

/// Claims the jobs that are due (queued, or running with a lapsed lease) and runs each in its
/// own task.
async fn start_due(state: &Arc<AppState>) -> Result<(), ApiError> {
    let due = bulk_jobs::Entity::find()
        .filter(bulk_jobs::Column::Status.is_in([status::QUEUED, status::RUNNING]))
        .filter(
            Condition::any()
                .add(bulk_jobs::Column::LeaseUntil.is_null())
                .add(bulk_jobs::Column::LeaseUntil.lt(now())),
        )
        .order_by_asc(bulk_jobs::Column::Id)
        .limit(20)
        .all(&state.db)
        .await?;
    for job in due {
        let Some(job) = claim(state, job).await? else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            if let Err(e) = run(&state, job).await {
                tracing::warn!(bulk_job_id = %id, error = %e, "bulk job stopped; it resumes when its lease ends");
            }
        });
    }
    Ok(())
}

/// Takes the lease of a job as read; `None` when another process got it first.
async fn claim(
    state: &AppState,
    job: bulk_jobs::Model,
) -> Result<Option<bulk_jobs::Model>, ApiError> {
    let at = now().max(job.updated_at + chrono::Duration::microseconds(1));
    let claimed = bulk_jobs::Model {
        status: status::RUNNING.into(),
        runs: job.runs + 1,
        lease_until: Some(at + lease(state)),
        updated_at: at,
        ..job.clone()
    };
    let applied = bulk_jobs::Entity::update_many()
        .set(bulk_jobs::ActiveModel {
            status: Set(claimed.status.clone()),
            runs: Set(claimed.runs),
            lease_until: Set(claimed.lease_until),
            updated_at: Set(at),
            ..Default::default()
        })
        .filter(bulk_jobs::Column::Id.eq(job.id.as_str()))
        .filter(bulk_jobs::Column::UpdatedAt.eq(job.updated_at))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    Ok(applied.then_some(claimed))
}

/// Writes the job's counts (from its items) and, when `finish` is set, ends it with that
/// status; otherwise renews the lease. False if the lease was lost to another process.
async fn save(
    state: &AppState,
    job: &mut bulk_jobs::Model,
    finish: Option<(&str, Option<String>)>,
) -> Result<bool, ApiError> {
    let count = |wanted: &'static str| {
        bulk_job_items::Entity::find()
            .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
            .filter(bulk_job_items::Column::Status.eq(wanted))
            .count(&state.db)
    };
    let done = count(item_status::DONE).await? as i32;
    let failed = count(item_status::FAILED).await? as i32;
    let at = now().max(job.updated_at + chrono::Duration::microseconds(1));
    let mut update = bulk_jobs::ActiveModel {
        done: Set(done),
        failed: Set(failed),
        lease_until: Set(Some(at + lease(state))),
        updated_at: Set(at),
        ..Default::default()
    };
    if let Some((end, error)) = &finish {
        update.status = Set(end.to_string());
        update.last_error = Set(error.clone());
        update.lease_until = Set(None);
        update.active_tenant_id = Set(None);
        update.finished_at = Set(Some(at));
    }
    let applied = bulk_jobs::Entity::update_many()
        .set(update)
        .filter(bulk_jobs::Column::Id.eq(job.id.as_str()))
        .filter(bulk_jobs::Column::UpdatedAt.eq(job.updated_at))
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    job.updated_at = at;
    Ok(applied)
}

/// The caller who asked for the job, as the single retry or replay sees its caller.
async fn context_of(state: &AppState, job: &bulk_jobs::Model) -> Result<TenantContext, ApiError> {
    // The job's tenant row is an environment's: its tenant is the parent, if it has one.
    let row = entity::tenants::Entity::find_by_id(job.tenant_id.clone())
        .one(&state.db)
        .await?;
    let (account_id, environment) = match row {
        Some(row) => (row.parent_id.unwrap_or(row.id), row.environment),
        None => (job.tenant_id.clone(), tributary_worker::PRODUCTION.into()),
    };
    Ok(TenantContext {
        tenant_id: job.tenant_id.clone(),
        account_id,
        environment,
        bound_environment: None,
        role: job.role,
        actor: match job.actor_type.as_str() {
            "api_key" => Actor::ApiKey(job.actor_id.clone()),
            _ => Actor::User(job.actor_id.clone()),
        },
        session_id: None,
        client_address: job.client_address.clone(),
    })
}

/// Runs a claimed job's pending items to the end, or until its lease is lost.
async fn run(state: &AppState, mut job: bulk_jobs::Model) -> Result<(), ApiError> {
    if job.runs > MAX_RUNS {
        let error = format!(
            "stopped {MAX_RUNS} times before finishing (the process running it ended); the \
             items not yet run were left as they were"
        );
        save(state, &mut job, Some((status::FAILED, Some(error)))).await?;
        return Ok(());
    }
    let ctx = context_of(state, &job).await?;
    let dry_run = job.kind == KIND_DRY_RUN;
    loop {
        let items = bulk_job_items::Entity::find()
            .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
            .filter(bulk_job_items::Column::Status.eq(item_status::PENDING))
            // A dry run keeps the newest events it lists in full, as an answered one shows them.
            .order_by(
                bulk_job_items::Column::ItemId,
                if dry_run {
                    sea_orm::Order::Desc
                } else {
                    sea_orm::Order::Asc
                },
            )
            .limit(if dry_run {
                super::dry_runs::BATCH
            } else {
                BATCH
            })
            .all(&state.db)
            .await?;
        if items.is_empty() {
            save(state, &mut job, Some((status::DONE, None))).await?;
            tracing::info!(bulk_job_id = %job.id, "bulk job done");
            return Ok(());
        }
        if dry_run {
            if let Err(reason) = super::dry_runs::run_batch(state, &ctx, &job, items).await? {
                save(state, &mut job, Some((status::FAILED, Some(reason)))).await?;
                return Ok(());
            }
            if !save(state, &mut job, None).await? {
                tracing::warn!(bulk_job_id = %job.id, "another process took the bulk job over");
                return Ok(());
            }
            continue;
        }
        for item in items {
            let outcome = if job.kind == KIND_REPLAY {
                crate::services::events::replay(
                    state,
                    &ctx,
                    &item.item_id,
                    ReplayIn { force: job.force },
                )
                .await
                .map(drop)
            } else {
                crate::services::events::retry_delivery(state, &ctx, &item.item_id)
                    .await
                    .map(drop)
            };
            let (outcome, reason) = item_outcome(&job.kind, outcome);
            bulk_job_items::Entity::update_many()
                .set(bulk_job_items::ActiveModel {
                    status: Set(outcome.into()),
                    reason: Set(reason),
                    ..Default::default()
                })
                .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
                .filter(bulk_job_items::Column::ItemId.eq(item.item_id.as_str()))
                .exec(&state.db)
                .await?;
        }
        if !save(state, &mut job, None).await? {
            tracing::warn!(bulk_job_id = %job.id, "another process took the bulk job over");
            return Ok(());
        }
    }
}

/// What one item's retry or replay came to: `done`, or `failed` with the reason.
fn item_outcome(kind: &str, outcome: Result<(), ApiError>) -> (&'static str, Option<String>) {
    match outcome {
        // Reset and marked queued; only the push failed, and the sweeper pushes it.
        Ok(()) | Err(ApiError::Unavailable(_)) => (item_status::DONE, None),
        Err(ApiError::NotFound) => (
            item_status::FAILED,
            Some(format!(
                "the {} no longer exists",
                if kind == KIND_REPLAY {
                    "event"
                } else {
                    "delivery"
                }
            )),
        ),
        Err(ApiError::Internal(e)) => {
            tracing::error!(error = format!("{e:#}"), "a bulk job's item failed");
            (
                item_status::FAILED,
                Some("an internal error; try this one on its own".into()),
            )
        }
        Err(refused) => (item_status::FAILED, Some(refused.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::bulk_jobs::KIND_RETRY;

    #[test]
    fn a_refused_item_keeps_its_reason() {
        let busy = ApiError::Busy {
            detail: "delivery d is being sent to the vendor right now".into(),
            retry_after: 3,
        };
        let (outcome, reason) = item_outcome(KIND_RETRY, Err(busy));
        assert_eq!(outcome, item_status::FAILED);
        assert!(reason.unwrap().contains("being sent"));
        assert_eq!(
            item_outcome(KIND_REPLAY, Err(ApiError::NotFound))
                .1
                .as_deref(),
            Some("the event no longer exists")
        );
        assert_eq!(item_outcome(KIND_RETRY, Ok(())).0, item_status::DONE);
    }
}
