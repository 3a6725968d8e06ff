//! A flow's pages: the designer (new or editing), and its history — every version, the
//! difference between any two, and a rollback (a `PUT /v1/flows/{id}` of the old version,
//! guarded by `If-Match` so it never overwrites a change made meanwhile).

use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;
use serde_json::Value;
use tributary_worker::flow::templates::FlowTemplate;

use super::html::redirect;
use super::pages::{data, first, not_found, show};
use super::session;
use crate::error::ApiError;
use crate::services::{connections as connection_service, flows};
use crate::state::AppState;

/// The steps a new flow starts with: a sandbox contact from a charge's billing details.
const EXAMPLE_STEPS: &str = r#"[
  {
    "id": "contact",
    "action": "upsert",
    "object": "contacts",
    "match": {"email": "{{ object.billing_details.email }}"},
    "fields": {
      "name": "{{ object.billing_details.name }}",
      "last_payment": "{{ object.amount | major_units(object.currency) }}"
    }
  }
]"#;

/// A Stripe event type offered in the designer, with what it means.
#[derive(serde::Serialize)]
struct EventChoice {
    name: String,
    description: String,
}

/// Stripe's event types with their descriptions; patterns and types the flow names that are not
/// in the catalogue (`customer.subscription.*`) come first, so saving never drops them.
fn event_choices(named: &[String]) -> Vec<EventChoice> {
    let catalogue = tributary_worker::stripe::event_types::EVENT_TYPES;
    let extra = named.iter().filter(|n| !catalogue.contains(&n.as_str()));
    extra
        .map(|name| EventChoice {
            name: name.clone(),
            description: if name.ends_with('*') {
                format!("Every event type starting {}", name.trim_end_matches('*'))
            } else {
                "An event type this flow names.".into()
            },
        })
        .chain(catalogue.iter().map(|name| EventChoice {
            name: (*name).to_string(),
            description: tributary_worker::stripe::event_descriptions::describe(name),
        }))
        .collect()
}

/// What the built-in recipes map each CRM field to (only values read from the event's object),
/// for the designer's suggestions: `[field, value, recipe name]`, in the recipes' order.
fn recipe_mappings(recipes: &[FlowTemplate]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for recipe in recipes {
        let steps = recipe.flow["steps"].as_array().into_iter().flatten();
        for step in steps {
            for key in ["match", "fields"] {
                let Some(map) = step[key].as_object() else {
                    continue;
                };
                for (field, value) in map {
                    let Some(value) = value.as_str() else {
                        continue;
                    };
                    if value.contains("object.")
                        && !out.iter().any(|(f, v, _)| f == field && v == value)
                    {
                        out.push((field.clone(), value.to_string(), recipe.name.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Each step kind as the designer draws it: its action, the keys it takes (`null`: any), whether
/// it names an object, and the objects it can name when the kind knows them.
fn step_kinds() -> Vec<Value> {
    tributary_worker::flow::Action::ALL
        .iter()
        .map(|action| {
            let kind = tributary_worker::steps::kind(*action);
            serde_json::json!({
                "action": action.to_string(),
                "keys": kind.keys(),
                "needs_object": kind.needs_object(),
                "objects": kind.objects(),
            })
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct Start {
    /// A recipe of `GET /v1/flow-templates` to start a new flow from.
    recipe: Option<String>,
}

/// What the designer opens with: the flow being edited, else the recipe chosen, else the
/// example, as a flow document.
fn starting_point(flow: Option<&flows::FlowOut>, recipe: Option<&FlowTemplate>) -> Value {
    match (flow, recipe) {
        (Some(flow), _) => serde_json::to_value(&flow.flow).unwrap_or_default(),
        (None, Some(recipe)) => recipe.flow.clone(),
        (None, None) => serde_json::json!({
            "name": "",
            "trigger": {"events": []},
            "steps": serde_json::from_str::<Value>(EXAMPLE_STEPS).unwrap_or_default(),
        }),
    }
}

/// The designer, for a new flow (`flow` none) or for editing one.
async fn designer_page(
    req: &HttpRequest,
    state: &AppState,
    id: Option<&str>,
    start: &Start,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(*req, *state);
    let flow = match id {
        Some(id) => match flows::get(state, &viewer.ctx, id).await {
            Ok(flow) => Some(flow),
            Err(ApiError::NotFound) => return not_found(&viewer),
            Err(other) => return Err(other),
        },
        None => None,
    };
    let listed = connection_service::list(state, &viewer.ctx, &first(100))
        .await?
        .0;
    let recipes = flows::templates();
    let recipe = start
        .recipe
        .as_deref()
        .and_then(|id| recipes.iter().find(|r| r.id == id));
    let document = starting_point(flow.as_ref(), recipe);
    let events: Vec<String> = document["trigger"]["events"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let steps = serde_json::to_string_pretty(&document["steps"]).map_err(anyhow::Error::from)?;
    // A saved flow or a recipe keeps what the designer does not show (filter, source…).
    let base = if flow.is_some() || recipe.is_some() {
        serde_json::to_string(&document).map_err(anyhow::Error::from)?
    } else {
        String::new()
    };
    show(
        &viewer,
        "designer.html",
        "flows",
        context! {
            connections => data(&listed),
            event_types => data(&event_choices(&events)),
            events,
            name => document["name"].as_str().unwrap_or_default(),
            steps,
            flow => flow.as_ref().map(data),
            recipe_maps => serde_json::to_string(&recipe_mappings(&recipes)).map_err(anyhow::Error::from)?,
            kinds => serde_json::to_string(&step_kinds()).map_err(anyhow::Error::from)?,
            recipes => data(&recipes),
            recipe => recipe.map(data),
            base,
            etag => flow.as_ref().map(|f| flows::etag(f.version)),
        },
    )
}

async fn new_flow(
    req: HttpRequest,
    state: Data<AppState>,
    start: Query<Start>,
) -> Result<HttpResponse, ApiError> {
    designer_page(&req, &state, None, &start).await
}

async fn edit_flow(
    req: HttpRequest,
    state: Data<AppState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    designer_page(&req, &state, Some(&id), &Start::default()).await
}

#[derive(Deserialize)]
struct Compare {
    from: Option<i32>,
    to: Option<i32>,
}

/// One line of a difference: ` `, `-` or `+`, and its text.
#[derive(serde::Serialize, PartialEq, Debug)]
struct Line {
    kind: &'static str,
    text: String,
}

/// The lines of `new` against `old` (longest common subsequence; flows are short).
fn diff(old: &str, new: &str) -> Vec<Line> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut common = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    let line = |kind, text: &str| Line {
        kind,
        text: text.to_string(),
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(line(" ", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push(line("+", b[j]));
            j += 1;
        } else {
            out.push(line("-", a[i]));
            i += 1;
        }
    }
    out
}

/// The most lines a version's document may have for its difference to be shown.
const MAX_DIFF_LINES: usize = 2000;

async fn flow_page(
    req: HttpRequest,
    state: Data<AppState>,
    id: Path<String>,
    compare: Query<Compare>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let flow = match flows::get(&state, &viewer.ctx, &id).await {
        Ok(flow) => flow,
        Err(ApiError::NotFound) => return not_found(&viewer),
        Err(other) => return Err(other),
    };
    let versions = flows::versions(&state, &viewer.ctx, &id).await?;
    let text = |version: i32| {
        versions
            .iter()
            .find(|v| v.version == version)
            .map(|v| serde_json::to_string_pretty(&v.flow).unwrap_or_default())
    };
    let to = compare.to.unwrap_or(flow.version);
    let from = compare.from.unwrap_or((to - 1).max(1));
    let lines = match (text(from), text(to)) {
        (Some(old), Some(new))
            if old.lines().count() <= MAX_DIFF_LINES && new.lines().count() <= MAX_DIFF_LINES =>
        {
            Some(diff(&old, &new))
        }
        _ => None,
    };
    show(
        &viewer,
        "flow.html",
        "flows",
        context! {
            flow => data(&flow),
            etag => flows::etag(flow.version),
            versions => data(&versions),
            from, to,
            lines => lines.as_ref().map(data),
        },
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/flows/new", web::get().to(new_flow))
        .route("/console/flows/{id}", web::get().to(flow_page))
        .route("/console/flows/{id}/edit", web::get().to(edit_flow));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_keeps_common_lines_and_marks_the_rest() {
        let kinds: Vec<(&str, String)> = diff("a\nb\nc", "a\nc\nd")
            .into_iter()
            .map(|l| (l.kind, l.text))
            .collect();
        assert_eq!(
            kinds,
            [
                (" ", "a".to_string()),
                ("-", "b".to_string()),
                (" ", "c".to_string()),
                ("+", "d".to_string())
            ]
        );
        assert!(diff("", "").is_empty());
    }
}
