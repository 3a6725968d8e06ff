//! Liveness and readiness probes.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use entity::events;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use tributary_worker::engine::status;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::app::AppState;
use crate::error::ApiError;

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
/// Answers 200 when the database and the queue answer, 503 otherwise. No authentication.
#[utoipa::path(tag = "health", operation_id = "health.ready",
    responses(
        (status = 200, description = "The database and the queue answer.", body = HealthOut),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[get("/readyz")]
async fn readyz(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.db.execute_unprepared("SELECT 1").await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable("the database is not reachable".into())
    })?;
    state.queue.ping().await.map_err(|e| {
        tracing::warn!(error = format!("{e:#}"), "readiness check failed");
        ApiError::Unavailable("the queue is not reachable".into())
    })?;
    Ok(HttpResponse::Ok().json(HealthOut { status: "ok" }))
}

/// Prometheus metrics
///
/// The Prometheus text exposition of the process's counters and gauges, every name prefixed
/// `tributary_`. No authentication: keep it inside the cluster.
#[utoipa::path(tag = "health", operation_id = "health.metrics",
    responses(
        (status = 200, description = "Prometheus text exposition: webhooks, ingest latency, queue depth and oldest age, deliveries, CRM calls, rate limits, token refreshes.", content_type = "text/plain"),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[get("/metrics")]
async fn metrics(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    // The queue's depth and age are the database's: events not yet finished.
    let waiting = events::Entity::find()
        .filter(events::Column::Status.is_in([status::RECEIVED, status::QUEUED]));
    let depth = waiting.clone().count(&state.db).await.map_err(|e| {
        tracing::warn!(error = %e, "metrics: the database is not reachable");
        ApiError::Unavailable("the database is not reachable".into())
    })?;
    let oldest = waiting
        .order_by_asc(events::Column::ReceivedAt)
        .one(&state.db)
        .await?
        .map(|e| (tributary_worker::now() - e.received_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    tributary_worker::metrics::queue(depth as i64, oldest.max(0.0));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(tributary_worker::metrics::render()))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}
