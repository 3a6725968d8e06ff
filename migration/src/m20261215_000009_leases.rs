//! Leases of process-wide background loops (the sweeper): one row per loop, held by one
//! process until it stops renewing it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("leases")
                    .col(string_len("name", 64).primary_key())
                    .col(string_len("holder", 64))
                    // Milliseconds since the epoch: compared as numbers on every backend.
                    .col(big_integer("expires_at_ms"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("leases")).take())
            .await
    }
}
