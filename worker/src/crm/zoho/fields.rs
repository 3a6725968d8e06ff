//! A module's fields from `GET /settings/fields?module=`: `api_name`, `field_label`,
//! `data_type`; required when `system_mandatory`, unique when `unique` holds settings; fields
//! marked `read_only` or `field_read_only` are left out, as no step can write them.

use reqwest::Method;
use serde_json::Value;

use super::classify;
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, FieldInfo, unknown_object};

fn flag(field: &Value, name: &str) -> bool {
    field.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Zoho gives a unique field's settings as an object, and none (or `null`) otherwise.
fn is_unique(field: &Value) -> bool {
    match field.get("unique") {
        Some(Value::Object(settings)) => !settings.is_empty(),
        Some(Value::Bool(unique)) => *unique,
        _ => false,
    }
}

fn field_info(field: &Value) -> Option<FieldInfo> {
    if flag(field, "read_only") || flag(field, "field_read_only") {
        return None;
    }
    let name = field.get("api_name").and_then(Value::as_str)?.to_string();
    let label = field
        .get("field_label")
        .or_else(|| field.get("display_label"))
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .map_or_else(|| name.clone(), str::to_string);
    Some(FieldInfo {
        label,
        kind: field
            .get("data_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        required: flag(field, "system_mandatory"),
        unique: is_unique(field),
        name,
    })
}

/// The writable fields of `module`; a module the org does not have is not found.
pub(super) async fn fields(call: &mut Call<'_>, module: &str) -> Result<Vec<FieldInfo>, CrmError> {
    let reply = call
        .send(&Request::new(Method::GET, "/settings/fields").query("module", module))
        .await?;
    if reply.status == 400 {
        let code = reply
            .json()
            .and_then(|b| b.get("code").and_then(Value::as_str).map(str::to_string));
        if code.as_deref() == Some("INVALID_MODULE") {
            return Err(unknown_object("Zoho CRM", module));
        }
    }
    if reply.status == 204 {
        return Ok(Vec::new());
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    crate::crm::object_fields::listed(reply.json(), "Zoho's field list", field_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mandatory_unique_and_read_only_fields_read_as_zoho_marks_them() {
        let f = field_info(&json!({"api_name": "Email", "field_label": "Email",
            "data_type": "email", "system_mandatory": false, "unique": {"casesensitive": "false"}}))
        .expect("a field");
        assert!(f.unique && !f.required);
        let f = field_info(&json!({"api_name": "Last_Name", "field_label": "Last Name",
            "data_type": "text", "system_mandatory": true, "unique": null}))
        .expect("a field");
        assert!(f.required && !f.unique);
        assert_eq!(f.label, "Last Name");
        assert!(
            field_info(&json!({"api_name": "Created_Time", "data_type": "datetime",
                "read_only": true}))
            .is_none()
        );
    }
}
