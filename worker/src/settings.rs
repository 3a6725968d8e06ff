//! Configuration from the environment (DESIGN.md Configuration is the contract). Parsing
//! happens once at start-up; a bad value stops the process with a message naming the variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

mod values;

pub use values::{Cidr, Rate, canonical_ip};

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub message: String,
}

fn bad(variable: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which hosts a tenant's connection may point at (an SSRF guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorUrls {
    /// Unsafe, for development: any address, the internal network and loopback included.
    Any,
    /// Public addresses only (and the vendors' own hosts for vendor connections); the default.
    Official,
}

#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// Debug output redacts the passwords of the database and queue URLs and every secret.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Base of the webhook URLs handed to tenants, without a trailing slash.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `None`: the queue lives in the database.
    pub queue_url: Option<String>,
    /// `None`: a key file generated in the data directory.
    pub encryption_keys: Option<SecretString>,
    /// `None`: a secret file generated in the data directory.
    pub jwt_secret: Option<SecretString>,
    pub embedded_worker: bool,
    /// Whether this process runs the CRM watcher (`TRIBUTARY_CRM_WATCHER`); the watcher's
    /// lease lets one process poll at a time either way.
    pub crm_watcher: bool,
    pub signup_open: bool,
    /// Sign-ups allowed per client address (`TRIBUTARY_SIGNUP_RATE`).
    pub signup_rate: Rate,
    /// Peers whose `X-Forwarded-For` is believed (`TRIBUTARY_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<Cidr>,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub vendor_urls: VendorUrls,
    pub oauth_success_url: Option<String>,
    pub retry: RetrySettings,
    /// Run pending migrations at start-up.
    pub auto_migrate: bool,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Largest JSON request body the REST API accepts.
    pub max_body_bytes: usize,
    /// Jobs one worker process runs at once.
    pub worker_concurrency: usize,
    /// How long a batch's leader under backlog waits for its batch to fill (zero: never).
    pub batch_linger: Duration,
    /// Database connections one process opens at most (`TRIBUTARY_DATABASE_POOL_SIZE`); unset,
    /// 20 on Postgres and 1 on SQLite.
    pub database_pool_size: Option<u32>,
    /// How often the sweeper looks for events that were kept but never queued, or lost.
    pub sweep_interval: Duration,
    /// How long an event may sit unqueued or overdue before the sweeper re-enqueues it.
    pub sweep_grace: Duration,
    /// Prefix of the queue's keys on Redis, so installations can share one server.
    pub queue_namespace: String,
    /// The operator's OAuth apps, by provider, for tenants that bring none of their own.
    pub oauth_apps: Vec<OAuthApp>,
    /// How long a stopping process lets the jobs in hand finish.
    pub shutdown_grace: Duration,
    /// Where the standalone `worker` serves `/healthz`, `/readyz` and `/metrics`; `None`: off.
    pub worker_listen: Option<SocketAddr>,
    /// `TRIBUTARY_METRICS_TOKEN`: the bearer token the api's `/metrics` asks for; unset, the
    /// api serves no metrics on its public port.
    pub metrics_token: Option<SecretString>,
    /// How often alert conditions are checked.
    pub alert_interval: Duration,
    /// An alert for one condition goes to a channel at most once in this period.
    pub alert_period: Duration,
    /// Stripe's API (a fake in tests).
    pub stripe_api_url: String,
    /// How often each account with a secret key is reconciled against Stripe's events.
    pub reconcile_interval: Duration,
    /// How far back a reconciliation looks for events whose webhook failed.
    pub reconcile_window: Duration,
    /// Events per page a backfill asks Stripe for (1 to 100).
    pub backfill_page_size: u32,
    /// How many jobs of one tenant a process runs at once (`TRIBUTARY_TENANT_MAX_IN_FLIGHT`,
    /// default half of `TRIBUTARY_WORKER_CONCURRENCY`, at least 1); its further jobs wait.
    pub tenant_max_in_flight: usize,
    /// Test-only fault hooks (`TRIBUTARY_TEST_FAULTS`, off). Never turn on in production.
    pub test_faults: bool,
    /// What one tenant may create and send (`TRIBUTARY_MAX_*`, `TRIBUTARY_WEBHOOK_RATE`).
    pub limits: Limits,
    /// How long finished events (with their raw bodies) and their deliveries are kept.
    pub retention: Duration,
    /// How long audit log entries are kept.
    pub audit_retention: Duration,
    /// How often the retention loop prunes what is past its time.
    pub retention_interval: Duration,
    /// `TRIBUTARY_EXTRA_CA_CERTS`: certificates (DER) of private CAs trusted, besides the
    /// webpki roots, for the TLS of `smtp` connections; empty when unset.
    pub extra_ca_certs: Vec<Vec<u8>>,
}

/// Per-tenant limits an operator can raise or lower. Over one, a request is refused naming the
/// field and the variable; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Flows per tenant (`TRIBUTARY_MAX_FLOWS`).
    pub max_flows: u64,
    /// Steps in one flow (`TRIBUTARY_MAX_STEPS_PER_FLOW`).
    pub max_steps_per_flow: usize,
    /// Connections per tenant (`TRIBUTARY_MAX_CONNECTIONS`).
    pub max_connections: u64,
    /// Verified webhook events per Stripe account (`TRIBUTARY_WEBHOOK_RATE`), per replica.
    pub webhook_rate: Rate,
    /// Flow previews and validations per tenant (`TRIBUTARY_PREVIEW_RATE`), per replica.
    pub preview_rate: Rate,
    /// Deliveries or events one bulk retry or replay may cover (`TRIBUTARY_MAX_BULK_ITEMS`).
    pub max_bulk_items: u64,
    /// Webhooks waiting for their commit at once, per replica (`TRIBUTARY_INGEST_MAX_PENDING`);
    /// more are answered 503 with `Retry-After`.
    pub ingest_max_pending: usize,
    /// A tenant's events due and not yet processed past which its webhooks are answered 503
    /// (`TRIBUTARY_INGEST_MAX_BACKLOG`; 0: never).
    pub ingest_max_backlog: u64,
}

/// An OAuth client app registered with a vendor (`TRIBUTARY_OAUTH_<PROVIDER>_CLIENT_ID` and
/// `_CLIENT_SECRET`). Debug never shows the secret.
#[derive(Clone)]
pub struct OAuthApp {
    pub provider: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Where else the operator lets this app obtain tokens, besides the vendor's own endpoints:
    /// a value of the connection setting that names the token endpoint (HubSpot `token_url`,
    /// Salesforce `login_url`, Zoho `accounts_url`), from `TRIBUTARY_OAUTH_HUBSPOT_TOKEN_URL`,
    /// `TRIBUTARY_OAUTH_SALESFORCE_LOGIN_URL` or `TRIBUTARY_OAUTH_ZOHO_ACCOUNTS_URL`.
    pub token_endpoint: Option<String>,
}

impl OAuthApp {
    /// Whether this app's secret may be sent to `token_url`: one of the vendor's own token
    /// endpoints, or the one the operator configured. Never a URL a tenant chose.
    pub fn may_send_to(&self, token_url: &str) -> bool {
        crate::crm::providers::operator_token_urls(&self.provider, self.token_endpoint.as_deref())
            .iter()
            .any(|allowed| allowed == token_url.trim_end_matches('/'))
    }
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("token_endpoint", &self.token_endpoint)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("database_url", &crate::db::redact(&self.database_url))
            .field(
                "queue_url",
                &self.queue_url.as_deref().map(crate::db::redact),
            )
            .field(
                "encryption_keys",
                &self.encryption_keys.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("embedded_worker", &self.embedded_worker)
            .field("crm_watcher", &self.crm_watcher)
            .field("signup_open", &self.signup_open)
            .field("signup_rate", &self.signup_rate)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("log_format", &self.log_format)
            .field("vendor_urls", &self.vendor_urls)
            .field("retry", &self.retry)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("database_pool_size", &self.database_pool_size)
            .field("tenant_max_in_flight", &self.tenant_max_in_flight)
            .field("test_faults", &self.test_faults)
            .field("oauth_apps", &self.oauth_apps)
            .field("worker_listen", &self.worker_listen)
            .field("extra_ca_certs", &self.extra_ca_certs.len())
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let (listen, public_url, data_dir) = read_server(&get)?;
        let (database_url, queue_url) = read_database_and_queue(&get, &data_dir)?;
        let (encryption_keys, jwt_secret) = read_secrets(&get)?;

        let embedded_worker = parse_bool("TRIBUTARY_EMBEDDED_WORKER", get, true)?;
        let crm_watcher = parse_bool("TRIBUTARY_CRM_WATCHER", get, true)?;
        let auto_migrate = parse_bool("TRIBUTARY_AUTO_MIGRATE", get, true)?;

        let (signup_open, signup_rate, trusted_proxies) = read_signup(&get)?;
        let (log_filter, log_format) = read_logging(&get)?;
        let vendor_urls = read_vendor_urls(&get)?;

        let oauth_success_url = get("TRIBUTARY_OAUTH_SUCCESS_URL")
            .map(|raw| parse_http_url("TRIBUTARY_OAUTH_SUCCESS_URL", &raw))
            .transpose()?;
        let oauth_apps = read_oauth_apps(&get)?;
        let retry = read_retry(&get)?;

        let access_token_ttl = parse_duration("TRIBUTARY_ACCESS_TOKEN_TTL", get, "15m")?;
        let refresh_token_ttl = parse_duration("TRIBUTARY_REFRESH_TOKEN_TTL", get, "30days")?;
        let (worker_concurrency, database_pool_size, tenant_max_in_flight) =
            read_concurrency(&get)?;
        let batch_linger = match get("TRIBUTARY_BATCH_LINGER").as_deref().map(str::trim) {
            Some("off") => Duration::ZERO,
            _ => parse_duration("TRIBUTARY_BATCH_LINGER", get, "1s")?,
        };
        let test_faults = parse_bool("TRIBUTARY_TEST_FAULTS", get, false)?;
        let sweep_interval = parse_duration("TRIBUTARY_SWEEP_INTERVAL", get, "5s")?;
        let sweep_grace = parse_duration("TRIBUTARY_SWEEP_GRACE", get, "60s")?;
        let shutdown_grace = parse_duration("TRIBUTARY_SHUTDOWN_GRACE", get, "30s")?;
        let (worker_listen, metrics_token) = read_monitoring(&get)?;
        let alert_interval = parse_duration("TRIBUTARY_ALERT_INTERVAL", get, "30s")?;
        let alert_period = parse_duration("TRIBUTARY_ALERT_PERIOD", get, "1h")?;
        let (stripe_api_url, reconcile_interval, reconcile_window, backfill_page_size) =
            read_stripe(&get)?;
        let limits = read_limits(&get)?;
        let retention = parse_duration("TRIBUTARY_RETENTION", get, "90days")?;
        let audit_retention = parse_duration("TRIBUTARY_AUDIT_RETENTION", get, "365days")?;
        let retention_interval = parse_duration("TRIBUTARY_RETENTION_INTERVAL", get, "10m")?;
        let queue_namespace = read_queue_namespace(&get)?;

        let extra_ca_certs = match get("TRIBUTARY_EXTRA_CA_CERTS") {
            Some(path) => read_ca_certs("TRIBUTARY_EXTRA_CA_CERTS", &path)?,
            None => Vec::new(),
        };

        Ok(Settings {
            listen,
            public_url,
            data_dir,
            database_url,
            queue_url,
            encryption_keys,
            jwt_secret,
            embedded_worker,
            crm_watcher,
            signup_open,
            signup_rate,
            trusted_proxies,
            log_filter,
            log_format,
            vendor_urls,
            oauth_success_url,
            retry,
            auto_migrate,
            access_token_ttl,
            refresh_token_ttl,
            max_body_bytes: 256 * 1024,
            worker_concurrency,
            batch_linger,
            database_pool_size,
            sweep_interval,
            sweep_grace,
            queue_namespace,
            oauth_apps,
            shutdown_grace,
            worker_listen,
            metrics_token,
            alert_interval,
            alert_period,
            stripe_api_url,
            reconcile_interval,
            reconcile_window,
            backfill_page_size,
            tenant_max_in_flight,
            test_faults,
            limits,
            retention,
            audit_retention,
            retention_interval,
            extra_ca_certs,
        })
    }
}

/// How the parser reads one variable: its value, or `None` when it is unset or blank.
type Get<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The listen address, the public URL (by default from the listen address) and the data
/// directory.
fn read_server(get: Get) -> Result<(SocketAddr, String, PathBuf), SettingsError> {
    let listen_raw = get("TRIBUTARY_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_raw.parse().map_err(|_| {
        bad(
            "TRIBUTARY_LISTEN",
            format!("'{listen_raw}' is not a socket address such as 127.0.0.1:8080"),
        )
    })?;

    let public_url = match get("TRIBUTARY_PUBLIC_URL") {
        Some(raw) => parse_http_url("TRIBUTARY_PUBLIC_URL", &raw)?,
        None => format!("http://{listen}"),
    };

    let data_dir = PathBuf::from(get("TRIBUTARY_DATA_DIR").unwrap_or_else(|| "./data".into()));
    Ok((listen, public_url, data_dir))
}

/// The database URL (by default a SQLite file in the data directory) and the queue URL
/// (`None`: the queue lives in the database).
fn read_database_and_queue(
    get: Get,
    data_dir: &std::path::Path,
) -> Result<(String, Option<String>), SettingsError> {
    let database_url = match get("DATABASE_URL") {
        Some(url) => {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(bad(
                    "DATABASE_URL",
                    "must start with sqlite:// or postgres://",
                ));
            }
            url
        }
        None => format!("sqlite://{}/tributary.db?mode=rwc", data_dir.display()),
    };

    let queue_url = match get("TRIBUTARY_QUEUE_URL") {
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => Some(url),
        Some(url) if url == database_url => None,
        Some(_) => {
            return Err(bad(
                "TRIBUTARY_QUEUE_URL",
                "must be a redis:// URL (leave it unset to keep the queue in the database)",
            ));
        }
        None => None,
    };
    Ok((database_url, queue_url))
}

/// The encryption keys, then the JWT secret; `None` for either means a file generated in the
/// data directory.
fn read_secrets(get: Get) -> Result<(Option<SecretString>, Option<SecretString>), SettingsError> {
    let encryption_keys = get("TRIBUTARY_ENCRYPTION_KEYS").map(SecretString::from);
    let jwt_secret = match get("TRIBUTARY_JWT_SECRET") {
        Some(secret) if secret.len() < 32 => {
            return Err(bad(
                "TRIBUTARY_JWT_SECRET",
                "must be at least 32 characters of random data",
            ));
        }
        other => other.map(SecretString::from),
    };
    Ok((encryption_keys, jwt_secret))
}

/// Whether sign-up is open, the sign-up rate per client address, and the proxies whose
/// `X-Forwarded-For` names that address.
fn read_signup(get: Get) -> Result<(bool, Rate, Vec<Cidr>), SettingsError> {
    let signup_open = match get("TRIBUTARY_SIGNUP").as_deref() {
        None | Some("open") => true,
        Some("closed") => false,
        Some(other) => {
            return Err(bad(
                "TRIBUTARY_SIGNUP",
                format!("'{other}' is neither 'open' nor 'closed'"),
            ));
        }
    };

    let signup_rate = match get("TRIBUTARY_SIGNUP_RATE") {
        Some(raw) => Rate::parse(&raw).ok_or_else(|| {
            bad(
                "TRIBUTARY_SIGNUP_RATE",
                format!("'{raw}' is not a rate such as 10/hour (N/second, N/minute or N/hour, N at least 1)"),
            )
        })?,
        None => Rate {
            count: 10,
            period: Duration::from_secs(3600),
        },
    };
    let trusted_proxies = match get("TRIBUTARY_TRUSTED_PROXIES") {
        Some(raw) => raw
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                Cidr::parse(part).ok_or_else(|| {
                    bad(
                        "TRIBUTARY_TRUSTED_PROXIES",
                        format!("'{part}' is not an address or CIDR such as 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok((signup_open, signup_rate, trusted_proxies))
}

/// The log filter and the log format.
fn read_logging(get: Get) -> Result<(String, LogFormat), SettingsError> {
    let log_filter = get("RUST_LOG").unwrap_or_else(|| "info".into());
    let log_format = match get("TRIBUTARY_LOG_FORMAT").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(bad(
                "TRIBUTARY_LOG_FORMAT",
                format!("'{other}' is neither 'text' nor 'json'"),
            ));
        }
    };
    Ok((log_filter, log_format))
}

/// Which hosts a tenant's connection may point at.
fn read_vendor_urls(get: Get) -> Result<VendorUrls, SettingsError> {
    match get("TRIBUTARY_VENDOR_URLS").as_deref() {
        Some("any") => Ok(VendorUrls::Any),
        None | Some("official") => Ok(VendorUrls::Official),
        Some(other) => Err(bad(
            "TRIBUTARY_VENDOR_URLS",
            format!("'{other}' is neither 'any' nor 'official'"),
        )),
    }
}

/// The operator's OAuth apps, one for each provider whose client ID and secret are both set.
fn read_oauth_apps(get: Get) -> Result<Vec<OAuthApp>, SettingsError> {
    let mut oauth_apps = Vec::new();
    let with_oauth = crate::crm::providers::ALL
        .iter()
        .filter_map(|p| Some((p.name, p.oauth?.operator_env)));
    for (provider, [id_var, secret_var, endpoint_var]) in with_oauth {
        let token_endpoint = get(endpoint_var)
            .map(|raw| parse_http_url(endpoint_var, &raw))
            .transpose()?;
        match (get(id_var), get(secret_var)) {
            (Some(client_id), Some(secret)) => oauth_apps.push(OAuthApp {
                provider: provider.to_string(),
                client_id,
                client_secret: SecretString::from(secret),
                token_endpoint,
            }),
            (None, None) if token_endpoint.is_some() => {
                return Err(bad(
                    endpoint_var,
                    format!("is only used with {id_var} and {secret_var}"),
                ));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(bad(secret_var, format!("is required when {id_var} is set")));
            }
            (None, Some(_)) => {
                return Err(bad(id_var, format!("is required when {secret_var} is set")));
            }
        }
    }
    Ok(oauth_apps)
}

/// How often and how far apart failed deliveries are retried.
fn read_retry(get: Get) -> Result<RetrySettings, SettingsError> {
    let max_attempts = match get("TRIBUTARY_RETRY_MAX_ATTEMPTS") {
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                bad(
                    "TRIBUTARY_RETRY_MAX_ATTEMPTS",
                    format!("'{raw}' is not a whole number from 1 to 100"),
                )
            })?,
        None => 8,
    };
    let base_delay = parse_duration("TRIBUTARY_RETRY_BASE_DELAY", get, "5s")?;
    let max_delay = parse_duration("TRIBUTARY_RETRY_MAX_DELAY", get, "1h")?;
    if max_delay < base_delay {
        return Err(bad(
            "TRIBUTARY_RETRY_MAX_DELAY",
            "must not be shorter than TRIBUTARY_RETRY_BASE_DELAY",
        ));
    }
    Ok(RetrySettings {
        max_attempts,
        base_delay,
        max_delay,
    })
}

/// The worker's concurrency, the database pool size, then the jobs one tenant may run at once.
fn read_concurrency(get: Get) -> Result<(usize, Option<u32>, usize), SettingsError> {
    let worker_concurrency = match get("TRIBUTARY_WORKER_CONCURRENCY") {
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| {
                bad(
                    "TRIBUTARY_WORKER_CONCURRENCY",
                    format!("'{raw}' is not a whole number from 1 to 256"),
                )
            })?,
        None => 32,
    };
    let database_pool_size = match get("TRIBUTARY_DATABASE_POOL_SIZE") {
        Some(_) => Some(parse_count("TRIBUTARY_DATABASE_POOL_SIZE", get, 1, 1_000)? as u32),
        None => None,
    };
    let tenant_max_in_flight = match get("TRIBUTARY_TENANT_MAX_IN_FLIGHT") {
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=worker_concurrency).contains(n))
            .ok_or_else(|| {
                bad(
                    "TRIBUTARY_TENANT_MAX_IN_FLIGHT",
                    format!(
                        "'{raw}' is not a whole number from 1 to TRIBUTARY_WORKER_CONCURRENCY ({worker_concurrency})"
                    ),
                )
            })?,
        None => (worker_concurrency / 2).max(1),
    };
    Ok((worker_concurrency, database_pool_size, tenant_max_in_flight))
}

/// Where the standalone worker serves health and metrics, and the api's metrics token.
fn read_monitoring(get: Get) -> Result<(Option<SocketAddr>, Option<SecretString>), SettingsError> {
    let worker_listen = match get("TRIBUTARY_WORKER_LISTEN").as_deref() {
        Some("off") => None,
        raw => {
            let raw = raw.unwrap_or("127.0.0.1:9090");
            Some(raw.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "TRIBUTARY_WORKER_LISTEN",
                    format!("'{raw}' is not host:port such as 0.0.0.0:9090, or off"),
                )
            })?)
        }
    };
    let metrics_token = match get("TRIBUTARY_METRICS_TOKEN").filter(|t| !t.is_empty()) {
        Some(token) if token.len() < 16 || token.chars().any(|c| c.is_whitespace()) => {
            return Err(bad(
                "TRIBUTARY_METRICS_TOKEN",
                "must be at least 16 characters without spaces (e.g. openssl rand -hex 24)",
            ));
        }
        Some(token) => Some(SecretString::from(token)),
        None => None,
    };
    Ok((worker_listen, metrics_token))
}

/// Stripe's API URL, the reconciliation interval and window, and the backfill page size.
fn read_stripe(get: Get) -> Result<(String, Duration, Duration, u32), SettingsError> {
    let stripe_api_url = match get("TRIBUTARY_STRIPE_API_URL") {
        Some(raw) => parse_http_url("TRIBUTARY_STRIPE_API_URL", &raw)?,
        None => "https://api.stripe.com".into(),
    };
    let reconcile_interval = parse_duration("TRIBUTARY_RECONCILE_INTERVAL", get, "1h")?;
    let reconcile_window = parse_duration("TRIBUTARY_RECONCILE_WINDOW", get, "24h")?;
    let backfill_page_size = match get("TRIBUTARY_BACKFILL_PAGE_SIZE") {
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(bad(
                    "TRIBUTARY_BACKFILL_PAGE_SIZE",
                    format!("'{raw}' is not a whole number from 1 to 100"),
                ));
            }
        },
        None => 100,
    };
    if reconcile_window > Duration::from_secs(30 * 86_400) {
        return Err(bad(
            "TRIBUTARY_RECONCILE_WINDOW",
            "must be at most 30 days: Stripe lists events of the last 30 days only",
        ));
    }
    Ok((
        stripe_api_url,
        reconcile_interval,
        reconcile_window,
        backfill_page_size,
    ))
}

/// What one tenant may create and send.
fn read_limits(get: Get) -> Result<Limits, SettingsError> {
    Ok(Limits {
        max_flows: parse_count("TRIBUTARY_MAX_FLOWS", get, 100, 1_000_000)?,
        max_steps_per_flow: parse_count("TRIBUTARY_MAX_STEPS_PER_FLOW", get, 50, 10_000)? as usize,
        max_connections: parse_count("TRIBUTARY_MAX_CONNECTIONS", get, 50, 1_000_000)?,
        webhook_rate: parse_rate("TRIBUTARY_WEBHOOK_RATE", get, "100/second")?,
        preview_rate: parse_rate("TRIBUTARY_PREVIEW_RATE", get, "60/minute")?,
        max_bulk_items: parse_count("TRIBUTARY_MAX_BULK_ITEMS", get, 10_000, 100_000)?,
        ingest_max_pending: parse_count("TRIBUTARY_INGEST_MAX_PENDING", get, 1024, 1_000_000)?
            as usize,
        ingest_max_backlog: match get("TRIBUTARY_INGEST_MAX_BACKLOG")
            .as_deref()
            .map(str::trim)
        {
            Some("0") => 0,
            _ => parse_count("TRIBUTARY_INGEST_MAX_BACKLOG", get, 10_000, 100_000_000)?,
        },
    })
}

/// The prefix of the queue's keys on Redis: letters, digits, '-', '_' and '.' only.
fn read_queue_namespace(get: Get) -> Result<String, SettingsError> {
    let queue_namespace = get("TRIBUTARY_QUEUE_NAMESPACE").unwrap_or_else(|| "tributary".into());
    if !queue_namespace
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad(
            "TRIBUTARY_QUEUE_NAMESPACE",
            "may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(queue_namespace)
}

/// The certificates of a PEM file, as DER; at least one, each well-formed.
fn read_ca_certs(variable: &'static str, path: &str) -> Result<Vec<Vec<u8>>, SettingsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem =
        std::fs::read(path).map_err(|e| bad(variable, format!("'{path}' cannot be read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(
                variable,
                format!("'{path}' is not a PEM file of certificates: {e}"),
            )
        })?;
    let mut store = rustls::RootCertStore::empty();
    for der in &certs {
        store
            .add(CertificateDer::from(der.as_slice()))
            .map_err(|e| {
                bad(
                    variable,
                    format!("'{path}' holds a certificate that cannot be trusted as a CA: {e}"),
                )
            })?;
    }
    if certs.is_empty() {
        return Err(bad(variable, format!("'{path}' holds no PEM certificate")));
    }
    Ok(certs)
}

fn parse_count(
    variable: &'static str,
    get: impl Fn(&str) -> Option<String>,
    default: u64,
    max: u64,
) -> Result<u64, SettingsError> {
    match get(variable) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                bad(
                    variable,
                    format!("'{raw}' is not a whole number from 1 to {max}"),
                )
            }),
    }
}

/// `N/second`, `N/minute` or `N/hour`, N at least 1.
fn parse_rate(
    variable: &'static str,
    get: impl Fn(&str) -> Option<String>,
    default: &str,
) -> Result<Rate, SettingsError> {
    let raw = get(variable).unwrap_or_else(|| default.to_string());
    Rate::parse(&raw).ok_or_else(|| {
        bad(
            variable,
            format!("'{raw}' is not a rate such as 100/second, 600/minute or 1000/hour"),
        )
    })
}

fn parse_http_url(variable: &'static str, raw: &str) -> Result<String, SettingsError> {
    let url =
        url::Url::parse(raw).map_err(|e| bad(variable, format!("'{raw}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(variable, format!("'{raw}' is not an http(s) URL")));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

fn parse_bool(
    variable: &'static str,
    get: impl Fn(&str) -> Option<String>,
    default: bool,
) -> Result<bool, SettingsError> {
    match get(variable).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(bad(variable, format!("'{other}' is not true or false"))),
    }
}

fn parse_duration(
    variable: &'static str,
    get: impl Fn(&str) -> Option<String>,
    default: &str,
) -> Result<Duration, SettingsError> {
    let raw = get(variable).unwrap_or_else(|| default.to_string());
    let duration = humantime::parse_duration(&raw).map_err(|e| {
        bad(
            variable,
            format!("'{raw}' is not a duration such as 5s or 1h: {e}"),
        )
    })?;
    if duration.is_zero() {
        return Err(bad(variable, "must be longer than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests;
