//! The currency filters: same currency, Stripe's rate and settled amount, the rate table
//! (and its inverse), zero- and three-decimal currencies, and the errors that say what is
//! missing.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::{Value as Json, json};

use crate::flow::RenderContext;
use crate::flow::templating::{compile, context, describe, environment};

/// A EUR charge of 100.00 that Stripe settled in USD at 1.0832: 108.32 gross, 3.44 fee.
fn eur_charge() -> Json {
    json!({
        "id": "ch_eur1", "object": "charge", "amount": 10000, "currency": "eur",
        "balance_transaction": {
            "id": "txn_eur1", "object": "balance_transaction", "amount": 10832,
            "currency": "usd", "exchange_rate": 1.0832, "fee": 344, "net": 10488,
            "type": "charge", "source": "ch_eur1"
        }
    })
}

fn ctx(object: Json, settings: Json) -> RenderContext {
    RenderContext {
        event: json!({"type": "charge.succeeded", "created": 1_726_358_400,
                      "data": {"object": object.clone()}}),
        steps: BTreeMap::from([("charge".to_string(), "ch_eur1".to_string())]),
        responses: BTreeMap::new(),
        objects: BTreeMap::from([("charge".to_string(), object)]),
        settings,
        now: Utc.with_ymd_and_hms(2024, 9, 15, 12, 30, 0).unwrap(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    }
}

fn render(source: &str, object: Json, settings: Json) -> Result<Json, String> {
    let compiled = compile(environment(), source).map_err(|e| describe(&e))?;
    compiled
        .render(&context(&ctx(object, settings)))
        .map_err(|e| describe(&e))
}

fn eval(source: &str) -> Json {
    render(source, eur_charge(), json!({})).expect("renders")
}

fn eval_err(source: &str) -> String {
    render(source, eur_charge(), json!({})).expect_err("fails")
}

fn usd_settings() -> Json {
    json!({"corporate_currency": "usd", "exchange_rates": {"eur": {"usd": 1.08}, "GBP": {"USD": "1.27"}}})
}

#[test]
fn one_currency_needs_no_rate() {
    assert_eq!(eval("{{ 14900 | convert('usd', 'USD') }}"), json!(149.0));
    assert_eq!(eval("{{ 5000 | convert('jpy', 'jpy') }}"), json!(5000));
    let same = eval("{{ 14900 | conversion('usd', 'usd') }}");
    assert_eq!(same["source"], "same_currency");
    assert_eq!(same["rate"], json!(1.0));
    assert_eq!(same["description"], "149.00 USD: no conversion needed");
    assert!(same.get("fee").is_none(), "{same}");
    // Settled in the same currency: Stripe's fee and net come along.
    let transaction =
        json!({"id": "txn_usd", "amount": 14900, "currency": "usd", "fee": 462, "net": 14438});
    let settled = render(
        "{{ object.amount | conversion('usd', 'usd', object.balance_transaction) }}",
        json!({"amount": 14900, "balance_transaction": transaction}),
        json!({}),
    )
    .unwrap();
    assert_eq!(settled["fee"], json!(4.62));
    assert_eq!(settled["net"], json!(144.38));
    assert_eq!(settled["balance_transaction"], "txn_usd");
}

#[test]
fn stripes_rate_and_settled_amount_come_from_the_balance_transaction() {
    let source = "{{ object.amount | convert(object.currency, settings.corporate_currency, \
                  steps.charge.object.balance_transaction, settings.exchange_rates) }}";
    // Stripe's rate wins over the table's 1.08.
    let rendered = render(source, eur_charge(), usd_settings()).unwrap();
    assert_eq!(rendered, json!(108.32));
    let detail = render(
        &source.replace("convert(", "conversion("),
        eur_charge(),
        usd_settings(),
    )
    .unwrap();
    assert_eq!(
        detail,
        json!({
            "amount": 108.32, "currency": "usd", "original_amount": 100.0,
            "original_currency": "eur", "rate": 1.0832, "source": "stripe",
            "balance_transaction": "txn_eur1", "fee": 3.44, "net": 104.88,
            "description": "100.00 EUR = 108.32 USD at 1.0832, Stripe's rate and settled amount (balance transaction txn_eur1)"
        })
    );
    // Stripe's own amount, to the cent, rather than the amount times its rounded rate.
    let mut charge = eur_charge();
    charge["balance_transaction"]["amount"] = json!(10833);
    assert_eq!(
        render(source, charge, usd_settings()).unwrap(),
        json!(108.33)
    );
    // Another amount of the same charge (a partial refund) takes the rate only.
    let partial =
        eval("{{ 2500 | conversion('eur', 'usd', steps.charge.object.balance_transaction) }}");
    assert_eq!(partial["amount"], json!(27.08));
    assert_eq!(partial["source"], "stripe");
    assert!(partial.get("fee").is_none() && partial.get("net").is_none());
    assert_eq!(
        partial["description"],
        "25.00 EUR = 27.08 USD at 1.0832, Stripe's rate (balance transaction txn_eur1)"
    );
}

#[test]
fn the_rate_table_is_the_fallback() {
    let settings = usd_settings();
    let table = |source: &str, object: Json| render(source, object, settings.clone()).unwrap();
    let unexpanded = json!({"amount": 10000, "currency": "eur", "balance_transaction": "txn_1"});
    let source = "{{ object.amount | conversion(object.currency, settings.corporate_currency, \
                  object.balance_transaction, settings.exchange_rates) }}";
    let fallback = table(source, unexpanded);
    assert_eq!(fallback["amount"], json!(108.0));
    assert_eq!(fallback["rate"], json!(1.08));
    assert_eq!(fallback["source"], "rate_table");
    assert_eq!(
        fallback["description"],
        "100.00 EUR = 108.00 USD at 1.08 from the exchange rate table"
    );
    // Named arguments; Stripe settled in GBP, which is not the corporate currency.
    let in_gbp = json!({"amount": 10000, "currency": "eur", "balance_transaction":
                        {"id": "txn_2", "currency": "gbp", "amount": 8600, "exchange_rate": 0.86}});
    let named = "{{ object.amount | convert(object.currency, 'usd', \
                 balance_transaction=object.balance_transaction, rates=settings.exchange_rates) }}";
    assert_eq!(table(named, in_gbp), json!(108.0));
    // Codes in any case, rates as numeric text.
    let gbp = "{{ 2000 | convert('GBP', 'usd', rates=settings.exchange_rates) }}";
    assert_eq!(table(gbp, json!({})), json!(25.4));
    // Only the opposite rate: its inverse.
    let inverse = table(
        "{{ 10800 | conversion('usd', 'eur', none, settings.exchange_rates) }}",
        json!({}),
    );
    assert_eq!(inverse["amount"], json!(100.0));
    assert_eq!(inverse["source"], "rate_table");
    assert_eq!(
        inverse["description"],
        "108.00 USD = 100.00 EUR at 0.925926 (1 / 1.08) from the exchange rate table"
    );
}

#[test]
fn zero_and_three_decimal_currencies() {
    // ¥5000 settled as $33.50 at 0.0067: Stripe's amount.
    let yen = json!({"amount": 5000, "currency": "jpy", "balance_transaction":
                     {"id": "txn_jpy", "currency": "usd", "amount": 3350, "exchange_rate": 0.0067,
                      "fee": 127, "net": 3223}});
    let source =
        "{{ object.amount | conversion(object.currency, 'usd', object.balance_transaction) }}";
    let converted = render(source, yen, json!({})).unwrap();
    assert_eq!(converted["amount"], json!(33.5));
    assert_eq!(converted["original_amount"], json!(5000));
    assert_eq!(converted["net"], json!(32.23));
    assert_eq!(
        converted["description"],
        "5000 JPY = 33.50 USD at 0.0067, Stripe's rate and settled amount (balance transaction txn_jpy)"
    );
    let rates =
        json!({"exchange_rates": {"usd": {"jpy": 150.12, "kwd": 0.307}, "krw": {"eur": 0.00068}}});
    let run = |source: &str| render(source, json!({}), rates.clone()).unwrap();
    // $100.00 in yen: a whole number of yen.
    assert_eq!(
        run("{{ 10000 | convert('usd', 'jpy', rates=settings.exchange_rates) }}"),
        json!(15012)
    );
    assert_eq!(
        run("{{ 1000 | convert('usd', 'kwd', rates=settings.exchange_rates) }}"),
        json!(3.07)
    );
    assert_eq!(
        run("{{ 1234567 | convert('krw', 'eur', rates=settings.exchange_rates) }}"),
        json!(839.51)
    );
    // ¥ back to $ through the inverse, rounded to the cent.
    assert_eq!(
        run("{{ 15012 | convert('jpy', 'usd', rates=settings.exchange_rates) }}"),
        json!(100.0)
    );
}

#[test]
fn a_missing_rate_is_an_error_that_says_what_was_missing() {
    let none = eval_err("{{ 10000 | convert('eur', 'usd') }}");
    assert!(none.contains("no exchange rate for EUR → USD"), "{none}");
    assert!(none.contains("no balance transaction was given"), "{none}");
    assert!(none.contains("no rate table was given"), "{none}");
    let unexpanded =
        eval_err("{{ 10000 | convert('eur', 'usd', 'txn_1', {'gbp': {'usd': 1.27}}) }}");
    assert!(unexpanded.contains("txn_1 is not expanded"), "{unexpanded}");
    assert!(
        unexpanded.contains("neither eur → usd nor usd → eur"),
        "{unexpanded}"
    );
    let elsewhere =
        eval_err("{{ 10000 | convert('eur', 'gbp', steps.charge.object.balance_transaction) }}");
    assert!(
        elsewhere.contains("Stripe settled it in USD, not GBP"),
        "{elsewhere}"
    );
    let no_rate = render(
        "{{ 10000 | convert('eur', 'usd', object.balance_transaction) }}",
        json!({"balance_transaction": {"id": "txn_x", "currency": "usd", "amount": 10832}}),
        json!({}),
    )
    .unwrap_err();
    assert!(no_rate.contains("has no exchange_rate"), "{no_rate}");
}

#[test]
fn bad_arguments_are_errors_and_a_missing_amount_passes_through() {
    assert_eq!(
        eval("{{ object.missing | convert('eur', 'usd') }}"),
        json!(null)
    );
    assert_eq!(
        eval("{{ object.missing | conversion('eur', settings.nothing) }}"),
        json!(null)
    );
    let to = eval_err("{{ 100 | convert('eur', settings.corporate_currency) }}");
    assert!(to.contains("needs the currency to convert into"), "{to}");
    let from = eval_err("{{ 100 | convert(object.nothing, 'usd') }}");
    assert!(from.contains("needs the amount's currency"), "{from}");
    assert!(eval_err("{{ 'abc' | convert('usd', 'usd') }}").contains("is not a number"));
    let negative = eval_err("{{ 100 | convert('eur', 'usd', rates={'eur': {'usd': -1}}) }}");
    assert!(negative.contains("must be a positive number"), "{negative}");
    let flat = eval_err("{{ 100 | convert('eur', 'usd', rates={'eur': 1.08}) }}");
    assert!(flat.contains("must map currencies to rates"), "{flat}");
    let list = eval_err("{{ 100 | convert('eur', 'usd', rates=[1]) }}");
    assert!(
        list.contains("the rate table must map currencies"),
        "{list}"
    );
    let twice = eval_err("{{ 100 | convert('eur', 'usd', none, {}, rates={}) }}");
    assert!(twice.contains("rates is given twice"), "{twice}");
    let many = eval_err("{{ 100 | convert('eur', 'usd', none, {}, 3) }}");
    assert!(many.contains("5 arguments were given"), "{many}");
    let typo = eval_err("{{ 100 | convert('eur', 'usd', rate={}) }}");
    assert!(typo.contains("rate"), "{typo}");
}

#[test]
fn flows_using_the_filters_validate_and_typos_do_not() {
    let flow = |template: &str| {
        json!({"name": "fx", "connection_id": "conn_1",
               "trigger": {"events": ["charge.succeeded"]},
               "steps": [{"id": "deal", "action": "create", "object": "deals",
                          "fields": {"amount": template}}]})
    };
    let ok = crate::flow::validate(&flow(
        "{{ object.amount | convert(object.currency, settings.corporate_currency, rates=settings.exchange_rates) }}",
    ));
    assert!(ok.is_empty(), "{ok:?}");
    let ok = crate::flow::validate(&flow(
        "{{ (object.amount | conversion(object.currency, 'usd', none, settings.exchange_rates)).rate }}",
    ));
    assert!(ok.is_empty(), "{ok:?}");
    let typo = crate::flow::validate(&flow("{{ object.amount | convrt('eur', 'usd') }}"));
    assert_eq!(typo.len(), 1, "{typo:?}");
    assert!(typo[0].message.contains("unknown filter 'convrt'"));
}
