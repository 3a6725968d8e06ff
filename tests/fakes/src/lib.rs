//! Stateful fake CRM servers for the tests: HubSpot, Salesforce and Zoho CRM, each written from
//! the vendor's published API description. They listen on `127.0.0.1:0`, keep their records in
//! memory, enforce auth and token expiry, answer with the vendor's real error bodies, and can be
//! told to misbehave (rate limits, expired tokens, refused refreshes) so the adapters' handling
//! of each case can be proven end to end.
//!
//! Every fake records the requests it answered ([`Logged`]) so a test can check what was sent
//! and when (e.g. that a retry waited for `Retry-After`).

// Handlers answer refusals as ready `HttpResponse`s all the way up; boxing them would only add
// noise to code that is never on a hot path.
#![allow(clippy::result_large_err)]

pub mod hubspot;
pub mod salesforce;
pub mod zoho;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes, ServiceConfig};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};

/// One request a fake answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: DateTime<Utc>,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
}

/// The requests a fake answered, in order.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Logged>>>);

impl RequestLog {
    pub fn push(&self, entry: Logged) {
        self.0.lock().unwrap().push(entry);
    }

    /// Everything answered so far.
    pub fn all(&self) -> Vec<Logged> {
        self.0.lock().unwrap().clone()
    }

    /// The requests whose method is `method` and whose path (without query) ends with `suffix`.
    pub fn matching(&self, method: &str, suffix: &str) -> Vec<Logged> {
        self.all()
            .into_iter()
            .filter(|l| {
                l.method.eq_ignore_ascii_case(method)
                    && l.path.split('?').next().unwrap_or("").ends_with(suffix)
            })
            .collect()
    }
}

/// A running fake server.
pub struct Served {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    handle: ServerHandle,
}

impl Served {
    /// Starts an actix-web server on `127.0.0.1:0` with the routes `configure` adds, on the
    /// current tokio runtime.
    pub fn start<F>(configure: F) -> Served
    where
        F: Fn(&mut ServiceConfig) + Send + Clone + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().expect("local address").port();
        let server = HttpServer::new(move || App::new().configure(configure.clone()))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)
            .expect("listen")
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Served {
            base_url: format!("http://127.0.0.1:{port}"),
            handle,
        }
    }

    /// Starts a server that answers every request with `answer` (synchronously, from shared
    /// state) and records each request and its status in `log`.
    pub fn answering<F>(log: RequestLog, answer: F) -> Served
    where
        F: Fn(&HttpRequest, &[u8]) -> HttpResponse + Send + Sync + Clone + 'static,
    {
        Served::start(move |cfg| {
            let log = log.clone();
            let answer = answer.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let response = answer(&req, &body);
                log.push(Logged {
                    at: Utc::now(),
                    method: req.method().to_string(),
                    path: req.uri().to_string(),
                    authorization: req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: response.status().as_u16(),
                });
                async move { response }
            }));
        })
    }

    /// Stops the server; in-flight requests get a second to finish.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// A fresh opaque token or id with the given prefix.
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}
