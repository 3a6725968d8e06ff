//! The template engine of flows: one shared minijinja environment with Tributary's filters,
//! the template context built from a [`RenderContext`], and rendering of template strings to
//! JSON values. Pure: no I/O, no clock (time comes from the context).
//!
//! Rules, as the design's flow contract states them and as decided here:
//! - A string that is exactly one `{{ expression }}` (whitespace around it allowed) evaluates to
//!   the expression's native value (number, bool, null, map, list); any other template renders
//!   to a string; a string without template syntax is a literal.
//! - Undefined is chainable: `object.metadata.deal_name` is undefined when `metadata` has no such
//!   key, and so is `previous.status` when the event has no `previous_attributes`.
//! - Keys whose JSON value is `null` are left out of the context's maps, so Stripe's many
//!   `null`s behave like absent values: `default(…)` replaces them, `is defined` is false and
//!   text templates print nothing for them.
//! - The string filters `lower`, `upper`, `trim`, `title` and `capitalize` pass undefined and
//!   none through instead of turning them into `""` or `"none"`, so a missing e-mail stays
//!   missing (and its field is left out) rather than becoming an empty string.

use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone, Utc};
use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::{Map, Value as Json};

use super::limits::{self, Program};
use super::model::RenderContext;

/// The names a template can read, besides the environment's global functions.
pub const CONTEXT_NAMES: &[&str] = &["event", "object", "previous", "steps", "settings", "now"];

/// Stripe's zero-decimal currencies: amounts are already in major units.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Stripe's three-decimal currencies.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Instructions one template evaluation may execute.
pub const MAX_TEMPLATE_FUEL: u64 = 50_000;

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(build_environment);

/// The shared environment: Jinja's builtins plus Tributary's filters, chainable undefined.
pub fn environment<'source>() -> &'static Environment<'source> {
    &ENVIRONMENT
}

fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // A tenant's template runs on shared workers: bound the work one render may do, so a
    // runaway loop fails that step instead of stalling the worker.
    env.set_fuel(Some(MAX_TEMPLATE_FUEL));
    env.add_filter("major_units", filters::major_units);
    env.add_filter("format_amount", filters::format_amount);
    env.add_filter("first_name", filters::first_name);
    env.add_filter("last_name", filters::last_name);
    env.add_filter("date", filters::date);
    env.add_filter("datetime", filters::datetime);
    env.add_filter("add_days", filters::add_days);
    env.add_filter("lookup", filters::lookup);
    env.add_filter("mrr", filters::mrr);
    env.add_filter("arr", filters::arr);
    env.add_filter("lower", filters::lower);
    env.add_filter("upper", filters::upper);
    env.add_filter("trim", filters::trim);
    env.add_filter("title", filters::title);
    env.add_filter("capitalize", filters::capitalize);
    env.add_function("password", password);
    env.add_function("token", token);
    limits::install(&mut env);
    env
}

/// Where `password()` and `token(n)` find their seed in the context; templates cannot name it
/// (validation refuses unknown variables).
const GENERATOR: &str = "__generator";
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// The generated secrets of one render: derived from the run's seed and a name, so the same
/// name gives the same value in every step and on every attempt, and nothing is stored.
#[derive(Debug)]
struct Generator {
    seed: Option<String>,
    made: Mutex<Vec<String>>,
}

impl minijinja::value::Object for Generator {}

impl Generator {
    fn bytes(&self, kind: &str, name: &str, len: usize) -> Option<Vec<u8>> {
        use hmac::{Hmac, Mac};
        let seed = self.seed.as_deref()?;
        let mut out = Vec::with_capacity(len);
        let mut block = 0u32;
        while out.len() < len {
            let mut mac =
                Hmac::<sha2::Sha256>::new_from_slice(seed.as_bytes()).expect("any key length");
            mac.update(format!("{kind}|{name}|{block}").as_bytes());
            out.extend_from_slice(&mac.finalize().into_bytes());
            block += 1;
        }
        out.truncate(len);
        Some(out)
    }

    fn keep(&self, value: String) -> String {
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(value.clone());
        value
    }
}

fn generator(state: &State) -> Option<Value> {
    state.lookup(GENERATOR)
}

/// `password(name='password')`: 20 letters and digits, without look-alikes.
fn password(state: &State, name: Option<String>) -> Result<String, Error> {
    let name = name.unwrap_or_else(|| "password".into());
    let Some(value) = generator(state) else {
        return Ok("[generated password]".into());
    };
    let Some(generator) = value.downcast_object_ref::<Generator>() else {
        return Ok("[generated password]".into());
    };
    match generator.bytes("password", &name, 20) {
        Some(bytes) => Ok(generator.keep(
            bytes
                .iter()
                .map(|b| PASSWORD_ALPHABET[*b as usize % PASSWORD_ALPHABET.len()] as char)
                .collect(),
        )),
        None => Ok("[generated password]".into()),
    }
}

/// `token(n=32, name='token')`: `n` hex characters (8 to 128).
fn token(state: &State, n: Option<u32>, name: Option<String>) -> Result<String, Error> {
    let n = n.unwrap_or(32);
    if !(8..=128).contains(&n) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("token(n): n must be from 8 to 128, not {n}"),
        ));
    }
    let name = name.unwrap_or_else(|| "token".into());
    let placeholder = || "[generated token]".to_string();
    let Some(value) = generator(state) else {
        return Ok(placeholder());
    };
    let Some(generator) = value.downcast_object_ref::<Generator>() else {
        return Ok(placeholder());
    };
    match generator.bytes("token", &name, (n as usize).div_ceil(2)) {
        Some(bytes) => {
            let mut text = hex::encode(bytes);
            text.truncate(n as usize);
            Ok(generator.keep(text))
        }
        None => Ok(placeholder()),
    }
}

/// The secrets `password()` and `token(n)` made while rendering against `root` (a context from
/// [`context`]), to keep them out of what is stored.
pub fn generated(root: &Value) -> Vec<String> {
    root.get_attr(GENERATOR)
        .ok()
        .and_then(|value| {
            value
                .downcast_object_ref::<Generator>()
                .map(|g| g.made.lock().unwrap_or_else(|e| e.into_inner()).clone())
        })
        .unwrap_or_default()
}

/// The context templates see: `event`, `object`, `previous`, `steps.<id>.id` (and
/// `steps.<id>.response` where the vendor answered with JSON, `steps.<id>.object` for a
/// `stripe.retrieve` step), `settings`, `now`.
pub fn context(ctx: &RenderContext) -> Value {
    let event = without_nulls(&ctx.event);
    let mut root = Map::new();
    if let Some(object) = event.pointer("/data/object") {
        root.insert("object".into(), object.clone());
    }
    if let Some(previous) = event.pointer("/data/previous_attributes") {
        root.insert("previous".into(), previous.clone());
    }
    root.insert("event".into(), event);
    // A step that made no record (`log`) still offers its answer.
    let names: std::collections::BTreeSet<&String> = ctx
        .steps
        .keys()
        .chain(ctx.responses.keys())
        .chain(ctx.objects.keys())
        .collect();
    let steps: Map<String, Json> = names
        .into_iter()
        .map(|step| {
            let mut entry = Map::new();
            if let Some(id) = ctx.steps.get(step) {
                entry.insert("id".into(), Json::String(id.clone()));
            }
            if let Some(response) = ctx.responses.get(step) {
                entry.insert("response".into(), without_nulls(response));
            }
            if let Some(object) = ctx.objects.get(step) {
                entry.insert("object".into(), without_nulls(object));
            }
            (step.clone(), Json::Object(entry))
        })
        .collect();
    root.insert("steps".into(), Json::Object(steps));
    root.insert("settings".into(), without_nulls(&ctx.settings));
    root.insert("now".into(), Json::String(rfc3339(ctx.now)));
    let generator = Value::from_object(Generator {
        seed: ctx.secret_seed.clone(),
        made: Mutex::new(Vec::new()),
    });
    let mut map: std::collections::BTreeMap<String, Value> = root
        .into_iter()
        .map(|(k, v)| (k, Value::from(Serde(v))))
        .collect();
    map.insert(GENERATOR.to_string(), generator);
    Value::from(map)
}

/// Maps lose their `null` entries (recursively), so they read as undefined.
fn without_nulls(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A template or expression compiled with the limits of [`limits`], ready to run.
pub struct Bounded<'env, 'source> {
    env: &'env Environment<'source>,
    source: &'source str,
    program: Program<'source>,
    expression: bool,
}

impl<'source> Bounded<'_, 'source> {
    /// Evaluates an expression against a context (or anything that converts into one).
    pub fn eval<V: Into<Value>>(&self, ctx: V) -> Result<Value, Error> {
        self.program.eval(self.env, ctx.into())
    }

    /// The variables the template reads, with trivial attribute chains (`object.amount`).
    pub fn undeclared_variables(&self, nested: bool) -> std::collections::HashSet<String> {
        if self.expression {
            self.env
                .compile_expression(self.source)
                .map(|expr| expr.undeclared_variables(nested))
                .unwrap_or_default()
        } else {
            self.env
                .template_from_str(self.source)
                .map(|tmpl| tmpl.undeclared_variables(nested))
                .unwrap_or_default()
        }
    }
}

/// A template string, compiled by how it renders.
pub enum Compiled<'env, 'source> {
    /// No template syntax: the string itself.
    Literal(&'source str),
    /// Exactly one `{{ expression }}`: its native value.
    Expression(Bounded<'env, 'source>),
    /// Anything else: rendered text.
    Template(Bounded<'env, 'source>),
}

impl Compiled<'_, '_> {
    /// The variables the template reads, with trivial attribute chains (`object.amount`).
    pub fn variables(&self) -> std::collections::HashSet<String> {
        match self {
            Compiled::Literal(_) => Default::default(),
            Compiled::Expression(expr) => expr.undeclared_variables(true),
            Compiled::Template(tmpl) => tmpl.undeclared_variables(true),
        }
    }

    /// Renders against a context from [`context`]; undefined and none become JSON null. A
    /// value over [`limits::MAX_VALUE_BYTES`] is an error, found before it is converted.
    pub fn render(&self, ctx: &Value) -> Result<Json, Error> {
        match self {
            Compiled::Literal(text) => Ok(Json::String((*text).to_owned())),
            Compiled::Expression(expr) => {
                let value = expr.eval(ctx.clone())?;
                if let Err(size) = limits::json_len(&value, None, limits::MAX_VALUE_BYTES) {
                    return Err(limits::too_large(
                        "the value",
                        size,
                        limits::MAX_VALUE_BYTES,
                    ));
                }
                to_json(&value)
            }
            Compiled::Template(tmpl) => {
                tmpl.program.render(tmpl.env, ctx.clone()).map(Json::String)
            }
        }
    }
}

/// Whether a string contains template syntax at all.
pub fn is_template(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// The inner expression of a string that is exactly one `{{ … }}`.
pub fn single_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let nested = ["{{", "}}", "{%", "%}", "{#"];
    (!nested.iter().any(|marker| inner.contains(marker))).then_some(inner)
}

/// Compiles a value template (see the module docs for the three kinds).
pub fn compile<'env, 'source>(
    env: &'env Environment<'source>,
    source: &'source str,
) -> Result<Compiled<'env, 'source>, Error> {
    if !is_template(source) {
        return Ok(Compiled::Literal(source));
    }
    if let Some(inner) = single_expression(source)
        && let Ok(program) = Program::expression(inner)
    {
        return Ok(Compiled::Expression(Bounded {
            env,
            source: inner,
            program,
            expression: true,
        }));
    }
    Ok(Compiled::Template(Bounded {
        env,
        source,
        program: Program::template(source)?,
        expression: false,
    }))
}

/// The expression text of a condition (`when`, `trigger.filter`); a `{{ … }}` wrapper is
/// accepted and removed.
pub fn condition_source(source: &str) -> &str {
    single_expression(source).unwrap_or(source)
}

/// Compiles a condition (`when`, `trigger.filter`).
pub fn compile_condition<'env, 'source>(
    env: &'env Environment<'source>,
    source: &'source str,
) -> Result<Bounded<'env, 'source>, Error> {
    let source = condition_source(source);
    Ok(Bounded {
        env,
        source,
        program: Program::expression(source)?,
        expression: true,
    })
}

/// A template value as JSON; undefined becomes null.
pub fn to_json(value: &Value) -> Result<Json, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(Json::Null);
    }
    serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
}

/// A minijinja error as a short message without template names (`unknown filter: …`).
pub fn describe(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// RFC 3339 in UTC with a `Z` and whole seconds, the form every CRM accepts.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// How many decimals Stripe uses for a currency's minor unit.
pub fn currency_decimals(currency: &str) -> u32 {
    let code = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

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

/// The filters Tributary adds to Jinja's own. Every one passes undefined and none through
/// (null in, null out) so a missing Stripe value leaves its CRM field out instead of failing.
mod filters {
    use super::*;

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
}

/// Recurring revenue of Stripe subscriptions, over the JSON shapes of every API version.
mod recurring {
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn ctx(object: Json) -> RenderContext {
        RenderContext {
            event: json!({ "type": "test.event", "created": 1_726_358_400, "data": { "object": object } }),
            steps: BTreeMap::new(),
            responses: BTreeMap::new(),
            objects: BTreeMap::new(),
            settings: json!({}),
            now: Utc.with_ymd_and_hms(2024, 9, 15, 12, 30, 0).unwrap(),
            secret_seed: None,
        }
    }

    fn eval_with(source: &str, object: Json) -> Json {
        let compiled = compile(environment(), source).expect("compiles");
        compiled.render(&context(&ctx(object))).expect("renders")
    }

    fn eval(source: &str) -> Json {
        eval_with(source, json!({}))
    }

    fn eval_err(source: &str, object: Json) -> String {
        let compiled = compile(environment(), source).expect("compiles");
        describe(&compiled.render(&context(&ctx(object))).expect_err("fails"))
    }

    #[test]
    fn major_units_two_zero_and_three_decimal_currencies() {
        assert_eq!(eval("{{ 14900 | major_units('usd') }}"), json!(149.0));
        assert_eq!(eval("{{ 14999 | major_units('EUR') }}"), json!(149.99));
        assert_eq!(eval("{{ 5 | major_units('usd') }}"), json!(0.05));
        assert_eq!(eval("{{ 5000 | major_units('jpy') }}"), json!(5000));
        assert_eq!(eval("{{ 12000 | major_units('KRW') }}"), json!(12000));
        assert_eq!(eval("{{ 1500 | major_units('xof') }}"), json!(1500));
        assert_eq!(eval("{{ 12345 | major_units('kwd') }}"), json!(12.345));
        assert_eq!(eval("{{ 1500 | major_units('bhd') }}"), json!(1.5));
        assert_eq!(eval("{{ '24900' | major_units('usd') }}"), json!(249.0));
        assert_eq!(
            eval("{{ object.amount | major_units(object.currency) }}"),
            json!(null)
        );
        assert_eq!(
            eval("Total {{ 14900 | major_units('usd') }}"),
            json!("Total 149.0")
        );
        assert!(
            eval_err("{{ 100 | major_units(object.currency) }}", json!({}))
                .contains("needs the currency")
        );
        assert!(eval_err("{{ 'abc' | major_units('usd') }}", json!({})).contains("not a number"));
    }

    #[test]
    fn format_amount_keeps_the_currency_decimals() {
        assert_eq!(eval("{{ 14900 | format_amount('usd') }}"), json!("149.00"));
        assert_eq!(eval("{{ 5000 | format_amount('jpy') }}"), json!("5000"));
        assert_eq!(eval("{{ 1500 | format_amount('tnd') }}"), json!("1.500"));
    }

    #[test]
    fn first_and_last_name() {
        assert_eq!(eval("{{ 'Tony Stark' | first_name }}"), json!("Tony"));
        assert_eq!(eval("{{ 'Tony Stark' | last_name }}"), json!("Stark"));
        assert_eq!(
            eval("{{ '  Ana  de la Cruz ' | first_name }}"),
            json!("Ana")
        );
        assert_eq!(
            eval("{{ 'Ana de la Cruz' | last_name }}"),
            json!("de la Cruz")
        );
        assert_eq!(eval("{{ 'Cher' | first_name }}"), json!("Cher"));
        assert_eq!(eval("{{ 'Cher' | last_name }}"), json!(null));
        assert_eq!(eval("{{ '   ' | first_name }}"), json!(null));
        assert_eq!(eval("{{ none | first_name }}"), json!(null));
        assert_eq!(eval("{{ object.name | last_name }}"), json!(null));
        assert_eq!(eval("{{ 'Cher' | last_name or 'Cher' }}"), json!("Cher"));
    }

    #[test]
    fn date_and_datetime() {
        assert_eq!(eval("{{ 1726358400 | date }}"), json!("2024-09-15"));
        assert_eq!(
            eval("{{ 1726358400 | datetime }}"),
            json!("2024-09-15T00:00:00Z")
        );
        assert_eq!(
            eval("{{ '2024-09-15T23:30:00-02:00' | date }}"),
            json!("2024-09-16")
        );
        assert_eq!(
            eval("{{ '2024-09-15T23:30:00-02:00' | datetime }}"),
            json!("2024-09-16T01:30:00Z")
        );
        assert_eq!(
            eval("{{ '2024-09-15' | datetime }}"),
            json!("2024-09-15T00:00:00Z")
        );
        assert_eq!(eval("{{ now | date }}"), json!("2024-09-15"));
        assert_eq!(eval("{{ now }}"), json!("2024-09-15T12:30:00Z"));
        assert_eq!(eval("{{ object.canceled_at | date }}"), json!(null));
        assert!(
            eval_err("{{ 'next tuesday' | date }}", json!({})).contains("neither unix seconds")
        );
    }

    #[test]
    fn add_days_answers_in_the_kind_it_was_given() {
        assert_eq!(eval("{{ 1726358400 | add_days(1) }}"), json!(1_726_444_800));
        assert_eq!(
            eval("{{ 1726358400 | add_days(3) | date }}"),
            json!("2024-09-18")
        );
        assert_eq!(
            eval("{{ now | add_days(1) }}"),
            json!("2024-09-16T12:30:00Z")
        );
        assert_eq!(
            eval("{{ '2024-02-28' | add_days(2) }}"),
            json!("2024-03-01")
        );
        assert_eq!(
            eval("{{ '2024-03-01' | add_days(-1) }}"),
            json!("2024-02-29")
        );
        assert_eq!(eval("{{ object.missing | add_days(1) }}"), json!(null));
    }

    #[test]
    fn lookup_maps_with_a_default() {
        let table = "{'active': 'Active', 'past_due': 'Past Due'}";
        assert_eq!(
            eval_with(
                &format!("{{{{ object.status | lookup({table}, 'Unknown') }}}}"),
                json!({"status": "past_due"})
            ),
            json!("Past Due")
        );
        assert_eq!(
            eval_with(
                &format!("{{{{ object.status | lookup({table}, 'Unknown') }}}}"),
                json!({"status": "paused"})
            ),
            json!("Unknown")
        );
        assert_eq!(
            eval(&format!(
                "{{{{ object.status | lookup({table}, 'Unknown') }}}}"
            )),
            json!("Unknown")
        );
        assert_eq!(
            eval(&format!("{{{{ 'paused' | lookup({table}) }}}}")),
            json!(null)
        );
        assert_eq!(eval("{{ 2 | lookup({'2': 'two'}) }}"), json!("two"));
        assert!(eval_err("{{ 'a' | lookup('a') }}", json!({})).contains("must be a mapping"));
    }

    fn subscription(items: Json) -> Json {
        json!({ "object": "subscription", "currency": "usd", "items": { "object": "list", "data": items } })
    }

    fn item(unit_amount: i64, interval: &str, interval_count: i64, quantity: i64) -> Json {
        json!({
            "object": "subscription_item",
            "quantity": quantity,
            "price": {
                "object": "price",
                "currency": "usd",
                "unit_amount": unit_amount,
                "recurring": { "interval": interval, "interval_count": interval_count, "usage_type": "licensed" }
            }
        })
    }

    #[test]
    fn mrr_and_arr_normalise_every_interval() {
        let cases = [
            (item(99900, "month", 1, 1), 999.0, 11988.0),
            (item(120000, "year", 1, 1), 100.0, 1200.0),
            (item(1000, "week", 1, 1), 43.33, 520.0),
            (item(100, "day", 1, 1), 30.42, 365.0),
            (item(30000, "month", 3, 1), 100.0, 1200.0),
            (item(2500, "month", 1, 2), 50.0, 600.0),
        ];
        for (item, mrr, arr) in cases {
            let sub = subscription(json!([item.clone()]));
            assert_eq!(
                eval_with("{{ object | mrr }}", sub.clone()),
                json!(mrr),
                "{item}"
            );
            assert_eq!(eval_with("{{ object | arr }}", sub), json!(arr), "{item}");
        }
    }

    #[test]
    fn mrr_sums_items_and_reads_old_plan_shapes() {
        let sub = subscription(json!([
            item(99900, "month", 1, 1),
            item(120000, "year", 1, 2)
        ]));
        assert_eq!(eval_with("{{ object | mrr }}", sub.clone()), json!(1199.0));
        assert_eq!(eval_with("{{ object | arr }}", sub), json!(14388.0));

        let legacy = json!({
            "object": "subscription",
            "quantity": 3,
            "plan": { "object": "plan", "amount": 2000, "currency": "usd", "interval": "month", "interval_count": 1 }
        });
        assert_eq!(eval_with("{{ object | mrr }}", legacy), json!(60.0));

        let plan_items = json!({
            "object": "subscription",
            "items": { "data": [{ "quantity": 1, "plan": { "amount": 5000, "currency": "jpy", "interval": "year" } }] }
        });
        assert_eq!(eval_with("{{ object | arr }}", plan_items), json!(5000));

        let metered = subscription(json!([{
            "quantity": null,
            "price": { "currency": "usd", "unit_amount": 10, "recurring": { "interval": "month", "usage_type": "metered" } }
        }]));
        assert_eq!(eval_with("{{ object | mrr }}", metered), json!(0.0));
        assert_eq!(eval("{{ object.missing | mrr }}"), json!(null));
    }

    #[test]
    fn single_expressions_keep_their_native_type() {
        let object = json!({ "amount": 2000, "paid": true, "metadata": { "tier": "gold" }, "tags": ["a", "b"] });
        assert_eq!(
            eval_with("{{ object.amount }}", object.clone()),
            json!(2000)
        );
        assert_eq!(
            eval_with("  {{- object.paid -}}  ", object.clone()),
            json!(true)
        );
        assert_eq!(
            eval_with("{{ object.metadata }}", object.clone()),
            json!({ "tier": "gold" })
        );
        assert_eq!(
            eval_with("{{ object.tags }}", object.clone()),
            json!(["a", "b"])
        );
        assert_eq!(
            eval_with("{{ object.nothing }}", object.clone()),
            json!(null)
        );
        assert_eq!(
            eval_with("{{ object.amount }} cents", object.clone()),
            json!("2000 cents")
        );
        assert_eq!(
            eval_with("{{ object.amount }}{{ object.paid }}", object.clone()),
            json!("2000True")
        );
        assert_eq!(eval_with("plain text", object), json!("plain text"));
    }

    #[test]
    fn nulls_read_as_undefined_and_chains_never_fail() {
        let object = json!({ "email": null, "metadata": {} });
        assert_eq!(
            eval_with("{{ object.email | lower }}", object.clone()),
            json!(null)
        );
        assert_eq!(
            eval_with("{{ object.email | default('x') }}", object.clone()),
            json!("x")
        );
        assert_eq!(
            eval_with(
                "{{ object.metadata.deal_name | default('Deal') }}",
                object.clone()
            ),
            json!("Deal")
        );
        assert_eq!(
            eval_with("{{ previous.status }}", object.clone()),
            json!(null)
        );
        assert_eq!(
            eval_with("Hi {{ object.email | upper }}!", object.clone()),
            json!("Hi !")
        );
        assert_eq!(
            eval_with("{{ object.a.b.c is defined }}", object),
            json!(false)
        );
        assert_eq!(
            eval("{{ '  Mixed Case ' | trim | lower }}"),
            json!("mixed case")
        );
        assert_eq!(eval("{{ 'ada lovelace' | title }}"), json!("Ada Lovelace"));
        assert_eq!(eval("{{ 'hELLO' | capitalize }}"), json!("Hello"));
        assert_eq!(eval("{{ 'xxhixx' | trim('x') }}"), json!("hi"));
    }

    #[test]
    fn single_expression_detection() {
        assert_eq!(single_expression("{{ a }}"), Some(" a "));
        assert_eq!(single_expression(" {{-a-}} "), Some("a"));
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
        assert_eq!(single_expression("x {{ a }}"), None);
        assert!(!is_template("plain"));
    }

    #[test]
    fn currency_table() {
        assert_eq!(currency_decimals("JPY"), 0);
        assert_eq!(currency_decimals("vuv"), 0);
        assert_eq!(currency_decimals("OMR"), 3);
        assert_eq!(currency_decimals("usd"), 2);
        assert_eq!(currency_decimals("isk"), 2);
    }
}

#[cfg(test)]
mod fuel_tests {
    #[test]
    fn a_runaway_template_fails_instead_of_hanging() {
        let env = super::environment();
        let template = env
            .template_from_str(
                "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
            )
            .unwrap();
        let err = template.render(minijinja::context! {}).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        let ok = env
            .template_from_str("{{ 1 + 1 }}")
            .unwrap()
            .render(minijinja::context! {})
            .unwrap();
        assert_eq!(ok, "2");
    }
}
