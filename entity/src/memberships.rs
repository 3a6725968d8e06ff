//! A person's place in a tenant other than their home one: invited there by email, with a
//! role of that tenant. The person (email, password, home tenant and role) stays their
//! `users` row; a membership never carries credentials.

use sea_orm::entity::prelude::*;

use crate::Role;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The person: their `users` row, in their home tenant.
    pub user_id: String,
    /// The tenant they were invited into.
    pub tenant_id: String,
    pub role: Role,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
