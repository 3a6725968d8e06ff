//! Priority benchmark: a backfill of many events (50,000 by default) for one tenant, stored and
//! queued before any worker runs, then delivered by worker processes of their own to the
//! sandbox CRM; once a tenth of it is in the CRM, a live `charge.failed` webhook comes in. Reports how long that failed payment took from its
//! webhook to its record in the CRM, how many backfilled events were still waiting then, and
//! the backlog's own rate end to end, beside the database's ceiling in the same run (`pgbench`
//! inserting 2 KB rows from 32 clients for 10 s; Postgres and Redis only).
//!
//! `cargo run --release -p tributary-tests --bin backfill -- [sqlite|postgres|redis]
//! [events] [workers] [concurrency]` (defaults: postgres, 50000, 2, 32). Postgres and Redis use
//! `TRIBUTARY_TEST_DATABASE_URL` and `TRIBUTARY_TEST_REDIS_URL`.

use std::time::{Duration, Instant};

use entity::events;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use tributary_fakes::stripe::{FakeStripe, SECRET_KEY};
use tributary_tests::bench::{self, arg};
use tributary_tests::{Backend, TestApp, WorkerProcess, charge_event};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let backend = bench::backend(&args);
    let count: usize = arg(&args, 2, 50_000);
    let workers: usize = arg(&args, 3, 2);
    let concurrency: usize = arg(&args, 4, 32);

    let fake = FakeStripe::start();
    let app = TestApp::spawn_full(
        backend,
        &[
            ("RUST_LOG", "warn"),
            ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
            // The api stores and queues; the worker processes deliver.
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
        ],
        None,
    )
    .await;
    let cleanup = app.cleanup_handle();
    let p = app.pipeline(json!({})).await;
    let token = &p.tenant.token;
    app.use_stripe_key(&p, SECRET_KEY).await;
    app.contact_flow(&p, json!({"name": "{{ object.billing_details.name }}"}))
        .await;
    let failed_flow = json!({"name": "Failed payments", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.failed"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email }}"},
                   "fields": {"payment": "failed"}}]});
    let made = app.post("/v1/flows", token, failed_flow).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);

    // The backfill: every charge in Stripe's event list, stored and queued by the api.
    let start = chrono::Utc::now().timestamp() - 86_000;
    add_charges(&fake, count, start);
    let stored_at = Instant::now();
    let path = format!("/v1/stripe-accounts/{}/backfills", p.account_id);
    let created = app.post(&path, token, json!({"since": start - 60})).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    let id = created.str("/id");

    // Every event stored and queued before a worker runs: the backlog is all ahead of the
    // failed payment.
    let deadline = Instant::now() + Duration::from_secs(3600);
    finished(&app, token, &format!("{path}/{id}"), deadline).await;
    let stored_in = stored_at.elapsed();
    let workers_at = Instant::now();
    let mut settings = app.settings.clone();
    settings.worker_concurrency = concurrency;
    let processes: Vec<WorkerProcess> = (0..workers)
        .map(|_| WorkerProcess::start(settings.clone()))
        .collect();
    let processed = || async {
        events::Entity::find()
            .filter(events::Column::TenantId.eq(p.tenant.id.as_str()))
            .filter(events::Column::Status.eq("processed"))
            .count(&app.db)
            .await
            .unwrap() as usize
    };
    while processed().await < count / 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The live failed payment, in the middle of the backlog.
    let mut failed = charge_event(
        "evt_live_failed",
        "ch_live_failed",
        "failed@live.test",
        "Live",
        100,
        chrono::Utc::now().timestamp(),
    );
    failed["type"] = json!("charge.failed");
    let sent_at = Instant::now();
    let sent = app.send_event(&p, &failed).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    let event_id = sent.str("/event_id");
    let waiting_then = count.saturating_sub(processed().await);
    // Within 20 s, or the bench fails with the logs' warnings.
    let arrived = app.finished_event(token, &event_id).await;
    let latency = sent_at.elapsed();
    assert_eq!(arrived["status"], "processed", "{arrived}");

    while processed().await < count + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = workers_at.elapsed();
    for process in processes {
        process.kill();
    }
    let backfill = app.get(&format!("{path}/{id}"), token).await;
    let done = processed().await;
    let ceiling = (backend != Backend::Sqlite)
        .then(|| bench::pgbench(&app.settings.database_url, 32, 10, 2000))
        .flatten()
        .map_or("n/a".to_string(), |tps| format!("{tps:.0} rows/s"));
    println!(
        "| backend | backfilled events | worker processes × jobs | backlog waiting when the failed payment came | failed payment: webhook → CRM | events processed | backlog rate end to end | pgbench ceiling | backfill stored in | workers ran |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {backend:?} | {count} | {workers} × {concurrency} | {waiting_then} | {:.2} s | {done} of {} (backfill {}) | {:.0} events/s | {ceiling} | {:.1} s | {:.1} s |",
        latency.as_secs_f64(),
        count + 1,
        backfill.body["status"],
        done as f64 / elapsed.as_secs_f64(),
        stored_in.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    cleanup.run().await;
    fake.stop().await;
}

/// `count` charges in the fake Stripe's event list, a hundred a second from `start`.
fn add_charges(fake: &FakeStripe, count: usize, start: i64) {
    let events = (0..count)
        .map(|i| {
            let created = start + i as i64 / 100;
            let charge = json!({"id": format!("ch_old{i}"), "object": "charge",
                "amount": 100, "currency": "usd", "created": created,
                "livemode": false, "status": "succeeded", "metadata": {},
                "billing_details": {"email": format!("old{i}@backfill.test"), "name": "Old"}});
            FakeStripe::event("charge.succeeded", charge, created)
        })
        .collect();
    fake.add_events(events, false);
}

/// Waits until the backfill at `path` has finished, successfully or not.
async fn finished(app: &TestApp, token: &str, path: &str, deadline: Instant) {
    loop {
        let b = app.get(path, token).await;
        if b.body["status"] != "running" && b.body["status"] != "pending" {
            return;
        }
        assert!(Instant::now() < deadline, "the backfill never finished");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
