//! The console's administration pages: users, API keys, alert channels, incidents, the review
//! inbox and the audit log.
//! What a role may not see is said on the page, as the API would refuse it.

use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::context;

use super::html::redirect;
use super::pages::{data, first, show};
use super::session;
use crate::error::ApiError;
use crate::services::incidents::{self, IncidentsQuery};
use crate::services::reviews::{self, ReviewOut, ReviewsQuery};
use crate::services::{api_keys, audit, notification_channels, users};
use crate::state::AppState;

/// A list the role may read, or why not (shown on the page instead).
fn allowed<T>(
    listed: Result<(Vec<T>, bool), ApiError>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    match listed {
        Ok((items, _)) => Ok((items, None)),
        Err(ApiError::Forbidden(why)) => Ok((Vec::new(), Some(why))),
        Err(other) => Err(other),
    }
}

async fn user_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let (listed, refused) = allowed(users::list(&state, &viewer.ctx, &first(100)).await)?;
    let roles = ["owner", "admin", "member"];
    show(
        &viewer,
        "users.html",
        "users",
        context! { users => data(&listed), refused, roles },
    )
}

async fn key_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let (listed, refused) = allowed(api_keys::list(&state, &viewer.ctx, &first(100)).await)?;
    let roles = ["admin", "member"];
    show(
        &viewer,
        "api_keys.html",
        "keys",
        context! { keys => data(&listed), refused, roles },
    )
}

async fn alert_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let listed = notification_channels::list(&state, &viewer.ctx, &first(100)).await;
    let (channels, refused) = allowed(listed)?;
    // Each channel with the latest alerts it sent.
    let mut shown = Vec::with_capacity(channels.len());
    for channel in &channels {
        let sent = notification_channels::alerts(&state, &viewer.ctx, &channel.id, &first(5))
            .await?
            .0;
        shown.push(context! { sent => data(&sent), ..data(channel) });
    }
    show(
        &viewer,
        "alerts.html",
        "alerts",
        context! { channels => shown, refused },
    )
}

async fn incident_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let of = |status: &str| IncidentsQuery {
        status: Some(status.to_string()),
    };
    let open = incidents::list(&state, &viewer.ctx, &of("open"), &first(100))
        .await?
        .0;
    let resolved = incidents::list(&state, &viewer.ctx, &of("resolved"), &first(50))
        .await?
        .0;
    show(
        &viewer,
        "incidents.html",
        "incidents",
        context! { open => data(&open), resolved => data(&resolved) },
    )
}

/// One review item as the inbox shows it: a row per field, the incoming value beside each
/// candidate's, the differing ones marked.
fn side_by_side(item: &ReviewOut) -> minijinja::Value {
    let mut incoming = serde_json::Map::new();
    for part in ["match", "fields"] {
        if let Some(values) = item
            .incoming
            .get(part)
            .and_then(serde_json::Value::as_object)
        {
            incoming.extend(values.clone());
        }
    }
    let mut names: Vec<String> = incoming.keys().cloned().collect();
    for candidate in &item.candidates {
        for name in candidate.record.keys() {
            if name != "id" && !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let text = |value: Option<&serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let rows: Vec<minijinja::Value> = names
        .iter()
        .map(|name| {
            let values: Vec<minijinja::Value> = item
                .candidates
                .iter()
                .map(|c| {
                    context! {
                        value => text(c.record.get(name)),
                        differs => c.differs.contains(name),
                    }
                })
                .collect();
            context! { field => name, incoming => text(incoming.get(name)), values }
        })
        .collect();
    context! { rows, ..data(item) }
}

async fn review_list(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let of = |status: &str| ReviewsQuery {
        status: Some(status.to_string()),
    };
    let open = reviews::list(&state, &viewer.ctx, &of("open"), &first(50))
        .await?
        .0;
    let decided = reviews::list(&state, &viewer.ctx, &of("decided"), &first(20))
        .await?
        .0;
    let open: Vec<minijinja::Value> = open.iter().map(side_by_side).collect();
    show(
        &viewer,
        "reviews.html",
        "reviews",
        context! { open, decided => data(&decided) },
    )
}

async fn audit_log(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let (entries, refused) = allowed(audit::list(&state.db, &viewer.ctx, &first(100)).await)?;
    show(
        &viewer,
        "audit.html",
        "audit",
        context! { entries => data(&entries), refused },
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/users", web::get().to(user_list))
        .route("/console/api-keys", web::get().to(key_list))
        .route("/console/alerts", web::get().to(alert_list))
        .route("/console/incidents", web::get().to(incident_list))
        .route("/console/reviews", web::get().to(review_list))
        .route("/console/audit-log", web::get().to(audit_log));
}
