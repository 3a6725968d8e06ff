//! `idx_deliveries_status` and `idx_deliveries_tenant_status` index the same columns
//! (tenant_id, status); every write of a delivery paid for both. The second one stays.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_deliveries_status")
                    .table(Alias::new("deliveries"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_status")
                    .table(Alias::new("deliveries"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("status"))
                    .take(),
            )
            .await
    }
}
