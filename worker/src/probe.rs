//! Health and metrics over HTTP for the standalone `worker`: `/healthz` (the process is up),
//! `/readyz` (the database and the queue answer, and the job consumers and background loops
//! run) and `/metrics` (Prometheus text), on
//! `TRIBUTARY_WORKER_LISTEN`, for Kubernetes probes and scraping. It serves nothing else; the
//! api answers the same three paths on its own port.

use std::net::SocketAddr;

use actix_web::web::{self, Data};
use actix_web::{App, HttpResponse, HttpServer};
use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::health::Health;
use crate::queue::Queue;
use std::sync::Arc;

/// Why the process is not ready: a part of the worker that stopped, or a store that does not
/// answer.
pub async fn ready(db: &DatabaseConnection, queue: &Queue, health: &Health) -> Result<(), String> {
    health.check()?;
    if let Err(e) = db.execute_unprepared("SELECT 1").await {
        tracing::warn!(error = %e, "readiness check failed");
        return Err("the database is not reachable".into());
    }
    if let Err(e) = queue.ping().await {
        tracing::warn!(error = format!("{e:#}"), "readiness check failed");
        return Err("the queue is not reachable".into());
    }
    Ok(())
}

/// The Prometheus exposition, with the queue and connection gauges read fresh from the
/// database.
pub async fn metrics_text(
    db: &DatabaseConnection,
    ingest_pending: usize,
) -> Result<String, sea_orm::DbErr> {
    crate::metrics::read_queue(db).await?;
    crate::metrics::read_connections(db).await?;
    Ok(crate::metrics::render(ingest_pending))
}

struct ProbeState {
    db: DatabaseConnection,
    queue: Queue,
    health: Arc<Health>,
}

fn status(status: &str) -> serde_json::Value {
    serde_json::json!({ "status": status })
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(status("ok"))
}

async fn readyz(state: Data<ProbeState>) -> HttpResponse {
    match ready(&state.db, &state.queue, &state.health).await {
        Ok(()) => HttpResponse::Ok().json(status("ok")),
        Err(detail) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unavailable", "detail": detail })),
    }
}

async fn metrics(state: Data<ProbeState>) -> HttpResponse {
    match metrics_text(&state.db, 0).await {
        Ok(text) => HttpResponse::Ok()
            .content_type(crate::metrics::CONTENT_TYPE)
            .body(text),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the database is not reachable");
            HttpResponse::ServiceUnavailable().json(
                serde_json::json!({ "status": "unavailable", "detail": "the database is not reachable" }),
            )
        }
    }
}

/// Starts the listener; the caller stops it through the returned server's handle.
pub fn serve(
    address: SocketAddr,
    db: DatabaseConnection,
    queue: Queue,
    health: Arc<Health>,
) -> anyhow::Result<actix_web::dev::Server> {
    let state = Data::new(ProbeState { db, queue, health });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(address)
    .with_context(|| format!("TRIBUTARY_WORKER_LISTEN: cannot bind {address}"))?
    .run();
    Ok(server)
}
