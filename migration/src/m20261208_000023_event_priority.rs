//! Priorities: `events.priority` says how soon an event's job is taken — live payment failures
//! (3) before other live events (2), before the failures (1) and the rest (0) of backfills and
//! reconciliations. Events stored before keep the live priority.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("events"))
                    .add_column(small_integer("priority").default(2))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("events"))
                    .drop_column(Alias::new("priority"))
                    .take(),
            )
            .await
    }
}
