//! Test controls of the fake Salesforce: starting it, issuing tokens, injecting faults, seeding
//! records, and changing them as another user of the org would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::api::serve;
use super::{FakeSalesforce, Field, OTHER_USER_ID, Shared, Stage, State};
use crate::{RequestLog, token};

impl FakeSalesforce {
    /// Starts the login server and the org instance on `127.0.0.1:0`.
    pub fn start() -> FakeSalesforce {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let login = serve(state.clone(), log.clone(), true);
        let instance = serve(state.clone(), log.clone(), false);
        {
            let mut s = state.lock().unwrap();
            s.login_url = login.base_url.clone();
            s.instance_url = instance.base_url.clone();
        }
        FakeSalesforce {
            login_url: login.base_url.clone(),
            instance_url: instance.base_url.clone(),
            log,
            state,
            login,
            instance,
        }
    }

    pub fn issue_refresh_token(&self) -> String {
        let refresh = token("5Aep861-fake-refresh-");
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .push(refresh.clone());
        refresh
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

    /// Tokens revoked through `/services/oauth2/revoke`.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// Every session issued so far is refused from now on.
    pub fn expire_sessions(&self) {
        for valid in self.state.lock().unwrap().sessions.values_mut() {
            *valid = false;
        }
    }

    pub fn revoke_refresh_tokens(&self) {
        self.state.lock().unwrap().refresh_tokens.clear();
    }

    /// While set, each refresh spends its refresh token and answers a new one (the connected
    /// app's refresh token rotation).
    pub fn rotate_refresh_tokens(&self, rotate: bool) {
        self.state.lock().unwrap().rotate = rotate;
    }

    /// While set, every API call answers 403 `REQUEST_LIMIT_EXCEEDED`.
    pub fn exhaust_daily_limit(&self, exhausted: bool) {
        self.state.lock().unwrap().limit_exhausted = exhausted;
    }

    /// Enforces the concurrent long-running request limit on a test's clock: at most `most`
    /// requests that have run `long_after` or longer, each API answer taking `latency`.
    pub fn limit_long_requests(&self, most: usize, long_after: Duration, latency: Duration) {
        let mut s = self.state.lock().unwrap();
        s.flights.limit(most, long_after, latency);
    }

    /// Requests refused for the concurrent long-running request limit.
    pub fn concurrency_refusals(&self) -> u64 {
        self.state.lock().unwrap().flights.refusals
    }

    /// The most API requests that were in flight at once (counted while answers take time).
    pub fn most_at_once(&self) -> usize {
        self.state.lock().unwrap().flights.most_at_once
    }

    pub fn set_api_usage(&self, used: u64, max: u64) {
        let mut s = self.state.lock().unwrap();
        s.used = used;
        s.max = max;
    }

    /// Adds a custom field; an external id can key upserts.
    pub fn define_field(&self, object: &str, name: &str, external_id: bool) {
        self.state
            .lock()
            .unwrap()
            .fields
            .entry(object.to_string())
            .or_default()
            .insert(name.to_string(), Field { external_id });
    }

    /// Replaces the opportunity stages: (name, IsClosed, IsWon).
    pub fn set_stages(&self, stages: &[(&str, bool, bool)]) {
        self.state.lock().unwrap().stages = stages
            .iter()
            .map(|(name, closed, won)| Stage {
                name: name.to_string(),
                closed: *closed,
                won: *won,
            })
            .collect();
    }

    /// Seeds a record without validation; returns its id.
    /// Adds a duplicate rule: a created `object` whose `fields` all equal an existing record's
    /// (ignoring case) is refused with `DUPLICATES_DETECTED`; an `alert` rule lets a request
    /// that says `allowSave=true` save it anyway.
    pub fn duplicate_rule(&self, object: &str, fields: &[&str], alert: bool) {
        self.state
            .lock()
            .unwrap()
            .duplicate_rules
            .push(super::duplicates::DuplicateRule {
                object: object.to_string(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                alert,
            });
    }

    pub fn insert(&self, object: &str, fields: Value) -> String {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.state.lock().unwrap().create(object, fields)
    }

    /// A record by id, even from the recycle bin.
    pub fn record(&self, object: &str, id: &str) -> Option<Map<String, Value>> {
        let s = self.state.lock().unwrap();
        s.find_any(id)
            .filter(|(found, _)| found == object)
            .map(|(_, i)| s.records[object][i].clone())
    }

    /// Writes `fields` to the record `id` as another user of the org
    /// ([`OTHER_USER_ID`](super::OTHER_USER_ID)), without validation: its `SystemModstamp`
    /// moves to now. Panics if there is no such record.
    pub fn touch(&self, id: &str, fields: Value) {
        self.touch_as(id, fields, OTHER_USER_ID);
    }

    /// [`touch`](Self::touch) as the user `user_id`.
    pub fn touch_as(&self, id: &str, fields: Value, user_id: &str) {
        let mut s = self.state.lock().unwrap();
        let (object, i) = s.find_any(id).expect("a record with this id");
        let fields = fields.as_object().cloned().unwrap_or_default();
        s.modify(&object, i, fields, user_id);
    }

    /// Deletes the record `id` as another user: it moves to the recycle bin (`IsDeleted`), which
    /// `queryAll` still sees. Panics if there is no such record.
    pub fn delete(&self, id: &str) {
        let mut s = self.state.lock().unwrap();
        let (object, i) = s.find_any(id).expect("a record with this id");
        s.recycle(&object, i, OTHER_USER_ID);
    }

    /// Sets the record's `SystemModstamp` (as Salesforce writes it, e.g.
    /// `2024-05-01T12:34:56.000+0000`), for records that share an instant.
    pub fn set_modstamp(&self, id: &str, stamp: &str) {
        let mut s = self.state.lock().unwrap();
        let (object, i) = s.find_any(id).expect("a record with this id");
        s.records.get_mut(&object).unwrap()[i].insert("SystemModstamp".into(), json!(stamp));
    }

    /// Rows per page of query answers (at least 1).
    pub fn set_page_size(&self, rows: usize) {
        self.state.lock().unwrap().page_size = rows.max(1);
    }

    /// API calls the org instance admitted so far.
    pub fn api_calls(&self) -> u64 {
        self.state.lock().unwrap().calls
    }

    /// Adds a record type of `object`; returns its id. Once an object has record types, its
    /// records' `RecordTypeId` must be one of the active ones.
    pub fn add_record_type(
        &self,
        object: &str,
        name: &str,
        developer_name: &str,
        active: bool,
    ) -> String {
        let mut s = self.state.lock().unwrap();
        let id = s.new_id("RecordType");
        let mut row = Map::new();
        for (field, value) in [
            ("Id", json!(id)),
            ("Name", json!(name)),
            ("DeveloperName", json!(developer_name)),
            ("SobjectType", json!(object)),
            ("IsActive", json!(active)),
            ("BusinessProcessId", Value::Null),
            ("Description", Value::Null),
        ] {
            row.insert(field.into(), value);
        }
        s.record_types.push(row);
        id
    }

    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(object)
            .cloned()
            .unwrap_or_default()
    }

    /// (object, master id, merged id) of every merge made through the SOAP API.
    pub fn merges(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().merges.clone()
    }

    pub async fn stop(&self) {
        self.login.stop().await;
        self.instance.stop().await;
    }
}
