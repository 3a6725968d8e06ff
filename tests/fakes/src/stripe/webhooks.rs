//! Webhook delivery: each new event is POSTed, as Stripe's pretty-printed JSON, to every
//! enabled endpoint of its mode that listens for its type, signed with the endpoint's secret
//! (`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`), in the
//! background. An answer other than 2xx (or none) is retried a few times, each attempt signed
//! anew; every attempt is recorded.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Endpoint, Shared, StripeDelivery};

/// How long the fake waits for an endpoint's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether an endpoint gets events of this type and mode.
pub(super) fn listens(endpoint: &Endpoint, kind: &str, livemode: bool) -> bool {
    endpoint.value["status"] == "enabled"
        && endpoint.value["livemode"].as_bool().unwrap_or(false) == livemode
        && endpoint.value["enabled_events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e == "*" || e == kind))
}

/// One event on its way to one endpoint.
struct Job {
    event_id: String,
    event_type: String,
    endpoint_id: String,
    url: String,
    secret: String,
    body: String,
    attempts: u32,
    retry_delay: Duration,
}

/// Starts delivering these events (ids) to the endpoints listening for them.
pub(super) fn dispatch(state: &Shared, event_ids: Vec<String>) {
    if event_ids.is_empty() {
        return;
    }
    let mut jobs = Vec::new();
    {
        let mut s = state.lock().unwrap();
        for id in event_ids {
            let Some(stored) = s.events.iter().find(|e| e.event["id"] == id.as_str()) else {
                continue;
            };
            let event = stored.event.clone();
            let kind = event["type"].as_str().unwrap_or_default().to_string();
            let livemode = event["livemode"].as_bool().unwrap_or(false);
            let body = serde_json::to_string_pretty(&event).unwrap_or_default();
            for endpoint in s.endpoints.iter().filter(|e| listens(e, &kind, livemode)) {
                jobs.push(Job {
                    event_id: id.clone(),
                    event_type: kind.clone(),
                    endpoint_id: endpoint.value["id"].as_str().unwrap_or_default().into(),
                    url: endpoint.value["url"].as_str().unwrap_or_default().into(),
                    secret: endpoint.secret.clone(),
                    body: body.clone(),
                    attempts: s.delivery_attempts.max(1),
                    retry_delay: s.retry_delay,
                });
            }
        }
        s.in_flight += jobs.len();
    }
    for job in jobs {
        spawn(deliver(state.clone(), job));
    }
}

/// Runs a delivery on the current tokio runtime, or on a thread of its own outside one.
fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task);
        }
        Err(_) => {
            std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(task);
                }
            });
        }
    }
}

async fn deliver(state: Shared, job: Job) {
    let mut succeeded = false;
    for attempt in 1..=job.attempts {
        let timestamp = Utc::now().timestamp();
        let signature = signature_header(&job.secret, timestamp, &job.body);
        let result = post(&job.url, &job.body, &signature).await;
        let (status, error) = match result {
            Ok(status) => (Some(status), None),
            Err(e) => (None, Some(e)),
        };
        succeeded = status.is_some_and(|s| (200..300).contains(&s));
        state.lock().unwrap().deliveries.push(StripeDelivery {
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            endpoint_id: job.endpoint_id.clone(),
            url: job.url.clone(),
            attempt,
            status,
            error,
            signature,
            body: job.body.clone(),
            at: Utc::now(),
        });
        if succeeded || attempt == job.attempts {
            break;
        }
        tokio::time::sleep(job.retry_delay * 2u32.pow(attempt - 1)).await;
    }
    let mut s = state.lock().unwrap();
    s.in_flight = s.in_flight.saturating_sub(1);
    if let Some(stored) = s
        .events
        .iter_mut()
        .find(|e| e.event["id"] == job.event_id.as_str())
    {
        if succeeded {
            let pending = stored.event["pending_webhooks"].as_u64().unwrap_or(1);
            stored.event["pending_webhooks"] = pending.saturating_sub(1).into();
        } else {
            stored.delivered = false;
        }
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The `Stripe-Signature` header Stripe sends with `body` at `timestamp`:
/// `t=<timestamp>,v1=<lowercase hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>`,
/// the secret used as its text, `whsec_` prefix included.
pub fn signature_header(secret: &str, timestamp: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// POSTs a JSON body over plain HTTP/1.1; the status answered.
async fn post(url: &str, body: &str, signature: &str) -> Result<u16, String> {
    let url = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "the fake delivers over plain http only, not {}",
            url.scheme()
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let host = match url.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        Some(host) => host.to_string(),
        None => return Err("the URL has no host".into()),
    };
    let host_header = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\nAccept: */*; q=0.5, application/xml\r\nCache-Control: no-cache\r\nContent-Type: application/json; charset=utf-8\r\nStripe-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect((host.as_str(), port)).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 64 * 1024 {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", ANSWER_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))
}
