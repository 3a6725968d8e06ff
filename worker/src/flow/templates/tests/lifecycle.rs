//! The payment-lifecycle recipes (seeds 001, 002, 004) rendered against real Stripe payloads
//! from the vendor specs, where one exists, and against events shaped like them. Steps that
//! read from Stripe get the object Stripe would answer with, as the engine gives it to later
//! steps, so what a run writes is checked, not only what a preview shows.

use std::collections::BTreeMap;

use super::*;
use crate::flow::{RenderContext, render_step};

mod payments;

/// A real event of the vendor specs (`stripe/events/<path>`); a `data` fragment (pay-rails)
/// becomes an event of type `kind`. `None` when the vendor specs are not there (a skip).
pub(super) fn real(path: &str, kind: &str) -> Option<Value> {
    let root = crate::vendor_specs(path)?;
    let file = root.join("stripe").join("events").join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let value: Value = serde_json::from_str(&text).expect("a real payload parses");
    Some(if value.get("type").is_some() {
        value
    } else {
        let mut event = event(kind, value["object"].clone(), None);
        event["data"] = value;
        event
    })
}

/// What a run of recipe `id` does with `event`: its operations in order and the steps it
/// skipped. A step named in `answers` answers with that object (a `stripe.*` step's Stripe
/// object, a write's record `{"id": …}`); other steps get `<step>_1` as their record id.
pub(super) fn run_with(
    id: &str,
    event: &Value,
    answers: &[(&str, Value)],
) -> (Vec<Operation>, Vec<String>) {
    let spec = spec(id);
    assert!(
        trigger_matches(&spec, event).expect("the trigger evaluates"),
        "{id} does not match {}",
        event["type"]
    );
    let mut ctx = RenderContext {
        event: event.clone(),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: json!({}),
        now: now(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    };
    let (mut operations, mut skipped) = (Vec::new(), Vec::new());
    for step in &spec.steps {
        match render_step(step, &ctx).unwrap_or_else(|e| panic!("{id}: {e}")) {
            Some(op) => {
                let answer = answers
                    .iter()
                    .find(|(name, _)| *name == step.id)
                    .map(|(_, object)| object.clone());
                let record = answer
                    .as_ref()
                    .and_then(|a| a["id"].as_str())
                    .map_or_else(|| format!("{}_1", step.id), str::to_string);
                ctx.finished(step, Some(record), answer);
                operations.push(op);
            }
            None => skipped.push(step.id.clone()),
        }
    }
    (operations, skipped)
}

/// The operation of step `id`.
pub(super) fn step<'a>(operations: &'a [Operation], id: &str) -> &'a Operation {
    operations
        .iter()
        .find(|op| op.step == id)
        .unwrap_or_else(|| panic!("no {id} in {operations:?}"))
}

fn steps_of(operations: &[Operation]) -> Vec<&str> {
    operations.iter().map(|op| op.step.as_str()).collect()
}

const REFUNDS: &str = "salesforce-refunds-and-disputes";
const CHURN: &str = "salesforce-failed-payments-and-cancellations";

/// The charge Stripe answers a refund's or dispute's `charge` with, its Customer expanded.
fn stark_charge(amount_refunded: i64) -> Value {
    json!({
        "id": "ch_3PgTRb5TribDemo90Stark01", "object": "charge", "amount": 14900,
        "amount_refunded": amount_refunded, "refunded": amount_refunded >= 14900,
        "currency": "usd", "status": "succeeded", "metadata": {},
        "customer": {"id": "cus_QXtRb8StarkInd1", "object": "customer",
                     "metadata": {"salesforce_account_id": "001Hs00000CmAbcIAE"}}
    })
}

#[test]
fn a_real_refund_marks_the_payment_refunded_with_a_task() {
    let Some(refunded) = real("supabase-stripe-sync-engine/charge_refunded.json", "") else {
        return;
    };
    let customer = json!({"id": "cus_J7Mkgr8mvbl1eK", "object": "customer",
                          "metadata": {"salesforce_account_id": "001Hs00000CmAbcIAE"}});
    let (ops, skipped) = run_with(REFUNDS, &refunded, &[("customer", customer)]);
    assert_eq!(steps_of(&ops), ["customer", "payment", "task"]);
    assert_eq!(skipped, ["charge"], "a charge event carries its charge");
    assert_eq!(
        step(&ops, "customer").record_id.as_deref(),
        Some("cus_J7Mkgr8mvbl1eK")
    );
    let payment = step(&ops, "payment");
    assert_eq!(
        (payment.action, payment.object.as_str()),
        (Action::Upsert, "Payment__c")
    );
    assert_eq!(
        payment.match_fields,
        map(json!({ "Stripe_Charge_ID__c": "ch_3Kl36gJDPojXS6LN0DCM4A8l" }))
    );
    assert_eq!(
        Value::Object(payment.fields.clone()),
        json!({"Status__c": "Refunded", "Amount__c": 25.0, "Amount_Refunded__c": 25.0,
               "Currency__c": "USD", "Stripe_Customer_ID__c": "cus_J7Mkgr8mvbl1eK"})
    );
    let task = step(&ops, "task");
    assert_eq!(
        (task.action, task.object.as_str()),
        (Action::Create, "Task")
    );
    assert_eq!(
        Value::Object(task.fields.clone()),
        json!({
            "Subject": "Stripe refund - charge fully refunded",
            "Description": "Stripe charge ch_3Kl36gJDPojXS6LN0DCM4A8l (25.00 USD) was refunded 25.00 USD in total. Latest refund re_3Kl36gJDPojXS6LN0eP4yPDz: 25.00 USD, reason: not given. Customer: cus_J7Mkgr8mvbl1eK.",
            "Priority": "Normal",
            "Status": "Not Started",
            "ActivityDate": "2025-09-17",
            "WhatId": "001Hs00000CmAbcIAE"
        })
    );
}

#[test]
fn a_partial_refund_is_partially_refunded_and_the_charge_names_the_account() {
    let mut partial = event(
        "charge.refunded",
        json!({"id": "ch_3PgTRb5TribDemo90Stark01", "object": "charge", "amount": 14900,
               "amount_refunded": 4900, "refunded": false, "currency": "usd",
               "customer": "cus_QXtRb8StarkInd1", "status": "succeeded",
               "metadata": {"salesforce_account_id": "001Hs00000CmAbcIAE"}}),
        Some(json!({"amount_refunded": 0})),
    );
    let (ops, skipped) = run_with(REFUNDS, &partial, &[]);
    assert_eq!(
        skipped,
        ["charge", "customer"],
        "the charge names its account"
    );
    assert_eq!(
        step(&ops, "payment").fields["Status__c"],
        json!("Partially Refunded")
    );
    assert_eq!(
        step(&ops, "payment").fields["Amount_Refunded__c"],
        json!(49.0)
    );
    let task = step(&ops, "task");
    assert_eq!(
        task.fields["Subject"],
        json!("Stripe refund - charge partially refunded")
    );
    assert_eq!(task.fields["WhatId"], json!("001Hs00000CmAbcIAE"));

    // The pay-rails fragment of a real partial refund: 5.00 of 15.00.
    if let Some(real) = real(
        "pay-rails-data-fragments/charge.refunded.json",
        "charge.refunded",
    ) {
        partial = real;
        let (ops, _) = run_with(REFUNDS, &partial, &[("customer", json!({"metadata": {}}))]);
        let payment = step(&ops, "payment");
        assert_eq!(
            payment.match_fields["Stripe_Charge_ID__c"],
            json!("ch_chargeid")
        );
        assert_eq!(payment.fields["Status__c"], json!("Partially Refunded"));
        assert_eq!(payment.fields["Amount_Refunded__c"], json!(5.0));
        assert!(
            !step(&ops, "task").fields.contains_key("WhatId"),
            "no account anywhere"
        );
    }
}

fn refund_updated(status: &str) -> Value {
    // The real refund.updated payload, as Stripe's older charge.refund.updated carries it.
    let object = json!({
        "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ", "object": "refund", "amount": 1000,
        "charge": "ch_3PgTRb5TribDemo90Stark01", "created": 1_692_942_318, "currency": "usd",
        "metadata": {}, "payment_intent": "pi_1GszsK2eZvKYlo2CfhZyoZLp", "reason": null,
        "status": status
    });
    let mut refund = event("charge.refund.updated", object, None);
    if status == "failed" {
        refund["data"]["object"]["failure_reason"] = json!("expired_or_canceled_card");
    }
    refund
}

#[test]
fn a_refund_update_reads_its_charge_and_alerts_only_when_it_failed() {
    if let Some(mut real) = real("supabase-stripe-sync-engine/refund_updated.json", "") {
        real["type"] = json!("charge.refund.updated");
        let preview = run(REFUNDS, &real);
        let [charge, payment]: [Operation; 2] =
            preview.operations.try_into().expect("two operations");
        assert_eq!(
            (charge.action, charge.object.as_str()),
            (Action::StripeRetrieve, "charge")
        );
        assert_eq!(
            charge.record_id.as_deref(),
            Some("ch_1NirD82eZvKYlo2CIvbtLWuY")
        );
        assert_eq!(charge.expand, ["customer"]);
        assert_eq!(
            payment.match_fields["Stripe_Charge_ID__c"],
            json!("ch_1NirD82eZvKYlo2CIvbtLWuY")
        );
        assert_eq!(
            preview.skipped,
            ["customer", "task"],
            "a succeeded refund is no alert"
        );
    }

    let (ops, skipped) = run_with(
        REFUNDS,
        &refund_updated("succeeded"),
        &[("charge", stark_charge(1000))],
    );
    assert_eq!(skipped, ["customer", "task"]);
    assert_eq!(
        Value::Object(step(&ops, "payment").fields.clone()),
        json!({"Status__c": "Partially Refunded", "Amount__c": 149.0, "Amount_Refunded__c": 10.0,
               "Currency__c": "USD", "Stripe_Customer_ID__c": "cus_QXtRb8StarkInd1"})
    );

    // The refund failed: the charge has nothing refunded again, and the account team hears.
    let (ops, _) = run_with(
        REFUNDS,
        &refund_updated("failed"),
        &[("charge", stark_charge(0))],
    );
    assert_eq!(
        step(&ops, "payment").fields["Status__c"],
        json!("Completed")
    );
    let task = step(&ops, "task");
    assert_eq!(task.fields["Subject"], json!("Stripe refund failed"));
    assert_eq!(
        task.fields["Description"],
        json!(
            "Stripe refund re_1Nispe2eZvKYlo2Cd31jOCgZ of charge ch_3PgTRb5TribDemo90Stark01 (10.00 USD) is failed: expired or canceled card. Reason: not given. Customer: cus_QXtRb8StarkInd1."
        )
    );
    assert_eq!(task.fields["Priority"], json!("Normal"));
    assert_eq!(
        task.fields["WhatId"],
        json!("001Hs00000CmAbcIAE"),
        "from the charge's Customer"
    );
}

#[test]
fn a_real_dispute_is_a_high_priority_task_due_by_the_evidence_deadline() {
    let Some(created) = real(
        "supabase-stripe-sync-engine/charge_dispute_created.json",
        "",
    ) else {
        return;
    };
    let (ops, skipped) = run_with(REFUNDS, &created, &[("charge", stark_charge(0))]);
    assert_eq!(steps_of(&ops), ["charge", "payment", "task"]);
    assert_eq!(skipped, ["customer"]);
    assert_eq!(
        step(&ops, "charge").record_id.as_deref(),
        Some("ch_1IqtGAJDPojXS6LNstgEfUji")
    );
    let payment = step(&ops, "payment");
    assert_eq!(
        payment.match_fields["Stripe_Charge_ID__c"],
        json!("ch_1IqtGAJDPojXS6LNstgEfUji")
    );
    assert_eq!(
        Value::Object(payment.fields.clone()),
        json!({"Status__c": "Disputed", "Amount__c": 149.0, "Amount_Disputed__c": 10.0,
               "Currency__c": "USD", "Stripe_Customer_ID__c": "cus_QXtRb8StarkInd1"})
    );
    let task = step(&ops, "task");
    assert_eq!(
        Value::Object(task.fields.clone()),
        json!({
            "Subject": "Stripe dispute opened - respond by 2023-01-21",
            "Description": "Stripe charge ch_1IqtGAJDPojXS6LNstgEfUji is disputed: 10.00 USD, reason: general, status: warning needs response. Submit evidence in the Stripe Dashboard by 2023-01-21. Dispute: dp_1MLuxQJDPojXS6LNrukJCBBG. Customer: cus_QXtRb8StarkInd1.",
            "Priority": "High",
            "Status": "Not Started",
            "ActivityDate": "2023-01-21",
            "WhatId": "001Hs00000CmAbcIAE"
        })
    );

    // Preview, with nothing fetched: the dispute's own values, no account.
    let preview = run(REFUNDS, &created);
    assert_eq!(preview.operations.len(), 3);
    assert_eq!(
        Value::Object(preview.operations[1].fields.clone()),
        json!({"Status__c": "Disputed", "Amount_Disputed__c": 10.0, "Currency__c": "USD"})
    );
}

#[test]
fn a_closed_dispute_says_won_lost_or_closed() {
    let closed = |status: &str| {
        let mut dispute = real("supabase-stripe-sync-engine/charge_dispute_closed.json", "")
            .unwrap_or_else(|| {
                event(
                    "charge.dispute.closed",
                    json!({"id": "dp_1MLuxQJDPojXS6LNrukJCBBG", "object": "dispute",
                           "amount": 1000, "charge": "ch_1IqtGAJDPojXS6LNstgEfUji",
                           "currency": "usd", "reason": "general", "metadata": {},
                           "evidence_details": {"due_by": 1_674_345_599}}),
                    None,
                )
            });
        if !status.is_empty() {
            dispute["data"]["object"]["status"] = json!(status);
        }
        run_with(REFUNDS, &dispute, &[("charge", stark_charge(0))]).0
    };
    for (status, payment_status, subject, task_status) in [
        ("won", "Dispute Won", "Stripe dispute won", "Completed"),
        ("lost", "Dispute Lost", "Stripe dispute lost", "Not Started"),
        (
            "warning_closed",
            "Dispute Closed",
            "Stripe dispute closed",
            "Not Started",
        ),
    ] {
        let ops = closed(status);
        assert_eq!(
            step(&ops, "payment").fields["Status__c"],
            json!(payment_status)
        );
        let task = step(&ops, "task");
        assert_eq!(task.fields["Subject"], json!(subject));
        assert_eq!(task.fields["Status"], json!(task_status));
        assert_eq!(task.fields["Priority"], json!("High"));
        assert_eq!(
            task.fields["ActivityDate"],
            json!("2025-09-16"),
            "today, not the deadline"
        );
        let description = task.fields["Description"].as_str().unwrap();
        assert!(!description.contains("Submit evidence"), "{description}");
    }
}

#[test]
fn a_real_failed_charge_is_a_failed_payment_with_its_decline_code() {
    let Some(failed) = real("supabase-stripe-sync-engine/charge_failed.json", "") else {
        return;
    };
    let preview = run(CHURN, &failed);
    assert_eq!(
        preview.skipped,
        ["customer", "account", "task", "alert"],
        "no follow-up for a charge"
    );
    let [payment]: [Operation; 1] = preview.operations.try_into().expect("one operation");
    assert_eq!(
        (payment.action, payment.object.as_str()),
        (Action::Upsert, "Payment__c")
    );
    assert_eq!(
        payment.match_fields["Stripe_Charge_ID__c"],
        json!("ch_3KtoMeJDPojXS6LN0igeffJ6")
    );
    assert_eq!(
        Value::Object(payment.fields),
        json!({
            "Status__c": "Failed",
            "Decline_Code__c": "transaction_not_allowed",
            "Failure_Message__c": "Your card does not support this type of purchase.",
            "Amount__c": 25.0,
            "Currency__c": "USD",
            "Payment_Date__c": "2022-04-29T07:35:44Z",
            "Stripe_Customer_ID__c": "cus_J7Mkgr8mvbl1eK"
        })
    );
    // Without the issuer's code, Stripe's failure code.
    let mut generic = failed.clone();
    generic["data"]["object"]["outcome"]["reason"] = Value::Null;
    let payment = &run(CHURN, &generic).operations[0];
    assert_eq!(payment.fields["Decline_Code__c"], json!("card_declined"));
}

#[test]
fn a_real_cancellation_is_a_task_for_the_csm_and_a_notice() {
    let Some(deleted) = real("supabase-stripe-sync-engine/subscription_deleted.json", "") else {
        return;
    };
    let customer = json!({"id": "cus_IhGfebO16cMIGN", "object": "customer", "name": "Initech",
        "metadata": {"salesforce_account_id": "001Hs00000CmInitAAA",
                     "salesforce_csm_id": "005Hs00000CsmAAA"}});
    let (ops, skipped) = run_with(
        CHURN,
        &deleted,
        &[
            ("customer", customer),
            ("task", json!({"id": "00T000000000101AAA"})),
        ],
    );
    assert_eq!(steps_of(&ops), ["customer", "task", "alert"]);
    assert_eq!(
        skipped,
        ["payment", "account"],
        "the Customer names the CSM"
    );
    assert_eq!(
        step(&ops, "customer").record_id.as_deref(),
        Some("cus_IhGfebO16cMIGN")
    );
    let task = step(&ops, "task");
    assert_eq!(
        Value::Object(task.fields.clone()),
        json!({
            "Subject": "Subscription Canceled - Customer Success Follow-up",
            "Description": "Stripe subscription sub_JdIzvfy6o5GZRd of customer Initech was canceled on 2021-06-08. Status: canceled. Reason: not given.",
            "Priority": "High",
            "Status": "Not Started",
            "ActivityDate": "2025-09-17",
            "WhatId": "001Hs00000CmInitAAA",
            "OwnerId": "005Hs00000CsmAAA"
        })
    );
    let alert = step(&ops, "alert");
    assert_eq!((alert.action, alert.object.as_str()), (Action::Notify, ""));
    assert_eq!(
        Value::Object(alert.fields.clone()),
        json!({
            "subject": "Subscription canceled",
            "message": "Stripe subscription sub_JdIzvfy6o5GZRd of customer Initech was canceled. Reason: not given. Salesforce follow-up task: 00T000000000101AAA.",
            "subscription_id": "sub_JdIzvfy6o5GZRd",
            "customer_id": "cus_IhGfebO16cMIGN",
            "salesforce_account_id": "001Hs00000CmInitAAA",
            "salesforce_task_id": "00T000000000101AAA"
        })
    );
}

fn cancel_update(now_set: bool, previous: Value, metadata: Value) -> Value {
    let mut object = subscription("active", metadata);
    object["cancel_at_period_end"] = json!(now_set);
    object["cancel_at"] = json!(1_760_572_800);
    object["cancellation_details"] = json!({"comment": "Moving to an in-house tool", "feedback": "switched_service", "reason": "cancellation_requested"});
    event("customer.subscription.updated", object, Some(previous))
}

#[test]
fn a_scheduled_cancellation_alerts_once_and_other_updates_do_not() {
    let ids = json!({"salesforce_account_id": "001Hs00000CmAbcIAE", "salesforce_csm_id": "005Hs00000CsmAAA"});
    let scheduled = cancel_update(
        true,
        json!({"cancel_at_period_end": false, "cancel_at": null}),
        ids.clone(),
    );
    let (ops, skipped) = run_with(CHURN, &scheduled, &[]);
    assert_eq!(
        skipped,
        ["payment", "customer", "account"],
        "the subscription names account and CSM"
    );
    let task = step(&ops, "task");
    assert_eq!(
        task.fields["Subject"],
        json!("Subscription Set to Cancel - Customer Success Follow-up")
    );
    assert_eq!(
        task.fields["Description"],
        json!(
            "Stripe subscription sub_1OHATest0001 of customer cus_PTest0001 is set to cancel at the end of its period, on 2025-10-16. Status: active. Reason: cancellation requested. Feedback: switched service. Comment: Moving to an in-house tool"
        )
    );
    assert_eq!(task.fields["OwnerId"], json!("005Hs00000CsmAAA"));
    assert_eq!(
        step(&ops, "alert").fields["subject"],
        json!("Subscription set to cancel")
    );

    // No CSM anywhere: the Task is left to Salesforce, which gives it the account's owner.
    let no_csm = cancel_update(true, json!({"cancel_at_period_end": false}), json!({}));
    let customer =
        json!({"id": "cus_PTest0001", "metadata": {"salesforce_account_id": "001Hs00000CmAbcIAE"}});
    let (ops, _) = run_with(CHURN, &no_csm, &[("customer", customer)]);
    let task = step(&ops, "task");
    assert_eq!(task.fields["WhatId"], json!("001Hs00000CmAbcIAE"));
    assert!(!task.fields.contains_key("OwnerId"), "{:?}", task.fields);

    // Updates that do not newly set cancel_at_period_end: nothing runs at all.
    for (now_set, previous) in [
        (true, json!({"metadata": {"plan": null}})),
        (true, json!({"cancel_at_period_end": true})),
        (false, json!({"cancel_at_period_end": true})),
        (false, json!({"status": "trialing"})),
    ] {
        let update = cancel_update(now_set, previous.clone(), ids.clone());
        let preview = run(CHURN, &update);
        assert!(!preview.matched, "{previous}");
        assert!(preview.operations.is_empty(), "{previous}");
    }
    if let Some(real) = real("supabase-stripe-sync-engine/subscription_updated.json", "") {
        assert!(
            !run(CHURN, &real).matched,
            "a metadata change is no cancellation"
        );
    }
}
