//! A process killed with SIGKILL mid-run loses nothing: after a restart every acknowledged
//! event is processed exactly once in the sandbox CRM. A process asked to stop with SIGTERM
//! finishes the CRM call in hand before it exits, and sends nothing twice after a restart. A
//! backfill from Stripe killed mid-way resumes where it stopped after a restart.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tributary_tests::TestDatabase;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `case` on every backend at once, each with a database of its own.
async fn on_every_backend<F, Fut>(case: F)
where
    F: Fn(TestDatabase, tempfile::TempDir) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runs = tributary_tests::backends().into_iter().map(|backend| {
        let case = &case;
        async move {
            let dir = tempfile::tempdir().unwrap();
            let db = TestDatabase::create(backend, dir.path()).await;
            case(db.clone(), dir).await;
            db.drop_now().await;
        }
    });
    futures::future::join_all(runs).await;
}

fn start(db: &TestDatabase, dir: &Path, port: u16) -> Child {
    start_with(db, dir, port, &[])
}

fn start_with(db: &TestDatabase, dir: &Path, port: u16, extra: &[(&str, &str)]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .envs(db.env())
        // The fakes listen on 127.0.0.1.
        .env("TRIBUTARY_VENDOR_URLS", "any")
        // The burst below is far over the default per-account webhook rate.
        .env("TRIBUTARY_WEBHOOK_RATE", "100000/second")
        .envs(extra.iter().copied())
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("TRIBUTARY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRIBUTARY_SWEEP_INTERVAL", "500ms")
        .env("TRIBUTARY_SWEEP_GRACE", "2s")
        .env("TRIBUTARY_WORKER_CONCURRENCY", "1")
        .env("TRIBUTARY_SHUTDOWN_GRACE", "20s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the api binary starts");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains("listening") => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the api did not start");
            }
            _ => {}
        }
    }
    // Keep draining the output so the process never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    child
}

fn sign(body: &[u8], secret: &str) -> String {
    let t = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> Value {
    client
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_mid_run_then_restart_processes_every_acknowledged_event_once() {
    on_every_backend(sigkill_mid_run).await;
}

async fn sigkill_mid_run(db: TestDatabase, dir: tempfile::TempDir) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();

    let signup: Value = client
        .post(format!("{base}/v1/signup"))
        .json(&json!({"tenant_name": "Crash", "email": "crash@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["access_token"].as_str().unwrap().to_string();
    let connection = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        &token,
        json!({"name": "S", "provider": "sandbox"}),
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap().to_string();
    let flow = json!({"name": "deals", "connection_id": connection_id, "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "deal", "action": "upsert", "object": "deals", "match": {"charge": "{{ object.id }}"},
                   "fields": {"amount": "{{ object.amount | major_units(object.currency) }}"}},
                  {"id": "note", "action": "create", "object": "notes", "fields": {"charge": "{{ object.id }}", "deal": "{{ steps.deal.id }}"}}]});
    let created = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/flows"),
        &token,
        flow,
    )
    .await;
    assert!(created["id"].is_string(), "{created}");
    let secret = "whsec_crash_test_secret_0001";
    let account = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        &token,
        json!({"name": "S", "webhook_secret": secret}),
    )
    .await;
    let path = account["webhook_url"].as_str().unwrap().replace(&base, "");

    // A burst of events, acknowledged faster than the worker can finish them; then SIGKILL.
    let sends = (0..200).map(|i| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let event = json!({"id": format!("evt_crash_{i}"), "object": "event", "type": "charge.succeeded",
                "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
                "data": {"object": {"id": format!("ch_crash_{i}"), "object": "charge", "amount": 100 + i, "currency": "usd"}}});
            let body = serde_json::to_vec(&event).unwrap();
            let reply = client
                .post(url)
                .header("stripe-signature", sign(&body, secret))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            matches!(reply, Ok(r) if r.status() == 200).then(|| format!("ch_crash_{i}"))
        }
    });
    let acknowledged: Vec<String> = futures::stream::iter(sends)
        .buffer_unordered(16)
        .filter_map(|charge| async move { charge })
        .collect()
        .await;
    // Events not processed yet (received or queued) at the moment of the kill.
    let mut unfinished = 0;
    for status in ["received", "queued"] {
        let page: Value = client
            .get(format!("{base}/v1/events?status={status}&limit=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        unfinished += page["data"].as_array().map_or(0, Vec::len);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        acknowledged.len(),
        200,
        "every event was acknowledged before the kill"
    );
    assert!(
        unfinished > 0,
        "the kill must come mid-run (every event was processed before it)"
    );

    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (deals, notes) = loop {
        let fetch = |object: &'static str| {
            let client = client.clone();
            let url =
                format!("{base}/v1/connections/{connection_id}/records?object={object}&limit=100");
            let token = token.clone();
            async move {
                let mut all = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page_url = match &after {
                        Some(id) => format!("{url}&starting_after={id}"),
                        None => url.clone(),
                    };
                    let page: Value = client
                        .get(page_url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let data = page["data"].as_array().cloned().unwrap_or_default();
                    after = data
                        .last()
                        .and_then(|r| r["id"].as_str())
                        .map(str::to_string);
                    all.extend(data);
                    if page["has_more"] != true {
                        break all;
                    }
                }
            }
        };
        let deals = fetch("deals").await;
        let notes = fetch("notes").await;
        if deals.len() >= acknowledged.len() && notes.len() >= acknowledged.len() {
            break (deals, notes);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "after the restart only {} deals and {} notes of {} acknowledged events",
                deals.len(),
                notes.len(),
                acknowledged.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let any duplicate work surface before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = child.kill();
    let _ = child.wait();

    for (name, records) in [("deals", &deals), ("notes", &notes)] {
        let mut charges: Vec<&str> = records
            .iter()
            .map(|r| r["fields"]["charge"].as_str().unwrap())
            .collect();
        charges.sort();
        let before = charges.len();
        charges.dedup();
        assert_eq!(before, charges.len(), "a {name} record was written twice");
        for charge in &acknowledged {
            assert!(
                charges.contains(&charge.as_str()),
                "{charge} was acknowledged but has no {name} record"
            );
        }
    }
}

/// Charges a CRM received, in order.
type Charges = Arc<Mutex<Vec<String>>>;

#[tokio::test]
async fn sigkill_during_a_crm_write_loses_nothing_and_resends_it_only_after_its_lease() {
    on_every_backend(sigkill_during_a_write).await;
}

/// SIGKILL while the CRM holds a `create`: no acknowledged event is lost, and the write in
/// flight is sent again only once its lease (`timeout_seconds * 8 + 60 s`) has run out. That
/// second send is by design (README, "No duplicates": a `create` whose answer was lost in a
/// crash can be repeated); every other write reaches the CRM exactly once. The lease here is
/// 140 s, so once the restarted process has shown it leaves the delivery alone, the test moves
/// the lease's end into the past in the database, standing in for the wait.
async fn sigkill_during_a_write(db: TestDatabase, dir: tempfile::TempDir) {
    use entity::{deliveries, events};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let crm = tributary_fakes::held::HeldCrm::start(201);
    let charges = |crm: &tributary_fakes::held::HeldCrm| -> Vec<String> {
        crm.received()
            .iter()
            .map(|body| body["charge"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Running(start(&db, dir.path(), port));
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{base}/v1/signup"))
        .json(&json!({"tenant_name": "Held", "email": "held@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["access_token"].as_str().unwrap().to_string();
    let connection = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        &token,
        json!({"name": "Held CRM", "provider": "http",
               "settings": {"base_url": crm.base_url(), "timeout_seconds": 10}}),
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap().to_string();
    let flow = json!({"name": "payments", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "payment", "action": "create", "object": "payments",
                   "fields": {"charge": "{{ object.id }}"}}]});
    let created = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/flows"),
        &token,
        flow,
    )
    .await;
    assert!(created["id"].is_string(), "{created}");
    let secret = "whsec_held_test_secret_0001";
    let account = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        &token,
        json!({"name": "S", "webhook_secret": secret}),
    )
    .await;
    let path = account["webhook_url"].as_str().unwrap().replace(&base, "");
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let charge = format!("ch_held_{i}");
        let event = json!({"id": format!("evt_held_{i}"), "object": "event", "type": "charge.succeeded",
            "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
            "data": {"object": {"id": charge, "object": "charge", "amount": 100, "currency": "usd"}}});
        let body = serde_json::to_vec(&event).unwrap();
        let reply = client
            .post(format!("{base}{path}"))
            .header("stripe-signature", sign(&body, secret))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let reply: Value = reply.json().await.unwrap();
        acknowledged.push((charge, reply["event_id"].as_str().unwrap().to_string()));
    }

    // The CRM holds a write, and the delivery reads as in flight under its lease: SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_flight = loop {
        let first = charges(&crm).first().cloned();
        if let Some(charge) = first {
            break charge;
        }
        assert!(Instant::now() < deadline, "the CRM was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let held_event = acknowledged
        .iter()
        .find(|(charge, _)| *charge == in_flight)
        .map(|(_, id)| id.clone())
        .unwrap();
    let delivery_of = |event_id: String| {
        let (client, token, url) = (
            client.clone(),
            token.clone(),
            format!("{base}/v1/deliveries?event_id={event_id}"),
        );
        async move { get(&client, url, &token).await["data"][0].clone() }
    };
    let delivery = delivery_of(held_event.clone()).await;
    assert_eq!(
        (&delivery["status"], &delivery["reason"]),
        (&json!("retrying"), &json!("in_flight")),
        "{delivery}"
    );
    child.stop();
    assert_eq!(charges(&crm), vec![in_flight.clone()]);

    // Restarted, with the CRM answering again: every other event is sent once, and the write
    // that was in flight is left alone while its lease lasts, though its event has run again.
    let mut child = Running(start(&db, dir.path(), port));
    let client = reqwest::Client::new();
    crm.release();
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let processed = get(
            &client,
            format!("{base}/v1/events?status=processed&limit=100"),
            &token,
        )
        .await;
        let event = get(&client, format!("{base}/v1/events/{held_event}"), &token).await;
        if processed["data"].as_array().map_or(0, Vec::len) >= acknowledged.len() - 1
            && event["runs"].as_i64() >= Some(1)
        {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {processed} {event}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(held["status"], "queued", "{held}");
    let delivery = &held["deliveries"][0];
    assert_eq!(delivery["reason"], "in_flight", "{held}");
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(delivery["next_attempt_at"].as_str().unwrap())
            .unwrap();
    assert!(
        lease_end > chrono::Utc::now() + chrono::Duration::seconds(60),
        "the lease is timeout_seconds * 8 + 60 s from the claim: {held}"
    );
    let mut sent = charges(&crm);
    sent.sort();
    let mut each_once: Vec<String> = acknowledged.iter().map(|(c, _)| c.clone()).collect();
    each_once.sort();
    assert_eq!(
        sent, each_once,
        "each write once; the one in flight not yet again"
    );

    // The lease runs out (moved into the past): the sweeper brings the event back and the
    // write is sent a second time, its only repeat, and the event is processed.
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let ended = chrono::Utc::now() - chrono::Duration::seconds(10);
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            next_attempt_at: Set(Some(ended)),
            ..Default::default()
        })
        .filter(deliveries::Column::Id.eq(delivery["id"].as_str().unwrap()))
        .exec(&conn)
        .await
        .unwrap();
    events::Entity::update_many()
        .set(events::ActiveModel {
            next_run_at: Set(Some(ended)),
            ..Default::default()
        })
        .filter(events::Column::Id.eq(held_event.as_str()))
        .exec(&conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let event = get(&client, format!("{base}/v1/events/{held_event}"), &token).await;
        if event["status"] == "processed" {
            break event;
        }
        assert!(Instant::now() < deadline, "the lease ended: {event}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.stop();
    crm.served.stop().await;
    assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
    assert_eq!(
        done["deliveries"][0]["crm_record_id"],
        format!("rec_{in_flight}")
    );
    let sent = charges(&crm);
    for (charge, _) in &acknowledged {
        let times = sent.iter().filter(|c| *c == charge).count();
        let expected = if *charge == in_flight { 2 } else { 1 };
        assert_eq!(times, expected, "{charge} reached the CRM: {sent:?}");
    }
}

/// A slow REST CRM on a plain socket: each request takes 1.5 s. Records the `charge` of every
/// request it starts and of every answer it finishes writing.
fn slow_crm() -> (u16, Charges, Charges) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started: Charges = Arc::default();
    let finished: Charges = Arc::default();
    let (s, f) = (started.clone(), finished.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (s, f) = (s.clone(), f.clone());
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break String::from_utf8_lossy(&data[end + 4..end + 4 + length])
                                .to_string();
                        }
                    }
                };
                let charge = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["charge"].as_str().map(str::to_string))
                    .unwrap_or_default();
                s.lock().unwrap().push(charge.clone());
                std::thread::sleep(Duration::from_millis(1500));
                let answer = format!("{{\"id\":\"pay_{charge}\"}}");
                let response = format!(
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                if stream.write_all(response.as_bytes()).is_ok() {
                    f.lock().unwrap().push(charge);
                }
            });
        }
    });
    (port, started, finished)
}

#[tokio::test]
async fn sigterm_finishes_the_call_in_hand_and_nothing_is_sent_twice() {
    on_every_backend(sigterm_mid_call).await;
}

async fn sigterm_mid_call(db: TestDatabase, dir: tempfile::TempDir) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (crm_port, started, finished) = slow_crm();
    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{base}/v1/signup"))
        .json(&json!({"tenant_name": "Term", "email": "term@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["access_token"].as_str().unwrap().to_string();
    let connection = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        &token,
        json!({"name": "Slow CRM", "provider": "http",
               "settings": {"base_url": format!("http://127.0.0.1:{crm_port}"), "timeout_seconds": 10}}),
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap().to_string();
    let flow = json!({"name": "payments", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "payment", "action": "create", "object": "payments",
                   "fields": {"charge": "{{ object.id }}"}}]});
    let created = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/flows"),
        &token,
        flow,
    )
    .await;
    assert!(created["id"].is_string(), "{created}");
    let secret = "whsec_term_test_secret_0001";
    let account = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        &token,
        json!({"name": "S", "webhook_secret": secret}),
    )
    .await;
    let path = account["webhook_url"].as_str().unwrap().replace(&base, "");
    let charges: Vec<String> = (0..3).map(|i| format!("ch_term_{i}")).collect();
    for (i, charge) in charges.iter().enumerate() {
        let event = json!({"id": format!("evt_term_{i}"), "object": "event", "type": "charge.succeeded",
            "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
            "data": {"object": {"id": charge, "object": "charge", "amount": 100, "currency": "usd"}}});
        let body = serde_json::to_vec(&event).unwrap();
        let reply = client
            .post(format!("{base}{path}"))
            .header("stripe-signature", sign(&body, secret))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }

    // SIGTERM while the first call is in the CRM's hands.
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the CRM was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_hand = started.lock().unwrap()[0].clone();
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the api did not stop within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        finished.lock().unwrap().contains(&in_hand),
        "the call in hand was finished before the process exited"
    );

    // After a restart every event is sent, each exactly once.
    let mut child = start(&db, dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processed: Value = client
            .get(format!("{base}/v1/events?status=processed&limit=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if processed["data"].as_array().map_or(0, Vec::len) == charges.len() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("not every event was processed after the restart: {processed}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut sent = started.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, charges, "each charge reached the CRM exactly once");
}

/// A child process that is killed when dropped, so a failing assertion leaves none behind.
struct Running(Child);

impl Running {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_backfill_killed_mid_way_resumes_and_ingests_each_event_once_in_order() {
    on_every_backend(backfill_killed_mid_way).await;
}

async fn backfill_killed_mid_way(db: TestDatabase, dir: tempfile::TempDir) {
    use tributary_fakes::stripe::{API_VERSION, FakeStripe, SECRET_KEY};
    let fake = FakeStripe::start();
    // Enough pages (two events each) that the backfill is still running when it is seen
    // mid-way, even on a loaded machine where status reads wait behind its writes.
    const EVENTS: i64 = 150;
    let start_at = chrono::Utc::now().timestamp() - EVENTS * 60 - 600;
    let mut stripe_ids = Vec::new();
    for i in 0..EVENTS {
        let charge = json!({"id": format!("ch_resume_{i}"), "object": "charge", "amount": 100 + i,
            "currency": "usd", "created": start_at + i * 60, "livemode": false});
        stripe_ids.push(fake.add_event(
            FakeStripe::event("charge.succeeded", charge, start_at + i * 60),
            false,
        ));
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
        ("TRIBUTARY_BACKFILL_PAGE_SIZE", "2"),
    ];
    let mut child = Running(start_with(&db, dir.path(), port, &env));
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{base}/v1/signup"))
        .json(&json!({"tenant_name": "Resume", "email": "resume@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["access_token"].as_str().unwrap().to_string();
    let account = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        &token,
        json!({"name": "S", "secret_key": SECRET_KEY, "api_version": API_VERSION}),
    )
    .await;
    let account_id = account["id"].as_str().unwrap().to_string();
    let backfill = json(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts/{account_id}/backfills"),
        &token,
        json!({"since": start_at - 60}),
    )
    .await;
    let backfill_url = format!(
        "{base}/v1/stripe-accounts/{account_id}/backfills/{}",
        backfill["id"].as_str().unwrap()
    );

    // Killed once it has ingested some events, well before the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let b = get(&client, backfill_url.clone(), &token).await;
        if b["progress"]["ingested"].as_i64().unwrap_or(0) >= 5 || Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.stop();
    let at_kill = before["progress"]["ingested"].as_i64().unwrap();
    assert!(
        (5..EVENTS).contains(&at_kill),
        "the kill must come mid-way ({at_kill} ingested): {before}"
    );

    let mut child = Running(start_with(&db, dir.path(), port, &env));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let b = get(&client, backfill_url.clone(), &token).await;
        if b["status"] == "succeeded" || b["status"] == "failed" {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill did not resume: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every event is in the inbox once, stored oldest first.
    let mut stored = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(id) => format!("{base}/v1/events?limit=100&starting_after={id}"),
            None => format!("{base}/v1/events?limit=100"),
        };
        let page = get(&client, url, &token).await;
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(|e| e["id"].as_str().unwrap().to_string());
        stored.extend(data);
        if page["has_more"] != true {
            break;
        }
    }
    child.stop();
    fake.stop().await;
    assert_eq!(done["status"], "succeeded", "{done}");
    stored.reverse();
    let order: Vec<&str> = stored
        .iter()
        .map(|e| e["stripe_event_id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = stripe_ids.iter().map(String::as_str).collect();
    assert_eq!(order, expected, "each event once, oldest first");
    let progress = &done["progress"];
    assert_eq!(
        progress["ingested"].as_i64().unwrap() + progress["already_present"].as_i64().unwrap(),
        EVENTS,
        "{done}"
    );
    assert!(
        progress["already_present"].as_i64().unwrap() <= 1,
        "at most the event in hand at the kill is seen again: {done}"
    );
}
