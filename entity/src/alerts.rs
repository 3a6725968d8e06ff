//! One alert condition for one channel (e.g. `connection.needs_reauth:{id}`), with when it was
//! last sent: the row is what keeps a condition from alerting more than once per period.
//! Status: `pending`, `sending` (claimed by one process), `sent`, `failed`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub channel_id: String,
    pub condition_key: String,
    /// `connection.needs_reauth`, `deliveries.dead_letters` or `flow.failing`.
    pub kind: String,
    /// The connection or flow the alert is about.
    pub subject_id: Option<String>,
    pub summary: String,
    pub status: String,
    pub times_sent: i32,
    /// Attempts since the last successful send.
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTimeUtc>,
    pub sent_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
