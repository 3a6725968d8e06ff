//! Delivery history: one row per attempt of a delivery (when, how long, what was asked, what
//! the vendor answered and what became of it), so a delivery shows more than its last attempt.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("delivery_attempts")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("delivery_id", 64))
                    .col(string_len("event_id", 64))
                    .col(integer("attempt"))
                    .col(timestamp_with_time_zone("started_at"))
                    .col(big_integer("duration_ms"))
                    .col(string_len("outcome", 16))
                    .col(text_null("request"))
                    .col(integer_null("vendor_status"))
                    .col(string_len_null("error_kind", 32))
                    .col(text_null("error_message"))
                    .col(text_null("response_excerpt"))
                    .col(text_null("reason"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_attempts_tenant")
                            .from("delivery_attempts", "tenant_id")
                            .to("tenants", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_attempts_delivery")
                            .from("delivery_attempts", "delivery_id")
                            .to("deliveries", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempts_delivery")
                    .table("delivery_attempts")
                    .col("delivery_id")
                    .col("attempt")
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempts_event")
                    .table("delivery_attempts")
                    .col("event_id")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("delivery_attempts").take())
            .await
    }
}
