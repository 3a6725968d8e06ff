//! The application factory: shared state, the actix app and the HTTP server. The binary, the
//! spec export and the integration tests all build the server through [`server`], so they run
//! exactly the same app.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, Service};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Compress, ErrorHandlers, from_fn};
use actix_web::web::{self, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use futures::FutureExt;
use sea_orm::DatabaseConnection;
use utoipa_actix_web::AppExt;

use crate::auth::passwords;
use crate::auth::tokens::JwtKeys;
use crate::error::{ApiError, problem_safety_net, with_request_id, with_request_id_sync};
use crate::secrets::{self, Keyring};
use crate::settings::Settings;
use tributary_worker::queue::Queue;
use tributary_worker::runtime::Runtime;

/// Everything a request handler may need, shared by all workers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub keyring: Arc<Keyring>,
    pub jwt: JwtKeys,
    /// Verified against when a login names an unknown email (equal timing).
    pub dummy_password_hash: String,
    /// Bounds concurrent argon2 work (memory): every hash and password check goes through it.
    pub password_work: passwords::PasswordWork,
    /// Where events are queued.
    pub queue: Queue,
    /// Stores verified webhooks, many to a commit (`TRIBUTARY_INGEST_MAX_PENDING` waiting).
    pub inbox: tributary_worker::inbox::GroupCommit,
    /// The embedded worker and sweeper, running as long as the state lives.
    pub pipeline: Runtime,
    /// For calls the api makes itself (test events through the real ingress).
    pub http: reqwest::Client,
    /// Stripe accounts by webhook token, briefly, for the ingress.
    pub webhook_accounts: crate::services::ingress::AccountCache,
    /// Verified webhook events per Stripe account, in this process (`TRIBUTARY_WEBHOOK_RATE`).
    pub webhook_rate: crate::services::limits::RateLimiter,
    /// Previews and validations per tenant (`TRIBUTARY_PREVIEW_RATE`).
    pub preview_rate: crate::services::limits::RateLimiter,
}

/// Loads the keyring from `TRIBUTARY_ENCRYPTION_KEYS`, or the generated key file.
pub fn load_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    secrets::load_keyring(settings)
}

fn load_jwt(settings: &Settings) -> anyhow::Result<JwtKeys> {
    let (secret, _) = secrets::configured_or_generated(
        &settings.jwt_secret,
        settings,
        "JWT secret",
        "TRIBUTARY_JWT_SECRET",
        secrets::load_or_create_jwt_file,
    )?;
    JwtKeys::new(&secret, settings.access_token_ttl)
}

impl AppState {
    /// Opens the database (migrating it if configured) and loads the keys.
    pub async fn build(settings: Settings) -> anyhow::Result<AppState> {
        let keyring = load_keyring(&settings)?;
        let jwt = load_jwt(&settings)?;
        let db =
            crate::db::connect_pooled(&settings.database_url, settings.database_pool_size).await?;
        if settings.auto_migrate {
            crate::db::migrate(&db).await?;
        }
        let dummy_password_hash = tokio::task::spawn_blocking(passwords::dummy_hash).await?;
        let password_work = passwords::PasswordWork::sized_from_memory();
        tracing::info!(
            concurrent = password_work.size(),
            "password hashing bounded by memory"
        );
        let keyring = Arc::new(keyring);
        let pipeline = Runtime::start(
            &settings,
            db.clone(),
            settings.embedded_worker,
            "api",
            keyring.clone(),
        )
        .await?;
        let webhook_rate = crate::services::limits::RateLimiter::new(settings.limits.webhook_rate);
        let preview_rate = crate::services::limits::RateLimiter::new(settings.limits.preview_rate);
        let inbox = tributary_worker::inbox::GroupCommit::start(
            db.clone(),
            pipeline.queue.clone(),
            settings.limits.ingest_max_pending,
            settings.limits.ingest_max_backlog,
        );
        Ok(AppState {
            inbox,
            db,
            settings: Arc::new(settings),
            keyring,
            jwt,
            dummy_password_hash,
            password_work,
            queue: pipeline.queue.clone(),
            pipeline,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
            webhook_accounts: Default::default(),
            webhook_rate,
            preview_rate,
        })
    }
}

/// Method and path templates of every documented route, to tell 405 from 404.
struct RouteTable(Vec<(Vec<String>, Vec<Method>)>);

impl RouteTable {
    fn from_spec(spec: &utoipa::openapi::OpenApi) -> Self {
        let mut routes: Vec<(Vec<String>, Vec<Method>)> = spec
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods = Vec::new();
                for (method, operation) in [
                    (Method::GET, &item.get),
                    (Method::POST, &item.post),
                    (Method::PUT, &item.put),
                    (Method::PATCH, &item.patch),
                    (Method::DELETE, &item.delete),
                ] {
                    if operation.is_some() {
                        methods.push(method);
                    }
                }
                (segments(path), methods)
            })
            .collect();
        routes.push((segments("/openapi.json"), vec![Method::GET]));
        routes.push((segments("/docs"), vec![Method::GET]));
        routes.push((segments("/docs/{file}"), vec![Method::GET]));
        RouteTable(routes)
    }

    /// The methods of the documented path `path` is: when several templates match (`/v1/flows/
    /// validate` and `/v1/flows/{id}`), the one with literal segments where the others have
    /// parameters, leftmost first, as the spec names that path.
    fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let wanted = segments(path);
        let matching: Vec<&(Vec<String>, Vec<Method>)> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == wanted.len()
                    && template
                        .iter()
                        .zip(&wanted)
                        .all(|(t, w)| (t.starts_with('{') && !w.is_empty()) || t == w)
            })
            .collect();
        let literals = |template: &[String]| -> Vec<bool> {
            template.iter().map(|t| !t.starts_with('{')).collect()
        };
        let best = matching.iter().map(|(t, _)| literals(t)).max()?;
        let mut allowed: Vec<String> = matching
            .iter()
            .filter(|(t, _)| literals(t) == best)
            .flat_map(|(_, methods)| methods.iter().map(|m| m.to_string()))
            .collect();
        allowed.sort();
        allowed.dedup();
        (!allowed.is_empty()).then_some(allowed)
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_string)
        .collect()
}

/// The caller's `X-Request-Id` when it is a short token (so it can't forge log lines), else a
/// new one.
fn request_id(headers: &actix_web::http::header::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()))
}

async fn fallback(req: HttpRequest, routes: Data<RouteTable>) -> Result<HttpResponse, ApiError> {
    match routes.allowed(req.path()) {
        Some(allowed) => Err(ApiError::MethodNotAllowed(allowed)),
        None => Err(ApiError::NotFound),
    }
}

async fn openapi_json(spec: Data<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(spec.get_ref().clone())
}

/// Starts the HTTP server on `listener`. Signals are left to the caller when `handle_signals`
/// is false (tests).
pub fn server(
    listener: TcpListener,
    state: AppState,
    workers: Option<usize>,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let spec = crate::openapi::document();
    let routes = Data::new(RouteTable::from_spec(&spec));
    let spec_json = Data::new(spec.to_json().unwrap_or_default());
    let state = Arc::new(state);
    // Bulk retries and replays run in the api, where the single ones live; the loop ends
    // with the server.
    tokio::spawn(crate::services::bulk_jobs::run_forever(
        Arc::downgrade(&state),
        state.settings.sweep_interval,
    ));
    let state = Data::from(state);
    let path_config = web::PathConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("bad path parameter: {err}")).into());
    let query_config = web::QueryConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("bad query string: {err}")).into());

    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(routes.clone())
            .app_data(path_config.clone())
            .app_data(query_config.clone())
            .wrap(ErrorHandlers::new().default_handler(problem_safety_net))
            .wrap(from_fn(crate::middleware::etag::middleware))
            .wrap(from_fn(crate::middleware::idempotency::middleware))
            .wrap(Compress::default())
            .wrap_fn(|req, srv| {
                // The route's template, never its path: paths carry webhook tokens and ids.
                let method = req.method().clone();
                let route = req.match_pattern().unwrap_or_else(|| "(no route)".into());
                let request_id = request_id(req.headers());
                let started = std::time::Instant::now();
                let call = with_request_id_sync(request_id.clone(), || srv.call(req));
                let id = request_id.clone();
                with_request_id(request_id, call).map(move |mut res| {
                    if let Ok(res) = &mut res {
                        if let Ok(value) = HeaderValue::from_str(&id) {
                            res.headers_mut()
                                .insert(HeaderName::from_static("x-request-id"), value);
                        }
                        tracing::info!(
                            %method,
                            %route,
                            request_id = %id,
                            status = res.status().as_u16(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "request"
                        );
                    }
                    res
                })
            })
            .into_utoipa_app()
            .configure(crate::routes::configure)
            .into_app()
            .app_data(spec_json.clone())
            .route("/openapi.json", web::get().to(openapi_json))
            .configure(crate::docs::configure)
            .default_service(web::to(fallback))
    })
    .listen(listener)?;
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    if !handle_signals {
        server = server.disable_signals();
    }
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_names_the_methods_of_the_most_literal_template() {
        let routes = RouteTable(vec![
            (
                segments("/v1/flows/{id}"),
                vec![Method::GET, Method::DELETE],
            ),
            (segments("/v1/flows/validate"), vec![Method::POST]),
            (segments("/v1/flows/{id}/preview"), vec![Method::POST]),
        ]);
        assert_eq!(routes.allowed("/v1/flows/validate").unwrap(), ["POST"]);
        assert_eq!(routes.allowed("/v1/flows/abc").unwrap(), ["DELETE", "GET"]);
        assert_eq!(routes.allowed("/v1/flows/abc/preview").unwrap(), ["POST"]);
        assert!(routes.allowed("/v1/flows/abc/other").is_none());
    }
}
