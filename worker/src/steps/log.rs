//! `log`: records a message (a template) on the step's delivery, where the event's history
//! shows it; later steps read it as `steps.<id>.response.message`. Sends nothing anywhere.

use serde_json::{Value, json};

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::crm::{BoxFuture, CrmError, CrmOutcome, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};

pub struct Log;

impl StepKind for Log {
    fn action(&self) -> Action {
        Action::Log
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&["id", "action", "object", "message", "when"])
    }

    fn needs_object(&self) -> bool {
        false
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if !step.has("message") {
            problems.push(ValidationError::new(
                "message",
                "a log step needs the message to record, e.g. Paid {{ object.amount }}",
            ));
        }
    }

    fn render(
        &self,
        step: &Step,
        op: &mut Operation,
        templates: &dyn Templates,
    ) -> Result<(), ValidationError> {
        let message = templates
            .text(step.message.as_deref().unwrap_or_default())
            .map_err(|message| ValidationError::new("message", message))?
            .unwrap_or_default();
        op.fields.insert("message".into(), Value::String(message));
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Here
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let message = cx.op.fields.get("message").cloned().unwrap_or_default();
            let outcome = CrmOutcome {
                response: Some(json!({ "message": message })),
                ..CrmOutcome::new("")
            };
            (Ok(Done::Wrote(outcome)), Trail::default())
        })
    }
}
