//! `assert`: stops the flow for this event unless `check` holds; the step is recorded as
//! skipped with its `message`.

use serde_json::Value;

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::crm::{BoxFuture, CrmError, CrmOutcome, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};

pub struct Assert;

/// How the reason of an assert that stopped its flow begins; the engine reads it so a re-run
/// of the event stops there again.
pub const STOPPED: &str = "assertion: ";

/// Whether the rendered check held.
fn passed(op: &Operation) -> bool {
    op.fields.get("passed") == Some(&Value::Bool(true))
}

impl StepKind for Assert {
    fn action(&self) -> Action {
        Action::Assert
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&["id", "action", "object", "check", "message", "when"])
    }

    fn needs_object(&self) -> bool {
        false
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if !step.has("check") {
            problems.push(ValidationError::new(
                "check",
                "an assert step needs the expression that must hold, e.g. object.currency == 'usd'",
            ));
        }
    }

    /// Evaluates the check now, so preview shows whether the flow would stop here.
    fn render(
        &self,
        step: &Step,
        op: &mut Operation,
        templates: &dyn Templates,
    ) -> Result<(), ValidationError> {
        let check = step.check.as_deref().unwrap_or("false");
        let passed = templates
            .condition(check)
            .map_err(|message| ValidationError::new("check", message))?;
        let message = match step.message.as_deref() {
            Some(source) => templates
                .text(source)
                .map_err(|message| ValidationError::new("message", message))?,
            None => None,
        }
        .unwrap_or_else(|| format!("the check failed: {check}"));
        op.fields.insert("passed".into(), Value::Bool(passed));
        op.fields.insert("message".into(), Value::String(message));
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Here
    }

    fn stops(&self, op: &Operation) -> bool {
        !passed(op)
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let done = if passed(cx.op) {
                Done::Wrote(CrmOutcome::new(""))
            } else {
                let message = cx
                    .op
                    .fields
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the check failed");
                Done::Stopped(format!("{STOPPED}{message}"))
            };
            (Ok(done), Trail::default())
        })
    }
}
