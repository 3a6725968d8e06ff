//! Liveness and readiness probes.

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, get};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness probe
///
/// Answers as long as the process is up. No authentication.
#[utoipa::path(tag = "health", operation_id = "health.live",
    responses((status = 200, description = "The process is up.", body = HealthOut)),
    security(()))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthOut { status: "ok" })
}

/// Readiness probe
///
/// Answers 200 when the database and the queue answer and the embedded worker's consumers and
/// background loops run; 503 naming what is wrong otherwise. No authentication.
#[utoipa::path(tag = "health", operation_id = "health.ready",
    responses(
        (status = 200, description = "The database and the queue answer.", body = HealthOut),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[get("/readyz")]
async fn readyz(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    tributary_worker::probe::ready(&state.db, &state.queue, &state.pipeline.health())
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(HealthOut { status: "ok" }))
}

/// Prometheus metrics
///
/// The Prometheus text exposition of the process's counters and gauges, every name prefixed
/// `tributary_`. Served only when the operator sets `TRIBUTARY_METRICS_TOKEN`, to callers that
/// send it as `Authorization: Bearer <token>` (404 otherwise: the api's port is public).
#[utoipa::path(tag = "health", operation_id = "health.metrics",
    responses(
        (status = 200, description = "OpenMetrics text exposition (Prometheus reads it): webhooks, ingest latency, queue depth and oldest age, deliveries, CRM calls, rate limits, token refreshes.", content_type = "application/openmetrics-text"),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[get("/metrics")]
async fn metrics(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Some(expected) = &state.settings.metrics_token else {
        return Err(ApiError::NotFound);
    };
    let sent = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches: bool =
        subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), expected.expose_secret().as_bytes()).into();
    if !matches {
        return Err(ApiError::Unauthorized(
            "send the metrics token (TRIBUTARY_METRICS_TOKEN) as a bearer token".into(),
        ));
    }
    let text = tributary_worker::probe::metrics_text(&state.db, state.inbox.pending())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "metrics: the database is not reachable");
            ApiError::Unavailable("the database is not reachable".into())
        })?;
    Ok(HttpResponse::Ok()
        .content_type(tributary_worker::metrics::CONTENT_TYPE)
        .body(text))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}
