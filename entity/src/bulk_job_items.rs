//! One delivery (retry) or event (replay, dry run) of a bulk job: `pending` until the job reaches it,
//! then `done` or `failed` with the reason (e.g. the delivery was being sent at that moment).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bulk_job_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: String,
    /// The delivery's or event's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_id: String,
    pub tenant_id: String,
    pub status: String,
    pub reason: Option<String>,
    /// A dry run's item: what the event came to (JSON), when it changed or newly fails.
    pub result: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
