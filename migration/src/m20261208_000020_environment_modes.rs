//! Mode safety per environment: `tenants.mixed_modes` lets an environment hold Stripe accounts of
//! the other mode (a test-mode account in `production`, a live one elsewhere). It is off for
//! every environment, except one that already holds an account of the other mode whose mode is
//! written down: that environment keeps working as before, and says so.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenants"))
                    .add_column(boolean("mixed_modes").default(false))
                    .take(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE tenants SET mixed_modes = TRUE WHERE \
                 (environment = 'production' AND id IN \
                    (SELECT tenant_id FROM stripe_accounts WHERE livemode = FALSE)) \
                 OR (environment <> 'production' AND id IN \
                    (SELECT tenant_id FROM stripe_accounts WHERE livemode = TRUE))",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenants"))
                    .drop_column(Alias::new("mixed_modes"))
                    .take(),
            )
            .await
    }
}
