//! A delivery's `reason` holds an assert's rendered message (`assertion: …`), whose length the
//! tenant's template decides, and its `step` the name of a `for_each` item (`<id>[<key>]`):
//! on PostgreSQL `varchar(64)` and `varchar(128)` refused longer values, so the run that
//! recorded one failed every time. `reason` becomes `text` and `step` `varchar(255)`.
//! SQLite does not enforce `varchar` lengths, so it has nothing to change.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE deliveries ALTER COLUMN reason TYPE text, \
             ALTER COLUMN step TYPE varchar(255)",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE deliveries ALTER COLUMN reason TYPE varchar(64) USING left(reason, 64), \
             ALTER COLUMN step TYPE varchar(128) USING left(step, 128)",
        )
        .await
    }
}
