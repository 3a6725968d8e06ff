//! The structural difference between two flow documents. Steps are matched by their `id`, not
//! their position: a step whose place among the steps both versions share changed is `moved`
//! (with its old and new index). Objects (`trigger`, a step, its `fields`, `match`, `headers`,
//! nested Stripe parameters) are compared key by key; lists, text and numbers as a whole.
//!
//! The order is deterministic: the flow's own keys sorted, then the steps in the newer
//! version's order (each step's keys sorted), then the removed steps in the older one's order.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What happened to a value between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Only the newer version has it (`before` is null).
    Added,
    /// Only the older version has it (`after` is null).
    Removed,
    /// Both have it, with different values.
    Changed,
    /// A step that changed its place among the others; `before` and `after` are its indexes.
    Moved,
}

/// One difference between two versions of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// Where: `name`, `trigger.filter`, `steps[contact]`, `steps[contact].fields.email`.
    #[schema(example = "steps[contact].fields.email")]
    pub path: String,
    pub change: ChangeKind,
    /// The older value (null when added); for `moved`, the step's old index.
    pub before: Value,
    /// The newer value (null when removed); for `moved`, the step's new index.
    pub after: Value,
}

/// Every difference from `before` to `after` (flow documents; `{}` stands for no flow).
pub fn flows(before: &Value, after: &Value) -> Vec<Change> {
    let empty = Map::new();
    let old = before.as_object().unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut out = Vec::new();
    match (steps(old.get("steps")), steps(new.get("steps"))) {
        (Some(old_steps), Some(new_steps)) => {
            objects("", old, new, &["steps"], &mut out);
            step_changes(&old_steps, &new_steps, &mut out);
        }
        // Steps that cannot be matched by id are compared as a whole.
        _ => objects("", old, new, &[], &mut out),
    }
    out
}

/// A flow's steps with their ids; none when missing, `None` unless every step has a distinct
/// text id.
fn steps(value: Option<&Value>) -> Option<Vec<(&str, &Map<String, Value>)>> {
    let Some(value) = value else {
        return Some(Vec::new());
    };
    let list = value.as_array()?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for step in list {
        let step = step.as_object()?;
        let id = step.get("id")?.as_str()?;
        if !seen.insert(id) {
            return None;
        }
        out.push((id, step));
    }
    Some(out)
}

/// `prefix.key`, or `prefix["key"]` for a key that is not an identifier.
pub fn key_path(prefix: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (prefix.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{prefix}.{key}"),
        (_, false) => format!("{prefix}[{}]", Value::String(key.to_owned())),
    }
}

fn change(path: String, kind: ChangeKind, before: Value, after: Value) -> Change {
    Change {
        path,
        change: kind,
        before,
        after,
    }
}

/// Key by key, in sorted order, leaving out `skip`.
fn objects(
    prefix: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    skip: &[&str],
    out: &mut Vec<Change>,
) {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let path = key_path(prefix, key);
        match (old.get(key), new.get(key)) {
            (Some(before), None) => out.push(change(
                path,
                ChangeKind::Removed,
                before.clone(),
                Value::Null,
            )),
            (None, Some(after)) => {
                out.push(change(path, ChangeKind::Added, Value::Null, after.clone()))
            }
            (Some(before), Some(after)) => values(path, before, after, out),
            (None, None) => {}
        }
    }
}

fn values(path: String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => objects(&path, old, new, &[], out),
        _ => out.push(change(
            path,
            ChangeKind::Changed,
            before.clone(),
            after.clone(),
        )),
    }
}

type Steps<'a> = [(&'a str, &'a Map<String, Value>)];

fn step_changes(old: &Steps<'_>, new: &Steps<'_>, out: &mut Vec<Change>) {
    let old_index: HashMap<&str, usize> = old
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let new_ids: HashSet<&str> = new.iter().map(|(id, _)| *id).collect();
    let in_place = kept_in_order(old, new);
    for (index, (id, step)) in new.iter().enumerate() {
        let path = format!("steps[{id}]");
        let Some(&was) = old_index.get(id) else {
            out.push(change(
                path,
                ChangeKind::Added,
                Value::Null,
                Value::Object((*step).clone()),
            ));
            continue;
        };
        if !in_place.contains(id) {
            out.push(change(
                path.clone(),
                ChangeKind::Moved,
                Value::from(was),
                Value::from(index),
            ));
        }
        objects(&path, old[was].1, step, &["id"], out);
    }
    for (id, step) in old {
        if !new_ids.contains(id) {
            out.push(change(
                format!("steps[{id}]"),
                ChangeKind::Removed,
                Value::Object((*step).clone()),
                Value::Null,
            ));
        }
    }
}

/// The ids of the steps both versions have that kept their order relative to each other (a
/// longest common subsequence; ties go to the earlier steps of the older version): every
/// other shared step moved.
fn kept_in_order<'a>(old: &Steps<'a>, new: &Steps<'a>) -> HashSet<&'a str> {
    let (n, m) = (old.len(), new.len());
    // lengths[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut lengths = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[i][j] = if old[i].0 == new[j].0 {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let mut kept = HashSet::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if old[i].0 == new[j].0 {
            kept.insert(old[i].0);
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(changes: &[Change]) -> Vec<(String, ChangeKind)> {
        changes.iter().map(|c| (c.path.clone(), c.change)).collect()
    }

    #[test]
    fn steps_match_by_id_and_moves_are_relative() {
        let before = json!({"name": "a", "trigger": {"events": ["charge.succeeded"]}, "steps": [
            {"id": "contact", "fields": {"email": "x", "tier": "silver"}},
            {"id": "deal", "match": {"charge": "c", "region": "eu"}},
            {"id": "note", "fields": {}}]});
        let after = json!({"name": "b", "trigger": {"events": ["charge.succeeded"], "filter": "f"}, "steps": [
            {"id": "deal", "match": {"charge": "c"}},
            {"id": "note", "fields": {}},
            {"id": "contact", "fields": {"email": "x", "tier": "gold"}},
            {"id": "task"}]});
        let changes = flows(&before, &after);
        assert_eq!(
            paths(&changes),
            [
                ("name".into(), ChangeKind::Changed),
                ("trigger.filter".into(), ChangeKind::Added),
                ("steps[deal].match.region".into(), ChangeKind::Removed),
                ("steps[contact]".into(), ChangeKind::Moved),
                ("steps[contact].fields.tier".into(), ChangeKind::Changed),
                ("steps[task]".into(), ChangeKind::Added),
            ]
        );
        let moved = &changes[3];
        assert_eq!(
            (moved.before.clone(), moved.after.clone()),
            (json!(0), json!(2))
        );
        assert_eq!(changes[4].before, "silver");
        assert_eq!(changes[4].after, "gold");
    }

    #[test]
    fn an_insertion_moves_nothing_and_no_flow_adds_everything() {
        let before = json!({"steps": [{"id": "a"}, {"id": "b"}]});
        let after = json!({"steps": [{"id": "x"}, {"id": "a"}, {"id": "b"}]});
        assert_eq!(
            paths(&flows(&before, &after)),
            [("steps[x]".into(), ChangeKind::Added)]
        );
        let all = flows(&json!({}), &after);
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|c| c.change == ChangeKind::Added));
        assert!(flows(&after, &after).is_empty());
        assert_eq!(
            key_path("steps[a].fields", "odd key"),
            r#"steps[a].fields["odd key"]"#
        );
    }
}
