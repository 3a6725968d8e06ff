use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn ctx(object: Json) -> RenderContext {
    RenderContext {
        event: json!({ "type": "test.event", "created": 1_726_358_400, "data": { "object": object } }),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: json!({}),
        now: Utc.with_ymd_and_hms(2024, 9, 15, 12, 30, 0).unwrap(),
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    }
}

fn eval_with(source: &str, object: Json) -> Json {
    let compiled = compile(environment(), source).expect("compiles");
    compiled.render(&context(&ctx(object))).expect("renders")
}

fn eval(source: &str) -> Json {
    eval_with(source, json!({}))
}

fn eval_err(source: &str, object: Json) -> String {
    let compiled = compile(environment(), source).expect("compiles");
    describe(&compiled.render(&context(&ctx(object))).expect_err("fails"))
}

#[test]
fn major_units_two_zero_and_three_decimal_currencies() {
    assert_eq!(eval("{{ 14900 | major_units('usd') }}"), json!(149.0));
    assert_eq!(eval("{{ 14999 | major_units('EUR') }}"), json!(149.99));
    assert_eq!(eval("{{ 5 | major_units('usd') }}"), json!(0.05));
    assert_eq!(eval("{{ 5000 | major_units('jpy') }}"), json!(5000));
    assert_eq!(eval("{{ 12000 | major_units('KRW') }}"), json!(12000));
    assert_eq!(eval("{{ 1500 | major_units('xof') }}"), json!(1500));
    assert_eq!(eval("{{ 12345 | major_units('kwd') }}"), json!(12.345));
    assert_eq!(eval("{{ 1500 | major_units('bhd') }}"), json!(1.5));
    assert_eq!(eval("{{ '24900' | major_units('usd') }}"), json!(249.0));
    assert_eq!(
        eval("{{ object.amount | major_units(object.currency) }}"),
        json!(null)
    );
    assert_eq!(
        eval("Total {{ 14900 | major_units('usd') }}"),
        json!("Total 149.0")
    );
    assert!(
        eval_err("{{ 100 | major_units(object.currency) }}", json!({}))
            .contains("needs the currency")
    );
    assert!(eval_err("{{ 'abc' | major_units('usd') }}", json!({})).contains("not a number"));
}

#[test]
fn format_amount_keeps_the_currency_decimals() {
    assert_eq!(eval("{{ 14900 | format_amount('usd') }}"), json!("149.00"));
    assert_eq!(eval("{{ 5000 | format_amount('jpy') }}"), json!("5000"));
    assert_eq!(eval("{{ 1500 | format_amount('tnd') }}"), json!("1.500"));
}

#[test]
fn first_and_last_name() {
    assert_eq!(eval("{{ 'Tony Stark' | first_name }}"), json!("Tony"));
    assert_eq!(eval("{{ 'Tony Stark' | last_name }}"), json!("Stark"));
    assert_eq!(
        eval("{{ '  Ana  de la Cruz ' | first_name }}"),
        json!("Ana")
    );
    assert_eq!(
        eval("{{ 'Ana de la Cruz' | last_name }}"),
        json!("de la Cruz")
    );
    assert_eq!(eval("{{ 'Cher' | first_name }}"), json!("Cher"));
    assert_eq!(eval("{{ 'Cher' | last_name }}"), json!(null));
    assert_eq!(eval("{{ '   ' | first_name }}"), json!(null));
    assert_eq!(eval("{{ none | first_name }}"), json!(null));
    assert_eq!(eval("{{ object.name | last_name }}"), json!(null));
    assert_eq!(eval("{{ 'Cher' | last_name or 'Cher' }}"), json!("Cher"));
}

#[test]
fn date_and_datetime() {
    assert_eq!(eval("{{ 1726358400 | date }}"), json!("2024-09-15"));
    assert_eq!(
        eval("{{ 1726358400 | datetime }}"),
        json!("2024-09-15T00:00:00Z")
    );
    assert_eq!(
        eval("{{ '2024-09-15T23:30:00-02:00' | date }}"),
        json!("2024-09-16")
    );
    assert_eq!(
        eval("{{ '2024-09-15T23:30:00-02:00' | datetime }}"),
        json!("2024-09-16T01:30:00Z")
    );
    assert_eq!(
        eval("{{ '2024-09-15' | datetime }}"),
        json!("2024-09-15T00:00:00Z")
    );
    assert_eq!(eval("{{ now | date }}"), json!("2024-09-15"));
    assert_eq!(eval("{{ now }}"), json!("2024-09-15T12:30:00Z"));
    assert_eq!(eval("{{ object.canceled_at | date }}"), json!(null));
    assert!(eval_err("{{ 'next tuesday' | date }}", json!({})).contains("neither unix seconds"));
}

#[test]
fn add_days_answers_in_the_kind_it_was_given() {
    assert_eq!(eval("{{ 1726358400 | add_days(1) }}"), json!(1_726_444_800));
    assert_eq!(
        eval("{{ 1726358400 | add_days(3) | date }}"),
        json!("2024-09-18")
    );
    assert_eq!(
        eval("{{ now | add_days(1) }}"),
        json!("2024-09-16T12:30:00Z")
    );
    assert_eq!(
        eval("{{ '2024-02-28' | add_days(2) }}"),
        json!("2024-03-01")
    );
    assert_eq!(
        eval("{{ '2024-03-01' | add_days(-1) }}"),
        json!("2024-02-29")
    );
    assert_eq!(eval("{{ object.missing | add_days(1) }}"), json!(null));
}

#[test]
fn lookup_maps_with_a_default() {
    let table = "{'active': 'Active', 'past_due': 'Past Due'}";
    assert_eq!(
        eval_with(
            &format!("{{{{ object.status | lookup({table}, 'Unknown') }}}}"),
            json!({"status": "past_due"})
        ),
        json!("Past Due")
    );
    assert_eq!(
        eval_with(
            &format!("{{{{ object.status | lookup({table}, 'Unknown') }}}}"),
            json!({"status": "paused"})
        ),
        json!("Unknown")
    );
    assert_eq!(
        eval(&format!(
            "{{{{ object.status | lookup({table}, 'Unknown') }}}}"
        )),
        json!("Unknown")
    );
    assert_eq!(
        eval(&format!("{{{{ 'paused' | lookup({table}) }}}}")),
        json!(null)
    );
    assert_eq!(eval("{{ 2 | lookup({'2': 'two'}) }}"), json!("two"));
    assert!(eval_err("{{ 'a' | lookup('a') }}", json!({})).contains("must be a mapping"));
}

fn subscription(items: Json) -> Json {
    json!({ "object": "subscription", "currency": "usd", "items": { "object": "list", "data": items } })
}

fn item(unit_amount: i64, interval: &str, interval_count: i64, quantity: i64) -> Json {
    json!({
        "object": "subscription_item",
        "quantity": quantity,
        "price": {
            "object": "price",
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": { "interval": interval, "interval_count": interval_count, "usage_type": "licensed" }
        }
    })
}

#[test]
fn mrr_and_arr_normalise_every_interval() {
    let cases = [
        (item(99900, "month", 1, 1), 999.0, 11988.0),
        (item(120000, "year", 1, 1), 100.0, 1200.0),
        (item(1000, "week", 1, 1), 43.33, 520.0),
        (item(100, "day", 1, 1), 30.42, 365.0),
        (item(30000, "month", 3, 1), 100.0, 1200.0),
        (item(2500, "month", 1, 2), 50.0, 600.0),
    ];
    for (item, mrr, arr) in cases {
        let sub = subscription(json!([item.clone()]));
        assert_eq!(
            eval_with("{{ object | mrr }}", sub.clone()),
            json!(mrr),
            "{item}"
        );
        assert_eq!(eval_with("{{ object | arr }}", sub), json!(arr), "{item}");
    }
}

#[test]
fn mrr_sums_items_and_reads_old_plan_shapes() {
    let sub = subscription(json!([
        item(99900, "month", 1, 1),
        item(120000, "year", 1, 2)
    ]));
    assert_eq!(eval_with("{{ object | mrr }}", sub.clone()), json!(1199.0));
    assert_eq!(eval_with("{{ object | arr }}", sub), json!(14388.0));

    let legacy = json!({
        "object": "subscription",
        "quantity": 3,
        "plan": { "object": "plan", "amount": 2000, "currency": "usd", "interval": "month", "interval_count": 1 }
    });
    assert_eq!(eval_with("{{ object | mrr }}", legacy), json!(60.0));

    let plan_items = json!({
        "object": "subscription",
        "items": { "data": [{ "quantity": 1, "plan": { "amount": 5000, "currency": "jpy", "interval": "year" } }] }
    });
    assert_eq!(eval_with("{{ object | arr }}", plan_items), json!(5000));

    let metered = subscription(json!([{
        "quantity": null,
        "price": { "currency": "usd", "unit_amount": 10, "recurring": { "interval": "month", "usage_type": "metered" } }
    }]));
    assert_eq!(eval_with("{{ object | mrr }}", metered), json!(0.0));
    assert_eq!(eval("{{ object.missing | mrr }}"), json!(null));
}

#[test]
fn single_expressions_keep_their_native_type() {
    let object =
        json!({ "amount": 2000, "paid": true, "metadata": { "tier": "gold" }, "tags": ["a", "b"] });
    assert_eq!(
        eval_with("{{ object.amount }}", object.clone()),
        json!(2000)
    );
    assert_eq!(
        eval_with("  {{- object.paid -}}  ", object.clone()),
        json!(true)
    );
    assert_eq!(
        eval_with("{{ object.metadata }}", object.clone()),
        json!({ "tier": "gold" })
    );
    assert_eq!(
        eval_with("{{ object.tags }}", object.clone()),
        json!(["a", "b"])
    );
    assert_eq!(
        eval_with("{{ object.nothing }}", object.clone()),
        json!(null)
    );
    assert_eq!(
        eval_with("{{ object.amount }} cents", object.clone()),
        json!("2000 cents")
    );
    assert_eq!(
        eval_with("{{ object.amount }}{{ object.paid }}", object.clone()),
        json!("2000True")
    );
    assert_eq!(eval_with("plain text", object), json!("plain text"));
}

#[test]
fn nulls_read_as_undefined_and_chains_never_fail() {
    let object = json!({ "email": null, "metadata": {} });
    assert_eq!(
        eval_with("{{ object.email | lower }}", object.clone()),
        json!(null)
    );
    assert_eq!(
        eval_with("{{ object.email | default('x') }}", object.clone()),
        json!("x")
    );
    assert_eq!(
        eval_with(
            "{{ object.metadata.deal_name | default('Deal') }}",
            object.clone()
        ),
        json!("Deal")
    );
    assert_eq!(
        eval_with("{{ previous.status }}", object.clone()),
        json!(null)
    );
    assert_eq!(
        eval_with("Hi {{ object.email | upper }}!", object.clone()),
        json!("Hi !")
    );
    assert_eq!(
        eval_with("{{ object.a.b.c is defined }}", object),
        json!(false)
    );
    assert_eq!(
        eval("{{ '  Mixed Case ' | trim | lower }}"),
        json!("mixed case")
    );
    assert_eq!(eval("{{ 'ada lovelace' | title }}"), json!("Ada Lovelace"));
    assert_eq!(eval("{{ 'hELLO' | capitalize }}"), json!("Hello"));
    assert_eq!(eval("{{ 'xxhixx' | trim('x') }}"), json!("hi"));
}

#[test]
fn single_expression_detection() {
    assert_eq!(single_expression("{{ a }}"), Some(" a "));
    assert_eq!(single_expression(" {{-a-}} "), Some("a"));
    assert_eq!(single_expression("{{ a }} {{ b }}"), None);
    assert_eq!(single_expression("x {{ a }}"), None);
    assert!(!is_template("plain"));
}

#[test]
fn currency_table() {
    assert_eq!(currency_decimals("JPY"), 0);
    assert_eq!(currency_decimals("vuv"), 0);
    assert_eq!(currency_decimals("OMR"), 3);
    assert_eq!(currency_decimals("usd"), 2);
    assert_eq!(currency_decimals("isk"), 2);
}
