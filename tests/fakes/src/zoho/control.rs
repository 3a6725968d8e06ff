//! Test controls of the fake Zoho CRM: starting it, issuing tokens, injecting faults, seeding
//! records, acting as a user in Zoho's UI, expiring channels, reading the callbacks sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answers::other_user;
use super::oauth::serve;
use super::state::field;
use super::watch::notify_changes;
use super::{Callback, FakeZoho, Shared, State};
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

    /// Seeds a record without checks, as made by another user (the times and users it is given
    /// win); no channel hears of it. Returns its id.
    pub fn insert(&self, module: &str, fields: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let mut record = Map::new();
        s.stamp(&mut record, other_user(), true);
        record.extend(fields.as_object().cloned().unwrap_or_default());
        s.insert(module, record)
    }

    /// Another user creates a record in Zoho's UI, without checks: the channels watching the
    /// module hear of it. Returns its id.
    pub fn create(&self, module: &str, fields: Value) -> String {
        let mut s = self.state.lock().unwrap();
        let mut record = fields.as_object().cloned().unwrap_or_default();
        s.stamp(&mut record, other_user(), true);
        let id = s.insert(module, record);
        s.changed(module, "insert", &id, Map::new());
        notify_changes(&mut s);
        id
    }

    /// Another user edits a record in Zoho's UI (`Modified_By` is them, `Modified_Time` now):
    /// the channels watching the module hear of it. Says whether the record exists.
    pub fn touch(&self, module: &str, id: &str, fields: Value) -> bool {
        let mut s = self.state.lock().unwrap();
        let Some(i) = s.by_id(module, id) else {
            return false;
        };
        let mut record = s.records[module][i].clone();
        let changes: Map<String, Value> = fields
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, value)| record.get(name) != Some(value))
            .collect();
        record.extend(changes.clone());
        s.stamp(&mut record, other_user(), false);
        s.records.get_mut(module).unwrap()[i] = record;
        s.changed(module, "update", id, changes);
        notify_changes(&mut s);
        true
    }

    /// Another user deletes a record in Zoho's UI: the channels watching the module hear of
    /// it. Says whether the record existed.
    pub fn remove(&self, module: &str, id: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        let removed = s.remove(module, id);
        notify_changes(&mut s);
        removed
    }

    /// Expires a notification channel now: Zoho drops it, and a PATCH answers
    /// `NOT_SUBSCRIBED`. Says whether it was live.
    pub fn expire_channel(&self, channel_id: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        s.purge_expired();
        s.channels.remove(channel_id).is_some()
    }

    /// The live channels, as `GET /actions/watch` lists them (one entry per module).
    pub fn channels(&self) -> Vec<Value> {
        let mut s = self.state.lock().unwrap();
        s.purge_expired();
        let mut ids: Vec<&String> = s.channels.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let c = &s.channels[id];
                json!({"channel_id": c.id, "events": c.events, "notify_url": c.notify_url,
                       "token": c.token, "channel_expiry": s.text(c.expiry),
                       "return_affected_field_values": c.affected_values,
                       "notify_on_related_action": c.related})
            })
            .collect()
    }

    /// The callbacks sent so far, each once its listener answered (or could not be reached).
    pub fn callbacks(&self) -> Vec<Callback> {
        let callbacks = self.state.lock().unwrap().callbacks.clone();
        callbacks.lock().unwrap().clone()
    }

    /// Waits up to `seconds` for at least `count` callbacks to have been sent; returns them all.
    pub async fn wait_for_callbacks(&self, count: usize, seconds: u64) -> Vec<Callback> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let sent = self.callbacks();
            if sent.len() >= count || std::time::Instant::now() >= deadline {
                return sent;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Moves the fake's clock (record times, channel expiry) by `by`.
    pub fn shift_clock(&self, by: chrono::Duration) {
        self.state.lock().unwrap().clock += by;
    }

    /// The org's time zone, in which record times are written (UTC until set).
    pub fn set_time_zone(&self, zone: chrono::FixedOffset) {
        self.state.lock().unwrap().zone = zone;
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
