//! Tenants, people, credentials, Stripe accounts, signing secrets and the audit log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id() -> ColumnDef {
    string_len("id", 64).primary_key().take()
}

fn tenant_ref(table: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_tenant"))
        .from(Alias::new(table), Alias::new("tenant_id"))
        .to(Alias::new("tenants"), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

fn tenant_index(table: &str) -> IndexCreateStatement {
    Index::create()
        .name(format!("idx_{table}_tenant"))
        .table(Alias::new(table))
        .col(Alias::new("tenant_id"))
        .col(Alias::new("id"))
        .take()
}

/// Creates `tenants`.
async fn create_tenants(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("tenants")
                .col(id())
                .col(string_len("name", 200))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .take(),
        )
        .await?;
    Ok(())
}

/// Creates `users` and its tenant index.
async fn create_users(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("users")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len_uniq("email", 320))
                .col(string("password_hash"))
                .col(string_len("role", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_ref("users"))
                .take(),
        )
        .await?;
    manager.create_index(tenant_index("users")).await?;
    Ok(())
}

/// Creates `refresh_tokens` and its family index.
async fn create_refresh_tokens(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("refresh_tokens")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("user_id", 64))
                .col(string_len("family_id", 64))
                .col(string_len_uniq("token_hash", 64))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut tenant_ref("refresh_tokens"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_refresh_tokens_user")
                        .from("refresh_tokens", "user_id")
                        .to("users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_refresh_tokens_family")
                .table("refresh_tokens")
                .col("family_id")
                .take(),
        )
        .await?;
    Ok(())
}

/// Creates `api_keys` and its tenant index.
async fn create_api_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("api_keys")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("name", 200))
                .col(string_len("role", 16))
                .col(string_len_uniq("prefix", 32))
                .col(string_len("key_hash", 64))
                .col(string_len_null("created_by", 64))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .foreign_key(&mut tenant_ref("api_keys"))
                .take(),
        )
        .await?;
    manager.create_index(tenant_index("api_keys")).await?;
    Ok(())
}

/// Creates `stripe_accounts` and its tenant index.
async fn create_stripe_accounts(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("stripe_accounts")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("name", 200))
                .col(string_len_uniq("webhook_token", 64))
                .col(text_null("secret_key"))
                .col(string_len_null("secret_key_last4", 4))
                .col(string_len_null("api_version", 64))
                .col(big_integer("tolerance_seconds"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_ref("stripe_accounts"))
                .take(),
        )
        .await?;
    manager
        .create_index(tenant_index("stripe_accounts"))
        .await?;
    Ok(())
}

/// Creates `webhook_secrets` and its account index.
async fn create_webhook_secrets(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("webhook_secrets")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("stripe_account_id", 64))
                .col(text("secret"))
                .col(string_len("last4", 4))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut tenant_ref("webhook_secrets"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webhook_secrets_account")
                        .from("webhook_secrets", "stripe_account_id")
                        .to("stripe_accounts", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_webhook_secrets_account")
                .table("webhook_secrets")
                .col("stripe_account_id")
                .take(),
        )
        .await?;
    Ok(())
}

/// Creates `audit_log` and its tenant index.
async fn create_audit_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("audit_log")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("actor_type", 16))
                .col(string_len("actor_id", 64))
                .col(string_len("action", 64))
                .col(string_len("resource_type", 64))
                .col(string_len_null("resource_id", 64))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut tenant_ref("audit_log"))
                .take(),
        )
        .await?;
    manager.create_index(tenant_index("audit_log")).await?;
    Ok(())
}

/// Creates `login_throttle`.
async fn create_login_throttle(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("login_throttle")
                .col(string_len("key", 400).primary_key())
                .col(integer("failures"))
                .col(timestamp_with_time_zone("window_started_at"))
                .col(timestamp_with_time_zone_null("blocked_until"))
                .take(),
        )
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_tenants(manager).await?;
        create_users(manager).await?;
        create_refresh_tokens(manager).await?;
        create_api_keys(manager).await?;
        create_stripe_accounts(manager).await?;
        create_webhook_secrets(manager).await?;
        create_audit_log(manager).await?;
        create_login_throttle(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "login_throttle",
            "audit_log",
            "webhook_secrets",
            "stripe_accounts",
            "api_keys",
            "refresh_tokens",
            "users",
            "tenants",
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
