//! The durable inbox: storing a verified event and queueing it. On Postgres with the queue in
//! the same database, the event row and its job commit in one transaction, so there is no
//! moment when an acknowledged event is stored but not queued. Elsewhere the job is pushed
//! right after the commit and the sweeper covers the gap. The event's search keys
//! ([`event_keys`]) commit with it.

use apalis::prelude::TaskBuilder;
use entity::{event_keys, events, stripe_accounts};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, SqlErr};

use crate::engine::status;
use crate::queue::{PROCESS_EVENT_QUEUE, ProcessEvent, Queue};

/// What storing an event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; this is its id.
    New(String),
    /// The same Stripe event was stored before, under this id.
    Duplicate(String),
}

/// The inbox row of a verified (or fetched from Stripe) event of `account`; `payload` is the
/// body exactly as it came.
pub fn new_row(
    account: &stripe_accounts::Model,
    envelope: &crate::stripe::envelope::Envelope,
    payload: String,
) -> events::Model {
    let at = crate::now();
    events::Model {
        id: crate::new_id(),
        tenant_id: account.tenant_id.clone(),
        stripe_account_id: account.id.clone(),
        stripe_event_id: envelope.id.clone(),
        event_type: envelope.event_type.clone(),
        stripe_object_id: envelope.object_id.clone(),
        livemode: envelope.livemode,
        api_version: envelope.api_version.clone(),
        event_created: envelope.created,
        payload,
        status: status::RECEIVED.into(),
        runs: 0,
        next_run_at: None,
        last_error: None,
        received_at: at,
        queued_at: None,
        processed_at: None,
        updated_at: at,
        redacted_at: None,
    }
}

/// Stores `row` (status `received`) unless the account already has that Stripe event, and
/// queues it. Returns once the row is committed.
pub async fn store(
    db: &DatabaseConnection,
    queue: &Queue,
    mut row: events::Model,
) -> anyhow::Result<Stored> {
    let keys = event_keys::extract_from_payload(&row.payload);
    if let Queue::Postgres(_) = queue {
        return store_and_enqueue_postgres(db, row, keys).await;
    }
    row.status = status::RECEIVED.into();
    let txn = crate::db::begin_write(db).await?;
    match events::Entity::insert(events::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await
    {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            txn.rollback().await?;
            return Ok(Stored::Duplicate(existing_id(db, &row).await?));
        }
        Err(e) => return Err(e.into()),
    }
    if !keys.is_empty() {
        event_keys::Entity::insert_many(event_keys::rows(&row.tenant_id, &row.id, keys))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    let queue = queue.clone();
    let id = row.id.clone();
    tokio::spawn(async move {
        if let Err(e) = queue
            .push(
                ProcessEvent {
                    event_id: id.clone(),
                },
                None,
            )
            .await
        {
            tracing::warn!(event_id = %id, error = format!("{e:#}"), "queueing failed; the sweeper will retry");
        }
    });
    Ok(Stored::New(row.id))
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn existing_id(db: &DatabaseConnection, row: &events::Model) -> anyhow::Result<String> {
    events::Entity::find()
        .filter(events::Column::StripeAccountId.eq(row.stripe_account_id.as_str()))
        .filter(events::Column::StripeEventId.eq(row.stripe_event_id.as_str()))
        .one(db)
        .await?
        .map(|e| e.id)
        .ok_or_else(|| anyhow::anyhow!("a duplicate event vanished"))
}

async fn store_and_enqueue_postgres(
    db: &DatabaseConnection,
    row: events::Model,
    keys: Vec<event_keys::Key>,
) -> anyhow::Result<Stored> {
    let pool = db.get_postgres_connection_pool();
    let mut tx = pool.begin().await?;
    let inserted = sea_orm::sqlx::query(
        "INSERT INTO events (id, tenant_id, stripe_account_id, stripe_event_id, event_type, \
         stripe_object_id, livemode, api_version, event_created, payload, status, runs, \
         next_run_at, last_error, received_at, queued_at, processed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, NULL, $12, $12, NULL, $12) \
         ON CONFLICT (stripe_account_id, stripe_event_id) DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.tenant_id)
    .bind(&row.stripe_account_id)
    .bind(&row.stripe_event_id)
    .bind(&row.event_type)
    .bind(&row.stripe_object_id)
    .bind(row.livemode)
    .bind(&row.api_version)
    .bind(row.event_created)
    .bind(&row.payload)
    .bind(status::QUEUED)
    .bind(row.received_at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        tx.rollback().await?;
        return Ok(Stored::Duplicate(existing_id(db, &row).await?));
    }
    if !keys.is_empty() {
        let mut insert = sea_orm::sqlx::QueryBuilder::<sea_orm::sqlx::Postgres>::new(
            "INSERT INTO event_keys (event_id, value, tenant_id, kind) ",
        );
        insert.push_values(keys, |mut values, (kind, value)| {
            values
                .push_bind(row.id.as_str())
                .push_bind(value)
                .push_bind(row.tenant_id.as_str())
                .push_bind(kind);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let job = ProcessEvent {
        event_id: row.id.clone(),
    };
    let task = TaskBuilder::new(serde_json::to_vec(&job)?)
        .max_attempts(5)
        .build();
    apalis_postgres::queries::push_tasks(&mut *tx, PROCESS_EVENT_QUEUE, vec![task]).await?;
    tx.commit().await?;
    Ok(Stored::New(row.id))
}
