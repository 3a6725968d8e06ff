//! The fake Stripe's writes of customers, invoice items and customer-portal sessions, the
//! routing of every write, the parameter helpers they share, and the events a write records:
//! each names the request that caused it and the `Idempotency-Key` it carried, as Stripe's do.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answer::{invalid, missing_param, no_such, unknown_param};
use super::objects::{expand, expand_paths};
use super::params::{apply_metadata, boolean, integer, string_list, string_param, stripe_id};
use super::subscriptions::{create_subscription, update_subscription};
use super::webhooks::listens;
use super::{Answer, FakeStripe, State, StoredEvent};

/// Who made a write: the request id answered, its `Idempotency-Key`, and the key's mode.
pub(super) struct Origin {
    pub(super) request_id: String,
    pub(super) idempotency_key: Option<String>,
    pub(super) livemode: bool,
}

/// The write routes; `None` for any other request.
pub(super) fn write_route(
    s: &mut State,
    method: &str,
    segments: &[&str],
    params: &Map<String, Value>,
    origin: &Origin,
) -> Option<Answer> {
    let result = match (method, segments) {
        ("POST", ["v1", "customers"]) => create_customer(s, params, origin),
        ("POST", ["v1", "customers", id]) => update_customer(s, id, params, origin),
        ("POST", ["v1", "subscriptions"]) => create_subscription(s, params, origin),
        ("POST", ["v1", "subscriptions", id]) => update_subscription(s, id, params, origin),
        ("POST", ["v1", "invoiceitems"]) => create_invoiceitem(s, params, origin),
        ("POST", ["v1", "billing_portal", "sessions"]) => create_portal_session(s, params, origin),
        _ => return None,
    };
    Some(result.unwrap_or_else(|answer| answer))
}

/// Refuses parameters the endpoint does not take (a `metadata[…]` key Stripe's bracket
/// notation could not read is a metadata key with brackets in it).
pub(super) fn only_params(params: &Map<String, Value>, known: &[&str]) -> Result<(), Answer> {
    for name in params.keys() {
        if name.starts_with("metadata[") {
            return Err(invalid(
                Some(name),
                "Invalid metadata: keys may not contain square brackets ('[' or ']').",
            ));
        }
        if !known.contains(&name.as_str()) {
            return Err(unknown_param(name));
        }
    }
    Ok(())
}

/// A text parameter where empty text unsets the value (null).
pub(super) fn set_text(
    target: &mut Value,
    params: &Map<String, Value>,
    name: &str,
) -> Result<(), Answer> {
    if let Some(text) = string_param(params, name)? {
        target[name] = if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
    }
    Ok(())
}

/// An integer parameter, if given.
pub(super) fn int_param(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, Answer> {
    match string_param(params, name)? {
        Some(text) => Ok(Some(integer(&text, name)?)),
        None => Ok(None),
    }
}

/// A boolean parameter, if given.
pub(super) fn bool_param(params: &Map<String, Value>, name: &str) -> Result<Option<bool>, Answer> {
    match string_param(params, name)? {
        Some(text) => Ok(Some(boolean(&text, name)?)),
        None => Ok(None),
    }
}

/// A parameter that must be one of `allowed`, if given.
pub(super) fn enum_param(
    params: &Map<String, Value>,
    name: &str,
    allowed: &[&str],
) -> Result<Option<String>, Answer> {
    match string_param(params, name)? {
        Some(value) if allowed.contains(&value.as_str()) => Ok(Some(value)),
        Some(value) => Err(invalid(
            Some(name),
            &format!(
                "Invalid {name}: must be one of {} (got '{value}')",
                allowed.join(", ")
            ),
        )),
        None => Ok(None),
    }
}

/// Applies a `metadata` parameter, if given.
pub(super) fn set_metadata(target: &mut Value, params: &Map<String, Value>) -> Result<(), Answer> {
    if let Some(given) = params.get("metadata") {
        apply_metadata(&mut target["metadata"], given)?;
    }
    Ok(())
}

/// A stored object of this kind, or Stripe's `resource_missing` naming `param`.
pub(super) fn existing(
    s: &State,
    kind: &str,
    id: &str,
    param: &str,
    status: u16,
) -> Result<Value, Answer> {
    match s.objects.get(id) {
        Some(object) if object["object"] == kind => Ok(object.clone()),
        _ => Err(no_such(kind, id, param, status)),
    }
}

/// The answer to a write: the object, with what `expand[]` asked for.
pub(super) fn answer_with(
    s: &State,
    mut object: Value,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    for (i, path) in expand_paths(params).iter().enumerate() {
        expand(s, &mut object, path, &format!("expand[{i}]"))?;
    }
    Ok(Answer::ok(object))
}

/// What changed from `old` to `new`, as Stripe's `previous_attributes`: the old value of each
/// changed field; inside objects only the changed keys, a key that was not there as null.
pub(super) fn previous_attributes(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut changed = Map::new();
            for (key, value) in new {
                let before = old.get(key).unwrap_or(&Value::Null);
                if before != value {
                    let previous = match (before, value) {
                        (Value::Object(_), Value::Object(_)) => previous_attributes(before, value),
                        _ => before.clone(),
                    };
                    changed.insert(key.clone(), previous);
                }
            }
            for (key, value) in old {
                if !new.contains_key(key) {
                    changed.insert(key.clone(), value.clone());
                }
            }
            Value::Object(changed)
        }
        _ => old.clone(),
    }
}

/// Records an event about `object` caused by the request `origin`, to be delivered to the
/// webhook endpoints that listen for it once the request is answered. Returns its id.
pub(super) fn record_event(
    s: &mut State,
    kind: &str,
    object: Value,
    previous: Option<Value>,
    origin: &Origin,
) -> String {
    let mut event = FakeStripe::event(kind, object, Utc::now().timestamp());
    if let Some(previous) = previous {
        event["data"]["previous_attributes"] = previous;
    }
    event["livemode"] = json!(origin.livemode);
    event["request"] = json!({"id": origin.request_id, "idempotency_key": origin.idempotency_key});
    let pending = s
        .endpoints
        .iter()
        .filter(|e| listens(e, kind, origin.livemode))
        .count();
    event["pending_webhooks"] = json!(pending);
    let id = event["id"].as_str().unwrap_or_default().to_string();
    let seq = s.next_seq();
    s.events.push(StoredEvent {
        seq,
        event,
        delivered: true,
    });
    s.outbox.push(id.clone());
    id
}

/// The event type prefix of an object: `customer.subscription` for subscriptions.
pub(super) fn event_prefix(object: &str) -> &str {
    match object {
        "subscription" => "customer.subscription",
        other => other,
    }
}

/// Stores a changed object and records its `*.updated` event; nothing when nothing changed.
pub(super) fn record_update(s: &mut State, old: &Value, new: Value, origin: &Origin) {
    if *old == new {
        return;
    }
    let previous = previous_attributes(old, &new);
    let kind = format!(
        "{}.updated",
        event_prefix(new["object"].as_str().unwrap_or_default())
    );
    s.store(new.clone());
    record_event(s, &kind, new, Some(previous), origin);
}

const CUSTOMER_CREATE: &[&str] = &[
    "address",
    "balance",
    "cash_balance",
    "coupon",
    "description",
    "email",
    "expand",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "payment_method",
    "phone",
    "preferred_locales",
    "promotion_code",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
];

const CUSTOMER_UPDATE: &[&str] = &[
    "address",
    "balance",
    "bank_account",
    "card",
    "cash_balance",
    "coupon",
    "default_alipay_account",
    "default_bank_account",
    "default_card",
    "default_source",
    "description",
    "email",
    "expand",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "phone",
    "preferred_locales",
    "promotion_code",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
];

fn create_customer(
    s: &mut State,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, CUSTOMER_CREATE)?;
    let id = stripe_id("cus_");
    let prefix: String = id[4..12].to_ascii_uppercase();
    let mut customer = json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": Utc::now().timestamp(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": null,
        "invoice_prefix": prefix,
        "invoice_settings": {"custom_fields": null, "default_payment_method": null,
                             "footer": null, "rendering_options": null},
        "livemode": origin.livemode,
        "metadata": {},
        "name": null,
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    });
    apply_customer(&mut customer, params)?;
    s.store(customer.clone());
    record_event(s, "customer.created", customer.clone(), None, origin);
    answer_with(s, customer, params)
}

fn update_customer(
    s: &mut State,
    id: &str,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, CUSTOMER_UPDATE)?;
    let old = existing(s, "customer", id, "id", 404)?;
    let mut customer = old.clone();
    apply_customer(&mut customer, params)?;
    for name in ["default_source", "source"] {
        if let Some(source) = string_param(params, name)? {
            customer["default_source"] = if source.is_empty() {
                Value::Null
            } else {
                json!(source)
            };
        }
    }
    record_update(s, &old, customer.clone(), origin);
    answer_with(s, customer, params)
}

/// The customer parameters both create and update apply.
fn apply_customer(customer: &mut Value, params: &Map<String, Value>) -> Result<(), Answer> {
    for name in ["name", "description", "phone", "invoice_prefix"] {
        set_text(customer, params, name)?;
    }
    if let Some(email) = string_param(params, "email")? {
        if !email.is_empty() && !email.contains('@') {
            return Err(invalid(
                Some("email"),
                &format!("Invalid email address: {email}"),
            ));
        }
        customer["email"] = if email.is_empty() {
            Value::Null
        } else {
            json!(email)
        };
    }
    for name in ["address", "shipping"] {
        match params.get(name) {
            None => {}
            Some(Value::String(text)) if text.is_empty() => customer[name] = Value::Null,
            Some(Value::Object(given)) => {
                let mut value = customer[name].as_object().cloned().unwrap_or_default();
                value.extend(given.clone());
                customer[name] = Value::Object(value);
            }
            Some(_) => {
                return Err(invalid(
                    Some(name),
                    &format!("Invalid object: {name} must be a hash"),
                ));
            }
        }
    }
    if let Some(balance) = int_param(params, "balance")? {
        customer["balance"] = json!(balance);
    }
    if let Some(sequence) = int_param(params, "next_invoice_sequence")? {
        customer["next_invoice_sequence"] = json!(sequence);
    }
    if let Some(locales) = string_list(params.get("preferred_locales")) {
        customer["preferred_locales"] = json!(locales);
    }
    if let Some(exempt) = enum_param(params, "tax_exempt", &["exempt", "none", "reverse"])? {
        customer["tax_exempt"] = json!(exempt);
    }
    match params.get("invoice_settings") {
        None => {}
        Some(Value::Object(given)) => {
            for (key, value) in given {
                customer["invoice_settings"][key] = match value.as_str() {
                    Some("") => Value::Null,
                    _ => value.clone(),
                };
            }
        }
        Some(_) => {
            return Err(invalid(
                Some("invoice_settings"),
                "Invalid object: invoice_settings must be a hash",
            ));
        }
    }
    set_metadata(customer, params)
}

const INVOICEITEM_CREATE: &[&str] = &[
    "amount",
    "currency",
    "customer",
    "description",
    "discountable",
    "discounts",
    "expand",
    "invoice",
    "metadata",
    "period",
    "price",
    "price_data",
    "quantity",
    "subscription",
    "tax_behavior",
    "tax_code",
    "tax_rates",
    "unit_amount",
    "unit_amount_decimal",
];

fn create_invoiceitem(
    s: &mut State,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, INVOICEITEM_CREATE)?;
    let Some(customer) = string_param(params, "customer")?.filter(|c| !c.is_empty()) else {
        return Err(missing_param("customer"));
    };
    existing(s, "customer", &customer, "customer", 400)?;
    let subscription = string_param(params, "subscription")?.filter(|c| !c.is_empty());
    if let Some(subscription) = &subscription {
        existing(s, "subscription", subscription, "subscription", 400)?;
    }
    let quantity = int_param(params, "quantity")?.unwrap_or(1);
    let (price, unit_amount, currency) = invoiceitem_amount(s, params, quantity, origin)?;
    let amount = unit_amount * quantity;
    let now = Utc::now().timestamp();
    let mut item = json!({
        "id": stripe_id("ii_"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer,
        "date": now,
        "description": null,
        "discountable": bool_param(params, "discountable")?.unwrap_or(true),
        "discounts": [],
        "invoice": string_param(params, "invoice")?,
        "livemode": origin.livemode,
        "metadata": {},
        "period": {"start": now, "end": now},
        "plan": null,
        "price": price,
        "proration": false,
        "quantity": quantity,
        "subscription": subscription,
        "tax_rates": [],
        "test_clock": null,
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount.to_string(),
    });
    set_text(&mut item, params, "description")?;
    set_metadata(&mut item, params)?;
    s.store(item.clone());
    record_event(s, "invoiceitem.created", item.clone(), None, origin);
    answer_with(s, item, params)
}

/// An invoice item's price object (if any), unit amount and currency: from `price`,
/// `price_data`, `unit_amount` or `amount` (the whole amount, for one unit).
fn invoiceitem_amount(
    s: &State,
    params: &Map<String, Value>,
    quantity: i64,
    origin: &Origin,
) -> Result<(Value, i64, String), Answer> {
    if let Some(id) = string_param(params, "price")?.filter(|p| !p.is_empty()) {
        let price = existing(s, "price", &id, "price", 400)?;
        let unit = price["unit_amount"].as_i64().unwrap_or(0);
        let currency = price["currency"].as_str().unwrap_or("usd").to_string();
        return Ok((price, unit, currency));
    }
    if let Some(data) = params.get("price_data") {
        let price = inline_price(data, "price_data", origin.livemode, false)?;
        let unit = price["unit_amount"].as_i64().unwrap_or(0);
        let currency = price["currency"].as_str().unwrap_or("usd").to_string();
        return Ok((price, unit, currency));
    }
    let Some(currency) = string_param(params, "currency")?.filter(|c| !c.is_empty()) else {
        return Err(missing_param(
            if params.contains_key("amount") || params.contains_key("unit_amount") {
                "currency"
            } else {
                "amount"
            },
        ));
    };
    if let Some(unit) = int_param(params, "unit_amount")? {
        return Ok((Value::Null, unit, currency.to_ascii_lowercase()));
    }
    let Some(amount) = int_param(params, "amount")? else {
        return Err(missing_param("amount"));
    };
    // `amount` is the total; a quantity other than 1 needs unit_amount instead.
    let unit = if quantity == 0 { 0 } else { amount / quantity };
    Ok((Value::Null, unit, currency.to_ascii_lowercase()))
}

/// A price made from `price_data` (`currency`, `product`, `unit_amount`, `recurring`).
pub(super) fn inline_price(
    data: &Value,
    param: &str,
    livemode: bool,
    recurring: bool,
) -> Result<Value, Answer> {
    let Some(data) = data.as_object() else {
        return Err(invalid(
            Some(param),
            &format!("Invalid object: {param} must be a hash"),
        ));
    };
    let field = |name: &str| data.get(name).and_then(Value::as_str).unwrap_or("");
    if field("currency").is_empty() {
        return Err(missing_param(&format!("{param}[currency]")));
    }
    if field("product").is_empty() {
        return Err(missing_param(&format!("{param}[product]")));
    }
    let unit_amount = integer(field("unit_amount"), &format!("{param}[unit_amount]"))?;
    let interval = data
        .get("recurring")
        .map(|r| r["interval"].as_str().unwrap_or("").to_string());
    if recurring && interval.as_deref().is_none_or(str::is_empty) {
        return Err(missing_param(&format!("{param}[recurring][interval]")));
    }
    Ok(json!({
        "id": stripe_id("price_"),
        "object": "price",
        "active": false,
        "billing_scheme": "per_unit",
        "created": Utc::now().timestamp(),
        "currency": field("currency").to_ascii_lowercase(),
        "livemode": livemode,
        "metadata": {},
        "product": field("product"),
        "recurring": interval.map(|i| json!({"interval": i, "interval_count": 1, "usage_type": "licensed"})),
        "type": if recurring { "recurring" } else { "one_time" },
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount.to_string(),
    }))
}

const PORTAL_CREATE: &[&str] = &[
    "configuration",
    "customer",
    "expand",
    "flow_data",
    "locale",
    "on_behalf_of",
    "return_url",
];

/// A customer-portal session: short-lived, raises no event.
fn create_portal_session(
    s: &mut State,
    params: &Map<String, Value>,
    origin: &Origin,
) -> Result<Answer, Answer> {
    only_params(params, PORTAL_CREATE)?;
    let Some(customer) = string_param(params, "customer")?.filter(|c| !c.is_empty()) else {
        return Err(missing_param("customer"));
    };
    existing(s, "customer", &customer, "customer", 400)?;
    let return_url = string_param(params, "return_url")?.filter(|u| !u.is_empty());
    if let Some(url) = &return_url
        && !url::Url::parse(url).is_ok_and(|u| u.has_host())
    {
        return Err(invalid(Some("return_url"), "Not a valid URL"));
    }
    let mode = if origin.livemode { "" } else { "test_" };
    let secret = &stripe_id("")[1..];
    let session = json!({
        "id": stripe_id("bps_"),
        "object": "billing_portal.session",
        "configuration": string_param(params, "configuration")?
            .unwrap_or_else(|| "bpc_1TributaryFakeDefaultConfig".to_string()),
        "created": Utc::now().timestamp(),
        "customer": customer,
        "flow": params.get("flow_data").cloned(),
        "livemode": origin.livemode,
        "locale": string_param(params, "locale")?,
        "on_behalf_of": string_param(params, "on_behalf_of")?,
        "return_url": return_url,
        "url": format!("https://billing.stripe.com/p/session/{mode}{secret}"),
    });
    s.store(session.clone());
    answer_with(s, session, params)
}
