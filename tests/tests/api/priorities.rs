//! Priorities: a live payment failure is taken before other live events, and both before a
//! backfill's backlog, however long it is.

use entity::{TenantOwned, events};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::json;
use tributary_fakes::stripe::{FakeStripe, SECRET_KEY};
use tributary_tests::{
    Backend, Pipeline, TestApp, WorkerProcess, backends, charge_event, wait_for,
};

const BACKLOG: i64 = 40;

/// Backfills `BACKLOG` charges from the fake Stripe into `p`'s account, stored and queued.
async fn backfill(app: &TestApp, fake: &FakeStripe, p: &Pipeline, tag: &str) {
    let token = &p.tenant.token;
    let start = chrono::Utc::now().timestamp() - 3_000;
    for i in 0..BACKLOG {
        let charge = json!({"id": format!("ch_{tag}{i}"), "object": "charge",
            "amount": 100, "currency": "usd", "created": start + i, "livemode": false,
            "status": "succeeded", "metadata": {},
            "billing_details": {"email": format!("{tag}{i}@old.example"), "name": "Old"}});
        fake.add_event(
            FakeStripe::event("charge.succeeded", charge, start + i),
            false,
        );
    }
    let path = format!("/v1/stripe-accounts/{}/backfills", p.account_id);
    let created = app.post(&path, token, json!({"since": start - 60})).await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
    let id = created.str("/id");
    let done = wait_for(30, "the backfill stored its events", || async {
        let b = app.get(&format!("{path}/{id}"), token).await;
        matches!(b.body["status"].as_str(), Some("succeeded" | "failed")).then_some(b.body)
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_live_failed_payment_goes_before_a_backfills_backlog() {
    for backend in backends() {
        // A fake of its own per backend, so each backfill sees only its own events.
        let fake = FakeStripe::start();
        let vars = [
            ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
            // The api stores and queues; the worker process started below takes the jobs.
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
        ];
        let app = TestApp::spawn_with(backend, &vars).await;
        let cleanup = app.cleanup_handle();
        {
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

            // A backfill of 40 charges, stored and queued while no worker runs.
            let tag = uuid::Uuid::new_v4().simple().to_string();
            backfill(&app, &fake, &p, &tag).await;

            // Then a live charge, and a live failed payment after it.
            let now = chrono::Utc::now().timestamp();
            let live = charge_event(
                &format!("evt_{tag}live"),
                &format!("ch_{tag}live"),
                "live@new.example",
                "New",
                100,
                now,
            );
            let mut failed = charge_event(
                &format!("evt_{tag}failed"),
                &format!("ch_{tag}failed"),
                "failed@new.example",
                "New",
                100,
                now,
            );
            failed["type"] = json!("charge.failed");
            for event in [&live, &failed] {
                let sent = app.send_event(&p, event).await;
                assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
            }

            // One worker, taking one job at a time.
            let mut settings = app.settings.clone();
            settings.worker_concurrency = 1;
            settings.tenant_max_in_flight = 1;
            let worker = WorkerProcess::start(settings);
            let tenant = p.tenant.id.clone();
            wait_for(120, "every event processed", || {
                let tenant = tenant.clone();
                let app = &app;
                async move {
                    let done = events::Entity::find_in_tenant(&tenant)
                        .filter(events::Column::Status.eq("processed"))
                        .count(&app.db)
                        .await
                        .unwrap();
                    (done == BACKLOG as u64 + 2).then_some(())
                }
            })
            .await;
            worker.kill();

            let order: Vec<(String, i16)> = events::Entity::find_in_tenant(&p.tenant.id)
                .order_by_asc(events::Column::ProcessedAt)
                .all(&app.db)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.stripe_event_id, e.priority))
                .collect();
            assert_eq!(order.len(), BACKLOG as usize + 2);
            let failed = (format!("evt_{tag}failed"), 3);
            let live = (format!("evt_{tag}live"), 2);
            if backend == Backend::PostgresRedis {
                // A list per priority: the worker's one slot goes first to whichever list's job
                // reaches it first, then always to the highest priority waiting. So at most one
                // job of the backlog comes before the two live events.
                let first: Vec<_> = order.iter().take(3).collect();
                assert!(
                    first.contains(&&failed) && first.contains(&&live),
                    "{order:?}"
                );
                let backlog_first = order[0].1 == 0;
                if backlog_first || order[0] == failed {
                    let next = if backlog_first {
                        &order[1..3]
                    } else {
                        &order[..2]
                    };
                    assert_eq!(next, [failed.clone(), live.clone()], "{order:?}");
                }
            } else {
                assert_eq!(
                    order[..2],
                    [failed, live],
                    "the failed payment first, then the live charge, then the backlog: {order:?}"
                );
            }
            assert_eq!(
                order.iter().filter(|(_, priority)| *priority == 0).count(),
                BACKLOG as usize,
                "{order:?}"
            );
        }
        cleanup.run().await;
        fake.stop().await;
    }
}

/// `TRIBUTARY_INGEST_MAX_BACKLOG` refuses a tenant's webhooks while its live events pile up;
/// a backfill's events wait behind live ones and do not count, so a live failed payment is
/// still taken while a large backfill is worked off.
#[tokio::test]
async fn a_backfill_larger_than_the_ingest_bound_does_not_refuse_live_webhooks() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let vars = [
            ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
            ("TRIBUTARY_INGEST_MAX_BACKLOG", "10"),
        ];
        let app = TestApp::spawn_with(backend, &vars).await;
        let cleanup = app.cleanup_handle();
        let p = app.pipeline(json!({})).await;
        app.use_stripe_key(&p, SECRET_KEY).await;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        backfill(&app, &fake, &p, &tag).await;
        // The backlogs are counted twice a second.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let mut failed = charge_event(
            &format!("evt_{tag}failed"),
            &format!("ch_{tag}failed"),
            "failed@new.example",
            "New",
            100,
            chrono::Utc::now().timestamp(),
        );
        failed["type"] = json!("charge.failed");
        let sent = app.send_event(&p, &failed).await;
        assert_eq!(sent.status, StatusCode::OK, "{backend:?}: {}", sent.text);

        // Live events still count: past the bound, the next webhook waits at Stripe.
        for n in 0..10 {
            let event = charge_event(
                &format!("evt_{tag}live{n}"),
                &format!("ch_{tag}live{n}"),
                "live@new.example",
                "New",
                100,
                chrono::Utc::now().timestamp(),
            );
            let sent = app.send_event(&p, &event).await;
            assert_eq!(sent.status, StatusCode::OK, "{backend:?}: {}", sent.text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let event = charge_event(
            &format!("evt_{tag}over"),
            &format!("ch_{tag}over"),
            "over@new.example",
            "New",
            100,
            chrono::Utc::now().timestamp(),
        );
        let refused = app.send_event(&p, &event).await;
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{backend:?}: {}",
            refused.text
        );
        cleanup.run().await;
        fake.stop().await;
    }
}
