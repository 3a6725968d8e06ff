//! The `api` binary as a newcomer runs it: no configuration, a fresh directory, one command.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn api(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .env_clear()
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .args(args);
    for (k, v) in vars {
        command.env(k, v);
    }
    command
}

/// Starts the server and returns it with the log lines printed up to "listening".
fn start(dir: &Path, port: u16) -> (Child, Vec<String>) {
    start_with(dir, port, &[])
}

fn start_with(dir: &Path, port: u16, vars: &[(&str, &str)]) -> (Child, Vec<String>) {
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![("TRIBUTARY_LISTEN", listen.as_str())];
    all.extend_from_slice(vars);
    let mut child = api(dir, &all, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the api binary starts");
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let done = line.contains("listening");
                lines.push(line);
                if done {
                    return (child, lines);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no 'listening' line; printed:\n{}", lines.join("\n"));
            }
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn one_command_starts_a_complete_system_and_keeps_its_keys() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (child, lines) = start(dir.path(), port);
    let key_file = assert_first_start_generates_its_keys(dir.path(), port, &lines);

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let token = serve_and_sign_up(&client, &base).await;
    stop(child);

    // A restart reuses the generated files: the same key, the same tokens, the same data.
    let (child, lines) = start(dir.path(), port);
    let log = lines.join("\n");
    assert!(log.contains("using generated encryption key file"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/encryption.keys")).unwrap(),
        key_file
    );
    // A new client: the old one's pooled connection died with the first process.
    let client = reqwest::Client::new();
    let me = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        200,
        "a token from before the restart still works"
    );
    stop(child);

    rotate_keys_twice(dir.path(), &key_file);
}

/// Checks the first start's log and generated files; returns the generated key file's text.
fn assert_first_start_generates_its_keys(dir: &Path, port: u16, lines: &[String]) -> String {
    let log = lines.join("\n");
    assert!(log.contains("generated encryption key file"), "{log}");
    assert!(log.contains("generated JWT secret file"), "{log}");
    assert!(
        log.contains("production must set TRIBUTARY_ENCRYPTION_KEYS"),
        "{log}"
    );
    assert!(
        log.contains(&format!("http://127.0.0.1:{port}/docs")),
        "{log}"
    );
    assert!(!log.contains("TRIBUTARY_VENDOR_URLS=any"), "{log}");
    assert_eq!(
        log.matches("generated encryption key file").count(),
        1,
        "announced once"
    );
    assert!(dir.join("data/tributary.db").exists());
    let key_file = std::fs::read_to_string(dir.join("data/encryption.keys")).unwrap();
    assert!(
        !log.contains(key_file.trim()),
        "the key itself is never logged"
    );
    key_file
}

/// Checks the health, ready and docs pages, signs up, adds an account; returns the token.
async fn serve_and_sign_up(client: &reqwest::Client, base: &str) -> String {
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/docs"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let signup: serde_json::Value = client
        .post(format!("{base}/v1/signup"))
        .json(&serde_json::json!({"tenant_name": "Quickstart", "email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["access_token"].as_str().unwrap().to_string();
    let account = client
        .post(format!("{base}/v1/stripe-accounts"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Test", "secret_key": "sk_live_quickstart12345"}))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 201);
    token
}

/// Runs rotate-keys under a new current key, then again without the generated one.
fn rotate_keys_twice(dir: &Path, key_file: &str) {
    // rotate-keys re-encrypts under a new current key, keeping the generated one to open.
    let new_key = "k2:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";
    let keys = format!("{new_key},{}", key_file.trim());
    let rotated = api(
        dir,
        &[("TRIBUTARY_ENCRYPTION_KEYS", &keys)],
        &["rotate-keys"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(text.contains("resealed=1"), "{text}");
    // Without the old key, the next rotation has nothing to open: everything is under k2.
    let again = api(
        dir,
        &[("TRIBUTARY_ENCRYPTION_KEYS", new_key)],
        &["rotate-keys"],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && text.contains("resealed=0") && text.contains("already_current=1"),
        "{text}"
    );
}

#[test]
fn the_unsafe_vendor_url_setting_is_announced_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (child, lines) = start_with(dir.path(), free_port(), &[("TRIBUTARY_VENDOR_URLS", "any")]);
    stop(child);
    let log = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("WARN")
                && line.contains("TRIBUTARY_VENDOR_URLS=any is unsafe")),
        "{log}"
    );
}

#[test]
fn bad_configuration_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("TRIBUTARY_LISTEN", "not-an-address"),
        ("TRIBUTARY_SIGNUP", "sometimes"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("TRIBUTARY_RETRY_BASE_DELAY", "whenever"),
    ] {
        let output = api(dir.path(), &[(name, value)], &[]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let output = api(
        dir.path(),
        &[
            ("TRIBUTARY_ENCRYPTION_KEYS", "k1:short"),
            ("TRIBUTARY_LISTEN", &listen),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TRIBUTARY_ENCRYPTION_KEYS"), "{stderr}");
    assert!(
        !stderr.contains("k1:short"),
        "the value of a secret setting is not echoed"
    );
}

#[test]
fn migrate_creates_the_schema_and_openapi_prints_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/elsewhere/t.db?mode=rwc", dir.path().display());
    let output = api(dir.path(), &[("DATABASE_URL", &url)], &["migrate"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("elsewhere/t.db").exists());
    let again = api(dir.path(), &[("DATABASE_URL", &url)], &["migrate"])
        .output()
        .unwrap();
    assert!(again.status.success(), "migrations are idempotent");

    let spec = api(dir.path(), &[], &["openapi"]).output().unwrap();
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&spec.stdout), committed);
    let usage = api(dir.path(), &[], &["frobnicate"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("unrecognized subcommand 'frobnicate'")
    );
}
