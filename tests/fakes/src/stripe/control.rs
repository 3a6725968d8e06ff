//! Test controls of the fake Stripe: starting it, the request log, keys, stored objects and events, webhook endpoints, scripted failures and rate limits.

use std::sync::{Arc, Mutex};

use actix_web::HttpRequest;
use actix_web::web::{self, Bytes};
use chrono::Utc;
use serde_json::{Value, json};

use super::answer::respond;
use super::handle::handle;
use super::params::{merge, stripe_id};
use super::{API_VERSION, Failure, FakeStripe, Shared, State, StoredEvent, StripeLogged};
use crate::{Logged, RequestLog, Served};

impl FakeStripe {
    /// Starts the fake on `127.0.0.1:0` on the current tokio runtime. [`SECRET_KEY`] and
    /// [`LIVE_SECRET_KEY`] are valid from the start.
    pub fn start() -> FakeStripe {
        let state: Shared = Arc::new(Mutex::new(State::new()));
        let log = RequestLog::default();
        let stripe_log: Arc<Mutex<Vec<StripeLogged>>> = Arc::default();
        let (handler_state, handler_log, handler_stripe_log) =
            (state.clone(), log.clone(), stripe_log.clone());
        let served = Served::start(move |cfg| {
            let state = handler_state.clone();
            let log = handler_log.clone();
            let stripe_log = handler_stripe_log.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let request_id = format!("req_{}", &stripe_id("")[1..15]);
                let (answer, replayed) = handle(&state, &req, &body, &request_id);
                let response = respond(answer, &req, &request_id);
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let logged = Logged {
                    at: Utc::now(),
                    method: req.method().to_string(),
                    path: req.uri().to_string(),
                    authorization: header("authorization"),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    status: response.status().as_u16(),
                };
                log.push(logged.clone());
                stripe_log.lock().unwrap().push(StripeLogged {
                    request: logged,
                    stripe_version: header("stripe-version"),
                    idempotency_key: header("idempotency-key"),
                    replayed,
                    request_id,
                });
                async move { response }
            }));
        });
        FakeStripe {
            base_url: served.base_url.clone(),
            log,
            stripe_log,
            state,
            served,
        }
    }

    /// The requests answered so far (method, path and query, `Authorization`, body, status).
    pub fn requests(&self) -> RequestLog {
        self.log.clone()
    }

    /// The requests answered so far with their `Stripe-Version` and `Idempotency-Key`
    /// headers, in the same order as [`FakeStripe::requests`].
    pub fn stripe_requests(&self) -> Vec<StripeLogged> {
        self.stripe_log.lock().unwrap().clone()
    }

    /// The `Stripe-Version` header of each request, in order.
    pub fn stripe_versions(&self) -> Vec<Option<String>> {
        self.stripe_requests()
            .into_iter()
            .map(|l| l.stripe_version)
            .collect()
    }

    /// The `Idempotency-Key` header of each request, in order.
    pub fn idempotency_keys(&self) -> Vec<Option<String>> {
        self.stripe_requests()
            .into_iter()
            .map(|l| l.idempotency_key)
            .collect()
    }

    /// Accepts another secret key (`sk_test_…`/`sk_live_…`) with every permission.
    pub fn add_secret_key(&self, key: &str) {
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(key.to_string(), None);
    }

    /// Accepts a restricted key (`rk_test_…`) with exactly these permissions, e.g.
    /// `["customer_read", "event_read", "webhook_write"]` (the `rak_` prefix is optional);
    /// a `_write` permission includes `_read`. Resources: `customer`, `subscription`,
    /// `invoice` (invoice items too), `payment_intent`, `charge`, `checkout_session`, `price`,
    /// `product`, `balance` (balance transactions), `payout`, `customer_portal` (portal
    /// sessions), `event`, `webhook`. Calling it again
    /// replaces the key's permissions.
    pub fn restrict(&self, key: &str, permissions: &[&str]) {
        let set = permissions.iter().map(|p| p.to_string()).collect();
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(key.to_string(), Some(set));
    }

    /// Stops accepting a key (as if rolled in the Dashboard): it answers 401 from now on.
    pub fn revoke_key(&self, key: &str) {
        self.state.lock().unwrap().keys.remove(key);
    }

    /// Stores an object (a customer, subscription, invoice, invoice item, payment intent,
    /// charge, checkout session, price, product, balance transaction or payout), keyed by its
    /// `id` and served by the route
    /// its `object` field names. Replaces an object with the same id. Records no event (see
    /// [`FakeStripe::dashboard_create`] for one that does).
    pub fn put(&self, object: Value) {
        assert!(
            object["id"].is_string(),
            "a Stripe object has a string `id`"
        );
        assert!(
            object["object"].is_string(),
            "a Stripe object has an `object` field"
        );
        self.state.lock().unwrap().store(object);
    }

    /// Merges `patch` into a stored object (objects key by key, anything else replaces) and
    /// returns the result. Panics if no object has that id.
    pub fn update(&self, id: &str, patch: Value) -> Value {
        let mut s = self.state.lock().unwrap();
        let object = s
            .objects
            .get_mut(id)
            .unwrap_or_else(|| panic!("no stored Stripe object {id}"));
        merge(object, patch);
        object.clone()
    }

    /// A stored object.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(id).cloned()
    }

    /// Adds a full event object (see [`FakeStripe::event`]); `delivered` is whether every
    /// webhook delivery succeeded (what `delivery_success` filters on). Returns its id.
    pub fn add_event(&self, event: Value, delivered: bool) -> String {
        let id = event["id"]
            .as_str()
            .expect("an event has a string `id`")
            .to_string();
        assert!(
            event["created"].is_i64(),
            "an event has an integer `created`"
        );
        let mut s = self.state.lock().unwrap();
        let seq = s.next_seq();
        s.events.retain(|e| e.event["id"] != id.as_str());
        s.events.push(StoredEvent {
            seq,
            event,
            delivered,
        });
        id
    }

    /// Adds many events at once, as [`FakeStripe::add_event`] does one (a later event with an
    /// id already stored replaces it), in one pass over those stored.
    pub fn add_events(&self, events: Vec<Value>, delivered: bool) {
        let mut s = self.state.lock().unwrap();
        let ids: std::collections::HashSet<String> = events
            .iter()
            .map(|e| {
                assert!(e["created"].is_i64(), "an event has an integer `created`");
                e["id"]
                    .as_str()
                    .expect("an event has a string `id`")
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), events.len(), "each event has an id of its own");
        s.events
            .retain(|e| !ids.contains(e.event["id"].as_str().unwrap_or_default()));
        for event in events {
            let seq = s.next_seq();
            s.events.push(StoredEvent {
                seq,
                event,
                delivered,
            });
        }
    }

    /// Changes whether an event's webhooks were all delivered.
    pub fn set_delivered(&self, event_id: &str, delivered: bool) {
        let mut s = self.state.lock().unwrap();
        for e in s.events.iter_mut().filter(|e| e.event["id"] == event_id) {
            e.delivered = delivered;
        }
    }

    /// A realistic event of type `kind` about `object`, created at `created` (Unix seconds):
    /// `evt_…` id, [`API_VERSION`], `livemode` from the object, no pending webhooks and no
    /// originating request (as for events Stripe raises itself).
    pub fn event(kind: &str, object: Value, created: i64) -> Value {
        let livemode = object["livemode"].as_bool().unwrap_or(false);
        json!({
            "id": stripe_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": {"object": object},
            "livemode": livemode,
            "pending_webhooks": 0,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        })
    }

    /// An `*.updated` event: like [`FakeStripe::event`], with `data.previous_attributes`.
    pub fn updated_event(kind: &str, object: Value, previous: Value, created: i64) -> Value {
        let mut event = FakeStripe::event(kind, object, created);
        event["data"]["previous_attributes"] = previous;
        event
    }

    /// The webhook endpoints, oldest first, each with its `secret` (which the API returns only
    /// at creation).
    pub fn webhook_endpoints(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .iter()
            .map(|e| {
                let mut v = e.value.clone();
                v["secret"] = json!(e.secret);
                v
            })
            .collect()
    }

    /// Lets `enabled_events` name these types too.
    pub fn accept_event_types(&self, types: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.event_types.extend(types.iter().map(|t| t.to_string()));
    }

    /// The next `n` authenticated requests fail with `status`: 429 answers Stripe's
    /// `rate_limit` error, 409 a `lock_timeout`, 5xx an `api_error`. The failures happen before
    /// the idempotency layer, so a retry with the same key then does the work.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with(n, status, None);
    }

    /// Like [`FakeStripe::fail_next`], with a `Stripe-Should-Retry` header (`Some(true)` or
    /// `Some(false)`) on each failure.
    pub fn fail_next_with(&self, n: usize, status: u16, should_retry: Option<bool>) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            s.failures.push_back(Failure {
                status,
                should_retry,
            });
        }
    }

    /// Allows each API key at most `per_second` requests in any second (0: no limit); the
    /// next answers 429 `rate_limit`.
    pub fn rate_limit(&self, per_second: u32) {
        let mut s = self.state.lock().unwrap();
        s.rate_limit = per_second;
        s.hits.clear();
    }

    pub async fn stop(&self) {
        self.served.stop().await;
    }
}
