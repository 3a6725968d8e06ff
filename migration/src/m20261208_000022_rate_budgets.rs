//! Rate budgets shared by every process (see `tributary_worker::budget`): one row per budget
//! (`crm:<connection id>`, `stripe:<account id>`), its next free slot `tat` and its hold
//! `held_until` in microseconds since the epoch, and the limit learned from the vendor.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("rate_budgets"))
                    .if_not_exists()
                    .col(string_len("budget_key", 128).primary_key())
                    .col(string_len("tenant_id", 64))
                    .col(big_integer("tat"))
                    .col(big_integer("held_until"))
                    .col(big_integer_null("learned_us"))
                    .col(big_integer_null("learned_requests"))
                    .col(big_integer_null("learned_per_ms"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("rate_budgets")).take())
            .await
    }
}
