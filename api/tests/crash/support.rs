//! Shared pieces of the crash tests: starting and stopping the api, signed webhook events,
//! requests to the API, and a slow fake CRM.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tributary_tests::TestDatabase;

/// A TCP port on 127.0.0.1 for an api to listen on, free at the time of the call, and below
/// the kernel's ephemeral range (32768 and up): a port the OS handed out for `127.0.0.1:0`
/// could be handed out again to a fake (or another test's) listener between this call and
/// the api's bind, and its requests would then reach that listener. Each call takes the next
/// port of this process's own walk through 20000–29999, started from its pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..10_000 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (start.wrapping_add(step) % 10_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-29999")
}

/// Runs `case` on every backend at once, each with a database of its own.
pub async fn on_every_backend<F, Fut>(case: F)
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

/// Starts the api on `port` and waits until it is listening.
pub fn start(db: &TestDatabase, dir: &Path, port: u16) -> Child {
    start_with(db, dir, port, &[])
}

/// Starts the api on `port` with extra environment variables and waits until it is listening.
pub fn start_with(db: &TestDatabase, dir: &Path, port: u16, extra: &[(&str, &str)]) -> Child {
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

/// A child process that is killed when dropped, so a failing assertion leaves none behind.
pub struct Running(pub Child);

impl Running {
    /// Kills the process and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `stripe-signature` header for `body` signed with `secret` at the current time.
pub fn sign(body: &[u8], secret: &str) -> String {
    let t = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `body` as JSON with `method` and the bearer `token`, and returns the JSON answer.
pub async fn json(
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

/// GETs `url` with the bearer `token` and returns the JSON answer.
pub async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
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

/// Signs up a new tenant and returns its access token.
pub async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    tenant_name: &str,
    email: &str,
) -> String {
    let signup: Value = client
        .post(format!("{base}/v1/signup"))
        .json(&json!({"tenant_name": tenant_name, "email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    signup["access_token"].as_str().unwrap().to_string()
}

/// Creates a flow through the API and checks that it was accepted.
pub async fn create_flow(client: &reqwest::Client, base: &str, token: &str, flow: Value) {
    let created = json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/flows"),
        token,
        flow,
    )
    .await;
    assert!(created["id"].is_string(), "{created}");
}

/// Adds a Stripe account receiving webhooks signed with `secret`; returns its webhook path.
pub async fn add_webhook_account(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    secret: &str,
) -> String {
    let account = json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        token,
        json!({"name": "S", "webhook_secret": secret}),
    )
    .await;
    account["webhook_url"].as_str().unwrap().replace(base, "")
}

/// Connects the REST CRM at `crm_url` with a payments flow and webhook; returns its path.
pub async fn set_up_payments(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    crm_name: &str,
    crm_url: &str,
    secret: &str,
) -> String {
    let connection = json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        token,
        json!({"name": crm_name, "provider": "http",
               "settings": {"base_url": crm_url, "timeout_seconds": 10}}),
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap().to_string();
    let flow = json!({"name": "payments", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "payment", "action": "create", "object": "payments",
                   "fields": {"charge": "{{ object.id }}"}}]});
    create_flow(client, base, token, flow).await;
    add_webhook_account(client, base, token, secret).await
}

/// A `charge.succeeded` Stripe event for `charge`, created now.
pub fn charge_succeeded(event_id: String, charge: &str, amount: i64) -> Value {
    json!({"id": event_id, "object": "event", "type": "charge.succeeded",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
        "data": {"object": {"id": charge, "object": "charge", "amount": amount, "currency": "usd"}}})
}

/// Posts `event` to the webhook `url`, signed with `secret`.
pub async fn post_event(
    client: &reqwest::Client,
    url: String,
    secret: &str,
    event: &Value,
) -> reqwest::Result<reqwest::Response> {
    let body = serde_json::to_vec(event).unwrap();
    client
        .post(url)
        .header("stripe-signature", sign(&body, secret))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}

/// Waits up to 30 s for the CRM's first call and returns its charge.
pub async fn first_crm_call(calls: impl Fn() -> Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(charge) = calls().first().cloned() {
            break charge;
        }
        assert!(Instant::now() < deadline, "the CRM was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Charges a CRM received, in order.
pub type Charges = Arc<Mutex<Vec<String>>>;

/// A slow REST CRM on a plain socket: each request takes 1.5 s. Records the `charge` of every
/// request it starts and of every answer it finishes writing.
pub fn slow_crm() -> (u16, Charges, Charges) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started: Charges = Arc::default();
    let finished: Charges = Arc::default();
    let (s, f) = (started.clone(), finished.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (s, f) = (s.clone(), f.clone());
            std::thread::spawn(move || answer_slowly(stream, &s, &f));
        }
    });
    (port, started, finished)
}

/// Reads one request's body from `stream`, or `None` if the peer closes it first.
fn read_body(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return None;
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
                return Some(String::from_utf8_lossy(&data[end + 4..end + 4 + length]).to_string());
            }
        }
    }
}

/// Serves one request of the slow CRM: records its charge, waits 1.5 s, answers 201.
fn answer_slowly(mut stream: std::net::TcpStream, started: &Charges, finished: &Charges) {
    use std::io::Write;
    let Some(body) = read_body(&mut stream) else {
        return;
    };
    let charge = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["charge"].as_str().map(str::to_string))
        .unwrap_or_default();
    started.lock().unwrap().push(charge.clone());
    std::thread::sleep(Duration::from_millis(1500));
    let answer = format!("{{\"id\":\"pay_{charge}\"}}");
    let response = format!(
        "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    if stream.write_all(response.as_bytes()).is_ok() {
        finished.lock().unwrap().push(charge);
    }
}
