//! One step's checks: its keys, what its action needs, and its templates.

use super::*;
use crate::flow::Action;
use crate::steps::{self, Runs, Shape};

/// The longest step id: a delivery is named by it (and a `for_each` item's key).
const MAX_STEP_ID: usize = 64;
/// The longest object name a delivery records.
const MAX_OBJECT: usize = 128;

impl Checker {
    pub(super) fn step(&mut self, index: usize, value: &Value, ids: &[Option<String>]) {
        let path = format!("steps[{index}]");
        let Some(map) = value.as_object() else {
            self.error(path, "must be an object");
            return;
        };
        self.known_keys(map, &path, STEP_KEYS);
        let scope = Scope::Step {
            index,
            ids,
            looping: map.contains_key("for_each"),
        };
        if let Some(for_each) = self.optional_text(map, &path, "for_each") {
            let outer = Scope::Step {
                index,
                ids,
                looping: false,
            };
            self.condition(&format!("{path}.for_each"), for_each, outer);
        }

        self.step_id(map, &path, index, ids);
        let kind = self.action_kind(map, &path);
        // Email, http and assert steps write no CRM object.
        let object = if kind.is_none_or(|kind| kind.needs_object()) {
            self.required_text(map, &path, "object")
        } else {
            self.optional_text(map, &path, "object")
        };
        if object.is_some_and(|object| object.len() > MAX_OBJECT) {
            self.error(
                format!("{path}.object"),
                format!("must be at most {MAX_OBJECT} characters"),
            );
        }
        if let Some(connection_id) = self.optional_text(map, &path, "connection_id")
            && connection_id.trim().is_empty()
        {
            self.error(format!("{path}.connection_id"), "must not be empty");
        }
        self.step_templates(map, &path, scope);

        if let Some(kind) = kind {
            let mut problems = Vec::new();
            kind.validate(&Shape { map }, &mut problems);
            for problem in problems {
                self.error(format!("{path}.{}", problem.path), problem.message);
            }
            if let Some(keys) = kind.keys() {
                self.only_keys(map, &path, kind.action().as_str(), keys);
            } else if map.contains_key("select") {
                self.error(format!("{path}.select"), "only find steps select fields");
            }
        }
        self.expand(map, &path, kind);
        self.review(map, &path, kind, scope);
    }

    /// The step's `id`: an identifier, not the reserved refetch id, not an earlier step's.
    fn step_id(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        index: usize,
        ids: &[Option<String>],
    ) {
        if let Some(id) = self.required_text(map, path, "id") {
            let id_path = format!("{path}.id");
            if id.len() > MAX_STEP_ID {
                self.error(id_path, format!("must be at most {MAX_STEP_ID} characters"));
            } else if !is_identifier(id) {
                self.error(
                    id_path,
                    "must be an identifier: letters, digits and _, not starting with a digit",
                );
            } else if id == REFETCH_STEP {
                self.error(
                    id_path,
                    "_refetch is reserved for the object a refetch flow fetches",
                );
            } else if let Some(first) = ids[..index]
                .iter()
                .position(|other| other.as_deref() == Some(id))
            {
                self.error(
                    id_path,
                    format!("duplicate step id '{id}' (first used by steps[{first}])"),
                );
            }
        }
    }

    /// The kind of step the `action` names, reporting a missing or unknown action.
    fn action_kind(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
    ) -> Option<&'static dyn steps::StepKind> {
        match map.get("action") {
            None => {
                self.error(format!("{path}.action"), "is required");
                None
            }
            Some(value) => match serde_json::from_value::<Action>(value.clone()) {
                Ok(action) => Some(steps::kind(action)),
                Err(_) => {
                    let shown = value
                        .as_str()
                        .map_or_else(|| value.to_string(), |s| format!("'{s}'"));
                    let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                    let (last, rest) = names.split_last().expect("there are actions");
                    self.error(
                        format!("{path}.action"),
                        format!(
                            "unknown action {shown}; expected {} or {last}",
                            rest.join(", ")
                        ),
                    );
                    None
                }
            },
        }
    }

    /// The step's templates and conditions, its fallback fields and its associations.
    fn step_templates(&mut self, map: &Map<String, Value>, path: &str, scope: Scope<'_>) {
        if let Some(url) = self.optional_text(map, path, "url") {
            self.template(&format!("{path}.url"), url, scope);
        }
        self.template_map(map, path, "headers", scope);
        if let Some(check) = self.optional_text(map, path, "check") {
            self.condition(&format!("{path}.check"), check, scope);
        }
        if let Some(message) = self.optional_text(map, path, "message") {
            self.template(&format!("{path}.message"), message, scope);
        }

        let match_fields = self.template_map(map, path, "match", scope);
        let fields = self.template_map(map, path, "fields", scope);
        let record_id = self.optional_text(map, path, "record_id");
        if let Some(record_id) = record_id {
            self.template(&format!("{path}.record_id"), record_id, scope);
        }
        if let Some(method) = self.optional_text(map, path, "method") {
            if crate::flow::templating::is_template(method) {
                self.template(&format!("{path}.method"), method, scope);
            } else if !HTTP_METHODS.contains(&method.trim().to_ascii_uppercase().as_str()) {
                self.error(
                    format!("{path}.method"),
                    format!(
                        "unknown method '{method}'; expected one of {}",
                        HTTP_METHODS.join(", ")
                    ),
                );
            }
        }
        if let Some(request_path) = self.optional_text(map, path, "path") {
            self.template(&format!("{path}.path"), request_path, scope);
        }
        if let Some(when) = self.optional_text(map, path, "when") {
            self.condition(&format!("{path}.when"), when, scope);
        }
        let select = map.get("select").and_then(Value::as_array);
        for (i, name) in select.into_iter().flatten().enumerate() {
            if let Some(name) = name.as_str() {
                self.template(&format!("{path}.select[{i}]"), name, scope);
            }
        }
        self.fallback_fields(map, path, match_fields, fields);
        self.associations(map, path, scope);
    }

    /// The step's `expand`: a list of field paths, only on steps that run on Stripe.
    fn expand(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        kind: Option<&'static dyn steps::StepKind>,
    ) {
        if let Some(expand) = map.get("expand") {
            let valid = expand.as_array().is_some_and(|items| {
                items.iter().all(|item| {
                    item.as_str().is_some_and(|s| {
                        !s.is_empty()
                            && s.split('.').all(|part| {
                                !part.is_empty()
                                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            })
                    })
                })
            });
            if !valid {
                self.error(
                    format!("{path}.expand"),
                    "must be a list of field paths such as customer or latest_charge.balance_transaction",
                );
            } else if kind.is_some_and(|kind| kind.runs(false) != Runs::Stripe) {
                self.error(
                    format!("{path}.expand"),
                    "only stripe.retrieve steps expand",
                );
            }
        }
    }
}
