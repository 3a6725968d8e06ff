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

use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value as Json};

use super::limits::{self, Program};
use super::model::RenderContext;

mod engine;
mod filters;
mod money;
mod recurring;
mod secrets;

pub use engine::{MAX_TEMPLATE_FUEL, environment};
pub use secrets::generated;
use secrets::{GENERATOR, Generator};

/// The names a template can read, besides the environment's global functions.
pub const CONTEXT_NAMES: &[&str] = &[
    "event", "object", "record", "previous", "steps", "settings", "now",
];

/// Stripe's zero-decimal currencies: amounts are already in major units.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Stripe's three-decimal currencies.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// The context templates see: `event`, `object` (also `record`), `previous`, `steps.<id>.id` (and
/// `steps.<id>.response` where the vendor answered with JSON, `steps.<id>.object` for a
/// `stripe.retrieve` step), `settings`, `now`.
pub fn context(ctx: &RenderContext) -> Value {
    let event = without_nulls(&ctx.event);
    let mut root = Map::new();
    if let Some(object) = event.pointer("/data/object") {
        root.insert("object".into(), object.clone());
        // A CRM record reads better as `record`; the same value.
        root.insert("record".into(), object.clone());
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
        .chain(ctx.items.keys())
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
            if let Some(items) = ctx.items.get(step) {
                entry.insert(
                    "items".into(),
                    Json::Array(items.iter().map(without_nulls).collect()),
                );
            }
            (step.clone(), Json::Object(entry))
        })
        .collect();
    root.insert("steps".into(), Json::Object(steps));
    root.insert("settings".into(), without_nulls(&ctx.settings));
    if let Some(item) = &ctx.item {
        root.insert("item".into(), without_nulls(item));
    }
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
/// A JSON value as templates see it: maps without their null entries.
pub fn template_value(value: &Json) -> Value {
    Value::from(Serde(without_nulls(value)))
}

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

#[cfg(test)]
mod tests;

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
