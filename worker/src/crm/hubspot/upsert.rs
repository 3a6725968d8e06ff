//! Upserts by a unique property (`POST /crm/v3/objects/{type}/batch/upsert` with it as
//! `idProperty`), batched under backlog: writes of the same connection, object and property
//! waiting together go out as one call of up to 100 inputs (see
//! [`crate::crm::session::batch`]). HubSpot answers each input on its own: a `results` entry,
//! or an error of a 207 multi-status naming the input's id in `context.ids`; each write reads
//! its own. A batch HubSpot refuses as a whole is sent again one record at a time, so one bad
//! record never fails its neighbours.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::answers::{Written, classify, done, object_path, refused, send, unknown_in};
use crate::crm::session::batch::{Answer, Batch, Joined};
use crate::crm::session::{Call, Request};
use crate::crm::{CrmError, ErrorKind};

/// Most inputs HubSpot takes in one batch call.
pub const BATCH_MAX: usize = 100;

/// Creates or updates the `object` record whose unique `id_property` is `id`.
pub(super) async fn by_unique(
    call: &mut Call<'_>,
    object: &str,
    id_property: &str,
    id: &str,
    properties: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let mut without_key = properties.clone();
    without_key.remove(id_property);
    let input = json!({ "idProperty": id_property, "id": id, "properties": without_key });
    if call.connection.id.is_empty() {
        return alone(call, object, input).await;
    }
    let group = format!("hubspot:{}:{object}:{id_property}", call.connection.id);
    // HubSpot reads emails without regard to case: two spellings are one record.
    let record = if id_property == "email" {
        id.to_lowercase()
    } else {
        id.to_string()
    };
    match call
        .join_batch(group, record, input.clone(), BATCH_MAX)
        .await?
    {
        Joined::Answered { answer, trail, .. } => {
            call.trail = trail;
            read(call, object, input, answer).await
        }
        Joined::Lead(batch) => lead(call, object, input, batch).await,
    }
}

/// Sends a batch this write leads and answers every write of it.
async fn lead(
    call: &mut Call<'_>,
    object: &str,
    own: Value,
    batch: Batch,
) -> Result<Written, CrmError> {
    let size = batch.len();
    let request = Request::new(
        Method::POST,
        format!("{}/batch/upsert", object_path(object)),
    )
    .json(json!({ "inputs": batch.inputs }));
    let reply = match send(call, request).await {
        Ok(reply) => reply,
        Err(error) => {
            batch.fail(&error, &call.trail.clone());
            return Err(error);
        }
    };
    if !reply.is_success() {
        let trail = call.trail.clone();
        if size == 1 {
            // Its own refusal, read as a single write's.
            batch.finish(vec![Answer::Alone], &trail);
            return Ok(refused(reply));
        }
        return match batch.refused(classify(&reply), &trail) {
            Answer::Alone => alone(call, object, own).await,
            _ => Ok(refused(reply)),
        };
    }
    let body = reply.json().unwrap_or(Value::Null);
    let answers = answers(&body, &batch.inputs);
    let trail = call.trail.clone();
    let answer = batch.finish(answers, &trail);
    read(call, object, own, answer).await
}

/// Sends one input by itself.
async fn alone(call: &mut Call<'_>, object: &str, input: Value) -> Result<Written, CrmError> {
    let request = Request::new(
        Method::POST,
        format!("{}/batch/upsert", object_path(object)),
    )
    .json(json!({ "inputs": [input] }));
    let reply = send(call, request).await?;
    if !reply.is_success() {
        return Ok(refused(reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    let answer = answers(&body, std::slice::from_ref(&input)).remove(0);
    match answer {
        Answer::Record(record) => written(record),
        Answer::Failed(error) => Err(error),
        Answer::Alone => Err(CrmError::new(
            ErrorKind::Transient,
            "HubSpot's batch answer said nothing of this record",
        )),
    }
}

/// One write's answer as a single write reads it; sent again alone when the batch was refused.
async fn read(
    call: &mut Call<'_>,
    object: &str,
    input: Value,
    answer: Answer,
) -> Result<Written, CrmError> {
    match answer {
        Answer::Record(record) => written(record),
        Answer::Failed(error) => Err(error),
        Answer::Alone => alone(call, object, input).await,
    }
}

/// An input's own answer: its result, or the error HubSpot gave it.
fn written(answer: Value) -> Result<Written, CrmError> {
    let Some(error) = answer.get("error") else {
        return done(answer.get("result").cloned().unwrap_or(Value::Null));
    };
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let details: Vec<&str> = error
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("message").and_then(Value::as_str))
        .collect();
    let shown = if details.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", details.join("; "))
    };
    let mut refusal = CrmError::new(
        ErrorKind::Invalid,
        format!("HubSpot refused the upsert: {shown}"),
    );
    refusal.vendor_status = Some(207);
    refusal.vendor_body = Some(crate::crm::session::excerpt(&error.to_string()));
    Ok(Written::Unknown(unknown_in(error), refusal))
}

/// Each input's answer, in the order of `inputs`: the error naming its id in `context.ids`,
/// else the result whose `idProperty` value is its id, else (HubSpot's results need not hold
/// that property) the next result no input claimed. Each answer is `{"result": …}` or
/// `{"error": …}`.
fn answers(body: &Value, inputs: &[Value]) -> Vec<Answer> {
    let list = |name: &str| {
        body.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (results, errors) = (list("results"), list("errors"));
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let same = |property: &str, a: &str, b: &str| {
        a == b || (property == "email" && a.eq_ignore_ascii_case(b))
    };
    let mut claimed = vec![false; results.len()];
    let mut answers: Vec<Option<Answer>> = inputs
        .iter()
        .map(|input| {
            let (property, id) = (text(input, "idProperty"), text(input, "id"));
            if let Some(error) = errors.iter().find(|e| {
                e.pointer("/context/ids")
                    .and_then(Value::as_array)
                    .is_some_and(|ids| {
                        ids.iter()
                            .any(|v| v.as_str().is_some_and(|v| same(&property, v, &id)))
                    })
            }) {
                return Some(Answer::Record(json!({ "error": error })));
            }
            let found = results.iter().enumerate().position(|(i, r)| {
                !claimed[i]
                    && r.pointer(&format!("/properties/{property}"))
                        .and_then(Value::as_str)
                        .is_some_and(|v| same(&property, v, &id))
            })?;
            claimed[found] = true;
            Some(Answer::Record(json!({ "result": results[found] })))
        })
        .collect();
    let mut unclaimed = (0..results.len()).filter(|i| !claimed[*i]);
    for answer in answers.iter_mut().filter(|a| a.is_none()) {
        *answer = unclaimed
            .next()
            .map(|i| Answer::Record(json!({ "result": results[i] })));
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                Answer::Failed(CrmError::new(
                    ErrorKind::Transient,
                    "HubSpot's batch answer said nothing of this record",
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str) -> Value {
        json!({ "idProperty": "email", "id": id, "properties": {} })
    }

    #[test]
    fn each_input_reads_its_own_result_or_error_in_any_order() {
        let inputs = [
            input("a@x.com"),
            input("B@x.com"),
            input("bad@x"),
            input("d@x.com"),
        ];
        let body = json!({
            "results": [
                { "id": "2", "properties": { "email": "b@x.com" } },
                { "id": "1", "properties": { "email": "a@x.com" } },
                // HubSpot need not echo the property: the one result left is the one input left.
                { "id": "4", "properties": {} }
            ],
            "errors": [{ "message": "Email address bad@x is invalid", "context": { "ids": ["bad@x"] } }]
        });
        let read = answers(&body, &inputs);
        let ids: Vec<String> = read
            .iter()
            .map(|a| match a {
                Answer::Record(v) if v.get("error").is_some() => "error".to_string(),
                Answer::Record(v) => v["result"]["id"].as_str().unwrap().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, ["1", "2", "error", "4"]);
        let Ok(Written::Unknown(unknown, refusal)) = written(match &read[2] {
            Answer::Record(v) => v.clone(),
            _ => unreachable!(),
        }) else {
            panic!("an error reads as a refusal");
        };
        assert!(unknown.is_empty());
        assert!(refusal.message.contains("bad@x is invalid"), "{refusal:?}");

        // Fewer results than inputs: the one left without is retried, not guessed.
        let short = answers(&json!({ "results": [] }), &inputs[..1]);
        assert!(matches!(&short[0], Answer::Failed(e) if e.kind == ErrorKind::Transient));
    }
}
