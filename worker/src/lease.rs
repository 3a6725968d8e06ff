//! Leases for background loops that must run in one process at a time across replicas (the
//! sweeper, retention): a row per loop naming its holder and when the lease ends. The holder
//! renews it on every round; another process takes it over once it has run out.

use entity::leases;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
};

/// Takes or renews the lease `name` for `holder` for `ttl`. True when `holder` holds it now;
/// false while another holder's lease is live.
pub async fn take(
    db: &DatabaseConnection,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, DbErr> {
    let now = crate::now();
    let until = crate::vendor_time::after(now, ttl);
    let renewed = leases::Entity::update_many()
        .set(leases::ActiveModel {
            holder: Set(holder.to_string()),
            lease_until: Set(until),
            ..Default::default()
        })
        .filter(leases::Column::Name.eq(name))
        .filter(
            Condition::any()
                .add(leases::Column::Holder.eq(holder))
                .add(leases::Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?
        .rows_affected;
    if renewed == 1 {
        return Ok(true);
    }
    let inserted = leases::Entity::insert(leases::ActiveModel {
        name: Set(name.to_string()),
        holder: Set(holder.to_string()),
        lease_until: Set(until),
    })
    .on_conflict(
        OnConflict::column(leases::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(inserted == 1)
}

/// Gives up the lease `name` if `holder` holds it, so the next taker need not wait for it to
/// run out.
pub async fn release(db: &DatabaseConnection, name: &str, holder: &str) -> Result<(), DbErr> {
    leases::Entity::delete_many()
        .filter(leases::Column::Name.eq(name))
        .filter(leases::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}
