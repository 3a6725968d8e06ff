//! A tenant's CRM connection: provider, sealed credentials, settings and health.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// `sandbox`, `hubspot`, `salesforce`, `zoho` or `http`.
    pub provider: String,
    /// `none`, `token`, `refresh_token`, `jwt_bearer`, `oauth`, `basic`, `header`, `hmac`.
    pub auth_type: String,
    /// Sealed JSON of the credentials (`keyid:base64`), never plaintext.
    pub credentials: Option<String>,
    /// JSON object of provider settings.
    pub settings: String,
    /// `active`, `pending_authorization`, `needs_reauth`, `paused`, `disabled`.
    pub status: String,
    pub status_reason: Option<String>,
    pub paused_until: Option<DateTimeUtc>,
    /// Sealed JSON of the current session: access token, its expiry and the API host.
    pub session: Option<String>,
    /// While set and in the future, one worker is refreshing the token; others wait for it.
    pub refresh_lease_until: Option<DateTimeUtc>,
    /// JSON object of what the vendor told us (API usage, discovered won stage, …); no secrets.
    pub vendor_info: String,
    /// The token of the connection's inbound URL (`/webhooks/<provider>/<token>`), for CRMs
    /// that push their changes; `None` until the connection is created.
    pub inbound_token: Option<String>,
    /// The vendor's id of the account the connection's token acts in, as the vendor told it
    /// (HubSpot's hub id, from its token metadata); never typed by the tenant. A shared
    /// HubSpot app's webhooks are routed by it.
    pub vendor_account: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("provider", &self.provider)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
