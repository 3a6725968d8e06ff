//! One attempt of a delivery: when it started, how long it took, a short summary of what was
//! asked (never credentials), the vendor's status and a bounded excerpt of its answer, and
//! what became of the delivery. A delivery keeps its latest attempts only (the worker prunes
//! older ones), and they go with it when retention or erasure takes it.
//! Outcome: `succeeded`, `retrying`, `throttled`, `waiting`, `dead`, `skipped`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub delivery_id: String,
    pub event_id: String,
    /// 1, 2, 3… over the delivery's whole life: a retry continues the count.
    pub attempt: i32,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    pub outcome: String,
    /// What was asked: the vendor requests (`POST host/path`), or the operation.
    pub request: Option<String>,
    pub vendor_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    /// The start of the vendor's answer, redacted like the delivery's `vendor_body`.
    pub response_excerpt: Option<String>,
    /// Why it ended so (`attempts_exhausted`, `stale`, `connection needs_reauth`, …).
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
