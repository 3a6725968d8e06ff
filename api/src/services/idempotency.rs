//! Idempotency keys: a POST sent with `Idempotency-Key` first claims the key (one row, under a
//! unique index, so of two concurrent requests exactly one runs); its final answer is then kept
//! for a day and given again to the same caller for the same request, or the key is released
//! when the answer says nothing lasting happened. The HTTP side is
//! [`crate::middleware::idempotency`]; this module owns the rows.

use chrono::{DateTime, Duration, Utc};
use entity::idempotency_keys;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use sha2::{Digest, Sha256};
use tributary_worker::sealed;

use super::{new_id, now};
use crate::error::{ApiError, is_unique_violation};
use crate::extract::TenantContext;
use crate::state::AppState;
use tributary_worker::secrets::SecretContext;

/// How long a key and its answer are kept.
pub const TTL_HOURS: i64 = 24;
/// The longest key accepted.
pub const MAX_KEY_CHARS: usize = 255;
/// The largest answer kept for replay; a larger one is remembered by its status only.
pub const MAX_STORED_BODY: usize = 64 * 1024;
/// Keys one tenant may hold at once (each lives a day).
pub const MAX_LIVE_KEYS: u64 = 10_000;
/// A first request still unanswered after this long died with its process: its outcome is
/// unknown, and it is never run a second time.
pub const IN_FLIGHT_LIMIT_SECONDS: i64 = 300;

/// What identifies a request, for telling a retry from a different request under one key.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    /// `POST /v1/…`, for messages.
    pub request: String,
    pub request_hash: String,
    pub body_hash: String,
}

impl Fingerprint {
    pub fn of(method: &str, path: &str, query: &str, content_type: &str, body: &[u8]) -> Self {
        let request_hash = hex::encode(
            Sha256::new()
                .chain_update(method.as_bytes())
                .chain_update(b"\n")
                .chain_update(path.as_bytes())
                .chain_update(b"\n")
                .chain_update(query.as_bytes())
                .finalize(),
        );
        let body_hash = hex::encode(
            Sha256::new()
                .chain_update(content_type.trim().to_ascii_lowercase().as_bytes())
                .chain_update(b"\n")
                .chain_update(body)
                .finalize(),
        );
        let mut request = format!("{method} {path}");
        if request.len() > 300 {
            let mut end = 300;
            while !request.is_char_boundary(end) {
                end -= 1;
            }
            request.truncate(end);
            request.push('…');
        }
        Fingerprint {
            request,
            request_hash,
            body_hash,
        }
    }
}

/// The first answer to a request, as kept.
#[derive(Debug)]
pub struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None` when it was too large to keep.
    pub body: Option<Vec<u8>>,
}

/// What a request with a key does next.
#[derive(Debug)]
pub enum Claim {
    /// The key is this request's: run it, then [`finish`] or [`release`] the row.
    Run(String),
    /// The key already answered this request: give that answer again.
    Replay(StoredAnswer),
}

fn caller(ctx: &TenantContext) -> String {
    format!("{}:{}", ctx.actor.kind(), ctx.actor.id())
}

fn header_name() -> Option<String> {
    Some("Idempotency-Key".into())
}

/// Claims `key` for this request, or says why not: the key answered this request before
/// (a replay), belongs to another request (409), or its first request is still running (409
/// with `Retry-After`).
pub async fn claim(
    state: &AppState,
    ctx: &TenantContext,
    key: &str,
    fingerprint: &Fingerprint,
) -> Result<Claim, ApiError> {
    let caller = caller(ctx);
    // A key expired a moment ago may still be there; it is removed and claimed afresh. Two
    // rounds are enough: the second insert races only with another claim of the same key.
    for _ in 0..3 {
        let now = now();
        let existing = idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::TenantId.eq(ctx.tenant_id.as_str()))
            .filter(idempotency_keys::Column::Caller.eq(caller.as_str()))
            .filter(idempotency_keys::Column::Key.eq(key))
            .one(&state.db)
            .await?;
        match existing {
            Some(row) if row.expires_at <= now => {
                idempotency_keys::Entity::delete_many()
                    .filter(idempotency_keys::Column::Id.eq(row.id.as_str()))
                    .filter(idempotency_keys::Column::ExpiresAt.lte(now))
                    .exec(&state.db)
                    .await?;
                continue;
            }
            Some(row) => return settled(state, row, fingerprint, now),
            None => {}
        }
        check_live_keys(state, &ctx.tenant_id, now).await?;
        let id = new_id();
        let row = idempotency_keys::Model {
            id: id.clone(),
            tenant_id: ctx.tenant_id.clone(),
            caller: caller.clone(),
            key: key.to_string(),
            request: fingerprint.request.clone(),
            request_hash: fingerprint.request_hash.clone(),
            body_hash: fingerprint.body_hash.clone(),
            status: None,
            headers: None,
            response: None,
            created_at: now,
            expires_at: now + Duration::hours(TTL_HOURS),
        };
        match idempotency_keys::Entity::insert(idempotency_keys::ActiveModel::from(row))
            .exec(&state.db)
            .await
        {
            Ok(_) => return Ok(Claim::Run(id)),
            // Another request took the key first: read what it is doing.
            Err(err) if is_unique_violation(&err) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Busy {
        detail: "this Idempotency-Key is being claimed by another request; retry shortly".into(),
        retry_after: 1,
    })
}

/// The answer for a key some request already holds.
fn settled(
    state: &AppState,
    row: idempotency_keys::Model,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Result<Claim, ApiError> {
    if row.request_hash != fingerprint.request_hash {
        return Err(ApiError::Conflict {
            detail: format!(
                "this Idempotency-Key was already used for another request ({}); use a new \
                 key for each request",
                row.request
            ),
            field: header_name(),
        });
    }
    if row.body_hash != fingerprint.body_hash {
        return Err(ApiError::Conflict {
            detail: "this Idempotency-Key was already used with a different body; use a new \
                     key for each request"
                .into(),
            field: header_name(),
        });
    }
    let Some(status) = row.status else {
        if now - row.created_at > Duration::seconds(IN_FLIGHT_LIMIT_SECONDS) {
            return Err(ApiError::Conflict {
                detail: "the first request with this Idempotency-Key never finished (the \
                         server stopped while running it), so whether it took effect is \
                         unknown; it is not run again: look the result up, then use a new key"
                    .into(),
                field: header_name(),
            });
        }
        return Err(ApiError::Busy {
            detail: "the first request with this Idempotency-Key is still running; retry \
                     after it finishes to get its answer"
                .into(),
            retry_after: 1,
        });
    };
    let headers: Vec<(String, String)> = row
        .headers
        .as_deref()
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let body = match row.response.as_deref() {
        None => None,
        Some(sealed) => {
            let context = SecretContext {
                tenant_id: &row.tenant_id,
                purpose: sealed::IDEMPOTENT_RESPONSE,
                row_id: &row.id,
            };
            match state.keyring.open(sealed, &context) {
                Ok(text) => Some(
                    secrecy::ExposeSecret::expose_secret(&text)
                        .as_bytes()
                        .to_vec(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "a kept idempotent answer cannot be opened");
                    None
                }
            }
        }
    };
    Ok(Claim::Replay(StoredAnswer {
        status: status as u16,
        headers,
        body,
    }))
}

async fn check_live_keys(
    state: &AppState,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let live = idempotency_keys::Entity::find()
        .filter(idempotency_keys::Column::TenantId.eq(tenant_id))
        .filter(idempotency_keys::Column::ExpiresAt.gt(now))
        .count(&state.db)
        .await?;
    if live < MAX_LIVE_KEYS {
        return Ok(());
    }
    let oldest: Option<DateTime<Utc>> = idempotency_keys::Entity::find()
        .select_only()
        .column(idempotency_keys::Column::ExpiresAt)
        .filter(idempotency_keys::Column::TenantId.eq(tenant_id))
        .filter(idempotency_keys::Column::ExpiresAt.gt(now))
        .order_by_asc(idempotency_keys::Column::ExpiresAt)
        .into_tuple()
        .one(&state.db)
        .await?;
    let seconds = oldest.map_or(60, |t| (t - now).num_seconds().max(1) as u64);
    tracing::warn!(tenant_id, "idempotency keys at their limit");
    Err(ApiError::TooManyRequests(seconds))
}

/// Keeps the first answer of the request that claimed row `id`. A body over
/// [`MAX_STORED_BODY`] (or not text) is not kept: the status alone is.
pub async fn finish(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), ApiError> {
    let response = std::str::from_utf8(body)
        .ok()
        .filter(|_| body.len() <= MAX_STORED_BODY)
        .map(|text| {
            state.keyring.seal(
                text,
                &SecretContext {
                    tenant_id,
                    purpose: sealed::IDEMPOTENT_RESPONSE,
                    row_id: id,
                },
            )
        });
    let headers = serde_json::to_string(headers).map_err(anyhow::Error::from)?;
    idempotency_keys::Entity::update_many()
        .set(idempotency_keys::ActiveModel {
            status: sea_orm::Set(Some(i32::from(status))),
            headers: sea_orm::Set(Some(headers)),
            response: sea_orm::Set(response),
            ..Default::default()
        })
        .filter(idempotency_keys::Column::Id.eq(id))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// Gives the key back: the request's answer changed nothing lasting (a server error, a
/// refusal that may clear), so the same request may be sent again with it.
pub async fn release(state: &AppState, id: &str) -> Result<(), ApiError> {
    idempotency_keys::Entity::delete_many()
        .filter(idempotency_keys::Column::Id.eq(id))
        .filter(idempotency_keys::Column::Status.is_null())
        .exec(&state.db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_and_bodies_apart() {
        let a = Fingerprint::of("POST", "/v1/flows", "", "application/json", b"{}");
        let same = Fingerprint::of("POST", "/v1/flows", "", "Application/JSON ", b"{}");
        let body = Fingerprint::of("POST", "/v1/flows", "", "application/json", b"{ }");
        let query = Fingerprint::of("POST", "/v1/flows", "wait=1", "application/json", b"{}");
        assert_eq!(a.request_hash, same.request_hash);
        assert_eq!(a.body_hash, same.body_hash);
        assert_ne!(a.body_hash, body.body_hash);
        assert_eq!(a.request_hash, body.request_hash);
        assert_ne!(a.request_hash, query.request_hash);
        let long = Fingerprint::of("POST", &"/é".repeat(400), "", "", b"");
        assert!(long.request.len() <= 304, "{}", long.request.len());
    }
}
