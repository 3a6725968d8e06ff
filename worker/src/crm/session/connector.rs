//! The connector every vendor call shares: the database, keys, HTTP client and refresh locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::secrets::Keyring;
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
    /// The connections' rate budgets, shared with every other process.
    pub budgets: Arc<crate::budget::Budgets>,
    /// The single-record writes waiting to share a batch call (this process's).
    pub batches: Arc<super::batch::Batches>,
    /// How long a batch's leader waits for its batch to fill while its group is busy.
    pub batch_linger: Duration,
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
            budgets: Arc::new(crate::budget::Budgets::in_database(db.clone())),
            batches: Arc::default(),
            batch_linger: Duration::ZERO,
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

    /// Rate budgets kept elsewhere than the database (Redis, when the queue is Redis).
    pub fn with_budgets(mut self, budgets: Arc<crate::budget::Budgets>) -> Self {
        self.budgets = budgets;
        self
    }

    /// How long a batch's leader waits for its batch to fill while its group is busy
    /// (`TRIBUTARY_BATCH_LINGER`; zero: never).
    pub fn with_batch_linger(mut self, linger: Duration) -> Self {
        self.batch_linger = linger;
        self
    }

    /// Private CAs (DER) the TLS of `smtp` connections trusts besides the webpki roots.
    pub fn with_extra_ca_certs(mut self, certs: Vec<Vec<u8>>) -> Self {
        self.extra_ca_certs = certs;
        self
    }

    pub(super) fn lock_for(&self, connection_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(connection_id.to_string()).or_default().clone()
    }
}
