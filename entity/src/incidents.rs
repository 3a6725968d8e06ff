//! An anomaly found in a tenant's activity: `detector` (`silence`, `spike`, `failure_rate`)
//! on `series` (see [`crate::activity`]). `open` while the signal is abnormal, `resolved`
//! when it is normal again; `evidence` is JSON (expected against observed, the window, the
//! test's probability, where to look). Acknowledging marks that a person has seen it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub detector: String,
    pub series: String,
    pub status: String,
    pub summary: String,
    pub evidence: String,
    pub opened_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
