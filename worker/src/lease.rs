//! Leases for background loops that must run in one process at a time across replicas
//! (the sweeper): a row per loop naming its holder and when the lease ends. The holder renews
//! it on every round; another process takes it over once it has run out.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Takes or renews the lease `name` for `holder` for `ttl`. True when `holder` holds it now.
pub async fn take(
    db: &DatabaseConnection,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, sea_orm::DbErr> {
    let now = crate::now().timestamp_millis();
    let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms < $4"
        }
        _ => {
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms < ?4"
        }
    };
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [name.into(), holder.into(), until.into(), now.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}
