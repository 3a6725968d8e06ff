//! The form that adds a connection of any provider, generated from the provider's own
//! description (`worker::crm::providers`): its auth types and their fields, its settings and
//! what each holds. The page posts `POST /v1/connections` like any client; the API's
//! validation names the field of any mistake.

use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::context;
use serde::Deserialize;
use tributary_worker::crm::config::auth_fields;
use tributary_worker::crm::providers::{self, Kind};

use super::html::redirect;
use super::pages::show;
use super::session;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
struct Choice {
    provider: Option<String>,
    auth: Option<String>,
}

/// How a setting's value is typed in, and read back into JSON: `text`, `number`, `bool`,
/// `list` (comma-separated) or `json`.
fn input_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "bool",
        Kind::Seconds
        | Kind::Port
        | Kind::PollInterval
        | Kind::Licenses
        | Kind::DailyLimit
        | Kind::ReservePercent
        | Kind::Concurrency => "number",
        Kind::Objects | Kind::Scopes => "list",
        Kind::Headers | Kind::PriceTable | Kind::RateTable | Kind::RateLimit => "json",
        Kind::Url
        | Kind::Text
        | Kind::ApiVersion
        | Kind::DataCenter
        | Kind::Pointer
        | Kind::Host
        | Kind::TlsMode
        | Kind::Email
        | Kind::Currency
        | Kind::Edition => "text",
    }
}

/// Whether an auth field holds a secret (typed unseen, never shown back).
fn secret(field: &str) -> bool {
    matches!(
        field,
        "token"
            | "client_secret"
            | "refresh_token"
            | "access_token"
            | "private_key"
            | "password"
            | "value"
            | "secret"
    )
}

async fn new_connection(
    req: HttpRequest,
    state: Data<AppState>,
    choice: Query<Choice>,
) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let names: Vec<&str> = providers::ALL.iter().map(|p| p.name).collect();
    let provider = choice
        .provider
        .as_deref()
        .and_then(providers::get)
        .unwrap_or(providers::ALL[0]);
    let auth = choice
        .auth
        .as_deref()
        .filter(|a| provider.auth_types.contains(a))
        .unwrap_or(provider.auth_types[0]);
    let fields: Vec<minijinja::Value> = auth_fields(auth)
        .iter()
        .filter(|f| !matches!(**f, "access_token" | "expires_at"))
        .map(|f| context! { name => *f, secret => secret(f), multiline => *f == "private_key" })
        .collect();
    let settings: Vec<minijinja::Value> = provider
        .settings
        .iter()
        .map(|(name, kind)| {
            context! {
                name => *name,
                input => input_of(*kind),
                required => provider.required.iter().any(|(r, _)| r == name),
            }
        })
        .collect();
    show(
        &viewer,
        "connection_new.html",
        "connections",
        context! {
            providers => names,
            provider => provider.name,
            auth_types => provider.auth_types.to_vec(),
            auth,
            fields,
            settings,
        },
    )
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/connections/new", web::get().to(new_connection));
}
