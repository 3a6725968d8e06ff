//! A backfill: Stripe's `/v1/events` for one account since a time, read page by page and
//! ingested (in chronological order) where the inbox lacks them. `kind` is `backfill` (asked
//! for by the tenant) or `reconcile` (scheduled, events whose webhook failed). Status:
//! `pending`, `running`, `succeeded`, `failed`. Its cursors make it resumable: `phase` `scan`
//! walks back to the oldest event (`scan_cursor`), `ingest` walks forward from it
//! (`ingest_cursor`, the last event handled).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "backfills")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub stripe_account_id: String,
    pub kind: String,
    pub since: DateTimeUtc,
    /// JSON array of event types, or none for every type.
    pub types: Option<String>,
    /// `Some(false)`: only events whose webhook delivery failed.
    pub delivery_success: Option<bool>,
    pub status: String,
    pub phase: String,
    pub scan_cursor: Option<String>,
    pub oldest_event_id: Option<String>,
    pub ingest_cursor: Option<String>,
    pub pages_read: i32,
    pub events_found: i32,
    pub ingested: i32,
    pub already_present: i32,
    pub failed: i32,
    /// Events passed over, not stored: their `livemode` is not the account's.
    pub skipped: i32,
    pub last_error: Option<String>,
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
