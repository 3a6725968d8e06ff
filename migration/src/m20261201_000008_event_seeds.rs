//! Generated secrets: one sealed random seed per event they are derived from.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("event_seeds")
                    .col(string_len("event_id", 64).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(text("seed"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_event_seeds_event")
                            .from(Alias::new("event_seeds"), Alias::new("event_id"))
                            .to(Alias::new("events"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("event_seeds")).take())
            .await
    }
}
