//! Making a bulk job from a request (finding its items and storing them), and reading jobs back.

use entity::{
    Role, TenantOwned, bulk_job_items, bulk_jobs, connections, deliveries, events, flows,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Select,
};
use serde_json::json;
use tributary_worker::statuses::delivery_status as ds;

use super::types::{
    BulkAcceptedOut, BulkFailureOut, BulkJobDetailOut, BulkJobOut, BulkReplayIn, BulkRetryIn,
};
use super::{KEEP_FINISHED, KIND_REPLAY, KIND_RETRY, SHOWN_FAILURES, item_status, status};
use crate::error::{ApiError, is_unique_violation};
use crate::extract::{Page, TenantContext};
use crate::services::event_search::{EventSearch, FilterId, SearchTerm};
use crate::services::{audit, new_id, now};
use crate::state::AppState;

/// 422 naming `field` unless `id` is one of the tenant's rows of `E`.
async fn check_ref<E: TenantOwned>(
    state: &AppState,
    ctx: &TenantContext,
    field: &str,
    id: Option<&FilterId>,
    what: &str,
) -> Result<(), ApiError> {
    let Some(id) = id else { return Ok(()) };
    let found = E::find_by_id_in_tenant(&ctx.tenant_id, id.as_str())
        .one(&state.db)
        .await?;
    if found.is_none() {
        return Err(ApiError::field(
            field,
            format!("no {what} with this id in your tenant"),
        ));
    }
    Ok(())
}

/// The ids `select` finds, oldest first, refused when there are more than the limit.
async fn matches<E: EntityTrait>(
    state: &AppState,
    select: Select<E>,
    id_column: E::Column,
    what: &str,
) -> Result<Vec<String>, ApiError> {
    let max = state.settings.limits.max_bulk_items;
    let ids: Vec<String> = select
        .select_only()
        .column(id_column)
        .order_by_asc(id_column)
        .limit(max + 1)
        .into_tuple()
        .all(&state.db)
        .await?;
    if ids.len() as u64 > max {
        return Err(ApiError::field(
            "body",
            format!(
                "more than {max} {what} match; a bulk job takes at most {max} \
                 (TRIBUTARY_MAX_BULK_ITEMS): narrow the filter, e.g. with flow_id, \
                 connection_id, event_type or created_gte/created_lt"
            ),
        ));
    }
    Ok(ids)
}

pub async fn retry(
    state: &AppState,
    ctx: &TenantContext,
    input: BulkRetryIn,
) -> Result<BulkAcceptedOut, ApiError> {
    ctx.require(Role::Admin)?;
    check_ref::<flows::Entity>(state, ctx, "flow_id", input.flow_id.as_ref(), "flow").await?;
    check_ref::<connections::Entity>(
        state,
        ctx,
        "connection_id",
        input.connection_id.as_ref(),
        "connection",
    )
    .await?;
    let wanted = input.status.as_deref().unwrap_or(ds::DEAD);
    let mut select = deliveries::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(deliveries::Column::Status.eq(wanted))
        .filter(
            deliveries::Column::EventId.in_subquery(
                input
                    .event_match()
                    .select(&ctx.tenant_id)
                    .select_only()
                    .column(events::Column::Id)
                    .into_query(),
            ),
        );
    if let Some(flow) = &input.flow_id {
        select = select.filter(deliveries::Column::FlowId.eq(flow.as_str()));
    }
    if let Some(connection) = &input.connection_id {
        select = select.filter(deliveries::Column::ConnectionId.eq(connection.as_str()));
    }
    let ids = matches(state, select, deliveries::Column::Id, "deliveries").await?;
    let filter = json!({"status": wanted, "flow_id": input.flow_id.as_ref().map(FilterId::as_str),
        "connection_id": input.connection_id.as_ref().map(FilterId::as_str),
        "event_type": input.event_type, "created_gte": input.created_gte,
        "created_lt": input.created_lt});
    create(state, ctx, KIND_RETRY, shown(filter), false, ids).await
}

pub async fn replay(
    state: &AppState,
    ctx: &TenantContext,
    input: BulkReplayIn,
) -> Result<BulkAcceptedOut, ApiError> {
    ctx.require(Role::Admin)?;
    check_ref::<flows::Entity>(state, ctx, "flow_id", input.flow_id.as_ref(), "flow").await?;
    check_ref::<connections::Entity>(
        state,
        ctx,
        "connection_id",
        input.connection_id.as_ref(),
        "connection",
    )
    .await?;
    let search = EventSearch {
        search: input.search.clone(),
        flow_id: input.flow_id.clone(),
        connection_id: input.connection_id.clone(),
    };
    let mut select = search.narrow(input.event_match().select(&ctx.tenant_id), &ctx.tenant_id);
    if let Some(s) = &input.status {
        select = select.filter(events::Column::Status.eq(s.as_str()));
    }
    let ids = matches(state, select, events::Column::Id, "events").await?;
    let filter = json!({"status": input.status, "search": input.search.as_ref().map(SearchTerm::as_str),
        "flow_id": input.flow_id.as_ref().map(FilterId::as_str),
        "connection_id": input.connection_id.as_ref().map(FilterId::as_str),
        "event_type": input.event_type, "created_gte": input.created_gte,
        "created_lt": input.created_lt, "force": input.force});
    create(state, ctx, KIND_REPLAY, shown(filter), input.force, ids).await
}

/// The filter as shown on the job: what was given, without the fields left out.
fn shown(mut filter: serde_json::Value) -> String {
    if let Some(map) = filter.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    filter.to_string()
}

/// The tenant's job that is queued or running, if any.
async fn active<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Option<bulk_jobs::Model>, ApiError> {
    Ok(bulk_jobs::Entity::find()
        .filter(bulk_jobs::Column::ActiveTenantId.eq(tenant_id))
        .one(db)
        .await?)
}

fn busy_with(job: Option<&str>) -> ApiError {
    let detail = match job {
        Some(job) => format!(
            "bulk job {job} is still running in your tenant; one runs at a time: follow it at \
             GET /v1/bulk-jobs/{job} and start the next when it is done"
        ),
        None => "another bulk job was started in your tenant just now; one runs at a time: \
                 see GET /v1/bulk-jobs"
            .into(),
    };
    ApiError::Conflict {
        detail,
        field: None,
    }
}

pub(super) async fn create(
    state: &AppState,
    ctx: &TenantContext,
    kind: &str,
    filter: String,
    force: bool,
    ids: Vec<String>,
) -> Result<BulkAcceptedOut, ApiError> {
    let at = now();
    let empty = ids.is_empty();
    let job = bulk_jobs::Model {
        id: new_id(),
        tenant_id: ctx.tenant_id.clone(),
        kind: kind.into(),
        status: if empty { status::DONE } else { status::QUEUED }.into(),
        filter,
        force,
        total: ids.len() as i32,
        done: 0,
        failed: 0,
        last_error: None,
        actor_type: ctx.actor.kind().into(),
        actor_id: ctx.actor.id().into(),
        role: ctx.role,
        client_address: ctx.client_address.clone(),
        active_tenant_id: (!empty).then(|| ctx.tenant_id.clone()),
        runs: 0,
        lease_until: None,
        created_at: at,
        updated_at: at,
        finished_at: empty.then_some(at),
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    if !empty && let Some(running) = active(&txn, &ctx.tenant_id).await? {
        return Err(busy_with(Some(&running.id)));
    }
    forget_old_jobs(&txn, &ctx.tenant_id).await?;
    if let Err(e) = bulk_jobs::Entity::insert(bulk_jobs::ActiveModel::from(job.clone()))
        .exec(&txn)
        .await
    {
        if is_unique_violation(&e) {
            drop(txn);
            let running = active(&state.db, &ctx.tenant_id).await?;
            return Err(busy_with(running.as_ref().map(|j| j.id.as_str())));
        }
        return Err(e.into());
    }
    for chunk in ids.chunks(200) {
        bulk_job_items::Entity::insert_many(chunk.iter().map(|id| bulk_job_items::ActiveModel {
            job_id: Set(job.id.clone()),
            item_id: Set(id.clone()),
            tenant_id: Set(ctx.tenant_id.clone()),
            status: Set(item_status::PENDING.into()),
            reason: Set(None),
            result: Set(None),
        }))
        .exec(&txn)
        .await?;
    }
    audit::log(&txn, ctx, "bulk_job.create", "bulk_job", &job.id).await?;
    txn.commit().await?;
    tracing::info!(bulk_job_id = %job.id, kind, items = job.total, "bulk job accepted");
    Ok(BulkAcceptedOut {
        job_id: job.id,
        count: job.total,
        status: job.status,
    })
}

/// Deletes the tenant's finished jobs beyond the newest [`KEEP_FINISHED`], with their items.
async fn forget_old_jobs<C: ConnectionTrait>(db: &C, tenant_id: &str) -> Result<(), ApiError> {
    let old: Vec<String> = bulk_jobs::Entity::find_in_tenant(tenant_id)
        .filter(bulk_jobs::Column::ActiveTenantId.is_null())
        .select_only()
        .column(bulk_jobs::Column::Id)
        .order_by_desc(bulk_jobs::Column::Id)
        .offset(KEEP_FINISHED)
        .limit(100)
        .into_tuple()
        .all(db)
        .await?;
    if old.is_empty() {
        return Ok(());
    }
    bulk_job_items::Entity::delete_many()
        .filter(bulk_job_items::Column::TenantId.eq(tenant_id))
        .filter(bulk_job_items::Column::JobId.is_in(old.iter().map(String::as_str)))
        .exec(db)
        .await?;
    bulk_jobs::Entity::delete_many()
        .filter(bulk_jobs::Column::TenantId.eq(tenant_id))
        .filter(bulk_jobs::Column::Id.is_in(old.iter().map(String::as_str)))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<BulkJobDetailOut, ApiError> {
    let job = crate::services::owned::<bulk_jobs::Entity, _>(&state.db, ctx, id).await?;
    let failures = bulk_job_items::Entity::find()
        .filter(bulk_job_items::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(bulk_job_items::Column::JobId.eq(job.id.as_str()))
        .filter(bulk_job_items::Column::Status.eq(item_status::FAILED))
        .order_by_asc(bulk_job_items::Column::ItemId)
        .limit(SHOWN_FAILURES)
        .all(&state.db)
        .await?
        .into_iter()
        .map(|item| BulkFailureOut {
            id: item.item_id,
            reason: item.reason.unwrap_or_default(),
        })
        .collect();
    Ok(BulkJobDetailOut {
        job: job.into(),
        failures,
        dry_run: None,
    })
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<BulkJobOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            bulk_jobs::Entity::find_in_tenant(&ctx.tenant_id),
            bulk_jobs::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_shown_leaves_out_what_was_not_given() {
        let shown: serde_json::Value = serde_json::from_str(&shown(
            json!({"status": "dead", "flow_id": null, "event_type": "charge.succeeded"}),
        ))
        .unwrap();
        assert_eq!(
            shown,
            json!({"status": "dead", "event_type": "charge.succeeded"})
        );
    }
}
