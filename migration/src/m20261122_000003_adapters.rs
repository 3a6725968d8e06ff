//! Vendor adapters: a connection's session (sealed access token and API host), the lease that
//! makes its token refresh single-flight across workers, and what the vendor told us about it
//! (API usage, discovered won stage); a delivery's vendor response (for later steps) and its
//! count of rate-limited attempts (which do not use up the retry budget).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite adds one column per ALTER TABLE.
async fn add(manager: &SchemaManager<'_>, table: &str, column: ColumnDef) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Alias::new(table))
                .add_column(column)
                .take(),
        )
        .await
}

async fn drop(manager: &SchemaManager<'_>, table: &str, column: &str) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Alias::new(table))
                .drop_column(Alias::new(column))
                .take(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, "connections", text_null("session")).await?;
        add(
            manager,
            "connections",
            timestamp_with_time_zone_null("refresh_lease_until"),
        )
        .await?;
        add(
            manager,
            "connections",
            text("vendor_info").default("{}").take(),
        )
        .await?;
        add(manager, "deliveries", text_null("response")).await?;
        add(
            manager,
            "deliveries",
            integer("throttled_attempts").default(0).take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, "deliveries", "throttled_attempts").await?;
        drop(manager, "deliveries", "response").await?;
        drop(manager, "connections", "vendor_info").await?;
        drop(manager, "connections", "refresh_lease_until").await?;
        drop(manager, "connections", "session").await?;
        Ok(())
    }
}
