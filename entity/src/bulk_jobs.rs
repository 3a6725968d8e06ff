//! A bulk action: every delivery or event that matched a filter when it was asked for, retried
//! or replayed in the background in batches, each through the same code as a single retry or
//! replay. `kind` is `delivery_retry` or `event_replay`; status `queued` → `running` →
//! `done` | `failed`. The items it covers are its [`bulk_job_items`](super::bulk_job_items).
//! It acts as the caller who asked for it (`actor_*`, `role`).

use sea_orm::entity::prelude::*;

use crate::Role;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bulk_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub status: String,
    /// The filter as it was given (JSON).
    pub filter: String,
    /// Replay only: re-run steps that succeeded too (never a `create`).
    pub force: bool,
    /// Items matched when the job was made.
    pub total: i32,
    /// Items retried or replayed.
    pub done: i32,
    /// Items refused (each with its reason on the item).
    pub failed: i32,
    pub last_error: Option<String>,
    pub actor_type: String,
    pub actor_id: String,
    pub role: Role,
    pub client_address: Option<String>,
    /// The tenant's id while the job is queued or running, else none; unique, so a tenant has
    /// one such job at a time.
    pub active_tenant_id: Option<String>,
    /// How many times a process has taken the job up.
    pub runs: i32,
    /// While in the future, one process is working on it.
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
