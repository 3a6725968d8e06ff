//! A tenant's Stripe account: its API key (encrypted) and its unguessable webhook token.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    #[sea_orm(unique)]
    pub webhook_token: String,
    /// Sealed secret (`keyid:base64`), never plaintext.
    pub secret_key: Option<String>,
    pub secret_key_last4: Option<String>,
    pub api_version: Option<String>,
    pub tolerance_seconds: i64,
    /// The webhook endpoint Tributary registered at Stripe for this account.
    pub webhook_endpoint_id: Option<String>,
    /// JSON array of the event types that endpoint was registered with.
    pub webhook_endpoint_events: Option<String>,
    pub webhook_registered_at: Option<DateTimeUtc>,
    /// Why the endpoint could not be brought up to date with the flows, until it is.
    pub webhook_sync_error: Option<String>,
    /// When the account was last reconciled against Stripe's events (or first seen).
    pub reconciled_at: Option<DateTimeUtc>,
    /// Events reconciliation found missing and ingested, over the account's life.
    pub reconcile_repaired: i32,
    pub last_reconciliation_id: Option<String>,
    /// Stripe's mode: `true` live, `false` test (from the key's prefix, or as the tenant said
    /// for an account with only a signing secret); `None` when not known. It never changes.
    pub livemode: Option<bool>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeAccount")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("secret_key_last4", &self.secret_key_last4)
            .field("livemode", &self.livemode)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
