//! Dry runs in the background: a bulk job of kind `dry_run` whose items are the events it runs
//! on. `bulk_job_items.result` keeps what an event came to when it changed or newly fails (the
//! rest keep nothing), so the job's answer is read back from its items.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("bulk_job_items"))
                    .add_column(text_null("result"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("bulk_job_items"))
                    .drop_column(Alias::new("result"))
                    .take(),
            )
            .await
    }
}
