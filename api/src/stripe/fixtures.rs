//! The events behind "send a test event": Tributary's own realistic Stripe events (API
//! 2024-06-20 shapes, in `api/fixtures/stripe/`), made fresh on every call. Builds JSON only;
//! signing, storing and delivering it belong to the caller. The payment-lifecycle ones (a
//! failed charge, a failed refund, a dispute opened and lost) follow the real payloads and
//! Stripe's own fixtures in the vendor specs, on the same demo charge as the others.
//!
//! Freshness: the event gets a new `evt_test_…` id and `created = now`; every per-delivery
//! object id (`ch_`, `pi_`, `cus_`, `sub_`, `in_`, `cs_test_`, …) gets a new id of the same
//! shape, replaced everywhere it occurs (also inside `client_secret`, list URLs and a dispute's
//! balance-transaction description), so the fixture's cross-references still agree; catalog
//! ids (`price_`, `prod_`, `pmc_`) stay, as they would in a real account; and every timestamp
//! moves by the same amount as `created`, so periods, retries, trial ends and a dispute's
//! evidence deadline keep their spacing.

use std::collections::BTreeSet;

use serde_json::Value;
use uuid::Uuid;

macro_rules! fixture {
    ($event_type:literal) => {
        (
            $event_type,
            include_str!(concat!("../../fixtures/stripe/", $event_type, ".json")),
        )
    };
}

const FIXTURES: [(&str, &str); 17] = [
    fixture!("charge.succeeded"),
    fixture!("charge.failed"),
    fixture!("charge.refunded"),
    fixture!("charge.refund.updated"),
    fixture!("charge.dispute.created"),
    fixture!("charge.dispute.closed"),
    fixture!("payment_intent.succeeded"),
    fixture!("payment_intent.payment_failed"),
    fixture!("customer.created"),
    fixture!("customer.updated"),
    fixture!("customer.deleted"),
    fixture!("customer.subscription.created"),
    fixture!("customer.subscription.updated"),
    fixture!("customer.subscription.deleted"),
    fixture!("invoice.paid"),
    fixture!("invoice.payment_failed"),
    fixture!("checkout.session.completed"),
];

const EVENT_TYPES: [&str; FIXTURES.len()] = {
    let mut types = [""; FIXTURES.len()];
    let mut i = 0;
    while i < FIXTURES.len() {
        types[i] = FIXTURES[i].0;
        i += 1;
    }
    types
};

/// Prefixes of the ids that are renewed on every call, longest first where one extends another.
const FRESH_ID_PREFIXES: [&str; 15] = [
    "cs_test_", "cus_", "sub_", "si_", "in_", "il_", "ii_", "ch_", "py_", "pi_", "pm_", "re_",
    "txn_", "seti_", "dp_",
];

/// Stripe ids carry at least this many characters after the prefix; shorter look-alikes (status
/// values such as `card_declined`) are left alone.
const MIN_ID_SUFFIX: usize = 14;

/// The event types "send a test event" can produce, in a stable order.
pub fn event_types() -> &'static [&'static str] {
    &EVENT_TYPES
}

/// A realistic event of `event_type` as Stripe would send it at `now_unix`, with fresh ids (see
/// the module docs), `livemode: false`, or `None` for a type without a fixture.
pub fn test_event(event_type: &str, now_unix: i64) -> Option<Value> {
    let (_, raw) = FIXTURES.iter().find(|(known, _)| *known == event_type)?;
    let mut event: Value =
        serde_json::from_str(raw).expect("fixtures are valid JSON (checked by the tests)");

    let fixture_created = event.get("created").and_then(Value::as_i64)?;
    let shift = now_unix.saturating_sub(fixture_created);

    let data = event.get_mut("data")?;
    let mut old_ids = BTreeSet::new();
    collect_ids(data, &mut old_ids);
    let mut renames: Vec<(String, String)> = old_ids
        .into_iter()
        .map(|old| {
            let new = fresh_id(&old);
            (old, new)
        })
        .collect();
    renames.sort_by_key(|(old, _)| std::cmp::Reverse(old.len()));
    rewrite(data, None, shift, &renames);

    let envelope = event.as_object_mut()?;
    envelope.insert(
        "id".to_owned(),
        Value::String(format!("evt_test_{}", Uuid::new_v4().simple())),
    );
    envelope.insert("created".to_owned(), Value::from(now_unix));
    set_livemode(&mut event, false);
    Some(event)
}

/// Puts an event in a mode: its `livemode` and its object's (where the object has one, as
/// every object here but a refund does).
fn set_livemode(event: &mut Value, livemode: bool) {
    if let Some(object) = event
        .pointer_mut("/data/object")
        .and_then(Value::as_object_mut)
        && object.contains_key("livemode")
    {
        object.insert("livemode".to_owned(), Value::Bool(livemode));
    }
    if let Some(envelope) = event.as_object_mut() {
        envelope.insert("livemode".to_owned(), Value::Bool(livemode));
    }
}

fn id_prefix(value: &str) -> Option<&'static str> {
    FRESH_ID_PREFIXES.into_iter().find(|prefix| {
        value.strip_prefix(prefix).is_some_and(|suffix| {
            suffix.len() >= MIN_ID_SUFFIX && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

fn collect_ids(value: &Value, ids: &mut BTreeSet<String>) {
    match value {
        Value::String(text) if id_prefix(text).is_some() => {
            ids.insert(text.clone());
        }
        Value::Array(items) => items.iter().for_each(|item| collect_ids(item, ids)),
        Value::Object(map) => map.values().for_each(|item| collect_ids(item, ids)),
        _ => {}
    }
}

/// A new id with the old one's prefix and suffix length.
fn fresh_id(old: &str) -> String {
    let prefix = id_prefix(old).unwrap_or_default();
    let length = old.len() - prefix.len();
    let mut suffix = String::with_capacity(length + 32);
    while suffix.len() < length {
        suffix.push_str(&Uuid::new_v4().simple().to_string());
    }
    suffix.truncate(length);
    format!("{prefix}{suffix}")
}

fn is_timestamp_key(key: &str) -> bool {
    matches!(
        key,
        "created"
            | "start"
            | "end"
            | "next_payment_attempt"
            | "billing_cycle_anchor"
            | "due_by"
            | "available_on"
    ) || ["_at", "_start", "_end", "_date"]
        .iter()
        .any(|suffix| key.ends_with(suffix))
}

fn rewrite(value: &mut Value, key: Option<&str>, shift: i64, renames: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (old, new) in renames {
                if text.contains(old.as_str()) {
                    *text = text.replace(old.as_str(), new);
                }
            }
        }
        Value::Number(number) => {
            if key.is_some_and(is_timestamp_key)
                && let Some(timestamp) = number.as_i64()
            {
                *value = Value::from(timestamp.saturating_add(shift));
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite(item, None, shift, renames);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                rewrite(item, Some(key), shift, renames);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_worker::stripe::envelope;

    const NOW: i64 = 1_767_225_600;

    fn raw_fixture(event_type: &str) -> Value {
        let (_, raw) = FIXTURES
            .iter()
            .find(|(known, _)| *known == event_type)
            .unwrap_or_else(|| panic!("no fixture {event_type}"));
        serde_json::from_str(raw).unwrap_or_else(|error| panic!("{event_type}: {error}"))
    }

    fn event(event_type: &str) -> Value {
        test_event(event_type, NOW).unwrap_or_else(|| panic!("no test event {event_type}"))
    }

    fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
        value
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer} in {value}"))
    }

    fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
        at(value, pointer)
            .as_str()
            .unwrap_or_else(|| panic!("{pointer} is not a string"))
    }

    fn int(value: &Value, pointer: &str) -> i64 {
        at(value, pointer)
            .as_i64()
            .unwrap_or_else(|| panic!("{pointer} is not an integer"))
    }

    #[test]
    fn lists_the_required_types() {
        for required in [
            "charge.succeeded",
            "charge.failed",
            "charge.refunded",
            "charge.refund.updated",
            "charge.dispute.created",
            "charge.dispute.closed",
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "customer.created",
            "customer.updated",
            "customer.deleted",
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "invoice.paid",
            "invoice.payment_failed",
            "checkout.session.completed",
        ] {
            assert!(event_types().contains(&required), "{required}");
        }
        let unique: BTreeSet<_> = event_types().iter().collect();
        assert_eq!(unique.len(), event_types().len());
    }

    #[test]
    fn fixture_files_have_current_stripe_envelopes() {
        let keys = [
            "api_version",
            "created",
            "data",
            "id",
            "livemode",
            "object",
            "pending_webhooks",
            "request",
            "type",
        ];
        for &event_type in event_types() {
            let fixture = raw_fixture(event_type);
            let got: Vec<_> = fixture
                .as_object()
                .map(|map| map.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(got, keys, "{event_type}");
            assert!(text(&fixture, "/id").starts_with("evt_"), "{event_type}");
            assert_eq!(text(&fixture, "/object"), "event");
            assert_eq!(text(&fixture, "/api_version"), "2024-06-20");
            assert_eq!(text(&fixture, "/type"), event_type);
            assert_eq!(at(&fixture, "/livemode"), false);
            // A refund is the one object here Stripe gives no `livemode`.
            match fixture.pointer("/data/object/livemode") {
                Some(livemode) => assert_eq!(livemode, false, "{event_type}"),
                None => assert_eq!(text(&fixture, "/data/object/object"), "refund"),
            }
            assert_eq!(int(&fixture, "/pending_webhooks"), 1);
            assert_eq!(
                at(&fixture, "/request"),
                &serde_json::json!({"id": null, "idempotency_key": null})
            );
        }
    }

    #[test]
    fn every_type_parses_as_an_envelope() {
        for &event_type in event_types() {
            let value = event(event_type);
            let raw = serde_json::to_vec_pretty(&value).unwrap_or_default();
            let parsed =
                envelope::parse(&raw).unwrap_or_else(|error| panic!("{event_type}: {error}"));
            assert_eq!(parsed.event_type, event_type);
            assert!(parsed.id.starts_with("evt_test_"), "{}", parsed.id);
            assert_eq!(parsed.created, NOW);
            assert!(!parsed.livemode);
            assert_eq!(parsed.api_version.as_deref(), Some("2024-06-20"));
            assert_eq!(parsed.account, None);
            assert!(parsed.object_id.is_some(), "{event_type}");
            assert!(parsed.object_type.is_some(), "{event_type}");
        }
    }

    #[test]
    fn set_livemode_moves_the_event_and_its_object() {
        let mut value = event("charge.succeeded");
        set_livemode(&mut value, true);
        assert_eq!(at(&value, "/livemode"), true);
        assert_eq!(at(&value, "/data/object/livemode"), true);
        let mut refund = event("charge.refund.updated");
        set_livemode(&mut refund, true);
        assert_eq!(at(&refund, "/livemode"), true);
        assert!(refund.pointer("/data/object/livemode").is_none());
    }

    #[test]
    fn unknown_type_has_no_event() {
        assert_eq!(test_event("charge.exploded", NOW), None);
        assert_eq!(test_event("", NOW), None);
    }

    #[test]
    fn ids_differ_between_calls() {
        for &event_type in event_types() {
            let first = event(event_type);
            let second = event(event_type);
            assert_ne!(at(&first, "/id"), at(&second, "/id"), "{event_type}");
            assert_ne!(
                at(&first, "/data/object/id"),
                at(&second, "/data/object/id"),
                "{event_type}"
            );
        }
    }

    #[test]
    fn no_fixture_object_id_survives_but_catalog_ids_do() {
        for &event_type in event_types() {
            let fixture = raw_fixture(event_type);
            let mut old_ids = BTreeSet::new();
            collect_ids(&fixture, &mut old_ids);
            assert!(!old_ids.is_empty(), "{event_type}");
            let fresh = event(event_type).to_string();
            for old in &old_ids {
                assert!(!fresh.contains(old.as_str()), "{event_type}: {old} kept");
            }
            for catalog in ["price_1PgTRb5TribDemo9ArcMonth", "prod_QXtRbArcReactor"] {
                assert_eq!(
                    fixture.to_string().contains(catalog),
                    fresh.contains(catalog),
                    "{event_type}: {catalog}"
                );
            }
        }
    }

    #[test]
    fn fresh_ids_keep_their_shape() {
        let value = event("checkout.session.completed");
        let id = text(&value, "/data/object/id");
        let old = text(
            &raw_fixture("checkout.session.completed"),
            "/data/object/id",
        )
        .to_owned();
        assert!(id.starts_with("cs_test_"));
        assert_eq!(id.len(), old.len());
        assert_eq!(id_prefix(id), Some("cs_test_"));
        assert_eq!(id_prefix("card_declined"), None);
        assert_eq!(id_prefix("price_1PgTRb5TribDemo9ArcMonth"), None);
    }

    #[test]
    fn internal_references_stay_consistent() {
        let intent = event("payment_intent.succeeded");
        let pi = text(&intent, "/data/object/id");
        assert!(text(&intent, "/data/object/client_secret").starts_with(&format!("{pi}_secret_")));

        let charge = event("charge.succeeded");
        let intent_failed = event("payment_intent.payment_failed");
        assert_eq!(
            text(&intent_failed, "/data/object/last_payment_error/charge"),
            text(&intent_failed, "/data/object/latest_charge")
        );
        assert_ne!(
            text(&charge, "/data/object/customer"),
            text(&intent_failed, "/data/object/customer"),
            "each call invents its own customer"
        );

        let invoice = event("invoice.payment_failed");
        let id = text(&invoice, "/data/object/id");
        assert_eq!(text(&invoice, "/data/object/lines/data/0/invoice"), id);
        assert_eq!(
            text(&invoice, "/data/object/lines/url"),
            format!("/v1/invoices/{id}/lines")
        );
        assert_eq!(
            text(&invoice, "/data/object/lines/data/0/subscription"),
            text(&invoice, "/data/object/subscription")
        );

        let subscription = event("customer.subscription.updated");
        let id = text(&subscription, "/data/object/id");
        assert_eq!(
            text(&subscription, "/data/object/items/data/0/subscription"),
            id
        );
        assert!(text(&subscription, "/data/object/items/url").ends_with(id));
        assert_ne!(
            text(&subscription, "/data/object/latest_invoice"),
            text(&subscription, "/data/previous_attributes/latest_invoice")
        );
    }

    #[test]
    fn timestamps_move_with_created_and_amounts_do_not() {
        for &event_type in event_types() {
            let fixture = raw_fixture(event_type);
            let fresh = event(event_type);
            let shift = NOW - int(&fixture, "/created");
            assert_eq!(
                int(&fresh, "/data/object/created"),
                int(&fixture, "/data/object/created") + shift,
                "{event_type}"
            );
        }
        let fixture = raw_fixture("invoice.payment_failed");
        let fresh = event("invoice.payment_failed");
        let shift = NOW - int(&fixture, "/created");
        for pointer in [
            "/data/object/next_payment_attempt",
            "/data/object/period_start",
            "/data/object/period_end",
            "/data/object/status_transitions/finalized_at",
            "/data/object/lines/data/0/period/start",
            "/data/object/lines/data/0/period/end",
        ] {
            assert_eq!(
                int(&fresh, pointer),
                int(&fixture, pointer) + shift,
                "{pointer}"
            );
        }
        for pointer in [
            "/data/object/amount_due",
            "/data/object/attempt_count",
            "/data/object/total",
            "/data/object/lines/data/0/amount",
        ] {
            assert_eq!(at(&fresh, pointer), at(&fixture, pointer), "{pointer}");
        }
        assert!(int(&fresh, "/data/object/next_payment_attempt") > NOW);
    }

    #[test]
    fn charge_carries_what_the_seeds_map() {
        for event_type in ["charge.succeeded", "payment_intent.succeeded"] {
            let value = event(event_type);
            for field in [
                "company",
                "deal_name",
                "salesforce_opportunity_id",
                "salesforce_account_id",
            ] {
                assert!(
                    at(&value, &format!("/data/object/metadata/{field}")).is_string(),
                    "{event_type}: {field}"
                );
            }
        }
        let charge = event("charge.succeeded");
        for field in ["email", "name", "phone"] {
            assert!(at(&charge, &format!("/data/object/billing_details/{field}")).is_string());
        }
        assert_eq!(int(&charge, "/data/object/amount"), 14900);
        assert_eq!(text(&charge, "/data/object/currency"), "usd");

        let refunded = event("charge.refunded");
        assert_eq!(at(&refunded, "/data/object/refunded"), true);
        assert_eq!(at(&refunded, "/data/previous_attributes/refunded"), false);
    }

    #[test]
    fn customer_and_subscription_carry_salesforce_ids() {
        for event_type in [
            "customer.created",
            "customer.updated",
            "customer.deleted",
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ] {
            let value = event(event_type);
            for field in ["salesforce_opportunity_id", "salesforce_account_id"] {
                assert!(
                    at(&value, &format!("/data/object/metadata/{field}")).is_string(),
                    "{event_type}: {field}"
                );
            }
        }
        let customer = event("customer.created");
        assert!(text(&customer, "/data/object/email").contains('@'));
        assert!(at(&event("customer.updated"), "/data/previous_attributes").is_object());
    }

    #[test]
    fn subscription_updated_is_a_trial_conversion() {
        let value = event("customer.subscription.updated");
        assert_eq!(text(&value, "/data/previous_attributes/status"), "trialing");
        assert_eq!(text(&value, "/data/object/status"), "active");
        assert_eq!(
            text(
                &event("customer.subscription.deleted"),
                "/data/object/status"
            ),
            "canceled"
        );
        let created = event("customer.subscription.created");
        assert_eq!(
            int(&created, "/data/object/items/data/0/price/unit_amount"),
            99900
        );
        assert_eq!(
            text(
                &created,
                "/data/object/items/data/0/price/recurring/interval"
            ),
            "month"
        );
    }

    #[test]
    fn lifecycle_events_carry_what_the_recipes_read() {
        let failed = event("charge.failed");
        assert_eq!(text(&failed, "/data/object/status"), "failed");
        assert_eq!(text(&failed, "/data/object/failure_code"), "card_declined");
        assert_eq!(
            text(&failed, "/data/object/outcome/reason"),
            "insufficient_funds"
        );
        assert_eq!(int(&failed, "/data/object/amount"), 14900);

        let refund = event("charge.refund.updated");
        assert_eq!(text(&refund, "/data/object/object"), "refund");
        assert_eq!(text(&refund, "/data/object/status"), "failed");
        assert_eq!(text(&refund, "/data/previous_attributes/status"), "pending");
        assert!(text(&refund, "/data/object/id").starts_with("re_"));
        assert!(text(&refund, "/data/object/charge").starts_with("ch_"));

        for (event_type, status) in [
            ("charge.dispute.created", "needs_response"),
            ("charge.dispute.closed", "lost"),
        ] {
            let fixture = raw_fixture(event_type);
            let dispute = event(event_type);
            let id = text(&dispute, "/data/object/id");
            let charge = text(&dispute, "/data/object/charge");
            assert!(id.starts_with("dp_"), "{id}");
            assert_ne!(id, text(&fixture, "/data/object/id"), "a fresh dispute id");
            assert_eq!(text(&dispute, "/data/object/status"), status);
            assert_eq!(text(&dispute, "/data/object/reason"), "fraudulent");
            let withdrawal = "/data/object/balance_transactions/0";
            assert_eq!(text(&dispute, &format!("{withdrawal}/source")), id);
            assert_eq!(
                text(&dispute, &format!("{withdrawal}/description")),
                format!("Chargeback withdrawal for {charge}")
            );
            // The evidence deadline keeps its distance from the event.
            let due = "/data/object/evidence_details/due_by";
            assert_eq!(
                int(&dispute, due) - NOW,
                int(&fixture, due) - int(&fixture, "/created"),
                "{event_type}"
            );
        }
        assert!(
            int(
                &event("charge.dispute.created"),
                "/data/object/evidence_details/due_by"
            ) > NOW
        );
    }

    #[test]
    fn invoices_carry_dunning_fields() {
        let failed = event("invoice.payment_failed");
        for pointer in [
            "/data/object/attempt_count",
            "/data/object/next_payment_attempt",
            "/data/object/amount_due",
        ] {
            assert!(at(&failed, pointer).is_i64(), "{pointer}");
        }
        assert!(text(&failed, "/data/object/subscription").starts_with("sub_"));
        assert!(text(&failed, "/data/object/customer").starts_with("cus_"));
        assert_eq!(at(&failed, "/data/object/paid"), false);
        let paid = event("invoice.paid");
        assert_eq!(at(&paid, "/data/object/paid"), true);
        assert_eq!(at(&paid, "/data/object/next_payment_attempt"), &Value::Null);
    }

    #[test]
    fn checkout_session_carries_customer_details() {
        let value = event("checkout.session.completed");
        assert!(text(&value, "/data/object/customer_details/email").contains('@'));
        assert!(!text(&value, "/data/object/customer_details/name").is_empty());
        assert!(int(&value, "/data/object/amount_total") > 0);
        assert_eq!(text(&value, "/data/object/currency"), "usd");
        assert_eq!(text(&value, "/data/object/payment_status"), "paid");
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        for now in [0, i64::MIN, i64::MAX] {
            let value = test_event("invoice.payment_failed", now)
                .unwrap_or_else(|| panic!("no event at {now}"));
            assert_eq!(int(&value, "/created"), now);
        }
    }
}
