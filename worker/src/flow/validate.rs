//! Validation of flows as tenants send them: walks the raw JSON so that every error is
//! reported at once with its exact path (`steps[1].fields.amount`), covering shape (unknown
//! keys, types), meaning (unique step ids, what each action needs) and templates (syntax,
//! unknown filters and tests, unknown variables, `steps.<id>` of later or unknown steps).
//! It never renders a template against data.

use std::collections::{BTreeSet, HashMap};

use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

use super::model::{FlowSpec, ValidationError};
use super::template::{self, CONTEXT_NAMES};

/// Methods an HTTP step may use.
pub const HTTP_METHODS: &[&str] = &["POST", "PUT", "PATCH", "DELETE"];

/// `prefix.key`, or `prefix["key"]` when the key is not an identifier.
pub(crate) fn key_path(prefix: &str, key: &str) -> String {
    if is_identifier(key) {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}[{}]", Value::String(key.to_owned()))
    }
}

const FLOW_KEYS: &[&str] = &[
    "name",
    "connection_id",
    "enabled",
    "refetch",
    "trigger",
    "steps",
];
const TRIGGER_KEYS: &[&str] = &["events", "filter"];
const STEP_KEYS: &[&str] = &[
    "id",
    "action",
    "object",
    "match",
    "fields",
    "record_id",
    "when",
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
];

/// The parts of an email step's `fields`.
const EMAIL_FIELDS: &[&str] = &["to", "cc", "bcc", "reply_to", "subject", "text", "html"];
const ASSOCIATION_KEYS: &[&str] = &["object", "id"];
const ACTIONS: &[&str] = &[
    "upsert",
    "create",
    "update",
    "stripe.retrieve",
    "email",
    "http",
    "assert",
];

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

/// Letters, digits and `_`, not starting with a digit: usable as `steps.<id>` in templates.
pub(crate) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a trigger pattern is well formed: `*`, an event type (`charge.succeeded`), or a
/// prefix followed by `.*` (`customer.subscription.*`).
pub(crate) fn is_event_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let segments: Vec<&str> = pattern.split('.').collect();
    let (last, head) = match segments.split_last() {
        Some(split) => split,
        None => return false,
    };
    let word = |s: &&str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    head.iter().all(word) && (word(last) || (*last == "*" && !head.is_empty()))
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
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Callable {
    Filter,
    Test,
}

impl Callable {
    fn noun(self) -> &'static str {
        match self {
            Callable::Filter => "filter",
            Callable::Test => "test",
        }
    }
}

struct Checker {
    env: &'static Environment<'static>,
    errors: Vec<ValidationError>,
    known: HashMap<(Callable, String), bool>,
    globals: BTreeSet<String>,
}

impl Checker {
    fn new() -> Self {
        let env = template::environment();
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

    fn step(&mut self, index: usize, value: &Value, ids: &[Option<String>]) {
        let path = format!("steps[{index}]");
        let Some(map) = value.as_object() else {
            self.error(path, "must be an object");
            return;
        };
        self.known_keys(map, &path, STEP_KEYS);
        let scope = Scope::Step { index, ids };

        if let Some(id) = self.required_text(map, &path, "id") {
            let id_path = format!("{path}.id");
            if !is_identifier(id) {
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

        let action = match map.get("action") {
            None => {
                self.error(format!("{path}.action"), "is required");
                None
            }
            Some(Value::String(action)) if ACTIONS.contains(&action.as_str()) => {
                Some(action.as_str())
            }
            Some(other) => {
                let shown = other
                    .as_str()
                    .map_or_else(|| other.to_string(), |s| format!("'{s}'"));
                self.error(
                    format!("{path}.action"),
                    format!(
                        "unknown action {shown}; expected upsert, create, update, stripe.retrieve, email, http or assert"
                    ),
                );
                None
            }
        };
        // Email, http and assert steps write no CRM object.
        let object = if matches!(action, Some("email" | "http" | "assert")) {
            self.optional_text(map, &path, "object")
        } else {
            self.required_text(map, &path, "object")
        };
        if let Some(connection_id) = self.optional_text(map, &path, "connection_id")
            && connection_id.trim().is_empty()
        {
            self.error(format!("{path}.connection_id"), "must not be empty");
        }
        if let Some(url) = self.optional_text(map, &path, "url") {
            self.template(&format!("{path}.url"), url, scope);
        }
        let headers = self.template_map(map, &path, "headers", scope);
        if let Some(check) = self.optional_text(map, &path, "check") {
            self.condition(&format!("{path}.check"), check, scope);
        }
        if let Some(message) = self.optional_text(map, &path, "message") {
            self.template(&format!("{path}.message"), message, scope);
        }

        let match_fields = self.template_map(map, &path, "match", scope);
        let fields = self.template_map(map, &path, "fields", scope);
        let record_id = self.optional_text(map, &path, "record_id");
        if let Some(record_id) = record_id {
            self.template(&format!("{path}.record_id"), record_id, scope);
        }
        if let Some(method) = self.optional_text(map, &path, "method") {
            if crate::flow::template::is_template(method) {
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
        if let Some(request_path) = self.optional_text(map, &path, "path") {
            self.template(&format!("{path}.path"), request_path, scope);
        }
        if let Some(when) = self.optional_text(map, &path, "when") {
            self.condition(&format!("{path}.when"), when, scope);
        }
        self.fallback_fields(map, &path, match_fields, fields);
        self.associations(map, &path, scope);

        let has_match = match_fields.is_some_and(|m| !m.is_empty());
        let has_fields = fields.is_some_and(|f| !f.is_empty());
        let has_record_id = record_id.is_some_and(|r| !r.trim().is_empty());
        match action {
            Some("upsert") => {
                if !has_match {
                    self.error(
                        format!("{path}.match"),
                        "an upsert needs at least one match field to find the record by",
                    );
                }
                if record_id.is_some() {
                    self.error(
                        format!("{path}.record_id"),
                        "only update steps use record_id",
                    );
                }
            }
            Some("update") => {
                if !has_record_id && !has_match {
                    self.error(
                        format!("{path}.record_id"),
                        "an update needs a record_id or match fields to find the record by",
                    );
                }
                if !has_fields {
                    self.error(
                        format!("{path}.fields"),
                        "an update needs at least one field to write",
                    );
                }
            }
            Some("create") => {
                if has_match {
                    self.error(
                        format!("{path}.match"),
                        "create always makes a new record and does not look one up; put these values in fields",
                    );
                }
                if record_id.is_some() {
                    self.error(
                        format!("{path}.record_id"),
                        "only update steps use record_id",
                    );
                }
                if !has_fields {
                    self.error(
                        format!("{path}.fields"),
                        "a create needs at least one field to write",
                    );
                }
            }
            Some("email") => {
                if !map.contains_key("connection_id") {
                    self.error(
                        format!("{path}.connection_id"),
                        "an email step needs its smtp connection's id",
                    );
                }
                if let Some(fields) = fields {
                    for key in fields.keys() {
                        if !EMAIL_FIELDS.contains(&key.as_str()) {
                            self.error(
                                format!("{path}.fields.{key}"),
                                format!("an email has {}", EMAIL_FIELDS.join(", ")),
                            );
                        }
                    }
                }
                let has = |key: &str| fields.is_some_and(|f| f.contains_key(key));
                for key in ["to", "subject"] {
                    if !has(key) {
                        self.error(format!("{path}.fields.{key}"), "is required for an email");
                    }
                }
                if !has("text") && !has("html") {
                    self.error(
                        format!("{path}.fields.text"),
                        "an email needs a text or html body (or both)",
                    );
                }
                self.only_keys(
                    map,
                    &path,
                    "email",
                    &["id", "action", "object", "connection_id", "fields", "when"],
                );
            }
            Some("http") => {
                let has_url = map.contains_key("url");
                let has_connection = map.contains_key("connection_id");
                if !has_url && !has_connection {
                    self.error(
                        format!("{path}.url"),
                        "an http step needs a url, or an http connection (connection_id) and a path",
                    );
                }
                if has_url && has_connection {
                    self.error(
                        format!("{path}.url"),
                        "with a connection, give the path under its base_url instead of a url",
                    );
                }
                if let Some(headers) = headers {
                    for name in headers.keys() {
                        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                            self.error(
                                format!("{path}.headers.{name}"),
                                "is not a valid header name",
                            );
                        }
                    }
                }
                self.only_keys(
                    map,
                    &path,
                    "http",
                    &[
                        "id",
                        "action",
                        "object",
                        "connection_id",
                        "url",
                        "path",
                        "method",
                        "headers",
                        "fields",
                        "when",
                    ],
                );
            }
            Some("assert") => {
                if !map.contains_key("check") {
                    self.error(
                        format!("{path}.check"),
                        "an assert step needs the expression that must hold, e.g. object.currency == 'usd'",
                    );
                }
                self.only_keys(
                    map,
                    &path,
                    "assert",
                    &["id", "action", "object", "check", "message", "when"],
                );
            }
            Some("stripe.retrieve") => {
                if let Some(object) = object
                    && crate::stripe::client::object_path(object).is_none()
                {
                    let known: Vec<&str> = crate::stripe::client::RETRIEVABLE
                        .iter()
                        .map(|(name, _)| *name)
                        .collect();
                    self.error(
                        format!("{path}.object"),
                        format!(
                            "stripe.retrieve fetches one of {}, not '{object}'",
                            known.join(", ")
                        ),
                    );
                }
                if !has_record_id {
                    self.error(
                        format!("{path}.record_id"),
                        "stripe.retrieve needs the object's id, e.g. {{ object.customer }}",
                    );
                }
                for key in [
                    "match",
                    "fields",
                    "fallback_fields",
                    "associate",
                    "method",
                    "path",
                ] {
                    if map.contains_key(key) {
                        self.error(
                            format!("{path}.{key}"),
                            "stripe.retrieve only reads: it takes object, record_id, expand and when",
                        );
                    }
                }
            }
            _ => {}
        }
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
            } else if action != Some("stripe.retrieve") {
                self.error(
                    format!("{path}.expand"),
                    "only stripe.retrieve steps expand",
                );
            }
        }
    }

    /// Refuses the keys an action does not take.
    fn only_keys(&mut self, map: &Map<String, Value>, path: &str, action: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) && STEP_KEYS.contains(&key.as_str()) {
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
            Value::Object(map) => {
                for (key, item) in map {
                    self.template_value(&key_path(path, key), item, scope);
                }
            }
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
        let compiled = match template::compile(env, source) {
            Ok(compiled) => compiled,
            Err(err) => {
                self.error(path, template::describe(&err));
                return;
            }
        };
        let (code, expression) = match &compiled {
            template::Compiled::Literal(_) => return,
            template::Compiled::Expression(_) => {
                (template::single_expression(source).unwrap_or(source), true)
            }
            template::Compiled::Template(_) => (source, false),
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
        let expr = match template::compile_condition(env, source) {
            Ok(expr) => expr,
            Err(err) => {
                self.error(path, template::describe(&err));
                return;
            }
        };
        self.callables(path, template::condition_source(source), true);
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
                Scope::Step { index, ids } => {
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
                                && !matches!(attribute, "id" | "response" | "object")
                            {
                                self.error(
                                    path,
                                    format!("steps.{step}.{attribute}: a step exposes its record id (steps.{step}.id), the vendor's answer (steps.{step}.response) and, for stripe.retrieve, the object (steps.{step}.object)"),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `key` under `path` (`path.key`), or just `key` at the top.
fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        if is_identifier(key) {
            key.to_owned()
        } else {
            format!("[{}]", Value::String(key.to_owned()))
        }
    } else {
        key_path(path, key)
    }
}

/// Why a well-formed trigger pattern names nothing in Stripe's catalogue of event types (a
/// misspelled type would validate and never fire), with the closest type as a hint.
fn unknown_event_type(pattern: &str) -> Option<String> {
    use crate::stripe::event_types::EVENT_TYPES;
    let known = match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => EVENT_TYPES.iter().any(|t| {
            t.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        }),
        None => EVENT_TYPES.contains(&pattern),
    };
    if known {
        return None;
    }
    let closest = EVENT_TYPES
        .iter()
        .map(|t| (edit_distance(pattern, t), *t))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    Some(match closest {
        Some((_, candidate)) => {
            format!("'{pattern}' is not a Stripe event type; did you mean '{candidate}'?")
        }
        None => format!(
            "'{pattern}' is not a Stripe event type (see GET /v1/flow-templates for examples, or \
             Stripe's list of event types)"
        ),
    })
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// A lexical scan of template code for the filters and tests it names. minijinja resolves
/// filters only at render time and has no stable AST API, so names are read from the code:
/// after `|` (a filter), after `is` / `is not` (a test), and the name of a `{% filter %}`
/// block. String literals and comments are skipped. It runs on templates that already
/// compiled, so it only has to find names, not judge syntax.
mod scan {
    use super::Callable;

    /// The filters and tests named in `source`: all of it when `expression`, else the code
    /// inside `{{ … }}` and `{% … %}`.
    pub(super) fn callables(source: &str, expression: bool) -> Vec<(Callable, String)> {
        let mut found = Vec::new();
        if expression {
            code(source, false, &mut found);
            return found;
        }
        let mut rest = source;
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            if let Some(body) = after.strip_prefix('#') {
                rest = body.find("#}").map_or("", |end| &body[end + 2..]);
            } else if let Some(body) = after.strip_prefix('{') {
                let end = block_end(body, "}}");
                code(&body[..end], false, &mut found);
                rest = body.get(end + 2..).unwrap_or("");
            } else if let Some(body) = after.strip_prefix('%') {
                let end = block_end(body, "%}");
                let block = &body[..end];
                rest = body.get(end + 2..).unwrap_or("");
                let statement =
                    block.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
                if statement == "raw" {
                    rest = skip_raw(rest);
                    continue;
                }
                code(block, true, &mut found);
            } else {
                rest = after;
            }
        }
        found
    }

    /// Where a `{{`/`{%` block ends: the closing marker outside strings and brackets.
    fn block_end(body: &str, close: &str) -> usize {
        let bytes = body.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\'' | b'"' => i = skip_string(bytes, i),
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    i += 1;
                }
                b')' | b']' => {
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                // Inside a map literal a `}` (even the first of `}}`) closes the map.
                b'}' if depth > 0 => {
                    depth -= 1;
                    i += 1;
                }
                _ if depth == 0 && body[i..].starts_with(close) => return i,
                _ => i += 1,
            }
        }
        bytes.len()
    }

    fn skip_raw(rest: &str) -> &str {
        let mut search = rest;
        while let Some(start) = search.find("{%") {
            let body = &search[start + 2..];
            let end = body.find("%}").unwrap_or(body.len());
            let statement =
                body[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
            search = body.get(end + 2..).unwrap_or("");
            if statement == "endraw" {
                return search;
            }
        }
        ""
    }

    /// The index just past the string literal starting at `start`.
    fn skip_string(bytes: &[u8], start: usize) -> usize {
        let quote = bytes[start];
        let mut i = start + 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b if b == quote => return i + 1,
                _ => i += 1,
            }
        }
        bytes.len()
    }

    fn is_ident_start(b: u8) -> bool {
        b.is_ascii_alphabetic() || b == b'_'
    }

    fn is_ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_'
    }

    fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    }

    /// Reads `name` or `dotted.name` at `i` (after spaces); returns it and the index after.
    fn name(code: &str, i: usize) -> Option<(String, usize)> {
        let bytes = code.as_bytes();
        let mut i = skip_spaces(bytes, i);
        let mut out = String::new();
        loop {
            if i >= bytes.len() || !is_ident_start(bytes[i]) {
                return (!out.is_empty()).then_some((out, i));
            }
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            out.push_str(&code[start..i]);
            let next = skip_spaces(bytes, i);
            if next < bytes.len() && bytes[next] == b'.' {
                out.push('.');
                i = skip_spaces(bytes, next + 1);
            } else {
                return Some((out, i));
            }
        }
    }

    fn code(code: &str, statement: bool, found: &mut Vec<(Callable, String)>) {
        let bytes = code.as_bytes();
        let mut i = 0;
        let mut previous: Option<u8> = None;
        let mut first_word = statement;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_whitespace() || (first_word && (b == b'-' || b == b'+')) {
                i += 1;
                continue;
            }
            if b == b'\'' || b == b'"' {
                i = skip_string(bytes, i);
                previous = Some(b'"');
                first_word = false;
                continue;
            }
            if b == b'|' {
                if let Some((filter, next)) = name(code, i + 1) {
                    found.push((Callable::Filter, filter));
                    i = next;
                } else {
                    i += 1;
                }
                previous = Some(b'a');
                first_word = false;
                continue;
            }
            if is_ident_start(b) {
                let start = i;
                while i < bytes.len() && is_ident(bytes[i]) {
                    i += 1;
                }
                let word = &code[start..i];
                let after_dot = previous == Some(b'.');
                if first_word && word == "filter" {
                    if let Some((filter, next)) = name(code, i) {
                        found.push((Callable::Filter, filter));
                        i = next;
                    }
                } else if word == "is" && !after_dot {
                    let mut at = i;
                    if let Some((next_word, next)) = name(code, at)
                        && next_word == "not"
                    {
                        at = next;
                    }
                    if let Some((test, next)) = name(code, at) {
                        found.push((Callable::Test, test));
                        i = next;
                    }
                }
                previous = Some(b'a');
                first_word = false;
                continue;
            }
            previous = Some(b);
            first_word = false;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flow::{Action, parse_flow, validate};

    /// The design document's example flow.
    fn example() -> Value {
        json!({
            "name": "Paid charges to HubSpot",
            "connection_id": "0190c0de-0000-7000-8000-000000000001",
            "enabled": true,
            "trigger": {"events": ["charge.succeeded"], "filter": "object.currency == 'usd'"},
            "steps": [
                {"id": "contact", "action": "upsert", "object": "contacts",
                 "match": {"email": "{{ object.billing_details.email | lower }}"},
                 "fields": {
                     "firstname": "{{ object.billing_details.name | first_name }}",
                     "lastname": "{{ object.billing_details.name | last_name }}",
                     "last_charge_amount": "{{ object.amount | major_units(object.currency) }}"},
                 "fallback_fields": ["email", "firstname", "lastname"]},
                {"id": "deal", "action": "upsert", "object": "deals",
                 "match": {"stripe_charge_id": "{{ object.id }}"},
                 "fields": {"dealname": "{{ object.metadata.deal_name | default('Stripe charge ' ~ object.id) }}",
                            "dealstage": "closedwon", "amount": "{{ object.amount | major_units(object.currency) }}"},
                 "associate": [{"object": "contacts", "id": "{{ steps.contact.id }}"}]}
            ]
        })
    }

    fn errors_of(flow: &Value) -> Vec<(String, String)> {
        validate(flow)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    fn single_error(flow: &Value) -> (String, String) {
        let errors = errors_of(flow);
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().expect("one error")
    }

    #[test]
    fn the_design_example_is_valid_and_round_trips() {
        let spec = parse_flow(&example()).expect("valid");
        assert_eq!(spec.steps.len(), 2);
        assert_eq!(spec.steps[0].action, Action::Upsert);
        assert!(spec.enabled);
        let stored = serde_json::to_value(&spec).expect("serializes");
        assert_eq!(parse_flow(&stored).expect("stored form is valid"), spec);
    }

    #[test]
    fn enabled_defaults_to_true() {
        let mut flow = example();
        flow.as_object_mut().map(|m| m.remove("enabled"));
        assert!(parse_flow(&flow).expect("valid").enabled);
    }

    #[test]
    fn unknown_filter_names_the_field_path() {
        let mut flow = example();
        flow["steps"][1]["fields"]["amount"] =
            json!("{{ object.amount | amout(object.currency) }}");
        let error = single_error(&flow);
        assert_eq!(
            error,
            (
                "steps[1].fields.amount".into(),
                "unknown filter 'amout'".into()
            )
        );
        let rendered = validate(&flow)[0].to_string();
        assert_eq!(rendered, "steps[1].fields.amount: unknown filter 'amout'");
    }

    #[test]
    fn unknown_filters_and_tests_are_found_anywhere_in_templates() {
        let mut flow = example();
        flow["steps"][0]["fields"]["firstname"] =
            json!("Hi {% if object.x is definde %}{{ object.x | uper }}{% endif %} {{ '|fake' }}");
        flow["steps"][0]["when"] = json!("object.paid and object.email | bogus");
        flow["trigger"]["filter"] = json!("{{ object.currency | lower == 'usd' }}");
        let errors = errors_of(&flow);
        assert_eq!(
            errors,
            vec![
                (
                    "steps[0].fields.firstname".to_string(),
                    "unknown test 'definde'".to_string()
                ),
                (
                    "steps[0].fields.firstname".to_string(),
                    "unknown filter 'uper'".to_string()
                ),
                (
                    "steps[0].when".to_string(),
                    "unknown filter 'bogus'".to_string()
                ),
            ]
        );
    }

    #[test]
    fn builtin_and_tributary_filters_are_known() {
        let mut flow = example();
        flow["steps"][0]["fields"]["all"] = json!(
            "{{ object.a | default('') | upper | lower | trim | replace('a', 'b') | length }} \
             {{ object.b | tojson }} {{ object.c | date }} {{ object.c | datetime }} \
             {{ object.c | add_days(1) }} {{ object.d | lookup({'x': 'y'}) }} {{ object | mrr }} \
             {{ object | arr }} {{ object.e | format_amount('usd') }} {{ object.f is number }}"
        );
        assert_eq!(errors_of(&flow), vec![]);
    }

    #[test]
    fn syntax_errors_name_the_field_path() {
        let mut flow = example();
        flow["steps"][1]["fields"]["dealname"] =
            json!("{{ object.metadata.deal_name | default( }}");
        let (path, message) = single_error(&flow);
        assert_eq!(path, "steps[1].fields.dealname");
        assert!(message.starts_with("syntax error: "), "{message}");

        let mut flow = example();
        flow["steps"][0]["when"] = json!("object.paid ==");
        let (path, message) = single_error(&flow);
        assert_eq!(path, "steps[0].when");
        assert!(message.starts_with("syntax error: "), "{message}");
    }

    #[test]
    fn duplicate_step_ids() {
        let mut flow = example();
        flow["steps"][1]["id"] = json!("contact");
        flow["steps"][1]["associate"] = json!([]);
        let (path, message) = single_error(&flow);
        assert_eq!(path, "steps[1].id");
        assert_eq!(
            message,
            "duplicate step id 'contact' (first used by steps[0])"
        );
    }

    #[test]
    fn step_ids_must_be_identifiers() {
        let mut flow = example();
        flow["steps"][0]["id"] = json!("the-contact");
        flow["steps"][1]["associate"] = json!([]);
        let (path, message) = single_error(&flow);
        assert_eq!(path, "steps[0].id");
        assert!(message.starts_with("must be an identifier"), "{message}");
    }

    #[test]
    fn upsert_needs_a_match() {
        let mut flow = example();
        flow["steps"][1].as_object_mut().map(|m| m.remove("match"));
        assert_eq!(
            single_error(&flow),
            (
                "steps[1].match".into(),
                "an upsert needs at least one match field to find the record by".into()
            )
        );
        flow["steps"][1]["match"] = json!({});
        assert_eq!(single_error(&flow).0, "steps[1].match");
    }

    #[test]
    fn update_needs_a_record_id_or_match_and_create_refuses_both() {
        let mut flow = example();
        flow["steps"][1] =
            json!({"id": "deal", "action": "update", "object": "deals", "fields": {"a": 1}});
        assert_eq!(
            single_error(&flow),
            (
                "steps[1].record_id".into(),
                "an update needs a record_id or match fields to find the record by".into()
            )
        );
        flow["steps"][1]["record_id"] = json!("{{ object.metadata.hubspot_deal_id }}");
        assert_eq!(errors_of(&flow), vec![]);

        flow["steps"][1]["action"] = json!("create");
        assert_eq!(
            single_error(&flow),
            (
                "steps[1].record_id".into(),
                "only update steps use record_id".into()
            )
        );
        flow["steps"][1]
            .as_object_mut()
            .map(|m| m.remove("record_id"));
        flow["steps"][1]["match"] = json!({"x": "{{ object.id }}"});
        assert_eq!(single_error(&flow).0, "steps[1].match");
    }

    #[test]
    fn unknown_keys_are_refused_with_a_hint() {
        let mut flow = example();
        let steps = flow.as_object_mut().and_then(|m| m.remove("steps"));
        flow["stpes"] = steps.unwrap_or_default();
        let errors = errors_of(&flow);
        assert_eq!(
            errors,
            vec![
                (
                    "stpes".to_string(),
                    "unknown field 'stpes'; did you mean 'steps'?".to_string()
                ),
                ("steps".to_string(), "is required".to_string()),
            ]
        );

        let mut flow = example();
        flow["steps"][0]["feilds"] = json!({});
        flow["trigger"]["event"] = json!([]);
        flow["steps"][1]["associate"][0]["type"] = json!("x");
        assert_eq!(
            errors_of(&flow),
            vec![
                (
                    "trigger.event".to_string(),
                    "unknown field 'event'; did you mean 'events'?".to_string()
                ),
                (
                    "steps[0].feilds".to_string(),
                    "unknown field 'feilds'; did you mean 'fields'?".to_string()
                ),
                (
                    "steps[1].associate[0].type".to_string(),
                    "unknown field 'type'; expected one of object, id".to_string()
                ),
            ]
        );
    }

    #[test]
    fn forward_and_unknown_step_references() {
        let mut flow = example();
        flow["steps"][0]["fields"]["deal"] = json!("{{ steps.deal.id }}");
        flow["steps"][1]["associate"][0]["id"] = json!("{{ steps.contcat.id }}");
        flow["steps"][1]["fields"]["self"] = json!("{{ steps.deal.id }}");
        assert_eq!(
            errors_of(&flow),
            vec![
                (
                    "steps[0].fields.deal".to_string(),
                    "step 'deal' runs later (steps[1]); only earlier steps' ids are available"
                        .to_string()
                ),
                (
                    "steps[1].fields.self".to_string(),
                    "a step cannot use its own id (steps.deal)".to_string()
                ),
                (
                    "steps[1].associate[0].id".to_string(),
                    "unknown step 'contcat' in steps.contcat".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_misspelled_event_type_is_refused_with_the_closest_one() {
        assert_eq!(
            unknown_event_type("charge.succeded").as_deref(),
            Some("'charge.succeded' is not a Stripe event type; did you mean 'charge.succeeded'?")
        );
        assert!(unknown_event_type("charg.*").is_some());
        assert!(unknown_event_type("customer.subscripton.*").is_some());
        for known in [
            "*",
            "charge.succeeded",
            "customer.subscription.*",
            "invoice.*",
        ] {
            assert_eq!(unknown_event_type(known), None, "{known}");
        }
        let mut flow = example();
        flow["trigger"]["events"] = json!(["charge.succeded"]);
        assert_eq!(
            errors_of(&flow),
            vec![(
                "trigger.events[0]".to_string(),
                "'charge.succeded' is not a Stripe event type; did you mean 'charge.succeeded'?"
                    .to_string()
            )]
        );
    }

    #[test]
    fn trigger_and_variables() {
        let mut flow = example();
        flow["trigger"] = json!({"events": ["Charge.Succeeded", "customer.*", "*", "invoice.*.x", 3], "filter": "steps.contact.id"});
        flow["steps"][0]["fields"]["x"] = json!("{{ objet.amount }}");
        assert_eq!(
            errors_of(&flow),
            vec![
                (
                    "trigger.events[0]".to_string(),
                    "'Charge.Succeeded' is not an event type pattern; use e.g. charge.succeeded, customer.subscription.* or *".to_string()
                ),
                (
                    "trigger.events[3]".to_string(),
                    "'invoice.*.x' is not an event type pattern; use e.g. charge.succeeded, customer.subscription.* or *".to_string()
                ),
                ("trigger.events[4]".to_string(), "must be a string".to_string()),
                (
                    "trigger.filter".to_string(),
                    "steps.contact: the trigger is checked before any step runs".to_string()
                ),
                (
                    "steps[0].fields.x".to_string(),
                    "unknown variable 'objet'; templates can use event, object, previous, steps, settings, now".to_string()
                ),
            ]
        );
    }

    #[test]
    fn shape_errors_are_all_reported() {
        let flow = json!({
            "name": "",
            "enabled": "yes",
            "trigger": {"events": []},
            "steps": [
                {"id": "a", "action": "merge", "object": "", "fields": [], "fallback_fields": ["zz"]},
                "not a step"
            ]
        });
        assert_eq!(
            errors_of(&flow),
            vec![
                ("name".to_string(), "must not be empty".to_string()),
                ("connection_id".to_string(), "is required".to_string()),
                ("enabled".to_string(), "must be true or false".to_string()),
                (
                    "trigger.events".to_string(),
                    "must name at least one event type, e.g. charge.succeeded".to_string()
                ),
                (
                    "steps[0].action".to_string(),
                    "unknown action 'merge'; expected upsert, create, update, stripe.retrieve, email, http or assert"
                        .to_string()
                ),
                (
                    "steps[0].object".to_string(),
                    "must not be empty".to_string()
                ),
                (
                    "steps[0].fields".to_string(),
                    "must be an object of field names to values".to_string()
                ),
                (
                    "steps[0].fallback_fields[0]".to_string(),
                    "'zz' is not a key of match or fields".to_string()
                ),
                ("steps[1]".to_string(), "must be an object".to_string()),
            ]
        );
        assert_eq!(
            errors_of(&json!([])),
            vec![("".to_string(), "a flow must be a JSON object".to_string())]
        );
    }

    #[test]
    fn nested_values_are_templates_too() {
        let mut flow = example();
        flow["steps"][0]["fields"]["address"] =
            json!({"lines": ["{{ object.x | nope }}"], "weird key": "{{ object.y | nope2 }}"});
        assert_eq!(
            errors_of(&flow),
            vec![
                (
                    "steps[0].fields.address.lines[0]".to_string(),
                    "unknown filter 'nope'".to_string()
                ),
                (
                    "steps[0].fields.address[\"weird key\"]".to_string(),
                    "unknown filter 'nope2'".to_string()
                ),
            ]
        );
    }

    #[test]
    fn scanner_reads_filters_tests_and_blocks() {
        let found = scan::callables(
            "{# x | no #}{{ a | f1 | f2(1, 'x|y') }}{% filter f3 %}{% if b is not t1 %}{% endif %}{% endfilter %}\
             {% raw %}{{ a | no }}{% endraw %}{{ {'k': {'n': 1}} | f4 }}{{ obj.is }}",
            false,
        );
        let names: Vec<(bool, String)> = found
            .into_iter()
            .map(|(kind, name)| (kind == Callable::Filter, name))
            .collect();
        assert_eq!(
            names,
            vec![
                (true, "f1".to_string()),
                (true, "f2".to_string()),
                (true, "f3".to_string()),
                (false, "t1".to_string()),
                (true, "f4".to_string()),
            ]
        );
    }

    #[test]
    fn event_patterns() {
        for ok in [
            "*",
            "charge.succeeded",
            "customer.subscription.*",
            "invoice_payment.paid",
            "v1.billing.meter.error_report_triggered",
        ] {
            assert!(is_event_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "*.created",
            "charge.",
            ".x",
            "Charge.succeeded",
            "charge succeeded",
            "a.*.b",
            "customer*",
        ] {
            assert!(!is_event_pattern(bad), "{bad}");
        }
    }
}
