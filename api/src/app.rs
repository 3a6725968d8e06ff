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
use futures::FutureExt;
use utoipa_actix_web::AppExt;

use crate::error::{ApiError, problem_safety_net, with_request_id, with_request_id_sync};
use crate::state::AppState;

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
            .configure(crate::console::configure)
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
