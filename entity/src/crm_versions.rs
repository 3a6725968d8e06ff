//! The last version of each polled CRM record Tributary saw: its fields and modification
//! stamp, so the next change can say what each field was before (`previous`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub object: String,
    pub record_id: String,
    /// JSON object of the record's fields as last seen.
    pub fields: String,
    pub stamp: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
