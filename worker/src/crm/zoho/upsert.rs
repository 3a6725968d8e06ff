//! Upserts by `duplicate_check_fields` (`POST /{module}/upsert`), batched under backlog:
//! writes of the same connection, module and check fields waiting together go out as one call
//! of up to 100 records (see [`crate::crm::session::batch`]). Zoho answers one `data` entry per
//! record, in order, each with its own `code`; each write reads its own, so one bad record never
//! fails its neighbours. A call refused as a whole is sent again one record at a time.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use super::reply::{RecordResult, Written, classify, done, record_result, segment};
use crate::crm::session::batch::{Answer, Batch, Joined};
use crate::crm::session::{Call, Reply, Request};
use crate::crm::{CrmError, as_text};

/// Most records one call takes.
pub const BATCH_MAX: usize = 100;

/// Creates or updates the `module` record that `match_fields` find.
pub(super) async fn by_check_fields(
    call: &mut Call<'_>,
    module: &str,
    record: &Map<String, Value>,
    match_fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let checks: Vec<&String> = match_fields.keys().collect();
    if call.connection.id.is_empty() {
        return alone(call, module, record, &checks).await;
    }
    let group = format!(
        "zoho:{}:{module}:{}",
        call.connection.id,
        checks
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    // Zoho's duplicate check may ignore case: two spellings never share a call.
    let key: Vec<String> = match_fields
        .values()
        .map(|v| as_text(v).to_lowercase())
        .collect();
    let answer = match call
        .join_batch(
            group,
            key.join("\u{1f}"),
            Value::Object(record.clone()),
            BATCH_MAX,
        )
        .await?
    {
        Joined::Answered { answer, trail, .. } => {
            call.trail = trail;
            answer
        }
        Joined::Lead(batch) => lead(call, module, &checks, batch).await?,
    };
    match answer {
        Answer::Record(entry) => entry_written(&entry),
        Answer::Failed(error) => Err(error),
        Answer::Alone => alone(call, module, record, &checks).await,
    }
}

fn upsert_request(module: &str, records: Value, checks: &[&String]) -> Request {
    Request::new(Method::POST, format!("/{}/upsert", segment(module)))
        .json(json!({ "data": records, "duplicate_check_fields": checks }))
}

/// Sends a call this write leads and answers every write of it; returns its own answer.
async fn lead(
    call: &mut Call<'_>,
    module: &str,
    checks: &[&String],
    batch: Batch,
) -> Result<Answer, CrmError> {
    let size = batch.len();
    if size == 1 {
        return Ok(batch.finish(vec![Answer::Alone], &call.trail.clone()));
    }
    let request = upsert_request(module, json!(batch.inputs), checks);
    let reply = match call.send(&request).await {
        Ok(reply) => reply,
        Err(error) => {
            batch.fail(&error, &call.trail.clone());
            return Err(error);
        }
    };
    let trail = call.trail.clone();
    let entries = reply
        .json()
        .and_then(|body| body.get("data").and_then(Value::as_array).cloned())
        .filter(|entries| {
            reply.status < 500 && !matches!(reply.status, 401 | 429) && !entries.is_empty()
        });
    let Some(entries) = entries else {
        return Ok(batch.refused(classify(&reply), &trail));
    };
    // One entry per record, in the order sent; a short answer leaves the rest unanswered.
    let answers = entries.into_iter().take(size).map(Answer::Record).collect();
    Ok(batch.finish(answers, &trail))
}

/// One record's `data` entry as a single write's outcome.
fn entry_written(entry: &Value) -> Result<Written, CrmError> {
    let ok = entry.get("code").and_then(Value::as_str) == Some("SUCCESS");
    let reply = Reply {
        status: if ok { 200 } else { 400 },
        headers: HeaderMap::new(),
        body: json!({ "data": [entry] }).to_string(),
    };
    read(&reply)
}

fn read(reply: &Reply) -> Result<Written, CrmError> {
    match record_result(reply) {
        RecordResult::Success { id, body } => Ok(done(id, body, None)),
        RecordResult::Duplicate { error, .. } => Err(error),
        RecordResult::Refused { field, error } => Ok(Written::Refused(field, error)),
    }
}

/// The single upsert.
async fn alone(
    call: &mut Call<'_>,
    module: &str,
    record: &Map<String, Value>,
    checks: &[&String],
) -> Result<Written, CrmError> {
    let reply = call
        .send(&upsert_request(module, json!([record]), checks))
        .await?;
    if reply.status == 401 || reply.status == 429 || reply.status >= 500 {
        return Err(classify(&reply));
    }
    read(&reply)
}
