//! The audit log records where each change came from: the client's address, as the trusted
//! proxies tell it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("audit_log")
                    .add_column(string_len_null("client_address", 64))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("audit_log")
                    .drop_column(Alias::new("client_address"))
                    .take(),
            )
            .await
    }
}
