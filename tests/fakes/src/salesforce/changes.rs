//! How the fake Salesforce keeps track of change: the system fields every record carries
//! (stamped on each write with the writing user), the recycle bin, record types, and the
//! `describe` of an object.

use serde_json::{Map, Value, json};

use super::State;
use super::state::required_fields;

/// Fields the org maintains on every record; the API may read them but never write them.
pub(super) const SYSTEM_FIELDS: &[&str] = &[
    "CreatedDate",
    "CreatedById",
    "SystemModstamp",
    "LastModifiedDate",
    "LastModifiedById",
    "IsDeleted",
];

/// Fields of `RecordType` rows.
pub(super) const RECORD_TYPE_FIELDS: &[&str] = &[
    "Id",
    "Name",
    "DeveloperName",
    "SobjectType",
    "IsActive",
    "BusinessProcessId",
    "Description",
];

/// A datetime as Salesforce writes it: `2024-05-01T12:34:56.000+0000`.
pub fn format_stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Now, as Salesforce writes a datetime.
pub(super) fn now_stamp() -> String {
    format_stamp(chrono::Utc::now())
}

/// A datetime as Salesforce writes it (`+0000`), or as ISO-8601 with `Z` or `+00:00`.
pub(super) fn parse_stamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&chrono::Utc))
}

/// Whether a record is in the recycle bin.
pub(super) fn is_deleted(record: &Map<String, Value>) -> bool {
    record.get("IsDeleted").and_then(Value::as_bool) == Some(true)
}

/// The type `describe` gives a field.
/// A field's label as Salesforce's UI shows a standard one: `LastName` as `Last Name`, a
/// custom field's without its `__c`.
fn label_of(name: &str) -> String {
    let base = name.strip_suffix("__c").unwrap_or(name);
    let mut label = String::new();
    for (i, c) in base.chars().enumerate() {
        if c == '_' {
            label.push(' ');
            continue;
        }
        if i > 0 && c.is_ascii_uppercase() && !label.ends_with(' ') {
            label.push(' ');
        }
        label.push(c);
    }
    label
}

fn field_type(name: &str) -> &'static str {
    match name {
        "Id" => "id",
        "CreatedDate" | "SystemModstamp" | "LastModifiedDate" => "datetime",
        "IsDeleted" => "boolean",
        "CloseDate" | "ActivityDate" => "date",
        "Amount" => "currency",
        "Probability" => "percent",
        "StageName" | "Priority" | "Status" | "Type" => "picklist",
        "Description" => "textarea",
        name if name.ends_with("Id") => "reference",
        _ => "string",
    }
}

impl State {
    /// Where a record is, by id, whatever its object and even in the recycle bin.
    pub(super) fn find_any(&self, id: &str) -> Option<(String, usize)> {
        self.records.iter().find_map(|(object, records)| {
            records
                .iter()
                .position(|r| r.get("Id").and_then(Value::as_str) == Some(id))
                .map(|i| (object.clone(), i))
        })
    }

    /// Writes `fields` to a record as `user`: the modification stamps move to now.
    pub(super) fn modify(
        &mut self,
        object: &str,
        index: usize,
        fields: Map<String, Value>,
        user: &str,
    ) {
        let stamp = now_stamp();
        let Some(record) = self.records.get_mut(object).and_then(|r| r.get_mut(index)) else {
            return;
        };
        record.extend(fields);
        record.insert("SystemModstamp".into(), json!(stamp));
        record.insert("LastModifiedDate".into(), json!(stamp));
        record.insert("LastModifiedById".into(), json!(user));
    }

    /// Moves a record to the recycle bin as `user`.
    pub(super) fn recycle(&mut self, object: &str, index: usize, user: &str) {
        let mut deleted = Map::new();
        deleted.insert("IsDeleted".into(), json!(true));
        self.modify(object, index, deleted, user);
    }

    /// Whether `id` is a record type `object`'s records may take: any, while the org defines
    /// none for it; else one of its active ones.
    pub(super) fn record_type_allowed(&self, object: &str, id: &str) -> bool {
        let of_object: Vec<&Map<String, Value>> = self
            .record_types
            .iter()
            .filter(|rt| rt.get("SobjectType").and_then(Value::as_str) == Some(object))
            .collect();
        of_object.is_empty()
            || of_object.iter().any(|rt| {
                rt.get("Id").and_then(Value::as_str) == Some(id)
                    && rt.get("IsActive").and_then(Value::as_bool) == Some(true)
            })
    }

    /// `GET /sobjects/{object}/describe`: the object's fields and record types.
    pub(super) fn describe(&self, object: &str) -> Value {
        let mut names: Vec<String> = self
            .fields
            .get(object)
            .map(|f| f.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        let all = std::iter::once("Id".to_string())
            .chain(SYSTEM_FIELDS.iter().map(|f| f.to_string()))
            .chain(names);
        let required = required_fields(object);
        let own = self.fields.get(object);
        let fields: Vec<Value> = all
            .map(|name| {
                let system = name == "Id" || SYSTEM_FIELDS.contains(&name.as_str());
                // The org fills the system fields and the owner (the caller) itself.
                let defaulted = system || name == "OwnerId";
                let external_id = own
                    .and_then(|f| f.get(&name))
                    .is_some_and(|f| f.external_id);
                json!({
                    "name": name,
                    "label": label_of(&name),
                    "type": field_type(&name),
                    "createable": !system,
                    "updateable": !system,
                    "nillable": !defaulted && !required.contains(&name.as_str())
                        && name != "IsDeleted",
                    "defaultedOnCreate": defaulted,
                    "unique": name == "Id",
                    "externalId": external_id,
                    "idLookup": name == "Id" || external_id,
                    "custom": name.ends_with("__c"),
                })
            })
            .collect();
        let record_types: Vec<Value> = self
            .record_types
            .iter()
            .filter(|rt| rt.get("SobjectType").and_then(Value::as_str) == Some(object))
            .map(|rt| {
                json!({
                    "recordTypeId": rt["Id"],
                    "name": rt["Name"],
                    "developerName": rt["DeveloperName"],
                    "active": rt["IsActive"],
                    "available": rt["IsActive"],
                    "defaultRecordTypeMapping": false,
                    "master": false,
                })
            })
            .collect();
        json!({
            "name": object,
            "label": object,
            "queryable": true,
            "replicateable": true,
            "fields": fields,
            "recordTypeInfos": record_types,
        })
    }
}
