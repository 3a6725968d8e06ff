//! Zoho CRM API (records, upsert, search; reading records back for change events).
//!
//! - Auth: an OAuth refresh token exchanged at the account's data centre
//!   (`{accounts_url}/oauth/v2/token`; `data_center` picks the accounts server); API calls go to
//!   the token response's `api_domain` under `/crm/{api_version}` with
//!   `Authorization: Zoho-oauthtoken …`. Zoho answers a refused refresh with HTTP 200 and an
//!   `error` field, which is read as such. A connection's `environment` (`sandbox`,
//!   `developer`) sends the calls to the same data centre's `sandbox.zohoapis.<tld>` or
//!   `developer.zohoapis.<tld>` instead of the production `api_domain`.
//! - `upsert` posts to `/{module}/upsert` with the match fields as `duplicate_check_fields`, so
//!   Zoho finds the record itself, and such writes waiting at the same time share one call of
//!   up to 100 records (`zoho/upsert.rs`); with `search_before_write` the adapter searches first and
//!   updates or inserts. `update` writes by record id, else by a search on `match`; `create`
//!   inserts, and a `DUPLICATE_DATA` answer updates the record Zoho names instead.
//! - Fields (`crm::fields`): `GET /settings/fields?module=`, those not read-only.
//! - `find` searches by every match value with its `select` as `fields`, at most 100 a page.
//! - Every record's own status is read (`SUCCESS`, `DUPLICATE_DATA`, `INVALID_DATA`,
//!   `MANDATORY_NOT_FOUND` …) with the field Zoho names. A refused field not covered by the
//!   step's `fallback_fields` makes one retry with `match` plus those fields.
//! - 401 `INVALID_TOKEN` refreshes once; 429 backs off for `Retry-After` (a minute if absent);
//!   a token refresh refused as `Access Denied` (too many tokens minted) waits a minute too,
//!   without asking for re-authorization.
//! - Change events (`inbound::zoho`) read records here: one by id, or the records modified
//!   since a time, oldest first, 200 a page, with at most 50 fields named (Zoho's limits;
//!   `fields` is mandatory when listing), the names from the module's field metadata.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Write;
use super::session::{
    Call, Exchanged, Reply, Request, Session, kind_of_status, rotated, token_field,
};
use super::{
    Adapter, BoxFuture, CrmError, CrmOutcome, ErrorKind, FieldInfo, Found, fallback_fields,
    fallback_warning, known_ids, merged,
};
use crate::flow::Operation;

mod fields;
mod reply;
mod search;
mod upsert;

use reply::{RecordResult, Written, done, record_result};
pub(crate) use reply::{classify, segment};
use search::search;

pub const DEFAULT_API_VERSION: &str = "v8";

pub struct Zoho;

fn accounts_url(call: &Call<'_>) -> String {
    super::providers::zoho::accounts_url(&call.settings)
}

/// The API domain calls go to: the token answer's `api_domain` for production, its data
/// centre's `sandbox.` or `developer.` twin for the other environments. Refused when the
/// token answer named no Zoho API domain a twin can be found for.
fn environment_domain(settings: &Map<String, Value>, api_domain: &str) -> Result<String, CrmError> {
    use super::providers::zoho;
    let environment = zoho::environment(settings);
    zoho::environment_domain(api_domain, environment).ok_or_else(|| {
        CrmError::new(
            ErrorKind::Permanent,
            format!("{api_domain} is not a Zoho API domain with a {environment} environment"),
        )
    })
}

async fn put(
    call: &mut Call<'_>,
    module: &str,
    id: &str,
    record: &Map<String, Value>,
) -> Result<Result<Written, Reply>, CrmError> {
    let reply = call
        .send(
            &Request::new(Method::PUT, format!("/{}/{}", segment(module), segment(id)))
                .json(json!({ "data": [record] })),
        )
        .await?;
    if reply.status == 404 || reply.status == 204 {
        return Ok(Err(reply));
    }
    Ok(Ok(match record_result(&reply) {
        RecordResult::Success { id, body } => done(id, body, None),
        // An id Zoho does not know is reported as invalid data on `id`.
        RecordResult::Refused { field: Some(f), .. } if f == "id" => return Ok(Err(reply)),
        RecordResult::Refused { field, error } => Written::Refused(field, error),
        RecordResult::Duplicate { error, .. } => Written::Refused(None, error),
    }))
}

async fn insert(
    call: &mut Call<'_>,
    module: &str,
    record: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let reply = call
        .send(
            &Request::new(Method::POST, format!("/{}", segment(module)))
                .json(json!({ "data": [record] })),
        )
        .await?;
    if reply.status == 401 || reply.status == 429 || reply.status >= 500 {
        return Err(classify(&reply));
    }
    match record_result(&reply) {
        RecordResult::Success { id, body } => Ok(done(id, body, None)),
        RecordResult::Duplicate {
            id: Some(existing), ..
        } => match put(call, module, &existing, record).await? {
            Ok(Written::Done(mut outcome)) => {
                outcome.warnings.push(format!(
                        "Zoho CRM already had this {module} record ({existing}); it was updated instead of created"
                    ));
                Ok(Written::Done(outcome))
            }
            Ok(refused) => Ok(refused),
            Err(reply) => Err(classify(&reply)),
        },
        RecordResult::Duplicate { id: None, error } => Err(error),
        RecordResult::Refused { field, error } => Ok(Written::Refused(field, error)),
    }
}

async fn write(
    call: &mut Call<'_>,
    kind: Write,
    op: &Operation,
    linked: Option<&str>,
    record: &Map<String, Value>,
) -> Result<Written, CrmError> {
    let module = op.object.as_str();
    for id in known_ids(kind, op, linked) {
        match put(call, module, id, record).await? {
            Ok(written) => return Ok(written),
            Err(reply) if matches!(reply.status, 200..=299 | 400 | 404) => continue,
            Err(reply) => return Err(classify(&reply)),
        }
    }
    let search_first = call
        .settings
        .get("search_before_write")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match kind {
        Write::Create => insert(call, module, record).await,
        Write::Upsert if !search_first => {
            upsert::by_check_fields(call, module, record, &op.match_fields).await
        }
        Write::Upsert | Write::Update => {
            let found = if op.match_fields.is_empty() {
                Vec::new()
            } else {
                search(call, module, &op.match_fields).await?
            };
            let match_text = Value::Object(op.match_fields.clone()).to_string();
            match found.as_slice() {
                [id] => match put(call, module, id, record).await? {
                    Ok(written) => Ok(written),
                    Err(reply) => Err(classify(&reply)),
                },
                [] if kind == Write::Upsert => insert(call, module, record).await,
                [] => Err(CrmError::new(
                    ErrorKind::NotFound,
                    format!(
                        "no Zoho CRM {module} record with id {:?} or matching {match_text}",
                        op.record_id.as_deref().unwrap_or("")
                    ),
                )),
                ids => Err(CrmError::new(
                    ErrorKind::Permanent,
                    format!(
                        "several Zoho CRM {module} records match {match_text}: {}",
                        ids.join(", ")
                    ),
                )),
            }
        }
    }
}

/// Most field API names one `GET /{module}` may ask for (`fields`).
pub const MAX_LIST_FIELDS: usize = 50;

/// Most records one page of `GET /{module}` holds (`per_page`).
pub const PER_PAGE: u32 = 200;

/// One record by id (`GET /{module}/{id}`), all its fields; `None` when Zoho no longer has it
/// (204, 404, or `INVALID_DATA` on the id).
pub async fn read_record(
    call: &mut Call<'_>,
    module: &str,
    id: &str,
) -> Result<Option<Map<String, Value>>, CrmError> {
    let path = format!("/{}/{}", segment(module), segment(id));
    let reply = call.send(&Request::new(Method::GET, path)).await?;
    if matches!(reply.status, 204 | 404) {
        return Ok(None);
    }
    if reply.status == 400 {
        let body = reply.json().unwrap_or(Value::Null);
        let entry = body.pointer("/data/0").unwrap_or(&body);
        if entry.get("code").and_then(Value::as_str) == Some("INVALID_DATA") {
            return Ok(None);
        }
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    Ok(reply
        .json()
        .and_then(|b| b.pointer("/data/0").and_then(Value::as_object).cloned()))
}

/// The API names of a module's fields (`GET /settings/fields?module=`), the modification
/// fields first, at most [`MAX_LIST_FIELDS`]: what a list of records can ask for.
pub async fn field_names(call: &mut Call<'_>, module: &str) -> Result<Vec<String>, CrmError> {
    let reply = call
        .send(&Request::new(Method::GET, "/settings/fields").query("module", module))
        .await?;
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    let mut names: Vec<String> = ["Created_Time", "Modified_Time", "Modified_By"]
        .map(str::to_string)
        .into();
    let listed = reply
        .json()
        .and_then(|b| b.get("fields").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    for name in listed
        .iter()
        .filter_map(|f| f.get("api_name").and_then(Value::as_str))
    {
        if names.len() >= MAX_LIST_FIELDS {
            break;
        }
        if name != "id" && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// One page of the records of `module` modified since `since` (ISO-8601 with offset), oldest
/// first: `GET /{module}?fields=…&sort_by=Modified_Time&sort_order=asc&page=…&per_page=200`
/// with `If-Modified-Since`. Says too whether more pages follow. Nothing modified: no records
/// (Zoho answers 304, or 204).
pub async fn modified_since(
    call: &mut Call<'_>,
    module: &str,
    fields: &[String],
    since: &str,
    page: u32,
) -> Result<(Vec<Map<String, Value>>, bool), CrmError> {
    let request = Request::new(Method::GET, format!("/{}", segment(module)))
        .query("fields", fields.join(","))
        .query("sort_by", "Modified_Time")
        .query("sort_order", "asc")
        .query("page", page.to_string())
        .query("per_page", PER_PAGE.to_string())
        .header("If-Modified-Since", since);
    let reply = call.send(&request).await?;
    if matches!(reply.status, 204 | 304) {
        return Ok((Vec::new(), false));
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    let body = reply.json().unwrap_or(Value::Null);
    let records = body
        .get("data")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_object).cloned().collect())
        .unwrap_or_default();
    let more = body
        .pointer("/info/more_records")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((records, more))
}

/// How long a notification channel is asked to live (Zoho keeps one a week at most).
pub const CHANNEL_LIFETIME: chrono::Duration = chrono::Duration::days(6);

/// A time as `channel_expiry` and `If-Modified-Since` take it: ISO-8601 to the second, with
/// an offset.
pub fn iso_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// A new channel id: digits (Zoho's docs call it a long), from the time and a little chance.
pub fn new_channel_id() -> String {
    let chance = uuid::Uuid::new_v4().as_u128() % 1000;
    format!("{}{chance:03}", Utc::now().timestamp_millis())
}

/// One channel of a `watch` request, with every detail.
pub fn channel_body(id: &str, events: &[String], notify_url: &str, token: &str) -> Value {
    json!({"watch": [{
        "channel_id": id,
        "events": events,
        "notify_url": notify_url,
        "token": token,
        "channel_expiry": iso_text(crate::now() + CHANNEL_LIFETIME),
        "return_affected_field_values": true,
        "notify_on_related_action": false,
    }]})
}

/// What Zoho said to a `watch` request.
pub enum Watched {
    /// Accepted; the channel expires then.
    Until(DateTime<Utc>),
    /// The channel is gone.
    NotSubscribed,
}

/// Sends one `watch` request (`/actions/watch`) and reads its answer: the earliest
/// `channel_expiry` of its events (an hour from now when Zoho names none), `NOT_SUBSCRIBED`,
/// or an error naming Zoho's code, message and field.
pub async fn send_watch(
    call: &mut Call<'_>,
    method: Method,
    body: Value,
) -> Result<Watched, CrmError> {
    let reply = call
        .send(&Request::new(method, "/actions/watch").json(body))
        .await?;
    let answer = reply.json().unwrap_or(Value::Null);
    let entries: Vec<Value> = answer
        .get("watch")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let code = |v: &Value| v.get("code").and_then(Value::as_str).map(str::to_string);
    if code(&answer)
        .into_iter()
        .chain(entries.iter().filter_map(code))
        .any(|c| c == "NOT_SUBSCRIBED")
    {
        return Ok(Watched::NotSubscribed);
    }
    if entries.is_empty() {
        return Err(classify(&reply));
    }
    if let Some(refused) = entries
        .iter()
        .find(|e| e.get("status").and_then(Value::as_str) != Some("success"))
    {
        let text = |p: &str| refused.pointer(p).and_then(Value::as_str).unwrap_or("");
        let field = match text("/details/api_name") {
            "" => String::new(),
            name => format!(" (field {name})"),
        };
        let kind = match reply.status {
            401 | 429 | 500.. => classify(&reply).kind,
            _ => ErrorKind::Invalid,
        };
        return Err(reply.error(
            kind,
            format!(
                "Zoho CRM {} refused the notification channel: {}: {}{field}",
                reply.status,
                text("/code"),
                text("/message")
            ),
        ));
    }
    let expiry = entries
        .iter()
        .filter_map(|e| e.pointer("/details/events").and_then(Value::as_array))
        .flatten()
        .filter_map(|e| e.get("channel_expiry").and_then(Value::as_str))
        .filter_map(crate::inbound::parse_stamp)
        .min();
    Ok(Watched::Until(expiry.unwrap_or_else(|| {
        crate::now() + chrono::Duration::hours(1)
    })))
}

/// Field values from one item of `affected_fields` into `into`: `{"api_name", "value"}`
/// pairs, or objects of field → value. Field names alone carry no value.
fn field_values(item: &Value, into: &mut Map<String, Value>) {
    match item {
        Value::Object(map) => {
            let name = map
                .get("api_name")
                .or_else(|| map.get("field"))
                .and_then(Value::as_str);
            match (name, map.get("value")) {
                (Some(name), Some(value)) => {
                    into.insert(name.to_string(), value.clone());
                }
                _ => into.extend(
                    map.iter()
                        .filter(|(k, _)| *k != "id")
                        .map(|(k, v)| (k.clone(), v.clone())),
                ),
            }
        }
        Value::Array(items) => items.iter().for_each(|i| field_values(i, into)),
        _ => {}
    }
}

/// The changed field values `affected_fields` carries for each of `ids` (its exact shape is
/// not documented): an array of names (no values), of `{"<id>": {…}}` per record, or of field
/// values for all the callback's records.
pub fn affected_values(
    affected: Option<&Value>,
    ids: &[String],
) -> HashMap<String, Map<String, Value>> {
    let mut each: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut all = Map::new();
    let items = match affected {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(object @ Value::Object(_)) => vec![object],
        _ => Vec::new(),
    };
    for item in items {
        let Value::Object(map) = item else { continue };
        if map.keys().any(|k| ids.contains(k)) {
            for (id, fields) in map.iter().filter(|(k, _)| ids.contains(k)) {
                field_values(fields, each.entry(id.clone()).or_default());
            }
        } else {
            field_values(item, &mut all);
        }
    }
    ids.iter()
        .map(|id| {
            let mut fields = all.clone();
            fields.extend(each.remove(id).unwrap_or_default());
            (id.clone(), fields)
        })
        .collect()
}

impl Adapter for Zoho {
    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>> {
        Box::pin(async move {
            let url = format!("{}/oauth/v2/token", accounts_url(call));
            let reply = call.refresh_grant(&url, "Zoho").await?;
            let body = reply.json().unwrap_or(Value::Null);
            // Zoho refuses with HTTP 200 and an `error` field.
            if let Some(code) = body.get("error").and_then(Value::as_str) {
                // Too many tokens minted from this refresh token: the grant is still good.
                if code == "Access Denied" {
                    let detail = body
                        .get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or("too many token requests");
                    let mut error = reply.error(
                        ErrorKind::RateLimited,
                        format!("Zoho refused the token refresh for now: {detail}"),
                    );
                    error.retry_after = Some(Duration::from_secs(60));
                    return Err(error);
                }
                let kind = if reply.status >= 500 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Auth
                };
                return Err(reply.error(kind, format!("Zoho refused the token refresh: {code}")));
            }
            if !reply.is_success() {
                return Err(reply.error(
                    kind_of_status(reply.status),
                    format!("Zoho's accounts server answered {}", reply.status),
                ));
            }
            let access_token = token_field(&body, "access_token", "Zoho")?;
            let api_domain = token_field(&body, "api_domain", "Zoho")?;
            super::config::check_url("zoho", &api_domain, call.connector.vendor_urls).map_err(
                |e| CrmError::new(ErrorKind::Permanent, format!("api_domain {api_domain} {e}")),
            )?;
            let expires_in = body
                .get("expires_in")
                .and_then(Value::as_i64)
                .unwrap_or(3600);
            Ok(Exchanged {
                session: Session {
                    access_token,
                    expires_at: Some(crate::vendor_time::token_expiry(
                        crate::now(),
                        expires_in,
                        "Zoho",
                    )),
                    api_base: Some(api_domain),
                },
                rotated: rotated(&call.credentials, &body),
                user_id: None,
            })
        })
    }

    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError> {
        let domain = session.api_base.as_deref().ok_or_else(|| {
            CrmError::new(ErrorKind::Auth, "the Zoho session names no api_domain")
        })?;
        let domain = environment_domain(&call.settings, domain)?;
        let version = call.setting("api_version").unwrap_or(DEFAULT_API_VERSION);
        Ok(format!("{domain}/crm/{version}"))
    }

    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>> {
        Box::pin(async move {
            let record = merged(op);
            match write(call, kind, op, linked, &record).await? {
                Written::Done(outcome) => Ok(outcome),
                Written::Refused(field, error) => {
                    let kept = fallback_fields(op, &record);
                    let retry = match &field {
                        Some(f) => !op.fallback_fields.is_empty() && !kept.contains_key(f),
                        None => false,
                    };
                    if !retry {
                        return Err(error);
                    }
                    match write(call, kind, op, linked, &kept).await? {
                        Written::Done(mut outcome) => {
                            let refused = vec![field.unwrap_or_default()];
                            outcome
                                .warnings
                                .push(fallback_warning("Zoho CRM", &refused, &kept));
                            Ok(outcome)
                        }
                        Written::Refused(_, error) => Err(error),
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
        Box::pin(search::find(call, op))
    }

    fn fields<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FieldInfo>, CrmError>> {
        Box::pin(fields::fields(call, object))
    }

    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        Box::pin(async move {
            let reply = call
                .send(&Request::new(Method::GET, "/users").query("type", "CurrentUser"))
                .await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            let email = reply.json().and_then(|b| {
                b.pointer("/users/0/email")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            Ok(match email {
                Some(email) => format!("Zoho CRM reachable as {email}"),
                None => "Zoho CRM reachable".to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_sandbox_connection_calls_its_data_centres_sandbox_host() {
        let eu = "https://www.zohoapis.eu";
        let production = settings(json!({"data_center": "eu"}));
        assert_eq!(environment_domain(&production, eu).unwrap(), eu);
        let sandbox = settings(json!({"data_center": "eu", "environment": "sandbox"}));
        assert_eq!(
            environment_domain(&sandbox, eu).unwrap(),
            "https://sandbox.zohoapis.eu"
        );
        let developer = settings(json!({"environment": "developer"}));
        assert_eq!(
            environment_domain(&developer, "https://www.zohoapis.com.cn").unwrap(),
            "https://developer.zohoapis.com.cn"
        );
        // A token answer naming no Zoho API domain has no sandbox twin: refused, not guessed.
        let error = environment_domain(&sandbox, "https://api.example.com").unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert!(error.message.contains("sandbox"), "{}", error.message);
    }

    #[test]
    fn a_channel_asks_for_six_days_of_every_event_with_values() {
        let events = vec!["Deals.all".to_string(), "Contacts.all".to_string()];
        let body = channel_body("1735689601234001", &events, "https://h/x?y=1", "tok");
        let channel = &body["watch"][0];
        assert_eq!(channel["events"], json!(["Deals.all", "Contacts.all"]));
        assert_eq!(channel["token"], "tok");
        assert_eq!(channel["return_affected_field_values"], true);
        assert_eq!(channel["notify_on_related_action"], false);
        let expiry =
            chrono::DateTime::parse_from_rfc3339(channel["channel_expiry"].as_str().unwrap())
                .unwrap();
        let days = (expiry.with_timezone(&Utc) - Utc::now()).num_hours();
        assert!((143..=144).contains(&days), "{days}");
        let id = new_channel_id();
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
        assert!(
            id.parse::<i64>().is_ok(),
            "a long, as Zoho's docs say: {id}"
        );
    }
}
