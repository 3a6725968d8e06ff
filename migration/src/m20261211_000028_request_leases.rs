//! Requests in flight to a vendor that limits how many run at once (Salesforce's concurrent
//! long-running requests): one row per request, taken before it is sent and deleted when its
//! answer is in, with the time (µs since the epoch) after which it counts no more even if the
//! process that took it died. See `tributary_worker::budget`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("request_leases"))
                    .if_not_exists()
                    .col(string_len("lease_id", 36).primary_key())
                    .col(string_len("budget_key", 128))
                    .col(string_len("tenant_id", 64))
                    .col(big_integer("expires_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_request_leases_key")
                    .table(Alias::new("request_leases"))
                    .col(Alias::new("budget_key"))
                    .col(Alias::new("expires_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("request_leases")).take())
            .await
    }
}
