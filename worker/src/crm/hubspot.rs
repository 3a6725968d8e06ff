//! HubSpot CRM v3 objects and v4 associations.
//!
//! - Auth: a private-app token, or OAuth (refresh token at `token_url`, default
//!   `https://api.hubapi.com/oauth/v1/token`); API calls go to `base_url`.
//! - `upsert` with one match property uses `POST /crm/v3/objects/{type}/batch/upsert` with that
//!   property as `idProperty` (email for contacts, a unique-value property for other objects),
//!   so HubSpot itself guarantees there is never a second record; such writes waiting at the
//!   same time share one call of up to 100 inputs (`hubspot/upsert.rs`). With several match
//!   properties it searches, then patches or creates.
//! - `update` patches by record id, else finds the record by search; `create` posts, and a 409
//!   conflict is resolved by updating the record HubSpot says already exists.
//! - `find` searches with one group of `EQ` filters, its `select` as `properties`, at most 100;
//!   a record reads as its `id` with the properties HubSpot returned beside it. A `match` of one
//!   `associations.<type>` key finds the records associated with that record instead (a
//!   deal's line items), through the associations API and a batch read.
//! - Fields (`crm::fields`): `GET /crm/v3/properties/{type}`, those whose value is writable.
//! - Property values are sent as strings, as HubSpot expects.
//! - A 400 for properties that do not exist is retried once with `match` plus the step's
//!   `fallback_fields`, leaving a warning naming the refused properties.
//! - 429 waits for `Retry-After`, else the `X-HubSpot-RateLimit-*` interval; a daily limit
//!   pauses the connection for an hour.

use super::providers::hubspot::{BASE_URL as HUBSPOT_BASE_URL, TOKEN_URL as HUBSPOT_TOKEN_URL};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Write;
use super::session::{
    Call, Exchanged, Reply, Request, Session, kind_of_status, rotated, token_field,
};
use super::{
    Adapter, BoxFuture, CrmError, CrmOutcome, ErrorKind, FIND_LIMIT, FieldInfo, Found, as_text,
    fallback_fields, fallback_warning, known_ids, merged,
};
use crate::flow::Operation;

mod answers;
mod associated;
mod properties;
mod upsert;

use answers::{
    Written, as_properties, classify, done, found_record, id_of, object_path, refused, send,
    urlencode,
};

pub struct HubSpot;

async fn patch(
    call: &mut Call<'_>,
    object: &str,
    id: &str,
    properties: &Map<String, Value>,
) -> Result<Result<Value, Reply>, CrmError> {
    let reply = send(
        call,
        Request::new(
            Method::PATCH,
            format!("{}/{}", object_path(object), urlencode(id)),
        )
        .json(json!({ "properties": properties })),
    )
    .await?;
    Ok(if reply.is_success() {
        Ok(reply.json().unwrap_or(Value::Null))
    } else {
        Err(reply)
    })
}

/// One page of the records whose properties equal every match value (`POST …/search` with
/// one group of `EQ` filters), with `properties`; and how many match in all.
async fn search_records(
    call: &mut Call<'_>,
    object: &str,
    match_fields: &Map<String, Value>,
    properties: &[String],
    limit: usize,
) -> Result<(Vec<Value>, u64), CrmError> {
    let filters: Vec<Value> = match_fields
        .iter()
        .map(|(name, value)| json!({ "propertyName": name, "operator": "EQ", "value": as_text(value) }))
        .collect();
    let reply = send(
        call,
        Request::new(Method::POST, format!("{}/search", object_path(object))).json(json!({
            "filterGroups": [{ "filters": filters }],
            "properties": properties,
            "limit": limit
        })),
    )
    .await?;
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    let results = body
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = body
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(results.len() as u64);
    Ok((results, total))
}

/// Finds records whose properties equal every match value; at most two ids.
async fn search(
    call: &mut Call<'_>,
    object: &str,
    match_fields: &Map<String, Value>,
) -> Result<Vec<String>, CrmError> {
    let properties = ["hs_object_id".to_string()];
    let (results, _) = search_records(call, object, match_fields, &properties, 2).await?;
    Ok(results.iter().filter_map(id_of).collect())
}

/// The records a `find` step asks for: a search with its `select` as `properties`, or the
/// records associated with one (`associations.<type>`, see [`associated`]).
async fn find(call: &mut Call<'_>, op: &Operation) -> Result<Found, CrmError> {
    if let Some(from) = associated::association(&op.match_fields) {
        return associated::find(call, &op.object, from, &op.select).await;
    }
    let (results, total) =
        search_records(call, &op.object, &op.match_fields, &op.select, FIND_LIMIT).await?;
    let records: Vec<Map<String, Value>> = results.iter().filter_map(found_record).collect();
    Ok(Found {
        more: total > records.len() as u64,
        records,
    })
}

async fn create(
    call: &mut Call<'_>,
    object: &str,
    properties: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let reply = send(
        call,
        Request::new(Method::POST, object_path(object)).json(json!({ "properties": properties })),
    )
    .await?;
    if reply.is_success() {
        return done(reply.json().unwrap_or(Value::Null));
    }
    if reply.status == 409 {
        // "Contact already exists. Existing ID: 123": update that one instead.
        let message = reply
            .json()
            .and_then(|b| b.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        if let Some(existing) = message
            .rsplit("Existing ID:")
            .next()
            .filter(|_| message.contains("Existing ID:"))
            .map(|id| id.trim().trim_end_matches('.').to_string())
            .filter(|id| !id.is_empty())
        {
            return match patch(call, object, &existing, properties).await? {
                Ok(body) => {
                    let mut written = done(body)?;
                    if let Written::Done(outcome) = &mut written {
                        outcome.warnings.push(format!(
                            "HubSpot already had this {object} record ({existing}); it was updated instead of created"
                        ));
                    }
                    Ok(written)
                }
                Err(reply) => Ok(refused(reply)),
            };
        }
    }
    Ok(refused(reply))
}

async fn write(
    call: &mut Call<'_>,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
    properties: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let object = op.object.as_str();
    for id in known_ids(kind, op, linked) {
        match patch(call, object, id, properties).await? {
            Ok(body) => return done(body),
            Err(reply) if reply.status == 404 => {}
            Err(reply) => return Ok(refused(reply)),
        }
    }
    match kind {
        Write::Create => create(call, object, properties).await,
        Write::Upsert if op.match_fields.len() == 1 => {
            let (id_property, value) = op.match_fields.iter().next().expect("one match field");
            upsert::by_unique(call, object, id_property, &as_text(value), properties).await
        }
        Write::Upsert | Write::Update => {
            let found = if op.match_fields.is_empty() {
                Vec::new()
            } else {
                search(call, object, &op.match_fields).await?
            };
            match found.as_slice() {
                [id] => match patch(call, object, id, properties).await? {
                    Ok(body) => done(body),
                    Err(reply) => Ok(refused(reply)),
                },
                [] if kind == Write::Upsert => create(call, object, properties).await,
                [] => Err(CrmError::new(
                    ErrorKind::NotFound,
                    format!(
                        "no HubSpot {object} with id {:?} or matching {}",
                        op.record_id.as_deref().unwrap_or(""),
                        Value::Object(op.match_fields.clone())
                    ),
                )),
                several => Err(CrmError::new(
                    ErrorKind::Permanent,
                    format!(
                        "several HubSpot {object} records match {}: {}",
                        Value::Object(op.match_fields.clone()),
                        several.join(", ")
                    ),
                )),
            }
        }
    }
}

async fn associate(call: &mut Call<'_>, op: &Operation, record_id: &str) -> Result<(), CrmError> {
    for link in &op.associate {
        let reply = send(
            call,
            Request::new(
                Method::PUT,
                format!(
                    "/crm/v4/objects/{}/{}/associations/default/{}/{}",
                    urlencode(&op.object),
                    urlencode(record_id),
                    urlencode(&link.object),
                    urlencode(&link.id)
                ),
            ),
        )
        .await?;
        if !reply.is_success() {
            let mut error = classify(&reply);
            error.message = format!(
                "associating {} {record_id} with {} {}: {}",
                op.object, link.object, link.id, error.message
            );
            return Err(error);
        }
    }
    Ok(())
}

/// The objects HubSpot merges (`POST /crm/v3/objects/{type}/merge`): contacts and deals.
const MERGED: &[&str] = &["contacts", "0-1", "deals", "0-3"];

impl Adapter for HubSpot {
    fn merges(&self, object: &str) -> bool {
        MERGED.contains(&object)
    }

    fn merge<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
        winner: &'a str,
        loser: &'a str,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        Box::pin(async move {
            let reply = send(
                call,
                Request::new(Method::POST, format!("{}/merge", object_path(object)))
                    .json(json!({ "primaryObjectId": winner, "objectIdToMerge": loser })),
            )
            .await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            let body = reply.json().unwrap_or(Value::Null);
            Ok(id_of(&body).unwrap_or_else(|| winner.to_string()))
        })
    }

    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>> {
        Box::pin(async move {
            let url = call
                .setting("token_url")
                .unwrap_or(HUBSPOT_TOKEN_URL)
                .to_string();
            let reply = call.refresh_grant(&url, "HubSpot").await?;
            let body = reply.json().unwrap_or(Value::Null);
            if !reply.is_success() {
                let reason = body
                    .get("message")
                    .or_else(|| body.get("status"))
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                let kind = if matches!(reply.status, 400 | 401 | 403) {
                    ErrorKind::Auth
                } else {
                    kind_of_status(reply.status)
                };
                return Err(
                    reply.error(kind, format!("HubSpot refused the token refresh: {reason}"))
                );
            }
            let access_token = token_field(&body, "access_token", "HubSpot")?;
            let expires_in = body
                .get("expires_in")
                .and_then(Value::as_i64)
                .unwrap_or(1800);
            Ok(Exchanged {
                session: Session {
                    access_token,
                    expires_at: Some(crate::vendor_time::token_expiry(
                        crate::now(),
                        expires_in,
                        "HubSpot",
                    )),
                    api_base: None,
                },
                rotated: rotated(&call.credentials, &body),
                user_id: None,
            })
        })
    }

    fn api_base(&self, call: &Call<'_>, _session: &Session) -> Result<String, CrmError> {
        Ok(call
            .setting("base_url")
            .unwrap_or(HUBSPOT_BASE_URL)
            .to_string())
    }

    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>> {
        Box::pin(async move {
            let all = as_properties(&merged(op));
            let mut outcome = match write(call, kind, op, linked, &all).await? {
                Written::Done(outcome) => outcome,
                Written::Unknown(unknown, error) => {
                    if unknown.is_empty() || op.fallback_fields.is_empty() {
                        return Err(error);
                    }
                    let kept = fallback_fields(op, &all);
                    match write(call, kind, op, linked, &kept).await? {
                        Written::Done(mut outcome) => {
                            outcome
                                .warnings
                                .push(fallback_warning("HubSpot", &unknown, &kept));
                            outcome
                        }
                        Written::Unknown(_, error) => return Err(error),
                    }
                }
            };
            associate(call, op, &outcome.record_id).await?;
            outcome.warnings.dedup();
            Ok(outcome)
        })
    }

    fn find<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<Found, CrmError>> {
        Box::pin(find(call, op))
    }

    fn fields<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FieldInfo>, CrmError>> {
        Box::pin(async move {
            let path = properties::path(&urlencode(object));
            let reply = send(call, Request::new(Method::GET, path)).await?;
            properties::read(&reply, object).unwrap_or_else(|| Err(classify(&reply)))
        })
    }

    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        Box::pin(async move {
            let reply = send(
                call,
                Request::new(Method::GET, object_path("contacts")).query("limit", "1"),
            )
            .await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            Ok(format!(
                "HubSpot answered at {}; contacts are readable",
                call.setting("base_url").unwrap_or(HUBSPOT_BASE_URL)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_result_reads_as_its_id_with_its_properties_beside_it() {
        let result = json!({
            "id": "512", "archived": false, "createdAt": "2024-01-01T00:00:00Z",
            "properties": {"email": "ada@example.com", "firstname": null, "hs_object_id": "512"}
        });
        assert_eq!(
            Value::Object(found_record(&result).unwrap()),
            json!({"id": "512", "email": "ada@example.com", "firstname": null, "hs_object_id": "512"})
        );
        assert!(
            found_record(&json!({"properties": {}})).is_none(),
            "no id, no record"
        );
    }
}
