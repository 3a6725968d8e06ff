//! Payments as records: seed 002's Payment__c from charges, seed 001's HubSpot contact from a
//! PaymentIntent, and the customer-portal link of the failed-invoice Task.

use super::*;

const RECORD: &str = "salesforce-payment-record";
const HUBSPOT: &str = "hubspot-payment-intent-contact";
const FAILED_INVOICE: &str = "salesforce-payment-failed-task";

fn charge(kind: &str, status: &str) -> Value {
    let mut charge = charge_succeeded();
    charge["type"] = json!(kind);
    charge["data"]["object"]["status"] = json!(status);
    charge["data"]["object"]["metadata"]["salesforce_account_id"] = json!("001Hs00000CmAbcIAE");
    if status == "failed" {
        charge["data"]["object"]["failure_code"] = json!("card_declined");
    }
    charge
}

#[test]
fn charge_statuses_map_to_payment_statuses() {
    for (kind, status, mapped) in [
        ("charge.succeeded", "succeeded", "Completed"),
        ("charge.failed", "failed", "Failed"),
        ("charge.pending", "pending", "Pending"),
        ("charge.updated", "succeeded", "Completed"),
    ] {
        let [payment]: [Operation; 1] = run(RECORD, &charge(kind, status))
            .operations
            .try_into()
            .expect("one operation");
        assert_eq!(
            (payment.action, payment.object.as_str()),
            (Action::Upsert, "Payment__c")
        );
        assert_eq!(
            payment.match_fields,
            map(json!({"Stripe_Charge_ID__c": "ch_3Mv29vLkdTest0001"}))
        );
        assert_eq!(payment.fields["Status__c"], json!(mapped), "{kind}");
        assert_eq!(payment.fields["Amount__c"], json!(149.0));
        assert_eq!(payment.fields["Currency__c"], json!("USD"));
        assert_eq!(
            payment.fields["Payment_Date__c"],
            json!("2025-09-15T23:59:50Z")
        );
        assert_eq!(
            payment.fields["Stripe_Customer_ID__c"],
            json!("cus_QkTest0001")
        );
        assert_eq!(
            payment.fields["Stripe_Payment_Intent_ID__c"],
            json!("pi_3Mv29vLkdTest0001")
        );
        assert_eq!(payment.fields["Account__c"], json!("001Hs00000CmAbcIAE"));
        assert_eq!(
            payment.fields.contains_key("Decline_Code__c"),
            status == "failed",
            "{kind}"
        );
        assert_eq!(
            payment.fallback_fields,
            [
                "Status__c",
                "Amount__c",
                "Currency__c",
                "Payment_Date__c",
                "Stripe_Customer_ID__c"
            ]
        );
    }
    let mut failed = charge("charge.failed", "failed");
    failed["data"]["object"]["failure_code"] = json!("card_declined");
    failed["data"]["object"]["outcome"] =
        json!({"reason": "insufficient_funds", "type": "issuer_declined"});
    let payment = &run(RECORD, &failed).operations[0];
    assert_eq!(
        payment.fields["Decline_Code__c"],
        json!("insufficient_funds")
    );

    // A refunded or disputed charge keeps the status its refund or dispute gave it.
    for (field, value) in [("amount_refunded", json!(4900)), ("disputed", json!(true))] {
        let mut later = charge("charge.updated", "succeeded");
        later["data"]["object"][field] = value;
        let payment = &run(RECORD, &later).operations[0];
        assert!(!payment.fields.contains_key("Status__c"), "{field}");
        assert_eq!(payment.fields["Amount__c"], json!(149.0));
    }
}

#[test]
fn real_charges_become_payment_records() {
    for (path, status, id) in [
        (
            "supabase-stripe-sync-engine/charge_succeeded.json",
            "Completed",
            "ch_3KtQThJDPojXS6LN0YmgbxGj",
        ),
        (
            "supabase-stripe-sync-engine/charge_failed.json",
            "Failed",
            "ch_3KtoMeJDPojXS6LN0igeffJ6",
        ),
    ] {
        let Some(event) = real(path, "") else {
            return;
        };
        let payment = &run(RECORD, &event).operations[0];
        assert_eq!(payment.match_fields["Stripe_Charge_ID__c"], json!(id));
        assert_eq!(payment.fields["Status__c"], json!(status), "{path}");
        assert_eq!(
            payment.fields["Stripe_Customer_ID__c"],
            json!("cus_J7Mkgr8mvbl1eK")
        );
        assert!(
            !payment.fields.contains_key("Account__c"),
            "no account in metadata"
        );
    }
}

fn payment_intent(amount: i64, currency: &str, receipt_email: Value) -> Value {
    event(
        "payment_intent.succeeded",
        json!({
            "id": "pi_3Mv29vLkdTest0001", "object": "payment_intent", "amount": amount,
            "amount_received": amount, "currency": currency, "customer": "cus_QkTest0001",
            "latest_charge": "ch_3Mv29vLkdTest0001", "receipt_email": receipt_email,
            "status": "succeeded", "created": 1_757_980_700, "shipping": null,
            "metadata": {"company": "Stark Industries", "lifecycle_stage": "customer",
                         "deal_name": "Arc Reactor Deployment"}
        }),
        None,
    )
}

#[test]
fn a_payment_intent_writes_the_contact_with_hubspot_amounts() {
    let customer = json!({"id": "cus_QkTest0001", "object": "customer",
        "email": "Tony@StarkIndustries.com", "name": "Tony Stark", "phone": "+1-555-0100"});
    let (ops, skipped) = run_with(
        HUBSPOT,
        &payment_intent(14900, "usd", Value::Null),
        &[("customer", customer)],
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        step(&ops, "customer").record_id.as_deref(),
        Some("cus_QkTest0001")
    );
    let contact = step(&ops, "contact");
    assert_eq!(
        (contact.action, contact.object.as_str()),
        (Action::Upsert, "contacts")
    );
    assert_eq!(
        contact.match_fields,
        map(json!({"email": "tony@starkindustries.com"}))
    );
    assert_eq!(
        Value::Object(contact.fields.clone()),
        json!({
            "firstname": "Tony", "lastname": "Stark", "phone": "+1-555-0100",
            "company": "Stark Industries", "lifecyclestage": "customer",
            "hs_lead_status": "CONNECTED", "stripe_customer_id": "cus_QkTest0001",
            "last_charge_amount": "149.00"
        })
    );
    assert_eq!(contact.fallback_fields, ["email", "firstname", "lastname"]);
    let deal = step(&ops, "deal");
    assert_eq!(
        deal.match_fields,
        map(json!({"stripe_charge_id": "ch_3Mv29vLkdTest0001"}))
    );
    assert_eq!(
        Value::Object(deal.fields.clone()),
        json!({
            "amount": "149.00", "closedate": "2025-09-16T00:00:00Z",
            "deal_currency_code": "USD", "dealname": "Arc Reactor Deployment",
            "dealstage": "closedwon", "pipeline": "default"
        })
    );
    assert_eq!(deal.associate[0].id, "contact_1");

    // A receipt e-mail needs no Stripe read; a zero-decimal currency has no decimals.
    let yen = payment_intent(500_000, "jpy", json!("Pepper@Stark.com"));
    let preview = run(HUBSPOT, &yen);
    assert_eq!(preview.skipped, ["customer"]);
    let [contact, deal]: [Operation; 2] = preview.operations.try_into().expect("two operations");
    assert_eq!(contact.match_fields["email"], json!("pepper@stark.com"));
    assert_eq!(contact.fields["last_charge_amount"], json!("500000"));
    assert_eq!(deal.fields["amount"], json!("500000"));

    // No e-mail anywhere: only the deal.
    let (ops, skipped) = run_with(
        HUBSPOT,
        &payment_intent(14900, "usd", Value::Null),
        &[("customer", json!({"id": "cus_QkTest0001"}))],
    );
    assert_eq!(skipped, ["contact"]);
    assert_eq!(steps_of(&ops), ["customer", "deal"]);
}

#[test]
fn a_real_payment_intent_writes_contact_and_deal() {
    let Some(event) = real(
        "dj-stripe-legacy/payment_intent_succeeded_destination_charge.json",
        "",
    ) else {
        return;
    };
    let preview = run(HUBSPOT, &event);
    assert_eq!(preview.skipped, ["customer"], "it has a receipt e-mail");
    let [contact, deal]: [Operation; 2] = preview.operations.try_into().expect("two operations");
    assert_eq!(contact.match_fields["email"], json!("kyoung@hotmail.com"));
    assert_eq!(contact.fields["firstname"], json!("John"));
    assert_eq!(contact.fields["lastname"], json!("Foo"));
    assert_eq!(contact.fields["last_charge_amount"], json!("1902.00"));
    assert_eq!(
        contact.fields["stripe_customer_id"],
        json!("cus_6lsBvm5rJ0zyHc")
    );
    assert_eq!(
        deal.match_fields["stripe_charge_id"],
        json!("ch_fakefakefakefakefake0001")
    );
    assert_eq!(deal.fields["amount"], json!("1902.00"));
    assert_eq!(
        deal.fields["dealname"],
        json!("Stripe payment pi_1FG742B7kbjcJ8QqGKF6qIM0")
    );
}

fn failed_invoice(payment_intent: Value) -> Value {
    event(
        "invoice.payment_failed",
        json!({
            "id": "in_1QTest0001", "object": "invoice", "number": "A1B2C3D4-0007",
            "amount_due": 14900, "attempt_count": 2, "currency": "usd",
            "customer": "cus_PTest0001", "customer_email": "ap@acme.example",
            "next_payment_attempt": 1_758_189_600, "payment_intent": payment_intent,
            "subscription": "sub_1OHATest0001", "metadata": {}
        }),
        None,
    )
}

#[test]
fn a_failed_invoice_task_gains_the_customer_portal_link() {
    let intent = json!({"id": "pi_3QTest0001", "object": "payment_intent",
        "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}});
    let customer = json!({"id": "cus_PTest0001", "object": "customer",
        "metadata": {"salesforce_account_id": "001Hs00000CmAbcIAE"}});
    let portal = json!({"id": "bps_1QTest0001", "object": "billing_portal.session",
        "customer": "cus_PTest0001", "url": "https://billing.stripe.com/p/session/test_YWNjdF8x"});
    let (ops, skipped) = run_with(
        FAILED_INVOICE,
        &failed_invoice(json!("pi_3QTest0001")),
        &[
            ("payment", intent),
            ("customer", customer),
            ("portal", portal),
            ("task", json!({"id": "00T000000000101AAA"})),
        ],
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        steps_of(&ops),
        ["payment", "customer", "task", "portal", "portal_link"]
    );
    let task = step(&ops, "task");
    let description = "Stripe invoice A1B2C3D4-0007 payment failed. Amount: 149.00 USD. Reason: insufficient_funds. Attempts: 2. Next retry: 2025-09-18. Subscription: sub_1OHATest0001. Customer: ap@acme.example.";
    assert_eq!(task.fields["Description"], json!(description));
    assert_eq!(task.fields["WhatId"], json!("001Hs00000CmAbcIAE"));
    let portal = step(&ops, "portal");
    assert_eq!(
        (portal.action, portal.object.as_str()),
        (Action::StripeCreate, "billing_portal.session")
    );
    assert_eq!(
        Value::Object(portal.fields.clone()),
        json!({"customer": "cus_PTest0001"})
    );
    let link = step(&ops, "portal_link");
    assert_eq!(
        (link.action, link.object.as_str()),
        (Action::Update, "Task")
    );
    assert_eq!(link.record_id.as_deref(), Some("00T000000000101AAA"));
    assert_eq!(
        Value::Object(link.fields.clone()),
        json!({"Description": format!("{description} Customer portal: https://billing.stripe.com/p/session/test_YWNjdF8x")})
    );

    // An invoice that names its account and has no PaymentIntent reads nothing from Stripe:
    // its Task comes without a link, so an account without a secret key still gets it.
    let mut named = failed_invoice(Value::Null);
    named["data"]["object"]["metadata"] = json!({"salesforce_account_id": "001Hs00000CmAbcIAE"});
    let preview = run(FAILED_INVOICE, &named);
    assert_eq!(
        preview.skipped,
        ["payment", "customer", "portal", "portal_link"]
    );
    assert_eq!(steps_of(&preview.operations), ["task"]);
}
