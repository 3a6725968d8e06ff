//! The sandbox CRM: records kept in Tributary's own database, so a tenant can see a flow work
//! with no outside account. Upsert finds a record by its match fields. Writes run inside the
//! caller's transaction, together with the delivery they complete, so they happen exactly once;
//! `find` only reads, so it runs on its own.
//!
//! Settings: `simulate_failure: {"<object>": "<error kind>"}` makes every write to that object
//! fail as a real CRM would (e.g. `transient`), to try retries and dead letters safely.

use std::collections::BTreeMap;

use entity::{TenantOwned, connections, sandbox_records};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde_json::{Map, Value};

use super::Write;
use super::{CrmError, CrmOutcome, ErrorKind, FIND_LIMIT, Found, as_text};
use crate::flow::Operation;

fn simulated_failure(connection: &connections::Model, object: &str) -> Option<CrmError> {
    let settings: Value = serde_json::from_str(&connection.settings).ok()?;
    let kind = settings
        .get("simulate_failure")?
        .get(object)?
        .as_str()
        .and_then(ErrorKind::parse)?;
    let status = match kind {
        ErrorKind::Auth => 401,
        ErrorKind::RateLimited => 429,
        ErrorKind::Invalid => 400,
        ErrorKind::NotFound => 404,
        ErrorKind::Transient => 503,
        ErrorKind::Permanent => 403,
    };
    Some(CrmError {
        kind,
        message: format!("simulated {} failure for {object}", kind.as_str()),
        vendor_status: Some(status),
        vendor_body: Some(format!("{{\"error\":\"simulated\",\"status\":{status}}}")),
        retry_after: None,
        pause: None,
        duplicates: Vec::new(),
    })
}

/// Canonical JSON of match fields, the lookup key of upserts.
pub fn match_key(fields: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = fields.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

async fn find_by_match<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    object: &str,
    key: &str,
) -> Result<Option<sandbox_records::Model>, CrmError> {
    sandbox_records::Entity::find_in_tenant(&connection.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(sandbox_records::Column::Object.eq(object))
        .filter(sandbox_records::Column::MatchKey.eq(key))
        .one(db)
        .await
        .map_err(db_error)
}

async fn find_by_id<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    object: &str,
    id: &str,
) -> Result<Option<sandbox_records::Model>, CrmError> {
    sandbox_records::Entity::find_by_id_in_tenant(&connection.tenant_id, id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(sandbox_records::Column::Object.eq(object))
        .one(db)
        .await
        .map_err(db_error)
}

fn db_error(err: sea_orm::DbErr) -> CrmError {
    CrmError::new(ErrorKind::Transient, format!("sandbox storage: {err}"))
}

async fn create<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    op: &Operation,
    key: String,
) -> Result<CrmOutcome, CrmError> {
    let mut fields = op.match_fields.clone();
    fields.extend(op.fields.clone());
    let now = crate::now();
    let id = crate::new_id();
    sandbox_records::Entity::insert(sandbox_records::ActiveModel {
        id: Set(id.clone()),
        tenant_id: Set(connection.tenant_id.clone()),
        connection_id: Set(connection.id.clone()),
        object: Set(op.object.clone()),
        match_key: Set(key),
        fields: Set(Value::Object(fields).to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(db)
    .await
    .map_err(db_error)?;
    Ok(CrmOutcome::new(id))
}

async fn update<C: ConnectionTrait>(
    db: &C,
    record: sandbox_records::Model,
    op: &Operation,
) -> Result<CrmOutcome, CrmError> {
    let mut fields: Map<String, Value> = serde_json::from_str(&record.fields).unwrap_or_default();
    fields.extend(op.fields.clone());
    let id = record.id.clone();
    let mut active: sandbox_records::ActiveModel = record.into();
    active.fields = Set(Value::Object(fields).to_string());
    active.updated_at = Set(crate::now());
    active.update(db).await.map_err(db_error)?;
    Ok(CrmOutcome::new(id))
}

/// Applies one operation. `linked` is the record this Stripe object was written to before
/// (from the record links), which wins over a match lookup.
pub async fn apply<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
) -> Result<CrmOutcome, CrmError> {
    if let Some(failure) = simulated_failure(connection, &op.object) {
        return Err(failure);
    }
    let key = match_key(&op.match_fields);
    let by_link = match linked {
        Some(id) => find_by_id(db, connection, &op.object, id).await?,
        None => None,
    };
    match kind {
        Write::Create => create(db, connection, op, key).await,
        Write::Upsert => {
            let existing = match by_link {
                Some(record) => Some(record),
                None => find_by_match(db, connection, &op.object, &key).await?,
            };
            match existing {
                Some(record) => update(db, record, op).await,
                None => create(db, connection, op, key).await,
            }
        }
        Write::Update => {
            let mut existing = by_link;
            if existing.is_none()
                && let Some(id) = op.record_id.as_deref().filter(|id| !id.is_empty())
            {
                existing = find_by_id(db, connection, &op.object, id).await?;
            }
            if existing.is_none() && !op.match_fields.is_empty() {
                existing = find_by_match(db, connection, &op.object, &key).await?;
            }
            match existing {
                Some(record) => update(db, record, op).await,
                None => Err(CrmError {
                    kind: ErrorKind::NotFound,
                    message: format!(
                        "no {} record with id {:?} or matching {}",
                        op.object,
                        op.record_id.as_deref().unwrap_or(""),
                        key
                    ),
                    vendor_status: Some(404),
                    vendor_body: None,
                    retry_after: None,
                    pause: None,
                    duplicates: Vec::new(),
                }),
            }
        }
    }
}

/// The records of `op.object` whose fields equal every match value (compared as text, as the
/// vendors' searches do), oldest first: each its `id` and the `select` fields (null when the
/// record has none).
pub async fn find<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    op: &Operation,
) -> Result<Found, CrmError> {
    let records = sandbox_records::Entity::find_in_tenant(&connection.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(sandbox_records::Column::Object.eq(op.object.as_str()))
        .order_by_asc(sandbox_records::Column::CreatedAt)
        .order_by_asc(sandbox_records::Column::Id)
        .all(db)
        .await
        .map_err(db_error)?;
    let mut found = Found::default();
    for record in records {
        let fields: Map<String, Value> = serde_json::from_str(&record.fields).unwrap_or_default();
        let matches = op.match_fields.iter().all(|(name, wanted)| {
            fields
                .get(name)
                .is_some_and(|actual| as_text(actual) == as_text(wanted))
        });
        if !matches {
            continue;
        }
        if found.records.len() == FIND_LIMIT {
            found.more = true;
            break;
        }
        let mut shown = Map::new();
        shown.insert("id".into(), Value::String(record.id.clone()));
        for name in op.select.iter().filter(|name| *name != "id") {
            shown.insert(
                name.clone(),
                fields.get(name).cloned().unwrap_or(Value::Null),
            );
        }
        found.records.push(shown);
    }
    Ok(found)
}

/// Merges sandbox record `loser` into `winner`: the winner keeps its values and takes the
/// loser's where it has none; the loser is deleted. Answers the winner's id.
pub async fn merge<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    object: &str,
    winner: &str,
    loser: &str,
) -> Result<String, CrmError> {
    let read = |id: &str| {
        sandbox_records::Entity::find_in_tenant(&connection.tenant_id)
            .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
            .filter(sandbox_records::Column::Object.eq(object))
            .filter(sandbox_records::Column::Id.eq(id))
            .one(db)
    };
    let missing = |id: &str| {
        CrmError::new(
            ErrorKind::NotFound,
            format!("sandbox {object} record {id} does not exist"),
        )
    };
    let kept = read(winner)
        .await
        .map_err(db_error)?
        .ok_or_else(|| missing(winner))?;
    let gone = read(loser)
        .await
        .map_err(db_error)?
        .ok_or_else(|| missing(loser))?;
    let mut fields: Map<String, Value> = serde_json::from_str(&gone.fields).unwrap_or_default();
    let own: Map<String, Value> = serde_json::from_str(&kept.fields).unwrap_or_default();
    for (name, value) in own {
        if !super::fields::is_blank(&value) || !fields.contains_key(&name) {
            fields.insert(name, value);
        }
    }
    let mut active: sandbox_records::ActiveModel = kept.into();
    active.fields = Set(Value::Object(fields).to_string());
    active.updated_at = Set(crate::now());
    active.update(db).await.map_err(db_error)?;
    sandbox_records::Entity::delete_by_id(gone.id)
        .exec(db)
        .await
        .map_err(db_error)?;
    Ok(winner.to_string())
}
