//! Database connection and migrations, SQLite or Postgres from one URL.

use std::path::Path;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// Connections a Postgres pool opens when `TRIBUTARY_DATABASE_POOL_SIZE` does not say.
pub const DEFAULT_POOL_SIZE: u32 = 20;

/// Connections a SQLite pool opens when `TRIBUTARY_DATABASE_POOL_SIZE` does not say: one, as
/// sea-orm does by default. SQLite writes one at a time whatever the pool, and every write
/// here is a transaction that takes the write lock up front.
pub const DEFAULT_SQLITE_POOL_SIZE: u32 = 1;

pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    connect_pooled(url, None).await
}

/// Connects with at most `pool_size` connections (by default [`DEFAULT_POOL_SIZE`], or
/// [`DEFAULT_SQLITE_POOL_SIZE`] for SQLite).
pub async fn connect_pooled(
    url: &str,
    pool_size: Option<u32>,
) -> anyhow::Result<DatabaseConnection> {
    let pool_size = pool_size.unwrap_or(if url.starts_with("sqlite:") {
        DEFAULT_SQLITE_POOL_SIZE
    } else {
        DEFAULT_POOL_SIZE
    });
    let parent = sqlite_file(url)
        .and_then(|path| Path::new(path).parent())
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent).with_context(|| {
            format!("DATABASE_URL: cannot create directory {}", parent.display())
        })?;
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .sqlx_logging(false)
        .max_connections(pool_size.max(1));
    let db = Database::connect(options)
        .await
        .with_context(|| format!("DATABASE_URL: cannot connect to {}", redact(url)))?;
    if db.get_database_backend() == DbBackend::Sqlite && sqlite_file(url).is_some() {
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    Ok(db)
}

/// Starts a transaction that will write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`), so it waits its turn instead of failing when another connection
/// commits between its first read and its first write; Postgres ignores the mode.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, sea_orm::DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("running migrations")
}

fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_and_redaction() {
        assert_eq!(
            sqlite_file("sqlite://./data/t.db?mode=rwc"),
            Some("./data/t.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x"), None);
        assert_eq!(redact("postgres://u:hunter2@h/db"), "postgres://u:***@h/db");
    }
}
