use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, json};

use super::*;
use crate::flow::{Action, FlowSpec, Operation, Preview, parse_flow, preview, trigger_matches};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 9, 16, 9, 0, 0).unwrap()
}

fn template(id: &str) -> FlowTemplate {
    builtin()
        .into_iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no template {id}"))
}

fn spec(id: &str) -> FlowSpec {
    parse_flow(&template(id).instantiate("conn_1")).expect("template is valid")
}

fn run(id: &str, event: &Value) -> Preview {
    preview(
        &spec(id),
        event,
        &json!({ "won_stage": "Closed Won" }),
        now(),
    )
    .expect("previews")
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

fn event(kind: &str, object: Value, previous: Option<Value>) -> Value {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({
        "id": "evt_1Q0aTestEvent0001",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": 1_757_980_800,
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": "req_Test0001", "idempotency_key": null },
        "type": kind,
        "data": data
    })
}

fn charge_succeeded() -> Value {
    event(
        "charge.succeeded",
        json!({
            "id": "ch_3Mv29vLkdTest0001",
            "object": "charge",
            "amount": 14900,
            "amount_captured": 14900,
            "amount_refunded": 0,
            "captured": true,
            "created": 1_757_980_790,
            "currency": "usd",
            "customer": "cus_QkTest0001",
            "description": null,
            "paid": true,
            "payment_intent": "pi_3Mv29vLkdTest0001",
            "receipt_email": null,
            "receipt_url": "https://pay.stripe.com/receipts/payment/CAcaFwoVTest",
            "status": "succeeded",
            "billing_details": {
                "address": { "city": "Malibu", "country": "US", "line1": "10880 Malibu Point", "line2": null, "postal_code": "90265", "state": "CA" },
                "email": "Tony@StarkIndustries.com",
                "name": "Tony Stark",
                "phone": "+1-555-0100"
            },
            "metadata": { "company": "Stark Industries", "lifecycle_stage": "customer", "deal_name": "Arc Reactor Deployment" }
        }),
        None,
    )
}

fn subscription(status: &str, metadata: Value) -> Value {
    json!({
        "id": "sub_1OHATest0001",
        "object": "subscription",
        "customer": "cus_PTest0001",
        "status": status,
        "currency": "usd",
        "cancel_at_period_end": false,
        "created": 1_757_980_000,
        "items": {
            "object": "list",
            "data": [{
                "id": "si_Test0001",
                "object": "subscription_item",
                "quantity": 1,
                "current_period_start": 1_726_358_400,
                "current_period_end": 1_728_950_400,
                "price": {
                    "id": "price_1OTest0001",
                    "object": "price",
                    "currency": "usd",
                    "unit_amount": 99900,
                    "unit_amount_decimal": "99900",
                    "recurring": { "interval": "month", "interval_count": 1, "usage_type": "licensed" },
                    "type": "recurring"
                }
            }],
            "has_more": false
        },
        "metadata": metadata
    })
}

#[test]
fn every_template_validates_once_it_has_a_connection() {
    let templates = builtin();
    let ids: BTreeSet<&str> = templates.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), templates.len(), "template ids are unique");
    for template in &templates {
        assert!(
            template.flow.get("connection_id").is_none(),
            "{}",
            template.id
        );
        assert!(
            !crate::flow::validate(&template.flow).is_empty(),
            "{} needs a connection",
            template.id
        );
        let spec = parse_flow(&template.instantiate("0190c0de-0000-7000-8000-000000000001"))
            .unwrap_or_else(|errors| panic!("{}: {errors:?}", template.id));
        assert_eq!(spec.trigger.events, template.events, "{}", template.id);
        assert!(
            ["sandbox", "hubspot", "salesforce", "zoho"].contains(&template.provider.as_str()),
            "{}",
            template.id
        );
    }
    let serialized = serde_json::to_value(&templates).expect("serializes");
    assert_eq!(serialized[0]["id"], json!("zoho-contact-from-charge"));
}

#[test]
fn zoho_contact_from_charge() {
    let preview = run("zoho-contact-from-charge", &charge_succeeded());
    assert!(preview.matched);
    let [contact]: [Operation; 1] = preview.operations.try_into().expect("one operation");
    assert_eq!(
        (contact.action, contact.object.as_str()),
        (Action::Upsert, "Contacts")
    );
    assert_eq!(
        contact.match_fields,
        map(json!({ "Email": "tony@starkindustries.com" }))
    );
    assert_eq!(
        Value::Object(contact.fields),
        json!({
            "First_Name": "Tony",
            "Last_Name": "Stark",
            "Phone": "+1-555-0100",
            "Stripe_Transaction_ID": "ch_3Mv29vLkdTest0001",
            "Total_Amount": 149.0
        })
    );

    let mut single_name = charge_succeeded();
    single_name["data"]["object"]["billing_details"]["name"] = json!("Cher");
    let contact = &run("zoho-contact-from-charge", &single_name).operations[0];
    assert_eq!(contact.fields["Last_Name"], json!("Cher"));
    assert!(
        !contact.fields.contains_key("First_Name") || contact.fields["First_Name"] == json!("Cher")
    );

    let mut anonymous = charge_succeeded();
    anonymous["data"]["object"]["billing_details"]["email"] = json!(null);
    let skipped = run("zoho-contact-from-charge", &anonymous);
    assert!(skipped.operations.is_empty());
    assert_eq!(skipped.skipped, vec!["contact".to_string()]);
}

#[test]
fn hubspot_contact_and_deal() {
    let preview = run("hubspot-contact-and-deal", &charge_succeeded());
    let [contact, deal]: [Operation; 2] = preview.operations.try_into().expect("two operations");
    assert_eq!(contact.object, "contacts");
    assert_eq!(
        contact.match_fields,
        map(json!({ "email": "tony@starkindustries.com" }))
    );
    assert_eq!(contact.fields["firstname"], json!("Tony"));
    assert_eq!(contact.fields["lastname"], json!("Stark"));
    assert_eq!(contact.fields["company"], json!("Stark Industries"));
    assert_eq!(contact.fields["phone"], json!("+1-555-0100"));
    assert_eq!(contact.fields["last_charge_amount"], json!(149.0));
    assert_eq!(
        contact.fields["last_charge_receipt"],
        json!("https://pay.stripe.com/receipts/payment/CAcaFwoVTest")
    );
    assert_eq!(
        contact.fallback_fields,
        vec!["email", "firstname", "lastname"]
    );

    assert_eq!(
        (deal.action, deal.object.as_str()),
        (Action::Upsert, "deals")
    );
    assert_eq!(
        deal.match_fields,
        map(json!({ "stripe_charge_id": "ch_3Mv29vLkdTest0001" }))
    );
    assert_eq!(deal.fields["dealname"], json!("Arc Reactor Deployment"));
    assert_eq!(deal.fields["dealstage"], json!("closedwon"));
    assert_eq!(deal.fields["pipeline"], json!("default"));
    assert_eq!(deal.fields["amount"], json!(149.0));
    assert_eq!(deal.fields["closedate"], json!("2025-09-15T23:59:50Z"));
    assert_eq!(deal.associate.len(), 1);
    assert_eq!(
        (
            deal.associate[0].object.as_str(),
            deal.associate[0].id.as_str()
        ),
        ("contacts", "{{steps.contact.id}}")
    );

    let mut unnamed = charge_succeeded();
    unnamed["data"]["object"]["metadata"] = json!({});
    let deal = &run("hubspot-contact-and-deal", &unnamed).operations[1];
    assert_eq!(
        deal.fields["dealname"],
        json!("Stripe charge ch_3Mv29vLkdTest0001")
    );
}

#[test]
fn salesforce_opportunity_from_subscription_and_payment() {
    let created = event(
        "customer.subscription.created",
        subscription(
            "active",
            json!({
                "salesforce_opportunity_id": "006Hs00000BkXyzIAF",
                "salesforce_account_id": "001Hs00000CmAbcIAE"
            }),
        ),
        None,
    );
    let [opportunity]: [Operation; 1] = run("salesforce-opportunity-closed-won", &created)
        .operations
        .try_into()
        .expect("one operation");
    assert_eq!(
        (opportunity.action, opportunity.object.as_str()),
        (Action::Update, "Opportunity")
    );
    assert_eq!(opportunity.record_id.as_deref(), Some("006Hs00000BkXyzIAF"));
    assert_eq!(
        opportunity.match_fields,
        map(json!({ "Stripe_Customer_ID__c": "cus_PTest0001" }))
    );
    assert_eq!(
        Value::Object(opportunity.fields),
        json!({
            "StageName": "Closed Won",
            "CloseDate": "2025-09-16",
            "Amount": 999.0,
            "Stripe_Customer_ID__c": "cus_PTest0001",
            "Stripe_Subscription_ID__c": "sub_1OHATest0001",
            "MRR__c": 999.0,
            "ARR__c": 11988.0
        })
    );

    let payment = event(
        "payment_intent.succeeded",
        json!({
            "id": "pi_3QTest0001",
            "object": "payment_intent",
            "amount": 500000,
            "amount_received": 500000,
            "currency": "jpy",
            "customer": null,
            "status": "succeeded",
            "latest_charge": "ch_3QTest0001",
            "metadata": { "salesforce_opportunity_id": "006Hs00000BkOneIAF" }
        }),
        None,
    );
    let opportunity = &run("salesforce-opportunity-closed-won", &payment).operations[0];
    assert_eq!(opportunity.record_id.as_deref(), Some("006Hs00000BkOneIAF"));
    assert!(opportunity.match_fields.is_empty());
    assert_eq!(
        Value::Object(opportunity.fields.clone()),
        json!({ "StageName": "Closed Won", "CloseDate": "2025-09-16", "Amount": 500000 })
    );

    let mut anonymous = payment.clone();
    anonymous["data"]["object"]["metadata"] = json!({});
    assert_eq!(
        run("salesforce-opportunity-closed-won", &anonymous).skipped,
        vec!["opportunity"]
    );
}

#[test]
fn salesforce_subscription_status() {
    let updated = event(
        "customer.subscription.updated",
        subscription(
            "past_due",
            json!({ "salesforce_account_id": "001Hs00000CmAbcIAE" }),
        ),
        Some(json!({ "status": "active" })),
    );
    let [account, task]: [Operation; 2] = run("salesforce-subscription-status", &updated)
        .operations
        .try_into()
        .expect("two operations");
    assert_eq!(
        (account.action, account.object.as_str()),
        (Action::Update, "Account")
    );
    assert_eq!(account.record_id.as_deref(), Some("001Hs00000CmAbcIAE"));
    assert_eq!(
        account.fields,
        map(json!({ "Subscription_Status__c": "Past Due" }))
    );
    assert_eq!(
        (task.action, task.object.as_str()),
        (Action::Create, "Task")
    );
    assert_eq!(task.fields["WhatId"], json!("{{steps.account.id}}"));
    assert_eq!(
        task.fields["Subject"],
        json!("Stripe subscription active → past_due")
    );
    assert_eq!(
        task.fields["Description"],
        json!(
            "Stripe subscription sub_1OHATest0001 of customer cus_PTest0001 changed from active to past_due (customer.subscription.updated)."
        )
    );
    assert_eq!(task.fields["Priority"], json!("High"));
    assert_eq!(task.fields["Status"], json!("Not Started"));
    assert_eq!(task.fields["ActivityDate"], json!("2025-09-16"));

    let plan_change = event(
        "customer.subscription.updated",
        subscription(
            "active",
            json!({ "salesforce_account_id": "001Hs00000CmAbcIAE" }),
        ),
        Some(json!({ "items": {} })),
    );
    let preview = run("salesforce-subscription-status", &plan_change);
    assert_eq!(preview.operations.len(), 1);
    assert_eq!(preview.skipped, vec!["transition"]);

    let deleted = event(
        "customer.subscription.deleted",
        subscription("canceled", json!({})),
        None,
    );
    let [account, task]: [Operation; 2] = run("salesforce-subscription-status", &deleted)
        .operations
        .try_into()
        .expect("two operations");
    assert_eq!(account.record_id, None);
    assert_eq!(
        account.match_fields,
        map(json!({ "Stripe_Customer_ID__c": "cus_PTest0001" }))
    );
    assert_eq!(account.fields["Subscription_Status__c"], json!("Canceled"));
    assert_eq!(
        task.fields["Subject"],
        json!("Stripe subscription canceled")
    );

    let mut unknown = updated.clone();
    unknown["data"]["object"]["status"] = json!("mystery");
    let account = &run("salesforce-subscription-status", &unknown).operations[0];
    assert_eq!(account.fields["Subscription_Status__c"], json!("Unknown"));
}

#[test]
fn salesforce_payment_failed_task() {
    let failed = event(
        "invoice.payment_failed",
        json!({
            "id": "in_1QTest0001",
            "object": "invoice",
            "number": "A1B2C3D4-0007",
            "amount_due": 14900,
            "amount_paid": 0,
            "amount_remaining": 14900,
            "attempt_count": 2,
            "attempted": true,
            "billing_reason": "subscription_cycle",
            "currency": "usd",
            "customer": "cus_PTest0001",
            "customer_email": "ap@acme.example",
            "next_payment_attempt": 1_758_189_600,
            "status": "open",
            "metadata": {},
            "parent": {
                "type": "subscription_details",
                "quote_details": null,
                "subscription_details": {
                    "subscription": "sub_1OHATest0001",
                    "metadata": { "salesforce_account_id": "001Hs00000CmAbcIAE" }
                }
            }
        }),
        None,
    );
    let [task]: [Operation; 1] = run("salesforce-payment-failed-task", &failed)
        .operations
        .try_into()
        .expect("one operation");
    assert_eq!(
        (task.action, task.object.as_str()),
        (Action::Create, "Task")
    );
    assert!(task.match_fields.is_empty());
    assert_eq!(
        Value::Object(task.fields),
        json!({
            "WhatId": "001Hs00000CmAbcIAE",
            "Subject": "Payment Failed - Immediate Action Required",
            "Priority": "High",
            "Status": "Not Started",
            "ActivityDate": "2025-09-17",
            "Description": "Stripe invoice A1B2C3D4-0007 payment failed. Amount: 149.00 USD. Reason: not given. Attempts: 2. Next retry: 2025-09-18. Subscription: sub_1OHATest0001. Customer: ap@acme.example."
        })
    );
}

fn checkout_completed(payment_status: &str) -> Value {
    event(
        "checkout.session.completed",
        json!({
            "id": "cs_test_a1Test0001",
            "object": "checkout.session",
            "amount_subtotal": 249950,
            "amount_total": 249950,
            "currency": "eur",
            "customer": "cus_QTest0002",
            "customer_email": null,
            "customer_details": {
                "address": { "country": "DE", "postal_code": "10115" },
                "email": "Sarah.Connor@example.com",
                "name": "Sarah Connor",
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": []
            },
            "metadata": { "serviceId": "premium-onboarding" },
            "mode": "payment",
            "payment_status": payment_status,
            "status": "complete"
        }),
        None,
    )
}

#[test]
fn sandbox_and_zoho_leads_from_checkout() {
    let [lead]: [Operation; 1] = run("sandbox-lead-from-checkout", &checkout_completed("paid"))
        .operations
        .try_into()
        .expect("one operation");
    assert_eq!(
        (lead.action, lead.object.as_str()),
        (Action::Upsert, "leads")
    );
    assert_eq!(
        lead.match_fields,
        map(json!({ "email": "sarah.connor@example.com" }))
    );
    assert_eq!(
        Value::Object(lead.fields),
        json!({
            "name": "Sarah Connor",
            "invoicedValue": 2499.5,
            "currency": "EUR",
            "orderedService": "premium-onboarding",
            "stripe_customer_id": "cus_QTest0002",
            "stripe_checkout_session_id": "cs_test_a1Test0001"
        })
    );

    let [lead]: [Operation; 1] = run("zoho-lead-from-checkout", &checkout_completed("paid"))
        .operations
        .try_into()
        .expect("one operation");
    assert_eq!(lead.object, "Leads");
    assert_eq!(
        lead.match_fields,
        map(json!({ "Email": "sarah.connor@example.com" }))
    );
    assert_eq!(lead.fields["First_Name"], json!("Sarah"));
    assert_eq!(lead.fields["Last_Name"], json!("Connor"));
    assert_eq!(lead.fields["Invoiced_Value"], json!(2499.5));
    assert!(!lead.fields.contains_key("Company"));

    let unpaid = run("sandbox-lead-from-checkout", &checkout_completed("unpaid"));
    assert!(!unpaid.matched);
}

/// Events under `dir`: full envelopes, lists of them, `{"data": [...]}`-style wrappers, and
/// `data` fragments (`{"object": …}`) whose file name is the event type (a `subscription.*`
/// name standing for `customer.subscription.*`). Anything else is not an event.
fn events_in(value: Value, path: &Path) -> Vec<Value> {
    fn is_event(value: &Value) -> bool {
        value.get("type").is_some_and(Value::is_string)
            && value.pointer("/data/object").is_some_and(Value::is_object)
    }
    match value {
        Value::Array(items) => items.into_iter().filter(is_event).collect(),
        Value::Object(_) if is_event(&value) => vec![value],
        Value::Object(mut map) => {
            for key in ["event", "events", "data"] {
                if let Some(inner) = map.remove(key)
                    && (inner.is_array() || is_event(&inner))
                {
                    return events_in(inner, path);
                }
            }
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let kind = match stem.strip_prefix("subscription.") {
                Some(rest) => format!("customer.subscription.{rest}"),
                None => stem.to_owned(),
            };
            if map.get("object").is_some_and(Value::is_object)
                && crate::flow::validate::is_event_pattern(&kind)
                && kind.contains('.')
            {
                let mut event = json!({ "id": format!("evt_fragment_{stem}"), "object": "event", "type": kind, "data": Value::Object(map) });
                event["created"] = json!(1_757_980_800);
                vec![event]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn templates_preview_real_vendor_events() {
    let Some(root) = crate::vendor_specs("templates_preview_real_vendor_events") else {
        return;
    };
    let dir = Path::new(&root).join("stripe").join("events");
    let mut files = Vec::new();
    json_files(&dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no JSON files under {}", dir.display());

    let templates: Vec<(String, FlowSpec)> = builtin()
        .into_iter()
        .map(|t| {
            let spec = parse_flow(&t.instantiate("conn")).expect("valid template");
            (t.id, spec)
        })
        .collect();
    let settings = json!({ "won_stage": "Closed Won" });
    let (mut used, mut skipped_files, mut previews) = (0, 0, 0);
    // Recipes that previewed on some real event to operations with every key value present
    // (steps whose `when` is false, e.g. a contact for a charge without an e-mail, aside).
    let mut full = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            skipped_files += 1;
            continue;
        };
        let events = events_in(value, file);
        if events.is_empty() {
            skipped_files += 1;
            continue;
        }
        for event in events {
            used += 1;
            for (id, spec) in &templates {
                let matched = trigger_matches(spec, &event)
                    .unwrap_or_else(|e| panic!("{id} on {}: {e}", file.display()));
                if !matched {
                    continue;
                }
                let preview = preview(spec, &event, &settings, now())
                    .unwrap_or_else(|e| panic!("{id} on {}: {e}", file.display()));
                assert!(preview.matched, "{id} on {}", file.display());
                // Every step is rendered or skipped, unless an assert stopped the flow.
                let stopped = preview.operations.last().is_some_and(|op| {
                    op.action == Action::Assert && op.fields["passed"] == json!(false)
                });
                if !stopped {
                    assert_eq!(
                        preview.operations.len() + preview.skipped.len(),
                        spec.steps.len(),
                        "{id} on {}",
                        file.display()
                    );
                }
                assert!(
                    !preview.operations.is_empty() || !preview.skipped.is_empty(),
                    "{id} on {}",
                    file.display()
                );
                previews += 1;
                if !stopped && has_key_values(spec, &preview) {
                    full.insert(id.clone());
                }
            }
        }
    }
    println!(
        "vendor events: {} files, {used} events used, {skipped_files} files skipped, {previews} template previews",
        files.len()
    );
    assert!(used > 0, "no events found under {}", dir.display());
    // The real charge.succeeded events there carry no e-mail (billing_details.email and
    // receipt_email are null), and this recipe's one step needs it: it is skipped on them,
    // as it must be. Listed, so a real event with an e-mail turns this into a failure to fix.
    const NO_REAL_EVENT: &[&str] = &[
        "zoho-contact-from-charge",
        "salesforce-payout-reconciliation",
    ];
    // Recipes a CRM's changes start never see a Stripe event.
    let missing: Vec<&str> = templates
        .iter()
        .filter(|(_, spec)| spec.trigger.source == "stripe")
        .map(|(id, _)| id.as_str())
        .filter(|id| !full.contains(*id))
        .collect();
    assert_eq!(
        missing, NO_REAL_EVENT,
        "the recipes no real event previews with their key values"
    );
}

/// Whether every operation has what it needs to reach the CRM: upserts every `match` value
/// the step names, updates and retrieves a record id (or `match`), writes their fields;
/// none null or empty.
fn has_key_values(spec: &FlowSpec, preview: &Preview) -> bool {
    fn present(value: &Value) -> bool {
        !(value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty()))
    }
    fn all_present(map: &serde_json::Map<String, Value>) -> bool {
        !map.is_empty() && map.values().all(present)
    }
    let record_id = |op: &Operation| op.record_id.as_deref().is_some_and(|id| !id.is_empty());
    !preview.operations.is_empty()
        && preview.operations.iter().all(|op| match op.action {
            Action::Upsert => {
                let named = spec
                    .steps
                    .iter()
                    .find(|step| step.id == op.step)
                    .map_or(0, |step| step.match_fields.len());
                all_present(&op.match_fields) && op.match_fields.len() == named
            }
            Action::Update => record_id(op) || all_present(&op.match_fields),
            Action::StripeRetrieve => record_id(op),
            Action::Assert => op.fields["passed"] == json!(true),
            // Creates, emails, http calls and any other kind: every field present.
            _ => all_present(&op.fields),
        })
}

#[test]
fn every_recipe_file_is_served_under_its_own_name() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/flow/recipes");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("the recipes directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    let mut served: Vec<String> = builtin().iter().map(|t| format!("{}.yaml", t.id)).collect();
    served.sort();
    assert_eq!(files, served, "each recipes/<id>.yaml is listed in RECIPES");
    for template in builtin() {
        assert_eq!(template.flow["name"], json!(template.name));
        assert_eq!(template.flow["trigger"]["events"], json!(template.events));
        assert!(!template.description.is_empty(), "{}", template.id);
    }
}

mod lifecycle;
