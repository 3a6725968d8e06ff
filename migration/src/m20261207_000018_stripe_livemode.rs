//! Test and live mode: `stripe_accounts.livemode` says which of Stripe's modes an account is in
//! (`true` live, `false` test, `NULL` not known), and `backfills.skipped` counts the events a
//! backfill passed over because their `livemode` was not the account's.
//!
//! Existing accounts keep `NULL`: their keys are sealed, so SQL cannot read the prefix. Where
//! the key is opened anyway the mode is derived from it (the API's reads and the webhook
//! ingress, in memory) and written down (the next `PATCH` of the account, the next backfill or
//! reconciliation of it). An account with only a signing secret stays unknown until it is told.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("stripe_accounts"))
                    .add_column(boolean_null("livemode"))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("backfills"))
                    .add_column(integer("skipped").default(0).take())
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [("backfills", "skipped"), ("stripe_accounts", "livemode")] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .take(),
                )
                .await?;
        }
        Ok(())
    }
}
