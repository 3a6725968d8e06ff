//! What a connection watches at its CRM, one row per object: the polling cursor (the newest
//! `SystemModstamp` / `Modified_Time` seen, and the records already seen at that instant) and,
//! for Zoho, the notification channel and when it expires.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "crm_watches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    /// The vendor's object name (`Opportunity`, `Deals`).
    pub object: String,
    /// The newest modification time seen, as the vendor writes it; `None` before the first poll.
    pub cursor: Option<String>,
    /// JSON array of `id@stamp` already turned into events at `cursor` (equal timestamps).
    pub seen: String,
    /// API calls the polling made, in all.
    pub api_calls: i64,
    pub polled_at: Option<DateTimeUtc>,
    pub next_poll_at: Option<DateTimeUtc>,
    /// Zoho: the notification channel's id, and when Zoho drops it unless renewed.
    pub channel_id: Option<String>,
    pub channel_expires_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
