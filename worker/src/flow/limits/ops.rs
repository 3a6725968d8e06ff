//! The operators `~`, `+`, `*` and `in`, what a render writes, and `range`: each checks the
//! size of its result before building it.

use std::sync::LazyLock;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, Expression, State};

use super::measure::{checked_items, checked_text, is_sequence, item_count, text_len};
use super::{MAX_ITEMS, MAX_RENDER_BYTES, MAX_VALUE_BYTES, too_large, too_many};

/// The operators, run by the engine itself once their result is known to be small.
static OPERATORS: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_fuel(Some(100));
    env
});

pub(super) fn operator(op: &'static str) -> Expression<'static, 'static> {
    OPERATORS
        .compile_expression(op)
        .expect("the operator expressions compile")
}

static ADD: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a + b"));
static MUL: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a * b"));
static CONCAT: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a ~ b"));
static IN: LazyLock<Expression<'static, 'static>> = LazyLock::new(|| operator("a in b"));

pub(super) fn apply(op: &Expression<'static, 'static>, a: Value, b: Value) -> Result<Value, Error> {
    op.eval(minijinja::context! { a => a, b => b })
}

/// `a ~ b`.
pub(super) fn concat(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let left = text_len(&a, MAX_VALUE_BYTES);
    let right = text_len(&b, MAX_VALUE_BYTES);
    let size = match (left, right) {
        (Ok(l), Ok(r)) => l + r,
        (Err(n), _) | (_, Err(n)) => n,
    };
    checked_text(state, "the joined text", size)?;
    apply(&CONCAT, a, b)
}

/// `a + b`: numbers as Jinja adds them; strings and lists bounded.
pub(super) fn add(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    if let (Some(l), Some(r)) = (a.as_str(), b.as_str()) {
        checked_text(state, "the joined text", l.len().saturating_add(r.len()))?;
    } else if is_sequence(&a) && is_sequence(&b) {
        let count = match (item_count(&a), item_count(&b)) {
            (Ok(l), Ok(r)) => l + r,
            (Err(n), _) | (_, Err(n)) => n,
        };
        checked_items(state, "the joined list", count)?;
        let text = text_len(&a, MAX_RENDER_BYTES)
            .and_then(|l| text_len(&b, MAX_RENDER_BYTES).map(|r| l + r))
            .unwrap_or_else(|n| n);
        if text > MAX_RENDER_BYTES {
            return Err(too_large("the joined list", text, MAX_RENDER_BYTES));
        }
    }
    apply(&ADD, a, b)
}

/// `a * b`: numbers as Jinja multiplies them; repeated strings and lists bounded.
pub(super) fn mul(state: &mut State, a: Value, b: Value) -> Result<Value, Error> {
    let repeated = if a.as_str().is_some() || is_sequence(&a) {
        Some((&a, &b))
    } else if b.as_str().is_some() || is_sequence(&b) {
        Some((&b, &a))
    } else {
        None
    };
    if let Some((item, times)) = repeated
        && let Some(n) = times.as_usize()
    {
        if let Some(text) = item.as_str() {
            checked_text(state, "the repeated text", text.len().saturating_mul(n))?;
        } else {
            let count = item_count(item).unwrap_or_else(|at_least| at_least);
            checked_items(state, "the repeated list", count.saturating_mul(n))?;
            let text = text_len(item, MAX_RENDER_BYTES)
                .unwrap_or_else(|at_least| at_least)
                .saturating_mul(n);
            if text > MAX_RENDER_BYTES {
                return Err(too_large("the repeated list", text, MAX_RENDER_BYTES));
            }
        }
    }
    apply(&MUL, a, b)
}

/// `a in b`: a non-text needle in a text is compared by its text.
pub(super) fn contains(a: Value, b: Value) -> Result<Value, Error> {
    if b.as_str().is_some()
        && a.as_str().is_none()
        && let Err(size) = text_len(&a, MAX_VALUE_BYTES)
    {
        return Err(too_large("the text", size, MAX_VALUE_BYTES));
    }
    apply(&IN, a, b)
}

/// Every `{{ … }}` and every piece of text between them: what one rendered field may write.
pub(super) fn emit(state: &mut State, value: Value) -> Result<Value, Error> {
    let written = state
        .get_or_insert_extension_with(Written::default)
        .0
        .saturating_add(text_len(&value, MAX_VALUE_BYTES).unwrap_or_else(|n| n));
    if written > MAX_VALUE_BYTES {
        return Err(too_large("the rendered text", written, MAX_VALUE_BYTES));
    }
    state.get_or_insert_extension_with(Written::default).0 = written;
    Ok(value)
}

/// Bytes a render wrote so far.
#[derive(Default)]
struct Written(usize);

/// `range(…)`, at most [`MAX_ITEMS`] numbers.
pub(super) fn range(
    state: &mut State,
    lower: i64,
    upper: Option<i64>,
    step: Option<i64>,
) -> Result<Value, Error> {
    let (start, stop) = match upper {
        Some(upper) => (lower, upper),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "range: step must not be zero",
        ));
    }
    let span = if step > 0 {
        (i128::from(stop) - i128::from(start)).max(0)
    } else {
        (i128::from(start) - i128::from(stop)).max(0)
    };
    let stride = i128::from(step).abs();
    let count = (span + stride - 1) / stride;
    if count > MAX_ITEMS as i128 {
        return Err(too_many(
            "range",
            usize::try_from(count).unwrap_or(usize::MAX),
        ));
    }
    checked_items(state, "range", count as usize)?;
    let items: Vec<Value> = (0..count as i64)
        .map(|i| Value::from(start + i * step))
        .collect();
    Ok(Value::from(items))
}
