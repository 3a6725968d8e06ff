//! `connections.vendor_account`: the vendor's id of the account a connection's token acts in,
//! as the vendor told it (HubSpot's hub id, from its token metadata) — never typed by a
//! tenant. A shared HubSpot app's webhooks are routed by it, so it is indexed with the
//! provider.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("connections"))
                    .add_column(string_len_null("vendor_account", 64))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connections_vendor_account")
                    .table(Alias::new("connections"))
                    .col(Alias::new("provider"))
                    .col(Alias::new("vendor_account"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_connections_vendor_account")
                    .table(Alias::new("connections"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("connections"))
                    .drop_column(Alias::new("vendor_account"))
                    .take(),
            )
            .await
    }
}
