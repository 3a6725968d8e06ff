//! The durable inbox: one row per Stripe event per account (raw body kept byte-for-byte), and
//! one per CRM-side event per connection (`source` names the CRM; `stripe_account_id` then
//! holds the connection's id and `stripe_event_id` the vendor's event key).
//! Status: `received` → `queued` → `processed` | `failed` | `ignored`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub stripe_account_id: String,
    pub stripe_event_id: String,
    pub event_type: String,
    /// `data.object.id`, the Stripe object the event is about.
    pub stripe_object_id: Option<String>,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// Stripe's `created` (unix seconds): the event's place in the object's history.
    pub event_created: i64,
    /// The request body exactly as received.
    pub payload: String,
    pub status: String,
    /// How many times the worker has run this event.
    pub runs: i32,
    /// When the event is next due to run (a retry); the sweeper re-enqueues overdue events.
    pub next_run_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub received_at: DateTimeUtc,
    pub queued_at: Option<DateTimeUtc>,
    pub processed_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// When the event's personal data was erased on request (`POST /v1/erasures`).
    pub redacted_at: Option<DateTimeUtc>,
    /// Where the event came from: `stripe`, `hubspot`, `salesforce` or `zoho`.
    pub source: String,
    /// How soon its job is taken, highest first: 3 a live payment failure, 2 another live
    /// event, 1 a backfilled or reconciled payment failure, 0 the rest of those.
    pub priority: i16,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
