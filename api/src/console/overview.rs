//! The overview: is it working? Events per hour over the last 24 hours and per day over the
//! last 7 days (with how many failed), each flow's success rate over both, dead letters,
//! connections needing attention and the last reconciliation. Rows are counted by id range:
//! ids are UUIDv7, so the tenant's `(tenant_id, id)` index bounds each period.

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, DurationRound, Utc};
use entity::{TenantOwned, connections, deliveries, events};
use minijinja::{Value, context};
use sea_orm::{ColumnTrait, DatabaseConnection, PaginatorTrait, QueryFilter, QuerySelect};

use super::html::redirect;
use super::pages::{data, first, show};
use super::session;
use crate::error::ApiError;
use crate::state::AppState;

/// The smallest UUIDv7 (as text) of an id made at `at` or later.
fn id_floor(at: DateTime<Utc>) -> String {
    let ms = at.timestamp_millis().max(0) as u64;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// One bar of a chart: its label, events, and failed events.
#[derive(serde::Serialize)]
struct Bar {
    label: String,
    total: u64,
    failed: u64,
}

/// Events received in `[from, to)`, and how many of them failed.
async fn counted(
    db: &DatabaseConnection,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(u64, u64), ApiError> {
    let rows: Vec<(String, i64)> = events::Entity::find_in_tenant(tenant)
        .filter(events::Column::Id.gte(id_floor(from)))
        .filter(events::Column::Id.lt(id_floor(to)))
        .select_only()
        .column(events::Column::Status)
        .column_as(events::Column::Id.count(), "n")
        .group_by(events::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let total = rows.iter().map(|(_, n)| *n as u64).sum();
    let failed = rows
        .iter()
        .filter(|(status, _)| status == "failed")
        .map(|(_, n)| *n as u64)
        .sum();
    Ok((total, failed))
}

/// `count` bars of `step` each, the last one ending now.
async fn bars(
    db: &DatabaseConnection,
    tenant: &str,
    step: Duration,
    count: i32,
    label: &str,
) -> Result<Vec<Bar>, ApiError> {
    let end = Utc::now()
        .duration_trunc(step)
        .unwrap_or_else(|_| Utc::now())
        + step;
    let mut out = Vec::new();
    for i in (0..count).rev() {
        let to = end - step * i;
        let from = to - step;
        let (total, failed) = counted(db, tenant, from, to).await?;
        out.push(Bar {
            label: from.format(label).to_string(),
            total,
            failed,
        });
    }
    Ok(out)
}

/// Each flow's deliveries since `since`: (flow id, succeeded, failed or dead).
async fn rates(
    db: &DatabaseConnection,
    tenant: &str,
    since: DateTime<Utc>,
) -> Result<Vec<(String, u64, u64)>, ApiError> {
    let rows: Vec<(String, String, i64)> = deliveries::Entity::find_in_tenant(tenant)
        .filter(deliveries::Column::Id.gte(id_floor(since)))
        .select_only()
        .column(deliveries::Column::FlowId)
        .column(deliveries::Column::Status)
        .column_as(deliveries::Column::Id.count(), "n")
        .group_by(deliveries::Column::FlowId)
        .group_by(deliveries::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut flows: Vec<(String, u64, u64)> = Vec::new();
    for (flow, status, n) in rows {
        let at = match flows.iter().position(|(f, _, _)| *f == flow) {
            Some(at) => at,
            None => {
                flows.push((flow, 0, 0));
                flows.len() - 1
            }
        };
        match status.as_str() {
            "succeeded" => flows[at].1 += n as u64,
            "dead" | "failed" => flows[at].2 += n as u64,
            _ => {}
        }
    }
    Ok(flows)
}

pub async fn overview(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let viewer = crate::console_signed_in!(req, state);
    let db = &state.db;
    let tenant = viewer.ctx.tenant_id.as_str();
    let hours = bars(db, tenant, Duration::hours(1), 24, "%H:00").await?;
    let days = bars(db, tenant, Duration::days(1), 7, "%a %d").await?;
    let received: u64 = hours.iter().map(|b| b.total).sum();
    let failed: u64 = hours.iter().map(|b| b.failed).sum();
    let flows = crate::services::flows::list(&state, &viewer.ctx, &first(100))
        .await?
        .0;
    let day = rates(db, tenant, Utc::now() - Duration::hours(24)).await?;
    let week = rates(db, tenant, Utc::now() - Duration::days(7)).await?;
    let rate = |list: &[(String, u64, u64)], id: &str| {
        list.iter()
            .find(|(f, _, _)| f == id)
            .map(|(_, ok, bad)| context! { ok, bad, percent => percent(*ok, *bad) })
    };
    let per_flow: Vec<Value> = flows
        .iter()
        .map(|f| context! { name => f.flow.name.clone(), day => rate(&day, &f.id), week => rate(&week, &f.id) })
        .collect();
    let dead = deliveries::Entity::find_in_tenant(tenant)
        .filter(deliveries::Column::Status.eq("dead"))
        .count(db)
        .await?;
    let attention = connections::Entity::find_in_tenant(tenant)
        .filter(connections::Column::Status.ne("active"))
        .count(db)
        .await?;
    let accounts = crate::services::stripe_accounts::list(&state, &viewer.ctx, &first(100))
        .await?
        .0;
    let peak = |list: &[Bar]| list.iter().map(|b| b.total).max().unwrap_or(0).max(1);
    show(
        &viewer,
        "overview.html",
        "overview",
        context! {
            received, failed, dead, attention,
            hours => data(&hours), hours_peak => peak(&hours),
            days => data(&days), days_peak => peak(&days),
            flows => per_flow,
            accounts => data(&accounts),
        },
    )
}

/// Succeeded out of finished, in whole percent; none when nothing finished.
fn percent(ok: u64, bad: u64) -> Option<u64> {
    (ok + bad > 0).then(|| (ok * 100 + (ok + bad) / 2) / (ok + bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_floors_order_like_the_ids_made_then() {
        let at = Utc::now();
        let made = uuid::Uuid::now_v7().to_string();
        assert!(id_floor(at - Duration::seconds(1)) <= made);
        assert!(id_floor(at + Duration::seconds(1)) > made);
        assert_eq!(percent(3, 1), Some(75));
        assert_eq!(percent(0, 0), None);
    }
}
