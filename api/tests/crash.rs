//! A process killed with SIGKILL mid-run loses nothing: after a restart every acknowledged
//! event is processed exactly once in the sandbox CRM.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("TRIBUTARY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRIBUTARY_SWEEP_INTERVAL", "500ms")
        .env("TRIBUTARY_SWEEP_GRACE", "2s")
        .env("TRIBUTARY_WORKER_CONCURRENCY", "1")
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(dir.path(), port);
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
    let processed: Value = client
        .get(format!("{base}/v1/events?status=processed&limit=100"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        acknowledged.len(),
        200,
        "every event was acknowledged before the kill"
    );
    let done_before = processed["data"].as_array().map_or(0, Vec::len);
    assert!(
        processed["has_more"] == false && done_before < acknowledged.len(),
        "the kill must come mid-run (processed before it: {done_before})"
    );

    let mut child = start(dir.path(), port);
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
