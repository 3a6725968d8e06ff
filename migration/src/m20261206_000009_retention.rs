//! Retention and erasure: when an event was redacted on request, leases for the loops only
//! one process may run at a time, and the indexes that let pruning find old rows cheaply.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("events"))
                    .add_column(timestamp_with_time_zone_null("redacted_at"))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("leases")
                    .col(string_len("name", 64).primary_key())
                    .col(string_len("holder", 128))
                    .col(timestamp_with_time_zone("lease_until"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_received_at")
                    .table(Alias::new("events"))
                    .col(Alias::new("received_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_created_at")
                    .table(Alias::new("audit_log"))
                    .col(Alias::new("created_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, index) in [
            ("audit_log", "idx_audit_log_created_at"),
            ("events", "idx_events_received_at"),
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(Alias::new(table))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Alias::new("leases")).take())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("events"))
                    .drop_column(Alias::new("redacted_at"))
                    .take(),
            )
            .await
    }
}
