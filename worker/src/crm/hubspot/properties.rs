//! An object type's properties from `GET /crm/v3/properties/{objectType}`: `name`, `label`,
//! `type` (else `fieldType`); unique when `hasUniqueValue`. HubSpot marks no property
//! required, so none is; properties whose value is read-only
//! (`modificationMetadata.readOnlyValue`) are left out, as no step can write them.

use serde_json::Value;

use crate::crm::session::Reply;
use crate::crm::{CrmError, ErrorKind, FieldInfo, unknown_object};

fn field_info(property: &Value) -> Option<FieldInfo> {
    let read_only = property
        .pointer("/modificationMetadata/readOnlyValue")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if read_only {
        return None;
    }
    let text = |key: &str| {
        property
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let name = text("name")?;
    Some(FieldInfo {
        label: text("label").unwrap_or_else(|| name.clone()),
        kind: text("type")
            .or_else(|| text("fieldType"))
            .unwrap_or_default(),
        required: false,
        unique: property
            .get("hasUniqueValue")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name,
    })
}

/// Whether HubSpot's answer says the object type does not exist.
fn is_unknown_type(status: u16, body: &Value) -> bool {
    let message = body.get("message").and_then(Value::as_str).unwrap_or("");
    status == 404 || (status == 400 && message.contains("infer object type"))
}

/// The path listing `object`'s properties (already URL-encoded).
pub(super) fn path(encoded_object: &str) -> String {
    format!("/crm/v3/properties/{encoded_object}")
}

/// The writable properties in HubSpot's answer; an object type the account does not have is
/// not found. `None` for any other failure, which the caller classifies.
pub(super) fn read(reply: &Reply, object: &str) -> Option<Result<Vec<FieldInfo>, CrmError>> {
    let body = reply.json();
    if is_unknown_type(reply.status, body.as_ref().unwrap_or(&Value::Null)) {
        return Some(Err(unknown_object("HubSpot", object)));
    }
    if !reply.is_success() {
        return None;
    }
    let Some(body) = body else {
        return Some(Err(CrmError::new(
            ErrorKind::Transient,
            "HubSpot's properties were not JSON",
        )));
    };
    Some(Ok(body
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(field_info)
        .collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unique_and_read_only_properties_read_as_hubspot_marks_them() {
        let f = field_info(&json!({"name": "email", "label": "Email", "type": "string",
            "fieldType": "text", "hasUniqueValue": true,
            "modificationMetadata": {"readOnlyValue": false}}))
        .expect("a property");
        assert!(f.unique && !f.required);
        assert_eq!(f.kind, "string");
        assert!(
            field_info(
                &json!({"name": "hs_object_id", "label": "Record ID", "type": "number",
                "modificationMetadata": {"readOnlyValue": true}})
            )
            .is_none()
        );
        assert!(is_unknown_type(
            400,
            &json!({"message": "Unable to infer object type from: x"})
        ));
        assert!(!is_unknown_type(400, &json!({"message": "bad"})));
    }
}
