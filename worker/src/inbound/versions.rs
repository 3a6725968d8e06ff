//! The last version of each CRM record a source saw (`crm_versions`), so that the next change
//! can say what its fields were before (`previous`). Shared by every CRM source: polling
//! (Salesforce, Zoho) stores whole records, HubSpot's webhooks one property at a time.
//!
//! A record seen for the first time has no previous values: nothing is known about it yet.
//! Afterwards, `previous` holds exactly the fields whose value changed (the old value) and the
//! fields that appear for the first time (`null`); fields the change does not carry are not
//! in it.

use entity::crm_versions;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Map, Value};

/// A record's last seen version.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub fields: Map<String, Value>,
    /// The vendor's modification stamp of that version, as the vendor wrote it.
    pub stamp: String,
}

/// The last version of `record_id` (an `object` of the connection) seen, if any.
pub async fn last_seen(
    db: &DatabaseConnection,
    connection_id: &str,
    object: &str,
    record_id: &str,
) -> anyhow::Result<Option<Version>> {
    let row = crm_versions::Entity::find()
        .filter(crm_versions::Column::ConnectionId.eq(connection_id))
        .filter(crm_versions::Column::Object.eq(object))
        .filter(crm_versions::Column::RecordId.eq(record_id))
        .one(db)
        .await?;
    Ok(row.map(|row| Version {
        fields: serde_json::from_str(&row.fields).unwrap_or_default(),
        stamp: row.stamp,
    }))
}

/// What the fields in `fields` were in `before`: for each field whose value differs, its old
/// value, `null` when `before` did not have it. Nothing when there was no `before`.
pub fn previous_values(
    before: Option<&Map<String, Value>>,
    fields: &Map<String, Value>,
) -> Map<String, Value> {
    let Some(before) = before else {
        return Map::new();
    };
    fields
        .iter()
        .filter_map(|(name, value)| match before.get(name) {
            Some(old) if old == value => None,
            Some(old) => Some((name.clone(), old.clone())),
            None => Some((name.clone(), Value::Null)),
        })
        .collect()
}

/// Stores the record's new version: `fields` merged into the stored ones when `merge` (a
/// source whose changes carry some fields only), else in their place. `before` is the version
/// [`last_seen`] found. One row per (connection, object, record): an upsert on that key.
#[allow(clippy::too_many_arguments)] // the record's key (4 parts) and its version (4 parts)
pub async fn remember(
    db: &DatabaseConnection,
    tenant_id: &str,
    connection_id: &str,
    object: &str,
    record_id: &str,
    before: Option<&Map<String, Value>>,
    fields: &Map<String, Value>,
    stamp: &str,
    merge: bool,
) -> anyhow::Result<()> {
    let stored = match (merge, before) {
        (true, Some(before)) => {
            let mut all = before.clone();
            all.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            all
        }
        _ => fields.clone(),
    };
    let row = crm_versions::ActiveModel {
        id: Set(crate::new_id()),
        tenant_id: Set(tenant_id.to_string()),
        connection_id: Set(connection_id.to_string()),
        object: Set(object.to_string()),
        record_id: Set(record_id.to_string()),
        fields: Set(Value::Object(stored).to_string()),
        stamp: Set(stamp.chars().take(64).collect()),
        updated_at: Set(crate::now()),
    };
    crm_versions::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                crm_versions::Column::ConnectionId,
                crm_versions::Column::Object,
                crm_versions::Column::RecordId,
            ])
            .update_columns([
                crm_versions::Column::Fields,
                crm_versions::Column::Stamp,
                crm_versions::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Loads the record's last seen version, returns the previous values of the fields `fields`
/// changes (see [`previous_values`]) and stores the new version (`merge`: into the stored
/// fields, as HubSpot's one-property events need; else replacing them).
#[allow(clippy::too_many_arguments)] // the record's key (4 parts) and its version (3 parts)
pub async fn previous_and_remember(
    db: &DatabaseConnection,
    tenant_id: &str,
    connection_id: &str,
    object: &str,
    record_id: &str,
    fields: &Map<String, Value>,
    stamp: &str,
    merge: bool,
) -> anyhow::Result<Map<String, Value>> {
    let before = last_seen(db, connection_id, object, record_id).await?;
    let before = before.map(|v| v.fields);
    let previous = previous_values(before.as_ref(), fields);
    remember(
        db,
        tenant_id,
        connection_id,
        object,
        record_id,
        before.as_ref(),
        fields,
        stamp,
        merge,
    )
    .await?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    async fn db() -> DatabaseConnection {
        let db = crate::db::connect("sqlite::memory:").await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        db
    }

    #[test]
    fn previous_values_are_the_changed_and_the_new_fields() {
        let before = map(json!({"StageName": "Prospecting", "Amount": 10, "Name": "A"}));
        let now = map(json!({"StageName": "Closed Won", "Amount": 10, "Probability": 100}));
        assert_eq!(
            previous_values(Some(&before), &now),
            map(json!({"StageName": "Prospecting", "Probability": null}))
        );
        assert_eq!(previous_values(None, &now), Map::new());
        assert_eq!(previous_values(Some(&now), &now), Map::new());
    }

    #[tokio::test]
    async fn versions_replace_or_merge_one_row_per_record() {
        let db = db().await;
        let first = map(json!({"Id": "006A", "StageName": "Prospecting", "Amount": 10}));
        let remembered = |fields: Value, stamp: &'static str, merge: bool| {
            let db = db.clone();
            async move {
                previous_and_remember(
                    &db,
                    "t1",
                    "c1",
                    "Opportunity",
                    "006A",
                    &map(fields),
                    stamp,
                    merge,
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(
            remembered(Value::Object(first.clone()), "s1", false).await,
            Map::new()
        );
        // Replacing: the stored version is the new one, and fields it lacks are gone.
        let previous = remembered(
            json!({"Id": "006A", "StageName": "Closed Won"}),
            "s2",
            false,
        )
        .await;
        assert_eq!(previous, map(json!({"StageName": "Prospecting"})));
        let stored = last_seen(&db, "c1", "Opportunity", "006A")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.fields,
            map(json!({"Id": "006A", "StageName": "Closed Won"}))
        );
        assert_eq!(stored.stamp, "s2");
        // Merging: one property changes, the others stay.
        let previous = remembered(json!({"Amount": 20}), "s3", true).await;
        assert_eq!(previous, map(json!({"Amount": null})));
        let previous = remembered(json!({"Amount": 30}), "s4", true).await;
        assert_eq!(previous, map(json!({"Amount": 20})));
        let stored = last_seen(&db, "c1", "Opportunity", "006A")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.fields,
            map(json!({"Id": "006A", "StageName": "Closed Won", "Amount": 30}))
        );
        // Another connection's record of the same id is another record.
        assert_eq!(
            last_seen(&db, "c2", "Opportunity", "006A").await.unwrap(),
            None
        );
        let rows = crm_versions::Entity::find().all(&db).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].tenant_id, "t1");
    }
}
