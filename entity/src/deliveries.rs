//! One step of one flow for one event, with every attempt's outcome.
//! Status: `pending`, `succeeded`, `retrying`, `waiting`, `dead`, `skipped`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub connection_id: String,
    pub step: String,
    pub action: String,
    pub object: String,
    pub status: String,
    pub attempts: i32,
    pub crm_record_id: Option<String>,
    /// JSON of the rendered operation of the latest attempt.
    pub operation: Option<String>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub vendor_status: Option<i32>,
    pub vendor_body: Option<String>,
    /// JSON array of warning strings.
    pub warnings: String,
    /// Why a delivery was skipped (e.g. `stale`, `condition`).
    pub reason: Option<String>,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub duration_ms: Option<i64>,
    /// JSON of the vendor's answer to the successful write, for later steps.
    pub response: Option<String>,
    /// Attempts the vendor refused for rate limits; they do not use up the retry budget.
    pub throttled_attempts: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
