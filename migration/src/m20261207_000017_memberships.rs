//! A person in several tenants. `users` stays the person (their email, password and home
//! tenant with its role); `memberships` holds each other tenant they were invited into, with
//! their role there. Unique per (person, tenant); a membership goes with its person and with
//! its tenant.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("memberships")
                    .col(string_len("id", 64).primary_key())
                    .col(string_len("user_id", 64))
                    .col(string_len("tenant_id", 64))
                    .col(string_len("role", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_user")
                            .from(Alias::new("memberships"), Alias::new("user_id"))
                            .to(Alias::new("users"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_memberships_tenant")
                            .from(Alias::new("memberships"), Alias::new("tenant_id"))
                            .to(Alias::new("tenants"), Alias::new("id"))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_user_tenant")
                    .table(Alias::new("memberships"))
                    .col(Alias::new("user_id"))
                    .col(Alias::new("tenant_id"))
                    .unique()
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_memberships_tenant")
                    .table(Alias::new("memberships"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("id"))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("memberships")).take())
            .await
    }
}
