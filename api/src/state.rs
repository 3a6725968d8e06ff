//! The state every request handler shares: the database, the keys, the queue and inbox, the
//! embedded worker, and the in-process caches and limits. A leaf of the api: handlers,
//! extractors and middleware read it; it knows nothing of routes.

use std::sync::Arc;

use anyhow::Context;
use sea_orm::DatabaseConnection;

use crate::auth::passwords;
use crate::auth::tokens::JwtKeys;
use tributary_worker::queue::Queue;
use tributary_worker::runtime::Runtime;
use tributary_worker::secrets::{self, Keyring};
use tributary_worker::settings::Settings;

/// Everything a request handler may need, shared by all workers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub keyring: Arc<Keyring>,
    pub jwt: JwtKeys,
    /// Verified against when a login names an unknown email (equal timing).
    pub dummy_password_hash: String,
    /// Bounds concurrent argon2 work (memory): every hash and password check goes through it.
    pub password_work: passwords::PasswordWork,
    /// Where events are queued.
    pub queue: Queue,
    /// Stores verified webhooks, many to a commit (`TRIBUTARY_INGEST_MAX_PENDING` waiting).
    pub inbox: tributary_worker::inbox::GroupCommit,
    /// The embedded worker and sweeper, running as long as the state lives.
    pub pipeline: Runtime,
    /// For calls the api makes itself (test events through the real ingress).
    pub http: reqwest::Client,
    /// Stripe accounts by webhook token, briefly, for the ingress.
    pub webhook_accounts: crate::services::account_cache::AccountCache,
    /// Verified webhook events per Stripe account, in this process (`TRIBUTARY_WEBHOOK_RATE`).
    pub webhook_rate: crate::services::limits::RateLimiter,
    /// Previews and validations per tenant (`TRIBUTARY_PREVIEW_RATE`).
    pub preview_rate: crate::services::limits::RateLimiter,
}

/// Loads the keyring from `TRIBUTARY_ENCRYPTION_KEYS`, or the generated key file.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    secrets::load_keyring(settings)
}

fn load_jwt(settings: &Settings) -> anyhow::Result<JwtKeys> {
    let (secret, _) = secrets::configured_or_generated(
        &settings.jwt_secret,
        settings,
        "JWT secret",
        "TRIBUTARY_JWT_SECRET",
        secrets::load_or_create_jwt_file,
    )?;
    JwtKeys::new(&secret, settings.access_token_ttl)
}

impl AppState {
    /// What talks to the vendors (the guarded HTTP client, the operator's OAuth apps): the
    /// OAuth flow, revocation and connection tests use the worker's, never one of their own.
    pub fn connector(&self) -> &tributary_worker::crm::Connector {
        &self.pipeline.engine.crm
    }

    /// Opens the database (migrating it if configured) and loads the keys.
    pub async fn build(settings: Settings) -> anyhow::Result<AppState> {
        let keyring = load_keyring(&settings)?;
        let jwt = load_jwt(&settings)?;
        let db = tributary_worker::db::connect_pooled(
            &settings.database_url,
            settings.database_pool_size,
        )
        .await?;
        if settings.auto_migrate {
            tributary_worker::db::migrate(&db).await?;
        }
        let dummy_password_hash = tokio::task::spawn_blocking(passwords::dummy_hash).await?;
        let password_work = passwords::PasswordWork::sized_from_memory();
        tracing::info!(
            concurrent = password_work.size(),
            "password hashing bounded by memory"
        );
        let keyring = Arc::new(keyring);
        let pipeline = Runtime::start(
            &settings,
            db.clone(),
            settings.embedded_worker,
            "api",
            keyring.clone(),
        )
        .await?;
        let webhook_rate = crate::services::limits::RateLimiter::new(settings.limits.webhook_rate);
        let preview_rate = crate::services::limits::RateLimiter::new(settings.limits.preview_rate);
        let inbox = tributary_worker::inbox::GroupCommit::start(
            db.clone(),
            pipeline.queue.clone(),
            settings.limits.ingest_max_pending,
            settings.limits.ingest_max_backlog,
        );
        Ok(AppState {
            inbox,
            db,
            settings: Arc::new(settings),
            keyring,
            jwt,
            dummy_password_hash,
            password_work,
            queue: pipeline.queue.clone(),
            pipeline,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
            webhook_accounts: Default::default(),
            webhook_rate,
            preview_rate,
        })
    }
}
