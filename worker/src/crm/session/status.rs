//! Changes to a connection's status its vendor's answers call for: re-authorization, a pause,
//! a hold on every call.

use chrono::{DateTime, Utc};
use entity::connections;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
};

/// Marks a connection as needing re-authorization; its deliveries wait until it is reconnected.
pub async fn mark_needs_reauth(
    db: &DatabaseConnection,
    connection_id: &str,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            status: Set("needs_reauth".into()),
            status_reason: Set(Some(reason.to_string())),
            updated_at: Set(crate::now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(connections::Column::Status.is_in(["active", "paused"]))
        .exec(db)
        .await?;
    tracing::warn!(connection_id, reason, "connection needs re-authorization");
    Ok(())
}

/// Pauses a connection until `until` (a vendor's daily limit, say); its deliveries wait.
pub async fn pause(
    db: &DatabaseConnection,
    connection_id: &str,
    until: DateTime<Utc>,
    reason: &str,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            status: Set("paused".into()),
            status_reason: Set(Some(reason.to_string())),
            paused_until: Set(Some(until)),
            updated_at: Set(crate::now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(connections::Column::Status.is_in(["active", "paused"]))
        .exec(db)
        .await?;
    tracing::warn!(connection_id, %until, reason, "connection paused");
    Ok(())
}

/// Holds every call of a connection until `until` (a vendor's `Retry-After`), across all
/// workers, without changing its status. Never shortens a hold already in place.
pub async fn hold(
    db: &DatabaseConnection,
    connection_id: &str,
    until: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            paused_until: Set(Some(until)),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection_id))
        .filter(
            Condition::any()
                .add(connections::Column::PausedUntil.is_null())
                .add(connections::Column::PausedUntil.lt(until)),
        )
        .exec(db)
        .await?;
    Ok(())
}
