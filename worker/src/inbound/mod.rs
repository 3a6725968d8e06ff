//! CRM-side events: what HubSpot (signed webhook batches), Salesforce (polling on
//! `SystemModstamp`) and Zoho CRM (the Notifications API, or polling on `Modified_Time`) tell
//! Tributary about their records. Each source turns what its vendor sends into [`CrmEvent`]s;
//! [`new_row`] makes one an inbox row beside Stripe's events, so a CRM-side event is stored
//! before it is acknowledged, deduplicated, replayable and listed in `GET /v1/events` with its
//! `source`, and flows trigger on it (`trigger.source`).
//!
//! The stored payload is shaped like a Stripe event so that templates read it the same way:
//! `data.object` is the record (`record` and `object` in templates), `data.previous_attributes`
//! the field values it had before (`previous`), and `vendor` what the vendor sent, verbatim.

pub mod hubspot;
pub mod outbound_message;
pub mod salesforce;
pub mod versions;
pub mod watcher;
pub mod watches;
pub mod zoho;

use entity::events;
use serde_json::{Map, Value, json};

use crate::statuses::status;

/// The CRM sources a flow can trigger on, besides `stripe`.
pub const SOURCES: &[&str] = &["hubspot", "salesforce", "zoho"];

/// Every event source, Stripe first.
pub const ALL_SOURCES: &[&str] = &["stripe", "hubspot", "salesforce", "zoho"];

/// One change to one CRM record, as a source understood it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrmEvent {
    /// `hubspot`, `salesforce` or `zoho`.
    pub source: &'static str,
    /// What makes this event unique within its connection (the vendor's own ids); the inbox
    /// stores an event once per connection and key.
    pub key: String,
    /// The event type flows match: the vendor's (`deal.propertyChange`) for HubSpot,
    /// `<Object>.created|updated|deleted` for polling and Zoho (`Opportunity.updated`).
    pub event_type: String,
    /// The vendor's object name (`deal`, `Opportunity`, `Deals`).
    pub object: String,
    /// The record's id at the vendor.
    pub record_id: String,
    /// When the change happened, unix milliseconds.
    pub occurred_at_ms: i64,
    /// The record's fields as known from the event (at least `id`).
    pub record: Map<String, Value>,
    /// The values the changed fields had before, where known.
    pub previous: Map<String, Value>,
    /// Caused by Tributary's own write (its integration user or app): flows skip it unless
    /// they opt in with `trigger.echoes`.
    pub echo: bool,
    /// What the vendor sent for this event, verbatim (one item of a batch, one polled row).
    pub vendor: Value,
}

/// Longest key the inbox keeps (the column's width).
pub const MAX_KEY: usize = 255;

impl CrmEvent {
    /// The stored payload: a Stripe-shaped event (`id`, `type`, `created`, `data.object`,
    /// `data.previous_attributes`) plus `source`, `connection_id`, `echo` and `vendor`.
    pub fn payload(&self, connection_id: &str) -> Value {
        let mut record = self.record.clone();
        record
            .entry("id")
            .or_insert_with(|| Value::String(self.record_id.clone()));
        json!({
            "id": self.key,
            "object": "event",
            "source": self.source,
            "connection_id": connection_id,
            "type": self.event_type,
            "created": self.occurred_at_ms.div_euclid(1000),
            "livemode": true,
            "echo": self.echo,
            "data": {
                "object": record,
                "previous_attributes": self.previous,
            },
            "vendor": self.vendor,
        })
    }
}

/// The inbox row of `event`, received through the connection `connection_id` of `tenant_id`.
/// The connection id stands where a Stripe event keeps its account, so an event is kept once
/// per connection and key.
pub fn new_row(tenant_id: &str, connection_id: &str, event: &CrmEvent) -> events::Model {
    let at = crate::now();
    let key: String = event.key.chars().take(MAX_KEY).collect();
    let mut event = event.clone();
    event.key = key;
    events::Model {
        id: crate::new_id(),
        tenant_id: tenant_id.to_string(),
        stripe_account_id: connection_id.to_string(),
        stripe_event_id: event.key.clone(),
        event_type: event.event_type.chars().take(255).collect(),
        stripe_object_id: Some(event.record_id.chars().take(255).collect()),
        livemode: true,
        api_version: None,
        event_created: event.occurred_at_ms.div_euclid(1000),
        payload: event.payload(connection_id).to_string(),
        status: status::RECEIVED.into(),
        runs: 0,
        next_run_at: None,
        last_error: None,
        received_at: at,
        queued_at: None,
        processed_at: None,
        updated_at: at,
        redacted_at: None,
        source: event.source.to_string(),
        priority: crate::queue::priority::LIVE,
    }
}

/// The token a connection's Zoho notification channel carries in every callback: derived from
/// the connection's inbound token, at most 50 characters as Zoho allows.
pub fn zoho_channel_token(inbound_token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("zoho-channel:{inbound_token}"));
    hex::encode(digest)[..40].to_string()
}

/// A vendor's timestamp: RFC 3339 (`2025-01-01T00:00:00.000Z`, Zoho's `+05:30`) or
/// Salesforce's offset without a colon (`2025-01-01T00:00:00.000+0000`).
pub fn parse_stamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Whether a stored event payload came from a CRM, and which.
pub fn source_of(payload: &Value) -> &str {
    payload
        .get("source")
        .and_then(Value::as_str)
        .filter(|s| SOURCES.contains(s))
        .unwrap_or("stripe")
}

/// Whether the CRM change in `payload` was made by the user `connection` acts as: its
/// `integration_user_id` setting, else the one its session names (Salesforce's token answer).
/// Salesforce says who in `LastModifiedById`, Zoho in `Modified_By.id`.
pub fn changed_by_own_user(connection: &entity::connections::Model, payload: &Value) -> bool {
    let settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let info: Map<String, Value> =
        serde_json::from_str(&connection.vendor_info).unwrap_or_default();
    let Some(user) = settings
        .get("integration_user_id")
        .or_else(|| info.get("integration_user_id"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return false;
    };
    let by = match source_of(payload) {
        "salesforce" => payload.pointer("/data/object/LastModifiedById"),
        "zoho" => payload.pointer("/data/object/Modified_By/id"),
        _ => None,
    };
    by.and_then(Value::as_str) == Some(user)
}

/// Whether a stored event was caused by Tributary's own write: a CRM event marked so by its
/// source, or a Stripe event whose request carried one of Tributary's idempotency keys.
pub fn is_echo(payload: &Value) -> bool {
    if payload.get("echo").and_then(Value::as_bool) == Some(true) {
        return true;
    }
    payload
        .pointer("/request/idempotency_key")
        .and_then(Value::as_str)
        .is_some_and(|key| key.starts_with(crate::stripe::IDEMPOTENCY_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CrmEvent {
        let mut record = Map::new();
        record.insert("StageName".into(), json!("Closed Won"));
        let mut previous = Map::new();
        previous.insert("StageName".into(), json!("Negotiation"));
        CrmEvent {
            source: "salesforce",
            key: "0065g00000XyZ12AAB@2025-01-01T00:00:00.000Z".into(),
            event_type: "Opportunity.updated".into(),
            object: "Opportunity".into(),
            record_id: "0065g00000XyZ12AAB".into(),
            occurred_at_ms: 1_735_689_600_123,
            record,
            previous,
            echo: false,
            vendor: json!({"Id": "0065g00000XyZ12AAB"}),
        }
    }

    #[test]
    fn a_crm_event_reads_like_a_stripe_event_to_templates() {
        let row = new_row("t1", "conn1", &event());
        let payload: Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(payload["type"], "Opportunity.updated");
        assert_eq!(payload["created"], 1_735_689_600);
        assert_eq!(payload["data"]["object"]["id"], "0065g00000XyZ12AAB");
        assert_eq!(payload["data"]["object"]["StageName"], "Closed Won");
        assert_eq!(
            payload["data"]["previous_attributes"]["StageName"],
            "Negotiation"
        );
        assert_eq!(source_of(&payload), "salesforce");
        assert_eq!(row.source, "salesforce");
        assert_eq!(row.stripe_account_id, "conn1");
        assert!(!is_echo(&payload));
    }

    fn connection(settings: Value, info: Value) -> entity::connections::Model {
        let at = crate::now();
        entity::connections::Model {
            id: "c1".into(),
            tenant_id: "t1".into(),
            name: "CRM".into(),
            provider: "salesforce".into(),
            auth_type: "jwt_bearer".into(),
            credentials: None,
            settings: settings.to_string(),
            status: "active".into(),
            status_reason: None,
            paused_until: None,
            session: None,
            refresh_lease_until: None,
            vendor_info: info.to_string(),
            inbound_token: None,
            vendor_account: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn the_connections_own_user_is_its_setting_else_the_one_its_session_named() {
        let mut change = event();
        change
            .record
            .insert("LastModifiedById".into(), json!("005INTEGRATION"));
        let payload = change.payload("c1");
        let named = connection(json!({}), json!({"integration_user_id": "005INTEGRATION"}));
        assert!(changed_by_own_user(&named, &payload));
        let set = connection(json!({"integration_user_id": "005INTEGRATION"}), json!({}));
        assert!(changed_by_own_user(&set, &payload));
        let other = connection(json!({"integration_user_id": "005PERSON"}), json!({}));
        assert!(!changed_by_own_user(&other, &payload));
        assert!(!changed_by_own_user(
            &connection(json!({}), json!({})),
            &payload
        ));
        let zoho = json!({"source": "zoho", "data": {"object": {"Modified_By": {"id": "42"}}}});
        let own = connection(json!({"integration_user_id": "42"}), json!({}));
        assert!(changed_by_own_user(&own, &zoho));
    }

    #[test]
    fn echoes_are_told_by_the_mark_or_by_tributarys_idempotency_key() {
        let mut own = event();
        own.echo = true;
        assert!(is_echo(&own.payload("c")));
        let stripe = json!({"type": "customer.created", "request": {"id": "req_1",
            "idempotency_key": format!("{}evt-step", crate::stripe::IDEMPOTENCY_PREFIX)}});
        assert!(is_echo(&stripe));
        assert_eq!(source_of(&stripe), "stripe");
        let foreign = json!({"type": "customer.created", "request": {"id": "req_1",
            "idempotency_key": "6f1c4c1e-0d1b-4a56-9d1f-9a0e2b7c1d2e"}});
        assert!(!is_echo(&foreign));
        let legacy = json!({"type": "customer.created", "request": "req_1"});
        assert!(!is_echo(&legacy));
    }
}
