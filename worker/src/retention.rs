//! Retention: finished events (with their raw bodies), their deliveries (with their attempts),
//! seeds and search keys older than `TRIBUTARY_RETENTION`, and audit entries older than
//! `TRIBUTARY_AUDIT_RETENTION`, are deleted in small batches by one process at a time (a
//! lease in `leases`). Record links stay: they are what keeps a late duplicate from writing a
//! CRM record twice. An event with work still open (pending, retrying, waiting) is never
//! pruned, whatever its age. Idempotency keys are deleted once their day is over.

use chrono::{DateTime, Utc};
use entity::{
    audit_log, deliveries, delivery_attempts, event_keys, event_seeds, events, idempotency_keys,
    reviews,
};
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::settings::Settings;
use crate::statuses::{delivery_status as ds, status};

/// Rows per statement: small enough that no delete holds its locks for long.
pub const BATCH: u64 = 500;

const LEASE_NAME: &str = "retention";

/// What one round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub audit_log: u64,
    pub idempotency_keys: u64,
}

/// Prunes every `interval` while this process holds the retention lease.
pub async fn run_forever(db: DatabaseConnection, settings: Settings, holder: String) {
    let interval = settings.retention_interval;
    let ttl = interval + std::time::Duration::from_secs(60);
    let retention = chrono::Duration::from_std(settings.retention).unwrap_or(chrono::Duration::MAX);
    let audit_retention =
        chrono::Duration::from_std(settings.audit_retention).unwrap_or(chrono::Duration::MAX);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match crate::lease::take(&db, LEASE_NAME, &holder, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "taking the retention lease failed");
                continue;
            }
        }
        let now = crate::now();
        let cutoffs = (
            now.checked_sub_signed(retention)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            now.checked_sub_signed(audit_retention)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        );
        match prune(&db, cutoffs.0, cutoffs.1).await {
            Ok(p) if p == Pruned::default() => {}
            Ok(p) => tracing::info!(
                events = p.events,
                deliveries = p.deliveries,
                attempts = p.attempts,
                audit_log = p.audit_log,
                idempotency_keys = p.idempotency_keys,
                "retention pruned old rows"
            ),
            Err(e) => tracing::warn!(error = %e, "pruning failed; the next round tries again"),
        }
    }
}

/// Deletes finished events received before `events_before` (with their deliveries, the
/// deliveries' attempts, the seeds and search keys), audit entries created before
/// `audit_before`, and expired idempotency keys, [`BATCH`] rows at a time.
pub async fn prune(
    db: &DatabaseConnection,
    events_before: DateTime<Utc>,
    audit_before: DateTime<Utc>,
) -> Result<Pruned, DbErr> {
    let mut total = Pruned::default();
    loop {
        let (events, deliveries, attempts) = prune_events(db, events_before).await?;
        total.events += events;
        total.deliveries += deliveries;
        total.attempts += attempts;
        crate::metrics::pruned("events", events);
        crate::metrics::pruned("deliveries", deliveries);
        crate::metrics::pruned("delivery_attempts", attempts);
        if events < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        let ids: Vec<String> = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::Id)
            .filter(audit_log::Column::CreatedAt.lt(audit_before))
            .order_by_asc(audit_log::Column::CreatedAt)
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let removed = audit_log::Entity::delete_many()
            .filter(audit_log::Column::Id.is_in(ids.iter().map(String::as_str)))
            .exec(db)
            .await?
            .rows_affected;
        total.audit_log += removed;
        crate::metrics::pruned("audit_log", removed);
        if (ids.len() as u64) < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    let now = crate::now();
    loop {
        let ids: Vec<String> = idempotency_keys::Entity::find()
            .select_only()
            .column(idempotency_keys::Column::Id)
            .filter(idempotency_keys::Column::ExpiresAt.lt(now))
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let removed = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::Id.is_in(ids.iter().map(String::as_str)))
            .filter(idempotency_keys::Column::ExpiresAt.lt(now))
            .exec(db)
            .await?
            .rows_affected;
        total.idempotency_keys += removed;
        crate::metrics::pruned("idempotency_keys", removed);
        if (ids.len() as u64) < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

/// Finished, received before `before`, and with no delivery still open.
fn prunable(before: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(events::Column::ReceivedAt.lt(before))
        .add(events::Column::Status.is_in([status::PROCESSED, status::FAILED, status::IGNORED]))
        .add(
            events::Column::Id.not_in_subquery(
                Query::select()
                    .column(deliveries::Column::EventId)
                    .from(deliveries::Entity)
                    .and_where(deliveries::Column::Status.is_in([
                        ds::PENDING,
                        ds::RETRYING,
                        ds::WAITING,
                    ]))
                    .to_owned(),
            ),
        )
}

/// One batch of events; returns (events, deliveries, attempts) removed.
async fn prune_events(
    db: &DatabaseConnection,
    before: DateTime<Utc>,
) -> Result<(u64, u64, u64), DbErr> {
    let txn = crate::db::begin_write(db).await?;
    // Locked (on Postgres) as read, so a replay landing now waits and finds the event gone,
    // or reopens it first and keeps it.
    let ids: Vec<String> = events::Entity::find()
        .select_only()
        .column(events::Column::Id)
        .filter(prunable(before))
        .order_by_asc(events::Column::ReceivedAt)
        .limit(BATCH)
        .lock_exclusive()
        .into_tuple()
        .all(&txn)
        .await?;
    if ids.is_empty() {
        txn.commit().await?;
        return Ok((0, 0, 0));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let attempts = delivery_attempts::Entity::delete_many()
        .filter(delivery_attempts::Column::EventId.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?
        .rows_affected;
    let deliveries = deliveries::Entity::delete_many()
        .filter(deliveries::Column::EventId.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?
        .rows_affected;
    reviews::Entity::delete_many()
        .filter(reviews::Column::EventId.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?;
    event_seeds::Entity::delete_many()
        .filter(event_seeds::Column::EventId.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?;
    event_keys::Entity::delete_many()
        .filter(event_keys::Column::EventId.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?;
    let events = events::Entity::delete_many()
        .filter(events::Column::Id.is_in(ids.iter().copied()))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok((events, deliveries, attempts))
}
