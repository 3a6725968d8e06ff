//! Incidents: what the anomaly detectors found in the tenant's activity (the worker's
//! `anomaly` module opens and resolves them). Listed newest first, read one by one, and
//! acknowledged by a person, which the audit log records.

use entity::{Role, TenantOwned, incidents, tenants};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary_worker::anomaly::sensitivity::{Level, Sensitivity};
use utoipa::{IntoParams, ToSchema};

use super::{audit, now};
use crate::error::ApiError;
use crate::extract::{Page, TenantContext, Validate};
use crate::state::AppState;

tributary_worker::string_enum_schema!(
    /// What found an incident.
    Detector,
    "`silence` (an event series stopped), `spike` (far more events than usual), `failure_rate` (a flow's attempts failing far more often than usual), `latency` (a flow's events reaching the CRM far slower than usual) or `amount` (a payment far outside the account's usual amounts).",
    ["silence", "spike", "failure_rate", "latency", "amount"]
);

tributary_worker::string_enum_schema!(
    /// Where an incident stands.
    IncidentStatus,
    "`open` while its detector still speaks, `resolved` once the signal is normal again.",
    ["open", "resolved"]
);

/// An anomaly in the tenant's activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentOut {
    pub id: String,
    #[schema(value_type = Detector)]
    pub detector: String,
    /// What was watched: `events|<source>|<account>|<type>` (events received),
    /// `attempts|<flow id>` (a flow's delivery attempts), `latency|<flow id>` (its event → CRM
    /// time) or `amounts|<source>|<account>|<currency>` (payments' amounts).
    pub series: String,
    #[schema(value_type = IncidentStatus)]
    pub status: String,
    /// What was found, in a sentence.
    pub summary: String,
    /// `expected` and `observed` (counts; a failure rate from 0 to 1; milliseconds; an amount in
    /// minor units), the `window` they were measured in (`from`, `to`), `p_value` (how likely
    /// the observation is under the usual behaviour), `look_at` (the events or deliveries to
    /// open) and, for an unusual payment, its `event_id`.
    pub evidence: Value,
    pub opened_at: chrono::DateTime<chrono::Utc>,
    /// When the detector last confirmed it.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    pub acknowledged_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who acknowledged it: `user:<id>` or `api_key:<id>`.
    pub acknowledged_by: Option<String>,
}

impl From<incidents::Model> for IncidentOut {
    fn from(row: incidents::Model) -> Self {
        IncidentOut {
            evidence: serde_json::from_str(&row.evidence).unwrap_or(Value::Null),
            id: row.id,
            detector: row.detector,
            series: row.series,
            status: row.status,
            summary: row.summary,
            opened_at: row.opened_at,
            updated_at: row.updated_at,
            resolved_at: row.resolved_at,
            acknowledged_at: row.acknowledged_at,
            acknowledged_by: row.acknowledged_by,
        }
    }
}

/// The filter of `GET /v1/incidents`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// Only incidents in this state.
    #[param(value_type = Option<IncidentStatus>)]
    pub status: Option<String>,
}

impl Validate for IncidentsQuery {
    fn validate(&self) -> Result<(), Vec<crate::error::FieldError>> {
        match self.status.as_deref() {
            None | Some("open" | "resolved") => Ok(()),
            Some(_) => Err(vec![crate::error::FieldError::new(
                "status",
                "must be open or resolved",
            )]),
        }
    }
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    query: &IncidentsQuery,
    page: &Page,
) -> Result<(Vec<IncidentOut>, bool), ApiError> {
    let mut select = incidents::Entity::find_in_tenant(&ctx.tenant_id);
    if let Some(status) = &query.status {
        select = select.filter(incidents::Column::Status.eq(status.as_str()));
    }
    let (rows, has_more) = page.fetch(&state.db, select, incidents::Column::Id).await?;
    Ok((rows.into_iter().map(IncidentOut::from).collect(), has_more))
}

pub async fn get(state: &AppState, ctx: &TenantContext, id: &str) -> Result<IncidentOut, ApiError> {
    Ok(super::owned::<incidents::Entity, _>(&state.db, ctx, id)
        .await?
        .into())
}

/// Marks the incident seen by the caller (admins and owners); acknowledging it again keeps the
/// first acknowledgement.
pub async fn acknowledge(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<IncidentOut, ApiError> {
    ctx.require(Role::Admin)?;
    let incident = super::owned::<incidents::Entity, _>(&state.db, ctx, id).await?;
    if incident.acknowledged_at.is_none() {
        let txn = tributary_worker::db::begin_write(&state.db).await?;
        incidents::Entity::update_many()
            .set(incidents::ActiveModel {
                acknowledged_at: Set(Some(now())),
                acknowledged_by: Set(Some(format!("{}:{}", ctx.actor.kind(), ctx.actor.id()))),
                ..Default::default()
            })
            .filter(incidents::Column::Id.eq(incident.id.as_str()))
            .filter(incidents::Column::AcknowledgedAt.is_null())
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            &ctx.account_id,
            &ctx.actor,
            "incident.acknowledge",
            "incident",
            Some(&incident.id),
            ctx.client_address.as_deref(),
        )
        .await?;
        txn.commit().await?;
    }
    get(state, ctx, id).await
}

tributary_worker::string_enum_schema!(
    /// How readily a detector speaks.
    SensitivityLevel,
    "`off` (never; what it had open resolves), `low` (only the most unlikely: p < 10⁻⁹, or one more standard deviation), `normal` (p < 10⁻⁶, the default) or `high` (p < 10⁻⁴, or one fewer standard deviation: earlier, and more false alarms).",
    ["off", "low", "normal", "high"]
);

/// Each detector's level in this environment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SensitivityIo {
    #[serde(default = "normal")]
    #[schema(value_type = SensitivityLevel)]
    pub silence: String,
    #[serde(default = "normal")]
    #[schema(value_type = SensitivityLevel)]
    pub spike: String,
    #[serde(default = "normal")]
    #[schema(value_type = SensitivityLevel)]
    pub failure_rate: String,
    #[serde(default = "normal")]
    #[schema(value_type = SensitivityLevel)]
    pub latency: String,
    #[serde(default = "normal")]
    #[schema(value_type = SensitivityLevel)]
    pub amount: String,
}

fn normal() -> String {
    "normal".into()
}

impl SensitivityIo {
    fn levels(&self) -> [(&'static str, &str); 5] {
        [
            ("silence", &self.silence),
            ("spike", &self.spike),
            ("failure_rate", &self.failure_rate),
            ("latency", &self.latency),
            ("amount", &self.amount),
        ]
    }
}

impl Validate for SensitivityIo {
    fn validate(&self) -> Result<(), Vec<crate::error::FieldError>> {
        let problems: Vec<crate::error::FieldError> = self
            .levels()
            .into_iter()
            .filter(|(_, level)| !Level::NAMES.contains(level))
            .map(|(detector, _)| {
                crate::error::FieldError::new(
                    detector,
                    format!("must be one of {}", Level::NAMES.join(", ")),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The environment's detector levels (`normal` where none was set).
pub async fn sensitivity(state: &AppState, ctx: &TenantContext) -> Result<SensitivityIo, ApiError> {
    let stored = tenants::Entity::find_by_id(ctx.tenant_id.clone())
        .one(&state.db)
        .await?
        .and_then(|t| t.anomaly_sensitivity);
    let levels = Sensitivity::of(stored.as_deref());
    let text = |level: Level| {
        serde_json::to_value(level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(normal)
    };
    Ok(SensitivityIo {
        silence: text(levels.silence),
        spike: text(levels.spike),
        failure_rate: text(levels.failure_rate),
        latency: text(levels.latency),
        amount: text(levels.amount),
    })
}

/// Sets every detector's level (admins and owners; audited); the next round uses them.
pub async fn set_sensitivity(
    state: &AppState,
    ctx: &TenantContext,
    input: SensitivityIo,
) -> Result<SensitivityIo, ApiError> {
    ctx.require(Role::Admin)?;
    let stored: serde_json::Map<String, Value> = input
        .levels()
        .into_iter()
        .map(|(detector, level)| (detector.to_string(), Value::String(level.to_string())))
        .collect();
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    tenants::Entity::update_many()
        .set(tenants::ActiveModel {
            anomaly_sensitivity: Set(Some(Value::Object(stored).to_string())),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(tenants::Column::Id.eq(ctx.tenant_id.as_str()))
        .exec(&txn)
        .await?;
    super::audit::log(
        &txn,
        ctx,
        "anomaly_sensitivity.update",
        "tenant",
        &ctx.tenant_id,
    )
    .await?;
    txn.commit().await?;
    sensitivity(state, ctx).await
}
