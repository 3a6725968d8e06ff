//! A tenant's notification channel: a Slack-compatible incoming webhook or a signed generic
//! webhook that receives alerts. The URL (a Slack URL carries its own secret) and the signing
//! secret are sealed; only `url_hint` is ever shown.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// `slack` or `webhook`.
    pub kind: String,
    /// Sealed URL (`keyid:base64`), never plaintext.
    pub url: String,
    /// Scheme and host of the URL, for display.
    pub url_hint: String,
    /// Sealed signing secret of a `webhook` channel.
    pub secret: Option<String>,
    /// JSON array of the alert kinds this channel receives.
    pub alerts: String,
    /// Dead letters (deliveries in the dead-letter queue) at which the tenant is alerted.
    pub dead_letter_threshold: i32,
    /// Consecutive failed deliveries of one flow at which the tenant is alerted.
    pub flow_failure_threshold: i32,
    pub enabled: bool,
    pub last_sent_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationChannel")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("kind", &self.kind)
            .field("url_hint", &self.url_hint)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
