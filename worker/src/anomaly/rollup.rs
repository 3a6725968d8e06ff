//! The hourly roll-up into `activity`: the current hour and the two before, counted again
//! from the events and delivery attempts themselves and written over what was there, so a
//! round that died half-way, or a late commit, is simply counted right the next time. The
//! payments of the last two hours are handed on, each with its amount, for the amount detector.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{activity, deliveries, delivery_attempts, events};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Statement,
};
use serde_json::Value;

use super::method::{Payment, hour_of};
use crate::history::outcome;

/// Hours counted again each round: the current one and the two before.
const HOURS: i64 = 3;

/// Outcomes of an attempt that count as failures.
const FAILED: &[&str] = &[outcome::RETRYING, outcome::DEAD, outcome::WAITING];

/// The event types whose amounts are watched, and where each keeps its amount.
const PAYMENTS: &[(&str, &str)] = &[
    ("charge.succeeded", "amount"),
    ("payment_intent.succeeded", "amount_received"),
    ("invoice.paid", "amount_paid"),
];

/// The payments of the last two hours, per (tenant, `amounts|…` series).
pub(super) type Recent = HashMap<(String, String), Vec<Payment>>;

pub(super) async fn roll_up(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<Recent> {
    let current = hour_of(now);
    let mut recent = Recent::new();
    for hour in current - HOURS + 1..=current {
        let (from, to) = bounds(hour);
        let mut rows = event_counts(db, from, to, hour).await?;
        rows.extend(attempt_counts(db, from, to, hour).await?);
        rows.extend(latencies(db, from, to, hour).await?);
        let (amounts, payments) = amounts(db, from, to, hour).await?;
        rows.extend(amounts);
        if hour >= current - 1 {
            for (key, payment) in payments {
                recent.entry(key).or_default().push(payment);
            }
        }
        for chunk in rows.chunks(500) {
            activity::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        activity::Column::TenantId,
                        activity::Column::Series,
                        activity::Column::Hour,
                    ])
                    .update_columns([
                        activity::Column::Count,
                        activity::Column::Total,
                        activity::Column::TotalSq,
                        activity::Column::LastAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
    }
    Ok(recent)
}

fn bounds(hour: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |h: i64| DateTime::from_timestamp(h * 3600, 0).unwrap_or_default();
    (at(hour), at(hour + 1))
}

/// One hour of one series: how many, the sum and sum of squares of their values, when last.
struct Hour {
    count: i64,
    total: f64,
    total_sq: f64,
    last_at: Option<DateTime<Utc>>,
}

impl Hour {
    fn counted(count: i64, last_at: Option<DateTime<Utc>>) -> Hour {
        Hour {
            count,
            total: 0.0,
            total_sq: 0.0,
            last_at,
        }
    }
}

fn row(tenant_id: String, series: String, hour: i64, values: Hour) -> activity::ActiveModel {
    use sea_orm::ActiveValue::Set;
    activity::ActiveModel {
        tenant_id: Set(tenant_id),
        series: Set(series),
        hour: Set(hour),
        count: Set(values.count),
        total: Set(values.total),
        total_sq: Set(values.total_sq),
        last_at: Set(values.last_at),
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
            row(tenant, series, hour, Hour::counted(count, last_at))
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
            out.push(row(
                tenant,
                format!("{name}|{flow}"),
                hour,
                Hour::counted(count, None),
            ));
        }
    }
    Ok(out)
}

/// Successful attempts started in `[from, to)` per tenant and flow (`latency|…`), with the sum
/// of their event → CRM times in milliseconds (the attempt's start, less the event's arrival,
/// plus the attempt's duration).
async fn latencies(
    db: &DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hour: i64,
) -> anyhow::Result<Vec<activity::ActiveModel>> {
    let backend = db.get_database_backend();
    let (elapsed, a, b) = match backend {
        DbBackend::Postgres => (
            "EXTRACT(EPOCH FROM (a.started_at - e.received_at)) * 1000.0",
            "$1",
            "$2",
        ),
        _ => (
            "(julianday(a.started_at) - julianday(e.received_at)) * 86400000.0",
            "?",
            "?",
        ),
    };
    let sql = format!(
        "SELECT d.tenant_id, d.flow_id, COUNT(*), \
         CAST(SUM({elapsed} + a.duration_ms) AS DOUBLE PRECISION) \
         FROM delivery_attempts a \
         JOIN deliveries d ON d.id = a.delivery_id \
         JOIN events e ON e.id = a.event_id \
         WHERE a.started_at >= {a} AND a.started_at < {b} AND a.outcome = 'succeeded' \
         GROUP BY d.tenant_id, d.flow_id"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [from.into(), to.into()],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for found in rows {
        let tenant: String = found.try_get_by_index(0)?;
        let flow: String = found.try_get_by_index(1)?;
        let count: i64 = found.try_get_by_index(2)?;
        let total: Option<f64> = found.try_get_by_index(3)?;
        let values = Hour {
            total: total.unwrap_or(0.0).max(0.0),
            ..Hour::counted(count, None)
        };
        out.push(row(tenant, format!("latency|{flow}"), hour, values));
    }
    Ok(out)
}

/// (id, tenant, source, account, type, payload, received).
type PaymentRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
);

/// Live payments received in `[from, to)` per tenant, source, account and currency
/// (`amounts|…`), with the sums of their amounts' logarithms; and each payment, for the amount
/// detector.
async fn amounts(
    db: &DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hour: i64,
) -> anyhow::Result<(Vec<activity::ActiveModel>, Vec<((String, String), Payment)>)> {
    let found: Vec<PaymentRow> = events::Entity::find()
        .select_only()
        .column(events::Column::Id)
        .column(events::Column::TenantId)
        .column(events::Column::Source)
        .column(events::Column::StripeAccountId)
        .column(events::Column::EventType)
        .column(events::Column::Payload)
        .column(events::Column::ReceivedAt)
        .filter(events::Column::ReceivedAt.gte(from))
        .filter(events::Column::ReceivedAt.lt(to))
        .filter(events::Column::Priority.gte(crate::jobs::priority::LIVE))
        .filter(events::Column::EventType.is_in(PAYMENTS.iter().map(|(t, _)| *t)))
        .into_tuple()
        .all(db)
        .await?;
    let mut hours: HashMap<(String, String), Hour> = HashMap::new();
    let mut payments = Vec::new();
    for (id, tenant, source, account, kind, payload, at) in found {
        let Some((amount, currency)) = amount_of(&kind, &payload) else {
            continue;
        };
        let key = (tenant, format!("amounts|{source}|{account}|{currency}"));
        let x = (amount as f64).ln();
        let values = hours.entry(key.clone()).or_insert(Hour::counted(0, None));
        values.count += 1;
        values.total += x;
        values.total_sq += x * x;
        values.last_at = Ord::max(values.last_at, Some(at));
        payments.push((
            key,
            Payment {
                event_id: id,
                amount,
                at,
            },
        ));
    }
    let rows = hours
        .into_iter()
        .map(|((tenant, series), values)| row(tenant, series, hour, values))
        .collect();
    Ok((rows, payments))
}

/// A payment event's amount (minor units, positive) and currency.
fn amount_of(kind: &str, payload: &str) -> Option<(i64, String)> {
    let field = PAYMENTS.iter().find(|(t, _)| *t == kind)?.1;
    let event: Value = serde_json::from_str(payload).ok()?;
    let object = event.pointer("/data/object")?;
    let amount = object.get(field)?.as_i64().filter(|a| *a > 0)?;
    let currency = object.get("currency")?.as_str()?.to_ascii_lowercase();
    (currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_lowercase()))
        .then_some((amount, currency))
}
