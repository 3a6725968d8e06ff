//! The fake Stripe's balance: each settled charge's balance transaction (its amount, fee and
//! net in the account's settlement currency, with the `exchange_rate` when the charge was in
//! another currency), automatic and manual payouts, and the list of the balance transactions an
//! automatic payout paid out (`GET /v1/balance_transactions?payout=…`).
//!
//! Written from the 2023-09-12 spec: `exchange_rate` converts the charge currency's amount into
//! the transaction's `amount` (10.00 EUR × 1.234 = 12.34 USD: `amount` 1234, `currency` usd);
//! the `payout` filter answers for automatic payouts only; `reconciliation_status` is
//! `completed` once that list may be read.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::answer::{invalid, no_such};
use super::lists::{cursor_param, limit_param, list, paginate};
use super::objects::expand;
use super::params::{string_param, stripe_id};
use super::writes::only_params;
use super::{Answer, FakeStripe, State};

/// Stripe's zero- and three-decimal currencies (the others have two), as the worker's filters
/// know them: a charge's `amount` is in the currency's smallest unit.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

fn decimals(currency: &str) -> i32 {
    let code = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&code.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&code.as_str()) {
        3
    } else {
        2
    }
}

/// How Stripe settled a charge into the account's balance.
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    /// The account's settlement currency: the balance transaction's `currency`.
    pub currency: &'a str,
    /// Major units of the settlement currency per major unit of the charge's; required when
    /// the currencies differ, ignored when they are the same.
    pub exchange_rate: Option<f64>,
    /// Stripe's fee, in minor units of the settlement currency.
    pub fee: i64,
}

/// The balance transaction of `charge` settled as `settlement`.
fn charge_transaction(charge: &Value, settlement: Settlement<'_>) -> Value {
    let charged = charge["amount_captured"]
        .as_i64()
        .or_else(|| charge["amount"].as_i64())
        .expect("a charge has an integer `amount`");
    let currency = charge["currency"]
        .as_str()
        .expect("a charge has a `currency`")
        .to_ascii_lowercase();
    let settled = settlement.currency.to_ascii_lowercase();
    let (amount, rate) = if currency == settled {
        (charged, None)
    } else {
        let rate = settlement
            .exchange_rate
            .expect("a charge settled in another currency needs an exchange rate");
        let major = charged as f64 / 10f64.powi(decimals(&currency));
        let amount = (major * rate * 10f64.powi(decimals(&settled))).round() as i64;
        (amount, Some(rate))
    };
    let created = charge["created"]
        .as_i64()
        .unwrap_or_else(|| Utc::now().timestamp());
    json!({
        "id": stripe_id("txn_"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 2 * 86_400,
        "created": created,
        "currency": settled,
        "description": charge["description"].clone(),
        "exchange_rate": rate,
        "fee": settlement.fee,
        "fee_details": [{"amount": settlement.fee, "application": null, "currency": settled,
                         "description": "Stripe processing fees", "type": "stripe_fee"}],
        "net": amount - settlement.fee,
        "reporting_category": "charge",
        "source": charge["id"].clone(),
        "status": "available",
        "type": "charge",
    })
}

impl FakeStripe {
    /// Stores a charge with the balance transaction Stripe made when it settled it, and
    /// returns that transaction: the charge's `amount_captured` (else `amount`) converted at
    /// `settlement.exchange_rate` when the currencies differ, less `settlement.fee`. The
    /// charge's `balance_transaction` names it, so `expand[]=balance_transaction` gives it.
    pub fn settle_charge(&self, mut charge: Value, settlement: Settlement<'_>) -> Value {
        assert!(charge["id"].is_string(), "a charge has a string `id`");
        let transaction = charge_transaction(&charge, settlement);
        charge["object"] = json!("charge");
        charge["balance_transaction"] = transaction["id"].clone();
        let mut s = self.state.lock().unwrap();
        s.store(transaction.clone());
        s.store(charge);
        transaction
    }

    /// Pays out these balance transactions (ids; one currency) in a `paid` payout, stored with
    /// its own balance transaction (`type` payout, the negative total) and returned. An
    /// automatic payout's transactions are listed under its id, its `reconciliation_status`
    /// `completed`; a manual one's cannot be (`not_applicable`).
    pub fn pay_out(&self, transactions: &[&str], automatic: bool) -> Value {
        let mut s = self.state.lock().unwrap();
        let paid: Vec<Value> = transactions
            .iter()
            .map(|id| {
                s.objects
                    .get(*id)
                    .filter(|t| t["object"] == "balance_transaction")
                    .cloned()
                    .unwrap_or_else(|| panic!("no stored balance transaction {id}"))
            })
            .collect();
        let currency = paid
            .first()
            .and_then(|t| t["currency"].as_str())
            .unwrap_or("usd")
            .to_string();
        assert!(
            paid.iter().all(|t| t["currency"] == currency.as_str()),
            "a payout is in one currency"
        );
        let total: i64 = paid.iter().filter_map(|t| t["net"].as_i64()).sum();
        let now = Utc::now().timestamp();
        let id = stripe_id("po_");
        let own = json!({
            "id": stripe_id("txn_"), "object": "balance_transaction", "amount": -total,
            "available_on": now, "created": now, "currency": currency,
            "description": "STRIPE PAYOUT", "exchange_rate": null, "fee": 0,
            "fee_details": [], "net": -total, "reporting_category": "payout",
            "source": id, "status": "available", "type": "payout",
        });
        let payout = json!({
            "id": id, "object": "payout", "amount": total, "arrival_date": now + 86_400,
            "automatic": automatic, "balance_transaction": own["id"].clone(), "created": now,
            "currency": currency, "description": "STRIPE PAYOUT",
            "destination": "ba_1TributaryFakeBank00001", "failure_balance_transaction": null,
            "failure_code": null, "failure_message": null, "livemode": false, "metadata": {},
            "method": "standard", "original_payout": null,
            "reconciliation_status": if automatic { "completed" } else { "not_applicable" },
            "reversed_by": null, "source_type": "card", "statement_descriptor": null,
            "status": "paid", "type": "bank_account",
        });
        for transaction in transactions {
            s.paid_out.insert(transaction.to_string(), id.clone());
        }
        s.store(own);
        s.store(payout.clone());
        payout
    }
}

/// `GET /v1/balance_transactions`: newest first, filtered by `payout` (automatic payouts only),
/// `type`, `source` and `currency`; `expand[]` names fields of the items (`data.source`).
pub(super) fn list_balance_transactions(
    s: &State,
    params: &Map<String, Value>,
) -> Result<Answer, Answer> {
    only_params(
        params,
        &[
            "currency",
            "ending_before",
            "expand",
            "limit",
            "payout",
            "source",
            "starting_after",
            "type",
        ],
    )?;
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let payout = string_param(params, "payout")?;
    if let Some(id) = &payout {
        match s.objects.get(id) {
            Some(p) if p["object"] == "payout" && p["automatic"] == true => {}
            Some(p) if p["object"] == "payout" => {
                return Err(invalid(
                    Some("payout"),
                    &format!(
                        "Balance transactions can be listed by payout for automatic payouts only; {id} was created manually."
                    ),
                ));
            }
            _ => return Err(no_such("payout", id, "payout", 400)),
        }
    }
    let filters = [
        ("type", string_param(params, "type")?),
        ("source", string_param(params, "source")?),
        ("currency", string_param(params, "currency")?),
    ];
    let order = |id: &str| s.object_order.get(id).copied().unwrap_or(0);
    let key = |t: &Value| {
        let id = t["id"].as_str().unwrap_or_default();
        (t["created"].as_i64().unwrap_or(0), order(id))
    };
    let mut all: Vec<&Value> = s
        .objects
        .values()
        .filter(|o| o["object"] == "balance_transaction")
        .collect();
    all.sort_by_key(|t| std::cmp::Reverse(key(t)));
    let ids: Vec<((i64, u64), String)> = all
        .iter()
        .map(|t| (key(t), t["id"].as_str().unwrap_or_default().to_string()))
        .collect();
    let items = all
        .into_iter()
        .filter(|t| {
            let id = t["id"].as_str().unwrap_or_default();
            payout
                .as_ref()
                .is_none_or(|p| s.paid_out.get(id) == Some(p))
                && filters
                    .iter()
                    .all(|(field, wanted)| wanted.as_ref().is_none_or(|w| t[*field] == w.as_str()))
        })
        .map(|t| (key(t), t.clone()))
        .collect();
    let (mut data, has_more) = paginate(&ids, items, &cursor, limit, "balance transaction")?;
    expand_items(s, &mut data, params)?;
    Ok(list("/v1/balance_transactions", data, has_more))
}

/// `expand[]=data.<path>` on every item of a list page.
pub(super) fn expand_items(
    s: &State,
    data: &mut [Value],
    params: &Map<String, Value>,
) -> Result<(), Answer> {
    let paths = super::objects::expand_paths(params);
    for (i, path) in paths.iter().enumerate() {
        let param = format!("expand[{i}]");
        let Some(inner) = path.strip_prefix("data.") else {
            return Err(invalid(
                Some(&param),
                &format!("This property cannot be expanded ({path})."),
            ));
        };
        for item in data.iter_mut() {
            expand(s, item, inner, &param)?;
        }
    }
    Ok(())
}
