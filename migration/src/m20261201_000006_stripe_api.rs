//! Talking to Stripe: a Stripe account's registered webhook endpoint and its reconciliation
//! record, and backfills (pages of Stripe's `/v1/events` ingested into the inbox, resumable).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one new column per ALTER TABLE.
        for column in [
            string_len_null("webhook_endpoint_id", 64),
            text_null("webhook_endpoint_events"),
            timestamp_with_time_zone_null("webhook_registered_at"),
            text_null("webhook_sync_error"),
            timestamp_with_time_zone_null("reconciled_at"),
            integer("reconcile_repaired").default(0).take(),
            string_len_null("last_reconciliation_id", 64),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("stripe_accounts"))
                        .add_column(column)
                        .take(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("backfills")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("stripe_account_id", 64))
                    .col(string_len("kind", 16))
                    .col(timestamp_with_time_zone("since"))
                    .col(text_null("types"))
                    .col(boolean_null("delivery_success"))
                    .col(string_len("status", 16))
                    .col(string_len("phase", 16))
                    .col(string_len_null("scan_cursor", 255))
                    .col(string_len_null("oldest_event_id", 255))
                    .col(string_len_null("ingest_cursor", 255))
                    .col(integer("pages_read"))
                    .col(integer("events_found"))
                    .col(integer("ingested"))
                    .col(integer("already_present"))
                    .col(integer("failed"))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_backfills_tenant")
                            .from(Alias::new("backfills"), Alias::new("tenant_id"))
                            .to(Alias::new("tenants"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_backfills_account")
                    .table(Alias::new("backfills"))
                    .col(Alias::new("stripe_account_id"))
                    .col(Alias::new("id"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_backfills_status")
                    .table(Alias::new("backfills"))
                    .col(Alias::new("status"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("backfills")).take())
            .await?;
        for column in [
            "webhook_endpoint_id",
            "webhook_endpoint_events",
            "webhook_registered_at",
            "webhook_sync_error",
            "reconciled_at",
            "reconcile_repaired",
            "last_reconciliation_id",
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("stripe_accounts"))
                        .drop_column(Alias::new(column))
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
