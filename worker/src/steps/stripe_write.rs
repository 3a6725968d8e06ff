//! `stripe.create` and `stripe.update`: write one Stripe object (a customer, a subscription, an
//! invoice item, a customer-portal session) with the account's key; later steps see Stripe's
//! answer as `steps.<id>.object`. The step's `fields` are sent in Stripe's form encoding, with
//! an `Idempotency-Key` derived from the event and the step, so every retry of the step for
//! the same event gets Stripe's first answer instead of a second object — and the events the
//! write causes carry that key, which tells Tributary its own echoes apart.

use serde_json::{Map, Value};

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::crm::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Trail};
use crate::flow::templating::is_template;
use crate::flow::{Action, Operation, Step, ValidationError};
use crate::stripe::client::{StripeError, form_pairs, writable, write_idempotency_key, write_path};

pub struct StripeWrite(pub Action);

pub static CREATE: StripeWrite = StripeWrite(Action::StripeCreate);
pub static UPDATE: StripeWrite = StripeWrite(Action::StripeUpdate);

/// Step keys a Stripe write has no use for.
const REFUSED_KEYS: &[&str] = &[
    "match",
    "fallback_fields",
    "associate",
    "method",
    "path",
    "url",
    "headers",
    "check",
    "message",
    "connection_id",
];

/// The fields Stripe requires to create each object.
const REQUIRED_ON_CREATE: &[(&str, &[&str])] = &[
    ("subscription", &["customer", "items"]),
    ("invoiceitem", &["customer"]),
    ("billing_portal.session", &["customer"]),
];

/// Stripe's metadata limits: keys per object, characters per key and per value.
const METADATA_KEYS: usize = 50;
const METADATA_KEY_CHARS: usize = 40;
const METADATA_VALUE_CHARS: usize = 500;

impl StripeWrite {
    fn update(&self) -> bool {
        self.0 == Action::StripeUpdate
    }

    /// What the object needs and refuses, for a step that names a writable object.
    fn validate_fields(&self, object: &str, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        let fields = step.object("fields");
        if !self.update()
            && let Some((_, required)) = REQUIRED_ON_CREATE.iter().find(|(o, _)| *o == object)
        {
            for name in *required {
                if !fields.is_some_and(|f| f.contains_key(*name)) {
                    problems.push(ValidationError::new(
                        format!("fields.{name}"),
                        format!(
                            "Stripe needs {name} to create a {object}, e.g. {}",
                            example(name)
                        ),
                    ));
                }
            }
            match fields.and_then(|f| f.get("items")) {
                Some(Value::Array(items)) if items.is_empty() => {
                    problems.push(ValidationError::new(
                        "fields.items",
                        "a subscription needs at least one item",
                    ));
                }
                Some(Value::Array(_)) | None => {}
                Some(Value::String(source)) if is_template(source) => {}
                // A list made per item (`for_each` and `each`).
                Some(Value::Object(map)) if crate::flow::each::list_template(map).is_some() => {}
                Some(_) => problems.push(ValidationError::new(
                    "fields.items",
                    format!("must be a list of items, e.g. {}", example("items")),
                )),
            }
        }
        if let Some(metadata) = fields.and_then(|f| f.get("metadata")) {
            problems.extend(metadata_problems(metadata, false));
        }
    }
}

fn example(field: &str) -> &'static str {
    match field {
        "customer" => "{{ steps.customer.id }}",
        "items" => "[{\"price\": \"price_…\", \"quantity\": 1}]",
        _ => "a value",
    }
}

impl StepKind for StripeWrite {
    fn action(&self) -> Action {
        self.0
    }

    fn objects(&self) -> Option<Vec<&'static str>> {
        Some(crate::stripe::client::writable(self.update()))
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        let action = self.0;
        if let Some(object) = step.text("object") {
            if write_path(object, self.update()).is_some() {
                self.validate_fields(object, step, problems);
            } else {
                let verb = if self.update() { "changes" } else { "makes" };
                problems.push(ValidationError::new(
                    "object",
                    format!(
                        "{action} {verb} one of {}, not '{object}'",
                        writable(self.update()).join(", ")
                    ),
                ));
            }
        }
        if self.update() && !step.has_text("record_id") {
            problems.push(ValidationError::new(
                "record_id",
                "stripe.update needs the id of the object to change, e.g. {{ steps.customer.id }}",
            ));
        }
        if !self.update() && step.has("record_id") {
            problems.push(ValidationError::new(
                "record_id",
                "stripe.create makes a new object and takes no record_id; use stripe.update to change one",
            ));
        }
        for key in REFUSED_KEYS {
            if step.has(key) {
                problems.push(ValidationError::new(
                    *key,
                    format!(
                        "{action} steps take object, fields, {}expand and when",
                        if self.update() { "record_id, " } else { "" }
                    ),
                ));
            }
        }
    }

    fn render(
        &self,
        _step: &Step,
        op: &mut Operation,
        _: &dyn Templates,
    ) -> Result<(), ValidationError> {
        if self.update() {
            match op.record_id.as_deref() {
                None => {
                    return Err(ValidationError::new(
                        "record_id",
                        "rendered empty; there is no Stripe object to update",
                    ));
                }
                Some(id) if !is_stripe_id(id) => {
                    return Err(ValidationError::new(
                        "record_id",
                        format!("rendered '{id}', which is not a Stripe object id"),
                    ));
                }
                Some(_) => {}
            }
        } else if let Some((_, required)) = REQUIRED_ON_CREATE.iter().find(|(o, _)| *o == op.object)
        {
            for name in *required {
                let empty = match op.fields.get(*name) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(text)) => text.trim().is_empty(),
                    Some(Value::Array(items)) => items.is_empty(),
                    Some(_) => false,
                };
                if empty {
                    return Err(ValidationError::new(
                        format!("fields.{name}"),
                        format!(
                            "rendered empty; Stripe needs {name} to create a {}",
                            op.object
                        ),
                    ));
                }
            }
        }
        match rendered_metadata_problem(&op.fields) {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Stripe
    }

    /// One POST to Stripe. Failures are classified like CRM errors; the client already waited
    /// out Stripe's rate limits, so one that still stands is Stripe's trouble now, and a
    /// conflict with a concurrent request of the same key is worth retrying.
    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move { (self.write(&cx).await, Trail::default()) })
    }
}

impl StripeWrite {
    async fn write(&self, cx: &Exec<'_>) -> Result<Done, CrmError> {
        let op = cx.op;
        if let Some(problem) = rendered_metadata_problem(&op.fields) {
            return Err(CrmError::new(ErrorKind::Invalid, problem.to_string()));
        }
        let path = self.path(op)?;
        let form = form_pairs(&params(op));
        let idempotency_key = write_idempotency_key(cx.delivery_id, &op.step);
        let key = cx
            .stripe
            .key_for(cx.account)
            .await
            .map_err(|e| write_error(&e))?;
        let object = cx
            .stripe
            .client
            .post(&key, &path, &form, &idempotency_key)
            .await
            .map_err(|e| write_error(&e))?;
        let record_id = object
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| op.record_id.clone())
            .unwrap_or_default();
        Ok(Done::Wrote(CrmOutcome {
            record_id,
            warnings: Vec::new(),
            response: Some(object),
        }))
    }

    /// The path the operation posts to: the object's, with `/<id>` for an update.
    fn path(&self, op: &Operation) -> Result<String, CrmError> {
        let Some(path) = write_path(&op.object, self.update()) else {
            return Err(CrmError::new(
                ErrorKind::Permanent,
                format!(
                    "{} writes one of {}, not '{}'",
                    self.0,
                    writable(self.update()).join(", "),
                    op.object
                ),
            ));
        };
        if !self.update() {
            return Ok(path.to_string());
        }
        match op.record_id.as_deref() {
            Some(id) if is_stripe_id(id) => Ok(format!("{path}/{id}")),
            other => Err(CrmError::new(
                ErrorKind::Invalid,
                format!(
                    "record_id: '{}' is not a Stripe object id",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
}

/// The parameters sent: the step's fields, and its `expand` list.
fn params(op: &Operation) -> Map<String, Value> {
    let mut params = op.fields.clone();
    if !op.expand.is_empty() && !params.contains_key("expand") {
        params.insert("expand".into(), Value::from(op.expand.clone()));
    }
    params
}

/// Text that can stand in a request path as one segment.
fn is_stripe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A failed write as the delivery's error. A key reused with other values is final: Stripe
/// answers every retry the same way.
fn write_error(error: &StripeError) -> CrmError {
    if error.error_type == "idempotency_error" {
        let mut crm = CrmError::new(
            ErrorKind::Permanent,
            format!(
                "{error} — this event and step were sent to Stripe before with different values (the same Idempotency-Key); Stripe keeps the first request's answer for 24 hours, so make the step's fields render the same for the same event, or replay the event after that"
            ),
        );
        crm.vendor_status = error.status;
        return crm;
    }
    let mut crm = error.to_crm_error();
    if crm.kind == ErrorKind::RateLimited || error.status == Some(409) {
        crm.kind = ErrorKind::Transient;
    }
    crm
}

/// The first broken metadata rule in rendered fields, if any.
fn rendered_metadata_problem(fields: &Map<String, Value>) -> Option<ValidationError> {
    fields
        .get("metadata")
        .and_then(|metadata| metadata_problems(metadata, true).into_iter().next())
}

/// Stripe's metadata rules: an object of at most 50 keys, each at most 40 characters without
/// `[` or `]`, with text values of at most 500 characters; empty text clears (one key, or every
/// key). Before rendering (`rendered` false) templates are not judged, only literals.
fn metadata_problems(metadata: &Value, rendered: bool) -> Vec<ValidationError> {
    let whole = |message: String| vec![ValidationError::new("fields.metadata", message)];
    let entries = match metadata {
        Value::Object(entries) => entries,
        Value::String(text) if text.is_empty() || (!rendered && is_template(text)) => {
            return Vec::new();
        }
        Value::Null => return Vec::new(),
        _ => {
            return whole(
                "must be an object of keys to text values (or empty text, which clears every key)"
                    .into(),
            );
        }
    };
    let mut problems = Vec::new();
    if entries.len() > METADATA_KEYS {
        problems.extend(whole(format!(
            "Stripe keeps at most {METADATA_KEYS} metadata keys; this sets {}",
            entries.len()
        )));
    }
    for (key, value) in entries {
        let at = format!("fields.metadata.{key}");
        let chars = key.chars().count();
        if chars > METADATA_KEY_CHARS {
            problems.push(ValidationError::new(
                &at,
                format!("metadata keys are at most {METADATA_KEY_CHARS} characters; this one has {chars}"),
            ));
        }
        if key.contains(['[', ']']) {
            problems.push(ValidationError::new(
                &at,
                "metadata keys must not contain [ or ]",
            ));
        }
        let text = match value {
            Value::String(text) if !rendered && is_template(text) => continue,
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            Value::Array(_) | Value::Object(_) => {
                problems.push(ValidationError::new(
                    &at,
                    "metadata values are text, not lists or objects",
                ));
                continue;
            }
        };
        let chars = text.chars().count();
        if chars > METADATA_VALUE_CHARS {
            problems.push(ValidationError::new(
                &at,
                format!("metadata values are at most {METADATA_VALUE_CHARS} characters; this one has {chars}"),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
