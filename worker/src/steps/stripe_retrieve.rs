//! `stripe.retrieve`: reads one Stripe object with the event's account key; later steps see it
//! as `steps.<id>.object`. Writes nothing, needs no connection.

use serde_json::Value;

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::crm::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};
use crate::stripe::client::{RETRIEVABLE, object_path};

pub struct StripeRetrieve;

impl StepKind for StripeRetrieve {
    fn action(&self) -> Action {
        Action::StripeRetrieve
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if let Some(object) = step.text("object")
            && object_path(object).is_none()
        {
            let known: Vec<&str> = RETRIEVABLE.iter().map(|(name, _)| *name).collect();
            problems.push(ValidationError::new(
                "object",
                format!(
                    "stripe.retrieve fetches one of {}, not '{object}'",
                    known.join(", ")
                ),
            ));
        }
        if !step.has_text("record_id") {
            problems.push(ValidationError::new(
                "record_id",
                "stripe.retrieve needs the object's id, e.g. {{ object.customer }}",
            ));
        }
        for key in [
            "match",
            "fields",
            "fallback_fields",
            "associate",
            "method",
            "path",
        ] {
            if step.has(key) {
                problems.push(ValidationError::new(
                    key,
                    "stripe.retrieve only reads: it takes object, record_id, expand and when",
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
        if op.record_id.is_none() {
            return Err(ValidationError::new(
                "record_id",
                "rendered empty; there is no Stripe object to retrieve",
            ));
        }
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Stripe
    }

    /// Failures are classified like CRM errors: a missing object, key or permission is final
    /// with a message saying what to fix; Stripe's own trouble is retried. The client already
    /// waited out Stripe's rate limits, so one that still stands is Stripe's trouble now.
    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let op = cx.op;
            let id = op.record_id.clone().unwrap_or_default();
            let result = cx
                .stripe
                .retrieve(cx.account, &op.object, &id, &op.expand)
                .await;
            let result = match result {
                Ok(object) => {
                    let object_id = object
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or(&id)
                        .to_string();
                    Ok(Done::Wrote(CrmOutcome {
                        record_id: object_id,
                        warnings: Vec::new(),
                        response: Some(object),
                    }))
                }
                Err(stripe_error) => {
                    let mut error = stripe_error.to_crm_error();
                    if error.kind == ErrorKind::RateLimited {
                        error.kind = ErrorKind::Transient;
                    }
                    Err(error)
                }
            };
            (result, Trail::default())
        })
    }
}
