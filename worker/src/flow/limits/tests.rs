use minijinja::value::Value;

use crate::flow::templating::{self, environment};

fn render(source: &str) -> Result<serde_json::Value, String> {
    let env = environment();
    let root = Value::from(minijinja::value::Serde(
        serde_json::json!({"object": {"email": "a@b.c"}}),
    ));
    templating::compile(env, source)
        .and_then(|compiled| compiled.render(&root))
        .map_err(|e| templating::describe(&e))
}

fn refused_with(source: &str, words: &str) {
    let err = render(source).expect_err(source);
    assert!(err.contains(words), "{source}: {err}");
}

#[test]
fn string_repetition_is_bounded() {
    refused_with("{{ 'x' * 100000000 }}", "limit of 65536");
    refused_with("{{ ('x' * 100000) * 1000 }}", "limit of 65536");
    refused_with(
        "{% for i in range(1000) %}{{ 'x' * 100000000 }}{% endfor %}",
        "limit",
    );
    assert_eq!(render("{{ 'ab' * 3 }}").unwrap(), "ababab");
    assert_eq!(render("{{ 2 * 3 }}").unwrap(), 6);
}

#[test]
fn concatenation_is_bounded() {
    refused_with(
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "limit",
    );
    refused_with(
        "{% set a = 'x' * 60000 %}{% set b = a + a %}{{ b | length }}",
        "limit",
    );
    assert_eq!(render("{{ 'a' ~ 1 ~ 'b' }}").unwrap(), "a1b");
    assert_eq!(render("{{ 'a' + 'b' }}").unwrap(), "ab");
    assert_eq!(render("{{ 1 + 2 }}").unwrap(), 3);
    assert_eq!(
        render("{{ [1] + [2] }}").unwrap(),
        serde_json::json!([1, 2])
    );
}

#[test]
fn lists_and_range_are_bounded() {
    refused_with("{{ range(1000000) | length }}", "more than 10000 items");
    refused_with("{{ ([1] * 100000000) | length }}", "the constant");
    refused_with(
        "{{ ([1] * (object.email | length * 100000)) | length }}",
        "more than 10000 items",
    );
    refused_with("{{ (['x' * 60000] * 1000) | join(',') }}", "over the limit");
    refused_with("{{ (['x' * 60000] * 1000) | string }}", "over the limit");
    refused_with(
        "{{ 'x' | replace('x', 'y' * 60000) | replace('y', 'zz') }}",
        "limit",
    );
    refused_with("{{ ['a'] | batch(100000000, 'x') }}", "unknown filter");
    assert_eq!(render("{{ range(3) | join('-') }}").unwrap(), "0-1-2");
    assert_eq!(
        render("{{ range(5, 0, -2) | list }}").unwrap(),
        serde_json::json!([5, 3, 1])
    );
    assert_eq!(render("{{ 'a-b' | replace('-', '+') }}").unwrap(), "a+b");
}

#[test]
fn rendered_text_is_bounded() {
    refused_with(
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        "the rendered text",
    );
    refused_with(
        "{% for i in range(10000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
        "the rendered text",
    );
    assert_eq!(render("Hi {{ object.email }}!").unwrap(), "Hi a@b.c!");
}

#[test]
fn context_dumps_and_captures_are_refused() {
    refused_with("{{ debug() }}", "debug() is not allowed");
    refused_with("{{ __generator }}", "is not allowed");
    refused_with("{% set x %}{{ object }}{% endset %}{{ x }}", "not allowed");
    refused_with("{% macro m() %}x{% endmacro %}{{ m() }}", "not allowed");
    refused_with("{% filter upper %}x{% endfilter %}", "not allowed");
    refused_with("{{ object | pprint }}", "unknown filter");
}

#[test]
fn conditions_are_bounded() {
    let env = environment();
    let err = templating::compile_condition(env, "('x' * 100000000) == 'y'")
        .err()
        .expect("a constant over the limit is refused when compiled");
    assert!(templating::describe(&err).contains("limit"), "{err}");
    let expr = templating::compile_condition(env, "('x' * (n * 1000000)) == 'y'").unwrap();
    let err = expr.eval(minijinja::context! { n => 100 }).unwrap_err();
    assert!(templating::describe(&err).contains("limit"), "{err}");
}

#[test]
fn sum_adds_numbers_from_its_start_and_refuses_the_rest() {
    assert_eq!(render("{{ [1, 2, 3] | sum }}").unwrap(), 6);
    assert_eq!(render("{{ [1.5, 2] | sum(10) }}").unwrap(), 13.5);
    assert_eq!(render("{{ [] | sum }}").unwrap(), 0);
    refused_with("{{ ['a', 'b'] | sum }}", "only numbers");
    refused_with("{{ [[1], [2]] | sum }}", "only numbers");
}
