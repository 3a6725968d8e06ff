//! Amounts in the CRM's corporate currency: the `convert` and `conversion` filters.
//!
//! `amount | convert(from, to, balance_transaction, rates)` turns an amount in Stripe's minor
//! units of `from` into the major units of `to`, rounded to that currency's decimals (an
//! integer for zero-decimal currencies, as `major_units` gives). The rate comes from, in order:
//!
//! 1. nowhere, when `from` and `to` are one currency (rate 1);
//! 2. Stripe: the balance transaction's `exchange_rate`, when the transaction (an object: the
//!    charge retrieved with `expand: [balance_transaction]`) settled in `to`. Stripe's rate
//!    turns major units of the charge's currency into major units of the settlement currency,
//!    the transaction's `currency`. When the amount is the one the transaction settled (the
//!    rate times the amount agrees with the transaction's `amount` to the precision Stripe
//!    gives the rate), the result is the transaction's own `amount`, to the cent, and its
//!    `fee` and `net` are known too;
//! 3. the rate table (the connection's `settings.exchange_rates`), shaped
//!    `{"eur": {"usd": 1.08}}`: one unit of the outer currency is worth that many of the inner;
//!    when only the opposite rate is there (`usd → eur`), its inverse.
//!
//! Without any of them the filter fails, saying what was missing, so the delivery stops with a
//! message instead of writing an amount in the wrong currency. `amount | conversion(…)` takes
//! the same arguments and gives what `convert` worked from: `{amount, currency,
//! original_amount, original_currency, rate, source, balance_transaction, fee, net,
//! description}`, `source` being `same_currency`, `stripe` or `rate_table`, so a flow can record
//! the rate and where it came from on the CRM record and the delivery (a `log` step). The
//! balance transaction and the rate table may also be named: `balance_transaction=…`,
//! `rates=…`. A missing amount passes through as undefined, as in the other amount filters.

use minijinja::value::{Kwargs, Rest, Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value as Json, json};

use super::{currency_decimals, to_json};

/// Adds `convert` and `conversion` to an environment.
pub fn install(env: &mut Environment<'_>) {
    env.add_filter("convert", convert);
    env.add_filter("conversion", conversion);
}

/// `amount | convert(from, to, balance_transaction, rates)`: the amount in major units of `to`.
pub fn convert(
    value: Value,
    from: Option<Value>,
    to: Option<Value>,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    match request("convert", &value, from, to, rest, kwargs)? {
        Some(request) => {
            let done = request.convert("convert")?;
            Ok(major(done.minor, request.to_decimals()))
        }
        None => Ok(Value::UNDEFINED),
    }
}

/// `amount | conversion(from, to, balance_transaction, rates)`: the converted amount with its
/// rate and the rate's source.
pub fn conversion(
    value: Value,
    from: Option<Value>,
    to: Option<Value>,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    match request("conversion", &value, from, to, rest, kwargs)? {
        Some(request) => {
            let done = request.convert("conversion")?;
            Ok(Value::from(Serde(request.describe(&done))))
        }
        None => Ok(Value::UNDEFINED),
    }
}

/// What one conversion is asked to do.
struct Request {
    /// The amount in minor units of `from`.
    minor: f64,
    from: String,
    to: String,
    balance_transaction: Option<Json>,
    rates: Option<Json>,
}

/// Where the rate came from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// One currency: nothing to convert.
    Same,
    /// The balance transaction's `exchange_rate`.
    Stripe,
    /// The rate table; `inverse_of` the table's opposite rate when only that was there.
    Table { inverse_of: Option<f64> },
}

/// A balance transaction's fee and net, in minor units, where it has them.
type FeeAndNet = (Option<f64>, Option<f64>);

/// A conversion's result.
struct Done {
    /// The result in minor units of `to`, rounded.
    minor: f64,
    rate: f64,
    source: Source,
    /// The balance transaction the rate or the amount came from.
    transaction: Option<String>,
    /// The transaction's fee and net, in minor units of `to`, when it settled this very amount.
    settled: Option<FeeAndNet>,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn is_missing(value: &Value) -> bool {
    value.is_undefined() || value.is_none()
}

/// The positional arguments after `to` (`balance_transaction`, `rates`) merged with the named
/// ones, the currencies checked; `None` when there is no amount.
fn request(
    filter: &str,
    value: &Value,
    from: Option<Value>,
    to: Option<Value>,
    rest: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Option<Request>, Error> {
    if rest.len() > 2 {
        return Err(invalid(format!(
            "{filter}: takes from, to, balance_transaction and rates; {} arguments were given",
            rest.len() + 2
        )));
    }
    let named_transaction: Option<Value> = kwargs.get("balance_transaction")?;
    let named_rates: Option<Value> = kwargs.get("rates")?;
    kwargs.assert_all_used()?;
    let positional = |i: usize| rest.get(i).filter(|v| !is_missing(v)).cloned();
    let transaction = either(
        filter,
        "balance_transaction",
        positional(0),
        named_transaction,
    )?;
    let rates = either(filter, "rates", positional(1), named_rates)?;
    if is_missing(value) {
        return Ok(None);
    }
    let from = code(filter, from, "the amount's currency, e.g. object.currency")?;
    let to = code(
        filter,
        to,
        "the currency to convert into, e.g. settings.corporate_currency",
    )?;
    Ok(Some(Request {
        minor: number(filter, value)?,
        from,
        to,
        balance_transaction: transaction.map(|v| to_json(&v)).transpose()?,
        rates: rates.map(|v| to_json(&v)).transpose()?,
    }))
}

fn either(
    filter: &str,
    name: &str,
    positional: Option<Value>,
    named: Option<Value>,
) -> Result<Option<Value>, Error> {
    match (positional, named) {
        (Some(_), Some(_)) => Err(invalid(format!(
            "{filter}: {name} is given twice, by position and by name"
        ))),
        (positional, named) => Ok(positional.or(named)),
    }
}

fn code(filter: &str, currency: Option<Value>, what: &str) -> Result<String, Error> {
    match currency.as_ref().and_then(Value::as_str).map(str::trim) {
        Some(code) if !code.is_empty() => Ok(code.to_ascii_lowercase()),
        _ => Err(invalid(format!("{filter}: needs {what}"))),
    }
}

/// A number from a JSON number or numeric text.
fn number(filter: &str, value: &Value) -> Result<f64, Error> {
    let parsed = match value.as_str() {
        Some(text) => text.trim().parse::<f64>().ok(),
        None if value.is_number() => f64::try_from(value.clone()).ok(),
        None => None,
    };
    parsed
        .filter(|n| n.is_finite())
        .ok_or_else(|| invalid(format!("{filter}: the amount {value} is not a number")))
}

/// Rounds minor units to a whole unit, half away from zero, after shedding the float noise of
/// the multiplication (1005 × 1.1 is 1105.5000000000002).
fn whole(minor: f64) -> f64 {
    ((minor * 1e6).round() / 1e6).round()
}

/// Minor units as major units: an integer for zero-decimal currencies, else a float.
fn major(minor: f64, decimals: u32) -> Value {
    let major = minor / 10f64.powi(decimals as i32);
    if decimals == 0 {
        Value::from(major as i64)
    } else {
        let scale = 10f64.powi(decimals as i32);
        Value::from((major * scale).round() / scale)
    }
}

fn shown(minor: f64, decimals: u32, currency: &str) -> String {
    let major = minor / 10f64.powi(decimals as i32);
    format!(
        "{major:.prec$} {}",
        currency.to_ascii_uppercase(),
        prec = decimals as usize
    )
}

/// Half a unit in the last decimal place Stripe gave the rate (1.0832 → 0.00005).
fn rate_precision(rate: f64) -> f64 {
    let text = format!("{rate}");
    let decimals = text.split_once('.').map_or(0, |(_, digits)| digits.len());
    0.5 * 10f64.powi(-(decimals as i32))
}

fn as_number(value: Option<&Json>) -> Option<f64> {
    value.and_then(Json::as_f64).filter(|n| n.is_finite())
}

impl Request {
    fn to_decimals(&self) -> u32 {
        currency_decimals(&self.to)
    }

    /// Minor units of `to` per minor unit of `from` at a rate of 1.
    fn scale(&self) -> f64 {
        10f64.powi(currency_decimals(&self.to) as i32 - currency_decimals(&self.from) as i32)
    }

    /// The balance transaction, when it is an object that settled in `to`.
    fn settled_in_target(&self) -> Option<&Map<String, Json>> {
        let transaction = self.balance_transaction.as_ref()?.as_object()?;
        let currency = transaction.get("currency")?.as_str()?;
        currency
            .eq_ignore_ascii_case(&self.to)
            .then_some(transaction)
    }

    /// The transaction's amount, fee and net when its amount is `minor` (of `to`), to
    /// `tolerance`.
    fn settled(
        transaction: &Map<String, Json>,
        minor: f64,
        tolerance: f64,
    ) -> Option<(f64, FeeAndNet)> {
        let amount = as_number(transaction.get("amount"))?;
        ((amount - minor).abs() <= tolerance).then(|| {
            let fee = as_number(transaction.get("fee"));
            let net = as_number(transaction.get("net"));
            (amount, (fee, net))
        })
    }

    fn convert(&self, filter: &str) -> Result<Done, Error> {
        let transaction_id = self
            .balance_transaction
            .as_ref()
            .and_then(|t| t.get("id"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        if self.from == self.to {
            let settled = self
                .settled_in_target()
                .and_then(|t| Request::settled(t, self.minor, 0.0));
            return Ok(Done {
                minor: whole(self.minor),
                rate: 1.0,
                source: Source::Same,
                transaction: settled.and(transaction_id),
                settled: settled.map(|(_, fees)| fees),
            });
        }
        if let Some(transaction) = self.settled_in_target()
            && let Some(rate) = as_number(transaction.get("exchange_rate")).filter(|r| *r > 0.0)
        {
            let base = self.minor * self.scale();
            let estimate = base * rate;
            let tolerance = base.abs() * rate_precision(rate) + 0.5 + 1e-9;
            let settled = Request::settled(transaction, estimate, tolerance);
            return Ok(Done {
                minor: settled.map_or_else(|| whole(estimate), |(amount, _)| amount),
                rate,
                source: Source::Stripe,
                transaction: transaction_id,
                settled: settled.map(|(_, fees)| fees),
            });
        }
        match self.table_rate(filter)? {
            Some((rate, inverse_of)) => Ok(Done {
                minor: whole(self.minor * self.scale() * rate),
                rate,
                source: Source::Table { inverse_of },
                transaction: None,
                settled: None,
            }),
            None => Err(invalid(format!(
                "{filter}: no exchange rate for {} → {}: {}",
                self.from.to_ascii_uppercase(),
                self.to.to_ascii_uppercase(),
                self.missing().join("; ")
            ))),
        }
    }

    /// The table's `from → to` rate, else the inverse of its `to → from` rate (and that rate).
    fn table_rate(&self, filter: &str) -> Result<Option<(f64, Option<f64>)>, Error> {
        let Some(rates) = &self.rates else {
            return Ok(None);
        };
        let Some(table) = rates.as_object() else {
            return Err(invalid(format!(
                "{filter}: the rate table must map currencies to currencies to rates, e.g. \
                 {{\"eur\": {{\"usd\": 1.08}}}}; got {}",
                crate::flow::model::json_kind(rates)
            )));
        };
        if let Some(rate) = table_entry(filter, table, &self.from, &self.to)? {
            return Ok(Some((rate, None)));
        }
        Ok(table_entry(filter, table, &self.to, &self.from)?.map(|rate| (1.0 / rate, Some(rate))))
    }

    /// Why neither Stripe nor the table gave a rate, one reason each.
    fn missing(&self) -> Vec<String> {
        let to = self.to.to_ascii_uppercase();
        let stripe = match &self.balance_transaction {
            None => "no balance transaction was given".to_string(),
            Some(Json::String(id)) => format!(
                "the balance transaction {id} is not expanded (retrieve the charge with expand: \
                 [balance_transaction])"
            ),
            Some(Json::Object(t)) => match t.get("currency").and_then(Json::as_str) {
                Some(currency) if !currency.eq_ignore_ascii_case(&self.to) => format!(
                    "Stripe settled it in {}, not {to}",
                    currency.to_ascii_uppercase()
                ),
                Some(_) => "its balance transaction has no exchange_rate".to_string(),
                None => "the balance transaction has no currency".to_string(),
            },
            Some(other) => format!(
                "the balance transaction is {}, not an object",
                crate::flow::model::json_kind(other)
            ),
        };
        let table = match &self.rates {
            None => "no rate table was given (e.g. settings.exchange_rates)".to_string(),
            Some(_) => format!(
                "the rate table has neither {from} → {to} nor {to} → {from}",
                from = self.from,
                to = self.to
            ),
        };
        vec![stripe, table]
    }

    /// The conversion as the `conversion` filter gives it.
    fn describe(&self, done: &Done) -> Json {
        let to_decimals = self.to_decimals();
        let from_decimals = currency_decimals(&self.from);
        let from_text = shown(self.minor, from_decimals, &self.from);
        let to_text = shown(done.minor, to_decimals, &self.to);
        let rate_text = match done.source {
            Source::Table {
                inverse_of: Some(opposite),
            } => {
                let inverse = format!("{:.6}", done.rate);
                let inverse = inverse.trim_end_matches('0').trim_end_matches('.');
                format!("{inverse} (1 / {opposite})")
            }
            _ => done.rate.to_string(),
        };
        let transaction = done.transaction.as_deref().unwrap_or("");
        let description = match done.source {
            Source::Same => format!("{from_text}: no conversion needed"),
            Source::Stripe if done.settled.is_some() => format!(
                "{from_text} = {to_text} at {rate_text}, Stripe's rate and settled amount \
                 (balance transaction {transaction})"
            ),
            Source::Stripe => format!(
                "{from_text} = {to_text} at {rate_text}, Stripe's rate (balance transaction \
                 {transaction})"
            ),
            Source::Table { .. } => {
                format!("{from_text} = {to_text} at {rate_text} from the exchange rate table")
            }
        };
        let source = match done.source {
            Source::Same => "same_currency",
            Source::Stripe => "stripe",
            Source::Table { .. } => "rate_table",
        };
        let in_target = |minor: Option<f64>| {
            minor
                .map(|m| to_json(&major(m, to_decimals)))
                .transpose()
                .ok()
                .flatten()
        };
        let (fee, net) = done.settled.unwrap_or((None, None));
        let mut out = json!({
            "amount": to_json(&major(done.minor, to_decimals)).unwrap_or(Json::Null),
            "currency": self.to,
            "original_amount": to_json(&major(self.minor, from_decimals)).unwrap_or(Json::Null),
            "original_currency": self.from,
            "rate": done.rate,
            "source": source,
            "description": description,
        });
        let extra = [
            (
                "balance_transaction",
                done.transaction.clone().map(Json::String),
            ),
            ("fee", in_target(fee)),
            ("net", in_target(net)),
        ];
        for (key, value) in extra {
            if let Some(value) = value {
                out[key] = value;
            }
        }
        out
    }
}

/// `table[from][to]`, currency codes compared without case; a rate that is not a positive
/// number is an error.
fn table_entry(
    filter: &str,
    table: &Map<String, Json>,
    from: &str,
    to: &str,
) -> Result<Option<f64>, Error> {
    let Some(row) = table
        .iter()
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(from))
        .map(|(_, row)| row)
    else {
        return Ok(None);
    };
    let Some(row) = row.as_object() else {
        return Err(invalid(format!(
            "{filter}: the rate table's entry for {from} must map currencies to rates, e.g. \
             {{\"usd\": 1.08}}"
        )));
    };
    let Some(value) = row
        .iter()
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(to))
        .map(|(_, value)| value)
    else {
        return Ok(None);
    };
    let rate = value
        .as_f64()
        .or_else(|| value.as_str().and_then(|t| t.trim().parse::<f64>().ok()));
    match rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Ok(Some(rate)),
        _ => Err(invalid(format!(
            "{filter}: the rate table's {from} → {to} rate must be a positive number, got {value}"
        ))),
    }
}

#[cfg(test)]
mod tests;
