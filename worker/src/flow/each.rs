//! `for_each`: the items a step runs for, each with the key its delivery is named by.

use std::collections::HashSet;

use serde_json::Value;

use super::{FlowError, RenderContext, Step, templating};

/// The most items one `for_each` step runs for; a longer list fails the step, rather than
/// running part of it.
pub const MAX_ITEMS: usize = 1000;

/// A value that renders to a list: exactly `{"for_each": <expression>, "each": <value>}`,
/// whose `each` is rendered once per item of the expression's list, reading it as `item`.
pub(crate) fn list_template(map: &serde_json::Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 2 {
        return None;
    }
    Some((map.get("for_each")?.as_str()?, map.get("each")?))
}

/// The delivery name of item `key` of step `step`: `<step>[<key>]`.
pub fn delivery_name(step: &str, key: &str) -> String {
    format!("{step}[{key}]")
}

/// Whether a delivery named `name` is an item of some step's `for_each` (step ids never hold
/// `[` or `]`).
pub fn is_item(name: &str) -> bool {
    name.ends_with(']')
}

/// Whether a delivery named `name` is an item of step `step`.
pub fn is_item_of(name: &str, step: &str) -> bool {
    name.strip_prefix(step)
        .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'))
}

/// The longest item id that names its delivery; a longer one is named by its position.
const MAX_KEY: usize = 64;

/// The items of a `for_each` step against `ctx`, each with its key: the item's `id` when it
/// has one (of at most 64 characters) not used by an earlier item, else `#` and its position. `None` for a step without
/// `for_each`. A list that renders undefined or null has no items.
pub fn loop_items(
    step: &Step,
    ctx: &RenderContext,
) -> Result<Option<Vec<(String, Value)>>, FlowError> {
    let Some(source) = step.for_each.as_deref() else {
        return Ok(None);
    };
    let fail = |message: String| FlowError::Step {
        step: step.id.clone(),
        index: None,
        field: "for_each".into(),
        message,
    };
    let root = templating::context(&RenderContext {
        item: None,
        ..ctx.clone()
    });
    let items = evaluate_list(source, &root).map_err(fail)?;
    let mut used = HashSet::new();
    Ok(Some(
        items
            .into_iter()
            .enumerate()
            .map(|(position, item)| {
                let id = match item.get("id") {
                    Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
                    Some(Value::Number(id)) => Some(id.to_string()),
                    _ => None,
                };
                let key = match id {
                    Some(id)
                        if id.len() <= MAX_KEY
                            && !id.starts_with('#')
                            && used.insert(id.clone()) =>
                    {
                        id
                    }
                    _ => format!("#{position}"),
                };
                (key, item)
            })
            .collect(),
    ))
}

/// The list `source` (an expression) gives against `root`: none for null or undefined, at
/// most [`MAX_ITEMS`] items.
pub(crate) fn evaluate_list(source: &str, root: &minijinja::Value) -> Result<Vec<Value>, String> {
    let env = templating::environment();
    let value = templating::compile_condition(env, source)
        .and_then(|expr| expr.eval(root))
        .map_err(|e| templating::describe(&e))?;
    let value = serde_json::to_value(&value).map_err(|e| e.to_string())?;
    let items = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "rendered {}; for_each needs a list",
                super::model::json_kind(&other)
            ));
        }
    };
    if items.len() > MAX_ITEMS {
        return Err(format!(
            "rendered a list of {} items; for_each takes at most {MAX_ITEMS}",
            items.len()
        ));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(for_each: &str) -> Step {
        serde_json::from_value(json!({
            "id": "each", "action": "log", "message": "x", "for_each": for_each
        }))
        .expect("a step")
    }

    fn ctx(object: Value) -> RenderContext {
        RenderContext {
            event: json!({ "data": { "object": object } }),
            ..RenderContext::default()
        }
    }

    #[test]
    fn items_are_keyed_by_their_unused_id_else_their_position() {
        let object = json!({ "list": [
            { "id": "a" }, { "id": 7 }, { "name": "no id" }, { "id": "a" }, { "id": "#9" }, "text",
            { "id": "x".repeat(65) }
        ]});
        let keys: Vec<String> = loop_items(&step("object.list"), &ctx(object))
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["a", "7", "#2", "#3", "#4", "#5", "#6"]);
    }

    #[test]
    fn nothing_is_no_items_and_a_non_list_or_too_long_a_list_is_an_error() {
        let none = loop_items(&step("object.missing"), &ctx(json!({}))).unwrap();
        assert_eq!(none, Some(Vec::new()));
        let without: Step = serde_json::from_value(json!({
            "id": "once", "action": "log", "message": "x"
        }))
        .unwrap();
        assert_eq!(loop_items(&without, &ctx(json!({}))).unwrap(), None);

        let text = loop_items(&step("object.name"), &ctx(json!({ "name": "Ada" })));
        let message = text.unwrap_err().to_string();
        assert!(
            message.contains("for_each") && message.contains("needs a list"),
            "{message}"
        );

        let long = json!({ "list": vec![json!({}); MAX_ITEMS + 1] });
        let message = loop_items(&step("object.list"), &ctx(long))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("1001 items") && message.contains("at most 1000"),
            "{message}"
        );
        let full = json!({ "list": vec![json!({}); MAX_ITEMS] });
        assert_eq!(
            loop_items(&step("object.list"), &ctx(full))
                .unwrap()
                .unwrap()
                .len(),
            MAX_ITEMS
        );
    }

    #[test]
    fn a_value_of_for_each_and_each_renders_a_list_per_item() {
        let step: Step = serde_json::from_value(json!({
            "id": "subscription", "action": "stripe.create", "object": "subscription",
            "fields": {
                "customer": "cus_1",
                "items": {
                    "for_each": "object.lines | selectattr('code')",
                    "each": {"price": "{{ settings.prices[item.code] }}", "quantity": "{{ item.qty | int }}"}
                }
            }
        }))
        .unwrap();
        let mut context = ctx(json!({ "lines": [
            { "code": "PRO", "qty": "3" }, { "qty": 1 }, { "code": "SEAT", "qty": 2, "note": null }
        ]}));
        context.settings = json!({ "prices": { "PRO": "price_pro", "SEAT": "price_seat" } });
        let op = crate::flow::render_step(&step, &context).unwrap().unwrap();
        assert_eq!(
            op.fields["items"],
            json!([
                { "price": "price_pro", "quantity": 3 },
                { "price": "price_seat", "quantity": 2 }
            ])
        );

        let flow = |fields: Value| {
            json!({"name": "f", "connection_id": "conn_1",
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "s", "action": "create", "object": "Lines", "fields": fields}]})
        };
        let inside =
            flow(json!({"lines": {"for_each": "object.lines", "each": "{{ item.code }}"}}));
        assert_eq!(crate::flow::validate(&inside), Vec::new());
        let outside = flow(json!({"code": "{{ item.code }}",
                                  "lines": {"for_each": "object.lines |", "each": "x"}}));
        let problems: Vec<String> = crate::flow::validate(&outside)
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("steps[0].fields.code: item: only a step with for_each"));
        assert!(problems[1].starts_with("steps[0].fields.lines.for_each: syntax error"));
    }
}
