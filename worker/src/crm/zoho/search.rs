//! Zoho's record search (`GET /{module}/search?criteria=…`), by every match value: the ids a
//! write looks its record up by, and the records a `find` step reads. No match is 204.

use reqwest::Method;
use serde_json::{Map, Value};

use super::reply::{classify, segment};
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, ErrorKind, FIND_LIMIT, Found, as_text};
use crate::flow::Operation;

/// A search criterion value, with Zoho's reserved characters escaped.
fn criterion(value: &Value) -> String {
    as_text(value)
        .replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
        .replace(',', "\\,")
}

/// `((f:equals:v)and(…))`: every match value.
fn criteria(match_fields: &Map<String, Value>) -> String {
    let conditions: Vec<String> = match_fields
        .iter()
        .map(|(field, value)| format!("({field}:equals:{})", criterion(value)))
        .collect();
    format!("({})", conditions.join("and"))
}

/// A field's API name: letters, digits and _.
fn is_api_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The records matching every match value (the first page: `per_page` of them, else Zoho's
/// 200), and whether Zoho has more.
async fn search_records(
    call: &mut Call<'_>,
    module: &str,
    match_fields: &Map<String, Value>,
    fields: &[String],
    per_page: Option<usize>,
) -> Result<(Vec<Value>, bool), CrmError> {
    let mut request = Request::new(Method::GET, format!("/{}/search", segment(module)))
        .query("criteria", criteria(match_fields));
    if let Some(per_page) = per_page {
        request = request.query("per_page", per_page.to_string());
    }
    if !fields.is_empty() {
        request = request.query("fields", fields.join(","));
    }
    let reply = call.send(&request).await?;
    if reply.status == 204 {
        return Ok((Vec::new(), false));
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    let records = body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let more = body
        .pointer("/info/more_records")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((records, more))
}

/// Ids of the records matching every match value (the first page).
pub(super) async fn search(
    call: &mut Call<'_>,
    module: &str,
    match_fields: &Map<String, Value>,
) -> Result<Vec<String>, CrmError> {
    let (records, _) = search_records(call, module, match_fields, &[], None).await?;
    Ok(records
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// The records a `find` step asks for: its `select` as `fields` (all fields when it names
/// none), at most [`FIND_LIMIT`], each as Zoho returned it (`id` among its fields).
pub(super) async fn find(call: &mut Call<'_>, op: &Operation) -> Result<Found, CrmError> {
    if let Some(bad) = op
        .match_fields
        .keys()
        .chain(&op.select)
        .find(|name| !is_api_name(name))
    {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            format!("{bad:?} is not a Zoho CRM field API name: letters, digits and _ only"),
        ));
    }
    let (records, more) = search_records(
        call,
        &op.object,
        &op.match_fields,
        &op.select,
        Some(FIND_LIMIT),
    )
    .await?;
    let records = records
        .into_iter()
        .filter_map(|record| match record {
            Value::Object(record) if record.contains_key("id") => Some(record),
            _ => None,
        })
        .collect();
    Ok(Found { records, more })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn criteria_hold_every_match_value_escaped() {
        let fields = json!({"Email": "a@b.c", "Last_Name": "Burns, (Jr)"});
        assert_eq!(
            criteria(fields.as_object().unwrap()),
            "((Email:equals:a@b.c)and(Last_Name:equals:Burns\\, \\(Jr\\)))"
        );
        assert!(is_api_name("Stripe_Customer_ID"));
        assert!(!is_api_name("Email:equals:x)or(Id"));
        assert!(!is_api_name(""));
    }
}
