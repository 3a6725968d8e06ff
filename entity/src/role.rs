//! Roles a user or API key holds inside its tenant.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// `owner` manages everything including other owners, `admin` manages everything but owners,
/// `member` reads only.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only access.
    #[sea_orm(string_value = "member")]
    Member,
    /// Manages the tenant's resources and its admins and members.
    #[sea_orm(string_value = "admin")]
    Admin,
    /// Everything, including owners and the tenant itself.
    #[sea_orm(string_value = "owner")]
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Whether this role may change the tenant's state at all.
    pub fn can_write(self) -> bool {
        self >= Role::Admin
    }
}
