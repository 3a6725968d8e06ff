//! Stateful fake vendor servers for the tests: HubSpot, Salesforce and Zoho CRM, and Stripe's
//! API, each written from the vendor's published API description. They listen on
//! `127.0.0.1:0`, keep their records in memory, enforce auth and token expiry, answer with the vendor's real error bodies, and can be
//! told to misbehave (rate limits, expired tokens, refused refreshes) so the adapters' handling
//! of each case can be proven end to end.
//!
//! Every fake records the requests it answered ([`Logged`]) so a test can check what was sent
//! and when (e.g. that a retry waited for `Retry-After`).

// Handlers answer refusals as ready `HttpResponse`s all the way up; boxing them would only add
// noise to code that is never on a hot path.
#![allow(clippy::result_large_err)]

pub mod held;
pub mod hubspot;
pub mod salesforce;
pub mod smtp;
pub mod stripe;
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

/// How long an answer is held back, and what runs once it is sent.
pub struct Delay {
    pub wait: std::time::Duration,
    pub done: Box<dyn FnOnce() + Send>,
}

struct RunOnDrop(Option<Box<dyn FnOnce() + Send>>);

impl Drop for RunOnDrop {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done();
        }
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
        Served::answering_slowly(log, move |req, body| (answer(req, body), None))
    }

    /// As [`Served::answering`], but an answer may come with a [`Delay`]: it is sent after
    /// the delay, and then the delay's `done` runs (the request is no longer in flight; also when
    /// the caller stops waiting first).
    pub fn answering_slowly<F>(log: RequestLog, answer: F) -> Served
    where
        F: Fn(&HttpRequest, &[u8]) -> (HttpResponse, Option<Delay>) + Send + Sync + Clone + 'static,
    {
        Served::start(move |cfg| {
            let log = log.clone();
            let answer = answer.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let (response, delay) = answer(&req, &body);
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
                async move {
                    if let Some(delay) = delay {
                        // Runs when the answer goes, or when the caller gave up waiting.
                        let _done = RunOnDrop(Some(delay.done));
                        tokio::time::sleep(delay.wait).await;
                    }
                    response
                }
            }));
        })
    }

    /// Stops the server; in-flight requests get a second to finish.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// The authorization-code side of a vendor's OAuth server, shared by the fakes: the
/// authorization endpoint consents at once (as a user clicking "Allow" would) and redirects
/// back with a code; codes are single-use, live a minute, are bound to the client and the
/// redirect URI, and check the PKCE verifier when a challenge was sent. As at every vendor,
/// the redirect URI must be one registered for the app, at the authorization endpoint and at
/// the token endpoint; none is registered until a test registers one.
#[derive(Default)]
pub struct Authorizer {
    codes: std::collections::HashMap<String, Grant>,
    deny_next: bool,
    redirect_uris: Vec<String>,
    /// Every authorization request, as its query parameters.
    pub requests: Vec<std::collections::HashMap<String, String>>,
}

/// [`Authorizer::redeem`]'s reason when the redirect URI is not the registered one (or not
/// the one the code was issued for).
pub const REDIRECT_MISMATCH: &str = "redirect_uri mismatch";

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    expires: DateTime<Utc>,
}

impl Authorizer {
    /// Registers a redirect URI for the app.
    pub fn register_redirect_uri(&mut self, uri: &str) {
        self.redirect_uris.push(uri.to_string());
    }

    /// The next authorization request is refused by the user (`error=access_denied`).
    pub fn deny_next(&mut self) {
        self.deny_next = true;
    }

    /// Answers an authorization request: a redirect to `redirect_uri` with `code` and `state`
    /// (and `extra` parameters), or an error page for a bad client or redirect URI.
    pub fn authorize(
        &mut self,
        query: std::collections::HashMap<String, String>,
        client_id: &str,
        extra: &[(&str, &str)],
    ) -> HttpResponse {
        let get = |k: &str| query.get(k).cloned().unwrap_or_default();
        self.requests.push(query.clone());
        if get("client_id") != client_id {
            return HttpResponse::BadRequest().body("error=invalid_client_id");
        }
        let redirect_uri = get("redirect_uri");
        let Ok(mut target) = url::Url::parse(&redirect_uri) else {
            return HttpResponse::BadRequest().body("error=redirect_uri_mismatch");
        };
        if !self.redirect_uris.contains(&redirect_uri) {
            return HttpResponse::BadRequest().body(
                "error=redirect_uri_mismatch&error_description=redirect_uri must match configuration",
            );
        }
        if get("response_type") != "code" {
            return HttpResponse::BadRequest().body("error=unsupported_response_type");
        }
        {
            let mut pairs = target.query_pairs_mut();
            if std::mem::take(&mut self.deny_next) {
                pairs.append_pair("error", "access_denied");
                pairs.append_pair("error_description", "end-user denied authorization");
            } else {
                let code = token("code-");
                let challenge = query.get("code_challenge").cloned();
                if challenge.is_some() && get("code_challenge_method") != "S256" {
                    return HttpResponse::BadRequest().body("error=invalid_request");
                }
                self.codes.insert(
                    code.clone(),
                    Grant {
                        client_id: client_id.to_string(),
                        redirect_uri: redirect_uri.clone(),
                        challenge,
                        expires: Utc::now() + chrono::Duration::seconds(60),
                    },
                );
                pairs.append_pair("code", &code);
            }
            pairs.append_pair("state", &get("state"));
            for (k, v) in extra {
                pairs.append_pair(k, v);
            }
        }
        HttpResponse::Found()
            .insert_header(("location", target.to_string()))
            .finish()
    }

    /// Redeems a code from an `authorization_code` grant's form; `Err` is the reason.
    pub fn redeem(
        &mut self,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<(), String> {
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if !self
            .redirect_uris
            .iter()
            .any(|uri| uri == get("redirect_uri"))
        {
            return Err(REDIRECT_MISMATCH.into());
        }
        let grant = self
            .codes
            .remove(get("code"))
            .ok_or("invalid authorization code (unknown or already used)")?;
        if grant.expires < Utc::now() {
            return Err("expired authorization code".into());
        }
        if grant.client_id != get("client_id") {
            return Err("the code was issued to another client".into());
        }
        if grant.redirect_uri != get("redirect_uri") {
            return Err(REDIRECT_MISMATCH.into());
        }
        if let Some(challenge) = grant.challenge {
            use base64::Engine;
            use sha2::Digest;
            let verifier = get("code_verifier");
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if verifier.is_empty() || computed != challenge {
                return Err("invalid code verifier".into());
            }
        }
        Ok(())
    }
}

/// A request's query string as a map.
pub fn query_map(req: &HttpRequest) -> std::collections::HashMap<String, String> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

/// A fresh opaque token or id with the given prefix.
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// For the fakes' own tests: a fake and a client signed in to it with the access token its
/// token endpoint grants for a refresh token, as a connection's first call gets one.
#[cfg(test)]
pub(crate) struct SignedIn<F> {
    pub(crate) fake: F,
    pub(crate) token: String,
    pub(crate) client: reqwest::Client,
}

#[cfg(test)]
impl<F> SignedIn<F> {
    /// Redeems `refresh_token` at `token_url` (a `refresh_token` grant of the app).
    pub(crate) async fn new(
        fake: F,
        token_url: &str,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("refresh_token", refresh_token),
        ];
        let session: serde_json::Value = client
            .post(token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = session["access_token"].as_str().unwrap().to_string();
        SignedIn {
            fake,
            token,
            client,
        }
    }
}
