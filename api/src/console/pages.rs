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

/// What every signed-in page's layout reads: the section, the role, the sign-out token.
fn layout(viewer: &Viewer, section: &str) -> Value {
    context! {
        section => section,
        role => viewer.ctx.role.as_str(),
        csrf => viewer.csrf.clone(),
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
}

async fn event_list(
    req: HttpRequest,
    state: Data<AppState>,
    query: Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let filter = EventFilter {
        event_type: given(&query.event_type),
        status: given(&query.status),
        source: None,
        created_gte: None,
        created_lte: None,
    };
    let search: EventSearch = match given(&query.search) {
        Some(term) => {
            serde_json::from_value(serde_json::json!({ "search": term.trim() })).unwrap_or_default()
        }
        None => EventSearch::default(),
    };
    let (listed, problem) =
        match event_service::list(&state, &viewer.ctx, &first(100), &filter, &search).await {
            Ok((listed, _)) => (listed, None),
            Err(ApiError::Validation(errors)) => (
                Vec::new(),
                errors
                    .first()
                    .map(|e| format!("{}: {}", e.field, e.message)),
            ),
            Err(other) => return Err(other),
        };
    show(
        &viewer,
        "events.html",
        "events",
        context! {
            events => data(&listed),
            query => context! { type => filter.event_type, status => filter.status,
                                search => given(&query.search) },
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

async fn dead_letters(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let filter = DeliveryFilter {
        status: Some("dead".into()),
        event_id: None,
        flow_id: None,
    };
    let dead = event_service::list_deliveries(&state, &viewer.ctx, &first(100), &filter)
        .await?
        .0;
    show(
        &viewer,
        "dead_letters.html",
        "dead",
        context! { deliveries => data(&dead) },
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
