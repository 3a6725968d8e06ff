//! The fake Stripe's subscription writes: create (an existing customer, known prices, the status
//! the payment behaviour gives) and update (metadata, cancellation at period end, items),
//! each recording its `customer.subscription.*` event.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answer::{invalid, missing_param, no_such};
use super::params::{apply_metadata, integer, merge, string_param, stripe_id};
use super::writes::{
    Origin, answer_with, bool_param, enum_param, existing, inline_price, int_param, only_params,
    record_event, record_update, set_metadata, set_text,
};
use super::{Answer, State};

const SUBSCRIPTION_CREATE: &[&str] = &[
    "add_invoice_items",
    "application_fee_percent",
    "automatic_tax",
    "backdate_start_date",
    "billing_cycle_anchor",
    "billing_thresholds",
    "cancel_at",
    "cancel_at_period_end",
    "collection_method",
    "coupon",
    "currency",
    "customer",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "expand",
    "items",
    "metadata",
    "off_session",
    "on_behalf_of",
    "payment_behavior",
    "payment_settings",
    "pending_invoice_item_interval",
    "promotion_code",
    "proration_behavior",
    "transfer_data",
    "trial_end",
    "trial_from_plan",
    "trial_period_days",
    "trial_settings",
];

const SUBSCRIPTION_UPDATE: &[&str] = &[
    "add_invoice_items",
    "application_fee_percent",
    "automatic_tax",
    "billing_cycle_anchor",
    "billing_thresholds",
    "cancel_at",
    "cancel_at_period_end",
    "cancellation_details",
    "collection_method",
    "coupon",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "expand",
    "items",
    "metadata",
    "off_session",
    "on_behalf_of",
    "pause_collection",
    "payment_behavior",
    "payment_settings",
    "pending_invoice_item_interval",
    "promotion_code",
    "proration_behavior",
    "proration_date",
    "transfer_data",
    "trial_end",
    "trial_from_plan",
    "trial_settings",
];

/// `payment_behavior` on create; updates also take `pending_if_incomplete`.
const PAYMENT_BEHAVIORS: &[&str] = &[
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
];
const PRORATION_BEHAVIORS: &[&str] = &["always_invoice", "create_prorations", "none"];
const COLLECTION_METHODS: &[&str] = &["charge_automatically", "send_invoice"];
/// Stripe allows at most this many items on a subscription.
const MAX_ITEMS: usize = 20;

pub(super) fn create_subscription(
    s: &mut State,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, SUBSCRIPTION_CREATE)?;
    let Some(customer_id) = string_param(params, "customer")?.filter(|c| !c.is_empty()) else {
        return Err(missing_param("customer"));
    };
    let customer = existing(s, "customer", &customer_id, "customer", 400)?;
    let id = stripe_id("sub_");
    let items = created_items(s, params, &id, origin.livemode)?;
    let currency = items[0]["price"]["currency"]
        .as_str()
        .unwrap_or("usd")
        .to_string();
    if items
        .iter()
        .any(|item| item["price"]["currency"].as_str().unwrap_or("usd") != currency)
    {
        return Err(invalid(
            Some("items"),
            "All prices on a subscription must have the same `currency`.",
        ));
    }
    let collection = enum_param(params, "collection_method", COLLECTION_METHODS)?
        .unwrap_or_else(|| "charge_automatically".into());
    let days_until_due = int_param(params, "days_until_due")?;
    if days_until_due.is_some() && collection != "send_invoice" {
        return Err(invalid(
            Some("days_until_due"),
            "days_until_due can only be set when collection_method is send_invoice.",
        ));
    }
    enum_param(params, "proration_behavior", PRORATION_BEHAVIORS)?;
    let trial_days = int_param(params, "trial_period_days")?.unwrap_or(0);
    if trial_days < 0 {
        return Err(invalid(
            Some("trial_period_days"),
            "Invalid trial_period_days: must be at least 0",
        ));
    }
    let status = initial_status(params, &customer, &collection, trial_days)?;
    let now = Utc::now().timestamp();
    let trial_end = (trial_days > 0).then(|| now + trial_days * 86_400);
    let period_end = trial_end.unwrap_or_else(|| now + period_seconds(&items[0]["price"]));
    let mut subscription = json!({
        "id": id,
        "object": "subscription",
        "billing_cycle_anchor": period_end,
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "collection_method": collection,
        "created": now,
        "currency": currency,
        "current_period_end": period_end,
        "current_period_start": now,
        "customer": customer_id,
        "days_until_due": days_until_due,
        "default_payment_method": string_param(params, "default_payment_method")?,
        "items": {
            "object": "list",
            "data": items,
            "has_more": false,
            "total_count": items.len(),
            "url": format!("/v1/subscription_items?subscription={id}"),
        },
        "livemode": origin.livemode,
        "metadata": {},
        "start_date": now,
        "status": status,
        "trial_end": trial_end,
        "trial_start": trial_end.map(|_| now),
    });
    merge(&mut subscription, unset_fields());
    set_text(&mut subscription, params, "description")?;
    set_metadata(&mut subscription, params)?;
    if bool_param(params, "cancel_at_period_end")? == Some(true) {
        cancel_at_period_end(&mut subscription, true);
    }
    s.store(subscription.clone());
    record_event(
        s,
        "customer.subscription.created",
        subscription.clone(),
        None,
        origin,
    );
    answer_with(s, subscription, params)
}

/// A new subscription's fields that start unset.
fn unset_fields() -> Value {
    json!({
        "application": null,
        "application_fee_percent": null,
        "automatic_tax": {"enabled": false},
        "billing_thresholds": null,
        "cancellation_details": {"comment": null, "feedback": null, "reason": null},
        "default_source": null,
        "default_tax_rates": [],
        "description": null,
        "discount": null,
        "ended_at": null,
        "latest_invoice": null,
        "next_pending_invoice_item_invoice": null,
        "on_behalf_of": null,
        "pause_collection": null,
        "pending_invoice_item_interval": null,
        "pending_setup_intent": null,
        "pending_update": null,
        "schedule": null,
        "test_clock": null,
        "transfer_data": null,
        "trial_settings": null,
    })
}

/// A new subscription's status: `trialing` with a trial; `active` when it is invoiced or the
/// customer can pay; else by `payment_behavior`: `incomplete` for `default_incomplete`, a
/// refusal for `error_if_incomplete`, `active` otherwise.
fn initial_status(
    params: &Map<String, Value>,
    customer: &Value,
    collection: &str,
    trial_days: i64,
) -> Result<&'static str, Answer> {
    let behavior = enum_param(params, "payment_behavior", &PAYMENT_BEHAVIORS[..3])?
        .unwrap_or_else(|| "allow_incomplete".into());
    let has_payment_method = string_param(params, "default_payment_method")?.is_some()
        || string_param(params, "default_source")?.is_some()
        || !customer["invoice_settings"]["default_payment_method"].is_null()
        || !customer["default_source"].is_null();
    if trial_days > 0 {
        return Ok("trialing");
    }
    if collection == "send_invoice" || has_payment_method {
        return Ok("active");
    }
    match behavior.as_str() {
        "default_incomplete" => Ok("incomplete"),
        "error_if_incomplete" => Err(invalid(
            None,
            "This customer has no attached payment source or default payment method. Please consider adding a default payment method.",
        )),
        _ => Ok("active"),
    }
}

/// The items of a new subscription: at least one, at most 20.
fn created_items(
    s: &State,
    params: &Map<String, Value>,
    subscription: &str,
    livemode: bool,
) -> Result<Vec<Value>, Answer> {
    let given = match params.get("items") {
        None => return Err(missing_param("items")),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        Some(_) => {
            return Err(invalid(
                Some("items"),
                "Invalid array: items must be an array of hashes",
            ));
        }
    };
    if given.is_empty() {
        return Err(missing_param("items"));
    }
    if given.len() > MAX_ITEMS {
        return Err(invalid(
            Some("items"),
            &format!("Invalid array: items can have at most {MAX_ITEMS} elements"),
        ));
    }
    given
        .iter()
        .enumerate()
        .map(|(i, item)| new_item(s, item, i, subscription, livemode))
        .collect()
}

/// A subscription item from `items[i]`: a known recurring `price` (or `price_data`), a
/// quantity (1 by default) and metadata.
fn new_item(
    s: &State,
    item: &Value,
    i: usize,
    subscription: &str,
    livemode: bool,
) -> Result<Value, Answer> {
    let Some(given) = item.as_object() else {
        return Err(invalid(
            Some(&format!("items[{i}]")),
            "Invalid object: each item must be a hash",
        ));
    };
    let price = item_price(s, given, i, livemode)?
        .ok_or_else(|| missing_param(&format!("items[{i}][price]")))?;
    let mut value = json!({
        "id": stripe_id("si_"),
        "object": "subscription_item",
        "billing_thresholds": null,
        "created": Utc::now().timestamp(),
        "metadata": {},
        "price": price,
        "quantity": item_quantity(given, i)?.unwrap_or(1),
        "subscription": subscription,
        "tax_rates": [],
    });
    if let Some(metadata) = given.get("metadata") {
        apply_metadata(&mut value["metadata"], metadata)?;
    }
    Ok(value)
}

/// The price `items[i]` names, if it names one: a stored recurring price, or one made from
/// `price_data`.
fn item_price(
    s: &State,
    item: &Map<String, Value>,
    i: usize,
    livemode: bool,
) -> Result<Option<Value>, Answer> {
    if let Some(id) = item
        .get("price")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        let param = format!("items[{i}][price]");
        let price = existing(s, "price", id, &param, 400)?;
        if price["type"] == "one_time" {
            return Err(invalid(
                Some(&param),
                "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
            ));
        }
        return Ok(Some(price));
    }
    match item.get("price_data") {
        Some(data) => {
            inline_price(data, &format!("items[{i}][price_data]"), livemode, true).map(Some)
        }
        None => Ok(None),
    }
}

fn item_quantity(item: &Map<String, Value>, i: usize) -> Result<Option<i64>, Answer> {
    let Some(text) = item.get("quantity").and_then(Value::as_str) else {
        return Ok(None);
    };
    let param = format!("items[{i}][quantity]");
    let quantity = integer(text, &param)?;
    if quantity < 0 {
        return Err(invalid(
            Some(&param),
            "Invalid integer: quantity must be at least 0",
        ));
    }
    Ok(Some(quantity))
}

/// One billing period of a price, in seconds (a month is 30 days here).
fn period_seconds(price: &Value) -> i64 {
    let count = price["recurring"]["interval_count"]
        .as_i64()
        .unwrap_or(1)
        .max(1);
    let unit = match price["recurring"]["interval"].as_str().unwrap_or("month") {
        "day" => 86_400,
        "week" => 7 * 86_400,
        "year" => 365 * 86_400,
        _ => 30 * 86_400,
    };
    count * unit
}

fn cancel_at_period_end(subscription: &mut Value, cancel: bool) {
    subscription["cancel_at_period_end"] = json!(cancel);
    if cancel {
        subscription["cancel_at"] = subscription["current_period_end"].clone();
        subscription["canceled_at"] = json!(Utc::now().timestamp());
    } else {
        subscription["cancel_at"] = Value::Null;
        subscription["canceled_at"] = Value::Null;
    }
}

pub(super) fn update_subscription(
    s: &mut State,
    id: &str,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, SUBSCRIPTION_UPDATE)?;
    let old = existing(s, "subscription", id, "id", 404)?;
    enum_param(params, "payment_behavior", PAYMENT_BEHAVIORS)?;
    enum_param(params, "proration_behavior", PRORATION_BEHAVIORS)?;
    let mut subscription = old.clone();
    for name in ["description", "default_payment_method", "default_source"] {
        set_text(&mut subscription, params, name)?;
    }
    if let Some(cancel) = bool_param(params, "cancel_at_period_end")?
        && subscription["cancel_at_period_end"] != cancel
    {
        cancel_at_period_end(&mut subscription, cancel);
    }
    if let Some(items) = params.get("items") {
        update_items(s, &mut subscription, items, origin.livemode)?;
    }
    set_metadata(&mut subscription, params)?;
    record_update(s, &old, subscription.clone(), origin);
    answer_with(s, subscription, params)
}

/// `items[i]` of an update: with an `id`, changes that item (`price`, `quantity`, `metadata`,
/// `deleted`); without, adds one.
fn update_items(
    s: &State,
    subscription: &mut Value,
    given: &Value,
    livemode: bool,
) -> Result<(), Answer> {
    let Some(given) = given.as_array() else {
        return Err(invalid(
            Some("items"),
            "Invalid array: items must be an array of hashes",
        ));
    };
    let id = subscription["id"].as_str().unwrap_or_default().to_string();
    let mut data = subscription["items"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, item) in given.iter().enumerate() {
        let Some(item_id) = item.get("id").and_then(Value::as_str) else {
            data.push(new_item(s, item, i, &id, livemode)?);
            continue;
        };
        let Some(at) = data.iter().position(|d| d["id"] == item_id) else {
            return Err(no_such(
                "subscription_item",
                item_id,
                &format!("items[{i}][id]"),
                400,
            ));
        };
        let fields = item.as_object().cloned().unwrap_or_default();
        if fields.get("deleted").and_then(Value::as_str) == Some("true") {
            data.remove(at);
            continue;
        }
        if let Some(price) = item_price(s, &fields, i, livemode)? {
            data[at]["price"] = price;
        }
        if let Some(quantity) = item_quantity(&fields, i)? {
            data[at]["quantity"] = json!(quantity);
        }
        if let Some(metadata) = fields.get("metadata") {
            apply_metadata(&mut data[at]["metadata"], metadata)?;
        }
    }
    if data.is_empty() {
        return Err(invalid(
            Some("items"),
            "A subscription must have at least one item.",
        ));
    }
    if data.len() > MAX_ITEMS {
        return Err(invalid(
            Some("items"),
            &format!("A subscription can have at most {MAX_ITEMS} items."),
        ));
    }
    subscription["items"]["total_count"] = json!(data.len());
    subscription["items"]["data"] = Value::Array(data);
    Ok(())
}
