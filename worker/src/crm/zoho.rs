//! Zoho CRM API (records, upsert, search).
//!
//! - Auth: an OAuth refresh token exchanged at the account's data centre
//!   (`{accounts_url}/oauth/v2/token`; `data_center` picks the accounts server); API calls go to
//!   the token response's `api_domain` under `/crm/{api_version}` with
//!   `Authorization: Zoho-oauthtoken …`. Zoho answers a refused refresh with HTTP 200 and an
//!   `error` field, which is read as such.
//! - `upsert` posts to `/{module}/upsert` with the match fields as `duplicate_check_fields`, so
//!   Zoho finds the record itself; with `search_before_write` the adapter searches first and
//!   updates or inserts. `update` writes by record id, else by a search on `match`; `create`
//!   inserts, and a `DUPLICATE_DATA` answer updates the record Zoho names instead.
//! - Every record's own status is read (`SUCCESS`, `DUPLICATE_DATA`, `INVALID_DATA`,
//!   `MANDATORY_NOT_FOUND` …) with the field Zoho names. A refused field not covered by the
//!   step's `fallback_fields` makes one retry with `match` plus those fields.
//! - 401 `INVALID_TOKEN` refreshes once; 429 backs off for `Retry-After` (a minute if absent);
//!   a token refresh refused as `Access Denied` (too many tokens minted) waits a minute too,
//!   without asking for re-authorization.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Write;
use super::session::{
    Call, Exchanged, Reply, Request, Session, kind_of_status, rotated, token_field,
};
use super::{
    Adapter, BoxFuture, CrmError, CrmOutcome, ErrorKind, fallback_fields, fallback_warning,
    known_ids, merged,
};
use crate::flow::Operation;

pub const DEFAULT_API_VERSION: &str = "v8";

pub struct Zoho;

fn accounts_url(call: &Call<'_>) -> String {
    super::providers::zoho::accounts_url(&call.settings)
}

/// A whole-request error (`{"code","details","message","status"}`).
fn classify(reply: &Reply) -> CrmError {
    let body = reply.json().unwrap_or(Value::Null);
    let entry = body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .unwrap_or(&body);
    let code = entry.get("code").and_then(Value::as_str).unwrap_or("");
    let message = entry.get("message").and_then(Value::as_str).unwrap_or("");
    let mut kind = kind_of_status(reply.status);
    match code {
        "INVALID_TOKEN" | "AUTHENTICATION_FAILURE" => kind = ErrorKind::Auth,
        "TOO_MANY_REQUESTS" | "API_LIMIT_EXCEEDED" => kind = ErrorKind::RateLimited,
        "INVALID_MODULE" | "NO_PERMISSION" | "OAUTH_SCOPE_MISMATCH" => kind = ErrorKind::Permanent,
        _ => {}
    }
    if reply.status == 403 && kind != ErrorKind::RateLimited {
        kind = ErrorKind::Permanent;
    }
    let field = entry
        .pointer("/details/api_name")
        .and_then(Value::as_str)
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    let text = if code.is_empty() && message.is_empty() {
        format!("Zoho CRM answered {}", reply.status)
    } else {
        format!("Zoho CRM {} {code}: {message}{field}", reply.status)
    };
    let mut error = reply.error(kind, text);
    if kind == ErrorKind::RateLimited {
        error.retry_after = reply.retry_after().or(Some(Duration::from_secs(60)));
    }
    error
}

/// The outcome of one record in a `data` answer.
enum RecordResult {
    Success {
        id: String,
        body: Value,
    },
    Duplicate {
        id: Option<String>,
        error: CrmError,
    },
    Refused {
        field: Option<String>,
        error: CrmError,
    },
}

fn record_result(reply: &Reply) -> RecordResult {
    let body = reply.json().unwrap_or(Value::Null);
    let Some(entry) = body
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .cloned()
    else {
        return RecordResult::Refused {
            field: None,
            error: classify(reply),
        };
    };
    let code = entry.get("code").and_then(Value::as_str).unwrap_or("");
    if code == "SUCCESS"
        && let Some(id) = entry.pointer("/details/id").and_then(Value::as_str)
    {
        return RecordResult::Success {
            id: id.to_string(),
            body: entry.clone(),
        };
    }
    let field = entry
        .pointer("/details/api_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = entry.get("message").and_then(Value::as_str).unwrap_or("");
    let kind = match code {
        "INVALID_TOKEN" => ErrorKind::Auth,
        "SUCCESS" => ErrorKind::Transient,
        _ if reply.status >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Invalid,
    };
    let shown = format!(
        "Zoho CRM refused the record: {code}: {message}{}",
        field
            .as_deref()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default()
    );
    let error = reply.error(kind, shown);
    if code == "DUPLICATE_DATA" {
        let id = entry
            .pointer("/details/duplicate_record/id")
            .or_else(|| entry.pointer("/details/id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        return RecordResult::Duplicate { id, error };
    }
    RecordResult::Refused { field, error }
}

fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A search criterion value, with Zoho's reserved characters escaped.
fn criterion(value: &Value) -> String {
    super::as_text(value)
        .replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
        .replace(',', "\\,")
}

async fn search(
    call: &mut Call<'_>,
    module: &str,
    match_fields: &Map<String, Value>,
) -> Result<Vec<String>, CrmError> {
    let conditions: Vec<String> = match_fields
        .iter()
        .map(|(field, value)| format!("({field}:equals:{})", criterion(value)))
        .collect();
    let reply = call
        .send(
            &Request::new(Method::GET, format!("/{}/search", segment(module)))
                .query("criteria", format!("({})", conditions.join("and"))),
        )
        .await?;
    if reply.status == 204 {
        return Ok(Vec::new());
    }
    if !reply.is_success() {
        return Err(classify(&reply));
    }
    Ok(reply
        .json()
        .and_then(|b| b.get("data").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

enum Written {
    Done(CrmOutcome),
    /// A field was refused; the write can be retried without it.
    Refused(Option<String>, CrmError),
}

fn done(id: String, body: Value, warning: Option<String>) -> Written {
    Written::Done(CrmOutcome {
        record_id: id,
        warnings: warning.into_iter().collect(),
        response: Some(body),
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
            let reply = call
                .send(
                    &Request::new(Method::POST, format!("/{}/upsert", segment(module))).json(
                        json!({
                            "data": [record],
                            "duplicate_check_fields": op.match_fields.keys().collect::<Vec<_>>(),
                        }),
                    ),
                )
                .await?;
            if reply.status == 401 || reply.status == 429 || reply.status >= 500 {
                return Err(classify(&reply));
            }
            match record_result(&reply) {
                RecordResult::Success { id, body } => Ok(done(id, body, None)),
                RecordResult::Duplicate { error, .. } => Err(error),
                RecordResult::Refused { field, error } => Ok(Written::Refused(field, error)),
            }
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
            })
        })
    }

    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError> {
        let domain = session.api_base.as_deref().ok_or_else(|| {
            CrmError::new(ErrorKind::Auth, "the Zoho session names no api_domain")
        })?;
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
