//! `GET /v1/oauth/callback`: where a vendor sends the tenant's browser after consent.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::extract::ValidQuery;
use crate::services::oauth::{self, CallbackQuery};
use crate::state::AppState;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: actix_web::http::StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head>\
             <body><h1>{0}</h1><p>{1}</p>\
             <p><a href=\"/console/connections\">Back to Connections</a></p></body></html>",
            escape(title),
            escape(body)
        ))
}

/// Complete an OAuth authorization
///
/// Where a CRM vendor sends the tenant's browser back after consent. Not called by clients: the
/// single-use `state` names the connection, so no token is needed. Answers an HTML page, or a
/// redirect to the configured success URL.
#[utoipa::path(tag = "connections", operation_id = "oauth.callback", params(CallbackQuery),
    responses(
        (status = 200, description = "A page naming the connection now active (when no success URL is configured).", body = String, content_type = "text/html"),
        (status = 302, description = "To `TRIBUTARY_OAUTH_SUCCESS_URL`, with `connection_id` added."),
        (status = 400, description = "A page saying why the authorization failed: unknown, expired, replayed state; refused consent; a failed code exchange. No connection becomes active.", body = String, content_type = "text/html"),
        (status = 422, response = inline(responses::Invalid))),
    security(()))]
#[get("/v1/oauth/callback")]
async fn callback(
    state: Data<AppState>,
    ValidQuery(query): ValidQuery<CallbackQuery>,
) -> HttpResponse {
    match oauth::callback(&state, &query).await {
        Ok(connection) => match &state.settings.oauth_success_url {
            Some(success) => {
                let mut url = match url::Url::parse(success) {
                    Ok(url) => url,
                    Err(_) => return HttpResponse::InternalServerError().finish(),
                };
                url.query_pairs_mut()
                    .append_pair("connection_id", &connection.id);
                HttpResponse::Found()
                    .insert_header(("location", url.to_string()))
                    .finish()
            }
            None => page(
                actix_web::http::StatusCode::OK,
                "Connected",
                &format!(
                    "{} ({}) is now active.",
                    connection.name, connection.provider
                ),
            ),
        },
        Err(oauth::Refused(reason)) => page(
            actix_web::http::StatusCode::BAD_REQUEST,
            "Authorization failed",
            &reason,
        ),
    }
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(callback);
}
