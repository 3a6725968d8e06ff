//! A tenant: one customer organisation and everything it owns. A tenant is its own
//! `production` environment; each of its other environments is a tenant row whose `parent_id`
//! names it, so everything scoped by tenant is scoped by environment too.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// The tenant this row is an environment of; `None` for a tenant itself.
    pub parent_id: Option<String>,
    /// `production` for a tenant itself, else the environment's name.
    pub environment: String,
    /// Whether the environment may hold Stripe accounts of the other mode: test-mode ones in
    /// `production`, live ones elsewhere. Off unless the tenant opts in.
    pub mixed_modes: bool,
    /// How readily each anomaly detector speaks for this environment (JSON: detector → `off`,
    /// `low`, `normal` or `high`); `None`: every one `normal`.
    pub anomaly_sensitivity: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
