//! `email`: a message sent through the step's own `smtp` connection (`actions::email` speaks
//! SMTP), at most once per event and step whatever the retries.

use entity::connections;
use serde_json::Value;

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates, Wants};
use crate::actions::email as smtp;
use crate::crm::{BoxFuture, CrmError, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};

/// The parts of an email step's `fields`.
pub const EMAIL_FIELDS: &[&str] = &["to", "cc", "bcc", "reply_to", "subject", "text", "html"];

pub struct Email;

impl StepKind for Email {
    fn action(&self) -> Action {
        Action::Email
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&["id", "action", "object", "connection_id", "fields", "when"])
    }

    fn needs_object(&self) -> bool {
        false
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if !step.has("connection_id") {
            problems.push(ValidationError::new(
                "connection_id",
                "an email step needs its smtp connection's id",
            ));
        }
        let fields = step.object("fields");
        for key in fields.into_iter().flat_map(|f| f.keys()) {
            if !EMAIL_FIELDS.contains(&key.as_str()) {
                problems.push(ValidationError::new(
                    format!("fields.{key}"),
                    format!("an email has {}", EMAIL_FIELDS.join(", ")),
                ));
            }
        }
        let has = |key: &str| fields.is_some_and(|f| f.contains_key(key));
        for key in ["to", "subject"] {
            if !has(key) {
                problems.push(ValidationError::new(
                    format!("fields.{key}"),
                    "is required for an email",
                ));
            }
        }
        if !has("text") && !has("html") {
            problems.push(ValidationError::new(
                "fields.text",
                "an email needs a text or html body (or both)",
            ));
        }
    }

    fn render(
        &self,
        _step: &Step,
        op: &mut Operation,
        _: &dyn Templates,
    ) -> Result<(), ValidationError> {
        let text = |key: &str| {
            op.fields
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|t| !t.trim().is_empty())
        };
        if !text("to") {
            return Err(ValidationError::new(
                "fields.to",
                "rendered empty; there is no one to send the email to",
            ));
        }
        if !text("text") && !text("html") {
            return Err(ValidationError::new(
                "fields.text",
                "text and html both rendered empty; the email would have no body",
            ));
        }
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Connection(Wants::Provider {
            provider: "smtp",
            named: "an smtp connection",
        })
    }

    /// The Message-ID is the delivery's own, so every attempt sends the same message.
    fn prepare(&self, op: &mut Operation, delivery_id: &str, connection: &connections::Model) {
        op.record_id = Some(smtp::message_id(delivery_id, connection));
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let result = match cx.connection() {
                Ok(connection) => smtp::send(cx.connector, connection, cx.op)
                    .await
                    .map(Done::Wrote),
                Err(error) => Err(error),
            };
            (result, Trail::default())
        })
    }
}
