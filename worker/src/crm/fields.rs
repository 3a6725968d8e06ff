//! Helpers the adapters share for turning a rendered operation into a vendor's fields.

use serde_json::{Map, Value};

use super::error::Write;
use crate::flow::Operation;

/// Property values as text, the way HubSpot wants them: numbers without exponent, booleans as
/// `true`/`false`, nested values as JSON.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether a record's value says nothing: null, or text that is blank.
pub fn is_blank(value: &Value) -> bool {
    value.is_null() || value.as_str().is_some_and(|text| text.trim().is_empty())
}

/// Records to write before looking anything up: the one this Stripe object was written to
/// before (upsert and update), then the step's `record_id` (update).
pub fn known_ids<'a>(write: Write, op: &'a Operation, linked: Option<&'a str>) -> Vec<&'a str> {
    let mut known = Vec::new();
    match write {
        Write::Create => {}
        Write::Upsert => known.extend(linked),
        Write::Update => {
            known.extend(linked);
            known.extend(op.record_id.as_deref());
        }
    }
    known.dedup();
    known
}

/// `match` and `fields` in one map; `fields` win.
pub fn merged(op: &Operation) -> Map<String, Value> {
    let mut all = op.match_fields.clone();
    all.extend(op.fields.clone());
    all
}

/// The warning a fallback write leaves.
pub fn fallback_warning(vendor: &str, refused: &[String], kept: &Map<String, Value>) -> String {
    let kept: Vec<&str> = kept.keys().map(String::as_str).collect();
    format!(
        "{vendor} refused the properties {}; wrote only {}",
        refused.join(", "),
        kept.join(", ")
    )
}

/// The fields kept by a fallback write: `match` plus the step's `fallback_fields`.
pub fn fallback_fields(op: &Operation, all: &Map<String, Value>) -> Map<String, Value> {
    all.iter()
        .filter(|(key, _)| {
            op.match_fields.contains_key(*key) || op.fallback_fields.iter().any(|f| f == *key)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
