use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 9, 15, 8, 0, 0).unwrap()
}

fn charge_event() -> Value {
    json!({
        "id": "evt_3PqTest0001",
        "object": "event",
        "type": "charge.succeeded",
        "created": 1_726_387_200,
        "data": { "object": {
            "id": "ch_3PqTest0001",
            "object": "charge",
            "amount": 14900,
            "currency": "usd",
            "paid": true,
            "customer": "cus_QxTest0001",
            "receipt_email": null,
            "billing_details": { "email": "Tony@StarkIndustries.com", "name": "Tony Stark", "phone": null },
            "metadata": { "company": "Stark Industries" }
        }}
    })
}

fn ctx(event: Value) -> RenderContext {
    RenderContext {
        event,
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: json!({ "won_stage": "Closed Won" }),
        now: now(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    }
}

fn step(value: Value) -> Step {
    serde_json::from_value(value).expect("a step")
}

fn flow(trigger: Value, steps: Value) -> FlowSpec {
    parse_flow(&json!({ "name": "t", "connection_id": "c", "trigger": trigger, "steps": steps }))
        .expect("valid flow")
}

#[test]
fn event_type_patterns() {
    assert!(event_type_matches("charge.succeeded", "charge.succeeded"));
    assert!(!event_type_matches("charge.succeeded", "charge.failed"));
    assert!(event_type_matches("*", "invoice.paid"));
    assert!(event_type_matches(
        "customer.subscription.*",
        "customer.subscription.updated"
    ));
    assert!(!event_type_matches(
        "customer.subscription.*",
        "customer.subscription"
    ));
    assert!(!event_type_matches(
        "customer.subscription.*",
        "customer.updated"
    ));
    assert!(event_type_matches(
        "customer.*",
        "customer.subscription.deleted"
    ));
    assert!(!event_type_matches("charge.*", "chargeback.created"));
}

#[test]
fn trigger_needs_a_matching_type_and_a_truthy_filter() {
    let usd = flow(
        json!({ "events": ["charge.*"], "filter": "object.currency == 'usd' and object.amount >= 10000" }),
        json!([{ "id": "a", "action": "create", "object": "x", "fields": { "a": 1 } }]),
    );
    assert_eq!(trigger_matches(&usd, &charge_event()), Ok(true));

    let mut small = charge_event();
    small["data"]["object"]["amount"] = json!(500);
    assert_eq!(trigger_matches(&usd, &small), Ok(false));

    let mut refund = charge_event();
    refund["type"] = json!("invoice.paid");
    assert_eq!(trigger_matches(&usd, &refund), Ok(false));
    assert_eq!(trigger_matches(&usd, &json!({ "no": "type" })), Ok(false));

    let wrapped = flow(
        json!({ "events": ["*"], "filter": "{{ object.metadata.company is defined }}" }),
        json!([{ "id": "a", "action": "create", "object": "x", "fields": { "a": 1 } }]),
    );
    assert_eq!(trigger_matches(&wrapped, &charge_event()), Ok(true));

    let failing = FlowSpec {
        trigger: Trigger {
            source: "stripe".into(),
            events: vec!["*".into()],
            filter: Some("object.amount | major_units".into()),
            echoes: false,
        },
        ..usd
    };
    let err = trigger_matches(&failing, &charge_event()).expect_err("no currency");
    assert!(err.to_string().starts_with("trigger.filter: "), "{err}");
}

#[test]
fn render_keeps_native_types_and_leaves_out_nulls() {
    let step = step(json!({
        "id": "contact", "action": "upsert", "object": "contacts",
        "match": { "email": "{{ object.billing_details.email | lower }}", "phone": "{{ object.billing_details.phone }}" },
        "fields": {
            "amount": "{{ object.amount | major_units(object.currency) }}",
            "amount_text": "${{ object.amount | format_amount(object.currency) }}",
            "paid": "{{ object.paid }}",
            "cents": "{{ object.amount }}",
            "phone": "{{ object.billing_details.phone }}",
            "missing": "{{ object.metadata.nothing }}",
            "literal_number": 7,
            "literal_null": null,
            "nested": { "company": "{{ object.metadata.company }}", "count": 1 }
        },
        "fallback_fields": ["email"]
    }));
    let op = render_step(&step, &ctx(charge_event()))
        .expect("renders")
        .expect("runs");
    assert_eq!(op.step, "contact");
    assert_eq!(op.action, Action::Upsert);
    assert_eq!(
        op.match_fields,
        json!({ "email": "tony@starkindustries.com" })
            .as_object()
            .cloned()
            .unwrap()
    );
    assert_eq!(
        Value::Object(op.fields),
        json!({
            "amount": 149.0,
            "amount_text": "$149.00",
            "paid": true,
            "cents": 14900,
            "literal_number": 7,
            "nested": { "company": "Stark Industries", "count": 1 }
        })
    );
    assert_eq!(op.fallback_fields, vec!["email".to_string()]);
    assert_eq!(op.record_id, None);
}

#[test]
fn when_skips_a_step() {
    let guarded = step(json!({
        "id": "vip", "action": "create", "object": "Task",
        "when": "object.amount > 100000", "fields": { "Subject": "Big one" }
    }));
    assert_eq!(render_step(&guarded, &ctx(charge_event())), Ok(None));
    let mut big = charge_event();
    big["data"]["object"]["amount"] = json!(250_000);
    let op = render_step(&guarded, &ctx(big))
        .expect("renders")
        .expect("runs");
    assert_eq!(op.fields["Subject"], json!("Big one"));
}

#[test]
fn record_ids_and_associations_render_to_text_or_nothing() {
    let mut context = ctx(charge_event());
    context.steps.insert("contact".into(), "901".into());
    let update = step(json!({
        "id": "deal", "action": "update", "object": "deals",
        "record_id": "{{ object.metadata.hubspot_deal_id }}",
        "match": { "stripe_charge_id": "{{ object.id }}" },
        "fields": { "amount": "{{ object.amount }}" },
        "associate": [
            { "object": "contacts", "id": "{{ steps.contact.id }}" },
            { "object": "companies", "id": "{{ steps.company.id }}" }
        ]
    }));
    let op = render_step(&update, &context)
        .expect("renders")
        .expect("runs");
    assert_eq!(op.record_id, None);
    assert_eq!(
        op.associate,
        vec![RenderedAssociation {
            object: "contacts".into(),
            id: "901".into()
        }]
    );

    let mut event = charge_event();
    event["data"]["object"]["metadata"]["hubspot_deal_id"] = json!(" 1234 ");
    let op = render_step(&update, &ctx(event))
        .expect("renders")
        .expect("runs");
    assert_eq!(op.record_id.as_deref(), Some("1234"));
}

#[test]
fn steps_that_cannot_find_their_record_are_errors() {
    let mut event = charge_event();
    event["data"]["object"]["billing_details"]["email"] = json!(null);
    let upsert = step(json!({
        "id": "contact", "action": "upsert", "object": "contacts",
        "match": { "email": "{{ object.billing_details.email | lower }}" }
    }));
    let err = render_step(&upsert, &ctx(event.clone())).expect_err("no key");
    assert_eq!(err.path(), "steps.contact.match");
    assert_eq!(err.clone().at_index(0).path(), "steps[0].match");
    assert!(
        err.message().contains("every match value rendered empty"),
        "{err}"
    );

    let update = step(json!({
        "id": "opp", "action": "update", "object": "Opportunity",
        "record_id": "{{ object.metadata.salesforce_opportunity_id }}",
        "match": { "Email__c": "{{ object.billing_details.email }}" },
        "fields": { "StageName": "Closed Won" }
    }));
    let err = render_step(&update, &ctx(event)).expect_err("no target");
    assert_eq!(err.path(), "steps.opp.record_id");
}

#[test]
fn render_errors_carry_the_field_path() {
    let bad = step(json!({
        "id": "deal", "action": "create", "object": "deals",
        "fields": { "amount": "{{ object.amount | major_units(object.nope) }}" }
    }));
    let err = render_step(&bad, &ctx(charge_event()))
        .expect_err("fails")
        .at_index(1);
    assert_eq!(err.path(), "steps[1].fields.amount");
    assert!(
        err.to_string().starts_with(
            "steps[1].fields.amount: invalid operation: major_units: needs the currency"
        ),
        "{err}"
    );
}

#[test]
fn preview_chains_placeholders_and_writes_nothing() {
    let spec = flow(
        json!({ "events": ["charge.succeeded"] }),
        json!([
            { "id": "contact", "action": "upsert", "object": "contacts",
              "match": { "email": "{{ object.billing_details.email | lower }}" } },
            { "id": "audit", "action": "create", "object": "notes", "when": "false",
              "fields": { "body": "never" } },
            { "id": "deal", "action": "create", "object": "deals",
              "fields": { "contact": "{{ steps.contact.id }}", "audit": "{{ steps.audit.id }}",
                          "won": "{{ settings.won_stage }}", "at": "{{ now }}" },
              "associate": [{ "object": "contacts", "id": "{{ steps.contact.id }}" }] }
        ]),
    );
    let disabled = FlowSpec {
        enabled: false,
        ..spec
    };
    let preview = preview(
        &disabled,
        &charge_event(),
        &json!({ "won_stage": "Won" }),
        now(),
    )
    .expect("previews");
    assert!(preview.matched);
    assert_eq!(preview.skipped, vec!["audit".to_string()]);
    assert_eq!(preview.operations.len(), 2);
    let deal = &preview.operations[1];
    assert_eq!(
        Value::Object(deal.fields.clone()),
        json!({ "contact": "{{steps.contact.id}}", "won": "Won", "at": "2024-09-15T08:00:00Z" })
    );
    assert_eq!(deal.associate[0].id, "{{steps.contact.id}}");

    let mut other = charge_event();
    other["type"] = json!("charge.refunded");
    let unmatched = super::preview(&disabled, &other, &json!({}), now()).expect("previews");
    assert!(!unmatched.matched);
    assert!(unmatched.operations.is_empty());
}

#[test]
fn retrieve_steps_are_checked_and_feed_later_steps() {
    let flow = json!({
        "name": "enrich", "connection_id": "c", "refetch": true,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "customer", "action": "stripe.retrieve", "object": "customer",
             "record_id": "{{ object.customer }}", "expand": ["default_source"]},
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ steps.customer.object.email }}"}}
        ]
    });
    let spec = parse_flow(&flow).expect("a valid flow");
    assert!(spec.refetch);
    assert_eq!(spec.steps[0].action, Action::StripeRetrieve);
    let mut ctx = RenderContext {
        event: json!({"type": "charge.succeeded", "data": {"object": {"customer": "cus_1"}}}),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: json!({}),
        now: now(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    };
    let op = render_step(&spec.steps[0], &ctx).unwrap().unwrap();
    assert_eq!(op.record_id.as_deref(), Some("cus_1"));
    assert_eq!(op.expand, ["default_source"]);
    ctx.finished(
        &spec.steps[0],
        Some("cus_1".into()),
        Some(json!({"id": "cus_1", "email": "ada@example.com"})),
    );
    let contact = render_step(&spec.steps[1], &ctx).unwrap().unwrap();
    assert_eq!(contact.match_fields["email"], "ada@example.com");

    let bad = json!({
        "name": "bad", "connection_id": "c",
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "x", "action": "stripe.retrieve", "object": "refund",
             "fields": {"a": "b"}, "expand": ["bad path!"]},
            {"id": "_refetch", "action": "create", "object": "notes", "fields": {"a": "b"}}
        ]
    });
    let errors: Vec<String> = super::validate(&bad)
        .iter()
        .map(|e| e.path.clone())
        .collect();
    for path in [
        "steps[0].object",
        "steps[0].record_id",
        "steps[0].fields",
        "steps[0].expand",
        "steps[1].id",
    ] {
        assert!(errors.contains(&path.to_string()), "{path} in {errors:?}");
    }
}

#[test]
fn generated_secrets_repeat_by_name_and_stay_out_of_what_is_stored() {
    let flow = json!({
        "name": "onboard", "connection_id": "c",
        "trigger": {"events": ["checkout.session.completed"]},
        "steps": [
            {"id": "mail", "action": "email", "connection_id": "smtp",
             "fields": {"to": "a@b.co", "subject": "Hi", "text": "pw {{ password('portal') }} t {{ token(12) }}"}},
            {"id": "call", "action": "http", "url": "https://x.example/w",
             "fields": {"pw": "{{ password('portal') }}", "other": "{{ password('other') }}"}}
        ]
    });
    let spec = parse_flow(&flow).expect("valid");
    let mut ctx = ctx(charge_event());
    ctx.secret_seed = Some("seed-1".into());
    let mail = render_step(&spec.steps[0], &ctx).unwrap().unwrap();
    let call = render_step(&spec.steps[1], &ctx).unwrap().unwrap();
    let text = mail.fields["text"].as_str().unwrap();
    let pw = call.fields["pw"].as_str().unwrap();
    assert_eq!(pw.len(), 20);
    assert!(
        text.contains(pw),
        "the same name gives the same password: {text} / {pw}"
    );
    assert_ne!(call.fields["other"], call.fields["pw"]);
    assert_eq!(text.split(" t ").nth(1).unwrap().len(), 12);
    let again = render_step(&spec.steps[1], &ctx).unwrap().unwrap();
    assert_eq!(
        again.fields["pw"], call.fields["pw"],
        "every attempt the same"
    );
    let stored = call.stored_json().unwrap();
    assert!(!stored.contains(pw), "{stored}");
    assert!(stored.contains(model::REDACTED));
    ctx.secret_seed = Some("seed-2".into());
    let other_event = render_step(&spec.steps[1], &ctx).unwrap().unwrap();
    assert_ne!(other_event.fields["pw"], call.fields["pw"]);
    // Without a seed (a preview) they are placeholders.
    ctx.secret_seed = None;
    let preview = render_step(&spec.steps[1], &ctx).unwrap().unwrap();
    assert_eq!(preview.fields["pw"], "[generated password]");
}

#[test]
fn actions_need_their_parts() {
    let flow = json!({
        "name": "bad", "connection_id": "c",
        "trigger": {"events": ["checkout.session.completed"]},
        "steps": [
            {"id": "mail", "action": "email", "fields": {"subject": "Hi", "colour": "red"}},
            {"id": "call", "action": "http", "match": {"a": "b"}},
            {"id": "guard", "action": "assert", "fields": {"x": "y"}}
        ]
    });
    let errors: Vec<String> = super::validate(&flow)
        .iter()
        .map(|e| e.path.clone())
        .collect();
    for path in [
        "steps[0].connection_id",
        "steps[0].fields.colour",
        "steps[0].fields.to",
        "steps[0].fields.text",
        "steps[1].url",
        "steps[1].match",
        "steps[2].check",
        "steps[2].fields",
    ] {
        assert!(errors.contains(&path.to_string()), "{path} in {errors:?}");
    }
    let guard = step(json!({"id": "g", "action": "assert",
        "check": "object.currency == 'eur'", "message": "wrong currency {{ object.currency }}"}));
    let op = render_step(&guard, &ctx(charge_event())).unwrap().unwrap();
    assert_eq!(op.fields["passed"], json!(false));
    assert_eq!(op.fields["message"], json!("wrong currency usd"));
}

#[test]
fn operations_serialize_with_the_contract_names() {
    let op = Operation {
        step: "contact".into(),
        action: Action::Upsert,
        object: "contacts".into(),
        match_fields: json!({ "email": "a@b.c" }).as_object().cloned().unwrap(),
        fields: Map::new(),
        record_id: None,
        fallback_fields: vec![],
        associate: vec![],
        method: None,
        path: None,
        expand: vec![],
        select: vec![],
        connection_id: None,
        url: None,
        headers: Map::new(),
        review: None,
        decided: None,
        secrets: vec![],
    };
    let value = serde_json::to_value(&op).expect("serializes");
    assert_eq!(value["match"], json!({ "email": "a@b.c" }));
    assert_eq!(value["action"], json!("upsert"));
    assert_eq!(
        serde_json::from_value::<Operation>(value).expect("round trips"),
        op
    );
}
