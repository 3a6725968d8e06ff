//! Who changed what in a tenant. Written in the same transaction as the change.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// `user` or `api_key`.
    pub actor_type: String,
    pub actor_id: String,
    /// `resource.verb`, e.g. `stripe_account.create`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub created_at: DateTimeUtc,
    /// The client's address (`TRIBUTARY_TRUSTED_PROXIES` decides whom to believe).
    pub client_address: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
