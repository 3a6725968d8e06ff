//! Alerts: tenants' notification channels, and one row per channel and alert condition that
//! records when it was last sent (so a condition alerts at most once per period).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(table: &str, column: &str, to: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(Alias::new(table), Alias::new(column))
        .to(Alias::new(to), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("notification_channels")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("name", 200))
                    .col(string_len("kind", 16))
                    .col(text("url"))
                    .col(string_len("url_hint", 300))
                    .col(text_null("secret"))
                    .col(text("alerts"))
                    .col(integer("dead_letter_threshold"))
                    .col(integer("flow_failure_threshold"))
                    .col(boolean("enabled"))
                    .col(timestamp_with_time_zone_null("last_sent_at"))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("notification_channels", "tenant_id", "tenants"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_notification_channels_tenant")
                    .table(Alias::new("notification_channels"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("id"))
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("alerts")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("channel_id", 64))
                    .col(string_len("condition_key", 200))
                    .col(string_len("kind", 64))
                    .col(string_len_null("subject_id", 64))
                    .col(text("summary"))
                    .col(string_len("status", 16))
                    .col(integer("times_sent"))
                    .col(integer("attempts"))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone_null("last_attempt_at"))
                    .col(timestamp_with_time_zone_null("sent_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut fk("alerts", "tenant_id", "tenants"))
                    .foreign_key(&mut fk("alerts", "channel_id", "notification_channels"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alerts_channel_condition")
                    .table(Alias::new("alerts"))
                    .col(Alias::new("channel_id"))
                    .col(Alias::new("condition_key"))
                    .unique()
                    .take(),
            )
            .await?;
        // The alert checks count a tenant's dead letters and read a flow's latest outcomes.
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_tenant_status")
                    .table(Alias::new("deliveries"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("status"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_flow_updated")
                    .table(Alias::new("deliveries"))
                    .col(Alias::new("flow_id"))
                    .col(Alias::new("updated_at"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in [
            "idx_deliveries_flow_updated",
            "idx_deliveries_tenant_status",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(Alias::new("deliveries"))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Alias::new("alerts")).take())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("notification_channels"))
                    .take(),
            )
            .await
    }
}
