//! The filters Tributary adds to Jinja's own. Every one passes undefined and none through
//! (null in, null out) so a missing Stripe value leaves its CRM field out instead of failing.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::{currency_decimals, rfc3339, to_json};

/// A point in time as a filter received it, so `add_days` can answer in the same kind.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Moment {
    /// Unix seconds.
    Unix(i64),
    /// An RFC 3339 timestamp.
    Timestamp(DateTime<Utc>),
    /// A calendar date, `YYYY-MM-DD`.
    Date(NaiveDate),
}

impl Moment {
    fn utc(self) -> Option<DateTime<Utc>> {
        match self {
            Moment::Unix(secs) => Utc.timestamp_opt(secs, 0).single(),
            Moment::Timestamp(at) => Some(at),
            Moment::Date(date) => date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

fn is_missing(value: &Value) -> bool {
    value.is_undefined() || value.is_none()
}

/// A number from a value that may be a JSON number or a numeric string.
fn number(filter: &str, value: &Value) -> Result<f64, Error> {
    if let Some(text) = value.as_str() {
        return text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| invalid(format!("{filter}: '{text}' is not a number")));
    }
    if value.is_number() {
        return f64::try_from(value.clone())
            .map_err(|_| invalid(format!("{filter}: {value} is not a number")));
    }
    Err(invalid(format!(
        "{filter}: expected a number, got {}",
        value.kind()
    )))
}

fn currency_code(filter: &str, currency: Option<&Value>) -> Result<String, Error> {
    match currency.and_then(Value::as_str) {
        Some(code) if !code.trim().is_empty() => Ok(code.trim().to_ascii_lowercase()),
        _ => Err(invalid(format!(
            "{filter}: needs the currency, e.g. {filter}(object.currency)"
        ))),
    }
}

fn round_to(value: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

/// `amount | major_units(currency)`: Stripe minor units to the currency's major unit.
pub fn major_units(value: Value, currency: Option<Value>) -> Result<Value, Error> {
    if is_missing(&value) {
        return Ok(value);
    }
    let decimals = currency_decimals(&currency_code("major_units", currency.as_ref())?);
    let minor = number("major_units", &value)?;
    Ok(rounded(minor / 10f64.powi(decimals as i32), decimals))
}

/// `amount | format_amount(currency)`: like `major_units`, as text with the currency's
/// decimals (`"149.00"`, `"5000"`, `"1.500"`), for descriptions and subjects.
pub fn format_amount(value: Value, currency: Option<Value>) -> Result<Value, Error> {
    if is_missing(&value) {
        return Ok(value);
    }
    let decimals = currency_decimals(&currency_code("format_amount", currency.as_ref())?);
    let minor = number("format_amount", &value)?;
    let major = minor.round() / 10f64.powi(decimals as i32);
    Ok(Value::from(format!(
        "{major:.prec$}",
        prec = decimals as usize
    )))
}

fn words(value: &Value) -> Option<Vec<String>> {
    if is_missing(value) {
        return None;
    }
    let text = value.as_str().map_or_else(|| shown(value), str::to_owned);
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    (!words.is_empty()).then_some(words)
}

/// `name | first_name`: the first word of a full name; none for none or a blank name.
pub fn first_name(value: Value) -> Value {
    match words(&value) {
        Some(words) => Value::from(words[0].clone()),
        None => Value::UNDEFINED,
    }
}

/// `name | last_name`: everything after the first word (`"Ana de la Cruz"` → `"de la Cruz"`);
/// undefined for a one-word name, so the field is left out.
pub fn last_name(value: Value) -> Value {
    match words(&value) {
        Some(words) if words.len() > 1 => Value::from(words[1..].join(" ")),
        _ => Value::UNDEFINED,
    }
}

fn moment(filter: &str, value: &Value) -> Result<Option<Moment>, Error> {
    if is_missing(value) {
        return Ok(None);
    }
    if let Some(text) = value.as_str() {
        let text = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Some(Moment::Timestamp(at.with_timezone(&Utc))));
        }
        if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Some(Moment::Date(date)));
        }
        if let Ok(secs) = text.parse::<i64>() {
            return Ok(Some(Moment::Unix(secs)));
        }
        return Err(invalid(format!(
            "{filter}: '{text}' is neither unix seconds nor an RFC 3339 date"
        )));
    }
    if value.is_number() {
        let secs = number(filter, value)?;
        return Ok(Some(Moment::Unix(secs.floor() as i64)));
    }
    Err(invalid(format!(
        "{filter}: expected unix seconds or an RFC 3339 string, got {}",
        value.kind()
    )))
}

fn utc(filter: &str, at: Moment) -> Result<DateTime<Utc>, Error> {
    at.utc()
        .ok_or_else(|| invalid(format!("{filter}: the time is out of range")))
}

/// `ts | date`: unix seconds or RFC 3339 → `YYYY-MM-DD` in UTC.
pub fn date(value: Value) -> Result<Value, Error> {
    match moment("date", &value)? {
        Some(at) => Ok(Value::from(utc("date", at)?.format("%Y-%m-%d").to_string())),
        None => Ok(value),
    }
}

/// `ts | datetime`: unix seconds, RFC 3339 or a date → RFC 3339 in UTC (`…T00:00:00Z`).
pub fn datetime(value: Value) -> Result<Value, Error> {
    match moment("datetime", &value)? {
        Some(at) => Ok(Value::from(rfc3339(utc("datetime", at)?))),
        None => Ok(value),
    }
}

/// `ts | add_days(n)`: shifted by `n` days (may be negative), in the same kind it came:
/// unix seconds stay an integer, RFC 3339 stays RFC 3339 (normalised to UTC), a date a date.
pub fn add_days(value: Value, days: i64) -> Result<Value, Error> {
    let Some(at) = moment("add_days", &value)? else {
        return Ok(value);
    };
    let shift = Duration::try_days(days)
        .ok_or_else(|| invalid(format!("add_days: {days} days is out of range")))?;
    let out_of_range = || invalid("add_days: the result is out of range".to_string());
    Ok(match at {
        Moment::Unix(secs) => Value::from(
            secs.checked_add(shift.num_seconds())
                .ok_or_else(out_of_range)?,
        ),
        Moment::Timestamp(ts) => Value::from(rfc3339(
            ts.checked_add_signed(shift).ok_or_else(out_of_range)?,
        )),
        Moment::Date(d) => Value::from(
            d.checked_add_signed(shift)
                .ok_or_else(out_of_range)?
                .format("%Y-%m-%d")
                .to_string(),
        ),
    })
}

/// `status | lookup({"active": "Active"}, "Unknown")`: the table's entry for the value,
/// else the default (undefined when none is given, so the field is left out).
pub fn lookup(value: Value, table: Value, default: Option<Value>) -> Result<Value, Error> {
    if table.kind() != ValueKind::Map {
        return Err(invalid(format!(
            "lookup: the table must be a mapping, got {}",
            table.kind()
        )));
    }
    let fallback = || default.clone().unwrap_or(Value::UNDEFINED);
    if is_missing(&value) {
        return Ok(fallback());
    }
    let found = table.get_item(&value).unwrap_or(Value::UNDEFINED);
    if !found.is_undefined() {
        return Ok(found);
    }
    if value.as_str().is_none() {
        let by_text = table
            .get_item(&Value::from(shown(&value)))
            .unwrap_or(Value::UNDEFINED);
        if !by_text.is_undefined() {
            return Ok(by_text);
        }
    }
    Ok(fallback())
}

/// Monthly recurring revenue of a Stripe subscription in major units, and its currency's
/// decimals, unrounded.
fn monthly(filter: &str, subscription: &Value) -> Result<Option<(f64, u32)>, Error> {
    if is_missing(subscription) {
        return Ok(None);
    }
    let sub = to_json(subscription)?;
    if !sub.is_object() {
        return Err(invalid(format!(
            "{filter}: expected a subscription object, got {}",
            subscription.kind()
        )));
    }
    let monthly =
        super::recurring::monthly_minor(&sub).map_err(|m| invalid(format!("{filter}: {m}")))?;
    Ok(monthly.map(|(minor, currency)| {
        let decimals = currency_decimals(&currency);
        (minor / 10f64.powi(decimals as i32), decimals)
    }))
}

/// A major-unit amount rounded to the currency's decimals: an integer for zero-decimal
/// currencies, a float otherwise (14900 usd → 149.0, rendered `149.0` in text).
fn rounded(major: f64, decimals: u32) -> Value {
    let major = round_to(major, decimals);
    if decimals == 0 {
        Value::from(major as i64)
    } else {
        Value::from(major)
    }
}

/// `object | mrr`: the subscription's monthly recurring revenue in major units.
pub fn mrr(value: Value) -> Result<Value, Error> {
    Ok(match monthly("mrr", &value)? {
        Some((major, decimals)) => rounded(major, decimals),
        None => Value::UNDEFINED,
    })
}

/// `object | arr`: twelve times the unrounded MRR, rounded once.
pub fn arr(value: Value) -> Result<Value, Error> {
    Ok(match monthly("arr", &value)? {
        Some((major, decimals)) => rounded(major * 12.0, decimals),
        None => Value::UNDEFINED,
    })
}

fn text_filter(value: Value, f: impl FnOnce(&str) -> String) -> Value {
    if is_missing(&value) {
        return value;
    }
    match value.as_str() {
        Some(text) => Value::from(f(text)),
        None => Value::from(f(&shown(&value))),
    }
}

/// A non-text value's text; empty when it would be over the size limit of a value, so a
/// list of large strings is never printed whole.
fn shown(value: &Value) -> String {
    crate::flow::limits::bounded_text(value).unwrap_or_default()
}

/// Jinja's `lower`, passing undefined and none through.
pub fn lower(value: Value) -> Value {
    text_filter(value, str::to_lowercase)
}

/// Jinja's `upper`, passing undefined and none through.
pub fn upper(value: Value) -> Value {
    text_filter(value, str::to_uppercase)
}

/// Jinja's `trim` (optionally of the given characters), passing undefined and none through.
pub fn trim(value: Value, chars: Option<String>) -> Value {
    text_filter(value, |text| match chars {
        Some(chars) => {
            let chars: Vec<char> = chars.chars().collect();
            text.trim_matches(&chars[..]).to_owned()
        }
        None => text.trim().to_owned(),
    })
}

/// Jinja's `title`, passing undefined and none through.
pub fn title(value: Value) -> Value {
    text_filter(value, |text| {
        minijinja::filters::title(std::borrow::Cow::Borrowed(text))
    })
}

/// Jinja's `capitalize`, passing undefined and none through.
pub fn capitalize(value: Value) -> Value {
    text_filter(value, |text| {
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => {
                first.to_uppercase().collect::<String>() + &chars.as_str().to_lowercase()
            }
            None => String::new(),
        }
    })
}
