//! Where a person may act: their home tenant (`users.tenant_id`, with `users.role`) or a
//! tenant they were invited into (a `memberships` row, with its role). The one lookup the
//! tenant context, token refresh and switching share, so a removed membership stops all three.

use entity::{Role, TenantOwned, memberships, users};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// A person's seat in one tenant.
#[derive(Debug, Clone)]
pub struct Seat {
    /// The person (their home row).
    pub user: users::Model,
    /// Their role in this tenant.
    pub role: Role,
    /// The membership, when this is not their home tenant.
    pub membership: Option<memberships::Model>,
}

impl Seat {
    /// Whether this is the person's home tenant (where their account and password live).
    pub fn home(&self) -> bool {
        self.membership.is_none()
    }
}

/// The seat of the person `user_id` in `tenant_id`, if they have one there.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    user_id: &str,
    tenant_id: &str,
) -> Result<Option<Seat>, DbErr> {
    match users::Entity::find_by_id(user_id).one(db).await? {
        Some(user) => of(db, user, tenant_id).await,
        None => Ok(None),
    }
}

/// The seat of an already loaded (and possibly locked) person in `tenant_id`.
pub async fn of<C: ConnectionTrait>(
    db: &C,
    user: users::Model,
    tenant_id: &str,
) -> Result<Option<Seat>, DbErr> {
    if user.tenant_id == tenant_id {
        return Ok(Some(Seat {
            role: user.role,
            user,
            membership: None,
        }));
    }
    let membership = memberships::Entity::find_in_tenant(tenant_id)
        .filter(memberships::Column::UserId.eq(user.id.as_str()))
        .one(db)
        .await?;
    Ok(membership.map(|m| Seat {
        role: m.role,
        user,
        membership: Some(m),
    }))
}
