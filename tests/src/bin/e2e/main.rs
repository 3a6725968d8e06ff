//! End-to-end benchmark: what a user buys is an event in the CRM, not an acknowledgement.
//!
//! Starts the real `api` (and, with `--workers N`, N standalone `worker` processes) from the
//! same target directory, a fake CRM on loopback that records when each event's record
//! arrives, and an open-loop generator of signed `charge.succeeded` webhooks (~3.9 KB each).
//! For each offered rate it reports acknowledgements, arrivals at the CRM, latencies measured
//! from each event's scheduled send time (so a generator falling behind is counted, not
//! hidden), the backlog, lost and doubled events, CPU per delivered event and per process, and
//! peak memory; on Postgres, `pgbench` inserting rows of the same size at the same
//! concurrency in the same run gives the ceiling.
//!
//! ```text
//! cargo build --release -p api -p worker -p tributary-tests
//! target/release/e2e --backend postgres --rates 250,500,1000,2000 --duration 20
//! ```
//!
//! Options: `--backend sqlite|postgres|redis` (Postgres and Redis from
//! `TRIBUTARY_TEST_DATABASE_URL` / `TRIBUTARY_TEST_REDIS_URL`, defaults on 127.0.0.1),
//! `--rates` (comma-separated events/s), `--duration` (seconds per rate), `--drain` (seconds
//! to wait for the backlog after each rate), `--workers` (0: the api's embedded worker),
//! `--ingest-clients` (closed-loop senders for the ingest ceiling, and pgbench's clients),
//! `--out` (a folder for `e2e.md` and the latency chart `e2e.svg`). Other `TRIBUTARY_*`
//! variables in the environment (e.g. `TRIBUTARY_WORKER_CONCURRENCY`) reach the processes.

#![recursion_limit = "256"]

mod crm;
mod generator;
mod measure;
mod options;
mod processes;
mod rate;
mod report;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crm::{Arrivals, start_crm};
use crate::generator::{MAX_IN_FLIGHT, Target, event, ingest_ceiling};
use crate::measure::{clock_ticks, percentile, statements_so_far};
use crate::options::{Options, options};
use crate::processes::free_port;
use crate::rate::{Bench, RateResult, run_rate};
use tributary_tests::bench::pgbench;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = options();
    let binaries = processes::binaries(&o);
    let ticks = clock_ticks();
    let dir = tempfile::tempdir().unwrap();
    let arrivals = Arc::new(Arrivals::default());
    let (crm_url, crm) = start_crm(arrivals.clone()).await;

    // The database: a fresh one per run.
    let base = std::env::var("TRIBUTARY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let database_url = create_database(&o, &base, &run_id, dir.path()).await;

    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let env = processes::environment(&o, &database_url, port, &public, dir.path(), &run_id);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let processes =
        processes::start(&client, &binaries, &env, dir.path(), o.workers, &public).await;

    let target = Arc::new(set_up_tenant(&client, &public, &run_id, &crm_url).await);
    let size = serde_json::to_vec(&event("evt_size", 1)).unwrap().len();
    let header = header(&o, size);
    println!("{header}");

    // The physical ceiling first, while the processes are idle: pgbench on the same server.
    let pg = if o.backend == "sqlite" {
        None
    } else {
        pgbench(&database_url, o.ingest_clients, 10, size)
    };

    let unloaded_line = unloaded(&target, &arrivals).await;
    println!("{unloaded_line}");

    let statements = prepare_postgres(&o, &database_url).await;
    let bench = Bench {
        statements,
        target: target.clone(),
        arrivals: arrivals.clone(),
        processes,
        ticks,
        duration: o.duration,
        drain: o.drain,
    };
    let results = run_rates(&bench, &o.rates).await;

    // Ingest alone as fast as it goes, against the pgbench ceiling.
    let (ingest, refused) = ingest_ceiling(target.clone(), o.ingest_clients, 10).await;
    let ceiling_line = report::ceiling_line(ingest, refused, pg, o.ingest_clients, size);
    println!("{ceiling_line}");
    let memory_line = report::memory_line(&bench.processes);
    println!("{memory_line}");

    // The report and the chart.
    report::write_report(
        &o.out,
        &header,
        &unloaded_line,
        &results,
        &ceiling_line,
        &memory_line,
    );
    let lost: usize = results.iter().map(|r| r.lost).sum();
    let doubled: usize = results.iter().map(|r| r.doubled).sum();
    crm.stop(false).await;
    drop(bench);
    if o.backend != "sqlite" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop_database(&base, &run_id).await;
    }
    if lost > 0 || doubled > 0 {
        eprintln!("{lost} acknowledged events never reached the CRM, {doubled} reached it twice");
        std::process::exit(1);
    }
}

/// The run's database: a SQLite file in `dir`, or a new Postgres database `bench_{run_id}` on
/// the server of `base`; its URL.
async fn create_database(o: &Options, base: &str, run_id: &str, dir: &Path) -> String {
    if o.backend == "sqlite" {
        format!("sqlite://{}/bench.db?mode=rwc", dir.display())
    } else {
        let name = format!("bench_{run_id}");
        let admin = sea_orm::Database::connect(base)
            .await
            .expect("TRIBUTARY_TEST_DATABASE_URL: Postgres");
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(base).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }
}

/// Drops the run's Postgres database, if the server of `base` can be reached.
async fn drop_database(base: &str, run_id: &str) {
    if let Ok(admin) = sea_orm::Database::connect(base).await {
        use sea_orm::ConnectionTrait;
        let name = format!("bench_{run_id}");
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Posts `body` to the api's `path`, with a bearer `token` if given; panics unless it
/// succeeds, and returns the answer.
async fn post(
    client: &reqwest::Client,
    public: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut r = client.post(format!("{public}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// A tenant: an http connection to the fake CRM, a Stripe account, one flow; the account's
/// webhook is the generator's target.
async fn set_up_tenant(
    client: &reqwest::Client,
    public: &str,
    run_id: &str,
    crm_url: &str,
) -> Target {
    let signed_up = post(
        client,
        public,
        "/v1/signup",
        None,
        json!({"tenant_name": "Bench", "email": format!("bench{run_id}@load.test"), "password": "a bench password"}),
    )
    .await;
    let token = signed_up["access_token"].as_str().unwrap().to_string();
    let connection = post(
        client,
        public,
        "/v1/connections",
        Some(&token),
        json!({"name": "CRM", "provider": "http", "settings": {"base_url": crm_url}}),
    )
    .await;
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let account = post(
        client,
        public,
        "/v1/stripe-accounts",
        Some(&token),
        json!({"name": "Stripe", "webhook_secret": secret}),
    )
    .await;
    post(
        client,
        public,
        "/v1/flows",
        Some(&token),
        json!({"name": "Paid → contact", "connection_id": connection["id"],
               "trigger": {"events": ["charge.succeeded"]},
               "steps": [{"id": "contact", "action": "create", "object": "contacts",
                          "fields": {"email": "{{ object.billing_details.email }}",
                                     "name": "{{ object.billing_details.name }}",
                                     "amount": "{{ object.amount | major_units(object.currency) }}",
                                     "stripe_event": "{{ event.id }}"}}]}),
    )
    .await;
    Target {
        client: client.clone(),
        url: account["webhook_url"].as_str().unwrap().to_string(),
        secret,
    }
}

/// The run's first line: the backend, the workers, the event's size, the commit.
fn header(o: &Options, size: usize) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let concurrency =
        std::env::var("TRIBUTARY_WORKER_CONCURRENCY").unwrap_or_else(|_| "default".into());
    format!(
        "backend {}, {}, event {size} bytes, worker concurrency {concurrency}, commit {commit}, {} s a rate",
        o.backend,
        if o.workers == 0 {
            "embedded worker".to_string()
        } else {
            format!("{} worker process(es)", o.workers)
        },
        o.duration
    )
}

/// Unloaded: one event at a time, 50 of them; the line reporting their event → CRM latency.
async fn unloaded(target: &Target, arrivals: &Arrivals) -> String {
    let mut unloaded = Vec::new();
    for i in 0..50 {
        let id = format!("evt_single_{i}");
        let sent = Instant::now();
        assert_eq!(target.send(&id, i).await, 200);
        loop {
            if let Some((at, _)) = arrivals.seen.lock().unwrap().get(&id) {
                unloaded.push(at.duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                panic!("event {id} did not reach the CRM in 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    unloaded.sort_by(f64::total_cmp);
    format!(
        "unloaded event → CRM (50 events one at a time): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99)
    )
}

/// On Postgres: the statistics autovacuum gathers within its first minute on any install
/// (its naptime), gathered now, so the rates measure the steady state, not the query plans
/// of empty tables; and pg_stat_statements, when the server loads it, to count statements.
/// The connection to count them with, when it can.
async fn prepare_postgres(o: &Options, database_url: &str) -> Option<sea_orm::DatabaseConnection> {
    if o.backend == "sqlite" {
        None
    } else {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(database_url).await.unwrap();
        db.execute_unprepared("ANALYZE").await.unwrap();
        println!(
            "ANALYZE after the warm-up, as autovacuum does on any install within its first minute"
        );
        match db
            .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
        {
            Ok(_) if statements_so_far(&db).await.is_some() => Some(db),
            _ => {
                println!(
                    "pg_stat_statements is not loaded by the server: statements per event not counted"
                );
                None
            }
        }
    }
}

/// Runs each offered rate in turn, printing its results.
async fn run_rates(bench: &Bench, rates: &[f64]) -> Vec<RateResult> {
    let mut results = Vec::new();
    for (k, rate) in rates.iter().enumerate() {
        let r = run_rate(bench, &format!("r{k}"), *rate).await;
        report::print_rate(&r);
        results.push(r);
    }
    results
}
