//! Starting the pipeline in a process: the queue connection, the job consumers, the
//! sweeper, the alert checks and the retention loop. The api calls [`Runtime::start`] for its embedded worker; the `worker` binary
//! calls it alone.

use std::sync::Arc;

use chrono::Duration;
use entity::events;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::engine::Engine;
use crate::health::supervise;
use crate::queue::{ProcessEvent, Queue};
use crate::settings::Settings;
use crate::statuses::status;

pub struct Runtime {
    pub queue: Queue,
    pub engine: Arc<Engine>,
    /// Sends alerts to notification channels (and the channels' test notices).
    pub notifier: Arc<crate::alerts::Notifier>,
    /// Stripe's API, for the accounts of this database.
    pub stripe: Arc<crate::stripe::StripeApi>,
    /// The job consumers.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The sweeper and the alert checks.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Set to true to make the job consumers stop taking jobs and finish what they hold.
    stopping: tokio::sync::watch::Sender<bool>,
    grace: std::time::Duration,
    /// Whether the consumers and background loops still run.
    health: Arc<crate::health::Health>,
}

/// Drains a [`Runtime`]'s consumers on shutdown; taken out of it before the process stops.
pub struct Drainer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stopping: tokio::sync::watch::Sender<bool>,
    grace: std::time::Duration,
}

impl Drainer {
    /// Stops taking jobs and waits up to the grace period for the jobs in hand; whatever is
    /// still running then is aborted. Nothing is lost either way: an aborted delivery's lease
    /// runs out and it is retried, and the sweeper re-queues its event.
    pub async fn drain(self) {
        let _ = self.stopping.send(true);
        let started = std::time::Instant::now();
        tracing::info!(grace = ?self.grace, "draining the job consumers");
        for mut task in self.tasks {
            let left = self.grace.saturating_sub(started.elapsed());
            if tokio::time::timeout(left, &mut task).await.is_err() {
                tracing::warn!("the grace period ended with jobs in hand; they will be retried");
                task.abort();
            }
        }
        tracing::info!("job consumers stopped");
    }
}

impl Runtime {
    /// Connects the queue and, if `consume`, starts job consumers; the sweeper always runs.
    pub async fn start(
        settings: &Settings,
        db: DatabaseConnection,
        consume: bool,
        name: &str,
        keyring: Arc<crate::secrets::Keyring>,
    ) -> anyhow::Result<Runtime> {
        let faults = crate::faults::Faults::from_settings(settings);
        let notifier = Arc::new(crate::alerts::Notifier::new(
            db.clone(),
            keyring.clone(),
            settings.alert_interval,
            settings.alert_period,
            settings.vendor_urls,
        )?);
        let queue = Queue::connect(settings, &db).await?;
        let budgets = Arc::new(crate::budget::Budgets::connect(settings, &db).await?);
        let stripe = Arc::new(
            crate::stripe::StripeApi::new(&settings.stripe_api_url, db.clone(), keyring.clone())?
                .with_budgets(budgets.clone()),
        );
        let backfiller = crate::stripe::backfill::Backfiller::new(
            db.clone(),
            queue.clone(),
            stripe.clone(),
            settings,
        );
        let engine = Arc::new(Engine {
            stripe: stripe.clone(),
            db: db.clone(),
            queue: queue.clone(),
            retry: settings.retry.clone(),
            crm: Arc::new(
                crate::crm::Connector::new(db.clone(), keyring, settings.vendor_urls)
                    .with_oauth_apps(settings.oauth_apps.clone())
                    .with_extra_ca_certs(settings.extra_ca_certs.clone())
                    .with_batch_linger(settings.batch_linger)
                    .with_budgets(budgets),
            ),
            fairness: crate::engine::Fairness::new(
                settings.tenant_max_in_flight,
                settings.worker_concurrency,
            ),
            faults: faults.clone(),
        });
        let health = Arc::new(crate::health::Health::default());
        let mut tasks = Vec::new();
        let (stopping, stop) = tokio::sync::watch::channel(false);
        if consume {
            let consumer = crate::consumer::consumer(
                &queue,
                engine.clone(),
                settings.worker_concurrency,
                name,
                stop,
            );
            tasks.push(supervise(&health, &faults, "consumer", consumer));
        }
        // The lease holder of this process's one-at-a-time loops.
        let holder = format!("{name}-{}", crate::new_id());
        let retention = crate::retention::run_forever(db.clone(), settings.clone(), holder.clone());
        let watcher = crm_watcher(settings, &db, &queue, &engine);
        let anomalies = crate::anomaly::Watcher::new(db.clone(), notifier.clone());
        let anomalies = crate::anomaly::watch_forever(anomalies, holder);
        let background = vec![
            supervise(&health, &faults, "anomalies", forever(anomalies)),
            supervise(&health, &faults, "retention", forever(retention)),
            supervise(&health, &faults, "crm watcher", forever(watcher)),
            supervise(
                &health,
                &faults,
                "sweeper",
                forever(sweep_forever(
                    db,
                    queue.clone(),
                    settings.sweep_interval,
                    settings.sweep_grace,
                )),
            ),
            supervise(
                &health,
                &faults,
                "queue purge",
                forever(purge_forever(queue.clone())),
            ),
            supervise(
                &health,
                &faults,
                "alerts",
                forever(crate::alerts::check_forever(notifier.clone())),
            ),
            supervise(
                &health,
                &faults,
                "backfill",
                forever(crate::stripe::backfill::run_forever(
                    backfiller,
                    settings.sweep_interval,
                )),
            ),
        ];
        tracing::info!(
            queue = queue.backend_name(),
            consume,
            concurrency = settings.worker_concurrency,
            "pipeline started"
        );
        Ok(Runtime {
            queue,
            engine,
            notifier,
            stripe,
            tasks,
            background,
            stopping,
            grace: settings.shutdown_grace,
            health,
        })
    }

    /// Whether the consumers and background loops still run (for readiness, and to exit).
    pub fn health(&self) -> Arc<crate::health::Health> {
        self.health.clone()
    }

    /// Takes the consumers out, to drain them when the process is asked to stop; the sweeper
    /// and the alert checks stay and end with the runtime.
    pub fn drainer(&mut self) -> Drainer {
        Drainer {
            tasks: std::mem::take(&mut self.tasks),
            stopping: self.stopping.clone(),
            grace: self.grace,
        }
    }

    /// Waits until a background task ends (they run until the process stops).
    pub async fn wait(mut self) {
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.append(&mut self.background);
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn stop(&self) {
        for task in self.tasks.iter().chain(&self.background) {
            task.abort();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loop meant to run until the process stops: its ending is a failure.
/// The CRM watcher's loop (polls and notification channels), every sweep interval; a process
/// with `TRIBUTARY_CRM_WATCHER=false` waits forever instead.
fn crm_watcher(
    settings: &Settings,
    db: &DatabaseConnection,
    queue: &Queue,
    engine: &Engine,
) -> futures::future::BoxFuture<'static, ()> {
    if !settings.crm_watcher {
        return Box::pin(std::future::pending());
    }
    Box::pin(crate::inbound::watcher::run_forever(
        db.clone(),
        queue.clone(),
        engine.crm.clone(),
        settings.public_url.clone(),
        settings.sweep_interval,
    ))
}

async fn forever(part: impl std::future::Future<Output = ()>) -> Result<(), String> {
    part.await;
    Err("it returned".into())
}

/// The sweeper's lease: one process sweeps at a time.
const SWEEP_LEASE: &str = "sweeper";

async fn sweep_forever(
    db: DatabaseConnection,
    queue: Queue,
    interval: std::time::Duration,
    grace: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Held across rounds and renewed by each; another process takes over when it lapses.
    let holder = crate::new_id();
    let lease = grace.max(interval.saturating_mul(3));
    loop {
        ticker.tick().await;
        match crate::lease::take(&db, SWEEP_LEASE, &holder, lease).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "taking the sweeper's lease failed");
                continue;
            }
        }
        match sweep(&db, &queue, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "sweeper re-enqueued events"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "sweep failed"),
        }
        if let Err(e) = forget_old_authorizations(&db).await {
            tracing::warn!(error = %e, "clearing old OAuth states failed");
        }
    }
}

/// How often finished jobs are removed from the queue's table.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes finished jobs from the queue's table every [`PURGE_INTERVAL`] (every process may:
/// the delete is idempotent and cheap when there is nothing to remove).
async fn purge_forever(queue: Queue) {
    let mut ticker = tokio::time::interval(PURGE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = queue.purge_done().await {
            tracing::warn!(error = format!("{e:#}"), "removing finished jobs failed");
        }
    }
}

/// OAuth states an hour past their expiry are of no use to anyone: used or not, they go.
async fn forget_old_authorizations(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    let cutoff = crate::now() - Duration::hours(1);
    Ok(entity::oauth_states::Entity::delete_many()
        .filter(entity::oauth_states::Column::ExpiresAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}

/// The most events one sweep re-queues.
const SWEEP_BATCH: u64 = 500;

/// Re-enqueues events that were kept but never queued (a crash between commit and push),
/// events overdue by more than `grace` (a job lost with its worker), and events waiting on a
/// connection for longer than `grace`. Returns how many.
///
/// Not while the queue holds a sweep's worth of due jobs or more: an event behind a backlog
/// is overdue only because the backlog is, and pushing it again would add a job to the very
/// backlog it waits behind, a sweep's worth every interval. Its own job still comes; if it was
/// lost, the sweep after the backlog has drained finds it.
pub async fn sweep(
    db: &DatabaseConnection,
    queue: &Queue,
    grace: std::time::Duration,
) -> anyhow::Result<usize> {
    let waiting = queue.waiting(SWEEP_BATCH).await?;
    if waiting >= SWEEP_BATCH {
        tracing::debug!(waiting, "queue draining a backlog; sweep skipped");
        return Ok(0);
    }
    let cutoff = crate::now() - Duration::from_std(grace).unwrap_or(Duration::seconds(60));
    let stuck = events::Entity::find()
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(events::Column::Status.eq(status::RECEIVED))
                        .add(events::Column::ReceivedAt.lt(cutoff)),
                )
                .add(
                    Condition::all()
                        .add(events::Column::Status.eq(status::QUEUED))
                        .add(events::Column::NextRunAt.lt(cutoff)),
                )
                // Waiting on a connection: look again now and then, in case its release was
                // missed; a run that finds it still inactive leaves the work waiting.
                .add(
                    Condition::all()
                        .add(events::Column::Status.eq(status::QUEUED))
                        .add(events::Column::NextRunAt.is_null())
                        .add(events::Column::UpdatedAt.lt(cutoff)),
                ),
        )
        .order_by_asc(events::Column::Id)
        .limit(SWEEP_BATCH)
        .all(db)
        .await?;
    let count = stuck.len();
    for event in stuck {
        queue.push(ProcessEvent::of(&event), None).await?;
        let now = crate::now();
        events::Entity::update_many()
            .set(events::ActiveModel {
                status: Set(status::QUEUED.into()),
                queued_at: Set(Some(now)),
                next_run_at: Set(Some(now)),
                updated_at: Set(now),
                ..Default::default()
            })
            .filter(events::Column::Id.eq(event.id.as_str()))
            .filter(events::Column::Status.is_in([status::RECEIVED, status::QUEUED]))
            .exec(db)
            .await?;
    }
    Ok(count)
}
