//! A CRM write's `review`: what a doubtful match is and what happens to one.

use super::*;
use crate::flow::Action;
use crate::steps;

const REVIEW_KEYS: &[&str] = &[
    "policy",
    "similar",
    "typos",
    "winner",
    "copy",
    "alert_after_minutes",
];
const POLICIES: &[&str] = &["create", "pause", "merge"];
const WINNERS: &[&str] = &["most_complete", "first"];
/// The most edits `typos` may allow: more would call unrelated addresses typos.
pub(crate) const MAX_TYPOS: u64 = 5;
/// The longest wait `alert_after_minutes` may set: a year.
const MAX_ALERT_MINUTES: u64 = 525_600;

impl Checker {
    /// Checks the step's `review`, which only `upsert` and `create` steps take.
    pub(super) fn review(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        kind: Option<&'static dyn steps::StepKind>,
        scope: Scope<'_>,
    ) {
        let Some(value) = map.get("review") else {
            return;
        };
        let path = format!("{path}.review");
        let action = kind.map(|kind| kind.action());
        if let Some(kind) = kind
            && !matches!(kind.action(), Action::Upsert | Action::Create)
        {
            if kind.keys().is_some() {
                // Its kind's own list of keys already refused it.
                return;
            }
            let action = kind.action();
            self.error(
                path,
                format!(
                    "only upsert and create steps review doubtful matches; a {action} step does not choose its record"
                ),
            );
            return;
        }
        let Some(review) = value.as_object() else {
            self.error(path, "must be an object with a policy");
            return;
        };
        self.known_keys(review, &path, REVIEW_KEYS);
        self.one_of(review, &path, "policy", POLICIES);
        self.one_of(review, &path, "winner", WINNERS);
        self.template_map(review, &path, "similar", scope);
        self.whole_number(review, &path, "typos", MAX_TYPOS);
        self.whole_number(review, &path, "alert_after_minutes", MAX_ALERT_MINUTES);
        if let Some(copy) = review.get("copy") {
            let names = copy.as_array().filter(|names| {
                names
                    .iter()
                    .all(|name| name.as_str().is_some_and(|n| !n.trim().is_empty()))
            });
            if names.is_none() {
                self.error(format!("{path}.copy"), "must be a list of field names");
            }
        }
        let policy = review.get("policy").and_then(Value::as_str);
        if review.contains_key("typos") && !review.contains_key("similar") {
            self.error(
                format!("{path}.typos"),
                "typos counts the edits of records found by similar; name the similar fields",
            );
        }
        if policy != Some("merge") {
            for key in ["winner", "copy"] {
                if review.contains_key(key) {
                    self.error(
                        format!("{path}.{key}"),
                        "only the merge policy picks a winner and copies fields",
                    );
                }
            }
        }
        if action == Some(Action::Create) && !review.contains_key("similar") {
            self.error(
                format!("{path}.similar"),
                "a create step finds no candidates by match; name the similar fields that make a record look like the same one",
            );
        }
    }

    /// An optional text value that must be one of `allowed`.
    fn one_of(&mut self, map: &Map<String, Value>, path: &str, key: &str, allowed: &[&str]) {
        if let Some(value) = map.get(key)
            && !value.as_str().is_some_and(|v| allowed.contains(&v))
        {
            self.error(
                child(path, key),
                format!("must be one of {}", allowed.join(", ")),
            );
        }
    }

    /// An optional whole number from 1 to `max`.
    fn whole_number(&mut self, map: &Map<String, Value>, path: &str, key: &str, max: u64) {
        if let Some(value) = map.get(key)
            && !value.as_u64().is_some_and(|n| (1..=max).contains(&n))
        {
            self.error(
                child(path, key),
                format!("must be a whole number from 1 to {max}"),
            );
        }
    }
}
