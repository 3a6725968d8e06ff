//! A delivery held for a person because the record it would write is in doubt. `reason` is
//! `several` (its match found several records) or `similar` (none, but records with the
//! review's `similar` values); `incoming` is the write's `match` and `fields` (JSON),
//! `candidates` the records found (JSON list). `open` until a person decides; then `decided`
//! with the `decision` (`pick`, `create`, `merge`, `dismiss`) and, for `pick` and `merge`, the
//! `record_id` written to. `alert_at` is when a still-open item alerts.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reviews")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub flow_id: String,
    pub step: String,
    pub connection_id: String,
    pub object: String,
    pub status: String,
    pub reason: String,
    pub summary: String,
    pub incoming: String,
    pub candidates: String,
    pub decision: Option<String>,
    pub record_id: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub alert_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
