//! Money across currencies and payouts, end to end against the fake Stripe: charges converted
//! into the CRM's currency at the rate Stripe applied (the charge's balance transaction), the
//! rate table as the fallback, a missing rate failing the delivery with what is missing; and
//! a payout reconciled from the balance transactions it paid out (the
//! `salesforce-payout-reconciliation` recipe, run on the sandbox).

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::stripe::{FakeStripe, SECRET_KEY, Settlement};
use tributary_tests::{Backend, Pipeline, TestApp, backends};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn spawn(backend: Backend, fake: &FakeStripe) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str())],
    )
    .await
}

/// A tenant with a sandbox connection and a Stripe account holding the fake's key.
async fn pipeline(app: &TestApp) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    app.use_stripe_key(&p, SECRET_KEY).await;
    p
}

fn charge(id: &str, amount: i64, currency: &str) -> Value {
    json!({"id": id, "object": "charge", "amount": amount, "amount_captured": amount,
           "currency": currency, "created": now(), "customer": null, "description": null,
           "billing_details": {"email": null, "name": null}, "livemode": false,
           "metadata": {}, "payment_intent": null, "status": "succeeded"})
}

/// Stores a charge Stripe settled as `settlement` and delivers its `charge.succeeded` (with
/// the balance transaction's id, as Stripe sends it); returns the finished event.
async fn settle(
    app: &TestApp,
    fake: &FakeStripe,
    p: &Pipeline,
    charge: Value,
    settlement: Settlement<'_>,
) -> Value {
    let id = charge["id"].as_str().unwrap().to_string();
    fake.settle_charge(charge, settlement);
    let object = fake.object(&id).unwrap();
    assert!(object["balance_transaction"].is_string());
    let event = FakeStripe::event("charge.succeeded", object, now());
    app.deliver(p, &event).await
}

/// The CRM is kept in USD: the charge with its balance transaction, the conversion logged,
/// the deal written with the converted amount, the rate and its source. The rate table is a
/// literal here (sandbox connections take no such setting); a tenant's recipe reads
/// `settings.exchange_rates`.
fn fx_flow(connection_id: &str) -> Value {
    // (`} }`, not `}}`: a string holding `}}` inside its expression renders as text.)
    let args = "object.currency, 'usd', steps.charge.object.balance_transaction, \
                {'gbp': {'usd': 1.27} }";
    let detail = |field: &str| format!("{{{{ (object.amount | conversion({args})).{field} }}}}");
    json!({"name": "Deals in USD", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "charge", "action": "stripe.retrieve", "object": "charge",
             "record_id": "{{ object.id }}", "expand": ["balance_transaction"]},
            {"id": "fx", "action": "log", "message": detail("description")},
            {"id": "deal", "action": "upsert", "object": "deals",
             "match": {"stripe_charge_id": "{{ object.id }}"},
             "fields": {
                 "amount_usd": format!("{{{{ object.amount | convert({args}) }}}}"),
                 "exchange_rate": detail("rate"),
                 "exchange_rate_source": detail("source"),
                 "net_usd": detail("net")}}]})
}

fn delivery<'a>(done: &'a Value, step: &str) -> &'a Value {
    done["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["step"] == step)
        .unwrap_or_else(|| panic!("no {step} delivery: {done}"))
}

async fn deal(app: &TestApp, p: &Pipeline, charge_id: &str) -> Value {
    let deals = app
        .records(&p.tenant.token, &p.connection_id, "deals")
        .await;
    deals
        .into_iter()
        .find(|d| d["fields"]["stripe_charge_id"] == charge_id)
        .unwrap_or_else(|| panic!("no deal for {charge_id}"))["fields"]
        .clone()
}

#[tokio::test]
async fn charges_are_converted_at_stripes_rate_else_the_rate_table() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app).await;
        let created = app
            .post("/v1/flows", &p.tenant.token, fx_flow(&p.connection_id))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        // 100.00 EUR settled as 108.32 USD, less 3.44 in fees.
        let usd = |exchange_rate: Option<f64>, fee: i64| Settlement {
            currency: "usd",
            exchange_rate,
            fee,
        };
        let eur = charge("ch_fx_eur", 10000, "eur");
        let done = settle(&app, &fake, &p, eur, usd(Some(1.0832), 344)).await;
        assert_eq!(done["status"], "processed", "{done}");
        let txn = fake.object("ch_fx_eur").unwrap()["balance_transaction"].clone();
        let fx = delivery(&done, "fx");
        assert_eq!(
            fx["operation"]["fields"]["message"],
            format!(
                "100.00 EUR = 108.32 USD at 1.0832, Stripe's rate and settled amount (balance transaction {})",
                txn.as_str().unwrap()
            )
        );
        let recorded = &delivery(&done, "deal")["operation"]["fields"];
        assert_eq!(recorded["amount_usd"], 108.32);
        assert_eq!(recorded["exchange_rate"], 1.0832);
        assert_eq!(recorded["exchange_rate_source"], "stripe");
        assert_eq!(recorded["net_usd"], 104.88);
        assert_eq!(deal(&app, &p, "ch_fx_eur").await["amount_usd"], 108.32);
        let asked: Vec<String> = fake
            .requests()
            .all()
            .into_iter()
            .map(|r| r.path)
            .filter(|path| path.starts_with("/v1/charges/ch_fx_eur"))
            .collect();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(asked[0].contains("balance_transaction"), "{asked:?}");

        // ¥5000 settled as $33.50: a zero-decimal amount in cents.
        let yen = charge("ch_fx_jpy", 5000, "jpy");
        let done = settle(&app, &fake, &p, yen, usd(Some(0.0067), 127)).await;
        assert_eq!(done["status"], "processed", "{done}");
        let fields = deal(&app, &p, "ch_fx_jpy").await;
        assert_eq!(fields["amount_usd"], 33.5);
        assert_eq!(fields["net_usd"], 32.23);

        // Settled in GBP, not USD: the table's rate, and no Stripe fee in USD to record.
        let gbp = Settlement {
            currency: "gbp",
            exchange_rate: None,
            fee: 50,
        };
        let done = settle(&app, &fake, &p, charge("ch_fx_gbp", 2000, "gbp"), gbp).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            delivery(&done, "fx")["operation"]["fields"]["message"],
            "20.00 GBP = 25.40 USD at 1.27 from the exchange rate table"
        );
        let fields = deal(&app, &p, "ch_fx_gbp").await;
        assert_eq!(fields["amount_usd"], 25.4);
        assert_eq!(fields["exchange_rate_source"], "rate_table");
        assert!(fields.get("net_usd").is_none(), "{fields}");

        // No rate anywhere: the delivery fails, saying what is missing; nothing is written.
        let chf = Settlement {
            currency: "chf",
            exchange_rate: None,
            fee: 40,
        };
        let done = settle(&app, &fake, &p, charge("ch_fx_chf", 3000, "chf"), chf).await;
        assert_eq!(done["status"], "failed", "{done}");
        let fx = delivery(&done, "fx");
        assert_eq!(fx["status"], "dead", "{fx}");
        let message = fx["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("no exchange rate for CHF → USD"),
            "{message}"
        );
        assert!(message.contains("Stripe settled it in CHF"), "{message}");
        assert!(
            message.contains("neither chf → usd nor usd → chf"),
            "{message}"
        );
        let deals = app
            .records(&p.tenant.token, &p.connection_id, "deals")
            .await;
        assert_eq!(deals.len(), 3, "{deals:?}");

        fake.stop().await;
        cleanup.run().await;
    }
}

/// The built-in payout recipe, for the pipeline's connection.
async fn payout_recipe(app: &TestApp, p: &Pipeline) -> Value {
    let templates = app.get("/v1/flow-templates", &p.tenant.token).await;
    let template = templates.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "salesforce-payout-reconciliation")
        .expect("the payout reconciliation recipe is served")
        .clone();
    assert_eq!(
        template["events"],
        json!(["payout.paid", "payout.reconciliation_completed"])
    );
    let mut flow = template["flow"].clone();
    flow["connection_id"] = json!(p.connection_id);
    flow
}

/// 104 charges of 10.00 to 11.03 USD (0.30 fees each) and a 5.00 refund, paid out together
/// (two pages of Stripe's list); another charge is not in the payout. Returns the payout and
/// the ids of its charges.
fn automatic_payout(fake: &FakeStripe) -> (Value, Vec<String>) {
    let usd = Settlement {
        currency: "usd",
        exchange_rate: None,
        fee: 30,
    };
    let mut transactions = Vec::new();
    let mut charges = Vec::new();
    for i in 0..104 {
        let id = format!("ch_po_{i:03}");
        let txn = fake.settle_charge(charge(&id, 1000 + i, "usd"), usd);
        transactions.push(txn["id"].as_str().unwrap().to_string());
        charges.push(id);
    }
    fake.settle_charge(charge("ch_po_later", 9900, "usd"), usd);
    fake.put(
        json!({"id": "txn_po_refund", "object": "balance_transaction", "amount": -500,
        "available_on": now(), "created": now(), "currency": "usd", "description": null,
        "exchange_rate": null, "fee": 0, "fee_details": [], "net": -500,
        "reporting_category": "refund", "source": "re_po_1", "status": "available",
        "type": "refund"}),
    );
    transactions.push("txn_po_refund".into());
    let ids: Vec<&str> = transactions.iter().map(String::as_str).collect();
    (fake.pay_out(&ids, true), charges)
}

#[tokio::test]
async fn a_payout_is_reconciled_from_the_balance_transactions_it_paid_out() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app).await;
        let flow = payout_recipe(&app, &p).await;
        reconcile(&app, &fake, &p, flow).await;
        fake.stop().await;
        cleanup.run().await;
    }
}

/// Runs the payout recipe (`flow`, with the pipeline's connection) on an automatic payout, a
/// repeat of it, and a manual payout.
async fn reconcile(app: &TestApp, fake: &FakeStripe, p: &Pipeline, flow: Value) {
    let token = &p.tenant.token;
    let created = app.post("/v1/flows", token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let (payout, charges) = automatic_payout(fake);
    let po = payout["id"].as_str().unwrap().to_string();
    assert_eq!(payout["amount"], 105_736);
    // Three of its charges have a Payment__c already (the payment-record recipe's).
    app.flow_from_template(p, "salesforce-payment-record").await;
    for (i, id) in charges.iter().take(3).enumerate() {
        let paid = charge(id, 1000 + i as i64, "usd");
        let done = app
            .deliver(p, &FakeStripe::event("charge.succeeded", paid, now()))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
    }

    let done = app
        .deliver(p, &FakeStripe::event("payout.paid", payout.clone(), now()))
        .await;
    assert_eq!(done["status"], "processed", "{done}");
    let settled = delivery(&done, "settled");
    assert_eq!(settled["status"], "succeeded", "{settled}");
    assert_eq!(settled["crm_record_id"], po.as_str());
    assert_eq!(delivery(&done, "complete")["status"], "succeeded");
    assert_eq!(delivery(&done, "payout")["status"], "succeeded");
    let summary = &delivery(&done, "summary")["operation"]["fields"]["message"];
    let summary = summary.as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "Payout {po} of 1057.36 USD settled 104 payments: 1093.56 gross, 31.20 fees, 1062.36 net;"
        )),
        "{summary}"
    );

    let records = app
        .records(token, &p.connection_id, "Stripe_Payout__c")
        .await;
    assert_eq!(records.len(), 1, "{records:?}");
    let fields = &records[0]["fields"];
    assert_eq!(fields["Stripe_Payout_ID__c"], po.as_str());
    assert_eq!(fields["Amount__c"], 1057.36);
    assert_eq!(fields["Currency__c"], "USD");
    assert_eq!(fields["Status__c"], "paid");
    assert_eq!(fields["Payment_Count__c"], 104);
    assert_eq!(fields["Gross__c"], 1093.56);
    assert_eq!(fields["Fee__c"], 31.2);
    assert_eq!(fields["Net__c"], 1062.36);
    assert_eq!(fields["Other__c"], -5.0);
    let mut listed: Vec<&str> = fields["Charge_IDs__c"].as_str().unwrap().lines().collect();
    listed.sort();
    assert_eq!(
        listed, charges,
        "every charge of the payout, and only those"
    );

    marked_payments(app, p, &done, &po, &charges).await;

    // Stripe's list, read whole: two pages of 100.
    let pages: Vec<String> = fake
        .requests()
        .all()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/balance_transactions?"))
        .map(|r| r.path)
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|path| path.contains(&format!("payout={po}")))
    );
    assert!(pages[1].contains("starting_after="), "{pages:?}");

    // Reconciliation completed later: the same record, written again.
    let again = FakeStripe::event("payout.reconciliation_completed", payout, now());
    assert_eq!(app.deliver(p, &again).await["status"], "processed");
    let records = app
        .records(token, &p.connection_id, "Stripe_Payout__c")
        .await;
    assert_eq!(records.len(), 1, "{records:?}");

    // A manual payout has no list of what it paid out: the flow does not run.
    let usd = Settlement {
        currency: "usd",
        exchange_rate: None,
        fee: 0,
    };
    let txn = fake.settle_charge(charge("ch_po_manual", 700, "usd"), usd);
    let manual = fake.pay_out(&[txn["id"].as_str().unwrap()], false);
    let done = app
        .deliver(p, &FakeStripe::event("payout.paid", manual, now()))
        .await;
    assert!(
        done["deliveries"].as_array().is_none_or(|d| d.is_empty()),
        "{done}"
    );
}

/// Each charge of the payout was looked up; the three with a Payment__c carry the payout,
/// their fee and net; no Payment__c was made for the others.
async fn marked_payments(app: &TestApp, p: &Pipeline, done: &Value, po: &str, charges: &[String]) {
    let steps: Vec<&str> = done["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["step"].as_str())
        .collect();
    let looked_up = steps.iter().filter(|s| s.starts_with("payments[")).count();
    assert_eq!(looked_up, 104, "{steps:?}");
    let marked = steps.iter().filter(|s| s.starts_with("mark[")).count();
    assert_eq!(marked, 3, "{steps:?}");
    let mut payments = app
        .records(&p.tenant.token, &p.connection_id, "Payment__c")
        .await;
    assert_eq!(payments.len(), 3, "{payments:?}");
    payments.sort_by_key(|r| {
        r["fields"]["Stripe_Charge_ID__c"]
            .as_str()
            .map(str::to_string)
    });
    for (i, payment) in payments.iter().enumerate() {
        let fields = &payment["fields"];
        assert_eq!(fields["Stripe_Charge_ID__c"], charges[i].as_str());
        assert_eq!(fields["Stripe_Payout_ID__c"], po, "{payment}");
        assert_eq!(fields["Fee__c"], 0.3, "{payment}");
        let net = (1000 + i as i64 - 30) as f64 / 100.0;
        assert_eq!(fields["Net__c"], net, "{payment}");
    }
}

#[tokio::test]
async fn a_payouts_list_is_read_page_by_page_up_to_a_thousand_items() {
    for backend in backends() {
        let fake = FakeStripe::start();
        let app = spawn(backend, &fake).await;
        let cleanup = app.cleanup_handle();
        let p = pipeline(&app).await;
        let usd = Settlement {
            currency: "usd",
            exchange_rate: None,
            fee: 0,
        };
        let transactions: Vec<String> = (0..1001)
            .map(|i| {
                let txn = fake.settle_charge(charge(&format!("ch_many_{i}"), 100, "usd"), usd);
                txn["id"].as_str().unwrap().to_string()
            })
            .collect();
        let ids: Vec<&str> = transactions.iter().map(String::as_str).collect();
        let payout = fake.pay_out(&ids, true);
        let flow = json!({"name": "Payout list", "connection_id": p.connection_id,
            "trigger": {"events": ["payout.paid"]},
            "steps": [
                {"id": "settled", "action": "stripe.retrieve", "object": "balance_transactions",
                 "record_id": "{{ object.id }}"},
                {"id": "count", "action": "log",
                 "message": "{{ steps.settled.object.data | length }} read, more: {{ steps.settled.object.has_more }}"}]});
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let done = app
            .deliver(&p, &FakeStripe::event("payout.paid", payout, now()))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            delivery(&done, "count")["operation"]["fields"]["message"],
            "1000 read, more: True"
        );
        let pages = fake
            .requests()
            .all()
            .into_iter()
            .filter(|r| r.path.starts_with("/v1/balance_transactions?"))
            .count();
        assert_eq!(pages, 10);

        // A list's expand names its items' fields.
        let flat = json!({"name": "Flat", "connection_id": p.connection_id,
            "trigger": {"events": ["payout.paid"]},
            "steps": [{"id": "settled", "action": "stripe.retrieve",
                       "object": "balance_transactions", "record_id": "{{ object.id }}",
                       "expand": ["source"]}]});
        let refused = app.post("/v1/flows", &p.tenant.token, flat).await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["steps[0].expand[0]"]);
        fake.stop().await;
        cleanup.run().await;
    }
}
