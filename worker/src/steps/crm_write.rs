//! `upsert`, `create` and `update`: a record written to the flow's CRM connection by its
//! provider's adapter (the sandbox's inside the engine's transaction).

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates, Wants};
use crate::crm::{self, BoxFuture, CrmError, Trail, Write};
use crate::flow::{Action, Operation, Step, ValidationError};

/// One of the three CRM writes.
pub struct CrmWrite(pub Write);

pub const UPSERT: CrmWrite = CrmWrite(Write::Upsert);
pub const CREATE: CrmWrite = CrmWrite(Write::Create);
pub const UPDATE: CrmWrite = CrmWrite(Write::Update);

impl StepKind for CrmWrite {
    fn action(&self) -> Action {
        match self.0 {
            Write::Upsert => Action::Upsert,
            Write::Create => Action::Create,
            Write::Update => Action::Update,
        }
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        let has_match = step.has_entries("match");
        let has_fields = step.has_entries("fields");
        let only_update = || ValidationError::new("record_id", "only update steps use record_id");
        match self.0 {
            Write::Upsert => {
                if !has_match {
                    problems.push(ValidationError::new(
                        "match",
                        "an upsert needs at least one match field to find the record by",
                    ));
                }
                if step.has("record_id") {
                    problems.push(only_update());
                }
            }
            Write::Update => {
                if !step.has_text("record_id") && !has_match {
                    problems.push(ValidationError::new(
                        "record_id",
                        "an update needs a record_id or match fields to find the record by",
                    ));
                }
                if !has_fields {
                    problems.push(ValidationError::new(
                        "fields",
                        "an update needs at least one field to write",
                    ));
                }
            }
            Write::Create => {
                if has_match {
                    problems.push(ValidationError::new(
                        "match",
                        "create always makes a new record and does not look one up; put these values in fields",
                    ));
                }
                if step.has("record_id") {
                    problems.push(only_update());
                }
                if !has_fields {
                    problems.push(ValidationError::new(
                        "fields",
                        "a create needs at least one field to write",
                    ));
                }
            }
        }
    }

    fn render(
        &self,
        _step: &Step,
        op: &mut Operation,
        _: &dyn Templates,
    ) -> Result<(), ValidationError> {
        match self.0 {
            Write::Upsert if op.match_fields.is_empty() => Err(ValidationError::new(
                "match",
                "every match value rendered empty; an upsert without a key would create a duplicate",
            )),
            Write::Update if op.record_id.is_none() && op.match_fields.is_empty() => {
                Err(ValidationError::new(
                    "record_id",
                    "the record id and every match value rendered empty; there is nothing to find the record by",
                ))
            }
            _ => Ok(()),
        }
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Connection(Wants::Crm)
    }

    fn write(&self) -> Option<Write> {
        Some(self.0)
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let connection = match cx.connection() {
                Ok(connection) => connection,
                Err(error) => return (Err(error), Trail::default()),
            };
            let (result, trail) =
                crm::apply(cx.connector, connection, self.0, cx.op, cx.linked).await;
            (result.map(Done::Wrote), trail)
        })
    }
}
