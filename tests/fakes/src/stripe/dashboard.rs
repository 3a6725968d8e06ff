//! Test controls for the writes and their events: the objects written, the webhook deliveries,
//! and changes made "from the Dashboard" (events whose request carries an idempotency key of
//! Stripe's own, not Tributary's), so a test can tell echoes from foreign changes.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::params::{merge, stripe_id};
use super::webhooks::dispatch;
use super::writes::{Origin, event_prefix, previous_attributes, record_event};
use super::{FakeStripe, StripeDelivery};

impl FakeStripe {
    /// Every stored object whose `object` is `kind` (`customer`, `subscription`,
    /// `invoiceitem`, `billing_portal.session`, …), in the order they were first stored.
    pub fn objects_of(&self, kind: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        let mut found: Vec<(u64, Value)> = s
            .objects
            .iter()
            .filter(|(_, object)| object["object"] == kind)
            .map(|(id, object)| {
                let order = s.object_order.get(id).copied().unwrap_or(u64::MAX);
                (order, object.clone())
            })
            .collect();
        found.sort_by_key(|(order, _)| *order);
        found.into_iter().map(|(_, object)| object).collect()
    }

    /// The events stored, oldest first (retention and filters aside).
    pub fn events(&self) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        let mut events: Vec<(i64, u64, Value)> = s
            .events
            .iter()
            .map(|e| (e.created(), e.seq, e.event.clone()))
            .collect();
        events.sort_by_key(|(created, seq, _)| (*created, *seq));
        events.into_iter().map(|(_, _, event)| event).collect()
    }

    /// Every webhook delivery attempt so far, in the order they were made.
    pub fn deliveries(&self) -> Vec<StripeDelivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Waits until no delivery is running (retries included), at most `within`; whether none
    /// is.
    pub async fn deliveries_settled(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.state.lock().unwrap().in_flight == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How deliveries are retried from now on: `attempts` in all (at least 1), the first retry
    /// after `first_delay`, each later one after twice the wait before it.
    pub fn delivery_retries(&self, attempts: u32, first_delay: Duration) {
        let mut s = self.state.lock().unwrap();
        s.delivery_attempts = attempts.max(1);
        s.retry_delay = first_delay;
    }

    /// Stores an event (see [`FakeStripe::event`]) and delivers it to the endpoints listening
    /// for it, as Stripe does with events it raises itself. Returns its id.
    pub fn send_event(&self, event: Value) -> String {
        let id = self.add_event(event, true);
        dispatch(&self.state, vec![id.clone()]);
        id
    }

    /// Changes a stored object as a person in the Dashboard would: merges `patch` into it
    /// (objects key by key, anything else replaces) and records and delivers its `*.updated`
    /// event (`customer.subscription.updated` for a subscription) with
    /// `previous_attributes`, its request carrying a random UUID as the idempotency key.
    /// Returns the event id. Panics if no object has that id.
    pub fn dashboard_update(&self, id: &str, patch: Value) -> String {
        let event_id = {
            let mut s = self.state.lock().unwrap();
            let old = s
                .objects
                .get(id)
                .cloned()
                .unwrap_or_else(|| panic!("no stored Stripe object {id}"));
            let mut new = old.clone();
            merge(&mut new, patch);
            let previous = previous_attributes(&old, &new);
            let kind = format!(
                "{}.updated",
                event_prefix(new["object"].as_str().unwrap_or_default())
            );
            s.store(new.clone());
            let origin = dashboard_origin(&new);
            let event_id = record_event(&mut s, &kind, new, Some(previous), &origin);
            s.outbox.retain(|queued| *queued != event_id);
            event_id
        };
        dispatch(&self.state, vec![event_id.clone()]);
        event_id
    }

    /// Creates an object as a person in the Dashboard would: stores it and records and
    /// delivers its `*.created` event, its request carrying a random UUID as the idempotency
    /// key. Returns the event id.
    pub fn dashboard_create(&self, object: Value) -> String {
        assert!(
            object["id"].is_string(),
            "a Stripe object has a string `id`"
        );
        let kind = format!(
            "{}.created",
            event_prefix(
                object["object"]
                    .as_str()
                    .expect("a Stripe object has an `object` field")
            )
        );
        let event_id = {
            let mut s = self.state.lock().unwrap();
            s.store(object.clone());
            let origin = dashboard_origin(&object);
            let event_id = record_event(&mut s, &kind, object, None, &origin);
            s.outbox.retain(|queued| *queued != event_id);
            event_id
        };
        dispatch(&self.state, vec![event_id.clone()]);
        event_id
    }
}

/// A Dashboard request: its own request id and a random UUID as the idempotency key.
fn dashboard_origin(object: &Value) -> Origin {
    Origin {
        request_id: format!("req_{}", &stripe_id("")[1..15]),
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        livemode: object["livemode"].as_bool().unwrap_or(false),
    }
}
