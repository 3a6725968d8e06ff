//! Finding events and acting on many at once: `event_keys` (what an event can be searched by,
//! filled here for the events already stored), indexes for "events with a delivery of this
//! flow or connection", and bulk jobs with their items.

use sea_orm_migration::sea_orm::ConnectionTrait;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

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

fn cascade(name: &str, from: (&str, &str), to: (&str, &str)) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(Alias::new(from.0), Alias::new(from.1))
        .to(Alias::new(to.0), Alias::new(to.1))
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

/// Events read per round of the backfill.
const BATCH: u64 = 500;

/// Fills `event_keys` for every stored event, oldest first, a batch at a time.
async fn backfill_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let mut after = String::new();
    loop {
        let rows = db
            .query_all(
                Query::select()
                    .columns([
                        Alias::new("id"),
                        Alias::new("tenant_id"),
                        Alias::new("payload"),
                    ])
                    .from(Alias::new("events"))
                    .and_where(Expr::col(Alias::new("id")).gt(after.as_str()))
                    .order_by(Alias::new("id"), Order::Asc)
                    .limit(BATCH),
            )
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("", "id")?;
        let mut insert = Query::insert();
        insert.into_table(Alias::new("event_keys")).columns([
            Alias::new("event_id"),
            Alias::new("value"),
            Alias::new("tenant_id"),
            Alias::new("kind"),
        ]);
        let mut any = false;
        for row in &rows {
            let id: String = row.try_get("", "id")?;
            let tenant_id: String = row.try_get("", "tenant_id")?;
            let payload: String = row.try_get("", "payload")?;
            for (kind, value) in entity::event_keys::extract_from_payload(&payload) {
                insert.values_panic([
                    id.clone().into(),
                    value.into(),
                    tenant_id.clone().into(),
                    kind.into(),
                ]);
                any = true;
            }
        }
        if any {
            db.execute(&insert).await?;
        }
        if (rows.len() as u64) < BATCH {
            return Ok(());
        }
    }
}

/// Creates `event_keys` and its search index.
async fn create_event_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("event_keys")
                .col(string_len("event_id", 64))
                .col(string_len("value", 320))
                .col(string_len("tenant_id", 64))
                .col(string_len("kind", 16))
                .primary_key(
                    Index::create()
                        .col(Alias::new("event_id"))
                        .col(Alias::new("value")),
                )
                .foreign_key(&mut cascade(
                    "fk_event_keys_event",
                    ("event_keys", "event_id"),
                    ("events", "id"),
                ))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "event_keys",
            "search",
            &["tenant_id", "value", "event_id"],
            false,
        ))
        .await?;
    Ok(())
}

/// Adds the indexes of deliveries by flow and by connection.
async fn index_deliveries(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_index(index(
            "deliveries",
            "flow",
            &["tenant_id", "flow_id", "event_id"],
            false,
        ))
        .await?;
    manager
        .create_index(index(
            "deliveries",
            "connection",
            &["tenant_id", "connection_id", "event_id"],
            false,
        ))
        .await?;
    Ok(())
}

/// Creates `bulk_jobs` and its tenant, active and due indexes.
async fn create_bulk_jobs(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("bulk_jobs")
                .col(string_len("id", 64).primary_key())
                .col(string_len("tenant_id", 64))
                .col(string_len("kind", 32))
                .col(string_len("status", 16))
                .col(text("filter"))
                .col(boolean("force"))
                .col(integer("total"))
                .col(integer("done"))
                .col(integer("failed"))
                .col(text_null("last_error"))
                .col(string_len("actor_type", 16))
                .col(string_len("actor_id", 64))
                .col(string_len("role", 16))
                .col(string_len_null("client_address", 64))
                .col(string_len_null("active_tenant_id", 64))
                .col(integer("runs"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .foreign_key(&mut cascade(
                    "fk_bulk_jobs_tenant",
                    ("bulk_jobs", "tenant_id"),
                    ("tenants", "id"),
                ))
                .take(),
        )
        .await?;
    manager
        .create_index(index("bulk_jobs", "tenant", &["tenant_id", "id"], false))
        .await?;
    manager
        .create_index(index("bulk_jobs", "active", &["active_tenant_id"], true))
        .await?;
    manager
        .create_index(index("bulk_jobs", "due", &["status", "lease_until"], false))
        .await?;
    Ok(())
}

/// Creates `bulk_job_items` and its status index.
async fn create_bulk_job_items(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("bulk_job_items")
                .col(string_len("job_id", 64))
                .col(string_len("item_id", 64))
                .col(string_len("tenant_id", 64))
                .col(string_len("status", 16))
                .col(text_null("reason"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("job_id"))
                        .col(Alias::new("item_id")),
                )
                .foreign_key(&mut cascade(
                    "fk_bulk_job_items_job",
                    ("bulk_job_items", "job_id"),
                    ("bulk_jobs", "id"),
                ))
                .take(),
        )
        .await?;
    manager
        .create_index(index(
            "bulk_job_items",
            "status",
            &["job_id", "status", "item_id"],
            false,
        ))
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_event_keys(manager).await?;
        index_deliveries(manager).await?;
        create_bulk_jobs(manager).await?;
        create_bulk_job_items(manager).await?;
        backfill_keys(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["bulk_job_items", "bulk_jobs", "event_keys"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).take())
                .await?;
        }
        for name in ["idx_deliveries_flow", "idx_deliveries_connection"] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Alias::new("deliveries"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
