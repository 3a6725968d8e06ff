//! The flow engine: parses and validates tenants' flows, matches events to triggers, and renders
//! steps into operations for the CRM adapters. Pure: no database, no HTTP, no writes; the only
//! clock read is `trigger_matches`' fallback when an event carries no `created` time.
//!
//! - [`model`]: the flow spec, operations, errors.
//! - [`templating`]: the minijinja environment, filters and rendering rules.
//! - `validate`: every error of a flow with its path.
//! - [`templates`]: the built-in recipes served by `GET /v1/flow-templates` (data in `recipes/`).
//!
//! Decisions beyond the design's flow contract:
//! - `major_units` (and `mrr`, `arr`) give a number rounded to the currency's decimals: an
//!   integer for zero-decimal currencies, a float otherwise (14900 usd → `149.0`, which text
//!   templates print as `149.0`). Adapters format numbers for their vendor; templates that
//!   need fixed decimals in text use `format_amount` (`"149.00"`).
//! - `first_name` is the first word of a name, `last_name` the rest (`"Ana de la Cruz"` →
//!   `"Ana"`, `"de la Cruz"`); a one-word name has no last name (undefined, so left out).
//! - JSON `null`s in the event and settings read as undefined (see [`templating`]).
//! - `create` refuses `match`, and only `update` takes `record_id`, so a flow says what it does.
//! - Rendering an `upsert` whose match values all came out empty, or an `update` with neither
//!   record id nor match value, is an error rather than a write that would duplicate or miss;
//!   recipes guard such steps with `when`.

pub(crate) mod each;
pub mod limits;
pub mod model;
pub mod templates;
pub mod templating;
mod validate;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use minijinja::Environment;
use serde_json::{Map, Value};

pub use each::{MAX_ITEMS, loop_items};
pub use validate::REFETCH_STEP;
pub(crate) use validate::edit_distance;
use validate::{HTTP_METHODS, key_path};

pub use model::{
    Action, Association, FlowError, FlowSpec, MergeWinner, Operation, Preview, RenderContext,
    RenderedAssociation, Review, ReviewPolicy, Step, Trigger, ValidationError,
};

/// Parses a flow, checking its shape and meaning; on failure returns every error found, each
/// with its path (`steps[1].fields.amount: unknown filter 'amout'`).
pub fn parse_flow(value: &Value) -> Result<FlowSpec, Vec<ValidationError>> {
    validate::parse(value)
}

/// Every error of a flow, each with its path; empty when the flow is valid.
pub fn validate(value: &Value) -> Vec<ValidationError> {
    match parse_flow(value) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

/// Whether an event type matches a trigger pattern: exact (`charge.succeeded`), `*` (every
/// event), or a prefix ending in `.*`, which matches any deeper type (`customer.*` matches
/// `customer.created` and `customer.subscription.updated`, not `customer`).
pub fn event_type_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => {
            event_type.len() > prefix.len() && event_type.starts_with(prefix)
        }
        _ => pattern == event_type,
    }
}

/// Whether a flow's trigger accepts an event: its type matches one of the patterns and the
/// optional filter expression is truthy. The filter sees the same context as the steps, with
/// no settings and no step results; `now` is the event's `created` time (so the answer does
/// not change between attempts), or the current time for an event without one.
pub fn trigger_matches(flow: &FlowSpec, event: &Value) -> Result<bool, FlowError> {
    trigger_matches_with(flow, event, Value::Object(Map::new()))
}

/// [`trigger_matches`] with the flow connection's `settings` in the filter's context
/// (`record.StageName == settings.won_stage`).
pub fn trigger_matches_with(
    flow: &FlowSpec,
    event: &Value,
    settings: Value,
) -> Result<bool, FlowError> {
    let now = event
        .get("created")
        .and_then(Value::as_i64)
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .unwrap_or_else(Utc::now);
    let ctx = RenderContext {
        event: event.clone(),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings,
        now,
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    };
    trigger_matches_in(flow, &ctx)
}

/// [`trigger_matches`] with a context of the caller's choosing (settings, clock).
pub fn trigger_matches_in(flow: &FlowSpec, ctx: &RenderContext) -> Result<bool, FlowError> {
    let Some(event_type) = ctx.event.get("type").and_then(Value::as_str) else {
        return Ok(false);
    };
    if !flow
        .trigger
        .events
        .iter()
        .any(|pattern| event_type_matches(pattern, event_type))
    {
        return Ok(false);
    }
    let Some(filter) = flow.trigger.filter.as_deref() else {
        return Ok(true);
    };
    let env = templating::environment();
    let failed = |err: minijinja::Error| FlowError::Trigger {
        message: templating::describe(&err),
    };
    let expr = templating::compile_condition(env, filter).map_err(failed)?;
    let result = expr.eval(templating::context(ctx)).map_err(failed)?;
    Ok(result.is_true())
}

/// Renders one step against an event. `None` when its `when` is false.
///
/// Fields and match values that render null or undefined are left out; match values that
/// render empty text are left out too, since nothing can be found by them. An `upsert` left
/// without any match value, or an `update` without a record id and match value, is an error:
/// executed, it would create a duplicate or find nothing. Errors name the step by id; use
/// [`FlowError::at_index`] to name it by position.
pub fn render_step(step: &Step, ctx: &RenderContext) -> Result<Option<Operation>, FlowError> {
    let env = templating::environment();
    let root = templating::context(ctx);
    let fail = |field: &str, message: String| FlowError::Step {
        step: step.id.clone(),
        index: None,
        field: field.to_owned(),
        message,
    };

    if let Some(when) = step.when.as_deref() {
        let expr = templating::compile_condition(env, when)
            .map_err(|e| fail("when", templating::describe(&e)))?;
        let result = expr
            .eval(&root)
            .map_err(|e| fail("when", templating::describe(&e)))?;
        if !result.is_true() {
            return Ok(None);
        }
    }

    let renderer = Renderer {
        env,
        root: &root,
        rendered: Default::default(),
    };
    let mut match_fields = renderer
        .map(&step.match_fields, "match")
        .map_err(|(field, message)| fail(&field, message))?;
    match_fields.retain(|_, value| value.as_str().is_none_or(|text| !text.trim().is_empty()));
    let fields = renderer
        .map(&step.fields, "fields")
        .map_err(|(field, message)| fail(&field, message))?;
    let record_id = match step.record_id.as_deref() {
        Some(source) => renderer
            .id(source)
            .map_err(|message| fail("record_id", message))?,
        None => None,
    };
    let mut associate = Vec::with_capacity(step.associate.len());
    for (i, association) in step.associate.iter().enumerate() {
        let id = renderer
            .id(&association.id)
            .map_err(|message| fail(&format!("associate[{i}].id"), message))?;
        if let Some(id) = id {
            associate.push(RenderedAssociation {
                object: association.object.clone(),
                id,
            });
        }
    }

    let method = match step.method.as_deref() {
        Some(source) => match renderer.id(source).map_err(|m| fail("method", m))? {
            Some(method) => {
                let method = method.trim().to_ascii_uppercase();
                if !HTTP_METHODS.contains(&method.as_str()) {
                    return Err(fail(
                        "method",
                        format!(
                            "rendered '{method}'; expected one of {}",
                            HTTP_METHODS.join(", ")
                        ),
                    ));
                }
                Some(method)
            }
            None => None,
        },
        None => None,
    };
    let path = match step.path.as_deref() {
        Some(source) => renderer.id(source).map_err(|m| fail("path", m))?,
        None => None,
    };
    let url = match step.url.as_deref() {
        Some(source) => renderer.id(source).map_err(|m| fail("url", m))?,
        None => None,
    };
    let headers = renderer
        .map(&step.headers, "headers")
        .map_err(|(field, message)| fail(&field, message))?;
    let select =
        rendered_select(step, &renderer).map_err(|(field, message)| fail(&field, message))?;
    let review =
        rendered_review(step, &renderer).map_err(|(field, message)| fail(&field, message))?;
    let mut op = Operation {
        step: step.id.clone(),
        action: step.action,
        object: step.object.clone(),
        match_fields,
        fields,
        record_id,
        fallback_fields: step.fallback_fields.clone(),
        associate,
        method,
        path,
        expand: step.expand.clone(),
        select,
        connection_id: step.connection_id.clone(),
        url,
        headers,
        review,
        decided: None,
        secrets: Vec::new(),
    };
    let templates = StepTemplates {
        env,
        root: &root,
        renderer: &renderer,
    };
    crate::steps::kind(step.action)
        .render(step, &mut op, &templates)
        .map_err(|problem| fail(&problem.path, problem.message))?;
    op.secrets = templating::generated(&root);
    Ok(Some(op))
}

/// The field names a `find` step reads, rendered; names that rendered empty are left out.
fn rendered_select(step: &Step, renderer: &Renderer<'_>) -> Result<Vec<String>, (String, String)> {
    let mut select = Vec::with_capacity(step.select.len());
    for (i, source) in step.select.iter().enumerate() {
        if let Some(name) = renderer
            .id(source)
            .map_err(|message| (format!("select[{i}]"), message))?
        {
            select.push(name);
        }
    }
    Ok(select)
}

/// The step's review policy with its `similar` values rendered; those that rendered empty are
/// left out, as match values are.
fn rendered_review(
    step: &Step,
    renderer: &Renderer<'_>,
) -> Result<Option<model::Review>, (String, String)> {
    let Some(review) = &step.review else {
        return Ok(None);
    };
    let mut similar = renderer.map(&review.similar, "review.similar")?;
    similar.retain(|_, value| value.as_str().is_none_or(|text| !text.trim().is_empty()));
    Ok(Some(model::Review {
        similar,
        ..review.clone()
    }))
}

/// A step's templates for its kind's rendering.
struct StepTemplates<'a> {
    env: &'a Environment<'a>,
    root: &'a minijinja::Value,
    renderer: &'a Renderer<'a>,
}

impl crate::steps::Templates for StepTemplates<'_> {
    fn condition(&self, source: &str) -> Result<bool, String> {
        let expr = templating::compile_condition(self.env, source)
            .map_err(|e| templating::describe(&e))?;
        Ok(expr
            .eval(self.root)
            .map_err(|e| templating::describe(&e))?
            .is_true())
    }

    fn text(&self, source: &str) -> Result<Option<String>, String> {
        self.renderer.id(source)
    }
}

/// What a flow would do with an event, without doing any of it. Disabled flows preview too.
/// The trigger is checked exactly as the worker checks it ([`trigger_matches`]). Each step that would run adds its operation, and later steps see its record id as the
/// placeholder `{{steps.<id>.id}}`. `settings` are the connection's settings.
pub fn preview(
    flow: &FlowSpec,
    event: &Value,
    settings: &Value,
    now: DateTime<Utc>,
) -> Result<Preview, FlowError> {
    let mut ctx = RenderContext {
        event: event.clone(),
        steps: BTreeMap::new(),
        responses: BTreeMap::new(),
        objects: BTreeMap::new(),
        settings: settings.clone(),
        now,
        secret_seed: None,
        item: None,
        items: BTreeMap::new(),
    };
    let mut preview = Preview {
        matched: trigger_matches_with(flow, event, settings.clone())?,
        operations: Vec::new(),
        skipped: Vec::new(),
        reason: None,
    };
    if !preview.matched {
        let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
        preview.reason = Some(
            if flow
                .trigger
                .events
                .iter()
                .any(|pattern| event_type_matches(pattern, event_type))
            {
                format!(
                    "the trigger's filter `{}` is false for this event",
                    flow.trigger.filter.as_deref().unwrap_or_default()
                )
            } else {
                format!(
                    "the trigger listens to {} and this event is {event_type}",
                    flow.trigger.events.join(", ")
                )
            },
        );
        return Ok(preview);
    }
    'steps: for (i, step) in flow.steps.iter().enumerate() {
        // A step runs once, or once per item of its `for_each`, each named `<id>[<key>]`.
        let runs = match loop_items(step, &ctx).map_err(|e| e.at_index(i))? {
            None => vec![(step.id.clone(), String::new(), None)],
            Some(items) => items
                .into_iter()
                .map(|(key, item)| (each::delivery_name(&step.id, &key), key, Some(item)))
                .collect(),
        };
        if runs.is_empty() {
            preview.skipped.push(step.id.clone());
        }
        let mut done = Vec::new();
        for (name, key, item) in runs {
            ctx.item = item;
            let rendered = render_step(step, &ctx).map_err(|e| e.at_index(i))?;
            ctx.item = None;
            let Some(mut operation) = rendered else {
                preview.skipped.push(name);
                continue;
            };
            let placeholder = format!("{{{{steps.{name}.id}}}}");
            if step.for_each.is_some() {
                operation.step = name;
                done.push(serde_json::json!({ "key": key, "id": placeholder }));
            } else {
                ctx.steps.insert(step.id.clone(), placeholder);
            }
            let stops = crate::steps::kind(operation.action).stops(&operation);
            preview.operations.push(operation);
            if stops {
                // A failed assert ends the flow: later steps would not run.
                break 'steps;
            }
        }
        if step.for_each.is_some() {
            ctx.items.insert(step.id.clone(), done);
        }
    }
    if preview.operations.is_empty() && !preview.skipped.is_empty() {
        preview.reason = Some(format!(
            "every step's `when` is false for this event: {}",
            preview.skipped.join(", ")
        ));
    }
    Ok(preview)
}

/// Renders a step's template values against one context.
struct Renderer<'a> {
    env: &'a Environment<'a>,
    root: &'a minijinja::Value,
    /// Bytes of JSON the step's templates rendered so far, at most [`limits::MAX_STEP_BYTES`].
    rendered: std::cell::Cell<usize>,
}

impl Renderer<'_> {
    /// Renders `{"for_each": source, "each": each}`: `each` once per item, read as `item`.
    fn list(&self, source: &str, each: &Value, path: &str) -> Result<Value, (String, String)> {
        let items = each::evaluate_list(source, self.root)
            .map_err(|message| (key_path(path, "for_each"), message))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let root = minijinja::context! {
                item => templating::template_value(&item),
                ..self.root.clone()
            };
            let inner = Renderer {
                env: self.env,
                root: &root,
                rendered: std::cell::Cell::new(self.rendered.get()),
            };
            let value = inner.value(each, &format!("{path}[{i}]"))?;
            self.rendered.set(inner.rendered.get());
            if !value.is_null() {
                out.push(value);
            }
        }
        Ok(Value::Array(out))
    }

    /// Renders every value of a map; entries that render null are left out.
    fn map(
        &self,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<Map<String, Value>, (String, String)> {
        let mut out = Map::new();
        for (key, value) in map {
            let value = self.value(value, &key_path(path, key))?;
            if !value.is_null() {
                out.insert(key.clone(), value);
            }
        }
        Ok(out)
    }

    /// Renders strings as templates, recursing into lists and maps; other JSON passes through.
    fn value(&self, value: &Value, path: &str) -> Result<Value, (String, String)> {
        match value {
            Value::String(source) => {
                let compiled = templating::compile(self.env, source)
                    .map_err(|e| (path.to_owned(), templating::describe(&e)))?;
                let value = compiled
                    .render(self.root)
                    .map_err(|e| (path.to_owned(), templating::describe(&e)))?;
                let size = limits::json_len(&value, None, usize::MAX).unwrap_or(usize::MAX);
                let total = self.rendered.get().saturating_add(size);
                if total > limits::MAX_STEP_BYTES {
                    return Err((
                        path.to_owned(),
                        templating::describe(&limits::too_large(
                            "the step's rendered values",
                            total,
                            limits::MAX_STEP_BYTES,
                        )),
                    ));
                }
                self.rendered.set(total);
                Ok(value)
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.value(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => match each::list_template(map) {
                Some((source, each)) => self.list(source, each, path),
                None => map
                    .iter()
                    .map(|(key, item)| Ok((key.clone(), self.value(item, &key_path(path, key))?)))
                    .collect::<Result<_, _>>()
                    .map(Value::Object),
            },
            other => Ok(other.clone()),
        }
    }

    /// Renders a record id; empty text, null and undefined mean "none".
    fn id(&self, source: &str) -> Result<Option<String>, String> {
        let compiled =
            templating::compile(self.env, source).map_err(|e| templating::describe(&e))?;
        match compiled
            .render(self.root)
            .map_err(|e| templating::describe(&e))?
        {
            Value::Null => Ok(None),
            Value::String(text) if text.trim().is_empty() => Ok(None),
            Value::String(text) => Ok(Some(text.trim().to_owned())),
            Value::Number(number) => Ok(Some(number.to_string())),
            other => Err(format!(
                "a record id must render to text, got {}",
                model::json_kind(&other)
            )),
        }
    }
}

#[cfg(test)]
mod tests;
