//! `Idempotency-Key`s and the first answer each got, kept for a day. The unique index on
//! (tenant, caller, key) is what lets exactly one of two concurrent requests with one key run.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("caller", 80))
                    .col(string_len("key", 255))
                    .col(string_len("request", 320))
                    .col(string_len("request_hash", 64))
                    .col(string_len("body_hash", 64))
                    .col(integer_null("status"))
                    .col(text_null("headers"))
                    .col(text_null("response"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_keys_caller_key")
                    .table(Alias::new("idempotency_keys"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("caller"))
                    .col(Alias::new("key"))
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_keys_expires_at")
                    .table(Alias::new("idempotency_keys"))
                    .col(Alias::new("expires_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("idempotency_keys")).take())
            .await
    }
}
