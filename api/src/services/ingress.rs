//! Stripe webhook ingress: verify the signature against the account's active signing secrets,
//! refuse an event of the other mode than the account's, keep the event byte-for-byte, answer
//! only after the row is committed, then queue it.

use std::time::Instant;

use serde::Serialize;
use tributary_worker::inbox::{self, StoreError, Stored};
use tributary_worker::metrics;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;
use tributary_worker::sealed;
use tributary_worker::secrets::{SecretContext, expose};
use tributary_worker::stripe::{envelope, mode_name, signature};

/// Stripe events are far below this; anything larger is not one.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct IngressOut {
    pub received: bool,
    /// Tributary's id of the stored event (`GET /v1/events/{id}`).
    pub event_id: String,
    pub stripe_event_id: String,
    /// The event was already received before; it is not processed again.
    pub duplicate: bool,
}

/// Why a webhook was not taken. Each kind has its own answer and its own metric label, so
/// what is counted never depends on the wording of a message.
#[derive(Debug)]
pub enum IngressError {
    /// No Stripe account has this webhook URL.
    UnknownToken,
    /// The `Stripe-Signature` header is missing, malformed, stale, or matches no secret.
    Signature(String),
    /// Signed, but not an event Tributary can keep.
    Malformed(String),
    /// Signed, but of the other mode than the account's (`livemode`).
    Mode { event: bool, account: bool },
    /// Over the account's `TRIBUTARY_WEBHOOK_RATE`; retry after this many seconds.
    RateLimited(u64),
    /// More webhooks wait to be stored than `TRIBUTARY_INGEST_MAX_PENDING`.
    InboxFull { limit: usize },
    /// The tenant has more due events than `TRIBUTARY_INGEST_MAX_BACKLOG`.
    Backlogged { backlog: u64, limit: u64 },
    /// Storing failed (the database); the webhook was not acknowledged.
    Failed(ApiError),
}

impl IngressError {
    /// `(outcome, reason)` labels of `tributary_webhooks_total`.
    fn labels(&self) -> (&'static str, &'static str) {
        match self {
            IngressError::UnknownToken => ("rejected", "unknown_token"),
            IngressError::Signature(_) => ("rejected", "signature"),
            IngressError::Malformed(_) => ("rejected", "malformed"),
            IngressError::Mode { .. } => ("rejected", "livemode"),
            IngressError::RateLimited(_) => ("rejected", "rate_limited"),
            IngressError::InboxFull { .. } => ("shed", "inbox_full"),
            IngressError::Backlogged { .. } => ("shed", "backlog"),
            IngressError::Failed(_) => ("rejected", "error"),
        }
    }
}

impl From<IngressError> for ApiError {
    fn from(error: IngressError) -> Self {
        match error {
            IngressError::UnknownToken => ApiError::NotFound,
            IngressError::Signature(message) | IngressError::Malformed(message) => {
                ApiError::BadRequest(message)
            }
            IngressError::Mode { event, account } => ApiError::BadRequestField {
                field: "livemode".into(),
                detail: format!(
                    "the event is a {}-mode event (livemode {event}) but this Stripe account is in {} mode (livemode {account}); nothing was stored. Send each mode's events to its own account's webhook URL",
                    mode_name(event),
                    mode_name(account),
                ),
            },
            IngressError::RateLimited(seconds) => ApiError::TooManyRequests(seconds),
            IngressError::InboxFull { limit } => ApiError::Unavailable(format!(
                "more than {limit} webhooks are waiting to be stored; nothing was stored, try again shortly"
            )),
            IngressError::Backlogged { backlog, limit } => ApiError::Unavailable(format!(
                "this account's tenant has {backlog} live events waiting to be processed, more than the {limit} the inbox takes ahead (TRIBUTARY_INGEST_MAX_BACKLOG); nothing was stored, try again shortly"
            )),
            IngressError::Failed(error) => error,
        }
    }
}

impl From<ApiError> for IngressError {
    fn from(error: ApiError) -> Self {
        IngressError::Failed(error)
    }
}

/// Receives one webhook, counting it by outcome and timing it (the metrics).
pub async fn receive(
    state: &AppState,
    token: &str,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<IngressOut, ApiError> {
    let started = Instant::now();
    match receive_counted(state, token, signature_header, body).await {
        Ok(out) => {
            metrics::webhook(
                if out.duplicate {
                    "duplicate"
                } else {
                    "accepted"
                },
                "",
            );
            metrics::ingest(started.elapsed().as_secs_f64());
            Ok(out)
        }
        Err(error) => {
            let (outcome, reason) = error.labels();
            metrics::webhook(outcome, reason);
            Err(error.into())
        }
    }
}

async fn receive_counted(
    state: &AppState,
    token: &str,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<IngressOut, IngressError> {
    let cached = state
        .webhook_accounts
        .get(&state.db, token)
        .await?
        .ok_or(IngressError::UnknownToken)?;
    let account = &cached.account;
    let mut secrets = Vec::with_capacity(cached.secrets.len());
    for row in &cached.secrets {
        let context = SecretContext {
            tenant_id: &account.tenant_id,
            purpose: sealed::WEBHOOK_SECRET,
            row_id: &row.id,
        };
        match state.keyring.open(&row.secret, &context) {
            Ok(secret) => secrets.push(secret),
            Err(e) => {
                tracing::error!(secret_id = %row.id, error = %e, "a webhook signing secret cannot be decrypted")
            }
        }
    }
    let plain: Vec<&str> = secrets.iter().map(expose).collect();
    let tolerance = std::time::Duration::from_secs(account.tolerance_seconds.max(0) as u64);
    signature::verify(
        signature_header,
        body,
        &plain,
        tolerance,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| IngressError::Signature(e.to_string()))?;
    let envelope = envelope::parse(body).map_err(|e| IngressError::Malformed(e.to_string()))?;
    if envelope.api_version.as_ref().is_some_and(|v| v.len() > 64)
        || envelope.object_id.as_ref().is_some_and(|id| id.len() > 255)
    {
        return Err(IngressError::Malformed(
            "the event's api_version or data.object.id is longer than Stripe ever sends".into(),
        ));
    }
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| IngressError::Malformed("the body is not UTF-8".into()))?;
    // Test and live never mix. The mode is on the (cached) row; only an account from before
    // modes were kept opens its key for it. Unknown (a signing secret alone, never told): taken.
    if let Some(mode) = super::stripe_accounts::livemode_of(&state.keyring, account)
        && mode != envelope.livemode
    {
        tracing::warn!(stripe_account_id = %account.id, stripe_event_id = %envelope.id, event_livemode = envelope.livemode, "webhook of the other mode than its account refused");
        return Err(IngressError::Mode {
            event: envelope.livemode,
            account: mode,
        });
    }
    // Only verified events count, so a stranger who knows the URL cannot use up the account's
    // rate. Over it, nothing is stored: Stripe retries a 429 later.
    if let Err(seconds) = state.webhook_rate.take(&account.id) {
        tracing::warn!(stripe_account_id = %account.id, retry_after = seconds, "webhook rate exceeded (TRIBUTARY_WEBHOOK_RATE)");
        return Err(IngressError::RateLimited(seconds));
    }

    let row = inbox::new_row(account, &envelope, payload);
    let stored = match state.inbox.store(row).await {
        Ok(stored) => stored,
        Err(StoreError::Busy) => {
            tracing::warn!(stripe_account_id = %account.id, "inbox full: webhook shed with 503 (TRIBUTARY_INGEST_MAX_PENDING)");
            return Err(IngressError::InboxFull {
                limit: state.settings.limits.ingest_max_pending,
            });
        }
        Err(StoreError::Backlogged(backlog)) => {
            tracing::warn!(stripe_account_id = %account.id, backlog, "tenant backlog full: webhook shed with 503 (TRIBUTARY_INGEST_MAX_BACKLOG)");
            return Err(IngressError::Backlogged {
                backlog,
                limit: state.settings.limits.ingest_max_backlog,
            });
        }
        Err(StoreError::Failed(e)) => return Err(IngressError::Failed(e.into())),
    };
    let event_id = match stored {
        Stored::New(id) => id,
        Stored::Duplicate(existing) => {
            return Ok(IngressOut {
                received: true,
                event_id: existing,
                stripe_event_id: envelope.id,
                duplicate: true,
            });
        }
    };

    tracing::info!(event_id = %event_id, stripe_event_id = %envelope.id, event_type = %envelope.event_type, "webhook received");
    Ok(IngressOut {
        received: true,
        event_id,
        stripe_event_id: envelope.id,
        duplicate: false,
    })
}
