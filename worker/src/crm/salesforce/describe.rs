//! An sObject's fields from `GET /sobjects/{object}/describe`: those that can be created or
//! updated, required when createable, not nillable and not defaulted on create, unique when
//! `unique` or an external id.

use reqwest::Method;
use serde_json::Value;

use super::soql::is_name;
use super::{classify, send};
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, ErrorKind, FieldInfo, unknown_object};

fn flag(field: &Value, name: &str) -> bool {
    field.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn text(field: &Value, name: &str) -> String {
    field
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// One describe field read, unless it can be neither created nor updated.
fn field_info(field: &Value) -> Option<FieldInfo> {
    let createable = flag(field, "createable");
    if !createable && !flag(field, "updateable") {
        return None;
    }
    let name = text(field, "name");
    if name.is_empty() {
        return None;
    }
    let label = Some(text(field, "label"))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| name.clone());
    Some(FieldInfo {
        label,
        kind: text(field, "type"),
        required: createable && !flag(field, "nillable") && !flag(field, "defaultedOnCreate"),
        unique: flag(field, "unique") || flag(field, "externalId"),
        name,
    })
}

/// The writable fields of `object`; an object the org does not have is not found.
pub(super) async fn fields(call: &mut Call<'_>, object: &str) -> Result<Vec<FieldInfo>, CrmError> {
    if !is_name(object) {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            "Salesforce object names may hold only letters, digits and _",
        ));
    }
    let reply = send(
        call,
        Request::new(Method::GET, format!("/sobjects/{object}/describe")),
    )
    .await?;
    if reply.status == 404 {
        return Err(unknown_object("Salesforce", object));
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    crate::crm::object_fields::listed(reply.json(), "Salesforce's describe", field_info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_means_createable_not_nillable_and_not_defaulted() {
        let read = |v: Value| field_info(&v);
        let base = json!({"name": "LastName", "label": "Last Name", "type": "string",
            "createable": true, "updateable": true, "nillable": false, "defaultedOnCreate": false});
        let f = read(base.clone()).expect("a field");
        assert!(f.required && !f.unique);
        assert_eq!((f.label.as_str(), f.kind.as_str()), ("Last Name", "string"));
        let mut defaulted = base.clone();
        defaulted["defaultedOnCreate"] = json!(true);
        assert!(!read(defaulted).expect("a field").required);
        let mut external = base.clone();
        external["nillable"] = json!(true);
        external["externalId"] = json!(true);
        let f = read(external).expect("a field");
        assert!(!f.required && f.unique);
        let mut system = base;
        system["createable"] = json!(false);
        system["updateable"] = json!(false);
        assert!(read(system).is_none());
    }
}
