//! Validation of flows as tenants send them: walks the raw JSON so that every error is
//! reported at once with its exact path (`steps[1].fields.amount`), covering shape (unknown
//! keys, types), meaning (unique step ids, what each action needs) and templates (syntax,
//! unknown filters and tests, unknown variables, `steps.<id>` of later or unknown steps).
//! It never renders a template against data.

use std::collections::{BTreeSet, HashMap};

use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

use super::model::{FlowSpec, ValidationError};

mod names;
mod review;
mod scan;
mod step;
mod suggest;

/// What is wrong with an event pattern of a CRM trigger, if anything: `<Object>.<change>`
/// (`Opportunity.updated`, `deal.propertyChange`), `<Object>.*` or `*`.
fn crm_event_pattern(pattern: &str) -> Option<String> {
    let word = |s: &str| {
        !s.is_empty() && s.len() <= 80 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ok = pattern == "*"
        || pattern
            .split_once('.')
            .is_some_and(|(object, change)| word(object) && (change == "*" || word(change)));
    (!ok).then(|| {
        format!(
            "'{pattern}' is not a CRM event pattern; use <Object>.created, <Object>.updated, <Object>.deleted (Salesforce, Zoho), the HubSpot subscription type (deal.propertyChange), <Object>.* or *"
        )
    })
}

#[cfg(test)]
mod tests;

use super::templating::{self, CONTEXT_NAMES};
use names::child;
pub(crate) use names::{is_event_pattern, is_identifier, key_path};
use scan::Callable;
pub(crate) use suggest::edit_distance;
use suggest::unknown_event_type;

/// Methods an HTTP step may use.
pub const HTTP_METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];

const FLOW_KEYS: &[&str] = &[
    "name",
    "connection_id",
    "enabled",
    "refetch",
    "trigger",
    "steps",
];
const TRIGGER_KEYS: &[&str] = &["source", "events", "filter", "echoes"];
const STEP_KEYS: &[&str] = &[
    "id",
    "action",
    "object",
    "match",
    "fields",
    "record_id",
    "stripe_account_id",
    "when",
    "for_each",
    "select",
    "fallback_fields",
    "associate",
    "method",
    "path",
    "expand",
    "connection_id",
    "url",
    "headers",
    "check",
    "message",
    "review",
];

const ASSOCIATION_KEYS: &[&str] = &["object", "id"];

/// The step id of the delivery that holds a `refetch` flow's current object.
pub const REFETCH_STEP: &str = "_refetch";

/// Names the engine defines inside templates (loops, macros), besides the context and globals.
const ENGINE_NAMES: &[&str] = &["loop", "self", "super", "caller", "varargs", "kwargs"];

/// Checks a flow and, when it has no errors, deserializes it.
pub(super) fn parse(value: &Value) -> Result<FlowSpec, Vec<ValidationError>> {
    let mut checker = Checker::new();
    checker.flow(value);
    if !checker.errors.is_empty() {
        return Err(checker.errors);
    }
    serde_json::from_value(value.clone()).map_err(|e| vec![ValidationError::new("", e.to_string())])
}

/// Where a template sits, for checking its `steps.<id>` references.
#[derive(Clone, Copy)]
enum Scope<'a> {
    /// The trigger filter: no step has run.
    Trigger,
    /// Step `index` of a flow whose step ids (by position) are `ids`.
    Step {
        index: usize,
        ids: &'a [Option<String>],
        /// Whether the step has a `for_each`, so its templates may read `item`.
        looping: bool,
    },
}

struct Checker {
    env: &'static Environment<'static>,
    errors: Vec<ValidationError>,
    known: HashMap<(Callable, String), bool>,
    globals: BTreeSet<String>,
}

impl Checker {
    fn new() -> Self {
        let env = templating::environment();
        Checker {
            env,
            errors: Vec::new(),
            known: HashMap::new(),
            globals: env.globals().map(|(name, _)| name.to_owned()).collect(),
        }
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError::new(path, message));
    }

    fn flow(&mut self, value: &Value) {
        let Some(map) = value.as_object() else {
            self.error("", "a flow must be a JSON object");
            return;
        };
        self.known_keys(map, "", FLOW_KEYS);
        if let Some(name) = self.required_text(map, "", "name")
            && name.chars().count() > crate::schema::MAX_NAME_CHARS
        {
            self.error("name", "must be at most 200 characters");
        }
        self.required_text(map, "", "connection_id");
        for key in ["enabled", "refetch"] {
            if let Some(value) = map.get(key)
                && !value.is_boolean()
            {
                self.error(key, "must be true or false");
            }
        }
        match map.get("trigger") {
            Some(trigger) => self.trigger(trigger),
            None => self.error("trigger", "is required"),
        }
        match map.get("steps") {
            Some(steps) => self.steps(steps),
            None => self.error("steps", "is required"),
        }
    }

    fn trigger(&mut self, value: &Value) {
        let Some(map) = value.as_object() else {
            self.error(
                "trigger",
                "must be an object with events (and optionally filter)",
            );
            return;
        };
        self.known_keys(map, "trigger", TRIGGER_KEYS);
        let source = match map.get("source") {
            None => "stripe",
            Some(Value::String(source))
                if crate::inbound::ALL_SOURCES.contains(&source.as_str()) =>
            {
                source.as_str()
            }
            Some(_) => {
                self.error(
                    "trigger.source",
                    format!("must be one of {}", crate::inbound::ALL_SOURCES.join(", ")),
                );
                // Its events are then checked as a CRM's: one problem, not two.
                ""
            }
        };
        if map.get("echoes").is_some_and(|v| !v.is_boolean()) {
            self.error("trigger.echoes", "must be true or false");
        }
        match map.get("events") {
            None => self.error("trigger.events", "is required"),
            Some(Value::Array(events)) if events.is_empty() => self.error(
                "trigger.events",
                "must name at least one event type, e.g. charge.succeeded",
            ),
            Some(Value::Array(events)) => {
                for (i, event) in events.iter().enumerate() {
                    let path = format!("trigger.events[{i}]");
                    match event.as_str() {
                        Some(pattern) if source != "stripe" => {
                            if let Some(message) = crm_event_pattern(pattern) {
                                self.error(path, message);
                            }
                        }
                        Some(pattern) if is_event_pattern(pattern) => {
                            if let Some(message) = unknown_event_type(pattern) {
                                self.error(path, message);
                            }
                        }
                        Some(pattern) => self.error(
                            path,
                            format!(
                                "'{pattern}' is not an event type pattern; use e.g. charge.succeeded, customer.subscription.* or *"
                            ),
                        ),
                        None => self.error(path, "must be a string"),
                    }
                }
            }
            Some(_) => self.error("trigger.events", "must be a list of event types"),
        }
        if let Some(filter) = self.optional_text(map, "trigger", "filter") {
            self.condition("trigger.filter", filter, Scope::Trigger);
        }
    }

    fn steps(&mut self, value: &Value) {
        let Some(items) = value.as_array() else {
            self.error("steps", "must be a list of steps");
            return;
        };
        if items.is_empty() {
            self.error("steps", "a flow needs at least one step");
        }
        let ids: Vec<Option<String>> = items
            .iter()
            .map(|step| step.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for (index, step) in items.iter().enumerate() {
            self.step(index, step, &ids);
        }
    }

    /// Refuses the keys an action does not take.
    fn only_keys(&mut self, map: &Map<String, Value>, path: &str, action: &str, allowed: &[&str]) {
        for key in map.keys() {
            // Any step may run once per item.
            let universal = key == "for_each";
            if !universal && !allowed.contains(&key.as_str()) && STEP_KEYS.contains(&key.as_str()) {
                self.error(
                    format!("{path}.{key}"),
                    format!("{action} steps take {}", allowed[2..].join(", ")),
                );
            }
        }
    }

    /// Checks `match` or `fields`: an object whose string values (at any depth) are templates.
    fn template_map<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
        scope: Scope<'_>,
    ) -> Option<&'v Map<String, Value>> {
        let value = map.get(key)?;
        let field_path = format!("{path}.{key}");
        let Some(entries) = value.as_object() else {
            self.error(field_path, "must be an object of field names to values");
            return None;
        };
        for (name, value) in entries {
            if name.trim().is_empty() {
                self.error(field_path.clone(), "field names must not be empty");
                continue;
            }
            self.template_value(&key_path(&field_path, name), value, scope);
        }
        Some(entries)
    }

    fn template_value(&mut self, path: &str, value: &Value, scope: Scope<'_>) {
        match value {
            Value::String(source) => self.template(path, source, scope),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.template_value(&format!("{path}[{i}]"), item, scope);
                }
            }
            Value::Object(map) => match crate::flow::each::list_template(map) {
                // A list made per item: its `each` reads `item`.
                Some((source, each)) => {
                    self.condition(&key_path(path, "for_each"), source, scope);
                    let inner = match scope {
                        Scope::Step { index, ids, .. } => Scope::Step {
                            index,
                            ids,
                            looping: true,
                        },
                        Scope::Trigger => Scope::Trigger,
                    };
                    self.template_value(&key_path(path, "each"), each, inner);
                }
                None => {
                    for (key, item) in map {
                        self.template_value(&key_path(path, key), item, scope);
                    }
                }
            },
            _ => {}
        }
    }

    fn fallback_fields(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        match_fields: Option<&Map<String, Value>>,
        fields: Option<&Map<String, Value>>,
    ) {
        let Some(value) = map.get("fallback_fields") else {
            return;
        };
        let Some(names) = value.as_array() else {
            self.error(
                format!("{path}.fallback_fields"),
                "must be a list of field names",
            );
            return;
        };
        for (i, name) in names.iter().enumerate() {
            let item_path = format!("{path}.fallback_fields[{i}]");
            match name.as_str() {
                Some(name) => {
                    let known = match_fields.is_some_and(|m| m.contains_key(name))
                        || fields.is_some_and(|f| f.contains_key(name));
                    if !known {
                        self.error(
                            item_path,
                            format!("'{name}' is not a key of match or fields"),
                        );
                    }
                }
                None => self.error(item_path, "must be a string"),
            }
        }
    }

    fn associations(&mut self, map: &Map<String, Value>, path: &str, scope: Scope<'_>) {
        let Some(value) = map.get("associate") else {
            return;
        };
        let Some(items) = value.as_array() else {
            self.error(
                format!("{path}.associate"),
                "must be a list of {\"object\": …, \"id\": …}",
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}.associate[{i}]");
            let Some(association) = item.as_object() else {
                self.error(item_path, "must be an object with object and id");
                continue;
            };
            self.known_keys(association, &item_path, ASSOCIATION_KEYS);
            self.required_text(association, &item_path, "object");
            if let Some(id) = self.required_text(association, &item_path, "id") {
                self.template(&format!("{item_path}.id"), id, scope);
            }
        }
    }

    /// Reports keys outside `allowed`, suggesting the closest allowed key.
    fn known_keys(&mut self, map: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for key in map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint = match allowed
                .iter()
                .map(|candidate| (edit_distance(key, candidate), candidate))
                .filter(|(distance, _)| *distance <= 2)
                .min()
            {
                Some((_, candidate)) => format!("did you mean '{candidate}'?"),
                None => format!("expected one of {}", allowed.join(", ")),
            };
            self.error(child(path, key), format!("unknown field '{key}'; {hint}"));
        }
    }

    /// A required, non-blank string field.
    fn required_text<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        let field_path = child(path, key);
        match map.get(key) {
            None => {
                self.error(field_path, "is required");
                None
            }
            Some(Value::String(text)) if text.trim().is_empty() => {
                self.error(field_path, "must not be empty");
                None
            }
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.error(field_path, "must be a string");
                None
            }
        }
    }

    /// An optional string field; absent and null are both "not given".
    fn optional_text<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v str> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.error(child(path, key), "must be a string");
                None
            }
        }
    }

    /// A value template: compiles, uses only known filters, tests and variables.
    fn template(&mut self, path: &str, source: &str, scope: Scope<'_>) {
        let env = self.env;
        let compiled = match templating::compile(env, source) {
            Ok(compiled) => compiled,
            Err(err) => {
                self.error(path, templating::describe(&err));
                return;
            }
        };
        let (code, expression) = match &compiled {
            templating::Compiled::Literal(_) => return,
            templating::Compiled::Expression(_) => (
                templating::single_expression(source).unwrap_or(source),
                true,
            ),
            templating::Compiled::Template(_) => (source, false),
        };
        self.callables(path, code, expression);
        self.variables(path, compiled.variables(), scope);
    }

    /// A condition (`when`, `trigger.filter`): one expression, checked like a template.
    fn condition(&mut self, path: &str, source: &str, scope: Scope<'_>) {
        if source.trim().is_empty() {
            self.error(path, "must not be empty; leave it out to always run");
            return;
        }
        let env = self.env;
        let expr = match templating::compile_condition(env, source) {
            Ok(expr) => expr,
            Err(err) => {
                self.error(path, templating::describe(&err));
                return;
            }
        };
        self.callables(path, templating::condition_source(source), true);
        self.variables(path, expr.undeclared_variables(true), scope);
    }

    fn callables(&mut self, path: &str, code: &str, expression: bool) {
        let mut reported = BTreeSet::new();
        for (kind, name) in scan::callables(code, expression) {
            if !self.is_known(kind, &name) && reported.insert((kind.noun(), name.clone())) {
                self.error(path, format!("unknown {} '{name}'", kind.noun()));
            }
        }
    }

    /// Whether the environment has a filter or test, by asking it: minijinja reports unknown
    /// filters only when they run, so run one on `none` and look at the error kind.
    fn is_known(&mut self, kind: Callable, name: &str) -> bool {
        if let Some(known) = self.known.get(&(kind, name.to_owned())) {
            return *known;
        }
        let probe = match kind {
            Callable::Filter => format!("none | {name}"),
            Callable::Test => format!("none is {name}"),
        };
        let known = match self.env.compile_expression_owned(probe) {
            Ok(expr) => match expr.eval(()) {
                Err(err) => !matches!(
                    err.kind(),
                    ErrorKind::UnknownFilter | ErrorKind::UnknownTest
                ),
                Ok(_) => true,
            },
            // Not a name the parser accepts on its own; the real template compiled, so let it be.
            Err(_) => true,
        };
        self.known.insert((kind, name.to_owned()), known);
        known
    }

    fn variables(
        &mut self,
        path: &str,
        variables: std::collections::HashSet<String>,
        scope: Scope<'_>,
    ) {
        let variables: BTreeSet<String> = variables.into_iter().collect();
        let mut reported = BTreeSet::new();
        for variable in &variables {
            let mut parts = variable.split('.');
            let root = parts.next().unwrap_or_default();
            if root == "item" {
                let looping = matches!(scope, Scope::Step { looping: true, .. });
                if !looping && reported.insert(root.to_owned()) {
                    self.error(path, "item: only a step with for_each has an item");
                }
                continue;
            }
            if !(CONTEXT_NAMES.contains(&root)
                || ENGINE_NAMES.contains(&root)
                || self.globals.contains(root))
            {
                if reported.insert(root.to_owned()) {
                    self.error(
                        path,
                        format!(
                            "unknown variable '{root}'; templates can use {}",
                            CONTEXT_NAMES.join(", ")
                        ),
                    );
                }
                continue;
            }
            if root != "steps" {
                continue;
            }
            let Some(step) = parts.next() else {
                continue;
            };
            if !reported.insert(format!("steps.{step}")) {
                continue;
            }
            match scope {
                Scope::Trigger => self.error(
                    path,
                    format!("steps.{step}: the trigger is checked before any step runs"),
                ),
                Scope::Step { index, ids, .. } => {
                    match ids.iter().position(|id| id.as_deref() == Some(step)) {
                        None => self.error(path, format!("unknown step '{step}' in steps.{step}")),
                        Some(position) if position == index => {
                            self.error(path, format!("a step cannot use its own id (steps.{step})"))
                        }
                        Some(position) if position > index => self.error(
                            path,
                            format!(
                                "step '{step}' runs later (steps[{position}]); only earlier steps' ids are available"
                            ),
                        ),
                        Some(_) => {
                            if let Some(attribute) = parts.next()
                                && !matches!(attribute, "id" | "response" | "object" | "items")
                            {
                                self.error(
                                    path,
                                    format!("steps.{step}.{attribute}: a step exposes its record id (steps.{step}.id), the vendor's answer (steps.{step}.response), for stripe steps the object (steps.{step}.object), and for a for_each step each item's run (steps.{step}.items)"),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
