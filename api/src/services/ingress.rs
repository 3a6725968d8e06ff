//! Stripe webhook ingress: verify the signature against the account's active signing secrets,
//! keep the event byte-for-byte, answer only after the row is committed, then queue it.

use entity::{events, stripe_accounts, webhook_secrets};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use tributary_worker::engine::status;
use tributary_worker::queue::ProcessEvent;
use utoipa::ToSchema;

use super::{new_id, now};
use crate::app::AppState;
use crate::error::{ApiError, is_unique_violation};
use crate::secrets::{SecretContext, expose};
use crate::services::stripe_accounts::WEBHOOK_SECRET_PURPOSE;
use crate::stripe::{envelope, signature};

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

pub async fn receive(
    state: &AppState,
    token: &str,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<IngressOut, ApiError> {
    let account = stripe_accounts::Entity::find()
        .filter(stripe_accounts::Column::WebhookToken.eq(token))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let sealed = webhook_secrets::Entity::find()
        .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
        .filter(webhook_secrets::Column::TenantId.eq(account.tenant_id.as_str()))
        .all(&state.db)
        .await?;
    let mut secrets = Vec::with_capacity(sealed.len());
    for row in &sealed {
        let context = SecretContext {
            tenant_id: &account.tenant_id,
            purpose: WEBHOOK_SECRET_PURPOSE,
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
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let envelope = envelope::parse(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if envelope.api_version.as_ref().is_some_and(|v| v.len() > 64)
        || envelope.object_id.as_ref().is_some_and(|id| id.len() > 255)
    {
        return Err(ApiError::BadRequest(
            "the event's api_version or data.object.id is longer than Stripe ever sends".into(),
        ));
    }
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?;

    let at = now();
    let row = events::ActiveModel {
        id: Set(new_id()),
        tenant_id: Set(account.tenant_id.clone()),
        stripe_account_id: Set(account.id.clone()),
        stripe_event_id: Set(envelope.id.clone()),
        event_type: Set(envelope.event_type.clone()),
        stripe_object_id: Set(envelope.object_id.clone()),
        livemode: Set(envelope.livemode),
        api_version: Set(envelope.api_version.clone()),
        event_created: Set(envelope.created),
        payload: Set(payload),
        status: Set(status::RECEIVED.into()),
        runs: Set(0),
        next_run_at: Set(None),
        last_error: Set(None),
        received_at: Set(at),
        queued_at: Set(None),
        processed_at: Set(None),
        updated_at: Set(at),
    };
    let event_id = row.id.clone().unwrap();
    match events::Entity::insert(row).exec(&state.db).await {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            let existing = events::Entity::find()
                .filter(events::Column::StripeAccountId.eq(account.id.as_str()))
                .filter(events::Column::StripeEventId.eq(envelope.id.as_str()))
                .one(&state.db)
                .await?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("duplicate event vanished")))?;
            return Ok(IngressOut {
                received: true,
                event_id: existing.id,
                stripe_event_id: envelope.id,
                duplicate: true,
            });
        }
        Err(e) => return Err(e.into()),
    }

    // Committed: the answer can go. Queueing happens beside it; if it fails, the event stays
    // `received` and the sweeper queues it. The worker moves it on from there.
    let queue = state.queue.clone();
    let id = event_id.clone();
    tokio::spawn(async move {
        if let Err(e) = queue
            .push(
                ProcessEvent {
                    event_id: id.clone(),
                },
                None,
            )
            .await
        {
            tracing::warn!(event_id = %id, error = format!("{e:#}"), "queueing failed; the sweeper will retry");
        }
    });

    tracing::info!(event_id = %event_id, stripe_event_id = %envelope.id, event_type = %envelope.event_type, "webhook received");
    Ok(IngressOut {
        received: true,
        event_id,
        stripe_event_id: envelope.id,
        duplicate: false,
    })
}
