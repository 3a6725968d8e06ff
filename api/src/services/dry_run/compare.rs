//! What a tried flow would send, against what the flow's deliveries sent: operation by
//! operation (matched by step name), value by value. `match`, `fields` and `headers` are
//! compared key by key, everything else of an operation as a whole; null and empty values are
//! the same as none.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;
use tributary_worker::flow::{Operation, model::REDACTED};

use super::types::OperationChange;
use crate::services::flow_history::diff::{ChangeKind, key_path};

/// What a preview renders for `password()` and `token(n)`; a delivery keeps [`REDACTED`].
const PLACEHOLDERS: [&str; 2] = ["[generated password]", "[generated token]"];

/// An operation as a delivery stores it, so the two compare equal when they would send the
/// same: generated secrets read as the delivery's redaction.
pub fn stored_form(op: &Operation) -> Value {
    let mut value = serde_json::to_value(op).unwrap_or(Value::Null);
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::String(text) if PLACEHOLDERS.iter().any(|p| text.contains(p)) => {
            for placeholder in PLACEHOLDERS {
                *text = text.replace(placeholder, REDACTED);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(map) => map.values_mut().for_each(redact),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// An operation's values by field, leaving out its step name and empty values.
fn values(op: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, value) in op.as_object().into_iter().flatten() {
        if key == "step" || is_empty(value) {
            continue;
        }
        match value {
            Value::Object(map) if matches!(key.as_str(), "match" | "fields" | "headers") => {
                for (name, inner) in map {
                    if !inner.is_null() {
                        out.insert(key_path(key, name), inner.clone());
                    }
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn step_changes(step: &str, before: &Value, after: &Value, out: &mut Vec<OperationChange>) {
    let (old, new) = (values(before), values(after));
    let fields: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for field in fields {
        let (change, before, after) = match (old.get(field), new.get(field)) {
            (Some(b), Some(a)) if b == a => continue,
            (Some(b), Some(a)) => (ChangeKind::Changed, b.clone(), a.clone()),
            (Some(b), None) => (ChangeKind::Removed, b.clone(), Value::Null),
            (None, Some(a)) => (ChangeKind::Added, Value::Null, a.clone()),
            (None, None) => continue,
        };
        out.push(OperationChange {
            step: step.to_owned(),
            field: field.clone(),
            change,
            before,
            after,
        });
    }
}

/// Every difference between `tried` (operations in stored form, each with its `step`) and
/// `sent` (step name and stored operation, in delivery order). With `complete` false the tried
/// flow stopped on an error, so steps it did not reach are not reported as removed.
pub fn changes(tried: &[Value], sent: &[(String, Value)], complete: bool) -> Vec<OperationChange> {
    let none = Value::Null;
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for op in tried {
        let step = op.get("step").and_then(Value::as_str).unwrap_or_default();
        names.insert(step);
        let before = sent
            .iter()
            .find(|(name, _)| name == step)
            .map_or(&none, |(_, op)| op);
        step_changes(step, before, op, &mut out);
    }
    if complete {
        for (name, op) in sent {
            if names.insert(name.as_str()) {
                step_changes(name, op, &none, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_compare_key_by_key_and_missing_steps_are_added_or_removed() {
        let sent = vec![
            (
                "contact".to_string(),
                json!({"step": "contact", "action": "upsert", "object": "contacts",
                "match": {"email": "a@b.co"}, "fields": {"tier": "silver", "name": "Ada"},
                "record_id": null, "associate": [], "fallback_fields": []}),
            ),
            (
                "note".to_string(),
                json!({"step": "note", "action": "create", "object": "notes"}),
            ),
        ];
        let tried = vec![
            json!({"step": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "a@b.co"}, "fields": {"tier": "gold", "name": "Ada"},
                   "record_id": null, "associate": [], "fallback_fields": []}),
            json!({"step": "deal", "action": "create", "object": "deals"}),
        ];
        let found: Vec<(String, String, ChangeKind)> = changes(&tried, &sent, true)
            .into_iter()
            .map(|c| (c.step, c.field, c.change))
            .collect();
        let expect = |s: &str, f: &str, k| (s.to_string(), f.to_string(), k);
        assert_eq!(
            found,
            [
                expect("contact", "fields.tier", ChangeKind::Changed),
                expect("deal", "action", ChangeKind::Added),
                expect("deal", "object", ChangeKind::Added),
                expect("note", "action", ChangeKind::Removed),
                expect("note", "object", ChangeKind::Removed),
            ]
        );
        assert_eq!(changes(&tried, &sent, false).len(), 3);
        assert!(changes(&tried[..1], &sent[..1], true).len() == 1);
    }

    #[test]
    fn generated_secrets_compare_as_stored() {
        let mut value =
            json!({"fields": {"pw": "[generated password]", "t": "x [generated token]"}});
        redact(&mut value);
        assert_eq!(value["fields"]["pw"], REDACTED);
        assert_eq!(value["fields"]["t"], format!("x {REDACTED}"));
    }
}
