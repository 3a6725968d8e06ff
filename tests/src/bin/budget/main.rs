//! Rate-budget benchmark: a backlog of events for one CRM connection, delivered by several
//! worker processes of their own against a vendor's fake. HubSpot's fake enforces a rolling
//! window as HubSpot does, and the limit is learned from its headers; Salesforce and Zoho limit
//! by the day, so their connections are paced by a `rate_limit` setting of the same numbers.
//! The flow upserts by a unique key, so the backlog goes out in batch calls (HubSpot batch
//! upsert, Salesforce sObject Collections, Zoho multi-record upsert). Reports the CRM calls per
//! second against the limit's ceiling, the records per call and per second, the 429s (all, and
//! after the first window), the requests inside an announced `Retry-After` (HubSpot), and
//! whether every record arrived once.
//!
//! `cargo run --release -p tributary-tests --bin budget -- [sqlite|postgres|redis] [events]
//! [workers] [max] [interval_ms] [concurrency] [hubspot|salesforce|zoho]` (defaults: postgres,
//! 600, 4, 190, 10000, 32, hubspot; each worker process runs `concurrency` jobs, half of them
//! for one tenant). Postgres and Redis use `TRIBUTARY_TEST_DATABASE_URL` and
//! `TRIBUTARY_TEST_REDIS_URL`; `TRIBUTARY_BATCH_LINGER` in the environment reaches the workers.

mod vendors;

use std::time::{Duration, Instant};

use entity::events;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tributary_tests::bench::{self, arg};
use tributary_tests::{Backend, TestApp, WorkerProcess, charge_event};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let backend = bench::backend(&args);
    let count: usize = arg(&args, 2, 600);
    let workers: usize = arg(&args, 3, 4);
    let max: u64 = arg(&args, 4, 190);
    let interval_ms: u64 = arg(&args, 5, 10_000);
    let concurrency: usize = arg(&args, 6, 32);
    let crm = vendors::Crm::start(
        args.get(7).map_or("hubspot", String::as_str),
        max,
        interval_ms,
    );
    let mut vars = vec![
        ("RUST_LOG", "warn".to_string()),
        // The api stores and queues; the worker processes deliver.
        ("TRIBUTARY_EMBEDDED_WORKER", "false".to_string()),
        ("TRIBUTARY_VENDOR_URLS", "any".to_string()),
        // The backlog is sent as fast as it is acknowledged.
        ("TRIBUTARY_WEBHOOK_RATE", "100000/second".to_string()),
    ];
    // The batch linger under test, from the environment (`off` to compare).
    if let Ok(linger) = std::env::var("TRIBUTARY_BATCH_LINGER") {
        vars.push(("TRIBUTARY_BATCH_LINGER", linger));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_full(backend, &vars, None).await;
    let cleanup = app.cleanup_handle();
    let p = app.pipeline_with(crm.connection(max, interval_ms)).await;
    let flow = app
        .post("/v1/flows", &p.tenant.token, crm.flow(&p.connection_id))
        .await;
    assert!(flow.status.is_success(), "{}", flow.text);

    // The backlog, stored and queued before any worker runs.
    let now = chrono::Utc::now().timestamp();
    for i in 0..count {
        let event = charge_event(
            &format!("evt_budget_{i}"),
            &format!("ch_budget_{i}"),
            &format!("b{i}@budget.test"),
            "Budget",
            100,
            now,
        );
        let sent = app.send_event(&p, &event).await;
        assert_eq!(sent.status, 200, "{}", sent.text);
    }
    let started = Instant::now();
    let mut settings = app.settings.clone();
    settings.worker_concurrency = concurrency;
    settings.tenant_max_in_flight = (concurrency / 2).max(1);
    let processes: Vec<WorkerProcess> = (0..workers)
        .map(|_| WorkerProcess::start(settings.clone()))
        .collect();
    loop {
        let done = events::Entity::find()
            .filter(events::Column::TenantId.eq(p.tenant.id.as_str()))
            .filter(events::Column::Status.eq("processed"))
            .count(&app.db)
            .await
            .unwrap();
        if done as usize >= count || started.elapsed() > Duration::from_secs(1800) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    for process in processes {
        process.kill();
    }

    let shape = Shape {
        backend,
        count,
        workers,
        concurrency,
        max,
        interval_ms,
    };
    report(&crm, &shape, elapsed);
    cleanup.run().await;
}

/// What a run was asked to do.
struct Shape {
    backend: Backend,
    count: usize,
    workers: usize,
    concurrency: usize,
    max: u64,
    interval_ms: u64,
}

/// Prints the run's figures as a Markdown table row.
fn report(crm: &vendors::Crm, shape: &Shape, elapsed: Duration) {
    let Shape {
        backend,
        count,
        workers,
        concurrency,
        max,
        interval_ms,
    } = *shape;
    let log = crm.log();
    let calls = log.len();
    let refused: Vec<_> = log.iter().filter(|l| l.status == 429).collect();
    let first = log.first().map(|l| l.at);
    let window = chrono::Duration::milliseconds(interval_ms as i64);
    let late = refused
        .iter()
        .filter(|l| first.is_some_and(|f| l.at - f > window))
        .count();
    let span = match (log.first(), log.last()) {
        (Some(a), Some(b)) => (b.at - a.at).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    let per_second = (calls.saturating_sub(1)) as f64 / span;
    let records: usize = log.iter().map(|l| crm.records_in(l)).sum();
    let per_call = records as f64 / calls.max(1) as f64;
    let mut gaps: Vec<i64> = log
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .collect();
    gaps.sort_unstable();
    let gap = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "gaps between calls (ms): p50 {} p90 {} p99 {} max {}",
        gap(0.5),
        gap(0.9),
        gap(0.99),
        gap(1.0)
    );
    let ceiling = max as f64 * 1000.0 / interval_ms as f64;
    let written = crm.written();
    println!(
        "| CRM | backend | events | worker processes × jobs | limit | calls | calls/s | ceiling | of ceiling | records/call | records/s | 429s | 429s after the first window | requests inside a Retry-After | records once | wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {backend:?} | {count} | {workers} × {concurrency} | {max}/{interval_ms} ms | {calls} | {per_second:.2} | {ceiling:.2} | {:.0}% | {per_call:.1} | {:.1} | {} | {late} | {} | {} | {:.1} s |",
        crm.name(),
        100.0 * per_second / ceiling,
        count as f64 / elapsed.as_secs_f64(),
        refused.len(),
        crm.early().map_or("n/a".to_string(), |n| n.to_string()),
        if written.len() == count { "yes" } else { "NO" },
        elapsed.as_secs_f64()
    );
}
