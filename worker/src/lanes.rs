//! The Redis queue: a list per priority (a lane), with pushing, delaying and clean-up of its
//! own beside apalis's fetching and acknowledging.
//!
//! apalis-redis puts every pushed job, due or not, in the lane's `:scheduled` sorted set, and
//! each fetch moves *all* the due ones to the active list in one Lua call that passes them as
//! arguments. Lua in Redis cannot pass more than about 8,000 values that way, so once more
//! jobs than that are due together (a backlog pushed in one go, or retries due in the same
//! second) every fetch fails and the queue stops for every tenant. So here a due job goes
//! straight onto the active list, a delayed one waits in a set of our own (`:delayed`, due
//! times in Redis's milliseconds), and [`Lanes::promote`] moves due jobs in chunks. Jobs left
//! in `:scheduled` (pushed by an older version, or an apalis retry) are moved in chunks the
//! same way, so an oversized set left behind drains instead of stopping the queue.
//!
//! The job's data and metadata are laid out as apalis reads them (`{lane}:data` holds the
//! encoded job by task id, `{lane}:meta:{id}` its attempts, max attempts and status), so
//! apalis's fetch, heartbeat, orphan re-queueing and acknowledgement work unchanged.

use std::sync::LazyLock;
use std::time::Duration;

use apalis_redis::RedisStorage;
use redis::Script;

use crate::jobs::{PROCESS_EVENT_QUEUE, ProcessEvent, priority};

/// One lane per priority, [`priority::BULK`] to [`priority::LIVE_FAILURE`].
pub const LANES: usize = priority::LIVE_FAILURE as usize + 1;

/// The most jobs one Lua call pushes, moves or forgets, far below Lua's limit and short
/// enough not to hold Redis up for others.
const CHUNK: usize = 500;

/// The most chunks one [`Lanes::promote`] moves per lane, so one round cannot run forever
/// while jobs fall due as fast as they are moved.
const CHUNKS_A_ROUND: usize = 20;

/// The Redis queue's lanes, lowest priority first: lane 0 keeps the queue's plain name
/// (`{namespace}.process_event`, where jobs of every priority were queued before lanes), lane
/// `n` is `{namespace}.process_event.p{n}`.
#[derive(Clone)]
pub struct Lanes {
    pub storages: [RedisStorage<ProcessEvent>; LANES],
    names: [String; LANES],
}

/// The name of a lane's list.
pub fn lane_name(namespace: &str, lane: usize) -> String {
    match lane {
        0 => format!("{namespace}.{PROCESS_EVENT_QUEUE}"),
        n => format!("{namespace}.{PROCESS_EVENT_QUEUE}.p{n}"),
    }
}

/// Pushes jobs: each one's data and metadata as apalis reads them, then its id onto the
/// active list, or into the delayed set when it is due later.
/// KEYS: data hash, active list, signal list, meta prefix, delayed set.
/// ARGV: triples of task id, encoded job, delay in ms (0: due now).
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due_now = 0
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  redis.call('HSET', KEYS[1], id, ARGV[i + 1])
  redis.call('HSET', KEYS[4] .. ':' .. id, 'attempts', 0, 'max_attempts', 5, 'status', 'Pending')
  local delay = tonumber(ARGV[i + 2])
  if delay > 0 then
    redis.call('ZADD', KEYS[5], now + delay, id)
  else
    redis.call('RPUSH', KEYS[2], id)
    due_now = due_now + 1
  end
end
if due_now > 0 then
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return due_now
"#,
    )
});

/// Moves up to ARGV[1] due jobs from the delayed set (ms) and from apalis's scheduled set
/// (seconds) to the active list, one at a time.
/// KEYS: delayed set, scheduled set, active list, signal list.
static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local moved = 0
local function move(set, now)
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, limit - moved)
  for _, id in ipairs(ids) do
    redis.call('RPUSH', KEYS[3], id)
    redis.call('ZREM', set, id)
  end
  moved = moved + #ids
end
move(KEYS[1], ms)
if moved < limit then move(KEYS[2], tonumber(t[1])) end
if moved > 0 then
  redis.call('DEL', KEYS[4])
  redis.call('LPUSH', KEYS[4], 1)
end
return moved
"#,
    )
});

/// Forgets up to ARGV[1] acknowledged jobs: apalis keeps every finished job's id, data and
/// metadata, which would grow Redis by every event ever processed.
/// KEYS: done set, data hash, meta prefix.
static FORGET_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('DEL', KEYS[3] .. ':' .. id)
end
return #ids
"#,
    )
});

impl Lanes {
    /// The lanes of `namespace` on `conn`, each fetched `batch` jobs at a time.
    pub fn new(conn: redis::aio::ConnectionManager, namespace: &str, batch: usize) -> Lanes {
        let names: [String; LANES] = std::array::from_fn(|n| lane_name(namespace, n));
        let storages = std::array::from_fn(|n| {
            let config = apalis_redis::Config::default()
                .queue(&names[n])
                .batch_size(batch);
            RedisStorage::new(conn.clone()).with_config(config)
        });
        Lanes { storages, names }
    }

    /// The lane of a priority (out-of-range ones to the nearest lane).
    fn lane(priority: i16) -> usize {
        (priority.max(0) as usize).min(LANES - 1)
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        let mut storage = self.storages[0].clone();
        storage.get_connection().clone()
    }

    /// Pushes `jobs`, each to its priority's lane, due after its delay (`None`: now).
    pub async fn push(&self, jobs: Vec<(ProcessEvent, Option<Duration>)>) -> anyhow::Result<()> {
        let mut by_lane: [Vec<(ProcessEvent, Option<Duration>)>; LANES] = Default::default();
        for job in jobs {
            by_lane[Self::lane(job.0.priority)].push(job);
        }
        let mut conn = self.conn();
        for (lane, jobs) in by_lane.iter().enumerate() {
            let config = self.storages[lane].get_config();
            for chunk in jobs.chunks(CHUNK) {
                let mut call = PUSH.prepare_invoke();
                call.key(config.job_data_hash())
                    .key(config.active_jobs_list())
                    .key(config.signal_list())
                    .key(config.job_meta_hash())
                    .key(self.delayed_set(lane));
                for (job, delay) in chunk {
                    call.arg(uuid::Uuid::new_v4().simple().to_string())
                        .arg(serde_json::to_vec(job)?)
                        .arg(
                            delay
                                .filter(|d| !d.is_zero())
                                .map_or(0, |d| d.as_millis().max(1) as u64),
                        );
                }
                let _: i64 = call.invoke_async(&mut conn).await?;
            }
        }
        Ok(())
    }

    fn delayed_set(&self, lane: usize) -> String {
        format!("{}:delayed", self.names[lane])
    }

    /// Moves every lane's due delayed and scheduled jobs to its active list, a chunk at a
    /// time. Returns how many moved.
    pub async fn promote(&self) -> anyhow::Result<usize> {
        let mut conn = self.conn();
        let mut total = 0;
        for lane in 0..LANES {
            let config = self.storages[lane].get_config();
            for _ in 0..CHUNKS_A_ROUND {
                let moved: usize = PROMOTE
                    .key(self.delayed_set(lane))
                    .key(config.scheduled_jobs_set())
                    .key(config.active_jobs_list())
                    .key(config.signal_list())
                    .arg(CHUNK)
                    .invoke_async(&mut conn)
                    .await?;
                total += moved;
                if moved < CHUNK {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Moves every due job onto the lanes, however many: run before a consumer's first fetch,
    /// which would fail on thousands left due in `:scheduled` (and stop the consumer).
    pub async fn promote_all(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let moved = self.promote().await?;
            total += moved;
            if moved < CHUNK {
                return Ok(total);
            }
        }
    }

    /// Forgets acknowledged jobs, a chunk at a time. Returns how many went.
    pub async fn forget_done(&self) -> anyhow::Result<u64> {
        let mut conn = self.conn();
        let mut total = 0;
        for storage in &self.storages {
            let config = storage.get_config();
            for _ in 0..CHUNKS_A_ROUND {
                let gone: u64 = FORGET_DONE
                    .key(config.done_jobs_set())
                    .key(config.job_data_hash())
                    .key(config.job_meta_hash())
                    .arg(CHUNK)
                    .invoke_async(&mut conn)
                    .await?;
                total += gone;
                if gone < CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// How many jobs wait on the lanes' active lists (due, not yet taken).
    pub async fn waiting(&self) -> anyhow::Result<u64> {
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        for storage in &self.storages {
            pipe.llen(storage.get_config().active_jobs_list());
        }
        let lengths: Vec<u64> = pipe.query_async(&mut conn).await?;
        Ok(lengths.into_iter().sum())
    }
}

/// How often a consumer moves due delayed jobs onto the lanes.
pub const PROMOTE_INTERVAL: Duration = Duration::from_millis(100);

/// Moves due jobs onto the lanes every [`PROMOTE_INTERVAL`] until `stop` turns true. Every
/// consumer runs one; each move is one atomic Lua call, so several never move a job twice.
pub async fn promote_forever(
    lanes: Lanes,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let mut ticker = tokio::time::interval(PROMOTE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopping| *stopping) => return Ok(()),
        }
        if let Err(e) = lanes.promote().await {
            tracing::warn!(
                error = format!("{e:#}"),
                "moving due jobs onto the queue failed"
            );
        }
    }
}
