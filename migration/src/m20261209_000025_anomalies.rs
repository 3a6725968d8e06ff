//! Anomaly detection: `activity`, a tenant's counts per hour per series (events of one source,
//! account and type; a flow's delivery attempts, their failures and their latency; payments'
//! amounts) with the sum and sum of squares of their values and when the series was last seen
//! in that hour; and `incidents`, one per anomaly found, open until its signal is
//! normal again. Delivery attempts get an index on their start, which the hourly roll-up
//! reads by.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tenant_fk(table: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_tenant_id"))
        .from(Alias::new(table), Alias::new("tenant_id"))
        .to(Alias::new("tenants"), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("activity")
                    .col(string_len("tenant_id", 64))
                    .col(string_len("series", 255))
                    .col(big_integer("hour"))
                    .col(big_integer("count"))
                    .col(double("total").default(0.0))
                    .col(double("total_sq").default(0.0))
                    .col(timestamp_with_time_zone_null("last_at"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("tenant_id"))
                            .col(Alias::new("series"))
                            .col(Alias::new("hour")),
                    )
                    .foreign_key(&mut tenant_fk("activity"))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("incidents")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("detector", 32))
                    .col(string_len("series", 255))
                    .col(string_len("status", 16))
                    .col(text("summary"))
                    .col(text("evidence"))
                    .col(timestamp_with_time_zone("opened_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("resolved_at"))
                    .col(timestamp_with_time_zone_null("acknowledged_at"))
                    .col(string_len_null("acknowledged_by", 64))
                    .foreign_key(&mut tenant_fk("incidents"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_incidents_tenant_status")
                    .table(Alias::new("incidents"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("status"))
                    .col(Alias::new("opened_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempts_started")
                    .table(Alias::new("delivery_attempts"))
                    .col(Alias::new("started_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_delivery_attempts_started")
                    .table(Alias::new("delivery_attempts"))
                    .to_owned(),
            )
            .await?;
        for table in ["incidents", "activity"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).take())
                .await?;
        }
        Ok(())
    }
}
