//! Upserts by an external id field, batched under backlog: alone, `PATCH
//! /sobjects/{type}/{field}/{value}` (201 created, 200 updated, 300 several matches); writes of
//! the same connection, object and field waiting together go out as one sObject Collections
//! upsert, `PATCH /composite/sobjects/{type}/{field}` with `allOrNone: false` and up to 200
//! records (see [`crate::crm::session::batch`]). Salesforce answers one SaveResult per record,
//! in order; a failed one's errors are read as that record's own refusal, so one bad record
//! never fails its neighbours. A collection refused as a whole is sent again one record at a
//! time.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use super::reply::{Written, classify, segment, send, several, written};
use super::soql::lookup;
use crate::crm::session::batch::{Answer, Batch, Joined};
use crate::crm::session::{Call, Reply, Request};
use crate::crm::{CrmError, ErrorKind};

/// Most records one sObject Collections request takes.
pub const BATCH_MAX: usize = 200;

/// Creates or updates the `object` record whose external id `field` is `value`.
pub(super) async fn by_external_id(
    call: &mut Call<'_>,
    object: &str,
    (field, value): (&str, &str),
    fields: &Map<String, Value>,
    match_fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    if call.connection.id.is_empty() {
        return alone(call, object, (field, value), fields, match_fields).await;
    }
    let mut record = fields.clone();
    record.insert(field.to_string(), json!(value));
    record.insert("attributes".into(), json!({ "type": object }));
    let group = format!("salesforce:{}:{object}:{field}", call.connection.id);
    match call
        // External ids match without regard to case unless the field says otherwise: two
        // spellings never share a collection.
        .join_batch(
            group,
            value.to_lowercase(),
            Value::Object(record),
            BATCH_MAX,
        )
        .await?
    {
        Joined::Answered { answer, trail, .. } => {
            call.trail = trail;
            match answer {
                Answer::Record(result) => Ok(saved(&result)),
                Answer::Failed(error) => Err(error),
                Answer::Alone => alone(call, object, (field, value), fields, match_fields).await,
            }
        }
        Joined::Lead(batch) => match lead(call, object, field, batch).await? {
            Answer::Record(result) => Ok(saved(&result)),
            Answer::Failed(error) => Err(error),
            Answer::Alone => alone(call, object, (field, value), fields, match_fields).await,
        },
    }
}

/// Sends a collection this write leads and answers every write of it; returns its own answer.
async fn lead(
    call: &mut Call<'_>,
    object: &str,
    field: &str,
    batch: Batch,
) -> Result<Answer, CrmError> {
    let size = batch.len();
    if size == 1 {
        // Alone after all: the single upsert, whose answers (a 300) say more.
        return Ok(batch.finish(vec![Answer::Alone], &call.trail.clone()));
    }
    let request = Request::new(
        Method::PATCH,
        format!("/composite/sobjects/{}/{}", segment(object), segment(field)),
    )
    .json(json!({ "allOrNone": false, "records": batch.inputs }));
    let reply = match send(call, request).await {
        Ok(reply) => reply,
        Err(error) => {
            batch.fail(&error, &call.trail.clone());
            return Err(error);
        }
    };
    let trail = call.trail.clone();
    if !reply.is_success() {
        return Ok(batch.refused(classify(&reply), &trail));
    }
    let results = reply
        .json()
        .and_then(|body| body.as_array().cloned())
        .unwrap_or_default();
    // One SaveResult per record, in the order sent; a short answer leaves the rest unanswered
    // (retried).
    let answers = results.into_iter().take(size).map(Answer::Record).collect();
    Ok(batch.finish(answers, &trail))
}

/// A record's SaveResult as a single write's outcome: done with its id, or refused with its
/// errors, read as a single request's error array would be.
fn saved(result: &Value) -> Written {
    let id = result.get("id").and_then(Value::as_str).unwrap_or("");
    if result.get("success").and_then(Value::as_bool) == Some(true) && !id.is_empty() {
        return written(id, result.clone());
    }
    let errors: Vec<Value> = result
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            json!({
                "errorCode": e.get("statusCode").or_else(|| e.get("errorCode")).cloned().unwrap_or(json!("ERROR")),
                "message": e.get("message").cloned().unwrap_or(json!("")),
                "fields": e.get("fields").cloned().unwrap_or(json!([])),
            })
        })
        .collect();
    Written::Refused(Reply {
        status: 400,
        headers: HeaderMap::new(),
        body: Value::Array(errors).to_string(),
    })
}

/// The single upsert by external id.
async fn alone(
    call: &mut Call<'_>,
    object: &str,
    (field, value): (&str, &str),
    fields: &Map<String, Value>,
    match_fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let mut body = fields.clone();
    body.remove(field);
    let reply = send(
        call,
        Request::new(
            Method::PATCH,
            format!(
                "/sobjects/{}/{}/{}",
                segment(object),
                segment(field),
                segment(value)
            ),
        )
        .json(Value::Object(body)),
    )
    .await?;
    if reply.status == 300 {
        let ids: Vec<String> = reply
            .json()
            .and_then(|b| b.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .map(|url| url.rsplit('/').next().unwrap_or(url).to_string())
            .collect();
        let match_text = Value::Object(match_fields.clone()).to_string();
        let mut error = several(object, &ids, &match_text);
        error.vendor_status = Some(300);
        error.vendor_body = Some(reply.excerpt());
        return Err(error);
    }
    if !reply.is_success() {
        return Ok(Written::Refused(reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    if let Some(id) = body.get("id").and_then(Value::as_str) {
        return Ok(written(id, body.clone()));
    }
    // Older API versions answer 204 without a body: find what was written.
    match lookup(call, object, match_fields).await?.as_slice() {
        [id] => Ok(written(id, Value::Null)),
        _ => Err(CrmError::new(
            ErrorKind::Transient,
            "Salesforce upserted without naming the record, and a lookup did not find it",
        )),
    }
}
