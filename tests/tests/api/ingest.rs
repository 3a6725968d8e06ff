//! The inbox under load: webhooks that arrive together share a commit, each is answered only
//! once its event is durable, a duplicate in the same commit is still a duplicate, and past
//! `TRIBUTARY_INGEST_MAX_PENDING` waiting webhooks the answer is an immediate 503 with
//! `Retry-After` and nothing stored.

use entity::{event_keys, events, sandbox_records};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_tests::{
    Backend, Pipeline, TestApp, charge_event, each_backend_with, metric, wait_for,
};

fn charge(n: usize) -> Value {
    charge_event(
        &format!("evt_group_{n}"),
        &format!("ch_group_{n}"),
        &format!("buyer{n}@example.com"),
        "Buyer",
        100 + n as i64,
        chrono::Utc::now().timestamp(),
    )
}

async fn contacts_flow(app: &TestApp, pipeline: &Pipeline) {
    let flow = app
        .post(
            "/v1/flows",
            &pipeline.tenant.token,
            json!({"name": "Contacts", "connection_id": pipeline.connection_id,
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                              "match": {"email": "{{ object.billing_details.email }}"}}]}),
        )
        .await;
    assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
}

async fn stored(app: &TestApp, pipeline: &Pipeline) -> u64 {
    events::Entity::find()
        .filter(events::Column::TenantId.eq(pipeline.tenant.id.as_str()))
        .count(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn webhooks_arriving_together_are_each_stored_once_and_delivered_once() {
    each_backend_with(&[], |app| async move {
        let pipeline = app.pipeline(json!({})).await;
        contacts_flow(&app, &pipeline).await;
        // 40 events, each sent twice at the same moment: 80 requests in flight together.
        let sends = (0..80).map(|i| {
            let app = &app;
            let pipeline = &pipeline;
            async move { (i % 40, app.send_event(pipeline, &charge(i % 40)).await) }
        });
        let replies = futures::future::join_all(sends).await;
        let mut ids: std::collections::HashMap<usize, Vec<(String, bool)>> = Default::default();
        for (n, reply) in &replies {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            ids.entry(*n).or_default().push((
                reply.str("/event_id"),
                reply.body["duplicate"].as_bool().unwrap(),
            ));
        }
        for (n, answers) in &ids {
            assert_eq!(answers.len(), 2);
            assert_eq!(
                answers[0].0, answers[1].0,
                "event {n}: one id for both sends"
            );
            let firsts = answers.iter().filter(|(_, duplicate)| !duplicate).count();
            assert_eq!(
                firsts, 1,
                "event {n}: exactly one send stored it: {answers:?}"
            );
        }
        assert_eq!(stored(&app, &pipeline).await, 40);
        // Their search keys committed with them.
        let keyed = event_keys::Entity::find()
            .filter(event_keys::Column::TenantId.eq(pipeline.tenant.id.as_str()))
            .filter(event_keys::Column::Value.eq("buyer7@example.com"))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(keyed, 1);
        // Every one reaches the CRM, once.
        wait_for(60, "every event processed", || async {
            let done = events::Entity::find()
                .filter(events::Column::TenantId.eq(pipeline.tenant.id.as_str()))
                .filter(events::Column::Status.eq("processed"))
                .count(&app.db)
                .await
                .unwrap();
            (done == 40).then_some(())
        })
        .await;
        let records = sandbox_records::Entity::find()
            .filter(sandbox_records::Column::TenantId.eq(pipeline.tenant.id.as_str()))
            .filter(sandbox_records::Column::Object.eq("contacts"))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(records, 40, "one contact per event, none twice");
    })
    .await;
}

/// Holds the database's write lock (SQLite) or a lock that stops inserts into `events`
/// (Postgres) until the returned transaction ends.
async fn hold_event_writes(app: &TestApp) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let txn = app.db.begin().await.unwrap();
    let lock = match app.backend {
        Backend::Sqlite => "INSERT INTO idempotency_keys SELECT * FROM idempotency_keys WHERE 0",
        _ => "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE",
    };
    txn.execute_unprepared(lock).await.unwrap();
    txn
}

#[tokio::test]
async fn past_the_inbox_bound_a_webhook_is_refused_at_once_with_retry_after() {
    each_backend_with(&[("TRIBUTARY_INGEST_MAX_PENDING", "1")], |app| async move {
        let pipeline = app.pipeline(json!({})).await;
        let held = hold_event_writes(&app).await;
        // The first webhook waits for its commit behind the held lock; the second finds
        // the inbox full. The lock goes only once the second is answered, so an answer at
        // all means it was refused without waiting for a commit.
        let one = charge(1);
        let first = app.send_event(&pipeline, &one);
        let second = async {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while app.inbox.pending() != 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the first webhook never waited for its commit"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let reply = app.send_event(&pipeline, &charge(2)).await;
            held.rollback().await.unwrap();
            reply
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert_eq!(
            second.assert_problem(StatusCode::SERVICE_UNAVAILABLE),
            Vec::<String>::new()
        );
        assert!(
            second.text.contains("TRIBUTARY_INGEST_MAX_PENDING")
                || second.text.contains("waiting to be stored"),
            "{}",
            second.text
        );
        assert!(
            second.headers.get("retry-after").is_some(),
            "a 503 says when to come back"
        );
        // Nothing of the refused one was stored; the first is there once.
        assert_eq!(stored(&app, &pipeline).await, 1);
        // Nothing waits for a commit any more, as the gauge says.
        assert_eq!(app.inbox.pending(), 0);
        assert_eq!(
            metric(&app, "tributary_ingest_pending").await,
            Some(0.0),
            "the gauge is served"
        );
        // Counted as shed.
        let shed = metric(
            &app,
            "tributary_webhooks_total{outcome=\"shed\",reason=\"inbox_full\"}",
        )
        .await
        .unwrap_or(0.0);
        assert!(shed >= 1.0, "{shed}");
        // Stripe's retry of the refused one is taken.
        let again = app.send_event(&pipeline, &charge(2)).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(again.body["duplicate"], json!(false));
        assert_eq!(stored(&app, &pipeline).await, 2);
    })
    .await;
}

#[tokio::test]
async fn a_tenant_far_behind_is_refused_and_other_tenants_are_not() {
    each_backend_with(
        &[
            ("TRIBUTARY_INGEST_MAX_BACKLOG", "3"),
            // Nothing is processed, so what is accepted stays due.
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
        ],
        |app| async move {
            let behind = app.pipeline(json!({})).await;
            let other = app.pipeline(json!({})).await;
            for n in 0..3 {
                let reply = app.send_event(&behind, &charge(n)).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            }
            // The backlogs are counted twice a second.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let refused = app.send_event(&behind, &charge(3)).await;
            assert_eq!(
                refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE),
                Vec::<String>::new()
            );
            assert!(
                refused.text.contains("TRIBUTARY_INGEST_MAX_BACKLOG"),
                "{}",
                refused.text
            );
            assert!(refused.headers.get("retry-after").is_some());
            assert_eq!(stored(&app, &behind).await, 3, "nothing of the refused one");
            // Another tenant's webhooks still go in.
            let reply = app.send_event(&other, &charge(10)).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            let shed = metric(
                &app,
                "tributary_webhooks_total{outcome=\"shed\",reason=\"backlog\"}",
            )
            .await
            .unwrap_or(0.0);
            assert!(shed >= 1.0, "{shed}");
        },
    )
    .await;
}
