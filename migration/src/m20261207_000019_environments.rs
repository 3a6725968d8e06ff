//! Environments inside a tenant. A tenant is its own `production` environment; each other
//! environment (`development`, `staging`, …) is a tenant row of its own whose `parent_id` names
//! the tenant and whose `environment` names it. Everything scoped by tenant — Stripe accounts,
//! connections, flows, events, deliveries, alerts — is thereby scoped by environment with no
//! query changed; people, API keys and the audit log stay with the parent. An API key may be
//! bound to one environment (`api_keys.environment`).

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
                    .add_column(string_len_null("parent_id", 64))
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenants"))
                    .add_column(string_len("environment", 64).default("production"))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_parent_environment")
                    .table(Alias::new("tenants"))
                    .col(Alias::new("parent_id"))
                    .col(Alias::new("environment"))
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("api_keys"))
                    .add_column(string_len_null("environment", 64))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_tenants_parent_environment")
                    .table(Alias::new("tenants"))
                    .to_owned(),
            )
            .await?;
        for (table, column) in [
            ("api_keys", "environment"),
            ("tenants", "environment"),
            ("tenants", "parent_id"),
        ] {
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
