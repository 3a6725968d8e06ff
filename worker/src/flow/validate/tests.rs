use serde_json::json;

use super::*;
use crate::flow::{Action, parse_flow, validate};

/// The design document's example flow.
fn example() -> Value {
    json!({
        "name": "Paid charges to HubSpot",
        "connection_id": "0190c0de-0000-7000-8000-000000000001",
        "enabled": true,
        "trigger": {"events": ["charge.succeeded"], "filter": "object.currency == 'usd'"},
        "steps": [
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ object.billing_details.email | lower }}"},
             "fields": {
                 "firstname": "{{ object.billing_details.name | first_name }}",
                 "lastname": "{{ object.billing_details.name | last_name }}",
                 "last_charge_amount": "{{ object.amount | major_units(object.currency) }}"},
             "fallback_fields": ["email", "firstname", "lastname"]},
            {"id": "deal", "action": "upsert", "object": "deals",
             "match": {"stripe_charge_id": "{{ object.id }}"},
             "fields": {"dealname": "{{ object.metadata.deal_name | default('Stripe charge ' ~ object.id) }}",
                        "dealstage": "closedwon", "amount": "{{ object.amount | major_units(object.currency) }}"},
             "associate": [{"object": "contacts", "id": "{{ steps.contact.id }}"}]}
        ]
    })
}

fn errors_of(flow: &Value) -> Vec<(String, String)> {
    validate(flow)
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

fn single_error(flow: &Value) -> (String, String) {
    let errors = errors_of(flow);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().expect("one error")
}

#[test]
fn the_design_example_is_valid_and_round_trips() {
    let spec = parse_flow(&example()).expect("valid");
    assert_eq!(spec.steps.len(), 2);
    assert_eq!(spec.steps[0].action, Action::Upsert);
    assert!(spec.enabled);
    let stored = serde_json::to_value(&spec).expect("serializes");
    assert_eq!(parse_flow(&stored).expect("stored form is valid"), spec);
}

#[test]
fn enabled_defaults_to_true() {
    let mut flow = example();
    flow.as_object_mut().map(|m| m.remove("enabled"));
    assert!(parse_flow(&flow).expect("valid").enabled);
}

#[test]
fn unknown_filter_names_the_field_path() {
    let mut flow = example();
    flow["steps"][1]["fields"]["amount"] = json!("{{ object.amount | amout(object.currency) }}");
    let error = single_error(&flow);
    assert_eq!(
        error,
        (
            "steps[1].fields.amount".into(),
            "unknown filter 'amout'".into()
        )
    );
    let rendered = validate(&flow)[0].to_string();
    assert_eq!(rendered, "steps[1].fields.amount: unknown filter 'amout'");
}

#[test]
fn unknown_filters_and_tests_are_found_anywhere_in_templates() {
    let mut flow = example();
    flow["steps"][0]["fields"]["firstname"] =
        json!("Hi {% if object.x is definde %}{{ object.x | uper }}{% endif %} {{ '|fake' }}");
    flow["steps"][0]["when"] = json!("object.paid and object.email | bogus");
    flow["trigger"]["filter"] = json!("{{ object.currency | lower == 'usd' }}");
    let errors = errors_of(&flow);
    assert_eq!(
        errors,
        vec![
            (
                "steps[0].fields.firstname".to_string(),
                "unknown test 'definde'".to_string()
            ),
            (
                "steps[0].fields.firstname".to_string(),
                "unknown filter 'uper'".to_string()
            ),
            (
                "steps[0].when".to_string(),
                "unknown filter 'bogus'".to_string()
            ),
        ]
    );
}

#[test]
fn builtin_and_tributary_filters_are_known() {
    let mut flow = example();
    flow["steps"][0]["fields"]["all"] = json!(
        "{{ object.a | default('') | upper | lower | trim | replace('a', 'b') | length }} \
         {{ object.b | tojson }} {{ object.c | date }} {{ object.c | datetime }} \
         {{ object.c | add_days(1) }} {{ object.d | lookup({'x': 'y'}) }} {{ object | mrr }} \
         {{ object | arr }} {{ object.e | format_amount('usd') }} {{ object.f is number }}"
    );
    assert_eq!(errors_of(&flow), vec![]);
}

#[test]
fn syntax_errors_name_the_field_path() {
    let mut flow = example();
    flow["steps"][1]["fields"]["dealname"] = json!("{{ object.metadata.deal_name | default( }}");
    let (path, message) = single_error(&flow);
    assert_eq!(path, "steps[1].fields.dealname");
    assert!(message.starts_with("syntax error: "), "{message}");

    let mut flow = example();
    flow["steps"][0]["when"] = json!("object.paid ==");
    let (path, message) = single_error(&flow);
    assert_eq!(path, "steps[0].when");
    assert!(message.starts_with("syntax error: "), "{message}");
}

#[test]
fn duplicate_step_ids() {
    let mut flow = example();
    flow["steps"][1]["id"] = json!("contact");
    flow["steps"][1]["associate"] = json!([]);
    let (path, message) = single_error(&flow);
    assert_eq!(path, "steps[1].id");
    assert_eq!(
        message,
        "duplicate step id 'contact' (first used by steps[0])"
    );
}

#[test]
fn step_ids_must_be_identifiers() {
    let mut flow = example();
    flow["steps"][0]["id"] = json!("the-contact");
    flow["steps"][1]["associate"] = json!([]);
    let (path, message) = single_error(&flow);
    assert_eq!(path, "steps[0].id");
    assert!(message.starts_with("must be an identifier"), "{message}");
}

#[test]
fn upsert_needs_a_match() {
    let mut flow = example();
    flow["steps"][1].as_object_mut().map(|m| m.remove("match"));
    assert_eq!(
        single_error(&flow),
        (
            "steps[1].match".into(),
            "an upsert needs at least one match field to find the record by".into()
        )
    );
    flow["steps"][1]["match"] = json!({});
    assert_eq!(single_error(&flow).0, "steps[1].match");
}

#[test]
fn update_needs_a_record_id_or_match_and_create_refuses_both() {
    let mut flow = example();
    flow["steps"][1] =
        json!({"id": "deal", "action": "update", "object": "deals", "fields": {"a": 1}});
    assert_eq!(
        single_error(&flow),
        (
            "steps[1].record_id".into(),
            "an update needs a record_id or match fields to find the record by".into()
        )
    );
    flow["steps"][1]["record_id"] = json!("{{ object.metadata.hubspot_deal_id }}");
    assert_eq!(errors_of(&flow), vec![]);

    flow["steps"][1]["action"] = json!("create");
    assert_eq!(
        single_error(&flow),
        (
            "steps[1].record_id".into(),
            "only update steps use record_id".into()
        )
    );
    flow["steps"][1]
        .as_object_mut()
        .map(|m| m.remove("record_id"));
    flow["steps"][1]["match"] = json!({"x": "{{ object.id }}"});
    assert_eq!(single_error(&flow).0, "steps[1].match");
}

#[test]
fn unknown_keys_are_refused_with_a_hint() {
    let mut flow = example();
    let steps = flow.as_object_mut().and_then(|m| m.remove("steps"));
    flow["stpes"] = steps.unwrap_or_default();
    let errors = errors_of(&flow);
    assert_eq!(
        errors,
        vec![
            (
                "stpes".to_string(),
                "unknown field 'stpes'; did you mean 'steps'?".to_string()
            ),
            ("steps".to_string(), "is required".to_string()),
        ]
    );

    let mut flow = example();
    flow["steps"][0]["feilds"] = json!({});
    flow["trigger"]["event"] = json!([]);
    flow["steps"][1]["associate"][0]["type"] = json!("x");
    assert_eq!(
        errors_of(&flow),
        vec![
            (
                "trigger.event".to_string(),
                "unknown field 'event'; did you mean 'events'?".to_string()
            ),
            (
                "steps[0].feilds".to_string(),
                "unknown field 'feilds'; did you mean 'fields'?".to_string()
            ),
            (
                "steps[1].associate[0].type".to_string(),
                "unknown field 'type'; expected one of object, id".to_string()
            ),
        ]
    );
}

#[test]
fn forward_and_unknown_step_references() {
    let mut flow = example();
    flow["steps"][0]["fields"]["deal"] = json!("{{ steps.deal.id }}");
    flow["steps"][1]["associate"][0]["id"] = json!("{{ steps.contcat.id }}");
    flow["steps"][1]["fields"]["self"] = json!("{{ steps.deal.id }}");
    assert_eq!(
        errors_of(&flow),
        vec![
            (
                "steps[0].fields.deal".to_string(),
                "step 'deal' runs later (steps[1]); only earlier steps' ids are available"
                    .to_string()
            ),
            (
                "steps[1].fields.self".to_string(),
                "a step cannot use its own id (steps.deal)".to_string()
            ),
            (
                "steps[1].associate[0].id".to_string(),
                "unknown step 'contcat' in steps.contcat".to_string()
            ),
        ]
    );
}

#[test]
fn a_misspelled_event_type_is_refused_with_the_closest_one() {
    assert_eq!(
        unknown_event_type("charge.succeded").as_deref(),
        Some("'charge.succeded' is not a Stripe event type; did you mean 'charge.succeeded'?")
    );
    assert!(unknown_event_type("charg.*").is_some());
    assert!(unknown_event_type("customer.subscripton.*").is_some());
    for known in [
        "*",
        "charge.succeeded",
        "customer.subscription.*",
        "invoice.*",
    ] {
        assert_eq!(unknown_event_type(known), None, "{known}");
    }
    let mut flow = example();
    flow["trigger"]["events"] = json!(["charge.succeded"]);
    assert_eq!(
        errors_of(&flow),
        vec![(
            "trigger.events[0]".to_string(),
            "'charge.succeded' is not a Stripe event type; did you mean 'charge.succeeded'?"
                .to_string()
        )]
    );
}

#[test]
fn trigger_and_variables() {
    let mut flow = example();
    flow["trigger"] = json!({"events": ["Charge.Succeeded", "customer.*", "*", "invoice.*.x", 3], "filter": "steps.contact.id"});
    flow["steps"][0]["fields"]["x"] = json!("{{ objet.amount }}");
    assert_eq!(
        errors_of(&flow),
        vec![
            (
                "trigger.events[0]".to_string(),
                "'Charge.Succeeded' is not an event type pattern; use e.g. charge.succeeded, customer.subscription.* or *".to_string()
            ),
            (
                "trigger.events[3]".to_string(),
                "'invoice.*.x' is not an event type pattern; use e.g. charge.succeeded, customer.subscription.* or *".to_string()
            ),
            ("trigger.events[4]".to_string(), "must be a string".to_string()),
            (
                "trigger.filter".to_string(),
                "steps.contact: the trigger is checked before any step runs".to_string()
            ),
            (
                "steps[0].fields.x".to_string(),
                "unknown variable 'objet'; templates can use event, object, record, previous, steps, settings, now".to_string()
            ),
        ]
    );
}

#[test]
fn shape_errors_are_all_reported() {
    let flow = json!({
        "name": "",
        "enabled": "yes",
        "trigger": {"events": []},
        "steps": [
            {"id": "a", "action": "merge", "object": "", "fields": [], "fallback_fields": ["zz"]},
            "not a step"
        ]
    });
    assert_eq!(
        errors_of(&flow),
        vec![
            ("name".to_string(), "must not be empty".to_string()),
            ("connection_id".to_string(), "is required".to_string()),
            ("enabled".to_string(), "must be true or false".to_string()),
            (
                "trigger.events".to_string(),
                "must name at least one event type, e.g. charge.succeeded".to_string()
            ),
            (
                "steps[0].action".to_string(),
                "unknown action 'merge'; expected upsert, create, update, find, stripe.retrieve, stripe.create, stripe.update, email, http, assert, log or notify"
                    .to_string()
            ),
            (
                "steps[0].object".to_string(),
                "must not be empty".to_string()
            ),
            (
                "steps[0].fields".to_string(),
                "must be an object of field names to values".to_string()
            ),
            (
                "steps[0].fallback_fields[0]".to_string(),
                "'zz' is not a key of match or fields".to_string()
            ),
            ("steps[1]".to_string(), "must be an object".to_string()),
        ]
    );
    assert_eq!(
        errors_of(&json!([])),
        vec![("".to_string(), "a flow must be a JSON object".to_string())]
    );
}

#[test]
fn nested_values_are_templates_too() {
    let mut flow = example();
    flow["steps"][0]["fields"]["address"] =
        json!({"lines": ["{{ object.x | nope }}"], "weird key": "{{ object.y | nope2 }}"});
    assert_eq!(
        errors_of(&flow),
        vec![
            (
                "steps[0].fields.address.lines[0]".to_string(),
                "unknown filter 'nope'".to_string()
            ),
            (
                "steps[0].fields.address[\"weird key\"]".to_string(),
                "unknown filter 'nope2'".to_string()
            ),
        ]
    );
}

#[test]
fn scanner_reads_filters_tests_and_blocks() {
    let found = scan::callables(
        "{# x | no #}{{ a | f1 | f2(1, 'x|y') }}{% filter f3 %}{% if b is not t1 %}{% endif %}{% endfilter %}\
         {% raw %}{{ a | no }}{% endraw %}{{ {'k': {'n': 1}} | f4 }}{{ obj.is }}",
        false,
    );
    let names: Vec<(bool, String)> = found
        .into_iter()
        .map(|(kind, name)| (kind == Callable::Filter, name))
        .collect();
    assert_eq!(
        names,
        vec![
            (true, "f1".to_string()),
            (true, "f2".to_string()),
            (true, "f3".to_string()),
            (false, "t1".to_string()),
            (true, "f4".to_string()),
        ]
    );
}

#[test]
fn event_patterns() {
    for ok in [
        "*",
        "charge.succeeded",
        "customer.subscription.*",
        "invoice_payment.paid",
        "v1.billing.meter.error_report_triggered",
    ] {
        assert!(is_event_pattern(ok), "{ok}");
    }
    for bad in [
        "",
        "*.created",
        "charge.",
        ".x",
        "Charge.succeeded",
        "charge succeeded",
        "a.*.b",
        "customer*",
    ] {
        assert!(!is_event_pattern(bad), "{bad}");
    }
}

#[test]
fn a_review_is_checked_field_by_field() {
    let mut flow = example();
    flow["steps"][0]["review"] = json!({"policy": "merge", "winner": "most_complete",
        "copy": ["phone"], "similar": {"lastname": "{{ object.billing_details.name | last_name }}"},
        "typos": 2, "alert_after_minutes": 60});
    let spec = parse_flow(&flow).expect("valid");
    let review = spec.steps[0].review.as_ref().expect("kept");
    assert_eq!(review.policy, crate::flow::ReviewPolicy::Merge);
    assert_eq!(review.typos, Some(2));

    let cases = [
        (
            json!({"policy": "wait"}),
            "steps[0].review.policy",
            "must be one of create, pause, merge",
        ),
        (
            json!({"policy": "pause", "typos": 9, "similar": {"a": "b"}}),
            "steps[0].review.typos",
            "from 1 to 5",
        ),
        (
            json!({"policy": "pause", "typos": 1}),
            "steps[0].review.typos",
            "name the similar fields",
        ),
        (
            json!({"policy": "pause", "winner": "first"}),
            "steps[0].review.winner",
            "only the merge policy",
        ),
        (
            json!({"policy": "merge", "copy": "phone"}),
            "steps[0].review.copy",
            "list of field names",
        ),
        (
            json!({"policy": "pause", "similar": {"x": "{{ objcet.id }}"}}),
            "steps[0].review.similar.x",
            "objcet",
        ),
        (
            json!({"policy": "pause", "alert_after_minutes": 0}),
            "steps[0].review.alert_after_minutes",
            "from 1 to",
        ),
        (
            json!({"polcy": "pause"}),
            "steps[0].review.polcy",
            "did you mean 'policy'",
        ),
        (json!("pause"), "steps[0].review", "must be an object"),
    ];
    for (review, path, message) in cases {
        let mut flow = example();
        flow["steps"][0]["review"] = review.clone();
        let (at, said) = single_error(&flow);
        assert_eq!(at, path, "{review}: {said}");
        assert!(said.contains(message), "{review}: {said}");
    }

    // Only writes that choose their record review it; a create needs similar fields.
    let mut flow = example();
    flow["steps"][0]["action"] = json!("update");
    flow["steps"][0]["review"] = json!({"policy": "pause"});
    let (at, said) = single_error(&flow);
    assert_eq!(at, "steps[0].review");
    assert!(said.contains("only upsert and create"), "{said}");
    let mut flow = example();
    flow["steps"][1]["action"] = json!("create");
    flow["steps"][1].as_object_mut().unwrap().remove("match");
    flow["steps"][1]["review"] = json!({"policy": "pause"});
    let (at, _) = single_error(&flow);
    assert_eq!(at, "steps[1].review.similar");
}
