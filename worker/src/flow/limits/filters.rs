//! Jinja's filters that build values, replaced by bounded ones, and [`install`], which puts
//! them and the bounded operators into an environment.

use std::sync::LazyLock;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, State};

use super::measure::{
    bounded_text, charge, checked_items, checked_text, item_count, json_len, text_len,
};
use super::ops::{add, apply, concat, contains, emit, mul, operator, range};
use super::{MAX_VALUE_BYTES, REMOVED_FILTERS, REMOVED_FUNCTIONS, too_large};

static JOIN: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | join(b)"));
static LIST: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | list"));
static TOJSON: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | tojson"));
static TOJSON_INDENT: LazyLock<Expression<'static, 'static>> =
    LazyLock::new(|| operator("a | tojson(b)"));
static ESCAPE: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | e"));
static SAFE: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | safe"));
static SPLIT: LazyLock<Expression<'static, 'static>> =
    LazyLock::new(|| operator("a | split(b[0], b[1])"));
static LINES: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | lines"));
static SUM: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a | sum(start=b)"));

fn text_of(state: &mut State, value: &Value) -> Result<(), Error> {
    let size =
        text_len(value, MAX_VALUE_BYTES).map_err(|n| too_large("the text", n, MAX_VALUE_BYTES))?;
    charge(state, size)
}

/// `join(sep)`, measured before it is built.
fn join(state: &mut State, value: Value, joiner: Option<Value>) -> Result<Value, Error> {
    let joiner = joiner.unwrap_or(Value::from(""));
    let sep = text_len(&joiner, MAX_VALUE_BYTES)
        .map_err(|n| too_large("the separator", n, MAX_VALUE_BYTES))?;
    if let Ok(iter) = value.try_iter() {
        let mut size = 0usize;
        for (i, item) in iter.enumerate() {
            if i > 0 {
                size = size.saturating_add(sep);
            }
            size = size.saturating_add(text_len(&item, MAX_VALUE_BYTES).unwrap_or_else(|n| n));
            if size > MAX_VALUE_BYTES {
                return Err(too_large("the joined text", size, MAX_VALUE_BYTES));
            }
        }
        checked_text(state, "the joined text", size)?;
    }
    apply(&JOIN, value, joiner)
}

/// `replace(from, to, count)`, measured before it is built.
fn replace(
    state: &mut State,
    value: Value,
    from: Value,
    to: Value,
    count: Option<usize>,
) -> Result<Value, Error> {
    let text = bounded_text(&value)?;
    let from = bounded_text(&from)?;
    let to = bounded_text(&to)?;
    let found = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from.as_str()).count()
    };
    let found = count.map_or(found, |count| found.min(count));
    let size = (text.len() - found * from.len()).saturating_add(found.saturating_mul(to.len()));
    checked_text(state, "the replaced text", size)?;
    Ok(Value::from(match count {
        Some(count) => text.replacen(from.as_str(), &to, count),
        None => text.replace(from.as_str(), &to),
    }))
}

/// `string`, measured before it is built.
fn string(state: &mut State, value: Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value);
    }
    text_of(state, &value)?;
    Ok(Value::from(value.to_string()))
}

/// `list`, at most [`MAX_ITEMS`] items.
fn list(state: &mut State, value: Value) -> Result<Value, Error> {
    let count = item_count(&value).unwrap_or_else(|n| n);
    checked_items(state, "the list", count)?;
    apply(&LIST, value, Value::UNDEFINED)
}

/// `tojson(indent)`, measured before it is built.
fn tojson(state: &mut State, value: Value, indent: Option<usize>) -> Result<Value, Error> {
    if indent.is_some_and(|width| width > 8) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: indent must be at most 8",
        ));
    }
    let size = json_len(&value, indent, MAX_VALUE_BYTES)
        .map_err(|n| too_large("the JSON text", n, MAX_VALUE_BYTES))?;
    charge(state, size)?;
    match indent {
        Some(width) => apply(&TOJSON_INDENT, value, Value::from(width)),
        None => apply(&TOJSON, value, Value::UNDEFINED),
    }
}

/// `escape`/`e`, `safe`, `split`, `lines`: the text they work on is measured first.
fn escape(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&ESCAPE, value, Value::UNDEFINED)
}

fn safe(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&SAFE, value, Value::UNDEFINED)
}

fn split(
    state: &mut State,
    value: Value,
    sep: Option<Value>,
    max: Option<Value>,
) -> Result<Value, Error> {
    text_of(state, &value)?;
    let args = Value::from(vec![
        sep.unwrap_or(Value::from(())),
        max.unwrap_or(Value::from(())),
    ]);
    apply(&SPLIT, value, args)
}

fn lines(state: &mut State, value: Value) -> Result<Value, Error> {
    text_of(state, &value)?;
    apply(&LINES, value, Value::UNDEFINED)
}

/// `sum(start)` of numbers only: adding strings or lists item by item would build unbounded
/// values out of sight of the operators' limits.
fn sum(value: Value, start: Option<Value>) -> Result<Value, Error> {
    let start = start.unwrap_or(Value::from(0));
    let numbers = start.is_number()
        && value
            .try_iter()
            .map(|mut items| items.all(|item| item.is_number()))
            .unwrap_or(true);
    if !numbers {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "sum: only numbers can be summed",
        ));
    }
    apply(&SUM, value, start)
}

/// Installs the bounded operators and `range`, and removes what templates may not use.
pub fn install(env: &mut Environment<'static>) {
    for name in REMOVED_FUNCTIONS {
        env.remove_global(name);
    }
    for name in REMOVED_FILTERS {
        env.remove_filter(name);
    }
    env.add_function("range", range);
    env.add_filter("join", join);
    env.add_filter("replace", replace);
    env.add_filter("string", string);
    env.add_filter("list", list);
    env.add_filter("tojson", tojson);
    env.add_filter("escape", escape);
    env.add_filter("e", escape);
    env.add_filter("safe", safe);
    env.add_filter("split", split);
    env.add_filter("lines", lines);
    env.add_filter("sum", sum);
    env.add_function("__concat", concat);
    env.add_function("__add", add);
    env.add_function("__mul", mul);
    env.add_function("__in", contains);
    env.add_function("__emit", emit);
}
