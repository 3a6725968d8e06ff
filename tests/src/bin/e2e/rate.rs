//! One offered rate: the events sent on schedule, the backlog drained, and what it cost.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crm::Arrivals;
use crate::generator::{Acks, Schedule, Sending, Target};
use crate::measure::{CpuSnapshot, percentile, snapshot, statements_so_far};
use crate::processes::Processes;

#[derive(Clone, Default)]
pub struct RateResult {
    pub offered: f64,
    pub sent_rate: f64,
    pub not_sent: usize,
    pub shed: usize,
    pub failed: usize,
    pub ack_rate: f64,
    pub ack_p50: f64,
    pub ack_p99: f64,
    pub delivery_rate: f64,
    pub e2e_p50: f64,
    pub e2e_p99: f64,
    pub backlog_mid: u64,
    pub backlog_end: u64,
    pub drain_seconds: f64,
    pub lost: usize,
    pub doubled: usize,
    pub cpu_ms_per_event: f64,
    pub cpu_lines: Vec<(String, f64)>,
    /// SQL statements the server ran per event delivered (Postgres with pg_stat_statements).
    pub statements_per_event: Option<f64>,
}

/// What every rate's run shares.
pub struct Bench {
    pub target: Arc<Target>,
    pub arrivals: Arc<Arrivals>,
    pub processes: Processes,
    pub ticks: f64,
    pub duration: u64,
    pub drain: u64,
    /// The Postgres database, to count statements (when pg_stat_statements is loaded).
    pub statements: Option<sea_orm::DatabaseConnection>,
}

/// Offers `rate` events a second for the bench's duration, drains the backlog, and measures.
pub async fn run_rate(bench: &Bench, tag: &str, rate: f64) -> RateResult {
    let (duration, drain, ticks) = (bench.duration, bench.drain, bench.ticks);
    let (target, arrivals, processes) = (
        bench.target.clone(),
        bench.arrivals.clone(),
        &bench.processes,
    );
    let count = (rate * duration as f64).round() as usize;
    let schedule = Schedule {
        start: Instant::now() + Duration::from_millis(200),
        interval: Duration::from_secs_f64(1.0 / rate),
    };
    let start = schedule.start;
    // Per event: its ack latency (ms from the scheduled time) and status.
    let acks: Acks = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let acked_ok = Arc::new(AtomicU64::new(0));
    let arrived_before = arrivals.total.load(Ordering::Relaxed);
    let statements_before = match &bench.statements {
        Some(db) => statements_so_far(db).await,
        None => None,
    };
    let before = snapshot(processes, ticks);

    // The backlog (acknowledged, not yet in the CRM) once a second.
    let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = sample_backlog(
        start,
        acked_ok.clone(),
        arrivals.clone(),
        arrived_before,
        samples.clone(),
    );

    let sending = Sending {
        target,
        acks: acks.clone(),
        in_flight: in_flight.clone(),
        acked_ok,
    };
    let not_sent = sending.send_on_schedule(tag, count, schedule).await;
    let sending_took = start.elapsed().as_secs_f64();
    let window_end = start + Duration::from_secs(duration);
    tokio::time::sleep_until(window_end.into()).await;
    while in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let ok: Vec<usize> = acks
        .iter()
        .filter(|(_, (_, s))| *s == 200)
        .map(|(n, _)| *n)
        .collect();
    let prefix = format!("evt_{tag}_");
    let drain_seconds = drain_backlog(&arrivals, &prefix, ok.len(), drain, window_end).await;
    let after = snapshot(processes, ticks);
    let statements_run = match (&bench.statements, statements_before) {
        (Some(db), Some(before)) => statements_so_far(db).await.map(|after| after - before),
        _ => None,
    };
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().unwrap());

    let reached = reached_crm(&arrivals, &prefix, &ok, schedule, window_end);
    let mut ack_latencies: Vec<f64> = acks
        .values()
        .filter(|(_, s)| *s == 200)
        .map(|(l, _)| *l)
        .collect();
    ack_latencies.sort_by(f64::total_cmp);
    let shed = acks.values().filter(|(_, s)| *s == 503).count();
    let failed = acks.len() - ok.len() - shed;
    let mid = samples
        .get((duration as usize / 2).max(1))
        .copied()
        .unwrap_or(0);
    let end = samples.get(duration as usize).copied().unwrap_or(0);
    let e2e = &reached.e2e;
    let delivered = e2e.len().max(1) as f64;
    let statements_per_event = statements_run.map(|n| n / delivered);
    RateResult {
        offered: rate,
        sent_rate: (count - not_sent) as f64 / sending_took.max(duration as f64),
        not_sent,
        shed,
        failed,
        ack_rate: ok.len() as f64 / duration as f64,
        ack_p50: percentile(&ack_latencies, 0.5),
        ack_p99: percentile(&ack_latencies, 0.99),
        delivery_rate: reached.in_window as f64 / duration as f64,
        e2e_p50: percentile(e2e, 0.5),
        e2e_p99: percentile(e2e, 0.99),
        backlog_mid: mid,
        backlog_end: end,
        drain_seconds,
        lost: reached.lost,
        doubled: reached.doubled,
        cpu_ms_per_event: (after.machine - before.machine) * 1000.0 / delivered,
        cpu_lines: cpu_lines(&before, &after),
        statements_per_event,
    }
}

/// Samples the backlog (acknowledged, not yet in the CRM) once a second from `start` into
/// `samples`, until aborted.
fn sample_backlog(
    start: Instant,
    acked_ok: Arc<AtomicU64>,
    arrivals: Arc<Arrivals>,
    arrived_before: u64,
    samples: Arc<Mutex<Vec<u64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(start.into(), Duration::from_secs(1));
        loop {
            tick.tick().await;
            let arrived = arrivals.total.load(Ordering::Relaxed) - arrived_before;
            samples
                .lock()
                .unwrap()
                .push(acked_ok.load(Ordering::Relaxed).saturating_sub(arrived));
        }
    })
}

/// Waits until all `acknowledged` events of the run (ids starting with `prefix`) have
/// arrived, or `drain` seconds are up, then a moment for late doubles; the seconds from the
/// end of the sending window.
async fn drain_backlog(
    arrivals: &Arrivals,
    prefix: &str,
    acknowledged: usize,
    drain: u64,
    window_end: Instant,
) -> f64 {
    let arrived_of_run = |arrivals: &Arrivals| {
        arrivals
            .seen
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .count()
    };
    // Drain: until every acknowledged event has arrived, or the drain time is up.
    let drain_started = Instant::now();
    while arrived_of_run(arrivals) < acknowledged
        && drain_started.elapsed() < Duration::from_secs(drain)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late doubles would come within moments.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (Instant::now().saturating_duration_since(window_end)).as_secs_f64()
}

/// How the acknowledged events of one run reached the CRM.
struct Reached {
    /// Event → CRM latencies in ms from each event's scheduled time, sorted.
    e2e: Vec<f64>,
    /// Events that arrived before the end of the sending window.
    in_window: usize,
    /// Acknowledged events that never arrived.
    lost: usize,
    /// Events of the run that arrived more than once.
    doubled: usize,
}

/// Matches the acknowledged events `ok` (ids `{prefix}{n}`) against their arrivals.
fn reached_crm(
    arrivals: &Arrivals,
    prefix: &str,
    ok: &[usize],
    schedule: Schedule,
    window_end: Instant,
) -> Reached {
    let seen = arrivals.seen.lock().unwrap();
    let mut e2e = Vec::with_capacity(ok.len());
    let mut delivered_in_window = 0;
    let mut lost = 0;
    for n in ok {
        match seen.get(&format!("{prefix}{n}")) {
            Some((at, _)) => {
                e2e.push(at.saturating_duration_since(schedule.due(*n)).as_secs_f64() * 1000.0);
                if *at <= window_end {
                    delivered_in_window += 1;
                }
            }
            None => lost += 1,
        }
    }
    let doubled = seen
        .iter()
        .filter(|(k, (_, c))| k.starts_with(prefix) && *c > 1)
        .count();
    drop(seen);
    e2e.sort_by(f64::total_cmp);
    Reached {
        e2e,
        in_window: delivered_in_window,
        lost,
        doubled,
    }
}

/// CPU seconds spent during the run by each process, Postgres and Redis (when busy), the
/// generator with the CRM, and the whole machine.
fn cpu_lines(before: &CpuSnapshot, after: &CpuSnapshot) -> Vec<(String, f64)> {
    let mut cpu_lines: Vec<(String, f64)> = after
        .by_process
        .iter()
        .zip(&before.by_process)
        .map(|((name, a), (_, b))| (name.clone(), a - b))
        .collect();
    if after.postgres - before.postgres > 0.05 {
        cpu_lines.push(("postgres".into(), after.postgres - before.postgres));
    }
    if after.redis - before.redis > 0.05 {
        cpu_lines.push(("redis".into(), after.redis - before.redis));
    }
    cpu_lines.push(("generator+CRM".into(), after.harness - before.harness));
    cpu_lines.push(("machine".into(), after.machine - before.machine));
    cpu_lines
}
