//! `find`: reads the records of `object` in the flow's CRM whose fields equal every `match`
//! value, with their `select` fields; writes nothing. Later steps read the first record's id
//! as `steps.<id>.id` and the records as `steps.<id>.response.records` (at most 100, each its
//! `id` and the selected fields; `response.count`). Finding none is no error.

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates, Wants};
use crate::crm::{self, BoxFuture, CrmError, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};

pub struct Find;

impl StepKind for Find {
    fn action(&self) -> Action {
        Action::Find
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&["id", "action", "object", "match", "select", "when"])
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if !step.has_entries("match") {
            problems.push(ValidationError::new(
                "match",
                "a find step needs at least one match field to find records by, e.g. {\"Email\": \"{{ object.email }}\"}",
            ));
        }
        if let Some(select) = step.map.get("select") {
            let names = select.as_array().is_some_and(|items| {
                items
                    .iter()
                    .all(|item| item.as_str().is_some_and(|name| !name.trim().is_empty()))
            });
            if !names {
                problems.push(ValidationError::new(
                    "select",
                    "must be a list of field names to read, e.g. [\"Name\", \"Email\"]",
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
        if op.match_fields.is_empty() {
            return Err(ValidationError::new(
                "match",
                "every match value rendered empty; nothing can be found by it",
            ));
        }
        // Each field once, in the order given.
        let mut seen: Vec<String> = Vec::new();
        op.select.retain(|name| {
            let fresh = !seen.iter().any(|s| s.eq_ignore_ascii_case(name));
            seen.push(name.clone());
            fresh
        });
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Connection(Wants::Crm)
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let connection = match cx.connection() {
                Ok(connection) => connection,
                Err(error) => return (Err(error), Trail::default()),
            };
            let (result, trail) = crm::find(cx.connector, connection, cx.op).await;
            (result.map(Done::Wrote), trail)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::flow::{FlowError, RenderContext, Step, render_step};

    fn errors(steps: Value) -> Vec<(String, String)> {
        let flow = json!({
            "name": "Find", "connection_id": "0190c0de-0000-7000-8000-000000000001",
            "trigger": {"events": ["charge.succeeded"]}, "steps": steps
        });
        crate::flow::validate(&flow)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn a_find_needs_match_takes_a_list_of_names_and_refuses_writes_keys() {
        let valid = json!([{"id": "known", "action": "find", "object": "Contact",
            "match": {"Email": "{{ object.billing_details.email }}"},
            "select": ["Name", "Account.Name"], "when": "object.paid"}]);
        assert_eq!(errors(valid), vec![]);

        let found = errors(
            json!([{"id": "known", "action": "find", "object": "Contact",
            "select": "Name", "fields": {"Name": "x"}}]),
        );
        let mut paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            ["steps[0].fields", "steps[0].match", "steps[0].select"],
            "{found:?}"
        );
        let blank = errors(
            json!([{"id": "known", "action": "find", "object": "Contact",
            "match": {"Email": "a@b.c"}, "select": ["Name", " "]}]),
        );
        assert_eq!(blank.len(), 1, "{blank:?}");
        assert_eq!(blank[0].0, "steps[0].select");
        let no_object = errors(json!([{"id": "known", "action": "find",
            "match": {"Email": "a@b.c"}}]));
        assert_eq!(no_object[0].0, "steps[0].object", "{no_object:?}");
    }

    fn step(value: Value) -> Step {
        serde_json::from_value(value).expect("a step")
    }

    #[test]
    fn rendering_needs_a_match_value_and_selects_each_field_once() {
        let ctx = RenderContext {
            event: json!({"id": "evt_1", "type": "charge.succeeded",
                          "data": {"object": {"id": "ch_1", "email": "ada@example.com"}}}),
            settings: json!({}),
            ..Default::default()
        };
        let found = step(json!({"id": "known", "action": "find", "object": "Contact",
            "match": {"Email": "{{ object.email }}", "Phone": "{{ object.phone }}"},
            "select": ["Name", "{{ 'Title' }}", "name", "Name"]}));
        let op = render_step(&found, &ctx).unwrap().unwrap();
        assert_eq!(
            op.match_fields,
            *json!({"Email": "ada@example.com"}).as_object().unwrap()
        );
        assert_eq!(op.select, ["Name", "Title"]);

        let nothing = step(json!({"id": "known", "action": "find", "object": "Contact",
            "match": {"Phone": "{{ object.phone }}"}}));
        match render_step(&nothing, &ctx) {
            Err(FlowError::Step { field, message, .. }) => {
                assert_eq!(field, "match");
                assert!(message.contains("nothing can be found"), "{message}");
            }
            other => panic!("expected a step error, got {other:?}"),
        }
    }
}
