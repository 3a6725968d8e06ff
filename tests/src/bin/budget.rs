//! Rate-budget benchmark: a backlog of events for one HubSpot connection, delivered by several
//! worker processes of their own against the HubSpot fake, which enforces a rolling window as
//! HubSpot does. The flow upserts contacts by email, so the backlog goes out in batch upserts.
//! Reports the CRM calls per second against the limit's ceiling, the records per call and per
//! second, the 429s (all, and after the first window, when the limit has been learned from
//! HubSpot's headers), the requests inside an announced `Retry-After`, and whether every record
//! arrived once.
//!
//! `cargo run --release -p tributary-tests --bin budget -- [sqlite|postgres|redis] [events]
//! [workers] [max] [interval_ms] [concurrency]` (defaults: postgres, 600, 4, 190, 10000, 32;
//! each worker process runs `concurrency` jobs, half of them for one tenant). Postgres and
//! Redis use `TRIBUTARY_TEST_DATABASE_URL` and `TRIBUTARY_TEST_REDIS_URL`.

use std::time::{Duration, Instant};

use entity::events;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use tributary_fakes::hubspot::{self, FakeHubSpot};
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

    let fake = FakeHubSpot::start();
    fake.set_rate_limits(max, interval_ms, 100_000_000);
    let app = TestApp::spawn_full(
        backend,
        &[
            ("RUST_LOG", "warn"),
            // The api stores and queues; the worker processes deliver.
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
            ("TRIBUTARY_VENDOR_URLS", "any"),
            // The backlog is sent as fast as it is acknowledged.
            ("TRIBUTARY_WEBHOOK_RATE", "100000/second"),
        ],
        None,
    )
    .await;
    let cleanup = app.cleanup_handle();
    let p = app
        .pipeline_with(json!({"name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url}}))
        .await;
    app.contact_flow(
        &p,
        json!({"firstname": "{{ object.billing_details.name }}"}),
    )
    .await;

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
    report(&fake, &shape, elapsed);
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
fn report(fake: &FakeHubSpot, shape: &Shape, elapsed: Duration) {
    let Shape {
        backend,
        count,
        workers,
        concurrency,
        max,
        interval_ms,
    } = *shape;
    let log = fake.log.all();
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
    let records: usize = log
        .iter()
        .filter(|l| l.path.ends_with("/batch/upsert"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.body).ok())
        .filter_map(|body| body["inputs"].as_array().map(Vec::len))
        .sum();
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
    let mut written: Vec<String> = fake
        .records("contacts")
        .iter()
        .map(|r| {
            r.properties["email"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    written.sort();
    written.dedup();
    println!(
        "| backend | events | worker processes × jobs | HubSpot limit | calls | calls/s | ceiling | of ceiling | records/call | records/s | 429s | 429s after the first window | requests inside a Retry-After | records once | wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {backend:?} | {count} | {workers} × {concurrency} | {max}/{interval_ms} ms | {calls} | {per_second:.2} | {ceiling:.2} | {:.0}% | {per_call:.1} | {:.1} | {} | {late} | {} | {} | {:.1} s |",
        100.0 * per_second / ceiling,
        count as f64 / elapsed.as_secs_f64(),
        refused.len(),
        fake.early_requests(),
        if written.len() == count { "yes" } else { "NO" },
        elapsed.as_secs_f64()
    );
}
