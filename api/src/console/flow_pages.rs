//! A flow's pages: the designer (new or editing), and its history — every version, the
//! difference between any two, and a rollback (a `PUT /v1/flows/{id}` of the old version,
//! guarded by `If-Match` so it never overwrites a change made meanwhile).

use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;

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

/// The designer, for a new flow (`flow` none) or for editing one.
async fn designer_page(
    req: &HttpRequest,
    state: &AppState,
    id: Option<&str>,
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
    let (steps, base) = match &flow {
        Some(flow) => (
            serde_json::to_string_pretty(&flow.flow.steps).map_err(anyhow::Error::from)?,
            serde_json::to_string(&flow.flow).map_err(anyhow::Error::from)?,
        ),
        None => (EXAMPLE_STEPS.to_string(), String::new()),
    };
    show(
        &viewer,
        "designer.html",
        "flows",
        context! {
            connections => data(&listed),
            event_types => tributary_worker::stripe::event_types::EVENT_TYPES.to_vec(),
            steps,
            flow => flow.as_ref().map(data),
            base,
            etag => flow.as_ref().map(|f| flows::etag(f.version)),
        },
    )
}

async fn new_flow(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    designer_page(&req, &state, None).await
}

async fn edit_flow(
    req: HttpRequest,
    state: Data<AppState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    designer_page(&req, &state, Some(&id)).await
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
