//! What one template may build. Fuel bounds the instructions a render executes, not what they
//! allocate: a single `"x" * 100000000` or a dozen `{% set s = s ~ s %}` would exhaust memory
//! with a few instructions. So every template is parsed and checked before it runs:
//!
//! - the operators that build values (`~`, `+`, `*`, `in`) and every emitted value are routed
//!   through functions that check the size of the result before building it;
//! - statements that capture output or reach other templates (`{% set %}…{% endset %}`,
//!   `{% filter %}`, `{% macro %}`, `{% call %}`, `{% include %}`, `{% import %}`,
//!   `{% extends %}`, `{% block %}`, `{% autoescape %}`, `{% do %}`, recursive loops) are
//!   refused, and so are `debug()` and names starting with `__`;
//! - Jinja's filters and functions that build values are replaced by bounded ones
//!   (see [`super::templating`]), or removed where no CRM mapping needs them.
//!
//! One render may build at most [`MAX_RENDER_BYTES`] in total, no single value may exceed
//! [`MAX_VALUE_BYTES`], and no list [`MAX_ITEMS`] items; every limit is checked before the
//! memory is taken, so a hostile template fails with an error instead of aborting the process.

use minijinja::{Error, ErrorKind};

mod check;
mod filters;
mod measure;
mod ops;
mod program;

pub use filters::install;
pub use measure::{bounded_text, charge, json_len, text_len};
pub use program::Program;

/// The largest value a template may build or render: one field's text, one string, one JSON
/// value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The largest rendered size of one step (all its fields together).
pub const MAX_STEP_BYTES: usize = 1024 * 1024;
/// What one render may build in total, counting every intermediate string and list.
pub const MAX_RENDER_BYTES: usize = 4 * 1024 * 1024;
/// The most items a list built by a template may have (`range`, `list`, `+`, `*`).
pub const MAX_ITEMS: usize = 10_000;

/// Functions of Jinja's that templates cannot call: `debug()` prints the whole context.
pub const REMOVED_FUNCTIONS: &[&str] = &["debug"];
/// Filters of Jinja's that templates cannot use: they build values of unbounded size from a
/// small argument (`indent(width)`, `batch(n)`, `slice(n)`, `format`) or dump values whole.
pub const REMOVED_FILTERS: &[&str] = &["indent", "batch", "slice", "format", "pprint"];

/// A limit error for a value of `size` bytes where `limit` is allowed.
pub fn too_large(what: &str, size: usize, limit: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} would be over the limit of {limit} bytes (at least {size})"),
    )
}

fn too_many(what: &str, count: usize) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{what} would have more than {MAX_ITEMS} items (at least {count})"),
    )
}

#[cfg(test)]
mod tests;
