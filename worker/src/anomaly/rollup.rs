//! The hourly roll-up into `activity`: the current hour and the two before, counted again
//! from the events and delivery attempts themselves and written over what was there, so a
//! round that died half-way, or a late commit, is simply counted right the next time.

use chrono::{DateTime, Utc};
use entity::{activity, deliveries, delivery_attempts, events};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
};

use super::method::hour_of;
use crate::history::outcome;

/// Hours counted again each round: the current one and the two before.
const HOURS: i64 = 3;

/// Outcomes of an attempt that count as failures.
const FAILED: &[&str] = &[outcome::RETRYING, outcome::DEAD, outcome::WAITING];

pub(super) async fn roll_up(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<()> {
    let current = hour_of(now);
    for hour in current - HOURS + 1..=current {
        let (from, to) = bounds(hour);
        let mut rows = event_counts(db, from, to, hour).await?;
        rows.extend(attempt_counts(db, from, to, hour).await?);
        for chunk in rows.chunks(500) {
            activity::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        activity::Column::TenantId,
                        activity::Column::Series,
                        activity::Column::Hour,
                    ])
                    .update_columns([activity::Column::Count, activity::Column::LastAt])
                    .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
    }
    Ok(())
}

fn bounds(hour: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |h: i64| DateTime::from_timestamp(h * 3600, 0).unwrap_or_default();
    (at(hour), at(hour + 1))
}

fn row(
    tenant_id: String,
    series: String,
    hour: i64,
    count: i64,
    last_at: Option<DateTime<Utc>>,
) -> activity::ActiveModel {
    use sea_orm::ActiveValue::Set;
    activity::ActiveModel {
        tenant_id: Set(tenant_id),
        series: Set(series),
        hour: Set(hour),
        count: Set(count),
        last_at: Set(last_at),
    }
}

/// (tenant, source, account, type, count, last received).
type EventGroup = (String, String, String, String, i64, Option<DateTime<Utc>>);

/// Live events received in `[from, to)`, per tenant, source, account and type.
async fn event_counts(
    db: &DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hour: i64,
) -> anyhow::Result<Vec<activity::ActiveModel>> {
    let found: Vec<EventGroup> = events::Entity::find()
        .select_only()
        .column(events::Column::TenantId)
        .column(events::Column::Source)
        .column(events::Column::StripeAccountId)
        .column(events::Column::EventType)
        .column_as(events::Column::Id.count(), "count")
        .column_as(events::Column::ReceivedAt.max(), "last_at")
        .filter(events::Column::ReceivedAt.gte(from))
        .filter(events::Column::ReceivedAt.lt(to))
        .filter(events::Column::Priority.gte(crate::jobs::priority::LIVE))
        .group_by(events::Column::TenantId)
        .group_by(events::Column::Source)
        .group_by(events::Column::StripeAccountId)
        .group_by(events::Column::EventType)
        .into_tuple()
        .all(db)
        .await?;
    Ok(found
        .into_iter()
        .map(|(tenant, source, account, kind, count, last_at)| {
            let series = format!("events|{source}|{account}|{kind}");
            row(tenant, series, hour, count, last_at)
        })
        .collect())
}

/// Delivery attempts started in `[from, to)` per tenant and flow (`attempts|…`), and those
/// that failed (`failures|…`).
async fn attempt_counts(
    db: &DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hour: i64,
) -> anyhow::Result<Vec<activity::ActiveModel>> {
    let mut out = Vec::new();
    for (name, failed_only) in [("attempts", false), ("failures", true)] {
        let attempts = Alias::new("a");
        let deliveries_alias = Alias::new("d");
        let mut query = Query::select();
        query
            .column((deliveries_alias.clone(), deliveries::Column::TenantId))
            .column((deliveries_alias.clone(), deliveries::Column::FlowId))
            .expr_as(
                Expr::col((attempts.clone(), delivery_attempts::Column::Id)).count(),
                Alias::new("count"),
            )
            .from_as(delivery_attempts::Entity, attempts.clone())
            .join_as(
                JoinType::InnerJoin,
                deliveries::Entity,
                deliveries_alias.clone(),
                Expr::col((deliveries_alias.clone(), deliveries::Column::Id))
                    .equals((attempts.clone(), delivery_attempts::Column::DeliveryId)),
            )
            .and_where(
                Expr::col((attempts.clone(), delivery_attempts::Column::StartedAt)).gte(from),
            )
            .and_where(Expr::col((attempts.clone(), delivery_attempts::Column::StartedAt)).lt(to))
            .group_by_col((deliveries_alias.clone(), deliveries::Column::TenantId))
            .group_by_col((deliveries_alias.clone(), deliveries::Column::FlowId));
        if failed_only {
            query.and_where(
                Expr::col((attempts.clone(), delivery_attempts::Column::Outcome))
                    .is_in(FAILED.iter().copied()),
            );
        }
        for found in db.query_all(&query).await? {
            let tenant: String = found.try_get_by_index(0)?;
            let flow: String = found.try_get_by_index(1)?;
            let count: i64 = found.try_get_by_index(2)?;
            out.push(row(tenant, format!("{name}|{flow}"), hour, count, None));
        }
    }
    Ok(out)
}
