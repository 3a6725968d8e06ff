//! Liveness and readiness probes.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use sea_orm::ConnectionTrait;
use serde::Serialize;
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

#[utoipa::path(tag = "health", operation_id = "health.live",
    responses((status = 200, description = "The process is up.", body = HealthOut)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthOut { status: "ok" })
}

#[utoipa::path(tag = "health", operation_id = "health.ready",
    responses(
        (status = 200, description = "The database and the queue answer.", body = HealthOut),
        (status = 503, response = inline(responses::Unavailable))))]
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

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz);
}
