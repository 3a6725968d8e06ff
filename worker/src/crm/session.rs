//! Talking to a vendor on behalf of one connection: credentials opened from their seal, an
//! access token obtained and kept (sealed) on the connection, refreshed single-flight when it
//! expires or is refused, the request sent with a timeout, and what the vendor says about the
//! connection (API usage, discovered settings) kept for the tenant to see.
//!
//! Single flight: within a process, one refresh per connection at a time (a mutex); across
//! processes, a lease on the connection row (`refresh_lease_until`) that only one worker can
//! take. A worker that loses either waits for the winner's token instead of refreshing again,
//! which matters for vendors that rotate refresh tokens. A refused refresh marks the
//! connection `needs_reauth`; its deliveries wait until the tenant reconnects.

use crate::sealed;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::connections;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{self, Credentials};
use super::error::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Write};
use crate::flow::Operation;
use crate::secrets::{Keyring, SecretContext};
use crate::settings::{OAuthApp, VendorUrls};

/// Shared by every call the workers make: the database, keys, HTTP client and the in-process
/// refresh locks.
pub struct Connector {
    pub db: DatabaseConnection,
    pub keyring: Arc<Keyring>,
    pub http: reqwest::Client,
    pub vendor_urls: VendorUrls,
    /// The operator's OAuth apps: their secrets are only sent where each may go
    /// ([`OAuthApp::may_send_to`]), whatever a connection's settings say.
    pub oauth_apps: Vec<OAuthApp>,
    /// Certificates (DER) of private CAs the TLS of `smtp` connections trusts besides the
    /// webpki roots (`TRIBUTARY_EXTRA_CA_CERTS`).
    pub extra_ca_certs: Vec<Vec<u8>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Connector {
    pub fn new(db: DatabaseConnection, keyring: Arc<Keyring>, vendor_urls: VendorUrls) -> Self {
        // TLS uses ring; installing it twice (the api does too) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .user_agent(concat!("Tributary/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        let http = crate::net::guarded(builder, vendor_urls)
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Connector {
            db,
            keyring,
            http,
            vendor_urls,
            oauth_apps: Vec::new(),
            extra_ca_certs: Vec::new(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The operator's OAuth apps, so that refreshes never send their secrets elsewhere.
    pub fn with_oauth_apps(mut self, apps: Vec<OAuthApp>) -> Self {
        self.oauth_apps = apps;
        self
    }

    /// Private CAs (DER) the TLS of `smtp` connections trusts besides the webpki roots.
    pub fn with_extra_ca_certs(mut self, certs: Vec<Vec<u8>>) -> Self {
        self.extra_ca_certs = certs;
        self
    }

    fn lock_for(&self, connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(connection_id.to_string()).or_default().clone()
    }
}

/// Seals a connection's credentials for storage.
pub fn seal_credentials(
    keyring: &Keyring,
    tenant_id: &str,
    connection_id: &str,
    credentials: &Credentials,
) -> String {
    let json = serde_json::to_string(credentials).expect("credentials serialize");
    keyring.seal(
        &json,
        &SecretContext {
            tenant_id,
            purpose: sealed::CONNECTION_CREDENTIALS,
            row_id: connection_id,
        },
    )
}

/// A connection's credentials, opened from their seal (`None` when it holds none).
pub fn open_credentials(
    keyring: &Keyring,
    connection: &connections::Model,
) -> Result<Credentials, CrmError> {
    let Some(sealed) = connection.credentials.as_deref() else {
        return Ok(Credentials::None);
    };
    let context = SecretContext {
        tenant_id: &connection.tenant_id,
        purpose: sealed::CONNECTION_CREDENTIALS,
        row_id: &connection.id,
    };
    let plain = keyring.open(sealed, &context).map_err(|e| {
        CrmError::new(
            ErrorKind::Permanent,
            format!("the connection's credentials cannot be opened: {e}"),
        )
    })?;
    serde_json::from_str(crate::secrets::expose(&plain)).map_err(|_| {
        CrmError::new(
            ErrorKind::Permanent,
            "the connection's stored credentials are malformed",
        )
    })
}

/// An access token and where to use it. Debug never shows the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    /// Unknown for Salesforce sessions, which last until refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// The API host the token response named (`instance_url`, `api_domain`).
    pub api_base: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Usable for at least another minute.
    fn fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|at| at > crate::now() + chrono::Duration::seconds(60))
    }
}

/// What a token exchange produced: the session, and new credentials if the vendor rotated the
/// refresh token.
pub struct Exchanged {
    pub session: Session,
    pub rotated: Option<Credentials>,
}

/// One request to the vendor.
pub struct Request {
    pub method: Method,
    /// Under the API base (`/crm/v3/…`), or an absolute URL.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_string(), value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

/// The vendor's answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&Utc) - crate::now()).to_std().ok()
    }

    /// The body, shortened for storage and display.
    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }

    /// An error of `kind` carrying this reply's status and body.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> CrmError {
        CrmError {
            kind,
            message: message.into(),
            vendor_status: Some(self.status),
            vendor_body: Some(self.excerpt()),
            retry_after: None,
            pause: None,
        }
    }
}

/// A text field of a token endpoint's answer, which must be there.
pub fn token_field(body: &Value, name: &str, vendor: &str) -> Result<String, CrmError> {
    body.get(name)
        .and_then(Value::as_str)
        .map(|text| text.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            CrmError::new(
                ErrorKind::Transient,
                format!("{vendor}'s token answer has no {name}"),
            )
        })
}

/// The credentials with the refresh token a token answer rotated to, if it rotated it
/// (vendors that rotate invalidate the old one, so it must be kept at once).
pub fn rotated(credentials: &Credentials, body: &Value) -> Option<Credentials> {
    let new = body.get("refresh_token").and_then(Value::as_str)?;
    match credentials {
        Credentials::RefreshToken {
            client_id,
            client_secret,
            refresh_token,
            ..
        } if new != refresh_token && !new.is_empty() => Some(Credentials::RefreshToken {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            refresh_token: new.to_string(),
            access_token: None,
            expires_at: None,
        }),
        _ => None,
    }
}

/// At most 4 KiB of a vendor body.
pub fn excerpt(body: &str) -> String {
    const LIMIT: usize = 4096;
    if body.len() <= LIMIT {
        return body.to_string();
    }
    let mut end = LIMIT;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// The classification every adapter starts from; vendors refine it from their error bodies.
pub fn kind_of_status(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Auth,
        404 | 410 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        400 | 405 | 409 | 413 | 415 | 422 => ErrorKind::Invalid,
        408 | 425 | 500..=599 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// One CRM vendor's API.
pub trait Adapter: Sync {
    /// Exchanges the connection's credentials for a session (refresh token, JWT assertion).
    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>>;

    /// The URL relative request paths are joined to.
    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError>;

    /// Executes one rendered step. `linked` is the record this Stripe object was written to
    /// before, which wins over a lookup by `match`.
    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>>;

    /// One cheap authenticated call; says what it saw.
    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>>;

    /// Settings templates see besides the connection's own (e.g. a discovered won stage).
    fn template_settings<'a, 'c: 'a>(
        &'a self,
        _call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, CrmError>> {
        Box::pin(async { Ok(Map::new()) })
    }
}

/// One connection's conversation with its vendor, for one operation or test.
pub struct Call<'c> {
    pub connector: &'c Connector,
    /// The vendor's adapter: how this connection's sessions are obtained and where its API is.
    adapter: &'static dyn Adapter,
    pub connection: connections::Model,
    pub settings: Map<String, Value>,
    pub credentials: Credentials,
    session: Option<Session>,
    refreshed: bool,
    /// Facts to merge into the connection's `vendor_info` when the call ends.
    pub info: Map<String, Value>,
    pub timeout: Duration,
    /// The requests sent, for the delivery's history.
    pub trail: Trail,
}

fn db_error(err: sea_orm::DbErr) -> CrmError {
    CrmError::new(ErrorKind::Transient, format!("database: {err}"))
}

impl<'c> Call<'c> {
    /// Opens the connection's credentials and stored session.
    pub fn open(
        connector: &'c Connector,
        connection: &connections::Model,
        adapter: &'static dyn Adapter,
    ) -> Result<Self, CrmError> {
        let settings: Map<String, Value> =
            serde_json::from_str(&connection.settings).unwrap_or_default();
        let mut call = Call {
            connector,
            adapter,
            connection: connection.clone(),
            timeout: config::timeout(&settings),
            settings,
            credentials: Credentials::None,
            session: None,
            refreshed: false,
            info: Map::new(),
            trail: Trail::default(),
        };
        call.credentials = call.open_credentials(connection)?;
        call.session = call.open_session(connection);
        Ok(call)
    }

    fn context<'a>(connection: &'a connections::Model, purpose: &'a str) -> SecretContext<'a> {
        SecretContext {
            tenant_id: &connection.tenant_id,
            purpose,
            row_id: &connection.id,
        }
    }

    fn open_credentials(&self, connection: &connections::Model) -> Result<Credentials, CrmError> {
        open_credentials(&self.connector.keyring, connection)
    }

    /// The stored session; one that cannot be opened is treated as none (a refresh follows).
    fn open_session(&self, connection: &connections::Model) -> Option<Session> {
        let sealed = connection.session.as_deref()?;
        let plain = self
            .connector
            .keyring
            .open(
                sealed,
                &Self::context(connection, sealed::CONNECTION_SESSION),
            )
            .ok()?;
        serde_json::from_str(crate::secrets::expose(&plain)).ok()
    }

    pub fn setting(&self, key: &str) -> Option<&str> {
        config::text(&self.settings, key)
    }

    /// A usable session, obtaining one if there is none or it has expired.
    pub async fn session(&mut self) -> Result<Session, CrmError> {
        match &self.credentials {
            Credentials::RefreshToken { .. } | Credentials::JwtBearer { .. } => {}
            _ => {
                return Ok(Session {
                    access_token: String::new(),
                    expires_at: None,
                    api_base: None,
                });
            }
        }
        if let Some(session) = self.session.as_ref().filter(|s| s.fresh()) {
            return Ok(session.clone());
        }
        // A pasted access token is used until it expires.
        if self.session.is_none()
            && let Credentials::RefreshToken {
                access_token: Some(token),
                expires_at,
                ..
            } = &self.credentials
        {
            let pasted = Session {
                access_token: token.clone(),
                expires_at: *expires_at,
                api_base: None,
            };
            let as_is = super::providers::get(&self.connection.provider)
                .is_some_and(|p| p.pasted_token_is_session);
            if pasted.fresh() && as_is {
                self.session = Some(pasted.clone());
                return Ok(pasted);
            }
        }
        let stale = self.session.as_ref().map(|s| s.access_token.clone());
        self.refresh(stale).await
    }

    /// Replaces a refused or expired token, single-flight per connection.
    async fn refresh(&mut self, stale: Option<String>) -> Result<Session, CrmError> {
        let lock = self.connector.lock_for(&self.connection.id);
        let _guard = lock.lock().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let db = &self.connector.db;
        loop {
            let row = connections::Entity::find_by_id(self.connection.id.clone())
                .one(db)
                .await
                .map_err(db_error)?
                .ok_or_else(|| CrmError::new(ErrorKind::Permanent, "the connection was deleted"))?;
            if row.status == "needs_reauth" {
                return Err(CrmError::new(
                    ErrorKind::Auth,
                    row.status_reason
                        .clone()
                        .unwrap_or_else(|| "the connection needs re-authorization".into()),
                ));
            }
            // Another worker may have refreshed already: use its token.
            if let Some(current) = self.open_session(&row)
                && Some(&current.access_token) != stale.as_ref()
                && current.fresh()
            {
                self.credentials = self.open_credentials(&row)?;
                self.connection = row;
                self.session = Some(current.clone());
                return Ok(current);
            }
            let now = crate::now();
            let claimed = connections::Entity::update_many()
                .set(connections::ActiveModel {
                    refresh_lease_until: Set(Some(now + chrono::Duration::seconds(30))),
                    ..Default::default()
                })
                .filter(connections::Column::Id.eq(row.id.as_str()))
                .filter(
                    Condition::any()
                        .add(connections::Column::RefreshLeaseUntil.is_null())
                        .add(connections::Column::RefreshLeaseUntil.lt(now)),
                )
                // Only if nobody stored a new session since this read: a winner that
                // finished in between has released the lease, and its token is to be used.
                .filter(match &row.session {
                    Some(sealed) => connections::Column::Session.eq(sealed.as_str()),
                    None => connections::Column::Session.is_null(),
                })
                .exec(db)
                .await
                .map_err(db_error)?
                .rows_affected
                == 1;
            if claimed {
                self.credentials = self.open_credentials(&row)?;
                self.connection = row;
                let result = self.adapter.exchange(self).await;
                return self.settle_refresh(result).await;
            }
            if Instant::now() > deadline {
                return Err(CrmError::new(
                    ErrorKind::Transient,
                    "another worker is still refreshing this connection's token",
                ));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Stores a new session (and rotated credentials) or the reason the refresh failed, and
    /// releases the lease.
    async fn settle_refresh(
        &mut self,
        result: Result<Exchanged, CrmError>,
    ) -> Result<Session, CrmError> {
        let db = &self.connector.db;
        let mut update = connections::ActiveModel {
            refresh_lease_until: Set(None),
            ..Default::default()
        };
        let outcome = match result {
            Ok(exchanged) => {
                let sealed = self.connector.keyring.seal(
                    &serde_json::to_string(&exchanged.session).expect("session serializes"),
                    &Self::context(&self.connection, sealed::CONNECTION_SESSION),
                );
                update.session = Set(Some(sealed));
                if let Some(rotated) = exchanged.rotated {
                    update.credentials = Set(Some(seal_credentials(
                        &self.connector.keyring,
                        &self.connection.tenant_id,
                        &self.connection.id,
                        &rotated,
                    )));
                    self.credentials = rotated;
                }
                self.info.insert(
                    "token_refreshed_at".into(),
                    Value::String(crate::now().to_rfc3339()),
                );
                self.session = Some(exchanged.session.clone());
                Ok(exchanged.session)
            }
            Err(error) => Err(error),
        };
        connections::Entity::update_many()
            .set(update)
            .filter(connections::Column::Id.eq(self.connection.id.as_str()))
            .exec(db)
            .await
            .map_err(db_error)?;
        crate::metrics::token_refresh(
            &self.connection.provider,
            match &outcome {
                Ok(_) => "ok",
                Err(error) if error.kind == ErrorKind::Auth => "refused",
                Err(_) => "failed",
            },
        );
        if let Err(error) = &outcome
            && error.kind == ErrorKind::Auth
        {
            mark_needs_reauth(db, &self.connection.id, &error.message)
                .await
                .map_err(db_error)?;
        }
        outcome
    }

    /// The base every relative path is joined to.
    fn api_base(&self, session: &Session) -> Result<String, CrmError> {
        self.adapter.api_base(self, session)
    }

    /// Sends a request with the connection's auth; a 401 is answered by one refresh and one
    /// resend where the credentials allow it. Network failures and timeouts are transient.
    pub async fn send(&mut self, request: &Request) -> Result<Reply, CrmError> {
        loop {
            let session = self.session().await?;
            let url = if request.path.starts_with("http://") || request.path.starts_with("https://")
            {
                request.path.clone()
            } else {
                format!("{}{}", self.api_base(&session)?, request.path)
            };
            let mut url = url::Url::parse(&url).map_err(|e| {
                CrmError::new(ErrorKind::Permanent, format!("bad vendor URL {url}: {e}"))
            })?;
            if !request.query.is_empty() {
                url.query_pairs_mut().extend_pairs(&request.query);
            }
            crate::net::check_literal(&url, self.connector.vendor_urls)
                .map_err(|e| CrmError::new(ErrorKind::Permanent, e))?;
            let body = request.body.as_ref().map(|b| b.to_string());
            let mut builder = self
                .connector
                .http
                .request(request.method.clone(), url.clone())
                .timeout(self.timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(body) = &body {
                builder = builder
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            for (name, value) in self.auth_headers(&session, body.as_deref().unwrap_or(""))? {
                builder = builder.header(name, value);
            }
            self.trail.sent(&request.method, &url);
            let started = Instant::now();
            let response = builder.send().await;
            let provider = self.connection.provider.as_str();
            let response = match response {
                Ok(response) => response,
                Err(e) => {
                    crate::metrics::crm_request(provider, None, started.elapsed().as_secs_f64());
                    if let Some(refused) = crate::net::refusal(&e) {
                        return Err(CrmError::new(
                            ErrorKind::Permanent,
                            format!("{} {}: {refused}", request.method, redact_url(&url)),
                        ));
                    }
                    let what = if e.is_timeout() {
                        format!("no answer within {} s", self.timeout.as_secs())
                    } else if e.is_connect() {
                        "cannot connect".to_string()
                    } else {
                        "the request failed".to_string()
                    };
                    return Err(CrmError::new(
                        ErrorKind::Transient,
                        format!("{} {}: {what}", request.method, redact_url(&url)),
                    ));
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = match tokio::time::timeout(
                self.timeout
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(1)),
                crate::net::read_text(response, crate::net::ANSWER_LIMIT),
            )
            .await
            {
                Ok(Ok(text)) => text,
                Ok(Err(e)) if e.is_too_large() => {
                    crate::metrics::crm_request(
                        provider,
                        Some(status),
                        started.elapsed().as_secs_f64(),
                    );
                    return Err(CrmError::new(
                        ErrorKind::Permanent,
                        format!("{} {}: {e}", request.method, redact_url(&url)),
                    ));
                }
                _ => {
                    return Err(CrmError::new(
                        ErrorKind::Transient,
                        format!(
                            "{} {}: the answer was cut off",
                            request.method,
                            redact_url(&url)
                        ),
                    ));
                }
            };
            crate::metrics::crm_request(
                &self.connection.provider,
                Some(status),
                started.elapsed().as_secs_f64(),
            );
            tracing::debug!(
                connection_id = %self.connection.id,
                method = %request.method,
                path = url.path(),
                status,
                "vendor call"
            );
            self.trail.status = Some(status);
            let reply = Reply {
                status,
                headers,
                body: text,
            };
            if status == 401 && self.credentials.can_refresh() && !self.refreshed {
                self.refreshed = true;
                let stale = Some(session.access_token.clone());
                self.refresh(stale).await?;
                continue;
            }
            return Ok(reply);
        }
    }

    fn auth_headers(
        &self,
        session: &Session,
        body: &str,
    ) -> Result<Vec<(reqwest::header::HeaderName, HeaderValue)>, CrmError> {
        let bad = |_| {
            CrmError::new(
                ErrorKind::Permanent,
                "a credential is not a valid header value",
            )
        };
        let mut headers = Vec::new();
        let bearer = |token: &str, scheme: &str| -> Result<HeaderValue, CrmError> {
            let mut value = HeaderValue::from_str(&format!("{scheme} {token}")).map_err(bad)?;
            value.set_sensitive(true);
            Ok(value)
        };
        let scheme =
            super::providers::get(&self.connection.provider).map_or("Bearer", |p| p.auth_scheme);
        match &self.credentials {
            Credentials::None => {}
            Credentials::Oauth { .. } => {
                return Err(CrmError::new(
                    ErrorKind::Auth,
                    "the connection is waiting for its OAuth authorization to be completed",
                ));
            }
            Credentials::Token { token } => headers.push((AUTHORIZATION, bearer(token, scheme)?)),
            Credentials::RefreshToken { .. } | Credentials::JwtBearer { .. } => {
                headers.push((AUTHORIZATION, bearer(&session.access_token, scheme)?));
            }
            Credentials::Basic { username, password } => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                headers.push((AUTHORIZATION, bearer(&encoded, "Basic")?));
            }
            Credentials::Header { name, value } => {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| CrmError::new(ErrorKind::Permanent, "bad header name"))?;
                let mut value = HeaderValue::from_str(value).map_err(bad)?;
                value.set_sensitive(true);
                headers.push((name, value));
            }
            Credentials::Hmac { secret, header } => {
                use hmac::{Hmac, Mac};
                let name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| CrmError::new(ErrorKind::Permanent, "bad header name"))?;
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                    .expect("HMAC takes keys of any length");
                mac.update(body.as_bytes());
                let signature = hex::encode(mac.finalize().into_bytes());
                headers.push((name, HeaderValue::from_str(&signature).map_err(bad)?));
            }
        }
        Ok(headers)
    }

    /// Posts a form to a token endpoint (no auth header, no refresh on 401).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Reply, CrmError> {
        let body = serde_urlencoded::to_string(form).expect("a form of strings encodes");
        let parsed = url::Url::parse(url).map_err(|e| {
            CrmError::new(ErrorKind::Permanent, format!("bad token URL {url}: {e}"))
        })?;
        crate::net::check_literal(&parsed, self.connector.vendor_urls)
            .map_err(|e| CrmError::new(ErrorKind::Permanent, e))?;
        let response = self
            .connector
            .http
            .post(parsed.clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if let Some(refused) = crate::net::refusal(&e) {
                    return CrmError::new(
                        ErrorKind::Permanent,
                        format!("token endpoint {}: {refused}", redact_url(&parsed)),
                    );
                }
                let what = if e.is_timeout() {
                    "no answer in time"
                } else {
                    "cannot connect"
                };
                CrmError::new(
                    ErrorKind::Transient,
                    format!("token endpoint {}: {what}", redact_url(&parsed)),
                )
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = crate::net::read_text(response, crate::net::ANSWER_LIMIT)
            .await
            .map_err(|e| match e {
                crate::net::ReadError::TooLarge { .. } => CrmError::new(
                    ErrorKind::Permanent,
                    format!("the token endpoint's answer: {e}"),
                ),
                crate::net::ReadError::Cut(_) => CrmError::new(
                    ErrorKind::Transient,
                    "the token endpoint's answer was cut off",
                ),
            })?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Posts the OAuth `refresh_token` grant with the connection's client to `url`.
    pub async fn refresh_grant(&self, url: &str, vendor: &str) -> Result<Reply, CrmError> {
        let Credentials::RefreshToken {
            client_id,
            client_secret,
            refresh_token,
            ..
        } = &self.credentials
        else {
            return Err(CrmError::new(
                ErrorKind::Auth,
                format!("these {vendor} credentials cannot be refreshed"),
            ));
        };
        // The operator's app (stored on the connection by the OAuth callback) goes only to the
        // vendor's own token endpoint or the operator's, even if the row says otherwise.
        let provider = self.connection.provider.as_str();
        if self.connector.oauth_apps.iter().any(|app| {
            crate::secrets::expose(&app.client_secret) == client_secret.as_str()
                && !(app.provider == provider && app.may_send_to(url))
        }) {
            let shown = url::Url::parse(url).map_or_else(|_| url.to_string(), |u| redact_url(&u));
            return Err(CrmError::new(
                ErrorKind::Auth,
                format!(
                    "this connection gets its tokens from {shown}, where this server's {vendor} \
                     OAuth app is never sent; reconnect it with your own app \
                     (auth.client_id and auth.client_secret)"
                ),
            ));
        }
        self.post_form(
            url,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Merges what was learned into the connection's `vendor_info`.
    pub async fn finish(&mut self) {
        if self.info.is_empty() {
            return;
        }
        let db = &self.connector.db;
        let Ok(Some(row)) = connections::Entity::find_by_id(self.connection.id.clone())
            .one(db)
            .await
        else {
            return;
        };
        let mut info: Map<String, Value> =
            serde_json::from_str(&row.vendor_info).unwrap_or_default();
        info.extend(std::mem::take(&mut self.info));
        let result = connections::Entity::update_many()
            .set(connections::ActiveModel {
                vendor_info: Set(Value::Object(info).to_string()),
                ..Default::default()
            })
            .filter(connections::Column::Id.eq(row.id.as_str()))
            .exec(db)
            .await;
        if let Err(e) = result {
            tracing::warn!(connection_id = %row.id, error = %e, "could not record vendor info");
        }
    }
}

/// The requests one call sent to its vendor, summarised for the delivery's history: method,
/// host and path only (the query and headers, which may carry credentials, are left out).
/// Keeps the first three and the last, so a long conversation stays short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    first: Vec<String>,
    last: Option<String>,
    count: usize,
    /// The status of the latest answer.
    pub status: Option<u16>,
}

impl Trail {
    const FIRST: usize = 3;

    fn sent(&mut self, method: &Method, url: &url::Url) {
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let entry = format!(
            "{method} {}{port}{}",
            url.host_str().unwrap_or(""),
            url.path()
        );
        self.count += 1;
        if self.first.len() < Self::FIRST {
            self.first.push(entry);
        } else {
            self.last = Some(entry);
        }
    }

    /// `POST host/a, GET host/b` (with `… N more …` before the last when there were many),
    /// or `None` when nothing was sent.
    pub fn summary(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut parts = self.first.clone();
        let hidden = self.count - self.first.len() - usize::from(self.last.is_some());
        if hidden > 0 {
            parts.push(format!("… {hidden} more …"));
        }
        parts.extend(self.last.clone());
        Some(parts.join(", "))
    }
}

/// The values of a connection's credentials and current access token that are long enough to
/// be told apart from ordinary text (8 characters or more), longest first: what a vendor's
/// echo of a request must never carry into what Tributary stores or shows.
pub fn credential_values(keyring: &Keyring, connection: &connections::Model) -> Vec<String> {
    use base64::Engine as _;
    let mut values = Vec::new();
    match open_credentials(keyring, connection).unwrap_or(Credentials::None) {
        Credentials::None
        | Credentials::Oauth {
            client_secret: None,
            ..
        } => {}
        Credentials::Oauth {
            client_secret: Some(secret),
            ..
        } => values.push(secret),
        Credentials::Token { token } => values.push(token),
        Credentials::RefreshToken {
            client_secret,
            refresh_token,
            access_token,
            ..
        } => {
            values.extend([client_secret, refresh_token]);
            values.extend(access_token);
        }
        Credentials::JwtBearer { private_key, .. } => values.push(private_key),
        Credentials::Basic { username, password } => {
            values.push(
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            );
            values.push(password);
        }
        Credentials::Header { value, .. } => values.push(value),
        Credentials::Hmac { secret, .. } => values.push(secret),
    }
    if let Some(sealed) = connection.session.as_deref()
        && let Ok(plain) = keyring.open(
            sealed,
            &SecretContext {
                tenant_id: &connection.tenant_id,
                purpose: sealed::CONNECTION_SESSION,
                row_id: &connection.id,
            },
        )
        && let Ok(session) = serde_json::from_str::<Session>(crate::secrets::expose(&plain))
    {
        values.push(session.access_token);
    }
    values.retain(|v| v.chars().count() >= 8);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

/// A URL without its query string (which may carry values a log should not keep).
pub fn redact_url(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path()
}

/// Marks a connection as needing re-authorization; its deliveries wait until it is reconnected.
pub async fn mark_needs_reauth(
    db: &DatabaseConnection,
    connection_id: &str,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            status: Set("needs_reauth".into()),
            status_reason: Set(Some(reason.to_string())),
            updated_at: Set(crate::now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(connections::Column::Status.is_in(["active", "paused"]))
        .exec(db)
        .await?;
    tracing::warn!(connection_id, reason, "connection needs re-authorization");
    Ok(())
}

/// Pauses a connection until `until` (a vendor's daily limit, say); its deliveries wait.
pub async fn pause(
    db: &DatabaseConnection,
    connection_id: &str,
    until: DateTime<Utc>,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            status: Set("paused".into()),
            status_reason: Set(Some(reason.to_string())),
            paused_until: Set(Some(until)),
            updated_at: Set(crate::now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(connections::Column::Status.is_in(["active", "paused"]))
        .exec(db)
        .await?;
    tracing::warn!(connection_id, %until, reason, "connection paused");
    Ok(())
}

/// Holds every call of a connection until `until` (a vendor's `Retry-After`), across all
/// workers, without changing its status. Never shortens a hold already in place.
pub async fn hold(
    db: &DatabaseConnection,
    connection_id: &str,
    until: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            paused_until: Set(Some(until)),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(
            Condition::any()
                .add(connections::Column::PausedUntil.is_null())
                .add(connections::Column::PausedUntil.lt(until)),
        )
        .exec(db)
        .await?;
    Ok(())
}
