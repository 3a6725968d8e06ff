//! The Redis queue under a flood. Lua in Redis cannot move more than about 8,000 values in
//! one call, and apalis-redis's fetch moves every due scheduled job in one; so a backlog
//! pushed at once, or thousands of retries due in the same second, would stop the queue for
//! every tenant. Nothing a tenant sends may do that.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{Backend, TestApp, WorkerProcess, backends, charge_event, wait_for};
use tributary_worker::queue::{ProcessEvent, Queue, lane_name, priority};

/// Jobs of events that do not exist: each costs a worker one lookup.
fn ghosts(from: usize, count: usize) -> Vec<ProcessEvent> {
    (from..from + count)
        .map(|i| ProcessEvent {
            event_id: format!("evt_gone_{i}"),
            priority: priority::LIVE,
        })
        .collect()
}

#[tokio::test]
async fn thirteen_thousand_jobs_due_at_once_do_not_stop_the_redis_queue() {
    if !backends().contains(&Backend::PostgresRedis) {
        return;
    }
    let vars = [("TRIBUTARY_EMBEDDED_WORKER", "false")];
    let app = TestApp::spawn_with(Backend::PostgresRedis, &vars).await;
    let cleanup = app.cleanup_handle();
    let p = app.pipeline(json!({})).await;
    app.contact_flow(&p, json!({"name": "{{ object.billing_details.name }}"}))
        .await;

    // In the live lane, ahead of the event below: 2,000 jobs due now, 2,000 due in a
    // second, and 9,000 left in apalis's own scheduled set, due now, as a version before
    // this one queued every job.
    let queue = Queue::connect(&app.settings, &app.db).await.unwrap();
    queue.push_many(ghosts(0, 2_000)).await.unwrap();
    let later = ghosts(2_000, 2_000)
        .into_iter()
        .map(|job| (job, Some(std::time::Duration::from_secs(1))))
        .collect();
    queue.push_all(later).await.unwrap();
    let lane = lane_name(&app.settings.queue_namespace, priority::LIVE as usize);
    let redis_url = app.settings.queue_url.clone().unwrap();
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    for chunk in ghosts(4_000, 9_000).chunks(1_000) {
        let mut pipe = redis::pipe();
        for job in chunk {
            let id = uuid::Uuid::new_v4().simple().to_string();
            pipe.hset(
                format!("{lane}:data"),
                &id,
                serde_json::to_vec(job).unwrap(),
            )
            .hset_multiple(
                format!("{lane}:meta:{id}"),
                &[
                    ("attempts", "0"),
                    ("max_attempts", "5"),
                    ("status", "Pending"),
                ],
            )
            .zadd(format!("{lane}:scheduled"), &id, now);
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
    }

    // Then a live charge.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let event = charge_event(
        &format!("evt_{tag}"),
        &format!("ch_{tag}"),
        "flood@example.com",
        "After The Flood",
        100,
        now,
    );
    let sent = app.send_event(&p, &event).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);

    let mut settings = app.settings.clone();
    settings.worker_concurrency = 32;
    let worker = WorkerProcess::start(settings);
    let token = &p.tenant.token;
    let records = wait_for(180, "the live charge reached the CRM", || async {
        let records = app.records(token, &p.connection_id, "contacts").await;
        (!records.is_empty()).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["fields"]["name"], "After The Flood",
        "{records:?}"
    );

    // Every job was taken, and Redis forgets each once done: nothing of the 13,000 is kept.
    wait_for(
        120,
        "the lane emptied and its finished jobs forgotten",
        || {
            let mut conn = conn.clone();
            let lane = lane.clone();
            async move {
                let (active, scheduled, delayed, data, done): (u64, u64, u64, u64, u64) =
                    redis::pipe()
                        .llen(format!("{lane}:active"))
                        .zcard(format!("{lane}:scheduled"))
                        .zcard(format!("{lane}:delayed"))
                        .hlen(format!("{lane}:data"))
                        .scard(format!("{lane}:done"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                (active + scheduled + delayed + data + done == 0).then_some(())
            }
        },
    )
    .await;
    worker.kill();
    cleanup.run().await;
}

/// The sweeper pushes again an event whose job seems lost; behind a backlog every event seems
/// so, and pushing them again would grow the very backlog they wait behind.
#[tokio::test]
async fn the_sweeper_does_not_push_a_draining_backlog_again() {
    for backend in backends() {
        let vars = [
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
            ("TRIBUTARY_SWEEP_GRACE", "1s"),
        ];
        let app = TestApp::spawn_with(backend, &vars).await;
        let cleanup = app.cleanup_handle();
        let p = app.pipeline(json!({})).await;
        app.contact_flow(&p, json!({"name": "{{ object.billing_details.name }}"}))
            .await;
        let queue = Queue::connect(&app.settings, &app.db).await.unwrap();
        queue.push_many(ghosts(0, 600)).await.unwrap();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let event = charge_event(
            &format!("evt_{tag}"),
            &format!("ch_{tag}"),
            "behind@example.com",
            "Behind A Backlog",
            100,
            chrono::Utc::now().timestamp(),
        );
        let sent = app.send_event(&p, &event).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        wait_for(10, "the charge's job queued", || async {
            (queue.waiting(10_000).await.unwrap() == 601).then_some(())
        })
        .await;

        // Three sweeps after the charge is overdue (grace 1 s, a sweep a second).
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        assert_eq!(
            queue.waiting(10_000).await.unwrap(),
            601,
            "{backend:?}: the sweeper pushed jobs again behind a backlog"
        );

        // The backlog drains, and the charge reaches the CRM once.
        let worker = WorkerProcess::start(app.settings.clone());
        let token = &p.tenant.token;
        let id = sent.str("/event_id");
        let done = app.finished_event(token, &id).await;
        assert_eq!(done["status"], "processed", "{backend:?}: {done}");
        let records = app.records(token, &p.connection_id, "contacts").await;
        assert_eq!(records.len(), 1, "{backend:?}: {records:?}");
        worker.kill();
        cleanup.run().await;
    }
}
