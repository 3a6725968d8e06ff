//! Fairness benchmark: tenant B's event → record latency, alone and while tenant A's CRM
//! hangs 30 s on every call with more of A's events queued than the worker has job slots.
//!
//! `cargo run --release -p tributary-tests --bin fairness -- [sqlite|postgres] [events] [share]`
//! Postgres uses `TRIBUTARY_TEST_DATABASE_URL`; `share` is `TRIBUTARY_TENANT_MAX_IN_FLIGHT`
//! (default: half the 8 slots; 8 turns fairness off, for comparison). Prints p50/p99 of both
//! runs and their ratio.

use std::collections::HashMap;
use std::time::Duration;

use entity::{deliveries, events};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use tributary_tests::{Backend, Pipeline, TestApp, charge_event};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A CRM that accepts connections and never answers (the caller's 30 s timeout ends them).
async fn hanging_crm() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(120)).await;
                drop(socket);
            });
        }
    });
    format!("http://{address}")
}

/// Sends `count` charges to `p`, one every 100 ms, tagged `tag`.
async fn send(app: &TestApp, p: &Pipeline, count: usize, tag: &str) {
    for i in 0..count {
        let event = charge_event(
            &format!("evt_{tag}_{i}"),
            &format!("ch_{tag}_{i}"),
            &format!("{tag}{i}@fair.test"),
            "Fair Test",
            1000,
            chrono::Utc::now().timestamp(),
        );
        let sent = app.send_event(p, &event).await;
        assert_eq!(sent.status, 200, "{}", sent.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Event → record latencies (ms) of `tenant`'s succeeded deliveries whose event id has `tag`.
async fn latencies(app: &TestApp, tenant: &str, tag: &str, expected: usize) -> Vec<f64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let received: HashMap<String, (String, chrono::DateTime<chrono::Utc>)> =
            events::Entity::find()
                .filter(events::Column::TenantId.eq(tenant))
                .all(&app.db)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.id, (e.stripe_event_id, e.received_at)))
                .collect();
        let mut samples: Vec<f64> = deliveries::Entity::find()
            .filter(deliveries::Column::TenantId.eq(tenant))
            .filter(deliveries::Column::Status.eq("succeeded"))
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|d| {
                let (stripe_id, at) = received.get(&d.event_id)?;
                stripe_id
                    .contains(&format!("_{tag}_"))
                    .then(|| (d.updated_at - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
            })
            .collect();
        if samples.len() >= expected || std::time::Instant::now() > deadline {
            samples.sort_by(f64::total_cmp);
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.get(1).map(String::as_str) {
        Some("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let share = args.get(3).cloned().unwrap_or_else(|| "4".into());
    let app = TestApp::spawn_full(
        backend,
        &[
            ("RUST_LOG", "warn"),
            ("TRIBUTARY_WORKER_CONCURRENCY", "8"),
            ("TRIBUTARY_TENANT_MAX_IN_FLIGHT", &share),
            ("TRIBUTARY_VENDOR_URLS", "any"),
        ],
        None,
    )
    .await;
    let cleanup = app.cleanup_handle();

    let b = app.pipeline(json!({})).await;
    let flow = json!({"name": "b", "connection_id": b.connection_id, "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email }}"}, "fields": {"n": "{{ object.amount }}"}}]});
    assert_eq!(
        app.post("/v1/flows", &b.tenant.token, flow).await.status,
        201
    );

    let crm = hanging_crm().await;
    let a = app
        .pipeline_with(
            json!({"name": "Hangs", "provider": "http", "auth": {"type": "none"},
                              "settings": {"base_url": crm, "timeout_seconds": 30}}),
        )
        .await;
    let flow = json!({"name": "a", "connection_id": a.connection_id, "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "customer", "action": "create", "object": "customers", "fields": {"x": "{{ object.id }}"}}]});
    let created = app.post("/v1/flows", &a.tenant.token, flow).await;
    assert_eq!(created.status, 201, "{}", created.text);
    println!(
        "backend: {backend:?}, concurrency 8, tenant share {}",
        app.settings.tenant_max_in_flight
    );

    send(&app, &b, count, "alone").await;
    let alone = latencies(&app, &b.tenant.id, "alone", count).await;
    println!(
        "tenant B alone ({} events): p50 {:.1} ms, p99 {:.1} ms",
        alone.len(),
        percentile(&alone, 0.5),
        percentile(&alone, 0.99)
    );

    // Twice as many of A's events as there are job slots, each hanging 30 s at its CRM.
    for i in 0..16 {
        let event = charge_event(
            &format!("evt_hang_{i}"),
            &format!("ch_hang_{i}"),
            &format!("hang{i}@fair.test"),
            "Hang",
            1000,
            chrono::Utc::now().timestamp(),
        );
        assert_eq!(app.send_event(&a, &event).await.status, 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(&app, &b, count, "loaded").await;
    let loaded = latencies(&app, &b.tenant.id, "loaded", count).await;
    println!(
        "tenant B while A's CRM hangs ({} events): p50 {:.1} ms, p99 {:.1} ms",
        loaded.len(),
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.99)
    );
    println!(
        "p99 loaded / alone: {:.2}",
        percentile(&loaded, 0.99) / percentile(&alone, 0.99)
    );
    cleanup.run().await;
}
