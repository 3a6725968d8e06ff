//! Test controls of the fake HubSpot: starting it, issuing tokens, injecting faults, seeding records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::Value;

use super::routes::handle;
use super::state::plural;
use super::{FakeHubSpot, Limits, Property, Record, Shared, State};
use crate::{RequestLog, Served, token};

impl FakeHubSpot {
    /// Starts the fake on `127.0.0.1:0` on the current tokio runtime.
    pub fn start() -> FakeHubSpot {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let handler_state = state.clone();
        let served = Served::answering(log.clone(), move |req, body| {
            handle(&handler_state, req, body)
        });
        FakeHubSpot {
            base_url: served.base_url.clone(),
            log,
            state,
            served,
        }
    }

    /// The next install goes into `portal`, as if the person picked that account on HubSpot's
    /// install page.
    pub fn install_into(&self, portal: u64) {
        self.state.lock().unwrap().portal = portal;
    }

    /// A valid OAuth refresh token for [`CLIENT_ID`].
    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("na1-fake-refresh-");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_access_token_ttl(&self, seconds: i64) {
        self.state.lock().unwrap().ttl = seconds;
    }

    /// Every OAuth access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        for expiry in self.state.lock().unwrap().access_tokens.values_mut() {
            *expiry = past;
        }
    }

    /// Every refresh token issued so far is refused from now on.
    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
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

    /// Refresh tokens revoked through `DELETE /oauth/v1/refresh-tokens/{token}`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// The next `requests` CRM API requests answer 429 with `Retry-After`: an injected fault
    /// (HubSpot's own limits, [`FakeHubSpot::set_rate_limits`], send no `Retry-After`).
    pub fn throttle(&self, requests: usize, retry_after_secs: u64) {
        let mut s = self.state.lock().unwrap();
        s.throttle = requests;
        s.retry_after = retry_after_secs;
    }

    /// The API limits: `max` requests per `interval_ms`, `daily` per day; the counts restart.
    pub fn set_rate_limits(&self, max: u64, interval_ms: u64, daily: u64) {
        let mut s = self.state.lock().unwrap();
        s.limits = Limits::new();
        s.limits.max = max;
        s.limits.interval_ms = interval_ms;
        s.limits.daily = daily;
    }

    /// Requests that came while a `Retry-After` the fake had announced was still pending, more
    /// than a quarter second after it was announced (before, they were on their way).
    pub fn early_requests(&self) -> u64 {
        self.state.lock().unwrap().limits.early
    }

    /// The scopes every token holds from now on (by default, all).
    pub fn grant_scopes(&self, scopes: &[&str]) {
        self.state.lock().unwrap().scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
    }

    /// Adds a property to an object; a unique one can be an upsert's `idProperty`.
    pub fn define_property(&self, object: &str, name: &str, unique: bool) {
        let object = plural(object).expect("a known object type");
        self.state
            .lock()
            .unwrap()
            .properties
            .get_mut(object)
            .unwrap()
            .insert(name.to_string(), Property { unique });
    }

    /// Seeds a record; returns its id.
    pub fn insert(&self, object: &str, properties: Value) -> String {
        let object = plural(object).expect("a known object type");
        let properties = properties.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().insert(object, properties).id
    }

    /// The records of an object, in creation order.
    pub fn records(&self, object: &str) -> Vec<Record> {
        let object = plural(object).expect("a known object type");
        self.state
            .lock()
            .unwrap()
            .records
            .get(object)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut r| {
                r.properties.remove("createdate");
                r
            })
            .collect()
    }

    /// Associates two records, as HubSpot's app does when a person adds a line item to a deal.
    pub fn associate(&self, from: &str, from_id: &str, to: &str, to_id: &str) {
        let (from, to) = (
            plural(from).expect("a known object type"),
            plural(to).expect("a known object type"),
        );
        self.state.lock().unwrap().associations.push((
            from.to_string(),
            from_id.to_string(),
            to.to_string(),
            to_id.to_string(),
        ));
    }

    /// (from type, from id, to type, to id) of every association made.
    pub fn associations(&self) -> Vec<(String, String, String, String)> {
        self.state.lock().unwrap().associations.clone()
    }

    /// (object, kept id, merged id) of every merge asked for.
    pub fn merges(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().merges.clone()
    }

    pub async fn stop(&self) {
        self.served.stop().await;
    }
}
