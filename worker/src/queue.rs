//! The job queue: one enum over the apalis backends (SQLite, Postgres, Redis), chosen by
//! configuration, with the same job code on each. The queue only carries event ids; the
//! event rows and deliveries in the database are the truth, so a lost or doubled job costs
//! nothing but a re-run that finds its work already done.

use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sea_orm::DatabaseConnection;

use crate::settings::Settings;

pub use crate::jobs::{PROCESS_EVENT_QUEUE, ProcessEvent, priority};

/// Which backend holds the queue.
#[derive(Clone)]
pub enum Queue {
    Sqlite(SqliteStorage<ProcessEvent>),
    Postgres(PostgresStorage<ProcessEvent>),
    /// Redis lists are first in, first out, so each priority has a list of its own (a lane);
    /// the consumer takes from all four and its job slots go to the highest priority waiting
    /// (see `consumer`).
    Redis(Box<Lanes>),
}

pub use crate::lanes::{LANES, Lanes, lane_name};

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend_name())
    }
}

impl Queue {
    /// Connects the configured backend: Redis when `TRIBUTARY_QUEUE_URL` says so, else the
    /// database itself. Creates the backend's tables or keys on first use.
    pub async fn connect(settings: &Settings, db: &DatabaseConnection) -> anyhow::Result<Queue> {
        if let Some(url) = &settings.queue_url {
            let conn = apalis_redis::connect(url.as_str()).await.with_context(|| {
                format!(
                    "TRIBUTARY_QUEUE_URL: cannot connect to {}",
                    crate::db::redact(url)
                )
            })?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut conn.clone())
                .await
                .context("TRIBUTARY_QUEUE_URL: cannot read the Redis server's version")?;
            if let Some(problem) = too_old(&info) {
                anyhow::bail!("TRIBUTARY_QUEUE_URL: {problem}");
            }
            return Ok(Queue::Redis(Box::new(Lanes::new(
                conn,
                &settings.queue_namespace,
                settings.worker_concurrency,
            ))));
        }
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                prepare_postgres(db).await?;
                let config = apalis_postgres::Config::default()
                    .queue(PROCESS_EVENT_QUEUE)
                    .batch_size(settings.worker_concurrency)
                    .lock_tasks(false);
                Ok(Queue::Postgres(
                    PostgresStorage::new(&pool).with_config(config),
                ))
            }
            _ => {
                // A pool of its own: apalis tunes its connections for speed (synchronous=OFF),
                // which must not reach the connections that commit events.
                let pool = apalis_sqlite::SqlitePool::connect(&settings.database_url)
                    .await
                    .context("opening the SQLite queue")?;
                SqliteStorage::setup(&pool)
                    .await
                    .context("setting up the SQLite queue")?;
                let config = apalis_sqlite::Config::default()
                    .queue(PROCESS_EVENT_QUEUE)
                    .batch_size(settings.worker_concurrency);
                Ok(Queue::Sqlite(SqliteStorage::new(&pool).with_config(config)))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Queue::Sqlite(_) => "sqlite",
            Queue::Postgres(_) => "postgres",
            Queue::Redis(_) => "redis",
        }
    }

    /// Enqueues `job`, to run after `delay` if given. On SQLite and Postgres the task row is
    /// written straight into apalis's table, so it is visible to every worker the moment the
    /// insert returns.
    pub async fn push(&self, job: ProcessEvent, delay: Option<Duration>) -> anyhow::Result<()> {
        self.push_all(vec![(job, delay)]).await
    }

    /// Enqueues `jobs` to run now, in one statement on SQLite and Postgres.
    pub async fn push_many(&self, jobs: Vec<ProcessEvent>) -> anyhow::Result<()> {
        self.push_all(jobs.into_iter().map(|job| (job, None)).collect())
            .await
    }

    /// Enqueues each job, to run after its delay if given.
    pub async fn push_all(
        &self,
        jobs: Vec<(ProcessEvent, Option<Duration>)>,
    ) -> anyhow::Result<()> {
        // Redis keeps due and delayed jobs apart itself (see `lanes`), to the millisecond.
        if let Queue::Redis(lanes) = self {
            return lanes.push(jobs).await.context("pushing to the redis queue");
        }
        let mut tasks = Vec::with_capacity(jobs.len());
        for (job, delay) in &jobs {
            let mut task = TaskBuilder::new(serde_json::to_vec(job)?)
                .max_attempts(5)
                .priority(job.priority.max(0) as usize);
            if let Some(delay) = delay.filter(|d| !d.is_zero()) {
                // Backends schedule in whole seconds from the current second, both rounded
                // down: round the delay up and add the second the clock may be into, so a job
                // never wakes before its retry is due.
                let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
                task = task.run_after(Duration::from_secs(seconds.saturating_add(1)));
            }
            tasks.push(task.build());
        }
        let result = match self {
            // Pushed above.
            Queue::Redis(_) => Ok(()),
            Queue::Sqlite(storage) => {
                let mut conn = storage.pool().acquire().await?;
                apalis_sqlite::queries::push_tasks(&mut *conn, PROCESS_EVENT_QUEUE, &tasks)
                    .await
                    .map_err(anyhow::Error::from)
            }
            Queue::Postgres(storage) => {
                let mut conn = storage.pool().acquire().await?;
                apalis_postgres::queries::push_tasks(&mut *conn, PROCESS_EVENT_QUEUE, tasks)
                    .await
                    .map_err(anyhow::Error::from)
            }
        };
        result.with_context(|| format!("pushing to the {} queue", self.backend_name()))
    }

    /// Removes finished jobs (the events and their deliveries are the record of the work).
    /// apalis keeps every job it acknowledged, and its acknowledgement looks a worker's jobs up
    /// by worker, so without this each acknowledgement gets slower with every job ever done.
    /// Returns how many went.
    pub async fn purge_done(&self) -> anyhow::Result<u64> {
        let removed = match self {
            Queue::Sqlite(storage) => {
                sea_orm::sqlx::query("DELETE FROM Jobs WHERE job_type = ?1 AND status = 'Done'")
                    .bind(PROCESS_EVENT_QUEUE)
                    .execute(storage.pool())
                    .await?
                    .rows_affected()
            }
            Queue::Postgres(storage) => {
                let removed = sea_orm::sqlx::query(
                    "DELETE FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'",
                )
                .bind(PROCESS_EVENT_QUEUE)
                .execute(storage.pool())
                .await?
                .rows_affected();
                if removed > 0 {
                    // Every job's row is written three times (queued, taken, done) and then
                    // deleted, and autovacuum visits a database once a minute: at hundreds of
                    // events a second the dead versions would outnumber the live rows a
                    // hundredfold, and taking and acknowledging jobs would wade through them.
                    // The table is small, so vacuuming it now costs little; SKIP_LOCKED leaves
                    // it to whoever is already at it.
                    sea_orm::sqlx::raw_sql("VACUUM (SKIP_LOCKED) apalis.jobs")
                        .execute(storage.pool())
                        .await?;
                }
                removed
            }
            Queue::Redis(lanes) => lanes.forget_done().await?,
        };
        Ok(removed)
    }

    /// How many jobs are due and not yet taken, counted up to `cap`: the sweeper only needs
    /// to know whether a backlog is still draining.
    pub async fn waiting(&self, cap: u64) -> anyhow::Result<u64> {
        let cap = cap.min(i64::MAX as u64) as i64;
        let count: i64 = match self {
            Queue::Sqlite(storage) => {
                sea_orm::sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT 1 FROM Jobs WHERE job_type = ?1 \
                     AND status = 'Pending' AND run_at <= CAST(strftime('%s', 'now') AS INTEGER) LIMIT ?2)",
                )
                .bind(PROCESS_EVENT_QUEUE)
                .bind(cap)
                .fetch_one(storage.pool())
                .await?
            }
            Queue::Postgres(storage) => {
                sea_orm::sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT 1 FROM apalis.jobs WHERE job_type = $1 \
                     AND status = 'Pending' AND run_at <= now() LIMIT $2) AS due",
                )
                .bind(PROCESS_EVENT_QUEUE)
                .bind(cap)
                .fetch_one(storage.pool())
                .await?
            }
            Queue::Redis(lanes) => lanes.waiting().await?.min(cap as u64) as i64,
        };
        Ok(count.max(0) as u64)
    }

    /// Checks that the queue answers (readiness).
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Queue::Sqlite(storage) => {
                sqlx_ping_sqlite(storage.pool()).await?;
            }
            Queue::Postgres(storage) => {
                storage.pool().acquire().await?;
            }
            Queue::Redis(lanes) => {
                let mut storage = lanes.storages[0].clone();
                let _: String = redis::cmd("PING")
                    .query_async(storage.get_connection())
                    .await?;
            }
        }
        Ok(())
    }
}

async fn sqlx_ping_sqlite(pool: &apalis_sqlite::SqlitePool) -> anyhow::Result<()> {
    pool.acquire().await?;
    Ok(())
}

/// Creates (or brings up to date) the Postgres queue's schema in `db`.
pub async fn prepare_postgres(db: &DatabaseConnection) -> anyhow::Result<()> {
    let pool = db.get_postgres_connection_pool();
    PostgresStorage::setup(pool)
        .await
        .context("setting up the Postgres queue")?;
    // apalis notifies listeners of every job inserted, in a trigger per row; the workers here
    // poll instead, and a transaction that notifies takes a global lock to commit, which
    // serialises every ingest commit behind it.
    sea_orm::sqlx::query("DROP TRIGGER IF EXISTS notify_workers ON apalis.jobs")
        .execute(pool)
        .await
        .context("setting up the Postgres queue")?;
    Ok(())
}

/// Why a Redis server (its `INFO server` text) cannot hold the queue, if it cannot: the
/// queue's scripts write after reading the server's clock, which Redis allows from 5.0.
fn too_old(info: &str) -> Option<String> {
    let version = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    (major < 5).then(|| format!("Redis {version} is older than 5.0, which the queue needs"))
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn redis_before_5_is_refused_by_name() {
        let info = |v: &str| format!("# Server\r\nredis_version:{v}\r\nredis_mode:standalone\r\n");
        assert_eq!(
            super::too_old(&info("4.0.14")).as_deref(),
            Some("Redis 4.0.14 is older than 5.0, which the queue needs")
        );
        assert_eq!(super::too_old(&info("5.0.0")), None);
        assert_eq!(super::too_old(&info("7.0.15")), None);
        // A server that does not say (a proxy) is taken.
        assert_eq!(super::too_old("# Server\r\n"), None);
    }
}
