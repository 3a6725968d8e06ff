//! Load benchmark: ingest throughput, ack latency at a fixed offered rate, and event → sandbox
//! record latency, against the real app in-process on SQLite or Postgres.
//!
//! `cargo run --release -p tributary-tests --bin load -- [sqlite|postgres] [events] [rate] [ingest-only|login-only]`
//! Postgres uses `TRIBUTARY_TEST_DATABASE_URL`. Figures are printed; only the login timing's
//! bound is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entity::{deliveries, events, login_throttle};
use futures::StreamExt;
use sea_orm::EntityTrait;
use serde_json::json;
use tokio::sync::Semaphore;
use tributary_tests::{Backend, Pipeline, TestApp, charge_event, stripe_signature};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn signed(p: &Pipeline, i: usize, tag: &str) -> (Vec<u8>, String) {
    let event = charge_event(
        &format!("evt_{tag}_{i}"),
        &format!("ch_{tag}_{i}"),
        &format!("u{i}@load.test"),
        "Load Test",
        1000 + i as i64,
        chrono::Utc::now().timestamp(),
    );
    let body = serde_json::to_vec(&event).unwrap();
    let signature = stripe_signature(&body, &p.secret, chrono::Utc::now().timestamp());
    (body, signature)
}

async fn send(app: &TestApp, p: &Pipeline, body: Vec<u8>, signature: String) -> Duration {
    let started = Instant::now();
    let response = app
        .client
        .post(app.url(&p.webhook_path))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .expect("webhook sent");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(1).map(String::as_str) {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let total: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rate: f64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(500.0);
    // `ingest-only`: no embedded worker, as when workers run in their own processes.
    let ingest_only = args.get(4).is_some_and(|a| a == "ingest-only");
    // `login-only`: just the login timing.
    let login_only = args.get(4).is_some_and(|a| a == "login-only");
    let embedded = if ingest_only { "false" } else { "true" };

    let app = TestApp::spawn_full(
        backend,
        &[
            ("RUST_LOG", "warn"),
            ("TRIBUTARY_WORKER_CONCURRENCY", "8"),
            ("TRIBUTARY_EMBEDDED_WORKER", embedded),
            ("TRIBUTARY_VENDOR_URLS", "any"),
            // One account is offered far more than the default per-account webhook rate.
            ("TRIBUTARY_WEBHOOK_RATE", "1000000/second"),
        ],
        None,
    )
    .await;
    let cleanup = app.cleanup_handle();
    let p = app.pipeline(json!({})).await;
    let flow = json!({"name": "load", "connection_id": p.connection_id, "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts", "match": {"email": "{{ object.billing_details.email }}"},
                   "fields": {"amount": "{{ object.amount | major_units(object.currency) }}"}}]});
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, 201, "{}", created.text);
    if login_only {
        println!("backend: {backend:?}, login timing only");
        login_timing(&app, &p.tenant.email).await;
        cleanup.run().await;
        return;
    }
    println!(
        "backend: {backend:?}, events: {total}, offered rate: {rate}/s, embedded worker: {embedded}"
    );

    // 1. Event → record latency, unloaded: one event at a time, measured on the server's clock.
    unloaded_latency(&app, &p, ingest_only).await;

    // 2. Ack latency at a fixed offered rate (open loop: sends start on schedule).
    let app = Arc::new(app);
    let p = Arc::new(p);
    ack_latency(&app, &p, rate).await;

    // 3. Ingest throughput: as fast as 64 concurrent senders go; every 200 is a committed row.
    let permits = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let results = futures::stream::iter(0..total)
        .map(|i| {
            let (app, p, permits) = (app.clone(), p.clone(), permits.clone());
            async move {
                let _permit = permits.acquire_owned().await.unwrap();
                let (body, signature) = signed(&p, i, "burst");
                send(&app, &p, body, signature).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    println!(
        "ingest: {} events in {:.2} s = {:.0} events/s durable",
        results.len(),
        elapsed.as_secs_f64(),
        results.len() as f64 / elapsed.as_secs_f64()
    );
    // 4. Login timing: an unknown email must cost what a wrong password costs.
    login_timing(&app, &p.tenant.email).await;
    cleanup.run().await;
}

/// Event → record latency, unloaded: 50 events one at a time (none with `ingest_only`, where
/// nothing delivers them), timed from receipt to delivery on the server's clock; prints it.
async fn unloaded_latency(app: &TestApp, p: &Pipeline, ingest_only: bool) {
    let samples = if ingest_only { 0 } else { 50 };
    for i in 0..samples {
        let (body, signature) = signed(p, i, "lat");
        send(app, p, body, signature).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        events::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.received_at))
            .collect();
    let mut to_record: Vec<f64> = deliveries::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.status == "succeeded")
        .filter_map(|d| {
            received
                .get(&d.event_id)
                .map(|r| (d.updated_at - *r).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    to_record.sort_by(f64::total_cmp);
    if !ingest_only {
        println!(
            "event→record (unloaded, {} events): p50 {:.1} ms, p99 {:.1} ms",
            to_record.len(),
            percentile(&to_record, 0.5),
            percentile(&to_record, 0.99)
        );
    }
}

/// Ack latency at `rate` events a second for 10 s, open loop (sends start on schedule); prints
/// its percentiles.
async fn ack_latency(app: &Arc<TestApp>, p: &Arc<Pipeline>, rate: f64) {
    let count = (rate * 10.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (app, p) = (app.clone(), p.clone());
        handles.push(tokio::spawn(async move {
            let (body, signature) = signed(&p, i, "rate");
            send(&app, &p, body, signature).await
        }));
    }
    let mut acks: Vec<f64> = Vec::with_capacity(count);
    for handle in handles {
        acks.push(handle.await.unwrap().as_secs_f64() * 1000.0);
    }
    acks.sort_by(f64::total_cmp);
    println!(
        "ack latency at {rate}/s for 10 s ({count} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        acks.last().copied().unwrap_or(f64::NAN)
    );
}

/// Login samples per kind: enough for the mean difference to stand out of the noise.
const LOGIN_SAMPLES: usize = 100;

/// Times refused logins, a wrong password and an unknown email in turn, and prints the mean
/// of the paired differences with its 95 % interval. The throttle's rows are cleared before
/// each attempt, so every one is checked at once (from the 5th failure for an address and
/// email, it would wait). Panics if the difference is beyond a fifth of a refused login's
/// cost by more than its interval, as it is when an unknown email skips the hash.
async fn login_timing(app: &TestApp, email: &str) {
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..LOGIN_SAMPLES {
        for (email, into) in [
            (email.to_string(), &mut wrong),
            (format!("nobody{i}@load.test"), &mut unknown),
        ] {
            login_throttle::Entity::delete_many()
                .exec(&app.db)
                .await
                .unwrap();
            let started = Instant::now();
            let reply = app
                .client
                .post(app.url("/v1/login"))
                .json(&json!({"email": email, "password": "not the password"}))
                .send()
                .await
                .unwrap();
            into.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(reply.status(), 401);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // Each pair ran back to back, so a pair's difference cancels the machine's drifting load.
    let pairs: Vec<f64> = unknown.iter().zip(&wrong).map(|(u, w)| u - w).collect();
    let difference = mean(&pairs);
    let variance =
        pairs.iter().map(|d| (d - difference).powi(2)).sum::<f64>() / (pairs.len() - 1) as f64;
    let half_interval = 1.96 * (variance / pairs.len() as f64).sqrt();
    let bound = mean(&wrong) / 5.0;
    println!(
        "login refused: wrong password {:.1} ms, unknown email {:.1} ms (means of {}); \
         unknown − wrong = {difference:+.1} ± {half_interval:.1} ms (95 %), bound ±{bound:.1} ms",
        mean(&wrong),
        mean(&unknown),
        pairs.len()
    );
    assert!(
        difference.abs() - half_interval <= bound,
        "an unknown email and a wrong password differ by {difference:.1} ± {half_interval:.1} ms"
    );
}
