//! Rate budgets shared by every process: one per key (`crm:<connection id>`,
//! `stripe:<account id>`), kept where all replicas see it — the database (one row per budget,
//! updated atomically) or Redis when the queue is Redis (one hash, updated by a script).
//!
//! A budget is a GCRA (generic cell rate algorithm): it keeps the *theoretical arrival time*
//! `tat` of the next request. A request reserves the slot `max(tat, now, held_until)` and
//! moves `tat` one interval past it, in one atomic step, then waits for its slot. So N
//! processes sending to one connection together send no faster than its rate, whatever N is.
//! `held_until` is a hold — a vendor's `Retry-After`, or a window's reset — before which no
//! slot is given to anyone.
//!
//! The interval is the caller's (from the provider's documented default, or the connection's
//! `rate_limit` setting), unless the budget has learned one from the vendor's own headers
//! (HubSpot's `X-HubSpot-RateLimit-Max` per `-Interval-Milliseconds`), which wins over the
//! default but not over the setting.

mod leases;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};

/// Microseconds since the Unix epoch, the budgets' clock.
fn micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// How requests under one budget are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// At most this many requests…
    pub requests: u32,
    /// …per this many milliseconds.
    pub per_ms: u64,
}

impl Rate {
    pub const fn new(requests: u32, per_ms: u64) -> Rate {
        Rate { requests, per_ms }
    }

    /// The spacing between two requests, in microseconds: a twentieth and one request under
    /// the limit, so that any window of the vendor's holds at most a twentieth under its limit
    /// even when network jitter bunches a request with the next.
    pub fn interval_us(self) -> i64 {
        if self.requests == 0 {
            return 0;
        }
        let usable = if self.requests >= 2 {
            (f64::from(self.requests) * 0.95 - 1.0).max(1.0)
        } else {
            0.5
        };
        ((self.per_ms as f64 * 1000.0) / usable).ceil() as i64
    }
}

/// Where the caller's rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The provider's documented default: a learned rate wins over it.
    Default,
    /// The connection's `rate_limit` setting: it wins over anything learned.
    Setting,
}

/// What a reservation gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send after this wait (zero: at once).
    After(Duration),
    /// No slot within the caller's patience: the budget's next one is this far away (a hold,
    /// or a queue of reservations); nothing was reserved.
    TooFar(Duration),
}

/// A budget as it stands, for showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The learned limit: requests per milliseconds.
    pub learned: Option<Rate>,
    /// When the next slot is free (µs since the epoch); at or before now when one is free.
    pub next_slot_us: i64,
    /// Before this (µs since the epoch) nothing is sent.
    pub held_until_us: i64,
}

const LUA_RESERVE: &str = r#"
local now = tonumber(ARGV[1])
local given = tonumber(ARGV[2])
local forced = ARGV[3] == '1'
local latest = tonumber(ARGV[4])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
local learned = tonumber(redis.call('HGET', KEYS[1], 'learned_us') or '0')
local interval = given
if not forced and learned > 0 then interval = learned end
local slot = math.max(tat, now, held)
if slot > latest then return {0, slot} end
redis.call('HSET', KEYS[1], 'tat', slot + interval)
redis.call('PEXPIRE', KEYS[1], 86400000)
return {1, slot}
"#;

const LUA_HOLD: &str = r#"
local hold_until = tonumber(ARGV[1])
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
if hold_until > held then redis.call('HSET', KEYS[1], 'held', hold_until) end
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
"#;

enum Store {
    Db(DatabaseConnection),
    Redis {
        conn: redis::aio::ConnectionManager,
        namespace: String,
    },
}

/// The shared budgets, with what this process last wrote of each learned rate (so a rate is
/// written when it changes, not on every answer).
pub struct Budgets {
    store: Store,
    /// What this process last wrote of each learned rate, and when: written again when it
    /// changes, or after [`RELEARN`] (an idle Redis budget expires with what it learned).
    learned: Mutex<HashMap<String, (Rate, std::time::Instant)>>,
    /// The holds this process has set (µs), seen by its own requests at once, before the
    /// shared store's write lands: under load that write can take a few hundred ms.
    holds: Mutex<HashMap<String, i64>>,
    /// Each key's line of this process's requests waiting for a lease (see [`leases`]).
    gates: Mutex<HashMap<String, std::sync::Arc<LeaseGate>>>,
}

/// This process's line for one key's leases: one request at a time asks the shared store,
/// the others wait their turn here, so a long line costs the store one request a look, not
/// one per waiting request; a lease this process gives back wakes the asker at once.
#[derive(Default)]
pub struct LeaseGate {
    pub turn: tokio::sync::Mutex<()>,
    pub freed: tokio::sync::Notify,
}

/// How long a learned rate this process wrote is trusted to still be in the store.
const RELEARN: Duration = Duration::from_secs(600);

impl Budgets {
    /// Budgets kept in Redis when the queue is (`TRIBUTARY_QUEUE_URL`), else in the database.
    pub async fn connect(
        settings: &crate::settings::Settings,
        db: &DatabaseConnection,
    ) -> anyhow::Result<Budgets> {
        use anyhow::Context;
        let Some(url) = &settings.queue_url else {
            return Ok(Budgets::in_database(db.clone()));
        };
        let shown = crate::db::redact(url);
        let conn = redis::Client::open(url.as_str())
            .with_context(|| format!("TRIBUTARY_QUEUE_URL: {shown}"))?
            .get_connection_manager()
            .await
            .with_context(|| {
                format!("TRIBUTARY_QUEUE_URL: cannot connect to {shown} for the rate budgets")
            })?;
        Ok(Budgets::in_redis(conn, &settings.queue_namespace))
    }

    /// Budgets kept in the database.
    pub fn in_database(db: DatabaseConnection) -> Budgets {
        Budgets {
            store: Store::Db(db),
            learned: Mutex::default(),
            holds: Mutex::default(),
            gates: Mutex::default(),
        }
    }

    /// Budgets kept in Redis, under `namespace`.
    pub fn in_redis(conn: redis::aio::ConnectionManager, namespace: &str) -> Budgets {
        Budgets {
            store: Store::Redis {
                conn,
                namespace: namespace.to_string(),
            },
            learned: Mutex::default(),
            holds: Mutex::default(),
            gates: Mutex::default(),
        }
    }

    /// Reserves the next slot of `key` at `rate`, unless it is more than `patience` away.
    pub async fn reserve(
        &self,
        key: &str,
        tenant_id: &str,
        rate: Rate,
        source: Source,
        patience: Duration,
    ) -> Result<Slot, String> {
        let now = micros_now();
        let latest = now.saturating_add(patience.as_micros() as i64);
        let (given, slot) = match &self.store {
            Store::Db(db) => {
                let found = reserve_row(db, key, rate, source, now, latest).await?;
                match found {
                    Some(answer) => answer,
                    None => {
                        insert_row(db, key, tenant_id).await?;
                        reserve_row(db, key, rate, source, now, latest)
                            .await?
                            .ok_or_else(|| format!("rate budget {key} vanished"))?
                    }
                }
            }
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let (given, slot): (i64, i64) = redis::cmd("EVAL")
                    .arg(LUA_RESERVE)
                    .arg(1)
                    .arg(format!("{namespace}.budget.{key}"))
                    .arg(now)
                    .arg(rate.interval_us())
                    .arg(if source == Source::Setting { "1" } else { "0" })
                    .arg(latest)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("rate budget {key} in Redis: {e}"))?;
                (given == 1, slot)
            }
        };
        // A hold this process set whose write may not have landed yet comes first.
        let local = self.local_hold(key);
        if local > slot.max(now) {
            let wait = Duration::from_micros((local - now) as u64);
            return Ok(if local <= latest {
                Slot::After(wait)
            } else {
                Slot::TooFar(wait)
            });
        }
        let wait = Duration::from_micros(slot.saturating_sub(now).max(0) as u64);
        Ok(if given {
            Slot::After(wait)
        } else {
            Slot::TooFar(wait)
        })
    }

    /// Lets nothing be sent under `key` before `until` (a later hold stays).
    pub async fn hold(&self, key: &str, tenant_id: &str, until: chrono::DateTime<chrono::Utc>) {
        let until = until.timestamp_micros();
        {
            let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
            let now = micros_now();
            holds.retain(|_, held| *held > now);
            let held = holds.entry(key.to_string()).or_insert(0);
            *held = (*held).max(until);
        }
        let result = match &self.store {
            Store::Db(db) => update_row(
                db,
                key,
                tenant_id,
                "UPDATE rate_budgets SET held_until = {max}(held_until, $1) WHERE budget_key = $2",
                [until.into(), key.into()],
            )
            .await,
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                redis::cmd("EVAL")
                    .arg(LUA_HOLD)
                    .arg(1)
                    .arg(format!("{namespace}.budget.{key}"))
                    .arg(until)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| format!("rate budget {key} in Redis: {e}"))
            }
        };
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "could not record a hold on a rate budget");
        }
    }

    /// Records the limit the vendor says applies, when it is not the one last recorded here;
    /// whether it was new to this process.
    pub async fn learn(&self, key: &str, tenant_id: &str, rate: Rate) -> bool {
        {
            let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, at)) = learned.get(key)
                && *known == rate
                && at.elapsed() < RELEARN
            {
                return false;
            }
            if learned.len() > 10_000 {
                learned.clear();
            }
            learned.insert(key.to_string(), (rate, std::time::Instant::now()));
        }
        let result = match &self.store {
            Store::Db(db) => {
                update_row(
                    db,
                    key,
                    tenant_id,
                    "UPDATE rate_budgets SET learned_us = $1, learned_requests = $2, \
                     learned_per_ms = $3 WHERE budget_key = $4",
                    [
                        rate.interval_us().into(),
                        i64::from(rate.requests).into(),
                        (rate.per_ms as i64).into(),
                        key.into(),
                    ],
                )
                .await
            }
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                redis::cmd("HSET")
                    .arg(format!("{namespace}.budget.{key}"))
                    .arg("learned_us")
                    .arg(rate.interval_us())
                    .arg("learned_requests")
                    .arg(rate.requests)
                    .arg("learned_per_ms")
                    .arg(rate.per_ms)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| format!("rate budget {key} in Redis: {e}"))
            }
        };
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "could not record a learned rate limit");
            // Written next time, then.
            self.learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
        }
        true
    }

    /// How long the budget's hold still runs, if one does.
    pub async fn held(&self, key: &str) -> Result<Option<Duration>, String> {
        let stored = self.state(key).await?.map_or(0, |s| s.held_until_us);
        let held = stored.max(self.local_hold(key));
        let left = held - micros_now();
        Ok((left > 0).then(|| Duration::from_micros(left as u64)))
    }

    /// The hold this process set on `key` (µs since the epoch; 0 for none).
    fn local_hold(&self, key: &str) -> i64 {
        let holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.get(key).copied().unwrap_or(0)
    }

    /// The budget as it stands; `None` before its first request.
    pub async fn state(&self, key: &str) -> Result<Option<State>, String> {
        match &self.store {
            Store::Db(db) => {
                let backend = db.get_database_backend();
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        backend,
                        sql(
                            backend,
                            "SELECT tat, held_until, learned_requests, learned_per_ms \
                             FROM rate_budgets WHERE budget_key = $1",
                        ),
                        [key.into()],
                    ))
                    .await
                    .map_err(|e| format!("rate budget {key}: {e}"))?;
                let Some(row) = row else { return Ok(None) };
                let get = |column: &str| row.try_get::<Option<i64>>("", column).ok().flatten();
                Ok(Some(State {
                    learned: learned_rate(get("learned_requests"), get("learned_per_ms")),
                    next_slot_us: get("tat").unwrap_or(0),
                    held_until_us: get("held_until").unwrap_or(0),
                }))
            }
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let fields: HashMap<String, i64> = redis::cmd("HGETALL")
                    .arg(format!("{namespace}.budget.{key}"))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("rate budget {key} in Redis: {e}"))?;
                if fields.is_empty() {
                    return Ok(None);
                }
                Ok(Some(State {
                    learned: learned_rate(
                        fields.get("learned_requests").copied(),
                        fields.get("learned_per_ms").copied(),
                    ),
                    next_slot_us: fields.get("tat").copied().unwrap_or(0),
                    held_until_us: fields.get("held").copied().unwrap_or(0),
                }))
            }
        }
    }
}

fn learned_rate(requests: Option<i64>, per_ms: Option<i64>) -> Option<Rate> {
    let requests = u32::try_from(requests?).ok().filter(|n| *n > 0)?;
    let per_ms = u64::try_from(per_ms?).ok().filter(|n| *n > 0)?;
    Some(Rate::new(requests, per_ms))
}

/// The statement for the backend: `$n` placeholders become `?` on SQLite, and `{max}` the
/// backend's greatest-of function.
fn sql(backend: DatabaseBackend, text: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => text.replace("{max}", "GREATEST"),
        _ => {
            let mut out = text.replace("{max}", "MAX");
            for n in (1..=9).rev() {
                out = out.replace(&format!("${n}"), &format!("?{n}"));
            }
            out
        }
    }
}

async fn update<const N: usize>(
    db: &DatabaseConnection,
    text: &str,
    values: [Value; N],
) -> Result<u64, String> {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql(backend, text),
        values,
    ))
    .await
    .map(|r| r.rows_affected())
    .map_err(|e| format!("rate budgets: {e}"))
}

/// Runs `text` on the budget's row, making the row first when it has none yet.
async fn update_row<const N: usize>(
    db: &DatabaseConnection,
    key: &str,
    tenant_id: &str,
    text: &str,
    values: [Value; N],
) -> Result<(), String> {
    if update(db, text, values.clone()).await? == 0 {
        insert_row(db, key, tenant_id).await?;
        update(db, text, values).await?;
    }
    Ok(())
}

async fn insert_row(db: &DatabaseConnection, key: &str, tenant_id: &str) -> Result<(), String> {
    update(
        db,
        "INSERT INTO rate_budgets (budget_key, tenant_id, tat, held_until) VALUES ($1, $2, 0, 0) \
         ON CONFLICT (budget_key) DO NOTHING",
        [key.into(), tenant_id.into()],
    )
    .await
    .map(drop)
}

/// One atomic reservation: `Some((given, slot))`, `None` when the budget has no row yet.
async fn reserve_row(
    db: &DatabaseConnection,
    key: &str,
    rate: Rate,
    source: Source,
    now: i64,
    latest: i64,
) -> Result<Option<(bool, i64)>, String> {
    let backend = db.get_database_backend();
    let forced = i64::from(source == Source::Setting);
    // The slot is the greatest of the budget's next time, now and its hold; it is taken (and
    // `tat` moved one interval on) only when it is no later than `latest`.
    let taken = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "UPDATE rate_budgets SET tat = {max}(tat, $1, held_until) + \
                   CASE WHEN $2 = 1 OR learned_us IS NULL THEN $3 ELSE learned_us END \
                 WHERE budget_key = $4 AND {max}(tat, $1, held_until) <= $5 \
                 RETURNING tat - CASE WHEN $2 = 1 OR learned_us IS NULL THEN $3 \
                   ELSE learned_us END AS slot",
            ),
            [
                now.into(),
                forced.into(),
                rate.interval_us().into(),
                key.into(),
                latest.into(),
            ],
        ))
        .await
        .map_err(|e| format!("rate budget {key}: {e}"))?;
    if let Some(row) = taken {
        let slot: i64 = row
            .try_get("", "slot")
            .map_err(|e| format!("rate budget {key}: {e}"))?;
        return Ok(Some((true, slot)));
    }
    let next = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT {max}(tat, $1, held_until) AS slot FROM rate_budgets WHERE budget_key = $2",
            ),
            [now.into(), key.into()],
        ))
        .await
        .map_err(|e| format!("rate budget {key}: {e}"))?;
    match next {
        None => Ok(None),
        Some(row) => {
            let slot: i64 = row
                .try_get("", "slot")
                .map_err(|e| format!("rate budget {key}: {e}"))?;
            Ok(Some((false, slot)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_keeps_a_twentieth_under_the_limit() {
        // HubSpot Pro: 190 per 10 s → 179.5 per 10 s, one every 55.7 ms; at most 180 slots
        // fall in any 10 s.
        assert_eq!(Rate::new(190, 10_000).interval_us(), 55_711);
        // Stripe test mode, 25 per second → 22.75 a second.
        assert_eq!(Rate::new(25, 1_000).interval_us(), 43_957);
        // One a second: one every 2 s, so no second ever holds two.
        assert_eq!(Rate::new(1, 1_000).interval_us(), 2_000_000);
        assert_eq!(Rate::new(2, 1_000).interval_us(), 1_000_000);
        assert_eq!(Rate::new(0, 1_000).interval_us(), 0);
    }

    #[test]
    fn statements_speak_each_backend() {
        let text = "UPDATE t SET a = {max}(a, $1) WHERE k = $2";
        assert_eq!(
            sql(DatabaseBackend::Postgres, text),
            "UPDATE t SET a = GREATEST(a, $1) WHERE k = $2"
        );
        assert_eq!(
            sql(DatabaseBackend::Sqlite, text),
            "UPDATE t SET a = MAX(a, ?1) WHERE k = ?2"
        );
    }
}
