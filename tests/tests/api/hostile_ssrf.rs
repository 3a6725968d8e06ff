//! A tenant pointing the platform at its own network: http steps, HTTP CRM and SMTP
//! connections, notification channels and connection tests aimed at loopback, a name that
//! resolves to loopback, and the cloud metadata address are refused under the default
//! `TRIBUTARY_VENDOR_URLS`, and the internal server never hears from the platform. A server
//! answering without end fails the delivery instead of filling memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tributary_tests::{charge_event, each_backend_with};

/// What an internal service would hand out, if it were ever reached.
const INTERNAL_ANSWER: &str = r#"{"AccessKeyId":"internal-metadata-credential"}"#;

/// A server on 127.0.0.1 standing for the internal network: it counts every connection made
/// to it and answers each with a secret.
struct Internal {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Internal {
    async fn start() -> Internal {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{INTERNAL_ANSWER}",
                    INTERNAL_ANSWER.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        Internal { port, hits }
    }

    fn assert_never_reached(&self) {
        assert_eq!(
            self.hits.load(Ordering::SeqCst),
            0,
            "the internal server was reached"
        );
    }
}

/// A name for this machine that is no literal address or `localhost`, yet resolves only to
/// internal addresses (the host name, usually): what only a check at connect time can refuse.
async fn internal_name() -> Option<String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    for name in [hostname.trim(), "localhost.localdomain"] {
        if name.is_empty() || tributary_worker::net::is_private_host(name) {
            continue;
        }
        let Ok(found) = tokio::net::lookup_host((name, 0)).await else {
            continue;
        };
        let found: Vec<_> = found.collect();
        if !found.is_empty()
            && found
                .iter()
                .all(|a| tributary_worker::net::is_private(a.ip()))
        {
            return Some(name.to_string());
        }
    }
    eprintln!("no name of this machine resolves to an internal address; that case is skipped");
    None
}

/// `TRIBUTARY_VENDOR_URLS` left unset (an empty value counts as unset), undoing the `any` the
/// harness sets for the other tests' local fakes: the default is what is under test.
const DEFAULT: &[(&str, &str)] = &[("TRIBUTARY_VENDOR_URLS", "")];

fn http_flow(connection_id: &str, url: &str) -> Value {
    json!({
        "name": "Call home", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "call", "action": "http", "url": url,
                   "fields": {"charge": "{{ object.id }}"}}]
    })
}

#[tokio::test]
async fn http_steps_to_internal_addresses_are_refused_when_saved() {
    each_backend_with(DEFAULT, |app| async move {
        let internal = Internal::start().await;
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        for url in [
            format!("https://127.0.0.1:{}/hook", internal.port),
            format!("http://127.0.0.1:{}/hook", internal.port),
            format!("https://localhost:{}/hook", internal.port),
            format!("https://127.0.0.1:{}/{{{{ object.id }}}}", internal.port),
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(),
            "https://169.254.169.254/latest/meta-data/".to_string(),
            "https://[::ffff:169.254.169.254]/latest/meta-data/".to_string(),
            "https://[fd00:ec2::254]/latest/meta-data/".to_string(),
            "https://100.100.100.200/latest/meta-data/".to_string(),
        ] {
            let saved = app
                .post("/v1/flows", token, http_flow(&p.connection_id, &url))
                .await;
            assert_eq!(
                saved.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                ["steps[0].url"],
                "{url}"
            );
            let checked = app
                .post(
                    "/v1/flows/validate",
                    token,
                    json!({"flow": http_flow(&p.connection_id, &url)}),
                )
                .await;
            assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
            assert_eq!(checked.body["valid"], false, "{url}: {}", checked.text);
            assert_eq!(checked.body["errors"][0]["path"], "steps[0].url");
        }
        // A public host, and a host a template writes, are for the run to judge.
        for url in [
            "https://hooks.example.com/call".to_string(),
            "https://{{ object.metadata.host }}/call".to_string(),
        ] {
            let saved = app
                .post("/v1/flows", token, http_flow(&p.connection_id, &url))
                .await;
            assert_eq!(saved.status, StatusCode::CREATED, "{url}: {}", saved.text);
        }
        internal.assert_never_reached();
    })
    .await;
}

#[tokio::test]
async fn http_steps_to_internal_hosts_are_refused_when_they_run() {
    each_backend_with(DEFAULT, |app| async move {
        let internal = Internal::start().await;
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        // The host comes from the event, so only the run can judge it.
        let flow = http_flow(
            &p.connection_id,
            "https://{{ object.billing_details.name }}/latest/meta-data/",
        );
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        let mut targets = vec![
            (
                format!("127.0.0.1:{}", internal.port),
                "private or loopback",
            ),
            (
                format!("localhost:{}", internal.port),
                "private or loopback",
            ),
            ("169.254.169.254".to_string(), "private or loopback"),
        ];
        if let Some(name) = internal_name().await {
            targets.push((
                format!("{name}:{}", internal.port),
                "resolves only to private or loopback addresses",
            ));
        }
        for (n, (target, why)) in targets.iter().enumerate() {
            let now = chrono::Utc::now().timestamp();
            let event = charge_event(
                &format!("evt_ssrf_{n}"),
                &format!("ch_ssrf_{n}"),
                "mallory@example.com",
                target,
                100,
                now,
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "failed", "{target}: {done}");
            let delivery = &done["deliveries"][0];
            let message = delivery["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(why), "{target}: {delivery}");
            assert_eq!(
                delivery["attempts"], 1,
                "refused without retrying: {delivery}"
            );
            assert!(!done.to_string().contains("internal-metadata-credential"));
        }
        internal.assert_never_reached();
    })
    .await;
}

#[tokio::test]
async fn connections_and_their_tests_cannot_reach_internal_hosts() {
    each_backend_with(DEFAULT, |app| async move {
        let internal = Internal::start().await;
        let owner = app.signup("Mallory").await;
        let token = &owner.token;
        for (provider, settings, field) in [
            (
                "http",
                json!({"base_url": format!("https://127.0.0.1:{}", internal.port)}),
                "settings.base_url",
            ),
            (
                "http",
                json!({"base_url": "https://169.254.169.254/latest"}),
                "settings.base_url",
            ),
            (
                "http",
                json!({"base_url": format!("http://localhost:{}", internal.port)}),
                "settings.base_url",
            ),
            (
                "smtp",
                json!({"host": "127.0.0.1", "port": internal.port, "from": "m@example.com"}),
                "settings.host",
            ),
            (
                "smtp",
                json!({"host": "169.254.169.254", "from": "m@example.com"}),
                "settings.host",
            ),
        ] {
            let reply = app
                .post(
                    "/v1/connections",
                    token,
                    json!({"name": "Inside", "provider": provider, "settings": settings}),
                )
                .await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                [field],
                "{settings}"
            );
        }

        // A name that resolves inside passes the save and is refused when the test connects.
        if let Some(name) = internal_name().await {
            for (provider, settings) in [
                (
                    "http",
                    json!({"base_url": format!("https://{name}:{}", internal.port)}),
                ),
                (
                    "smtp",
                    json!({"host": name, "port": internal.port, "from": "m@example.com"}),
                ),
            ] {
                let created = app
                    .post(
                        "/v1/connections",
                        token,
                        json!({"name": "Inside", "provider": provider, "settings": settings}),
                    )
                    .await;
                assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
                let tested = app
                    .post(
                        &format!("/v1/connections/{}/test", created.str("/id")),
                        token,
                        json!({}),
                    )
                    .await;
                assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
                assert_eq!(tested.body["ok"], false, "{provider}: {}", tested.text);
                assert!(
                    tested.body["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("resolves only to private or loopback addresses"),
                    "{provider}: {}",
                    tested.text
                );
                assert!(!tested.text.contains("internal-metadata-credential"));
            }
        }
        internal.assert_never_reached();
    })
    .await;
}

#[tokio::test]
async fn notification_channels_cannot_reach_internal_hosts() {
    each_backend_with(DEFAULT, |app| async move {
        let internal = Internal::start().await;
        let owner = app.signup("Mallory").await;
        let token = &owner.token;
        for url in [
            format!("https://127.0.0.1:{}/alerts", internal.port),
            format!("https://localhost:{}/alerts", internal.port),
            "https://169.254.169.254/latest/meta-data/".to_string(),
            "https://[::1]/alerts".to_string(),
        ] {
            let reply = app
                .post(
                    "/v1/notification-channels",
                    token,
                    json!({"name": "Inside", "kind": "webhook", "url": url}),
                )
                .await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                ["url"],
                "{url}"
            );
        }
        if let Some(name) = internal_name().await {
            let created = app
                .post(
                    "/v1/notification-channels",
                    token,
                    json!({"name": "Inside", "kind": "webhook",
                           "url": format!("https://{name}:{}/alerts", internal.port)}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let tested = app
                .post(
                    &format!("/v1/notification-channels/{}/test", created.str("/id")),
                    token,
                    json!({}),
                )
                .await;
            assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
            assert_eq!(tested.body["ok"], false, "{}", tested.text);
            assert!(
                tested.body["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("resolves only to private or loopback addresses"),
                "{}",
                tested.text
            );
        }
        internal.assert_never_reached();
    })
    .await;
}

/// A server that answers every request with 50 MiB: at `/sized` saying so in
/// `Content-Length`, elsewhere in chunks, with no length given.
async fn start_flood() -> u16 {
    const FLOOD: usize = 50 * 1024 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let sized = head.starts_with(b"POST /sized") || head.starts_with(b"GET /sized");
                let start = if sized {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {FLOOD}\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
                };
                if socket.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < FLOOD {
                    let written = if sized {
                        socket.write_all(&piece).await
                    } else {
                        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                        chunk.extend_from_slice(&piece);
                        chunk.extend_from_slice(b"\r\n");
                        socket.write_all(&chunk).await
                    };
                    if written.is_err() {
                        return;
                    }
                    sent += piece.len();
                }
                if !sized {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_endless_vendor_answer_fails_the_delivery_and_the_process_stays_up() {
    // The flood is on 127.0.0.1, so this test opts in to `any` as a development setup would.
    each_backend_with(&[("TRIBUTARY_VENDOR_URLS", "any")], |app| async move {
        let port = start_flood().await;
        for (n, path) in ["sized", "chunked"].iter().enumerate() {
            let p = app.pipeline(json!({})).await;
            let token = &p.tenant.token;
            let flow = http_flow(&p.connection_id, &format!("http://127.0.0.1:{port}/{path}"));
            let created = app.post("/v1/flows", token, flow).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let event = charge_event(
                &format!("evt_flood_{n}"),
                &format!("ch_flood_{n}"),
                "flood@example.com",
                "Flood",
                100,
                chrono::Utc::now().timestamp(),
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "failed", "{path}: {done}");
            let delivery = &done["deliveries"][0];
            assert_eq!(delivery["error"]["kind"], "permanent", "{delivery}");
            assert!(
                delivery["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("the answer is larger than 1 MiB"),
                "{path}: {delivery}"
            );
            assert_eq!(delivery["attempts"], 1, "not asked again: {delivery}");
        }
        let health = app.get("/healthz", "").await;
        assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    })
    .await;
}
