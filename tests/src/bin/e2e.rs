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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::process::{Child, Command};
use tributary_tests::stripe_signature;

/// Most requests the generator keeps open at once; beyond it an event is counted as not sent.
const MAX_IN_FLIGHT: usize = 2048;

struct Options {
    backend: String,
    rates: Vec<f64>,
    duration: u64,
    drain: u64,
    workers: usize,
    ingest_clients: usize,
    out: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        backend: "postgres".into(),
        rates: vec![250.0, 500.0, 1000.0, 2000.0],
        duration: 20,
        drain: 60,
        workers: 0,
        ingest_clients: 64,
        out: PathBuf::from("target/bench"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let bad = |what: &str| -> ! {
            eprintln!(
                "{}: {what} (got {value:?}); see the top of tests/src/bin/e2e.rs",
                args[i]
            );
            std::process::exit(2)
        };
        match args[i].as_str() {
            "--backend" if ["sqlite", "postgres", "redis"].contains(&value.as_str()) => {
                o.backend = value.clone()
            }
            "--backend" => bad("sqlite, postgres or redis"),
            "--rates" => {
                o.rates = value
                    .split(',')
                    .map(|r| r.trim().parse::<f64>().ok().filter(|r| *r > 0.0))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_else(|| bad("comma-separated positive numbers"))
            }
            "--duration" => o.duration = value.parse().unwrap_or_else(|_| bad("seconds")),
            "--drain" => o.drain = value.parse().unwrap_or_else(|_| bad("seconds")),
            "--workers" => o.workers = value.parse().unwrap_or_else(|_| bad("a count")),
            "--ingest-clients" => {
                o.ingest_clients = value.parse().unwrap_or_else(|_| bad("a count"))
            }
            "--out" => o.out = PathBuf::from(&value),
            _ => {
                eprintln!(
                    "unknown option {}; see the top of tests/src/bin/e2e.rs",
                    args[i]
                );
                std::process::exit(2)
            }
        }
        i += 2;
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The fake CRM: records the first and every later arrival of each event's record.

#[derive(Default)]
struct Arrivals {
    /// event id → (first arrival, how many times it arrived)
    seen: Mutex<HashMap<String, (Instant, u32)>>,
    total: AtomicU64,
}

async fn start_crm(arrivals: Arc<Arrivals>) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let arrivals = arrivals.clone();
        App::new().route(
            "/contacts",
            web::post().to(move |body: web::Json<Value>| {
                let arrivals = arrivals.clone();
                async move {
                    let now = Instant::now();
                    let event = body["stripe_event"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let n = arrivals.total.fetch_add(1, Ordering::Relaxed);
                    arrivals
                        .seen
                        .lock()
                        .unwrap()
                        .entry(event)
                        .and_modify(|(_, count)| *count += 1)
                        .or_insert((now, 1));
                    HttpResponse::Created().json(json!({"id": format!("c_{n}")}))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{address}"), handle)
}

// ---------------------------------------------------------------------------------------------
// Processes and what they cost.

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of one process.
fn cpu_of(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// CPU seconds of every process whose command name is `name` (Postgres runs one per
/// connection).
fn cpu_of_named(name: &str, ticks: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| cpu_of(pid, ticks))
        .sum()
}

/// Busy CPU seconds of the whole machine (all cores).
fn box_cpu(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 5 {
        return 0.0;
    }
    let idle = v[3] + v[4];
    (v.iter().take(8).sum::<f64>() - idle) / ticks
}

/// A field of /proc/<pid>/status in MiB (`VmHWM`, `VmRSS`).
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

struct Processes {
    api: Child,
    workers: Vec<Child>,
}

impl Processes {
    fn pids(&self) -> Vec<(String, u32)> {
        let mut all = vec![("api".to_string(), self.api.id())];
        for (i, w) in self.workers.iter().enumerate() {
            all.push((format!("worker{}", i + 1), w.id()));
        }
        all
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.api))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Clone, Default)]
struct CpuSnapshot {
    by_process: Vec<(String, f64)>,
    postgres: f64,
    redis: f64,
    harness: f64,
    machine: f64,
}

fn snapshot(processes: &Processes, ticks: f64) -> CpuSnapshot {
    CpuSnapshot {
        by_process: processes
            .pids()
            .into_iter()
            .map(|(name, pid)| (name, cpu_of(pid, ticks)))
            .collect(),
        postgres: cpu_of_named("postgres", ticks),
        redis: cpu_of_named("redis-server", ticks),
        harness: cpu_of(std::process::id(), ticks),
        machine: box_cpu(ticks),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(binary: &Path, env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

async fn wait_ready(client: &reqwest::Client, url: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not become ready at {url}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// A `charge.succeeded` event shaped like Stripe's, about 3.9 KB.
fn event(id: &str, n: usize) -> Value {
    let charge = format!("ch_{id}");
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": format!("req_{n:014}"), "idempotency_key": format!("{n:08x}-1f2e-4d3c-9b8a-7f6e5d4c3b2a")},
        "type": "charge.succeeded",
        "data": {"object": {
            "id": charge, "object": "charge", "amount": 1000 + n, "amount_captured": 1000 + n,
            "amount_refunded": 0, "application": null, "application_fee": null,
            "application_fee_amount": null, "balance_transaction": format!("txn_{n:024}"),
            "billing_details": {"address": {"city": "Springfield", "country": "US", "line1": "742 Evergreen Terrace",
                "line2": null, "postal_code": "49007", "state": "OR"},
                "email": format!("buyer{n}@load.test"), "name": "Load Test Buyer", "phone": "+1-555-0100"},
            "calculated_statement_descriptor": "TRIBUTARY BENCH", "captured": true,
            "created": chrono::Utc::now().timestamp(), "currency": "usd", "customer": format!("cus_{n:014}"),
            "description": "Subscription update", "destination": null, "dispute": null, "disputed": false,
            "failure_balance_transaction": null, "failure_code": null, "failure_message": null,
            "fraud_details": {}, "invoice": format!("in_{n:024}"), "livemode": false,
            "metadata": {"company": "Stark Industries", "plan": "pro", "seats": "12", "order": format!("ord_{n}"),
                "account_manager": "Pepper Potts", "region": "north-america", "channel": "self-serve",
                "campaign": "winter-launch-2026", "referrer": "https://partner.example.com/landing/winter",
                "crm_owner": "sales-team-west", "contract": format!("ctr_{n:012}"), "billing_cycle": "annual",
                "notes": "Upgraded from starter after the trial; invoice contact is the finance team, not the signer.",
                "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "winter-launch",
                "support_tier": "priority", "renewal_date": "2027-12-06", "tax_id": "US-EIN-12-3456789",
                "items": "pro-annual x12; onboarding-package x1; priority-support x1; extra-workspace x3",
                "sales_rep_email": "rep.west@stark.example.com", "signup_source": "pricing-page",
                "previous_plan": "starter-monthly", "discount": "WINTER26 (20% first year)",
                "purchase_order": format!("PO-{n:010}"), "cost_center": "CC-4410-Engineering",
                "approver": "Virginia Potts", "internal_ref": format!("ref-{n:016x}"),
                "delivery_notes": "Send the welcome pack to the Malibu office; the signer travels until January."},
            "on_behalf_of": null, "order": null,
            "outcome": {"network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"},
            "paid": true, "payment_intent": format!("pi_{n:024}"), "payment_method": format!("pm_{n:024}"),
            "payment_method_details": {"card": {"amount_authorized": 1000 + n, "brand": "visa",
                "checks": {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"},
                "country": "US", "exp_month": 8, "exp_year": 2030, "extended_authorization": {"status": "disabled"},
                "fingerprint": "Xt5EWLLDS7FJjR1c", "funding": "credit", "incremental_authorization": {"status": "unavailable"},
                "installments": null, "last4": "4242", "mandate": null,
                "multicapture": {"status": "unavailable"}, "network": "visa",
                "network_token": {"used": false}, "overcapture": {"maximum_amount_capturable": 1000 + n, "status": "unavailable"},
                "three_d_secure": null, "wallet": null}, "type": "card"},
            "radar_options": {}, "receipt_email": format!("buyer{n}@load.test"), "receipt_number": null,
            "receipt_url": format!("https://pay.stripe.com/receipts/payment/{charge}"),
            "refunded": false, "refunds": {"object": "list", "data": [], "has_more": false,
                "total_count": 0, "url": format!("/v1/charges/{charge}/refunds")},
            "review": null, "shipping": {"address": {"city": "Springfield", "country": "US", "line1": "742 Evergreen Terrace",
                "line2": null, "postal_code": "49007", "state": "OR"}, "carrier": null, "name": "Load Test Buyer",
                "phone": "+1-555-0100", "tracking_number": null},
            "source": null, "source_transfer": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": "succeeded", "transfer_data": null, "transfer_group": null
        }, "previous_attributes": null}
    })
}

struct Target {
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl Target {
    /// Sends event `id` signed now; the status, or 0 when the request failed.
    async fn send(&self, id: &str, n: usize) -> u16 {
        let body = serde_json::to_vec(&event(id, n)).unwrap();
        let signature = stripe_signature(&body, &self.secret, chrono::Utc::now().timestamp());
        match self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

// ---------------------------------------------------------------------------------------------
// One offered rate.

#[derive(Clone, Default)]
struct RateResult {
    offered: f64,
    sent_rate: f64,
    not_sent: usize,
    shed: usize,
    failed: usize,
    ack_rate: f64,
    ack_p50: f64,
    ack_p99: f64,
    delivery_rate: f64,
    e2e_p50: f64,
    e2e_p99: f64,
    backlog_mid: u64,
    backlog_end: u64,
    drain_seconds: f64,
    lost: usize,
    doubled: usize,
    cpu_ms_per_event: f64,
    cpu_lines: Vec<(String, f64)>,
    /// SQL statements the server ran per event delivered (Postgres with pg_stat_statements).
    statements_per_event: Option<f64>,
}

/// What every rate's run shares.
struct Bench {
    target: Arc<Target>,
    arrivals: Arc<Arrivals>,
    processes: Processes,
    ticks: f64,
    duration: u64,
    drain: u64,
    /// The Postgres database, to count statements (when pg_stat_statements is loaded).
    statements: Option<sea_orm::DatabaseConnection>,
}

/// Statements run in the current database so far, from pg_stat_statements.
async fn statements_so_far(db: &sea_orm::DatabaseConnection) -> Option<f64> {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT coalesce(sum(calls), 0)::float8 AS calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ))
        .await
        .ok()??;
    row.try_get::<f64>("", "calls").ok()
}

async fn run_rate(bench: &Bench, tag: &str, rate: f64) -> RateResult {
    let (duration, drain, ticks) = (bench.duration, bench.drain, bench.ticks);
    let (target, arrivals, processes) = (
        bench.target.clone(),
        bench.arrivals.clone(),
        &bench.processes,
    );
    let count = (rate * duration as f64).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(200);
    let due = move |i: usize| start + interval.mul_f64(i as f64);
    // Per event: its ack latency (ms from the scheduled time) and status.
    let acks: Arc<Mutex<HashMap<usize, (f64, u16)>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let acked_ok = Arc::new(AtomicU64::new(0));
    let arrived_before = arrivals.total.load(Ordering::Relaxed);
    let mut not_sent = 0;
    let statements_before = match &bench.statements {
        Some(db) => statements_so_far(db).await,
        None => None,
    };
    let before = snapshot(processes, ticks);

    // The backlog (acknowledged, not yet in the CRM) once a second.
    let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = {
        let (acked_ok, arrivals, samples) = (acked_ok.clone(), arrivals.clone(), samples.clone());
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
    };

    let mut i = 0;
    while i < count {
        let now = Instant::now();
        while i < count && due(i) <= now {
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                not_sent += 1;
                i += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (target, acks, in_flight, acked_ok) = (
                target.clone(),
                acks.clone(),
                in_flight.clone(),
                acked_ok.clone(),
            );
            let scheduled = due(i);
            let n = i;
            let id = format!("evt_{tag}_{n}");
            tokio::spawn(async move {
                let status = target.send(&id, n).await;
                let latency = scheduled.elapsed().as_secs_f64() * 1000.0;
                if status == 200 {
                    acked_ok.fetch_add(1, Ordering::Relaxed);
                }
                acks.lock().unwrap().insert(n, (latency, status));
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            i += 1;
        }
        if i < count {
            tokio::time::sleep_until(due(i).into()).await;
        }
    }
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
    let arrived_of_run = |arrivals: &Arrivals| {
        arrivals
            .seen
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .count()
    };
    // Drain: until every acknowledged event has arrived, or the drain time is up.
    let drain_started = Instant::now();
    while arrived_of_run(&arrivals) < ok.len()
        && drain_started.elapsed() < Duration::from_secs(drain)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late doubles would come within moments.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drain_seconds = (Instant::now().saturating_duration_since(window_end)).as_secs_f64();
    let after = snapshot(processes, ticks);
    let statements_run = match (&bench.statements, statements_before) {
        (Some(db), Some(before)) => statements_so_far(db).await.map(|after| after - before),
        _ => None,
    };
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().unwrap());

    let seen = arrivals.seen.lock().unwrap();
    let mut e2e = Vec::with_capacity(ok.len());
    let mut delivered_in_window = 0;
    let mut lost = 0;
    for n in &ok {
        match seen.get(&format!("{prefix}{n}")) {
            Some((at, _)) => {
                e2e.push(at.saturating_duration_since(due(*n)).as_secs_f64() * 1000.0);
                if *at <= window_end {
                    delivered_in_window += 1;
                }
            }
            None => lost += 1,
        }
    }
    let doubled = seen
        .iter()
        .filter(|(k, (_, c))| k.starts_with(&prefix) && *c > 1)
        .count();
    drop(seen);
    e2e.sort_by(f64::total_cmp);
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
    let delivered = e2e.len().max(1) as f64;
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
        delivery_rate: delivered_in_window as f64 / duration as f64,
        e2e_p50: percentile(&e2e, 0.5),
        e2e_p99: percentile(&e2e, 0.99),
        backlog_mid: mid,
        backlog_end: end,
        drain_seconds,
        lost,
        doubled,
        cpu_ms_per_event: (after.machine - before.machine) * 1000.0 / delivered,
        cpu_lines,
        statements_per_event,
    }
}

/// Closed loop: `clients` senders as fast as acknowledgements come, for `seconds`.
async fn ingest_ceiling(target: Arc<Target>, clients: usize, seconds: u64) -> (f64, usize) {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (target, counter, refused) = (target.clone(), counter.clone(), refused.clone());
            tokio::spawn(async move {
                let mut k = 0;
                while Instant::now() < stop {
                    let id = format!("evt_ingest_{c}_{k}");
                    if target.send(&id, c * 1_000_000 + k).await == 200 {
                        counter.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for h in handles {
        let _ = h.await;
    }
    (
        counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        refused.load(Ordering::Relaxed),
    )
}

/// pgbench: single-row inserts of `bytes` at `clients` concurrency for `seconds`; its TPS.
fn pgbench(database_url: &str, clients: usize, seconds: u64, bytes: usize) -> Option<f64> {
    let url = url::Url::parse(database_url).ok()?;
    let dir = tempfile::tempdir().ok()?;
    let script = dir.path().join("insert.sql");
    std::fs::write(
        &script,
        format!("INSERT INTO bench_ceiling (body) VALUES (repeat('x', {bytes}));\n"),
    )
    .ok()?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(5432).to_string();
    let user = if url.username().is_empty() {
        "postgres".to_string()
    } else {
        url.username().to_string()
    };
    let db = url.path().trim_start_matches('/').to_string();
    let psql = std::process::Command::new("psql")
        .args(["-h", &host, "-p", &port, "-U", &user, "-d", &db, "-q", "-c"])
        .arg("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        .status()
        .ok()?;
    if !psql.success() {
        return None;
    }
    let output = std::process::Command::new("pgbench")
        .args(["-h", &host, "-p", &port, "-U", &user, "-n", "-j", "2"])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&db)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let _ = std::process::Command::new("psql")
        .args(["-h", &host, "-p", &port, "-U", &user, "-d", &db, "-q", "-c"])
        .arg("DROP TABLE IF EXISTS bench_ceiling")
        .status();
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// The chart: end-to-end and ack p99 against what reached the CRM.

fn chart(results: &[RateResult], title: &str) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 50.0, 40.0, 20.0);
    let x_max = results
        .iter()
        .map(|r| r.offered.max(r.delivery_rate))
        .fold(1.0, f64::max)
        * 1.1;
    let y_values: Vec<f64> = results
        .iter()
        .flat_map(|r| [r.e2e_p99, r.ack_p99])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let y_min = y_values.iter().copied().fold(f64::MAX, f64::min).max(0.1) / 2.0;
    let y_max = y_values.iter().copied().fold(1.0, f64::max) * 2.0;
    let x = |v: f64| left + (w - left - right) * v / x_max;
    let y = |v: f64| {
        let f = (v.max(y_min).ln() - y_min.ln()) / (y_max.ln() - y_min.ln());
        h - bottom - (h - bottom - top) * f
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="22" font-size="14">{title}</text>
<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{xl}" text-anchor="middle">events/s that reached the CRM (labels: offered/s)</text>
<text x="16" y="{cy}" transform="rotate(-90 16 {cy})" text-anchor="middle">p99 latency, ms (log)</text>
"#,
        b = h - bottom,
        r = w - right,
        cx = (w + left) / 2.0,
        xl = h - 12.0,
        cy = (h - bottom + top) / 2.0,
    );
    let mut tick = 10f64.powf(y_min.log10().floor());
    while tick <= y_max {
        if tick >= y_min {
            svg += &format!(
                r##"<line x1="{left}" y1="{yy}" x2="{r}" y2="{yy}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{tick}</text>
"##,
                yy = y(tick),
                r = w - right,
                tx = left - 4.0,
                ty = y(tick) + 4.0,
            );
        }
        tick *= 10.0;
    }
    let steps = 5;
    for s in 0..=steps {
        let v = x_max * s as f64 / steps as f64;
        svg += &format!(
            r#"<text x="{xx}" y="{yy}" text-anchor="middle">{v:.0}</text>
"#,
            xx = x(v),
            yy = h - bottom + 16.0
        );
    }
    for (label, color, pick) in [
        ("event → CRM p99", "#c0392b", 0),
        ("acknowledgement p99", "#2471a3", 1),
    ] {
        let points: Vec<(f64, f64, f64)> = results
            .iter()
            .map(|r| {
                let v = if pick == 0 { r.e2e_p99 } else { r.ack_p99 };
                let along = if pick == 0 {
                    r.delivery_rate
                } else {
                    r.ack_rate
                };
                (x(along), y(v), r.offered)
            })
            .filter(|(_, yy, _)| yy.is_finite())
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(a, b, _)| format!("{a:.1},{b:.1}"))
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
"#,
            path.join(" ")
        );
        for (a, b, offered) in &points {
            svg += &format!(
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/><text x="{tx:.1}" y="{ty:.1}" fill="{color}">{offered:.0}</text>
"#,
                tx = a + 5.0,
                ty = b - 5.0
            );
        }
        let ly = if pick == 0 { top + 8.0 } else { top + 24.0 };
        svg += &format!(
            r#"<rect x="{lx}" y="{ry}" width="12" height="3" fill="{color}"/><text x="{tx}" y="{ty}">{label}</text>
"#,
            lx = w - right - 190.0,
            ry = ly - 4.0,
            tx = w - right - 172.0,
            ty = ly
        );
    }
    svg + "</svg>\n"
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let o = options();
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let (api_bin, worker_bin) = (bin_dir.join("api"), bin_dir.join("worker"));
    if !api_bin.exists() || (o.workers > 0 && !worker_bin.exists()) {
        eprintln!(
            "{} (and worker) not built: cargo build --release -p api -p worker -p tributary-tests",
            api_bin.display()
        );
        std::process::exit(2);
    }
    let ticks = clock_ticks();
    let dir = tempfile::tempdir().unwrap();
    let arrivals = Arc::new(Arrivals::default());
    let (crm_url, crm) = start_crm(arrivals.clone()).await;

    // The database: a fresh one per run.
    let base = std::env::var("TRIBUTARY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let database_url = if o.backend == "sqlite" {
        format!("sqlite://{}/bench.db?mode=rwc", dir.path().display())
    } else {
        let name = format!("bench_{run_id}");
        let admin = sea_orm::Database::connect(&base)
            .await
            .expect("TRIBUTARY_TEST_DATABASE_URL: Postgres");
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&format!("/{name}"));
        url.to_string()
    };

    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TRIBUTARY_") && !k.starts_with("TRIBUTARY_TEST_"))
        .collect();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v.into()));
        }
    };
    for (k, v) in [
        ("DATABASE_URL", database_url.as_str()),
        ("RUST_LOG", "warn"),
        ("TRIBUTARY_LISTEN", &format!("127.0.0.1:{port}")),
        ("TRIBUTARY_PUBLIC_URL", &public),
        ("TRIBUTARY_DATA_DIR", &dir.path().display().to_string()),
        // The fake CRM listens on loopback.
        ("TRIBUTARY_VENDOR_URLS", "any"),
        // One account is offered far more than the default per-account webhook rate.
        ("TRIBUTARY_WEBHOOK_RATE", "1000000/second"),
        (
            "TRIBUTARY_EMBEDDED_WORKER",
            if o.workers == 0 { "true" } else { "false" },
        ),
        ("TRIBUTARY_METRICS_TOKEN", "bench-metrics-token"),
    ] {
        set(&mut env, k, v);
    }
    if o.backend == "redis" {
        let redis = std::env::var("TRIBUTARY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        set(&mut env, "TRIBUTARY_QUEUE_URL", &redis);
        set(
            &mut env,
            "TRIBUTARY_QUEUE_NAMESPACE",
            &format!("bench{run_id}"),
        );
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let api_log = dir.path().join("api.log");
    let api = spawn(&api_bin, &env, &api_log);
    wait_ready(&client, &format!("{public}/readyz"), "the api", &api_log).await;
    let mut workers = Vec::new();
    for i in 0..o.workers {
        let mut worker_env = env.clone();
        let probe = free_port();
        worker_env.retain(|(k, _)| k != "TRIBUTARY_WORKER_LISTEN");
        worker_env.push((
            "TRIBUTARY_WORKER_LISTEN".into(),
            format!("127.0.0.1:{probe}"),
        ));
        let log = dir.path().join(format!("worker{i}.log"));
        workers.push(spawn(&worker_bin, &worker_env, &log));
        wait_ready(
            &client,
            &format!("http://127.0.0.1:{probe}/readyz"),
            "a worker",
            &log,
        )
        .await;
    }
    let processes = Processes { api, workers };

    // A tenant: an http connection to the fake CRM, a Stripe account, one flow.
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut r = client.post(format!("{public}{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let path = path.to_string();
        async move {
            let r = r.send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{path}: {status} {body}");
            body
        }
    };
    let signed_up = post(
        "/v1/signup",
        None,
        json!({"tenant_name": "Bench", "email": format!("bench{run_id}@load.test"), "password": "a bench password"}),
    )
    .await;
    let token = signed_up["access_token"].as_str().unwrap().to_string();
    let connection = post(
        "/v1/connections",
        Some(&token),
        json!({"name": "CRM", "provider": "http", "settings": {"base_url": crm_url}}),
    )
    .await;
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let account = post(
        "/v1/stripe-accounts",
        Some(&token),
        json!({"name": "Stripe", "webhook_secret": secret}),
    )
    .await;
    post(
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
    let target = Arc::new(Target {
        client: client.clone(),
        url: account["webhook_url"].as_str().unwrap().to_string(),
        secret,
    });
    let size = serde_json::to_vec(&event("evt_size", 1)).unwrap().len();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let concurrency =
        std::env::var("TRIBUTARY_WORKER_CONCURRENCY").unwrap_or_else(|_| "default".into());
    let header = format!(
        "backend {}, {}, event {size} bytes, worker concurrency {concurrency}, commit {commit}, {} s a rate",
        o.backend,
        if o.workers == 0 {
            "embedded worker".to_string()
        } else {
            format!("{} worker process(es)", o.workers)
        },
        o.duration
    );
    println!("{header}");

    // The physical ceiling first, while the processes are idle: pgbench on the same server.
    let pg = if o.backend == "sqlite" {
        None
    } else {
        pgbench(&database_url, o.ingest_clients, 10, size)
    };

    // Unloaded: one event at a time.
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
    let unloaded_line = format!(
        "unloaded event → CRM (50 events one at a time): p50 {:.1} ms, p99 {:.1} ms",
        percentile(&unloaded, 0.5),
        percentile(&unloaded, 0.99)
    );
    println!("{unloaded_line}");

    // On Postgres: the statistics autovacuum gathers within its first minute on any install
    // (its naptime), gathered now, so the rates measure the steady state, not the query plans
    // of empty tables; and pg_stat_statements, when the server loads it, to count statements.
    let statements = if o.backend == "sqlite" {
        None
    } else {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&database_url).await.unwrap();
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
    };

    let bench = Bench {
        statements,
        target: target.clone(),
        arrivals: arrivals.clone(),
        processes,
        ticks,
        duration: o.duration,
        drain: o.drain,
    };
    let mut results = Vec::new();
    for (k, rate) in o.rates.iter().enumerate() {
        let r = run_rate(&bench, &format!("r{k}"), *rate).await;
        println!(
            "offered {:>6.0}/s (sent {:>6.0}/s): acked {:>6.0}/s (p50 {:>6.1} ms, p99 {:>7.1} ms), reached the CRM {:>6.0}/s in the window, \
             event→CRM p50 {:>7.1} ms p99 {:>8.1} ms, backlog mid/end {}/{}, drained {:.1} s after, \
             not arrived {}, doubled {}, shed {}, failed {}, not sent {}, {:.2} ms CPU per event{}",
            r.offered,
            r.sent_rate,
            r.ack_rate,
            r.ack_p50,
            r.ack_p99,
            r.delivery_rate,
            r.e2e_p50,
            r.e2e_p99,
            r.backlog_mid,
            r.backlog_end,
            r.drain_seconds,
            r.lost,
            r.doubled,
            r.shed,
            r.failed,
            r.not_sent,
            r.cpu_ms_per_event,
            r.statements_per_event
                .map(|n| format!(", {n:.1} SQL statements per event"))
                .unwrap_or_default()
        );
        let cpu: Vec<String> = r
            .cpu_lines
            .iter()
            .map(|(n, s)| format!("{n} {s:.1} s"))
            .collect();
        println!("    CPU: {}", cpu.join(", "));
        results.push(r);
    }

    // Ingest alone as fast as it goes, against the pgbench ceiling.
    let (ingest, refused) = ingest_ceiling(target.clone(), o.ingest_clients, 10).await;
    let ceiling_line = match pg {
        Some(tps) => format!(
            "ingest, {} closed-loop senders: {ingest:.0} events/s ({refused} refused); pgbench, {} clients, one {size}-byte row per transaction: {tps:.0} tps; ratio {:.2}",
            o.ingest_clients,
            o.ingest_clients,
            ingest / tps
        ),
        None => format!(
            "ingest, {} closed-loop senders: {ingest:.0} events/s ({refused} refused)",
            o.ingest_clients
        ),
    };
    println!("{ceiling_line}");
    let memory: Vec<String> = bench
        .processes
        .pids()
        .into_iter()
        .map(|(n, pid)| {
            format!(
                "{n} peak {:.0} MiB (now {:.0} MiB)",
                memory_mib(pid, "VmHWM"),
                memory_mib(pid, "VmRSS")
            )
        })
        .collect();
    let memory_line = format!("memory: {}", memory.join(", "));
    println!("{memory_line}");

    // The report and the chart.
    std::fs::create_dir_all(&o.out).unwrap();
    let mut md = format!(
        "{header}\n\n{unloaded_line}\n\n| offered/s | acked/s | ack p99 ms | reached CRM/s | event→CRM p50 ms | p99 ms | backlog mid/end | not arrived | doubled | shed | CPU ms/event | SQL/event |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in &results {
        md += &format!(
            "| {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {}/{} | {} | {} | {} | {:.2} | {} |\n",
            r.offered,
            r.ack_rate,
            r.ack_p99,
            r.delivery_rate,
            r.e2e_p50,
            r.e2e_p99,
            r.backlog_mid,
            r.backlog_end,
            r.lost,
            r.doubled,
            r.shed,
            r.cpu_ms_per_event,
            r.statements_per_event
                .map(|n| format!("{n:.1}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    md += &format!("\n{ceiling_line}\n\n{memory_line}\n");
    std::fs::write(o.out.join("e2e.md"), md).unwrap();
    std::fs::write(
        o.out.join("e2e.svg"),
        chart(&results, &format!("Tributary end to end — {header}")),
    )
    .unwrap();
    println!(
        "wrote {} and {}",
        o.out.join("e2e.md").display(),
        o.out.join("e2e.svg").display()
    );
    let lost: usize = results.iter().map(|r| r.lost).sum();
    let doubled: usize = results.iter().map(|r| r.doubled).sum();
    crm.stop(false).await;
    drop(bench);
    if o.backend != "sqlite" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(admin) = sea_orm::Database::connect(&base).await {
            use sea_orm::ConnectionTrait;
            let name = format!("bench_{run_id}");
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
    if lost > 0 || doubled > 0 {
        eprintln!("{lost} acknowledged events never reached the CRM, {doubled} reached it twice");
        std::process::exit(1);
    }
}
