//! `stripe.retrieve`: reads one Stripe object with the event's account key, or a whole list
//! (`balance_transactions` of the payout `record_id` names, `customers` of an email,
//! `customer_search` of a search query: `{data: [...], has_more}`); later steps see it as
//! `steps.<id>.object`. Writes nothing, needs no connection.

use serde_json::Value;

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::crm::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};
use crate::stripe::client::{LISTABLE, RETRIEVABLE, list_path, object_path};

pub struct StripeRetrieve;

impl StepKind for StripeRetrieve {
    fn action(&self) -> Action {
        Action::StripeRetrieve
    }

    fn objects(&self) -> Option<Vec<&'static str>> {
        let single = RETRIEVABLE.iter().map(|(name, _)| *name);
        Some(
            single
                .chain(LISTABLE.iter().map(|(name, _, _)| *name))
                .collect(),
        )
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        let object = step.text("object");
        let list = object.and_then(list_path);
        if let Some(object) = object
            && object_path(object).is_none()
            && list.is_none()
        {
            let known: Vec<&str> = RETRIEVABLE.iter().map(|(name, _)| *name).collect();
            let lists: Vec<String> = LISTABLE
                .iter()
                .map(|(name, _, filter)| format!("{name} (by the {filter} record_id names)"))
                .collect();
            problems.push(ValidationError::new(
                "object",
                format!(
                    "stripe.retrieve fetches one of {}, or one of the lists {}, not '{object}'",
                    known.join(", "),
                    lists.join(", ")
                ),
            ));
        }
        if !step.has_text("record_id") {
            let message = match list {
                Some((_, filter)) => format!(
                    "stripe.retrieve of a list needs the {filter} it lists by, e.g. {}",
                    list_example(filter)
                ),
                None => "stripe.retrieve needs the object's id, e.g. {{ object.customer }}".into(),
            };
            problems.push(ValidationError::new("record_id", message));
        }
        if list.is_some() {
            list_expands(step, problems);
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

/// What a list's `record_id` usually is.
fn list_example(filter: &str) -> &'static str {
    match filter {
        "email" => "{{ steps.contact.response.records[0].Email }}",
        "query" => "metadata['salesforce_account_id']:'{{ record.AccountId }}'",
        _ => "{{ object.id }}",
    }
}

/// A list's `expand` names fields of its items, `data.<field>`, as Stripe's lists take them.
fn list_expands(step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
    let Some(expand) = step.map.get("expand").and_then(Value::as_array) else {
        return;
    };
    for (i, path) in expand.iter().enumerate() {
        if let Some(path) = path.as_str()
            && !path.starts_with("data.")
        {
            problems.push(ValidationError::new(
                format!("expand[{i}]"),
                format!("a list expands fields of its items: data.{path}, not {path}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn problems(step: serde_json::Value) -> Vec<String> {
        let flow = json!({"name": "f", "connection_id": "conn_1",
                          "trigger": {"events": ["payout.paid"]}, "steps": [step]});
        crate::flow::validate(&flow)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_payouts_balance_transactions_are_a_list_to_retrieve() {
        let list = json!({"id": "settled", "action": "stripe.retrieve",
                          "object": "balance_transactions", "record_id": "{{ object.id }}",
                          "expand": ["data.source"]});
        assert_eq!(problems(list.clone()), Vec::<String>::new());
        for object in ["payout", "balance_transaction"] {
            let single = json!({"id": "one", "action": "stripe.retrieve", "object": object,
                                "record_id": "{{ object.id }}"});
            assert_eq!(problems(single), Vec::<String>::new(), "{object}");
        }
        let mut unfiltered = list.clone();
        unfiltered.as_object_mut().unwrap().remove("record_id");
        assert_eq!(
            problems(unfiltered),
            [
                "steps[0].record_id: stripe.retrieve of a list needs the payout it lists by, e.g. {{ object.id }}"
            ]
        );
        let mut flat = list;
        flat["expand"] = json!(["data.source", "source"]);
        assert_eq!(
            problems(flat),
            ["steps[0].expand[1]: a list expands fields of its items: data.source, not source"]
        );
        let refund = json!({"id": "r", "action": "stripe.retrieve", "object": "refund",
                            "record_id": "{{ object.id }}"});
        let message = problems(refund).join("\n");
        assert!(
            message.contains(
                "or one of the lists balance_transactions (by the payout record_id names), customers (by the email record_id names), customer_search (by the query record_id names), not 'refund'"
            ),
            "{message}"
        );
    }
}
