//! A pending OAuth authorization: the `state` a tenant's browser carries to the vendor and
//! back, bound to one connection, single-use and short-lived.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_states")]
pub struct Model {
    /// SHA-256 (hex) of the state; the state itself is never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    /// Sealed PKCE code verifier, when the vendor takes PKCE.
    pub verifier: Option<String>,
    pub redirect_uri: String,
    /// Who started it (`user` or `api_key`, and the id), for the audit log.
    pub actor_type: String,
    pub actor_id: String,
    pub expires_at: DateTimeUtc,
    /// Set when the callback used it; a second use is refused.
    pub used_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("tenant_id", &self.tenant_id)
            .field("connection_id", &self.connection_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
