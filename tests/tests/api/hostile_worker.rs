//! A hostile or broken tenant cannot stop the worker for everyone: absurd vendor numbers are
//! clamped, a panicking job is dead-lettered without killing its consumer, readiness tells
//! when a part of the worker stopped, and the sweeper runs under a lease.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A sandbox tenant with one upsert per charge; `company` is rendered into a field.
async fn sandbox_tenant(app: &TestApp) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    let flow = json!({
        "name": "Charges to the sandbox",
        "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email | lower }}"},
                   "fields": {"company": "{{ object.metadata.company }}"}}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

async fn hubspot_tenant(app: &TestApp, fake: &FakeHubSpot, auth: Value) -> Pipeline {
    for (object, name, unique) in [
        ("contacts", "stripe_customer_id", false),
        ("contacts", "last_charge_amount", false),
        ("contacts", "last_charge_receipt", false),
        ("deals", "stripe_charge_id", true),
    ] {
        fake.define_property(object, name, unique);
    }
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot", "auth": auth,
            "settings": {"base_url": fake.base_url,
                         "token_url": format!("{}/oauth/v1/token", fake.base_url)}
        }))
        .await;
    app.flow_from_template(&p, "hubspot-contact-and-deal").await;
    p
}

fn charge(n: &str) -> Value {
    charge_event(
        &format!("evt_{n}"),
        &format!("ch_{n}"),
        &format!("{n}@example.com"),
        "Pat Example",
        1200,
        now(),
    )
}

/// The event as the API shows it.
async fn event(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/v1/events/{id}"), token).await.body
}

#[tokio::test]
async fn a_huge_retry_after_holds_one_tenant_for_a_day_and_nobody_else() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        // Tenant A's CRM answers every call with 429 and a Retry-After of three million years.
        fake.throttle(usize::MAX, 100_000_000_000_000);
        let a = hubspot_tenant(
            &app,
            &fake,
            json!({"type": "token", "token": hubspot::PRIVATE_APP_TOKEN}),
        )
        .await;
        let b = sandbox_tenant(&app).await;

        let sent = app.send_event(&a, &charge("a1")).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let a_event = sent.str("/event_id");
        let held = wait_for(15, "tenant A's delivery to be held", || async {
            let e = event(&app, &a.tenant.token, &a_event).await;
            let d = e["deliveries"][0].clone();
            (d["status"] == "retrying" && d["error"]["kind"] == "rate_limited").then_some(d)
        })
        .await;

        // Tenant B's events still reach their CRM within seconds.
        for n in ["b1", "b2"] {
            let started = std::time::Instant::now();
            let done = app.deliver(&b, &charge(n)).await;
            assert_eq!(done["status"], "processed", "{done}");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
        assert_eq!(
            app.records(&b.tenant.token, &b.connection_id, "contacts")
                .await
                .len(),
            2
        );

        // A's hold is cut to a day, and the delivery says so.
        let until: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(held["next_attempt_at"].clone()).expect("a retry time");
        let day = chrono::Duration::days(1);
        assert!(until <= chrono::Utc::now() + day, "{held}");
        assert!(
            until >= chrono::Utc::now() + day - chrono::Duration::minutes(5),
            "{held}"
        );
        let warnings = held["warnings"].to_string();
        assert!(warnings.contains("100000000000000"), "{held}");
        assert!(warnings.contains("maximum hold"), "{held}");
        let connection = app.connection(&a).await;
        assert_eq!(connection["status"], "active", "{connection}");
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_huge_token_lifetime_does_not_crash_processing() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        fake.set_access_token_ttl(i64::MAX);
        let refresh_token = fake.issue_refresh_token();
        let a = hubspot_tenant(
            &app,
            &fake,
            json!({"type": "refresh_token", "client_id": hubspot::CLIENT_ID,
                   "client_secret": hubspot::CLIENT_SECRET, "refresh_token": refresh_token}),
        )
        .await;
        let b = sandbox_tenant(&app).await;

        let done = app.deliver(&a, &charge("t1")).await;
        assert_eq!(done["status"], "processed", "{done}");
        // The worker is still there for the next event, and for everyone else.
        let again = app.deliver(&a, &charge("t2")).await;
        assert_eq!(again["status"], "processed", "{again}");
        let other = app.deliver(&b, &charge("t3")).await;
        assert_eq!(other["status"], "processed", "{other}");
        assert_eq!(fake.records("contacts").len(), 2);
        fake.stop().await;
    })
    .await;
}

/// Runs `test` on every backend with the test-only fault hooks on.
async fn with_faults<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in tributary_tests::backends() {
        let app = TestApp::spawn_with(backend, &[("TRIBUTARY_TEST_FAULTS", "true")]).await;
        let cleanup = app.cleanup_handle();
        test(app).await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_panicking_job_is_dead_lettered_and_the_consumer_goes_on() {
    with_faults(|app| async move {
        let p = sandbox_tenant(&app).await;
        let token = &p.tenant.token;
        let mut bomb = charge("p1");
        bomb["data"]["object"]["metadata"]["company"] =
            json!(tributary_worker::faults::PANIC_MARKER);

        let failed = app.deliver(&p, &bomb).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        let delivery = &failed["deliveries"][0];
        assert_eq!(delivery["status"], "dead", "{delivery}");
        assert_eq!(delivery["reason"], "panic", "{delivery}");
        assert_eq!(delivery["error"]["kind"], "permanent", "{delivery}");
        let message = delivery["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("panicked on purpose"), "{delivery}");

        // More events than job slots, after the panic: every one is processed.
        for n in 0..6 {
            let done = app.deliver(&p, &charge(&format!("p2_{n}"))).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        assert_eq!(
            app.records(token, &p.connection_id, "contacts").await.len(),
            6
        );
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn readiness_names_a_part_of_the_worker_that_stopped() {
    with_faults(|app| async move {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);

        std::fs::write(app.settings.data_dir.join("test-fault-sweeper"), b"").unwrap();
        let body = wait_for(10, "readiness to fail", || async {
            let reply = app.client.get(app.url("/readyz")).send().await.unwrap();
            (reply.status() == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(())
                .map(|_| reply)
        })
        .await
        .text()
        .await
        .unwrap();
        assert!(body.contains("sweeper stopped"), "{body}");
        assert!(body.contains("panicked"), "{body}");
    })
    .await;
}

#[tokio::test]
async fn the_sweeper_runs_under_a_lease_one_process_at_a_time() {
    each_backend(|app| async move {
        use sea_orm::{ConnectionTrait, Statement};
        // The app's own sweeper takes the lease on its first round.
        let holder = wait_for(10, "the sweeper's lease", || async {
            app.db
                .query_one_raw(Statement::from_string(
                    app.db.get_database_backend(),
                    "SELECT holder FROM leases WHERE name = 'sweeper'",
                ))
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get::<String>("", "holder").ok())
        })
        .await;
        assert!(!holder.is_empty());
        // Another process cannot take it while it is held; its holder renews it.
        let ttl = std::time::Duration::from_secs(60);
        let lease = tributary_worker::lease::take;
        assert!(
            !lease(&app.db, "sweeper", "another-process", ttl)
                .await
                .unwrap()
        );
        assert!(lease(&app.db, "test", "one", ttl).await.unwrap());
        assert!(!lease(&app.db, "test", "two", ttl).await.unwrap());
        assert!(lease(&app.db, "test", "one", ttl).await.unwrap());
        // Once it runs out, another process takes it over.
        assert!(
            lease(&app.db, "gone", "one", std::time::Duration::ZERO)
                .await
                .unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert!(lease(&app.db, "gone", "two", ttl).await.unwrap());
    })
    .await;
}

/// A flow whose one step calls `url` with no connection of its own.
fn http_call(connection_id: &str, url: &str) -> Value {
    json!({"name": "Call out", "connection_id": connection_id,
           "trigger": {"events": ["charge.succeeded"]},
           "steps": [{"id": "call", "action": "http", "url": url,
                      "fields": {"charge": "{{ object.id }}"}}]})
}

#[tokio::test]
async fn a_429_to_one_tenants_http_step_holds_no_other_tenants() {
    // The server is on 127.0.0.1, so this test opts in to `any` as a development setup would.
    tributary_tests::each_backend_with(&[("TRIBUTARY_VENDOR_URLS", "any")], |app| async move {
        // `/a` answers 429 with a day's Retry-After; `/b` takes the call.
        let server = tributary_fakes::Served::start(|cfg| {
            cfg.route(
                "/a",
                actix_web::web::post().to(|| async {
                    actix_web::HttpResponse::TooManyRequests()
                        .insert_header(("retry-after", "86400"))
                        .finish()
                }),
            )
            .route(
                "/b",
                actix_web::web::post()
                    .to(|| async { actix_web::HttpResponse::Ok().json(json!({"id": "b"})) }),
            );
        });
        let a = app.pipeline(json!({})).await;
        let b = app.pipeline(json!({})).await;
        for (p, path) in [(&a, "a"), (&b, "b")] {
            let url = format!("{}/{path}", server.base_url);
            let made = app
                .post(
                    "/v1/flows",
                    &p.tenant.token,
                    http_call(&p.connection_id, &url),
                )
                .await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        }
        let sent = app.send_event(&a, &charge("held")).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let a_event = sent.str("/event_id");
        wait_for(15, "tenant A's call to be held", || async {
            let e = event(&app, &a.tenant.token, &a_event).await;
            (e["deliveries"][0]["error"]["kind"] == "rate_limited").then_some(())
        })
        .await;

        // Tenant B's http step, to the same server, goes at once.
        let started = std::time::Instant::now();
        let done = app.deliver(&b, &charge("free")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    })
    .await;
}
