//! One event through one flow without doing anything: the same pure evaluation a preview makes
//! (the trigger as the worker checks it, `for_each`, `when`, each step rendered, a failed
//! `assert` stopping the flow), except that a later step sees what the flow's deliveries
//! recorded for this event — the record ids and answers, a `stripe.retrieve` step's object,
//! the `refetch` object — as the worker would on a re-run. A step that never ran is, as in a
//! preview, the placeholder `{{steps.<id>.id}}`. Nothing is fetched, written or called.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tributary_worker::flow::{
    self, FlowError, FlowSpec, Operation, RenderContext, ValidationError,
};
use tributary_worker::steps;

/// What one finished delivery gave later steps.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub record_id: Option<String>,
    pub answer: Option<Value>,
}

/// What the flow's deliveries recorded for one event.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Each finished delivery's result, by its step name (`contact`, `lines[li_1]`).
    pub outcomes: HashMap<String, Outcome>,
    /// The operation each delivery sent (its latest attempt's), by step name, in the order the
    /// deliveries were made.
    pub sent: Vec<(String, Value)>,
    /// When the flow first ran on the event: the clock its templates saw.
    pub ran_at: Option<DateTime<Utc>>,
    /// The object a `refetch` flow read from Stripe for the event.
    pub refetched: Option<Value>,
}

/// Where an event came from, for the trigger's source and echo rules.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: String,
    /// The Stripe account, or for a CRM event the connection it came through.
    pub account: String,
}

/// What a flow would send for an event.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub matched: bool,
    /// In order, up to the first step that fails.
    pub operations: Vec<Operation>,
    /// Why it cannot run to the end, by path.
    pub error: Option<ValidationError>,
}

fn problem(error: FlowError) -> ValidationError {
    ValidationError::new(error.path(), error.message())
}

/// Whether the worker would run `spec` on the event: its source, its connection for a CRM
/// event, echoes of Tributary's own writes, then the trigger's types and filter.
fn listens(
    spec: &FlowSpec,
    event: &Value,
    origin: &Origin,
    settings: &Value,
) -> Result<bool, FlowError> {
    let from_here = spec.trigger.source == origin.source
        && (origin.source == "stripe" || spec.connection_id == origin.account)
        && (spec.trigger.echoes || !tributary_worker::inbound::is_echo(event));
    Ok(from_here && flow::trigger_matches_with(spec, event, settings.clone())?)
}

/// `spec` run on `event` as recorded.
pub fn run(
    spec: &FlowSpec,
    event: &Value,
    origin: &Origin,
    settings: &Value,
    recorded: &Recorded,
) -> Run {
    let mut event = event.clone();
    if spec.refetch
        && origin.source == "stripe"
        && let (Some(object), Some(data)) = (&recorded.refetched, event.get_mut("data"))
    {
        data["object"] = object.clone();
    }
    let mut out = Run::default();
    match listens(spec, &event, origin, settings) {
        Ok(matched) => out.matched = matched,
        Err(error) => {
            out.error = Some(problem(error));
            return out;
        }
    }
    if !out.matched {
        return out;
    }
    let mut ctx = RenderContext {
        event,
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: settings.clone(),
        now: recorded.ran_at.unwrap_or_else(tributary_worker::now),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    };
    if let Err(error) = steps_of(spec, &mut ctx, recorded, &mut out.operations) {
        out.error = Some(problem(error));
    }
    out
}

/// The steps in order, each rendered once (or once per item); stops at a failed `assert`.
fn steps_of(
    spec: &FlowSpec,
    ctx: &mut RenderContext,
    recorded: &Recorded,
    operations: &mut Vec<Operation>,
) -> Result<(), FlowError> {
    for (i, step) in spec.steps.iter().enumerate() {
        let runs = match flow::loop_items(step, ctx).map_err(|e| e.at_index(i))? {
            None => vec![(step.id.clone(), String::new(), None)],
            Some(items) => items
                .into_iter()
                .map(|(key, item)| (format!("{}[{key}]", step.id), key, Some(item)))
                .collect(),
        };
        let mut done = Vec::new();
        for (name, key, item) in runs {
            ctx.item = item;
            let rendered = flow::render_step(step, ctx).map_err(|e| e.at_index(i));
            ctx.item = None;
            let Some(mut operation) = rendered? else {
                continue;
            };
            let outcome = recorded.outcomes.get(&name).cloned().unwrap_or(Outcome {
                record_id: Some(format!("{{{{steps.{name}.id}}}}")),
                answer: None,
            });
            if step.for_each.is_some() {
                let read_as = if step.action.is_stripe() {
                    "object"
                } else {
                    "response"
                };
                done.push(json!({"key": key, "id": outcome.record_id, read_as: outcome.answer}));
                operation.step = name;
            } else {
                ctx.finished(step, outcome.record_id, outcome.answer);
            }
            let stops = steps::kind(operation.action).stops(&operation);
            operations.push(operation);
            if stops {
                return Ok(());
            }
        }
        if step.for_each.is_some() {
            ctx.items.insert(step.id.clone(), done);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: Value) -> FlowSpec {
        flow::parse_flow(&json!({
            "name": "t", "connection_id": "c", "trigger": {"events": ["charge.succeeded"]},
            "steps": [
                {"id": "contact", "action": "upsert", "object": "contacts",
                 "match": {"email": "{{ object.email }}"}, "fields": fields},
                {"id": "deal", "action": "create", "object": "deals",
                 "fields": {"amount": "{{ object.amount }}"},
                 "associate": [{"object": "contacts", "id": "{{ steps.contact.id }}"}]}]
        }))
        .unwrap()
    }

    fn stripe() -> Origin {
        Origin {
            source: "stripe".into(),
            account: "acct".into(),
        }
    }

    #[test]
    fn later_steps_see_recorded_ids_else_placeholders() {
        let event = json!({"type": "charge.succeeded", "created": 1,
                           "data": {"object": {"email": "a@b.co", "amount": 5}}});
        let flow = spec(json!({"tier": "gold"}));
        let fresh = run(&flow, &event, &stripe(), &json!({}), &Recorded::default());
        assert!(fresh.matched && fresh.error.is_none());
        assert_eq!(fresh.operations[1].associate[0].id, "{{steps.contact.id}}");
        let mut recorded = Recorded::default();
        recorded.outcomes.insert(
            "contact".into(),
            Outcome {
                record_id: Some("rec_1".into()),
                answer: None,
            },
        );
        let again = run(&flow, &event, &stripe(), &json!({}), &recorded);
        assert_eq!(again.operations[1].associate[0].id, "rec_1");
    }

    #[test]
    fn other_types_sources_and_failures() {
        let flow = spec(json!({}));
        let other = json!({"type": "invoice.paid", "data": {"object": {}}});
        assert!(!run(&flow, &other, &stripe(), &json!({}), &Recorded::default()).matched);
        let charge = json!({"type": "charge.succeeded", "data": {"object": {"email": "a@b.co"}}});
        let crm = Origin {
            source: "hubspot".into(),
            account: "c".into(),
        };
        assert!(!run(&flow, &charge, &crm, &json!({}), &Recorded::default()).matched);
        // An upsert whose match renders empty cannot run: the error names the step.
        let empty = json!({"type": "charge.succeeded", "data": {"object": {"email": ""}}});
        let failed = run(&flow, &empty, &stripe(), &json!({}), &Recorded::default());
        assert!(failed.operations.is_empty());
        assert!(failed.error.unwrap().path.starts_with("steps[0]"));
    }
}
