//! Measuring values before they are built: text and JSON sizes, item counts, and the
//! budget of one render.

use std::fmt::{self, Write as _};

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, State};

use super::{MAX_ITEMS, MAX_RENDER_BYTES, MAX_VALUE_BYTES, too_large, too_many};

/// What the render built so far.
#[derive(Default)]
struct Budget {
    built: usize,
}

/// Counts `bytes` against the render's budget, before they are allocated.
pub fn charge(state: &mut State, bytes: usize) -> Result<(), Error> {
    let budget = state.get_or_insert_extension_with(Budget::default);
    budget.built = budget.built.saturating_add(bytes);
    if budget.built > MAX_RENDER_BYTES {
        return Err(too_large(
            "what this template builds",
            budget.built,
            MAX_RENDER_BYTES,
        ));
    }
    Ok(())
}

/// A writer that counts and fails once past a limit, so measuring never allocates.
struct Counter {
    len: usize,
    limit: usize,
}

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len = self.len.saturating_add(s.len());
        if self.len > self.limit {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.len = self.len.saturating_add(buf.len());
        if self.len > self.limit {
            Err(std::io::Error::other("over the limit"))
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of a value's text, or `Err(at_least)` once it is over `limit`.
pub fn text_len(value: &Value, limit: usize) -> Result<usize, usize> {
    if let Some(text) = value.as_str() {
        return if text.len() > limit {
            Err(text.len())
        } else {
            Ok(text.len())
        };
    }
    let mut counter = Counter { len: 0, limit };
    match write!(counter, "{value}") {
        Ok(()) => Ok(counter.len),
        Err(_) => Err(counter.len),
    }
}

/// A value's text, refused when it would be longer than [`MAX_VALUE_BYTES`].
pub fn bounded_text(value: &Value) -> Result<String, Error> {
    match value.as_str() {
        Some(text) if text.len() <= MAX_VALUE_BYTES => Ok(text.to_owned()),
        _ => match text_len(value, MAX_VALUE_BYTES) {
            Ok(_) => Ok(value.to_string()),
            Err(size) => Err(too_large("the text", size, MAX_VALUE_BYTES)),
        },
    }
}

/// The size of a value as JSON (`indent` spaces when pretty), or `Err(at_least)` past `limit`.
pub fn json_len<T: serde::Serialize>(
    value: &T,
    indent: Option<usize>,
    limit: usize,
) -> Result<usize, usize> {
    let mut counter = Counter { len: 0, limit };
    let result = match indent {
        None => serde_json::to_writer(&mut counter, value),
        Some(width) => {
            let pad = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut ser = serde_json::Serializer::with_formatter(&mut counter, formatter);
            value.serialize(&mut ser)
        }
    };
    match result {
        Ok(()) => Ok(counter.len),
        Err(_) => Err(counter.len),
    }
}

/// How many items iterating a value gives, or `Err(at_least)` past [`MAX_ITEMS`].
pub(super) fn item_count(value: &Value) -> Result<usize, usize> {
    if let Some(len) = value.len() {
        return if len > MAX_ITEMS { Err(len) } else { Ok(len) };
    }
    let Ok(iter) = value.try_iter() else {
        return Ok(0);
    };
    let mut count = 0;
    for _ in iter {
        count += 1;
        if count > MAX_ITEMS {
            return Err(count);
        }
    }
    Ok(count)
}

pub(super) fn is_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Iterable)
}

pub(super) fn checked_text(state: &mut State, what: &str, size: usize) -> Result<(), Error> {
    if size > MAX_VALUE_BYTES {
        return Err(too_large(what, size, MAX_VALUE_BYTES));
    }
    charge(state, size)
}

pub(super) fn checked_items(state: &mut State, what: &str, count: usize) -> Result<(), Error> {
    if count > MAX_ITEMS {
        return Err(too_many(what, count));
    }
    charge(state, count.saturating_mul(size_of::<Value>()))
}
