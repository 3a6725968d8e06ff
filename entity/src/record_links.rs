//! (connection, CRM object, Stripe object id) → CRM record id, with the `created` time of the
//! newest event applied: no second record on a replay, no older event over a newer one.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "record_links")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub crm_object: String,
    pub stripe_object_id: String,
    pub crm_record_id: String,
    pub last_event_created: i64,
    pub last_event_id: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
