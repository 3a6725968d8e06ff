//! CRM-side events: the inbox says where each event came from (`source`: `stripe`, `hubspot`,
//! `salesforce`, `zoho`); a connection gets the token of its own inbound URL (HubSpot webhooks,
//! Zoho notifications, Salesforce Outbound Messages); `crm_watches` keeps what a connection
//! watches at its CRM (polling cursor per object, Zoho's notification channel) and
//! `crm_versions` the last seen version of each polled record, for `previous` values.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("events")
                    .add_column(string_len("source", 16).default("stripe"))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("connections")
                    .add_column(string_len_null("inbound_token", 64))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connections_inbound_token")
                    .table(Alias::new("connections"))
                    .col(Alias::new("inbound_token"))
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("crm_watches")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("connection_id", 64))
                    .col(string_len("object", 128))
                    .col(string_len_null("cursor", 64))
                    .col(text("seen"))
                    .col(big_integer("api_calls").default(0))
                    .col(timestamp_with_time_zone_null("polled_at"))
                    .col(timestamp_with_time_zone_null("next_poll_at"))
                    .col(string_len_null("channel_id", 64))
                    .col(timestamp_with_time_zone_null("channel_expires_at"))
                    .col(text_null("last_error"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_crm_watches_connection_object")
                    .table(Alias::new("crm_watches"))
                    .col(Alias::new("connection_id"))
                    .col(Alias::new("object"))
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("crm_versions")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(string_len("connection_id", 64))
                    .col(string_len("object", 128))
                    .col(string_len("record_id", 255))
                    .col(text("fields"))
                    .col(string_len("stamp", 64))
                    .col(timestamp_with_time_zone("updated_at"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_crm_versions_record")
                    .table(Alias::new("crm_versions"))
                    .col(Alias::new("connection_id"))
                    .col(Alias::new("object"))
                    .col(Alias::new("record_id"))
                    .unique()
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["crm_versions", "crm_watches"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).take())
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_connections_inbound_token")
                    .table(Alias::new("connections"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("connections")
                    .drop_column("inbound_token")
                    .take(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table("events").drop_column("source").take())
            .await
    }
}
