//! One step's checks: its keys, what its action needs, and its templates.

use super::*;

impl Checker {
    pub(super) fn step(&mut self, index: usize, value: &Value, ids: &[Option<String>]) {
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
}
