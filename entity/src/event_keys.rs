//! What an event can be found by (`GET /v1/events?search=`): its Stripe event id, the id of
//! the object it is about, the ids of the objects that one points at (its customer, payment
//! intent, invoice, subscription, charge) and its customer's email, one row each, written with
//! the event. Ids keep their case; emails are lower-cased. An erasure keeps only the keys its
//! redacted payload still holds (the event's and the object's ids).
//!
//! Rows are read only through [`matching`], which carries the tenant.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Query, SelectStatement};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub value: String,
    pub tenant_id: String,
    /// One of [`kind`].
    pub kind: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

pub mod kind {
    /// The Stripe event id (`evt_…`).
    pub const EVENT: &str = "event";
    /// `data.object.id`.
    pub const OBJECT: &str = "object";
    /// An id the object points at (`customer`, `payment_intent`, …).
    pub const RELATED: &str = "related";
    /// The customer's email, lower-cased.
    pub const EMAIL: &str = "email";
}

/// Fields of a Stripe object that name another object, as an id or expanded.
const RELATED_FIELDS: &[&str] = &[
    "customer",
    "payment_intent",
    "invoice",
    "subscription",
    "charge",
    "latest_charge",
];

/// Where Stripe objects carry the customer's email: a customer's `email`, a charge's or payment
/// method's `billing_details.email`, a charge's or payment intent's `receipt_email`, an
/// invoice's or checkout session's `customer_email`, a checkout session's
/// `customer_details.email`, a dispute's `evidence.customer_email_address`, and an expanded
/// `customer`'s `email`.
const EMAIL_PATHS: &[&[&str]] = &[
    &["email"],
    &["billing_details", "email"],
    &["receipt_email"],
    &["customer_email"],
    &["customer_details", "email"],
    &["evidence", "customer_email_address"],
    &["customer", "email"],
];

/// The longest id or email kept as a key; longer values are not Stripe's and are not indexed.
pub const MAX_KEY_CHARS: usize = 320;

/// A key of an event: `(kind, value)`.
pub type Key = (&'static str, String);

/// Whether `value` looks like a Stripe id: letters, digits, `_` and `-`, at most 255 long.
pub fn is_stripe_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// An email as it is kept and searched: trimmed and lower-cased, or `None` if it is not one.
pub fn normalise_email(value: &str) -> Option<String> {
    let email = value.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && email.chars().count() <= MAX_KEY_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// The keys of a Stripe event (the parsed body), without duplicates; a few at most.
pub fn extract(event: &Value) -> Vec<Key> {
    let mut keys: Vec<Key> = Vec::new();
    let mut add = |kind: &'static str, value: String| {
        if !keys.iter().any(|(_, v)| *v == value) {
            keys.push((kind, value));
        }
    };
    if let Some(id) = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_stripe_id(id))
    {
        add(kind::EVENT, id.to_string());
    }
    let Some(object) = at(event, &["data", "object"]).filter(|o| o.is_object()) else {
        return keys;
    };
    if let Some(id) = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_stripe_id(id))
    {
        add(kind::OBJECT, id.to_string());
    }
    for field in RELATED_FIELDS {
        let id = match object.get(*field) {
            Some(Value::String(id)) => Some(id.as_str()),
            Some(expanded @ Value::Object(_)) => expanded.get("id").and_then(Value::as_str),
            _ => None,
        };
        if let Some(id) = id.filter(|id| is_stripe_id(id)) {
            add(kind::RELATED, id.to_string());
        }
    }
    for path in EMAIL_PATHS {
        if let Some(email) = at(object, path)
            .and_then(Value::as_str)
            .and_then(normalise_email)
        {
            add(kind::EMAIL, email);
        }
    }
    keys
}

/// The keys of a stored payload (the raw body); none if it is not JSON.
pub fn extract_from_payload(payload: &str) -> Vec<Key> {
    serde_json::from_str::<Value>(payload)
        .map(|event| extract(&event))
        .unwrap_or_default()
}

/// The rows to store for one event.
pub fn rows(tenant_id: &str, event_id: &str, keys: Vec<Key>) -> Vec<ActiveModel> {
    keys.into_iter()
        .map(|(kind, value)| ActiveModel {
            event_id: sea_orm::Set(event_id.to_string()),
            value: sea_orm::Set(value),
            tenant_id: sea_orm::Set(tenant_id.to_string()),
            kind: sea_orm::Set(kind.to_string()),
        })
        .collect()
}

/// `SELECT event_id FROM event_keys WHERE tenant_id = ? AND value IN (…)`: the tenant's events
/// with any of `values` as a key, for an `IN` subquery.
pub fn matching(tenant_id: &str, values: &[String]) -> SelectStatement {
    Query::select()
        .column(Column::EventId)
        .from(Entity)
        .and_where(Column::TenantId.eq(tenant_id))
        .and_where(Column::Value.is_in(values.iter().map(String::as_str)))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_checkout_session_is_found_by_its_ids_and_email() {
        let event = json!({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {
            "id": "cs_test_a1", "object": "checkout.session", "customer": "cus_9",
            "payment_intent": "pi_3", "invoice": null, "subscription": "sub_4",
            "customer_email": null, "customer_details": {"email": "Chris@GoRails.com"}}}});
        assert_eq!(
            extract(&event),
            vec![
                (kind::EVENT, "evt_1".to_string()),
                (kind::OBJECT, "cs_test_a1".to_string()),
                (kind::RELATED, "cus_9".to_string()),
                (kind::RELATED, "pi_3".to_string()),
                (kind::RELATED, "sub_4".to_string()),
                (kind::EMAIL, "chris@gorails.com".to_string()),
            ]
        );
    }

    #[test]
    fn expanded_customers_duplicates_and_junk() {
        let event = json!({"id": "evt_2", "data": {"object": {
            "id": "ch_1", "customer": {"id": "cus_1", "email": "a@x.io"},
            "billing_details": {"email": "A@X.IO"}, "receipt_email": "not an email",
            "invoice": "in_1; DROP TABLE", "charge": "ch_1"}}});
        assert_eq!(
            extract(&event),
            vec![
                (kind::EVENT, "evt_2".to_string()),
                (kind::OBJECT, "ch_1".to_string()),
                (kind::RELATED, "cus_1".to_string()),
                (kind::EMAIL, "a@x.io".to_string()),
            ]
        );
        assert!(extract_from_payload("not json").is_empty());
        assert_eq!(extract(&json!({"id": "evt_3"})).len(), 1);
    }
}
