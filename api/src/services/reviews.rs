//! The review queue: deliveries the worker held because the record they would write is in
//! doubt (the worker's `review` module finds them). A person reads the incoming values beside
//! the candidates, the differing fields named, and decides once: pick a candidate, create a
//! new record, merge the candidates into one, or dismiss. The decision is recorded (and
//! audited), and the held delivery runs again to carry it out.

use entity::{Role, TenantOwned, connections, deliveries, reviews};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::{audit, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{Page, TenantContext, Validate};
use crate::state::AppState;
use tributary_worker::review::decision;
use tributary_worker::statuses::delivery_status as ds;

tributary_worker::string_enum_schema!(
    /// Why a write was held.
    ReviewReason,
    "`several` (its match found several records), `similar` (none, but records with the step's `review.similar` values) or `duplicates` (the CRM's own duplicate rules refused the write: Salesforce's `DUPLICATES_DETECTED`).",
    ["several", "similar", "duplicates"]
);

tributary_worker::string_enum_schema!(
    /// Where a review item stands.
    ReviewStatus,
    "`open` until a person decides, then `decided`.",
    ["open", "decided"]
);

tributary_worker::string_enum_schema!(
    /// What a person decided.
    Decision,
    "`pick` (write to the candidate `record_id`), `create` (a new record), `merge` (merge the other candidates into `record_id`, then write to it; where the CRM merges) or `dismiss` (write nothing; the flow stops for this event).",
    ["pick", "create", "merge", "dismiss"]
);

/// One record the write could mean.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateOut {
    /// The record's id in the CRM.
    pub id: String,
    /// Its values, as the CRM answered them.
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
    /// The incoming fields whose values differ from this record's (ignoring case, accents,
    /// spaces and punctuation): what to look at.
    pub differs: Vec<String>,
}

/// A write held for a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewOut {
    pub id: String,
    #[schema(value_type = ReviewStatus)]
    pub status: String,
    #[schema(value_type = ReviewReason)]
    pub reason: String,
    /// What is in doubt, in a sentence.
    pub summary: String,
    pub event_id: String,
    pub flow_id: String,
    /// The held delivery, and its step.
    pub delivery_id: String,
    pub step: String,
    pub connection_id: String,
    /// The CRM object written.
    pub object: String,
    /// The write's `match` and `fields` values.
    pub incoming: Value,
    /// The records it could mean, side by side.
    pub candidates: Vec<CandidateOut>,
    /// Whether the connection's CRM merges these records, so `merge` may be decided (HubSpot
    /// contacts and deals, Salesforce Accounts, Contacts and Leads, the sandbox).
    pub can_merge: bool,
    #[schema(value_type = Option<Decision>)]
    pub decision: Option<String>,
    /// The record picked, or kept by a merge.
    pub record_id: Option<String>,
    /// Who decided: `user:<id>` or `api_key:<id>`.
    pub decided_by: Option<String>,
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The held delivery's status now: `waiting` while open, then whatever carrying out the
    /// decision made of it (`succeeded`, `retrying`, `dead`, `skipped`).
    pub delivery_status: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When an item still open alerts the tenant's channels (`review.waiting`).
    pub alert_at: chrono::DateTime<chrono::Utc>,
}

fn candidate_records(row: &reviews::Model) -> Vec<Map<String, Value>> {
    serde_json::from_str(&row.candidates).unwrap_or_default()
}

fn record_id(record: &Map<String, Value>) -> String {
    record
        .get("id")
        .map(tributary_worker::crm::as_text)
        .unwrap_or_default()
}

impl ReviewOut {
    fn of(row: reviews::Model, delivery_status: Option<String>, can_merge: bool) -> Self {
        let incoming: Value = serde_json::from_str(&row.incoming).unwrap_or(Value::Null);
        let mut written = incoming
            .get("match")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(fields) = incoming.get("fields").and_then(Value::as_object) {
            written.extend(fields.clone());
        }
        let candidates = candidate_records(&row)
            .into_iter()
            .map(|record| CandidateOut {
                id: record_id(&record),
                differs: tributary_worker::review::differing(&written, &record),
                record,
            })
            .collect();
        ReviewOut {
            id: row.id,
            status: row.status,
            reason: row.reason,
            summary: row.summary,
            event_id: row.event_id,
            flow_id: row.flow_id,
            delivery_id: row.delivery_id,
            step: row.step,
            connection_id: row.connection_id,
            object: row.object,
            incoming,
            candidates,
            can_merge,
            decision: row.decision,
            record_id: row.record_id,
            decided_by: row.decided_by,
            decided_at: row.decided_at,
            delivery_status,
            created_at: row.created_at,
            alert_at: row.alert_at,
        }
    }
}

/// The filter of `GET /v1/reviews`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewsQuery {
    /// Only items in this state.
    #[param(value_type = Option<ReviewStatus>)]
    pub status: Option<String>,
}

impl Validate for ReviewsQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        match self.status.as_deref() {
            None | Some("open" | "decided") => Ok(()),
            Some(_) => Err(vec![FieldError::new("status", "must be open or decided")]),
        }
    }
}

/// A person's decision about a review item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionIn {
    #[schema(value_type = Decision)]
    pub decision: String,
    /// Required with `pick` (the candidate to write to) and `merge` (the candidate to keep),
    /// refused with `create` and `dismiss`; it must be the `id` of one of the item's
    /// candidates.
    #[serde(default)]
    pub record_id: Option<String>,
}

impl Validate for DecisionIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut problems = Vec::new();
        if !decision::ALL.contains(&self.decision.as_str()) {
            problems.push(FieldError::new(
                "decision",
                format!("must be one of {}", decision::ALL.join(", ")),
            ));
        }
        let chooses = matches!(self.decision.as_str(), decision::PICK | decision::MERGE);
        match self.record_id.as_deref() {
            None | Some("") if chooses => problems.push(FieldError::new(
                "record_id",
                format!("{} needs the id of one of the candidates", self.decision),
            )),
            Some(_) if !chooses && decision::ALL.contains(&self.decision.as_str()) => problems
                .push(FieldError::new(
                    "record_id",
                    format!("{} takes no record_id", self.decision),
                )),
            _ => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

async fn delivery_status(
    state: &AppState,
    row: &reviews::Model,
) -> Result<Option<String>, ApiError> {
    Ok(
        deliveries::Entity::find_by_id_in_tenant(&row.tenant_id, &row.delivery_id)
            .one(&state.db)
            .await?
            .map(|d| d.status),
    )
}

/// Whether the item's connection merges its records.
async fn mergeable(state: &AppState, row: &reviews::Model) -> Result<bool, ApiError> {
    Ok(
        connections::Entity::find_by_id_in_tenant(&row.tenant_id, &row.connection_id)
            .one(&state.db)
            .await?
            .is_some_and(|c| tributary_worker::crm::merges(&c, &row.object)),
    )
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    query: &ReviewsQuery,
    page: &Page,
) -> Result<(Vec<ReviewOut>, bool), ApiError> {
    let mut select = reviews::Entity::find_in_tenant(&ctx.tenant_id);
    if let Some(status) = &query.status {
        select = select.filter(reviews::Column::Status.eq(status.as_str()));
    }
    let (rows, has_more) = page.fetch(&state.db, select, reviews::Column::Id).await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.delivery_id.as_str()).collect();
    let statuses: std::collections::HashMap<String, String> =
        deliveries::Entity::find_in_tenant(&ctx.tenant_id)
            .filter(deliveries::Column::Id.is_in(ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|d| (d.id, d.status))
            .collect();
    // Only the connections the page's items were held on.
    let connection_ids: Vec<&str> = rows.iter().map(|r| r.connection_id.as_str()).collect();
    let connections: Vec<connections::Model> = connections::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(connections::Column::Id.is_in(connection_ids))
        .all(&state.db)
        .await?;
    let merges = |row: &reviews::Model| {
        connections
            .iter()
            .find(|c| c.id == row.connection_id)
            .is_some_and(|c| tributary_worker::crm::merges(c, &row.object))
    };
    let out = rows
        .into_iter()
        .map(|row| {
            let status = statuses.get(&row.delivery_id).cloned();
            let can_merge = merges(&row);
            ReviewOut::of(row, status, can_merge)
        })
        .collect();
    Ok((out, has_more))
}

pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<ReviewOut, ApiError> {
    let row = super::owned::<reviews::Entity, _>(&state.db, ctx, id).await?;
    let status = delivery_status(state, &row).await?;
    let can_merge = mergeable(state, &row).await?;
    Ok(ReviewOut::of(row, status, can_merge))
}

/// Records a person's decision once (admins and owners) and runs the held delivery again to
/// carry it out.
pub async fn decide(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    input: DecisionIn,
) -> Result<ReviewOut, ApiError> {
    ctx.require(Role::Admin)?;
    let row = super::owned::<reviews::Entity, _>(&state.db, ctx, id).await?;
    if row.status != "open" {
        return Err(already(&row));
    }
    let chosen = input.record_id.clone().filter(|id| !id.is_empty());
    if let Some(chosen) = &chosen {
        let ids: Vec<String> = candidate_records(&row).iter().map(record_id).collect();
        if !ids.contains(chosen) {
            return Err(ApiError::Validation(vec![FieldError::new(
                "record_id",
                format!("is not one of the candidates ({})", ids.join(", ")),
            )]));
        }
    }
    if input.decision == decision::MERGE && !mergeable(state, &row).await? {
        return Err(ApiError::Validation(vec![FieldError::new(
            "decision",
            format!(
                "this connection's CRM cannot merge {} records; pick one or create a new one",
                row.object
            ),
        )]));
    }
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let decided = reviews::Entity::update_many()
        .set(reviews::ActiveModel {
            status: Set("decided".into()),
            decision: Set(Some(input.decision.clone())),
            record_id: Set(chosen),
            decided_by: Set(Some(format!("{}:{}", ctx.actor.kind(), ctx.actor.id()))),
            decided_at: Set(Some(now())),
            ..Default::default()
        })
        .filter(reviews::Column::Id.eq(row.id.as_str()))
        .filter(reviews::Column::Status.eq("open"))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !decided {
        txn.rollback().await?;
        let row = super::owned::<reviews::Entity, _>(&state.db, ctx, id).await?;
        return Err(already(&row));
    }
    // The held delivery is due again; the worker reads the decision when it runs it.
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            status: Set(ds::PENDING.into()),
            reason: Set(None),
            next_attempt_at: Set(None),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(deliveries::Column::Id.eq(row.delivery_id.as_str()))
        .filter(deliveries::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(deliveries::Column::Status.eq(ds::WAITING))
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "review.decide", "review", &row.id).await?;
    txn.commit().await?;
    super::events::requeue(state, &row.event_id).await?;
    get(state, ctx, id).await
}

/// The answer to a second decision: the first stands.
fn already(row: &reviews::Model) -> ApiError {
    ApiError::Conflict {
        detail: format!(
            "this review was already decided: {}{} by {}",
            row.decision.as_deref().unwrap_or("?"),
            row.record_id
                .as_deref()
                .map(|id| format!(" {id}"))
                .unwrap_or_default(),
            row.decided_by.as_deref().unwrap_or("?"),
        ),
        field: None,
    }
}
