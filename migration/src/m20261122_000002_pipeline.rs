//! The event pipeline: CRM connections, flows and their versions, the event inbox, deliveries,
//! record links (idempotency and ordering) and the sandbox CRM's records.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn id() -> ColumnDef {
    string_len("id", 64).primary_key().take()
}

fn tenant_fk(table: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_tenant"))
        .from(Alias::new(table), Alias::new("tenant_id"))
        .to(Alias::new("tenants"), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

fn index(table: &str, name: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index
        .name(format!("idx_{table}_{name}"))
        .table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    if unique {
        index.unique();
    }
    index.take()
}

/// Creates `connections` and its tenant index.
async fn create_connections(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("connections")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("name", 200))
                .col(string_len("provider", 32))
                .col(string_len("auth_type", 32))
                .col(text_null("credentials"))
                .col(text("settings"))
                .col(string_len("status", 32))
                .col(text_null("status_reason"))
                .col(timestamp_with_time_zone_null("paused_until"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("connections"))
                .take(),
        )
        .await?;
    manager
        .create_index(index("connections", "tenant", &["tenant_id", "id"], false))
        .await?;
    Ok(())
}

/// Creates `flows` and its tenant index.
async fn create_flows(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("flows")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("name", 200))
                .col(string_len("connection_id", 64))
                .col(boolean("enabled"))
                .col(integer("version"))
                .col(text("spec"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("flows"))
                .take(),
        )
        .await?;
    manager
        .create_index(index("flows", "tenant", &["tenant_id", "id"], false))
        .await?;
    Ok(())
}

/// Creates `flow_versions` and its unique (flow, version) index.
async fn create_flow_versions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("flow_versions")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("flow_id", 64))
                .col(integer("version"))
                .col(text("spec"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut tenant_fk("flow_versions"))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "flow_versions",
            "flow",
            &["flow_id", "version"],
            true,
        ))
        .await?;
    Ok(())
}

/// Creates `events` and its Stripe id, tenant and sweep indexes.
async fn create_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("events")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("stripe_account_id", 64))
                .col(string_len("stripe_event_id", 255))
                .col(string_len("event_type", 255))
                .col(string_len_null("stripe_object_id", 255))
                .col(boolean("livemode"))
                .col(string_len_null("api_version", 64))
                .col(big_integer("event_created"))
                .col(text("payload"))
                .col(string_len("status", 16))
                .col(integer("runs"))
                .col(timestamp_with_time_zone_null("next_run_at"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("received_at"))
                .col(timestamp_with_time_zone_null("queued_at"))
                .col(timestamp_with_time_zone_null("processed_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("events"))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "events",
            "stripe_id",
            &["stripe_account_id", "stripe_event_id"],
            true,
        ))
        .await?;
    manager
        .create_index(index("events", "tenant", &["tenant_id", "id"], false))
        .await?;
    manager
        .create_index(index("events", "sweep", &["status", "next_run_at"], false))
        .await?;
    Ok(())
}

/// Creates `deliveries` and its step, tenant and status indexes.
async fn create_deliveries(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("deliveries")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("event_id", 64))
                .col(string_len("flow_id", 64))
                .col(integer("flow_version"))
                .col(string_len("connection_id", 64))
                .col(string_len("step", 128))
                .col(string_len("action", 16))
                .col(string_len("object", 128))
                .col(string_len("status", 16))
                .col(integer("attempts"))
                .col(string_len_null("crm_record_id", 255))
                .col(text_null("operation"))
                .col(string_len_null("error_kind", 32))
                .col(text_null("error_message"))
                .col(integer_null("vendor_status"))
                .col(text_null("vendor_body"))
                .col(text("warnings"))
                .col(string_len_null("reason", 64))
                .col(timestamp_with_time_zone_null("next_attempt_at"))
                .col(big_integer_null("duration_ms"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("deliveries"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_deliveries_event")
                        .from("deliveries", "event_id")
                        .to("events", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "deliveries",
            "step",
            &["event_id", "flow_id", "step"],
            true,
        ))
        .await?;
    manager
        .create_index(index("deliveries", "tenant", &["tenant_id", "id"], false))
        .await?;
    manager
        .create_index(index(
            "deliveries",
            "status",
            &["tenant_id", "status"],
            false,
        ))
        .await?;
    Ok(())
}

/// Creates `record_links` and its unique key index.
async fn create_record_links(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("record_links")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("connection_id", 64))
                .col(string_len("crm_object", 128))
                .col(string_len("stripe_object_id", 255))
                .col(string_len("crm_record_id", 255))
                .col(big_integer("last_event_created"))
                .col(string_len("last_event_id", 64))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("record_links"))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "record_links",
            "key",
            &["connection_id", "crm_object", "stripe_object_id"],
            true,
        ))
        .await?;
    Ok(())
}

/// Creates `sandbox_records` and its object and match indexes.
async fn create_sandbox_records(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("sandbox_records")
                .col(id())
                .col(string_len("tenant_id", 64))
                .col(string_len("connection_id", 64))
                .col(string_len("object", 128))
                .col(text("match_key"))
                .col(text("fields"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut tenant_fk("sandbox_records"))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "sandbox_records",
            "object",
            &["connection_id", "object", "id"],
            false,
        ))
        .await?;
    manager
        .create_index(index(
            "sandbox_records",
            "match",
            &["connection_id", "object", "match_key"],
            false,
        ))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_connections(manager).await?;
        create_flows(manager).await?;
        create_flow_versions(manager).await?;
        create_events(manager).await?;
        create_deliveries(manager).await?;
        create_record_links(manager).await?;
        create_sandbox_records(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "sandbox_records",
            "record_links",
            "deliveries",
            "events",
            "flow_versions",
            "flows",
            "connections",
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
