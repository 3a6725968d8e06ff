//! The human review queue: one `reviews` row per delivery held because the record it would
//! write is in doubt (its match found several records, or records that look like the same
//! one), with the incoming values, the candidates, and once a person decided, the decision.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("reviews")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("delivery_id", 64).unique_key())
                    .col(string_len("event_id", 64))
                    .col(string_len("flow_id", 64))
                    .col(string_len("step", 255))
                    .col(string_len("connection_id", 64))
                    .col(string_len("object", 128))
                    .col(string_len("status", 16))
                    .col(string_len("reason", 32))
                    .col(text("summary"))
                    .col(text("incoming"))
                    .col(text("candidates"))
                    .col(string_len_null("decision", 16))
                    .col(string_len_null("record_id", 255))
                    .col(string_len_null("decided_by", 64))
                    .col(timestamp_with_time_zone_null("decided_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("alert_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_reviews_tenant_id")
                            .from(Alias::new("reviews"), Alias::new("tenant_id"))
                            .to(Alias::new("tenants"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_reviews_tenant_status")
                    .table(Alias::new("reviews"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("status"))
                    .col(Alias::new("created_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("reviews")).take())
            .await
    }
}
