//! Salesforce REST API (sObjects, SOQL).
//!
//! - Auth: OAuth refresh token, or the JWT bearer flow (an RS256 assertion with `iss` the
//!   consumer key, `sub` the username, `aud` the login URL and a three-minute `exp`, signed with
//!   the connected app certificate's key; there is no refresh token, so a new assertion is
//!   minted whenever the session is refused). Sessions are cached, sealed, on the connection.
//! - Calls go to the token response's `instance_url` under `/services/data/v{api_version}`.
//! - `update`: PATCH by record id (the linked record, else `record_id`); a missing record falls
//!   back to a SOQL lookup by `match`; none found is not found, several are refused with the
//!   candidates. `upsert` with one match field is Salesforce's upsert by external id
//!   (201 created, 200 updated, 300 several matches); such writes waiting at the same time
//!   share one sObject Collections upsert of up to 200 records (`salesforce/upsert.rs`);
//!   `create` posts. Tasks without an
//!   `OwnerId` are assigned to the owner of the record they are about (`WhatId`, else `WhoId`).
//! - Record types by name: a step's field `RecordTypeName` (or a `RecordTypeId` whose value is
//!   not a record type id) names one of the object's active record types by `DeveloperName`
//!   (the stable API name), else by `Name` (the label), exact first, then ignoring case; it is
//!   sent as `RecordTypeId`, and `RecordTypeName` itself is never sent. Opportunities created
//!   or upserted without one get the connection's record type: the `record_type` setting (a
//!   name) or `record_type_id` (an id, or a name). The active record types come from
//!   `SELECT Id, Name, DeveloperName FROM RecordType WHERE SobjectType = '<object>' AND
//!   IsActive = true`, cached per connection and object for ten minutes (read again once when
//!   a name is not among them); a name that matches none is refused as invalid, listing the
//!   names there are.
//! - Fields: `GET /sobjects/{object}/describe`, the createable or updateable fields.
//! - `find`: `SELECT Id, <select> FROM <object> WHERE <f> = <value> AND … LIMIT 100`; a
//!   record reads as its `Id` (as `id`) and the selected fields, related records' included
//!   (`Account.Owner.Email`), without `attributes`.
//! - Error arrays (`errorCode`, `message`, `fields`) are shown as Salesforce wrote them.
//!   `REQUEST_LIMIT_EXCEEDED` for the daily allocation pauses the connection for an hour
//!   instead of hammering the org; for too many long-running requests at once it holds every
//!   process 10 s. `Sforce-Limit-Info` is recorded on the connection.
//! - The won stage: `settings.won_stage`, else the first active stage `OpportunityStage` marks
//!   `IsClosed` and `IsWon`, discovered once and cached on the connection for a day (asked
//!   once a process: events that start together wait for the first's answer).

use super::providers::salesforce::LOGIN_URL as SALESFORCE_LOGIN_URL;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Write;
use super::session::{
    Call, Exchanged, Reply, Request, Session, kind_of_status, rotated, token_field,
};
use super::{
    Adapter, BoxFuture, CrmError, CrmOutcome, ErrorKind, FieldInfo, Found, config::Credentials,
    fallback_fields, fallback_warning, known_ids, merged,
};
use crate::flow::Operation;

mod describe;
mod merge;
mod reply;
mod soql;
mod upsert;

use reply::{Written, segment, several, written};
pub(crate) use reply::{classify, send};

pub use soql::soql_quote;
use soql::{is_name, lookup, query};

pub const DEFAULT_API_VERSION: &str = "60.0";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a discovered won stage is trusted.
const WON_STAGE_TTL: chrono::Duration = chrono::Duration::hours(24);

pub struct Salesforce;

fn login_url<'a>(call: &'a Call<'_>) -> &'a str {
    call.setting("login_url").unwrap_or(SALESFORCE_LOGIN_URL)
}

/// Fields Salesforce said do not exist ("No such column 'X' on sobject of type Y").
fn unknown_fields(reply: &Reply) -> Vec<String> {
    let Some(Value::Array(errors)) = reply.json() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for error in errors {
        if error.get("errorCode").and_then(Value::as_str) != Some("INVALID_FIELD") {
            continue;
        }
        let message = error.get("message").and_then(Value::as_str).unwrap_or("");
        if let Some(rest) = message.split("No such column '").nth(1)
            && let Some(name) = rest.split('\'').next()
        {
            names.push(name.to_string());
        }
    }
    names
}

/// The object a record id belongs to, by its key prefix.
fn object_of_id(id: &str) -> Option<&'static str> {
    match id.get(..3)? {
        "001" => Some("Account"),
        "003" => Some("Contact"),
        "006" => Some("Opportunity"),
        "00Q" => Some("Lead"),
        "500" => Some("Case"),
        _ => None,
    }
}

async fn patch_by_id(
    call: &mut Call<'_>,
    object: &str,
    id: &str,
    fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let reply = send(
        call,
        Request::new(
            Method::PATCH,
            format!("/sobjects/{}/{}", segment(object), segment(id)),
        )
        .json(Value::Object(fields.clone())),
    )
    .await?;
    Ok(if reply.is_success() {
        written(id, reply.json().unwrap_or(Value::Null))
    } else {
        Written::Refused(reply)
    })
}

async fn create(
    call: &mut Call<'_>,
    op: &Operation,
    fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let mut request = Request::new(Method::POST, format!("/sobjects/{}", segment(&op.object)))
        .json(Value::Object(fields.clone()));
    if let Some(rules) = reply::duplicate_rule_header(op) {
        request = request.header("Sforce-Duplicate-Rule-Header", &rules);
    }
    let reply = send(call, request).await?;
    if !reply.is_success() {
        return Ok(Written::Refused(reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    match body.get("id").and_then(Value::as_str) {
        Some(id) => Ok(written(id, body.clone())),
        None => Err(reply.error(
            ErrorKind::Transient,
            "Salesforce's answer named no record id",
        )),
    }
}

async fn write(
    call: &mut Call<'_>,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
    fields: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let object = op.object.as_str();
    for id in known_ids(kind, op, linked) {
        match patch_by_id(call, object, id, fields).await? {
            Written::Refused(reply) if reply.status == 404 => continue,
            other => return Ok(other),
        }
    }
    let match_text = Value::Object(op.match_fields.clone()).to_string();
    match kind {
        Write::Create => create(call, op, fields).await,
        Write::Upsert if op.match_fields.len() == 1 => {
            let (field, value) = op.match_fields.iter().next().expect("one match field");
            let value = super::as_text(value);
            upsert::by_external_id(call, object, (field, &value), fields, &op.match_fields).await
        }
        Write::Upsert | Write::Update => {
            let found = if op.match_fields.is_empty() {
                Vec::new()
            } else {
                lookup(call, object, &op.match_fields).await?
            };
            match found.as_slice() {
                [id] => patch_by_id(call, object, id, fields).await,
                [] if kind == Write::Upsert => create(call, op, fields).await,
                [] => Err(CrmError::new(
                    ErrorKind::NotFound,
                    format!(
                        "no Salesforce {object} with id {:?}{}",
                        op.record_id.as_deref().unwrap_or(""),
                        if op.match_fields.is_empty() {
                            String::new()
                        } else {
                            format!(" or matching {match_text}")
                        }
                    ),
                )),
                ids => Err(several(object, ids, &match_text)),
            }
        }
    }
}

/// How long the record types read from an org are trusted.
const RECORD_TYPES_TTL: Duration = Duration::from_secs(600);

/// An object's active record types: (`Id`, `Name`, `DeveloperName`).
type RecordTypes = Vec<(String, String, String)>;

/// Record types read, per (connection, object), and when.
type RecordTypeCache = HashMap<(String, String), (Instant, RecordTypes)>;
static RECORD_TYPES: LazyLock<Mutex<RecordTypeCache>> = LazyLock::new(Mutex::default);

/// Each connection's won stage as this process last read it, and when; its lock is held while
/// it is asked for.
type WonStage = std::sync::Arc<tokio::sync::Mutex<Option<(String, Instant)>>>;
static WON_STAGES: LazyLock<Mutex<HashMap<String, WonStage>>> = LazyLock::new(Mutex::default);

fn won_stage_slot(connection_id: &str) -> WonStage {
    let mut all = WON_STAGES.lock().unwrap_or_else(|e| e.into_inner());
    if all.len() > 10_000 {
        all.retain(|_, slot| std::sync::Arc::strong_count(slot) > 1);
    }
    all.entry(connection_id.to_string()).or_default().clone()
}

/// Whether `text` is shaped like a record type id (key prefix `012`, 15 or 18 characters); a
/// `DeveloperName` never is, as it starts with a letter.
fn is_record_type_id(text: &str) -> bool {
    matches!(text.len(), 15 | 18)
        && text.starts_with("012")
        && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The active record types of `object`, from the cache unless `fresh`; says too whether they
/// were read now.
async fn record_types(
    call: &mut Call<'_>,
    object: &str,
    fresh: bool,
) -> Result<(RecordTypes, bool), CrmError> {
    let key = (call.connection.id.clone(), object.to_string());
    if !fresh {
        let cache = RECORD_TYPES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, types)) = cache.get(&key)
            && at.elapsed() < RECORD_TYPES_TTL
        {
            return Ok((types.clone(), false));
        }
    }
    if !is_name(object) {
        return Err(CrmError::new(
            ErrorKind::Invalid,
            "Salesforce object names may hold only letters, digits and _",
        ));
    }
    let soql = format!(
        "SELECT Id, Name, DeveloperName FROM RecordType WHERE SobjectType = {} AND IsActive = true",
        soql_quote(&Value::String(object.to_string()))
    );
    let text = |row: &Value, field: &str| {
        row.get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let types: RecordTypes = query(call, &soql)
        .await?
        .iter()
        .map(|row| {
            (
                text(row, "Id"),
                text(row, "Name"),
                text(row, "DeveloperName"),
            )
        })
        .filter(|(id, _, _)| !id.is_empty())
        .collect();
    RECORD_TYPES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (Instant::now(), types.clone()));
    Ok((types, true))
}

/// The record type `name` names: by `DeveloperName`, then `Name`; exact, then ignoring case.
fn find_record_type(types: &RecordTypes, name: &str) -> Option<String> {
    let found = types.iter().find(|(_, _, developer)| developer == name);
    found
        .or_else(|| types.iter().find(|(_, label, _)| label == name))
        .or_else(|| {
            types.iter().find(|(_, label, developer)| {
                developer.eq_ignore_ascii_case(name) || label.eq_ignore_ascii_case(name)
            })
        })
        .map(|(id, _, _)| id.clone())
}

/// The id of `object`'s active record type named `name`, or an invalid-data error listing
/// the names there are.
async fn record_type_id(call: &mut Call<'_>, object: &str, name: &str) -> Result<String, CrmError> {
    let (mut types, fetched) = record_types(call, object, false).await?;
    if let Some(id) = find_record_type(&types, name) {
        return Ok(id);
    }
    if !fetched {
        types = record_types(call, object, true).await?.0;
        if let Some(id) = find_record_type(&types, name) {
            return Ok(id);
        }
    }
    let known: Vec<String> = types
        .iter()
        .map(|(_, label, developer)| format!("{developer} ({label})"))
        .collect();
    Err(CrmError::new(
        ErrorKind::Invalid,
        if known.is_empty() {
            format!(
                "no record type named {name:?}: the Salesforce org has no active {object} record type"
            )
        } else {
            format!(
                "no active Salesforce {object} record type is named {name:?}; there are: {}",
                known.join(", ")
            )
        },
    ))
}

/// Replaces a record type given by name (`RecordTypeName`, or a `RecordTypeId` that is not an
/// id) with its `RecordTypeId`; gives new opportunities the connection's record type.
async fn resolve_record_type(
    call: &mut Call<'_>,
    kind: Write,
    op: &Operation,
    fields: &mut Map<String, Value>,
) -> Result<(), CrmError> {
    let object = op.object.as_str();
    let named = match fields.remove("RecordTypeName") {
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name.trim().to_string()),
        _ => fields
            .get("RecordTypeId")
            .and_then(Value::as_str)
            .filter(|given| !given.is_empty() && !is_record_type_id(given))
            .map(str::to_string),
    };
    let default = (object == "Opportunity"
        && kind != Write::Update
        && named.is_none()
        && !fields.contains_key("RecordTypeId"))
    .then(|| {
        call.setting("record_type")
            .or_else(|| call.setting("record_type_id"))
            .map(str::to_string)
    })
    .flatten();
    let id = match (named, default) {
        (Some(name), _) => record_type_id(call, object, &name).await?,
        (None, Some(given)) if is_record_type_id(&given) => given,
        (None, Some(name)) => record_type_id(call, object, &name).await?,
        (None, None) => return Ok(()),
    };
    fields.insert("RecordTypeId".into(), Value::String(id));
    Ok(())
}

/// What the adapter adds to a step's fields: the record type, a task's owner.
async fn completed_fields(
    call: &mut Call<'_>,
    kind: Write,
    op: &Operation,
) -> Result<Map<String, Value>, CrmError> {
    let mut fields = merged(op);
    resolve_record_type(call, kind, op, &mut fields).await?;
    if op.object == "Task" && kind == Write::Create && !fields.contains_key("OwnerId") {
        let about = ["WhatId", "WhoId"]
            .iter()
            .filter_map(|key| fields.get(*key).and_then(Value::as_str))
            .find_map(|id| object_of_id(id).map(|object| (object, id.to_string())));
        if let Some((object, id)) = about {
            let reply = send(
                call,
                Request::new(Method::GET, format!("/sobjects/{object}/{}", segment(&id)))
                    .query("fields", "OwnerId"),
            )
            .await?;
            if reply.is_success() {
                if let Some(owner) = reply
                    .json()
                    .and_then(|b| b.get("OwnerId").and_then(Value::as_str).map(str::to_string))
                {
                    fields.insert("OwnerId".into(), Value::String(owner));
                }
            } else if reply.status != 404 {
                return Err(classify(&reply));
            }
        }
    }
    Ok(fields)
}

impl Adapter for Salesforce {
    fn merges(&self, object: &str) -> bool {
        merge::MERGED.contains(&object)
    }

    fn merge<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
        winner: &'a str,
        loser: &'a str,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        let version = call
            .setting("api_version")
            .unwrap_or(DEFAULT_API_VERSION)
            .to_string();
        Box::pin(merge::merge(call, version, object, winner, loser))
    }

    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>> {
        Box::pin(async move {
            let token_url = format!("{}/services/oauth2/token", login_url(call));
            let reply = match &call.credentials {
                Credentials::RefreshToken { .. } => {
                    call.refresh_grant(&token_url, "Salesforce").await?
                }
                Credentials::JwtBearer {
                    client_id,
                    username,
                    private_key,
                } => {
                    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
                        .map_err(|_| {
                            CrmError::new(
                                ErrorKind::Auth,
                                "the private key is not an RSA key in PEM; upload the certificate's key again",
                            )
                        })?;
                    let claims = json!({
                        "iss": client_id,
                        "sub": username,
                        "aud": login_url(call),
                        "exp": (crate::now() + chrono::Duration::minutes(3)).timestamp(),
                    });
                    let assertion = jsonwebtoken::encode(
                        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                        &claims,
                        &key,
                    )
                    .map_err(|e| {
                        CrmError::new(
                            ErrorKind::Auth,
                            format!("signing the JWT assertion failed: {e}"),
                        )
                    })?;
                    call.post_form(
                        &token_url,
                        &[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)],
                    )
                    .await?
                }
                _ => {
                    return Err(CrmError::new(
                        ErrorKind::Auth,
                        "these Salesforce credentials cannot make a session",
                    ));
                }
            };
            let body = reply.json().unwrap_or(Value::Null);
            if !reply.is_success() {
                let code = body.get("error").and_then(Value::as_str).unwrap_or("error");
                let description = body
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                let kind = if matches!(reply.status, 400 | 401 | 403) {
                    ErrorKind::Auth
                } else {
                    kind_of_status(reply.status)
                };
                return Err(reply.error(
                    kind,
                    format!("Salesforce refused the session request: {code}: {description}"),
                ));
            }
            let access_token = token_field(&body, "access_token", "Salesforce")?;
            let instance_url = token_field(&body, "instance_url", "Salesforce")?;
            super::config::check_url("salesforce", &instance_url, call.connector.vendor_urls)
                .map_err(|e| {
                    CrmError::new(
                        ErrorKind::Permanent,
                        format!("instance_url {instance_url} {e}"),
                    )
                })?;
            Ok(Exchanged {
                session: Session {
                    access_token,
                    expires_at: None,
                    api_base: Some(instance_url),
                },
                rotated: rotated(&call.credentials, &body),
                // `id` is the identity URL, `…/id/<org id>/<user id>`.
                user_id: body
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|url| url.rsplit('/').next())
                    .filter(|id| id.starts_with("005"))
                    .map(str::to_string),
            })
        })
    }

    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError> {
        let instance = session.api_base.as_deref().ok_or_else(|| {
            CrmError::new(
                ErrorKind::Auth,
                "the Salesforce session names no instance_url",
            )
        })?;
        let version = call.setting("api_version").unwrap_or(DEFAULT_API_VERSION);
        Ok(format!("{instance}/services/data/v{version}"))
    }

    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>> {
        Box::pin(async move {
            let fields = completed_fields(call, kind, op).await?;
            match write(call, kind, op, linked, &fields).await? {
                Written::Done(outcome) => Ok(outcome),
                Written::Refused(reply) => {
                    let unknown = unknown_fields(&reply);
                    if unknown.is_empty() || op.fallback_fields.is_empty() {
                        return Err(classify(&reply));
                    }
                    let kept = fallback_fields(op, &fields);
                    match write(call, kind, op, linked, &kept).await? {
                        Written::Done(mut outcome) => {
                            outcome
                                .warnings
                                .push(fallback_warning("Salesforce", &unknown, &kept));
                            Ok(outcome)
                        }
                        Written::Refused(reply) => Err(classify(&reply)),
                    }
                }
            }
        })
    }

    fn find<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<Found, CrmError>> {
        Box::pin(soql::find(call, op))
    }

    fn fields<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FieldInfo>, CrmError>> {
        Box::pin(describe::fields(call, object))
    }

    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        Box::pin(async move {
            let reply = send(call, Request::new(Method::GET, "/limits")).await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            let body = reply.json().unwrap_or(Value::Null);
            let daily = body.get("DailyApiRequests");
            let remaining = daily
                .and_then(|d| d.get("Remaining"))
                .and_then(Value::as_i64);
            let max = daily.and_then(|d| d.get("Max")).and_then(Value::as_i64);
            Ok(match (remaining, max) {
                (Some(remaining), Some(max)) => format!(
                    "Salesforce org reachable; {remaining} of {max} daily API requests left"
                ),
                _ => "Salesforce org reachable".to_string(),
            })
        })
    }

    fn template_settings<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, CrmError>> {
        Box::pin(async move {
            let mut out = Map::new();
            if call.setting("won_stage").is_some() {
                return Ok(out);
            }
            let info: Map<String, Value> =
                serde_json::from_str(&call.connection.vendor_info).unwrap_or_default();
            let cached = info.get("won_stage").and_then(Value::as_str);
            let fresh = info
                .get("won_stage_at")
                .and_then(Value::as_str)
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                .is_some_and(|at| crate::now() - at.with_timezone(&chrono::Utc) < WON_STAGE_TTL);
            if let (Some(stage), true) = (cached, fresh) {
                out.insert("won_stage".into(), Value::String(stage.to_string()));
                return Ok(out);
            }
            // One ask a process: the events of a backlog that all start before the first
            // has kept its answer on the connection wait for it instead of asking again.
            let slot = won_stage_slot(&call.connection.id);
            let mut known = slot.lock().await;
            if let Some((stage, at)) = known.as_ref()
                && at.elapsed() < WON_STAGE_TTL.to_std().unwrap_or_default()
            {
                out.insert("won_stage".into(), Value::String(stage.clone()));
                return Ok(out);
            }
            let stages = query(
                call,
                "SELECT ApiName, MasterLabel FROM OpportunityStage WHERE IsActive = true AND IsClosed = true AND IsWon = true ORDER BY SortOrder ASC LIMIT 1",
            )
            .await?;
            let stage = stages
                .first()
                .and_then(|s| s.get("ApiName").or_else(|| s.get("MasterLabel")))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CrmError::new(
                        ErrorKind::Permanent,
                        "Salesforce has no active closed-won opportunity stage; set settings.won_stage",
                    )
                })?
                .to_string();
            call.info
                .insert("won_stage".into(), Value::String(stage.clone()));
            call.info.insert(
                "won_stage_at".into(),
                Value::String(crate::now().to_rfc3339()),
            );
            *known = Some((stage.clone(), Instant::now()));
            out.insert("won_stage".into(), Value::String(stage));
            Ok(out)
        })
    }
}
