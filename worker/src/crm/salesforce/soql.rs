//! The SOQL the adapter sends: literals, names, the `WHERE` of a match, and the queries that
//! look records up by it (`lookup` for writes, `find` for `find` steps).

use reqwest::Method;
use serde_json::{Map, Value};

use super::reply::{classify, send};
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, ErrorKind, FIND_LIMIT, Found, as_text};
use crate::flow::Operation;

/// A SOQL string literal.
pub fn soql_quote(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => {
            let text = as_text(other);
            format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
        }
    }
}

/// A SOQL field or object name: letters, digits and underscores only.
pub(super) fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A field, or a field of a related record: names joined by `.` (`Account.Owner.Email`).
fn is_path(text: &str) -> bool {
    text.split('.').all(is_name)
}

pub(super) async fn query(call: &mut Call<'_>, soql: &str) -> Result<Vec<Value>, CrmError> {
    let reply = send(call, Request::new(Method::GET, "/query").query("q", soql)).await?;
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    Ok(reply
        .json()
        .and_then(|b| b.get("records").and_then(Value::as_array).cloned())
        .unwrap_or_default())
}

/// `f = v AND …`: every match value, as a `WHERE` clause.
fn conditions(match_fields: &Map<String, Value>) -> String {
    let conditions: Vec<String> = match_fields
        .iter()
        .map(|(field, value)| format!("{field} = {}", soql_quote(value)))
        .collect();
    conditions.join(" AND ")
}

/// Ids of the records whose fields equal every match value (at most ten).
pub(super) async fn lookup(
    call: &mut Call<'_>,
    object: &str,
    match_fields: &Map<String, Value>,
) -> Result<Vec<String>, CrmError> {
    if !is_name(object) || !match_fields.keys().all(|k| is_name(k)) {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            "Salesforce object and match field names may hold only letters, digits and _",
        ));
    }
    let soql = format!(
        "SELECT Id FROM {object} WHERE {} LIMIT 10",
        conditions(match_fields)
    );
    Ok(query(call, &soql)
        .await?
        .iter()
        .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// The query of a `find`: `Id` and the selected fields (each once) of the records matching
/// every match value. Names that are not SOQL names (or paths of them) are refused.
fn find_soql(op: &Operation) -> Result<String, CrmError> {
    let object = op.object.as_str();
    if !is_name(object) {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            format!("{object:?} is not a Salesforce object name: letters, digits and _ only"),
        ));
    }
    if let Some(bad) = op
        .match_fields
        .keys()
        .chain(&op.select)
        .find(|name| !is_path(name))
    {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            format!(
                "{bad:?} is not a Salesforce field name: letters, digits and _, and a related record's field joined by . (Account.Owner.Email)"
            ),
        ));
    }
    let mut fields = vec!["Id"];
    for name in &op.select {
        if !fields.iter().any(|f| f.eq_ignore_ascii_case(name)) {
            fields.push(name);
        }
    }
    Ok(format!(
        "SELECT {} FROM {object} WHERE {} LIMIT {FIND_LIMIT}",
        fields.join(", "),
        conditions(&op.match_fields)
    ))
}

/// A value without the `attributes` Salesforce adds to every record it shows.
fn without_attributes(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| key != "attributes")
                .map(|(key, value)| (key, without_attributes(value)))
                .collect(),
        ),
        other => other,
    }
}

/// A row as later steps read it: its `Id` as `id` (kept as `Id` too when selected), the
/// selected fields as Salesforce returned them, related records included, without
/// `attributes`.
fn found_record(row: Value, select: &[String]) -> Option<Map<String, Value>> {
    let Value::Object(mut row) = without_attributes(row) else {
        return None;
    };
    let id = row.get("Id").cloned()?;
    if !select.iter().any(|name| name == "Id") {
        row.remove("Id");
    }
    let mut record = Map::new();
    record.insert("id".into(), id);
    record.extend(row);
    Some(record)
}

/// The records a `find` step asks for (at most [`FIND_LIMIT`]).
pub(super) async fn find(call: &mut Call<'_>, op: &Operation) -> Result<Found, CrmError> {
    let soql = find_soql(op)?;
    let records = query(call, &soql)
        .await?
        .into_iter()
        .filter_map(|row| found_record(row, &op.select))
        .collect();
    Ok(Found {
        records,
        more: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find_op(object: &str, match_fields: Value, select: &[&str]) -> Operation {
        serde_json::from_value(json!({
            "step": "found", "action": "find", "object": object, "match": match_fields,
            "fields": {}, "fallback_fields": [], "associate": [], "select": select,
        }))
        .expect("an operation")
    }

    #[test]
    fn a_find_selects_id_and_each_field_once_where_every_match_holds() {
        let op = find_op(
            "Contact",
            json!({"Email": "o'hara@example.com", "Active__c": true}),
            &["Name", "id", "Account.Owner.Email", "Name"],
        );
        assert_eq!(
            find_soql(&op).unwrap(),
            "SELECT Id, Name, Account.Owner.Email FROM Contact \
             WHERE Active__c = true AND Email = 'o\\'hara@example.com' LIMIT 100"
        );
    }

    #[test]
    fn names_that_are_not_soql_names_are_refused_by_name() {
        let bad_field = find_op(
            "Contact",
            json!({"Email": "a@b.c"}),
            &["Name, (SELECT Id FROM Cases)"],
        );
        let error = find_soql(&bad_field).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid);
        assert!(error.message.contains("Name, (SELECT"), "{}", error.message);
        let bad_match = find_op("Contact", json!({"Email = 'x' OR Id": "a"}), &[]);
        assert!(find_soql(&bad_match).unwrap_err().message.contains("OR Id"));
        let bad_object = find_op("Contact WHERE", json!({"Email": "a"}), &[]);
        assert!(find_soql(&bad_object).is_err());
        let empty_segment = find_op("Contact", json!({"Account..Name": "a"}), &[]);
        assert!(find_soql(&empty_segment).is_err());
    }

    #[test]
    fn a_row_reads_as_its_id_and_fields_without_attributes() {
        let row = json!({
            "attributes": {"type": "Contact", "url": "/x"},
            "Id": "003A", "Name": "Ada",
            "Account": {"attributes": {"type": "Account"}, "Name": "Analytical"}
        });
        let record = found_record(row.clone(), &["Name".into()]).unwrap();
        assert_eq!(
            Value::Object(record),
            json!({"id": "003A", "Name": "Ada", "Account": {"Name": "Analytical"}})
        );
        let with_id = found_record(row, &["Id".into()]).unwrap();
        assert_eq!(with_id["Id"], "003A");
        assert_eq!(with_id["id"], "003A");
    }
}
