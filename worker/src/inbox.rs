//! The durable inbox: storing a verified event and queueing it. On Postgres with the queue in
//! the same database, the event row and its job commit in one transaction, so there is no
//! moment when an acknowledged event is stored but not queued. Elsewhere the job is pushed
//! right after the commit and the sweeper covers the gap. The event's search keys
//! ([`event_keys`]) commit with it. Webhooks go through [`GroupCommit`]: those arriving while
//! a commit is under way share the next one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apalis::prelude::TaskBuilder;
use entity::{event_keys, events, stripe_accounts};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::queue::{PROCESS_EVENT_QUEUE, ProcessEvent, Queue};
use crate::statuses::status;

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
        source: "stripe".into(),
        priority: crate::queue::priority::of(&envelope.event_type, true),
    }
}

/// Stores `row` (status `received`) unless the account already has that Stripe event, and
/// queues it. Returns once the row is committed.
pub async fn store(
    db: &DatabaseConnection,
    queue: &Queue,
    row: events::Model,
) -> anyhow::Result<Stored> {
    let keys = event_keys::extract_from_payload(&row.payload);
    let inserted = insert_group(db, queue, &[(&row, keys.as_slice())]).await?;
    if !inserted.contains(&row.id) {
        return Ok(Stored::Duplicate(existing_id(db, &row).await?));
    }
    if !matches!(queue, Queue::Postgres(_)) {
        push_later(queue.clone(), vec![ProcessEvent::of(&row)]);
    }
    Ok(Stored::New(row.id))
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

/// Most events one group commit writes.
const MAX_GROUP: usize = 256;

/// Concurrent group commits (each takes whatever has arrived while the others wrote).
const WRITERS: usize = 2;

/// Why [`GroupCommit::store`] stored nothing.
#[derive(Debug)]
pub enum StoreError {
    /// More webhooks are waiting for a commit than the inbox holds: nothing was stored; the
    /// sender should come back later.
    Busy,
    /// The tenant already has this many events due and not yet processed: nothing was
    /// stored; the sender should come back later.
    Backlogged(u64),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StoreError {
    fn from(e: anyhow::Error) -> Self {
        StoreError::Failed(e)
    }
}

struct Pending {
    row: events::Model,
    keys: Vec<event_keys::Key>,
    done: oneshot::Sender<anyhow::Result<Stored>>,
}

/// Group commit of concurrent webhooks: each waits for the commit that holds its event, and
/// the events that arrive while a commit is under way share the next one (one transaction,
/// multi-row inserts, the queue's jobs pushed together). So the commits a second do not grow
/// with the webhooks a second, and each event is still acknowledged only once it is durable.
/// At most `max_pending` events wait at once; more are refused with [`StoreError::Busy`].
/// A clone shares the writers and the counts.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::UnboundedSender<Pending>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    /// Each tenant's events due and not yet processed, counted every [`BACKLOG_INTERVAL`].
    backlogs: Arc<std::sync::RwLock<HashMap<String, u64>>>,
    /// Past this many (0: never), a tenant's webhooks are refused.
    max_backlog: u64,
}

/// How often the tenants' backlogs are counted.
const BACKLOG_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl GroupCommit {
    /// Starts the writers; they stop when the [`GroupCommit`] is dropped.
    pub fn start(
        db: DatabaseConnection,
        queue: Queue,
        max_pending: usize,
        max_backlog: u64,
    ) -> GroupCommit {
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(write_groups(db.clone(), queue.clone(), receiver.clone()));
        }
        let backlogs = Arc::default();
        if max_backlog > 0 {
            tokio::spawn(count_backlogs(db, Arc::downgrade(&backlogs)));
        }
        GroupCommit {
            sender,
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: max_pending.max(1),
            backlogs,
            max_backlog,
        }
    }

    /// Stores `row` like [`store`], sharing a commit with the events stored at the same time.
    pub async fn store(&self, row: events::Model) -> Result<Stored, StoreError> {
        if self.max_backlog > 0 {
            let backlog = self
                .backlogs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&row.tenant_id)
                .copied()
                .unwrap_or(0);
            if backlog >= self.max_backlog {
                return Err(StoreError::Backlogged(backlog));
            }
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Busy);
        }
        let _pending = PendingGuard(&self.pending);
        let keys = event_keys::extract_from_payload(&row.payload);
        let (done, result) = oneshot::channel();
        self.sender
            .send(Pending { row, keys, done })
            .map_err(|_| anyhow::anyhow!("the inbox's writers stopped"))?;
        Ok(result
            .await
            .map_err(|_| anyhow::anyhow!("the inbox's writer stopped before the commit"))??)
    }

    /// Events waiting for a commit now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Counts each tenant's live events due and not yet processed (received, or queued and due;
/// not those waiting for a retry or for a connection), until the [`GroupCommit`] is dropped.
/// A backfill's or reconciliation's events do not count: they wait behind live ones in the
/// queue, and a tenant catching up on 50,000 past events must still have its live webhooks
/// (a failed payment among them) taken.
async fn count_backlogs(
    db: DatabaseConnection,
    backlogs: std::sync::Weak<std::sync::RwLock<HashMap<String, u64>>>,
) {
    use sea_orm::{Condition, QuerySelect};
    let mut ticker = tokio::time::interval(BACKLOG_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(backlogs) = backlogs.upgrade() else {
            return;
        };
        let counted: Result<Vec<(String, i64)>, _> = events::Entity::find()
            .select_only()
            .column(events::Column::TenantId)
            .column_as(events::Column::Id.count(), "count")
            .filter(
                Condition::any()
                    .add(events::Column::Status.eq(status::RECEIVED))
                    .add(
                        Condition::all()
                            .add(events::Column::Status.eq(status::QUEUED))
                            .add(events::Column::NextRunAt.lte(crate::now())),
                    ),
            )
            .filter(events::Column::Priority.gte(crate::queue::priority::LIVE))
            .group_by(events::Column::TenantId)
            .into_tuple()
            .all(&db)
            .await;
        match counted {
            Ok(rows) => {
                *backlogs.write().unwrap_or_else(|e| e.into_inner()) = rows
                    .into_iter()
                    .map(|(tenant, n)| (tenant, n.max(0) as u64))
                    .collect();
            }
            Err(e) => tracing::warn!(error = %e, "counting the tenants' backlogs failed"),
        }
    }
}

struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn write_groups(
    db: DatabaseConnection,
    queue: Queue,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&db, &queue, group).await;
    }
}

/// Commits `group` in one transaction; if that fails, each event on its own, so one bad event
/// fails only its own webhook.
async fn write_group(db: &DatabaseConnection, queue: &Queue, group: Vec<Pending>) {
    if group.len() > 1 {
        let rows: Vec<(&events::Model, &[event_keys::Key])> =
            group.iter().map(|p| (&p.row, p.keys.as_slice())).collect();
        match insert_group(db, queue, &rows).await {
            Ok(inserted) => {
                let mut jobs = Vec::new();
                for pending in group {
                    let result = if inserted.contains(&pending.row.id) {
                        if !matches!(queue, Queue::Postgres(_)) {
                            jobs.push(ProcessEvent::of(&pending.row));
                        }
                        Ok(Stored::New(pending.row.id))
                    } else {
                        existing_id(db, &pending.row).await.map(Stored::Duplicate)
                    };
                    let _ = pending.done.send(result);
                }
                if !jobs.is_empty() {
                    push_later(queue.clone(), jobs);
                }
                return;
            }
            Err(e) => {
                tracing::warn!(
                    events = group.len(),
                    error = format!("{e:#}"),
                    "a group commit failed; storing its events one by one"
                );
            }
        }
    }
    for pending in group {
        let result = store(db, queue, pending.row).await;
        let _ = pending.done.send(result);
    }
}

/// Queues the jobs of events just committed (not on Postgres, where they commit with them);
/// the sweeper covers a push that fails.
fn push_later(queue: Queue, jobs: Vec<ProcessEvent>) {
    tokio::spawn(async move {
        let events = jobs.len();
        if let Err(e) = queue.push_many(jobs).await {
            tracing::warn!(
                events,
                error = format!("{e:#}"),
                "queueing failed; the sweeper will retry"
            );
        }
    });
}

/// Inserts `rows` (those already stored are left alone) with their search keys, and on
/// Postgres with the queue there, their jobs, in one transaction. Returns the ids inserted.
async fn insert_group(
    db: &DatabaseConnection,
    queue: &Queue,
    rows: &[(&events::Model, &[event_keys::Key])],
) -> anyhow::Result<HashSet<String>> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return insert_group_orm(db, rows).await;
    }
    let queued_with_them = matches!(queue, Queue::Postgres(_));
    let (status, queued) = if queued_with_them {
        (status::QUEUED, true)
    } else {
        (status::RECEIVED, false)
    };
    let mut tx = db.get_postgres_connection_pool().begin().await?;
    let mut insert = sea_orm::sqlx::QueryBuilder::<sea_orm::sqlx::Postgres>::new(
        "INSERT INTO events (id, tenant_id, stripe_account_id, stripe_event_id, event_type, \
         stripe_object_id, livemode, api_version, event_created, payload, status, runs, \
         next_run_at, last_error, received_at, queued_at, processed_at, updated_at, source, \
         priority) ",
    );
    insert.push_values(rows, |mut values, (row, _)| {
        let queued_at = queued.then_some(row.received_at);
        values
            .push_bind(&row.id)
            .push_bind(&row.tenant_id)
            .push_bind(&row.stripe_account_id)
            .push_bind(&row.stripe_event_id)
            .push_bind(&row.event_type)
            .push_bind(&row.stripe_object_id)
            .push_bind(row.livemode)
            .push_bind(&row.api_version)
            .push_bind(row.event_created)
            .push_bind(&row.payload)
            .push_bind(status)
            .push_bind(0i32)
            .push_bind(queued_at)
            .push_bind(None::<String>)
            .push_bind(row.received_at)
            .push_bind(queued_at)
            .push_bind(None::<chrono::DateTime<chrono::Utc>>)
            .push_bind(row.received_at)
            .push_bind(&row.source)
            .push_bind(row.priority);
    });
    insert.push(" ON CONFLICT (stripe_account_id, stripe_event_id) DO NOTHING RETURNING id");
    let inserted: HashSet<String> = insert
        .build_query_scalar::<String>()
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let keys: Vec<(&events::Model, &event_keys::Key)> = rows
        .iter()
        .filter(|(row, _)| inserted.contains(&row.id))
        .flat_map(|(row, keys)| keys.iter().map(move |key| (*row, key)))
        .collect();
    if !keys.is_empty() {
        let mut insert = sea_orm::sqlx::QueryBuilder::<sea_orm::sqlx::Postgres>::new(
            "INSERT INTO event_keys (event_id, value, tenant_id, kind) ",
        );
        insert.push_values(keys, |mut values, (row, (kind, value))| {
            values
                .push_bind(row.id.as_str())
                .push_bind(value.as_str())
                .push_bind(row.tenant_id.as_str())
                .push_bind(*kind);
        });
        insert.build().execute(&mut *tx).await?;
    }
    if queued_with_them && !inserted.is_empty() {
        let mut tasks = Vec::with_capacity(inserted.len());
        for (row, _) in rows.iter().filter(|(row, _)| inserted.contains(&row.id)) {
            let job = ProcessEvent::of(row);
            tasks.push(
                TaskBuilder::new(serde_json::to_vec(&job)?)
                    .max_attempts(5)
                    .priority(job.priority.max(0) as usize)
                    .build(),
            );
        }
        apalis_postgres::queries::push_tasks(&mut *tx, PROCESS_EVENT_QUEUE, tasks).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// [`insert_group`] through sea-orm (SQLite): one statement per event, one transaction.
async fn insert_group_orm(
    db: &DatabaseConnection,
    rows: &[(&events::Model, &[event_keys::Key])],
) -> anyhow::Result<HashSet<String>> {
    use sea_orm::sea_query::OnConflict;
    let txn = crate::db::begin_write(db).await?;
    let mut inserted = HashSet::new();
    let mut keys = Vec::new();
    for (row, row_keys) in rows {
        let mut row = (*row).clone();
        row.status = status::RECEIVED.into();
        let done = events::Entity::insert(events::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::columns([
                    events::Column::StripeAccountId,
                    events::Column::StripeEventId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if done == 1 {
            keys.extend(event_keys::rows(&row.tenant_id, &row.id, row_keys.to_vec()));
            inserted.insert(row.id);
        }
    }
    if !keys.is_empty() {
        event_keys::Entity::insert_many(keys).exec(&txn).await?;
    }
    txn.commit().await?;
    Ok(inserted)
}
