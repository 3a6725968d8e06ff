//! Recurring revenue of Stripe subscriptions, over the JSON shapes of every API version.

use serde_json::Value as Json;

fn amount(price: &Json, integer: &str, decimal: &str) -> Option<f64> {
    price.get(integer).and_then(Json::as_f64).or_else(|| {
        price
            .get(decimal)
            .and_then(Json::as_str)
            .and_then(|text| text.parse::<f64>().ok())
    })
}

/// The monthly amount of one subscription item in minor units, with its currency if the
/// price names one; `None` for items without a fixed recurring price (metered, tiered,
/// one-time), which contribute nothing.
fn item_monthly(item: &Json) -> Result<Option<(f64, Option<String>)>, String> {
    let price = item.get("price").filter(|p| p.is_object());
    let plan = item.get("plan").filter(|p| p.is_object());
    let Some(source) = price.or(plan) else {
        return Ok(None);
    };
    let recurring = source.get("recurring").filter(|r| r.is_object());
    let field = |name: &str| {
        recurring
            .and_then(|r| r.get(name))
            .or_else(|| source.get(name))
            .or_else(|| plan.and_then(|p| p.get(name)))
    };
    if field("usage_type").and_then(Json::as_str) == Some("metered") {
        return Ok(None);
    }
    let Some(interval) = field("interval").and_then(Json::as_str) else {
        return Ok(None);
    };
    let unit = amount(source, "unit_amount", "unit_amount_decimal")
        .or_else(|| amount(source, "amount", "amount_decimal"))
        .or_else(|| plan.and_then(|p| amount(p, "amount", "amount_decimal")));
    let Some(unit) = unit else {
        return Ok(None);
    };
    let count = field("interval_count")
        .and_then(Json::as_f64)
        .unwrap_or(1.0);
    if count <= 0.0 {
        return Err(format!("interval_count {count} is not positive"));
    }
    let quantity = item.get("quantity").and_then(Json::as_f64).unwrap_or(1.0);
    let per_month = match interval {
        "day" => 365.0 / 12.0,
        "week" => 52.0 / 12.0,
        "month" => 1.0,
        "year" => 1.0 / 12.0,
        other => return Err(format!("unknown billing interval '{other}'")),
    };
    let currency = source
        .get("currency")
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok(Some((unit * quantity * per_month / count, currency)))
}

/// The subscription's monthly recurring revenue in minor units and its currency: the sum
/// over `items.data` of unit amount × quantity, normalised per interval and
/// interval_count. Old shapes without items use the subscription's own `plan` and
/// `quantity`. Discounts and taxes are not applied.
pub fn monthly_minor(subscription: &Json) -> Result<Option<(f64, String)>, String> {
    let items: Vec<&Json> = match subscription.pointer("/items/data").and_then(Json::as_array) {
        Some(items) if !items.is_empty() => items.iter().collect(),
        _ if subscription.get("plan").is_some_and(Json::is_object) => vec![subscription],
        _ => Vec::new(),
    };
    let mut total = 0.0;
    let mut currency = subscription
        .get("currency")
        .and_then(Json::as_str)
        .map(str::to_owned);
    for item in items {
        if let Some((monthly, item_currency)) = item_monthly(item)? {
            total += monthly;
            if currency.is_none() {
                currency = item_currency;
            }
        }
    }
    match currency {
        Some(currency) => Ok(Some((total, currency))),
        None if total == 0.0 => Ok(None),
        None => Err("the subscription names no currency".into()),
    }
}
