//! Test controls of the fake Zoho CRM: starting it, issuing tokens, injecting faults, seeding records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Map, Value};

use super::oauth::serve;
use super::state::field;
use super::{FakeZoho, Shared, State};
use crate::{RequestLog, token};

impl FakeZoho {
    /// Starts the accounts server and the API domain on `127.0.0.1:0`.
    pub fn start() -> FakeZoho {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let accounts = serve(state.clone(), log.clone(), true);
        let api = serve(state.clone(), log.clone(), false);
        {
            let mut s = state.lock().unwrap();
            s.api_domain = api.base_url.clone();
            s.accounts_url = accounts.base_url.clone();
        }
        FakeZoho {
            accounts_url: accounts.base_url.clone(),
            api_domain: api.base_url.clone(),
            log,
            state,
            accounts,
            api,
        }
    }

    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("1000.fake-refresh.");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
    }

    pub fn set_access_token_ttl(&self, seconds: i64) {
        self.state.lock().unwrap().ttl = seconds;
    }

    /// Registers a redirect URI for the fake's OAuth app (the callback Tributary sends).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.state.lock().unwrap().auth.register_redirect_uri(uri);
    }

    /// The user refuses the next authorization request.
    pub fn deny_next_authorization(&self) {
        self.state.lock().unwrap().auth.deny_next();
    }

    /// Query parameters of every authorization request.
    pub fn authorization_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().auth.requests.clone()
    }

    /// Refresh tokens revoked through `/oauth/v2/token/revoke`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Every access token issued so far is invalid from now on.
    pub fn expire_access_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        for expiry in self.state.lock().unwrap().access_tokens.values_mut() {
            *expiry = past;
        }
    }

    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// API calls allowed per day from now on (the count restarts); over them, 429 without
    /// `Retry-After`.
    pub fn set_api_credits(&self, credits: u64) {
        let mut s = self.state.lock().unwrap();
        s.credits = credits;
        s.used = 0;
        s.day_start = Utc::now();
    }

    /// Live access tokens one refresh token may hold at once (Zoho's is 30).
    pub fn set_tokens_per_refresh_token(&self, cap: usize) {
        self.state.lock().unwrap().tokens_per_refresh = cap;
    }

    /// The next `requests` API calls answer 429 with `Retry-After`: an injected fault (the
    /// fake's own credit limit, [`FakeZoho::set_api_credits`], sends none).
    pub fn throttle(&self, requests: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle = requests;
        s.retry_after = retry_after_secs;
    }

    /// Adds a custom field (`text`, `double`, `currency`, `email`, `phone`, `integer`).
    pub fn define_field(&self, module: &str, api_name: &str, data_type: &str) {
        self.state
            .lock()
            .unwrap()
            .modules
            .entry(module.to_string())
            .or_default()
            .insert(api_name.to_string(), field(data_type, false, false));
    }

    /// Seeds a record without checks; returns its id.
    pub fn insert(&self, module: &str, fields: Value) -> String {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().insert(module, fields)
    }

    pub fn records(&self, module: &str) -> Vec<Map<String, Value>> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(module)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn stop(&self) {
        self.accounts.stop().await;
        self.api.stop().await;
    }
}
