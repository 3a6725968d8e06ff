//! Tests of the balance: settled charges and their balance transactions, payouts, and the
//! list of what an automatic payout paid out.

use super::*;

fn charge(id: &str, amount: i64, currency: &str) -> Value {
    json!({"id": id, "object": "charge", "amount": amount, "currency": currency,
           "created": 1_726_000_000, "description": null, "metadata": {}, "livemode": false,
           "payment_intent": null, "status": "succeeded"})
}

#[tokio::test]
async fn settled_charges_have_balance_transactions_in_the_settlement_currency() {
    let fake = FakeStripe::start();
    let eur = Settlement {
        currency: "usd",
        exchange_rate: Some(1.0832),
        fee: 344,
    };
    let txn = fake.settle_charge(charge("ch_eur", 10000, "eur"), eur);
    assert_eq!(txn["amount"], 10832);
    assert_eq!(txn["currency"], "usd");
    assert_eq!(txn["exchange_rate"], 1.0832);
    assert_eq!(txn["fee"], 344);
    assert_eq!(txn["net"], 10488);
    assert_eq!(txn["source"], "ch_eur");
    assert_eq!(txn["type"], "charge");
    // ¥5000 at 0.0067: a zero-decimal amount becomes cents.
    let yen = Settlement {
        currency: "usd",
        exchange_rate: Some(0.0067),
        fee: 127,
    };
    assert_eq!(
        fake.settle_charge(charge("ch_jpy", 5000, "jpy"), yen)["amount"],
        3350
    );
    let same = Settlement {
        currency: "USD",
        exchange_rate: None,
        fee: 30,
    };
    let usd = fake.settle_charge(charge("ch_usd", 2000, "usd"), same);
    assert_eq!(usd["exchange_rate"], Value::Null);
    assert_eq!(usd["amount"], 2000);

    let id = txn["id"].as_str().unwrap();
    let expanded = get(&fake, "/v1/charges/ch_eur?expand[]=balance_transaction").await;
    assert_eq!(expanded.status, 200);
    assert_eq!(expanded.body["balance_transaction"]["id"], id);
    assert_eq!(
        expanded.body["balance_transaction"]["exchange_rate"],
        1.0832
    );
    let by_id = get(
        &fake,
        &format!("/v1/balance_transactions/{id}?expand[]=source"),
    )
    .await;
    assert_eq!(by_id.body["amount"], 10832);
    assert_eq!(by_id.body["source"]["id"], "ch_eur");
    assert_eq!(
        get(&fake, "/v1/balance_transactions/txn_x").await.status,
        404
    );
    fake.stop().await;
}

#[tokio::test]
async fn an_automatic_payouts_transactions_are_listed_page_by_page() {
    let fake = FakeStripe::start();
    let settle = |id: &str, amount: i64| {
        let usd = Settlement {
            currency: "usd",
            exchange_rate: None,
            fee: 30,
        };
        fake.settle_charge(charge(id, amount, "usd"), usd)["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b, c) = (
        settle("ch_a", 1000),
        settle("ch_b", 2000),
        settle("ch_c", 3000),
    );
    let other = settle("ch_other", 4000);
    let payout = fake.pay_out(&[&a, &b, &c], true);
    let po = payout["id"].as_str().unwrap();
    assert_eq!(payout["amount"], 5910);
    assert_eq!(payout["status"], "paid");
    assert_eq!(payout["reconciliation_status"], "completed");
    let fetched = get(
        &fake,
        &format!("/v1/payouts/{po}?expand[]=balance_transaction"),
    )
    .await;
    assert_eq!(fetched.body["balance_transaction"]["amount"], -5910);
    assert_eq!(fetched.body["balance_transaction"]["type"], "payout");

    let path = format!("/v1/balance_transactions?payout={po}&limit=2");
    let first = get(&fake, &path).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["object"], "list");
    assert_eq!(first.body["has_more"], true);
    let mut seen = ids(&first);
    let last = seen.last().unwrap().clone();
    let second = get(&fake, &format!("{path}&starting_after={last}")).await;
    assert_eq!(second.body["has_more"], false);
    seen.extend(ids(&second));
    seen.sort();
    let mut paid = vec![a.clone(), b, c];
    paid.sort();
    assert_eq!(
        seen, paid,
        "the payout's own and other transactions are not listed"
    );
    assert!(!seen.contains(&other));

    let charges = get(
        &fake,
        &format!(
            "/v1/balance_transactions?payout={po}&type=charge&source=ch_a&expand[]=data.source"
        ),
    )
    .await;
    assert_eq!(ids(&charges), vec![a]);
    assert_eq!(charges.body["data"][0]["source"]["amount"], 1000);
    fake.stop().await;
}

#[tokio::test]
async fn the_payout_filter_refuses_manual_and_unknown_payouts() {
    let fake = FakeStripe::start();
    let usd = Settlement {
        currency: "usd",
        exchange_rate: None,
        fee: 0,
    };
    let txn = fake.settle_charge(charge("ch_m", 500, "usd"), usd);
    let manual = fake.pay_out(&[txn["id"].as_str().unwrap()], false);
    assert_eq!(manual["reconciliation_status"], "not_applicable");
    let refused = get(
        &fake,
        &format!(
            "/v1/balance_transactions?payout={}",
            manual["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["param"], "payout");
    let unknown = get(&fake, "/v1/balance_transactions?payout=po_nope").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.body["error"]["message"],
        "No such payout: 'po_nope'"
    );
    let not_data = get(&fake, "/v1/balance_transactions?expand[]=source").await;
    assert_eq!(not_data.status, 400);
    let unknown_param = get(&fake, "/v1/balance_transactions?status=available").await;
    assert_eq!(unknown_param.status, 400);
    // Without a filter: every transaction, newest first.
    assert_eq!(
        get(&fake, "/v1/balance_transactions").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    fake.stop().await;
}
