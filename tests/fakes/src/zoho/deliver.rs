//! Sending a channel's callback: a JSON `POST` to its `notify_url` over plain HTTP/1.1, from a
//! background task, recording the status the listener answered (or why none came).

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Callback, Callbacks};

/// How long a listener has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Posts `body` to `url` in the background; the outcome lands in `callbacks`.
pub(super) fn send(callbacks: Callbacks, url: String, body: Value) {
    let at = Utc::now();
    let record = move |callbacks: &Callbacks, url: String, body: Value, outcome| {
        let (status, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        callbacks.lock().unwrap().push(Callback {
            at,
            url,
            body,
            status,
            error,
        });
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let outcome = match tokio::time::timeout(TIMEOUT, post(&url, &body)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err("no answer in time".to_string()),
                };
                record(&callbacks, url, body, outcome);
            });
        }
        Err(_) => record(&callbacks, url, body, Err("no runtime to send from".into())),
    }
}

/// One `POST`; the listener's status.
async fn post(url: &str, body: &Value) -> Result<u16, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad notify_url: {e}"))?;
    if parsed.scheme() != "http" {
        return Err("the fake sends callbacks over http only".into());
    }
    let host = parsed.host_str().ok_or("the notify_url has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let target = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let payload = body.to_string();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nUser-Agent: fake-zoho-notifications\r\nConnection: close\r\n\r\n\
         {payload}",
        payload.len()
    );
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if read == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
}
