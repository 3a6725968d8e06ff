//! A `find` of the records associated with one record. HubSpot keeps a deal's line items (a
//! contact's deals, …) as associations, not as properties, so a search cannot filter by them:
//! `match: {"associations.deal": "<deal id>"}` reads the associated ids through the v4
//! associations API (`GET /crm/v4/objects/{from}/{id}/associations/{object}`, paged by
//! `after`), then the records through `POST /crm/v3/objects/{object}/batch/read` with the
//! step's `select` as `properties`. At most [`FIND_LIMIT`] records, in the order HubSpot
//! lists the associations; `more` says when there were others.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::answers::{classify, found_record, object_path, send, urlencode};
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, ErrorKind, FIND_LIMIT, Found, as_text};

/// The prefix of a `match` key that names the record the found ones are associated with.
const PREFIX: &str = "associations.";

/// `(object type, record id)` when `match_fields` is one `associations.<type>` key.
pub(super) fn association(match_fields: &Map<String, Value>) -> Option<(String, String)> {
    let mut keys = match_fields.iter();
    let (key, value) = keys.next()?;
    let object = key.strip_prefix(PREFIX)?;
    if keys.next().is_some() || object.is_empty() {
        return None;
    }
    Some((object.to_string(), as_text(value)))
}

/// The `object` records associated with `from`'s record `id`, with `select`'s properties.
pub(super) async fn find(
    call: &mut Call<'_>,
    object: &str,
    (from, id): (String, String),
    select: &[String],
) -> Result<Found, CrmError> {
    if id.trim().is_empty() {
        return Err(CrmError::new(
            ErrorKind::Permanent,
            format!("{PREFIX}{from} is empty: it names the {from} record whose {object} to find"),
        ));
    }
    let (ids, more) = associated_ids(call, object, &from, &id).await?;
    if ids.is_empty() {
        return Ok(Found {
            records: Vec::new(),
            more: false,
        });
    }
    let inputs: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    let reply = send(
        call,
        Request::new(Method::POST, format!("{}/batch/read", object_path(object))).json(json!({
            "inputs": inputs,
            "properties": select,
            "propertiesWithHistory": [],
        })),
    )
    .await?;
    // 207: some were deleted since they were listed; the others are read.
    if !(reply.is_success() || reply.status == 207) {
        return Err(classify(&reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    let read: Vec<Map<String, Value>> = body
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(found_record)
        .collect();
    // In the order the associations were listed, not the batch's.
    let mut records = Vec::with_capacity(read.len());
    for id in &ids {
        if let Some(record) = read
            .iter()
            .find(|r| r.get("id").map(as_text).as_ref() == Some(id))
        {
            records.push(record.clone());
        }
    }
    Ok(Found { records, more })
}

/// The ids of `object` records associated with `from`'s `id`: at most [`FIND_LIMIT`], and
/// whether there are more.
async fn associated_ids(
    call: &mut Call<'_>,
    object: &str,
    from: &str,
    id: &str,
) -> Result<(Vec<String>, bool), CrmError> {
    let path = format!(
        "/crm/v4/objects/{}/{}/associations/{}",
        urlencode(from),
        urlencode(id),
        urlencode(object)
    );
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = Request::new(Method::GET, path.clone()).query("limit", "500");
        if let Some(after) = &after {
            request = request.query("after", after.clone());
        }
        let reply = send(call, request).await?;
        if !reply.is_success() {
            return Err(classify(&reply));
        }
        let body = reply.json().unwrap_or(Value::Null);
        for result in body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(to) = result
                .get("toObjectId")
                .map(as_text)
                .filter(|t| !t.is_empty())
            else {
                continue;
            };
            if !ids.contains(&to) {
                ids.push(to);
            }
            if ids.len() > FIND_LIMIT {
                ids.truncate(FIND_LIMIT);
                return Ok((ids, true));
            }
        }
        let next = body
            .pointer("/paging/next/after")
            .map(as_text)
            .filter(|a| !a.is_empty());
        match next {
            // A page that names itself again would loop forever.
            Some(next) if after.as_ref() != Some(&next) => after = Some(next),
            _ => return Ok((ids, false)),
        }
    }
}
