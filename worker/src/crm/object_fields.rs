//! A CRM object's fields, as the vendor describes them (Salesforce's describe, HubSpot's
//! properties, Zoho's field settings) or, for the sandbox, as its stored records show them:
//! what a field-mapping designer offers. Each adapter reads its vendor's answer into
//! [`FieldInfo`]s; [`sorted`] orders them required first, then by label.

use entity::{TenantOwned, connections, sandbox_records};
use sea_orm::{ColumnTrait, DatabaseConnection, QueryFilter};
use serde_json::{Map, Value};

use super::{CrmError, ErrorKind};

/// Longest object name a fields request may name.
pub const MAX_OBJECT_NAME: usize = 80;

/// The pattern object names match, as the API documents it.
pub const OBJECT_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,79}$";

/// One field of a CRM object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// The API name steps write.
    pub name: String,
    /// What the vendor's UI shows.
    pub label: String,
    /// The vendor's type name (the JSON kind for the sandbox).
    pub kind: String,
    /// A new record needs it.
    pub required: bool,
    /// Its values are unique (or an external id) and can match records.
    pub unique: bool,
}

/// Where a list of fields came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldSource {
    /// The vendor's metadata API.
    Vendor,
    /// The sandbox's stored records.
    Seen,
}

impl FieldSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldSource::Vendor => "vendor",
            FieldSource::Seen => "seen",
        }
    }
}

/// Whether `name` can name a CRM object in a fields request (see [`OBJECT_NAME_PATTERN`]).
pub fn is_object_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= MAX_OBJECT_NAME
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the provider's CRM has object metadata to read.
pub fn has_schema(provider: &str) -> bool {
    matches!(provider, "sandbox" | "salesforce" | "hubspot" | "zoho")
}

/// Required fields first, then by label (ignoring case), then by name.
pub fn sorted(mut fields: Vec<FieldInfo>) -> Vec<FieldInfo> {
    fields.sort_by(|a, b| {
        b.required
            .cmp(&a.required)
            .then_with(|| a.label.to_lowercase().cmp(&b.label.to_lowercase()))
            .then_with(|| a.name.cmp(&b.name))
    });
    fields
}

/// The error of an object the vendor does not know.
/// The fields a vendor's answer lists under `fields` (Salesforce's describe, Zoho's field
/// settings), each read by `read` (which leaves out what cannot be written); `answer` names
/// the answer in the error when it is not JSON.
pub fn listed(
    body: Option<Value>,
    answer: &str,
    read: fn(&Value) -> Option<FieldInfo>,
) -> Result<Vec<FieldInfo>, CrmError> {
    let body =
        body.ok_or_else(|| CrmError::new(ErrorKind::Transient, format!("{answer} was not JSON")))?;
    Ok(body
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(read)
        .collect())
}

pub fn unknown_object(vendor: &str, object: &str) -> CrmError {
    CrmError::new(
        ErrorKind::NotFound,
        format!("{vendor} has no object named {object:?}"),
    )
}

/// A JSON value's kind, as the sandbox reports a field's type.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The union of the field names of the sandbox's stored `object` records, each typed by the
/// first non-null value seen.
pub async fn sandbox_fields(
    db: &DatabaseConnection,
    connection: &connections::Model,
    object: &str,
) -> Result<Vec<FieldInfo>, CrmError> {
    let rows = sandbox_records::Entity::find_in_tenant(&connection.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(sandbox_records::Column::Object.eq(object))
        .all(db)
        .await
        .map_err(|e| CrmError::new(ErrorKind::Transient, format!("database: {e}")))?;
    let mut kinds: Map<String, Value> = Map::new();
    for row in rows {
        let fields: Map<String, Value> = serde_json::from_str(&row.fields).unwrap_or_default();
        for (name, value) in fields {
            let kind = json_kind(&value);
            match kinds.get(&name).and_then(Value::as_str) {
                Some(known) if known != "null" => {}
                _ => {
                    kinds.insert(name, Value::String(kind.to_string()));
                }
            }
        }
    }
    Ok(kinds
        .into_iter()
        .map(|(name, kind)| FieldInfo {
            label: name.clone(),
            name,
            kind: kind.as_str().unwrap_or("null").to_string(),
            required: false,
            unique: false,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, label: &str, required: bool) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            label: label.into(),
            kind: "string".into(),
            required,
            unique: false,
        }
    }

    #[test]
    fn object_names_match_the_documented_pattern() {
        assert!(is_object_name("Contact"));
        assert!(is_object_name("_x9"));
        assert!(is_object_name(&"a".repeat(80)));
        assert!(!is_object_name(&"a".repeat(81)));
        assert!(!is_object_name(""));
        assert!(!is_object_name("9a"));
        assert!(!is_object_name("a-b"));
        assert!(!is_object_name("a/b"));
        assert!(!is_object_name("é"));
    }

    #[test]
    fn required_fields_come_first_then_labels_in_order() {
        let out = sorted(vec![
            field("b", "beta", false),
            field("z", "Zeta", true),
            field("a", "Alpha", false),
            field("y", "alpha", true),
        ]);
        let names: Vec<&str> = out.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["y", "z", "a", "b"]);
    }
}
