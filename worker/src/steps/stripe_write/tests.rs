//! Unit tests of the Stripe writes: validation messages, rendering, the form sent, the key
//! derived and how Stripe's refusals are classified.

use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::{Value, json};

use super::*;
use crate::flow::{RenderContext, render_step};
use crate::stripe::client::form_pairs;

fn problems(kind: &StripeWrite, step: Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    kind.validate(
        &Shape {
            map: step.as_object().unwrap(),
        },
        &mut found,
    );
    found.into_iter().map(|p| (p.path, p.message)).collect()
}

fn paths(kind: &StripeWrite, step: Value) -> Vec<String> {
    problems(kind, step).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn a_valid_create_and_update_pass() {
    let create = json!({"id": "sub", "action": "stripe.create", "object": "subscription",
        "fields": {"customer": "{{ steps.customer.id }}", "items": [{"price": "price_1", "quantity": 2}],
                   "payment_behavior": "default_incomplete", "metadata": {"crm_deal_id": "{{ object.id }}"}},
        "expand": ["latest_invoice.payment_intent"], "when": "object.amount > 0"});
    assert_eq!(problems(&CREATE, create), vec![]);
    let update = json!({"id": "tag", "action": "stripe.update", "object": "customer",
        "record_id": "{{ object.customer }}", "fields": {"metadata": {"crm_contact_id": "42"}}});
    assert_eq!(problems(&UPDATE, update), vec![]);
    let portal = json!({"id": "portal", "action": "stripe.create", "object": "billing_portal.session",
        "fields": {"customer": "cus_1", "return_url": "https://example.com"}});
    assert_eq!(problems(&CREATE, portal), vec![]);
}

#[test]
fn unknown_objects_list_the_writable_ones() {
    let found = problems(
        &CREATE,
        json!({"id": "c", "action": "stripe.create", "object": "charge"}),
    );
    assert_eq!(
        found,
        vec![(
            "object".to_string(),
            "stripe.create makes one of customer, subscription, invoiceitem, billing_portal.session, not 'charge'".to_string()
        )]
    );
    let found = problems(
        &UPDATE,
        json!({"id": "c", "action": "stripe.update", "object": "invoiceitem", "record_id": "ii_1"}),
    );
    assert_eq!(
        found,
        vec![(
            "object".to_string(),
            "stripe.update changes one of customer, subscription, not 'invoiceitem'".to_string()
        )]
    );
}

#[test]
fn record_id_is_needed_by_updates_and_refused_by_creates() {
    let found = problems(
        &UPDATE,
        json!({"id": "u", "action": "stripe.update", "object": "customer", "fields": {"name": "x"}}),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "record_id");
    assert!(found[0].1.contains("needs the id"), "{}", found[0].1);
    let found = problems(
        &CREATE,
        json!({"id": "c", "action": "stripe.create", "object": "customer", "record_id": "cus_1"}),
    );
    assert_eq!(found[0].0, "record_id");
    assert!(found[0].1.contains("use stripe.update"), "{}", found[0].1);
}

#[test]
fn required_fields_of_each_object() {
    assert_eq!(
        paths(
            &CREATE,
            json!({"id": "s", "action": "stripe.create", "object": "subscription"})
        ),
        vec!["fields.customer", "fields.items"]
    );
    assert_eq!(
        paths(
            &CREATE,
            json!({"id": "s", "action": "stripe.create", "object": "subscription",
                   "fields": {"customer": "cus_1", "items": []}})
        ),
        vec!["fields.items"]
    );
    assert_eq!(
        problems(
            &CREATE,
            json!({"id": "s", "action": "stripe.create", "object": "subscription",
                   "fields": {"customer": "cus_1", "items": {"price": "price_1"}}})
        ),
        vec![(
            "fields.items".to_string(),
            "must be a list of items, e.g. [{\"price\": \"price_…\", \"quantity\": 1}]".to_string()
        )]
    );
    assert!(
        paths(
            &CREATE,
            json!({"id": "s", "action": "stripe.create", "object": "subscription",
                   "fields": {"customer": "cus_1", "items": "{{ object.metadata.items | fromjson }}"}})
        )
        .is_empty()
    );
    for object in ["billing_portal.session", "invoiceitem"] {
        let found = problems(
            &CREATE,
            json!({"id": "p", "action": "stripe.create", "object": object, "fields": {"amount": 5}}),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "fields.customer");
        assert!(found[0].1.contains(object));
    }
    // An update sends only what changes.
    assert!(
        paths(
            &UPDATE,
            json!({"id": "s", "action": "stripe.update", "object": "subscription",
                   "record_id": "sub_1", "fields": {"cancel_at_period_end": true}})
        )
        .is_empty()
    );
}

#[test]
fn keys_of_other_kinds_are_refused_and_expand_allowed() {
    let found = problems(
        &CREATE,
        json!({"id": "c", "action": "stripe.create", "object": "customer",
               "match": {"email": "x"}, "url": "https://x", "connection_id": "c1",
               "expand": ["tax"]}),
    );
    let keys: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(keys, vec!["match", "url", "connection_id"]);
    assert_eq!(
        found[0].1,
        "stripe.create steps take object, fields, expand and when"
    );
    let found = problems(
        &UPDATE,
        json!({"id": "u", "action": "stripe.update", "object": "customer",
               "record_id": "cus_1", "headers": {}}),
    );
    assert_eq!(
        found,
        vec![(
            "headers".to_string(),
            "stripe.update steps take object, fields, record_id, expand and when".to_string()
        )]
    );
}

#[test]
fn literal_metadata_is_held_to_stripes_limits() {
    let mut many = serde_json::Map::new();
    for i in 0..51 {
        many.insert(format!("k{i}"), json!("v"));
    }
    let step = |metadata: Value| {
        json!({"id": "c", "action": "stripe.create", "object": "customer",
               "fields": {"metadata": metadata}})
    };
    let found = problems(&CREATE, step(Value::Object(many)));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "fields.metadata");
    assert!(found[0].1.contains("at most 50"), "{}", found[0].1);

    let long_key = "k".repeat(41);
    let found = problems(
        &CREATE,
        step(json!({
            long_key.clone(): "v",
            "a[b]": "v",
            "long": "x".repeat(501),
            "list": ["x"],
            "template": "{{ object.description }}",
            "fine": "x".repeat(500),
        })),
    );
    let mut found: Vec<(String, String)> = found;
    found.sort();
    assert_eq!(
        found.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        vec![
            "fields.metadata.a[b]".to_string(),
            format!("fields.metadata.{long_key}"),
            "fields.metadata.list".to_string(),
            "fields.metadata.long".to_string(),
        ]
    );
    assert!(found[0].1.contains("[ or ]"));
    assert!(
        found[1]
            .1
            .contains("at most 40 characters; this one has 41")
    );
    assert!(
        found[3]
            .1
            .contains("at most 500 characters; this one has 501")
    );
    assert!(problems(&CREATE, step(json!("{{ object.metadata }}"))).is_empty());
    assert!(problems(&CREATE, step(json!(""))).is_empty());
    assert_eq!(paths(&CREATE, step(json!(7))), vec!["fields.metadata"]);
}

#[test]
fn steps_validate_inside_a_whole_flow() {
    let flow = json!({
        "name": "Subscribe won deals",
        "connection_id": "0190c0de-0000-7000-8000-000000000001",
        "trigger": {"events": ["customer.created"]},
        "steps": [
            {"id": "tag", "action": "stripe.update", "object": "customer",
             "record_id": "{{ object.id }}", "fields": {"metadata": {"crm_contact_id": "{{ object.id }}"}},
             "expand": ["tax"]},
            {"id": "bad", "action": "stripe.create", "object": "subscription",
             "fields": {"customer": "{{ object.id }}"}}
        ]
    });
    let errors: Vec<(String, String)> = crate::flow::validate(&flow)
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "steps[1].fields.items");
}

fn ctx(object: Value) -> RenderContext {
    RenderContext {
        event: json!({"id": "evt_1", "type": "customer.created", "data": {"object": object}}),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: json!({}),
        now: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    }
}

fn render(step: Value, object: Value) -> Result<Operation, (String, String)> {
    let step: Step = serde_json::from_value(step).unwrap();
    render_step(&step, &ctx(object))
        .map(|op| op.expect("the step runs"))
        .map_err(|e| (e.path(), e.message().to_string()))
}

#[test]
fn rendering_checks_what_only_the_event_can_tell() {
    let update = json!({"id": "tag", "action": "stripe.update", "object": "customer",
        "record_id": "{{ object.customer }}", "fields": {"metadata": {"crm": "{{ object.crm }}"}}});
    let (path, message) = render(update.clone(), json!({"id": "ch_1"})).unwrap_err();
    assert!(path.ends_with("record_id"), "{path}");
    assert!(message.contains("no Stripe object to update"), "{message}");
    let (path, message) =
        render(update.clone(), json!({"customer": "cus/../x", "crm": "h"})).unwrap_err();
    assert!(path.ends_with("record_id") && message.contains("not a Stripe object id"));

    let (path, message) = render(
        update.clone(),
        json!({"customer": "cus_1", "crm": "x".repeat(501)}),
    )
    .unwrap_err();
    assert!(path.ends_with("fields.metadata.crm"), "{path}");
    assert!(message.contains("500"), "{message}");

    let op = render(update, json!({"customer": "cus_1", "crm": "hubspot"})).unwrap();
    assert_eq!(op.record_id.as_deref(), Some("cus_1"));
    assert_eq!(op.fields["metadata"], json!({"crm": "hubspot"}));
    assert_eq!(UPDATE.path(&op).unwrap(), "/v1/customers/cus_1");

    let create = json!({"id": "sub", "action": "stripe.create", "object": "subscription",
        "fields": {"customer": "{{ object.customer }}", "items": [{"price": "price_1"}]},
        "expand": ["latest_invoice"]});
    let (path, _) = render(create.clone(), json!({})).unwrap_err();
    assert!(path.ends_with("fields.customer"), "{path}");
    let op = render(create, json!({"customer": "cus_9"})).unwrap();
    assert_eq!(CREATE.path(&op).unwrap(), "/v1/subscriptions");
    let mut form = form_pairs(&params(&op));
    form.sort();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        form,
        vec![
            pair("customer", "cus_9"),
            pair("expand[0]", "latest_invoice"),
            pair("items[0][price]", "price_1"),
        ]
    );
}

#[test]
fn the_key_is_derived_from_event_and_step() {
    use crate::stripe::IDEMPOTENCY_PREFIX;
    let key = write_idempotency_key("0193a1b2-0000-7000-8000-00000000abcd", "customer");
    assert_eq!(
        key,
        format!("{IDEMPOTENCY_PREFIX}0193a1b2-0000-7000-8000-00000000abcd-customer")
    );
    assert_ne!(
        key,
        write_idempotency_key("0193a1b2-0000-7000-8000-00000000abcd", "sub")
    );
    assert!(write_idempotency_key("e", &"x".repeat(400)).len() <= 255);
}

#[test]
fn stripes_refusals_are_classified() {
    let error = |status: u16, error_type: &str, code: Option<&str>| StripeError {
        status: Some(status),
        error_type: error_type.into(),
        code: code.map(str::to_string),
        param: None,
        message: "refused".into(),
    };
    let reused = write_error(&error(400, "idempotency_error", None));
    assert_eq!(reused.kind, ErrorKind::Permanent);
    assert!(
        reused
            .message
            .contains("sent to Stripe before with different values"),
        "{}",
        reused.message
    );
    assert_eq!(reused.vendor_status, Some(400));
    let limited = write_error(&error(429, "invalid_request_error", Some("rate_limit")));
    assert_eq!(limited.kind, ErrorKind::Transient);
    let busy = write_error(&error(
        409,
        "invalid_request_error",
        Some("idempotency_key_in_use"),
    ));
    assert_eq!(busy.kind, ErrorKind::Transient);
    let missing = write_error(&StripeError {
        param: Some("customer".into()),
        ..error(400, "invalid_request_error", Some("resource_missing"))
    });
    assert_eq!(missing.kind, ErrorKind::Invalid);
    assert!(missing.message.contains("param customer"));
    assert_eq!(
        write_error(&error(404, "invalid_request_error", None)).kind,
        ErrorKind::NotFound
    );
}

#[test]
fn a_failed_rendered_metadata_check_names_the_key() {
    let mut fields = serde_json::Map::new();
    fields.insert("metadata".into(), json!({"k": {"nested": 1}}));
    let problem = rendered_metadata_problem(&fields).unwrap();
    assert_eq!(problem.path, "fields.metadata.k");
    fields.insert("metadata".into(), json!({"k": 12, "b": true, "gone": ""}));
    assert!(rendered_metadata_problem(&fields).is_none());
    fields.insert("metadata".into(), json!("not empty"));
    assert_eq!(
        rendered_metadata_problem(&fields).unwrap().path,
        "fields.metadata"
    );
}
