//! What a dry run reads, all of it inside the caller's tenant: the events to run (by id, or
//! the newest matching a filter or the triggers), what the flow's deliveries recorded for
//! them, and the connection settings templates see.

use std::collections::{HashMap, HashSet};

use entity::{TenantOwned, deliveries, events};
use sea_orm::sea_query::{Condition, Expr, LikeExpr};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::Value;
use tributary_worker::flow::{FlowSpec, REFETCH_STEP};
use tributary_worker::statuses::delivery_status as ds;

use super::replay::{Outcome, Recorded};
use super::types::{DEFAULT_EVENTS, DryRunFilter, DryRunIn};
use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;

/// The events to run: `event_ids` in their order (404 naming `event_ids` for one the inbox
/// does not have, whoever's it is), else the newest `limit` matching the filter, whose type
/// defaults to the triggers of `specs`.
pub async fn events(
    state: &AppState,
    ctx: &TenantContext,
    input: &DryRunIn,
    specs: &[&FlowSpec],
) -> Result<Vec<events::Model>, ApiError> {
    if let Some(ids) = &input.event_ids {
        return by_ids(state, ctx, ids, input.limit).await;
    }
    let limit = input.limit.unwrap_or(DEFAULT_EVENTS).max(1) as u64;
    let empty = DryRunFilter::default();
    let filter = input.filter.as_ref().unwrap_or(&empty);
    let mut select =
        events::Entity::find_in_tenant(&ctx.tenant_id).filter(events::Column::RedactedAt.is_null());
    select = match &filter.event_type {
        Some(event_type) => select.filter(events::Column::EventType.eq(event_type.as_str())),
        None => select.filter(triggers(specs)),
    };
    if let Some(gte) = filter.created_gte {
        select = select.filter(events::Column::EventCreated.gte(gte));
    }
    if let Some(lte) = filter.created_lte {
        select = select.filter(events::Column::EventCreated.lte(lte));
    }
    if let Some(status) = &filter.status {
        select = select.filter(events::Column::Status.eq(status.as_str()));
    }
    Ok(select
        .order_by_desc(events::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await?)
}

async fn by_ids(
    state: &AppState,
    ctx: &TenantContext,
    ids: &[String],
    limit: Option<i64>,
) -> Result<Vec<events::Model>, ApiError> {
    let mut seen = HashSet::new();
    let mut wanted: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
    if let Some(limit) = limit {
        wanted.truncate(limit.max(1) as usize);
    }
    let mut found: HashMap<String, events::Model> = events::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(events::Column::Id.is_in(wanted.iter().map(|id| id.as_str())))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    wanted
        .into_iter()
        .map(|id| {
            found.remove(id).ok_or_else(|| {
                let shown: String = id.chars().take(64).collect();
                ApiError::NoSuchField {
                    field: "event_ids".into(),
                    detail: format!("no event {shown} in your inbox"),
                }
            })
        })
        .collect()
}

/// Events any of `specs` listens to: its source, and one of its type patterns.
fn triggers(specs: &[&FlowSpec]) -> Condition {
    let mut any = Condition::any();
    for spec in specs {
        let mut types = Condition::any();
        for pattern in &spec.trigger.events {
            types = types.add(pattern_matches(pattern));
        }
        any = any.add(
            Condition::all()
                .add(events::Column::Source.eq(spec.trigger.source.as_str()))
                .add(types),
        );
    }
    any
}

/// As `flow::event_type_matches`: exact, `*`, or a prefix ending in `.*`.
fn pattern_matches(pattern: &str) -> Condition {
    use sea_orm::sea_query::ExprTrait;
    let column = (events::Entity, events::Column::EventType);
    if pattern == "*" {
        return Condition::all();
    }
    match pattern.strip_suffix('*').filter(|p| p.ends_with('.')) {
        Some(prefix) => {
            let mut like = String::new();
            for c in prefix.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    like.push('\\');
                }
                like.push(c);
            }
            like.push('_');
            like.push('%');
            Condition::all().add(Expr::col(column).like(LikeExpr::new(like).escape('\\')))
        }
        None => Condition::all().add(events::Column::EventType.eq(pattern)),
    }
}

/// What the flow's deliveries recorded for each of `events`, by event id.
pub async fn recorded(
    state: &AppState,
    ctx: &TenantContext,
    flow_id: &str,
    events: &[events::Model],
) -> Result<HashMap<String, Recorded>, ApiError> {
    let mut out: HashMap<String, Recorded> = HashMap::new();
    if events.is_empty() {
        return Ok(out);
    }
    let rows = deliveries::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(deliveries::Column::FlowId.eq(flow_id))
        .filter(deliveries::Column::EventId.is_in(events.iter().map(|e| e.id.as_str())))
        .order_by_asc(deliveries::Column::Id)
        .all(&state.db)
        .await?;
    let json = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    for row in rows {
        let record = out.entry(row.event_id.clone()).or_default();
        record.ran_at = Some(
            record
                .ran_at
                .map_or(row.created_at, |at| at.min(row.created_at)),
        );
        let succeeded = row.status == ds::SUCCEEDED;
        if row.step == REFETCH_STEP {
            if succeeded {
                record.refetched = json(&row.response);
            }
            continue;
        }
        if succeeded {
            let outcome = Outcome {
                record_id: row.crm_record_id.clone(),
                answer: json(&row.response),
            };
            record.outcomes.insert(row.step.clone(), outcome);
        }
        if let Some(operation) = json(&row.operation) {
            record.sent.push((row.step, operation));
        }
    }
    Ok(out)
}
