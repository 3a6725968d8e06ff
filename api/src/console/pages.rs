//! The console's pages: each reads through the API's services as the signed-in user, and
//! renders; their buttons and forms send documented `/v1` requests (see `assets/console.js`).

use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::{Value, context};
use serde::Deserialize;

use super::html::{redirect, render};
use super::session::{self, Viewer};
use crate::error::ApiError;
use crate::extract::Page;
use crate::services::event_search::EventSearch;
use crate::services::events::{DeliveryFilter, EventFilter};
use crate::services::stripe_accounts;
use crate::services::{connections as connection_service, events as event_service, flows};
use crate::state::AppState;

/// The signed-in viewer, or the way to the sign-in page.
#[macro_export]
#[doc(hidden)]
macro_rules! console_signed_in {
    ($req:expr, $state:expr) => {
        match session::viewer(&$req, &$state).await? {
            Some(viewer) => viewer,
            None => return Ok(redirect("/console/login")),
        }
    };
}

/// Anything the API serializes, as templates read it.
pub(super) fn data<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// A page of at most `limit` items, from the start.
pub(super) fn first(limit: u64) -> Page {
    Page {
        limit,
        starting_after: None,
    }
}

/// What every signed-in page's layout reads: the section, the role, the sign-out token, and
/// the tenants for the header's switcher (the current one's name).
fn layout(viewer: &Viewer, section: &str) -> Value {
    let tenant = viewer
        .tenants
        .iter()
        .find(|t| t.current)
        .map(|t| t.name.clone());
    context! {
        section => section,
        role => viewer.ctx.role.as_str(),
        csrf => viewer.csrf.clone(),
        tenant => tenant,
        tenants => data(&viewer.tenants),
        environment => viewer.ctx.environment.clone(),
        environments => data(&viewer.environments),
    }
}

pub(super) fn show(
    viewer: &Viewer,
    template: &str,
    section: &str,
    data: Value,
) -> Result<HttpResponse, ApiError> {
    let html = render(
        template,
        context! { layout => layout(viewer, section), ..data },
    )?;
    Ok(viewer.respond(html))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    status: Option<String>,
    search: Option<String>,
    /// The first and last day (`YYYY-MM-DD`, UTC) of the events' Stripe `created`.
    from: Option<String>,
    until: Option<String>,
}

/// A day (`YYYY-MM-DD`, UTC) as unix seconds: its first second, or with `end` its last; `Err`
/// names the filter when the text is not a date.
fn day_bound(text: &Option<String>, end: bool, name: &str) -> Result<Option<i64>, String> {
    let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{name}: {text:?} is not a date (YYYY-MM-DD)"))?;
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
    Ok(Some(if end { start + 86_399 } else { start }))
}

async fn event_list(
    req: HttpRequest,
    state: Data<AppState>,
    query: Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let (from, until) = (
        day_bound(&query.from, false, "From"),
        day_bound(&query.until, true, "Until"),
    );
    let date_problem = from.as_ref().err().or(until.as_ref().err()).cloned();
    let filter = EventFilter {
        event_type: given(&query.event_type),
        status: given(&query.status),
        source: None,
        created_gte: from.unwrap_or_default(),
        created_lte: until.unwrap_or_default(),
    };
    let search: EventSearch = match given(&query.search) {
        Some(term) => {
            serde_json::from_value(serde_json::json!({ "search": term.trim() })).unwrap_or_default()
        }
        None => EventSearch::default(),
    };
    let (listed, problem) = match date_problem {
        Some(problem) => (Vec::new(), Some(problem)),
        None => match event_service::list(&state, &viewer.ctx, &first(100), &filter, &search).await
        {
            Ok((listed, _)) => (listed, None),
            Err(ApiError::Validation(errors)) => (
                Vec::new(),
                errors
                    .first()
                    .map(|e| format!("{}: {}", e.field, e.message)),
            ),
            Err(other) => return Err(other),
        },
    };
    show(
        &viewer,
        "events.html",
        "events",
        context! {
            events => data(&listed),
            query => context! { type => filter.event_type, status => filter.status,
                                search => given(&query.search), from => given(&query.from),
                                until => given(&query.until) },
            statuses => tributary_worker::statuses::status::ALL.to_vec(),
            problem,
        },
    )
}

async fn event_page(
    req: HttpRequest,
    state: Data<AppState>,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let event = match event_service::get(&state, &viewer.ctx, &id).await {
        Ok(event) => event,
        Err(ApiError::NotFound) => return not_found(&viewer),
        Err(other) => return Err(other),
    };
    let flows = flows::list(&state, &viewer.ctx, &first(100)).await?.0;
    // The deliveries, grouped by flow in the order they were made.
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for delivery in &event.deliveries {
        let flow_id = &delivery.delivery.flow_id;
        let value = data(delivery);
        match groups.iter_mut().find(|(id, _)| id == flow_id) {
            Some((_, steps)) => steps.push(value),
            None => groups.push((flow_id.clone(), vec![value])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(flow_id, steps)| {
            let name = flows
                .iter()
                .find(|f| f.id == flow_id)
                .map_or_else(|| format!("flow {flow_id}"), |f| f.flow.name.clone());
            context! { flow_id, name, steps }
        })
        .collect();
    show(
        &viewer,
        "event.html",
        "events",
        context! { event => data(&event), groups },
    )
}

pub(super) fn not_found(viewer: &Viewer) -> Result<HttpResponse, ApiError> {
    let html = render("not_found.html", context! { layout => layout(viewer, "") })?;
    let mut response = viewer.respond(html);
    *response.status_mut() = actix_web::http::StatusCode::NOT_FOUND;
    Ok(response)
}

#[derive(Deserialize)]
struct DeadQuery {
    /// Only the dead letters of this flow.
    flow_id: Option<String>,
}

async fn dead_letters(
    req: HttpRequest,
    state: Data<AppState>,
    query: Query<DeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let flow_id = query.flow_id.clone().filter(|f| !f.trim().is_empty());
    let filter = DeliveryFilter {
        status: Some("dead".into()),
        event_id: None,
        flow_id: flow_id.clone(),
    };
    let dead = event_service::list_deliveries(&state, &viewer.ctx, &first(100), &filter)
        .await?
        .0;
    let listed = flows::list(&state, &viewer.ctx, &first(100)).await?.0;
    // What "Retry all matching" sends: the same filter, to `POST /v1/deliveries/retry`.
    let retry = match &flow_id {
        Some(flow_id) => serde_json::json!({"status": "dead", "flow_id": flow_id}),
        None => serde_json::json!({"status": "dead"}),
    };
    show(
        &viewer,
        "dead_letters.html",
        "dead",
        context! {
            deliveries => data(&dead),
            flows => data(&listed),
            flow_id,
            retry => retry.to_string(),
        },
    )
}

async fn flow_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let listed = flows::list(&state, &viewer.ctx, &first(100)).await?.0;
    show(
        &viewer,
        "flows.html",
        "flows",
        context! { flows => data(&listed) },
    )
}

async fn connection_list(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let listed = connection_service::list(&state, &viewer.ctx, &first(100))
        .await?
        .0;
    show(
        &viewer,
        "connections.html",
        "connections",
        context! { connections => data(&listed) },
    )
}

async fn account_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let listed = stripe_accounts::list(&state, &viewer.ctx, &first(100))
        .await?
        .0;
    // Each account with its latest backfills and their progress.
    let mut accounts = Vec::with_capacity(listed.len());
    for account in &listed {
        let backfills =
            crate::services::backfills::list(&state, &viewer.ctx, &account.id, &first(5))
                .await?
                .0;
        accounts.push(context! { backfills => data(&backfills), ..data(account) });
    }
    show(
        &viewer,
        "stripe_accounts.html",
        "stripe",
        context! {
            accounts,
            event_types => crate::stripe::fixtures::event_types().to_vec(),
        },
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/events", web::get().to(event_list))
        .route("/console/events/{id}", web::get().to(event_page))
        .route("/console/dead-letters", web::get().to(dead_letters))
        .route("/console/flows", web::get().to(flow_list))
        .route("/console/connections", web::get().to(connection_list))
        .route("/console/stripe-accounts", web::get().to(account_list));
}
