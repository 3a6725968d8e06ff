//! "Send test webhook" inside the product: a realistic test-mode event of a type, signed with
//! the account's own secret, sent through the real ingress over HTTP. A live account refuses
//! it, as its flows write to real records.

use entity::{Role, TenantOwned, stripe_accounts, webhook_secrets};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};
use crate::extract::{TenantContext, Validate};
use crate::state::AppState;
use crate::stripe::fixtures;
use tributary_worker::sealed;
use tributary_worker::secrets::{SecretContext, expose};
use tributary_worker::stripe::signature;

tributary_worker::string_enum_schema!(
    /// The event types a test event can be.
    TestEventType,
    "A Stripe event type that has a realistic test event.",
    fixtures::event_types().iter().copied()
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEventIn {
    /// An event type, e.g. `charge.succeeded`.
    #[serde(rename = "type")]
    #[schema(value_type = TestEventType, example = "charge.succeeded")]
    pub event_type: String,
}

impl Validate for TestEventIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        if fixtures::event_types().contains(&self.event_type.as_str()) {
            Ok(())
        } else {
            Err(vec![FieldError::new(
                "type",
                format!(
                    "no test event of this type; try one of {}",
                    fixtures::event_types().join(", ")
                ),
            )])
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestEventOut {
    /// Tributary's id of the stored event.
    pub event_id: String,
    pub stripe_event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's status when answering: `received` or `queued` unless `?wait=` gave its
    /// flows time to finish (`processed`, `failed` or `ignored`). Poll `GET /v1/events/{id}`
    /// for the rest.
    #[schema(example = "processed")]
    pub status: String,
}

/// The longest `?wait=` a test event may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// How long to wait for the event's flows, before answering.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TestEventQuery {
    /// Seconds (0 to 30) to wait for the event to finish (processed, failed or ignored) before
    /// answering; the answer's `status` says whether it did. Default 0: answer at once.
    #[param(minimum = 0, maximum = 30)]
    pub wait: Option<u64>,
}

/// `wait` is checked against [`MAX_WAIT_SECONDS`] by [`send`].
impl Validate for TestEventQuery {}

pub async fn send(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    input: TestEventIn,
    query: TestEventQuery,
) -> Result<TestEventOut, ApiError> {
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::field(
            "wait",
            format!("must be a number of seconds from 0 to {MAX_WAIT_SECONDS}"),
        ));
    }
    let account = super::owned::<stripe_accounts::Entity, _>(&state.db, ctx, account_id).await?;
    ctx.require(Role::Admin)?;
    // A test event is test-mode data: a live account, whose flows write to real records,
    // never takes one.
    if super::stripe_accounts::livemode_of(&state.keyring, &account) == Some(true) {
        return Err(ApiError::Conflict {
            detail: "this Stripe account is in live mode, and a test event is a test-mode event \
                     that would run live flows against real CRM records; send it from a \
                     test-mode account (in a development or staging environment), or try a flow \
                     on this account's real events with POST /v1/flows/{id}/dry-run"
                .into(),
            field: None,
        });
    }
    let secret_row = webhook_secrets::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
        .order_by_desc(webhook_secrets::Column::Id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            detail:
                "add a webhook signing secret to this account first; test events are signed with it"
                    .into(),
            field: None,
        })?;
    let secret = state
        .keyring
        .open(
            &secret_row.secret,
            &SecretContext {
                tenant_id: &ctx.tenant_id,
                purpose: sealed::WEBHOOK_SECRET,
                row_id: &secret_row.id,
            },
        )
        .map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("signing secret {}: {e}", secret_row.id))
        })?;
    let now = chrono::Utc::now().timestamp();
    let event = fixtures::test_event(&input.event_type, now)
        .ok_or_else(|| ApiError::field("type", "no test event of this type"))?;
    let body = serde_json::to_vec(&event).map_err(anyhow::Error::from)?;
    let header = signature::sign(&body, expose(&secret), now);

    let mut address = state.settings.listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{address}/webhooks/stripe/{}", account.webhook_token);
    let response = state
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the ingress did not answer: {e}")))?;
    let status = response.status();
    let answer: serde_json::Value =
        tributary_worker::net::read_limited(response, tributary_worker::net::ANSWER_LIMIT)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice(&body).ok())
            .unwrap_or_default();
    if !status.is_success() {
        return Err(ApiError::Unavailable(format!(
            "the ingress refused the test event ({status}): {}",
            answer["detail"].as_str().unwrap_or("no detail")
        )));
    }
    let event_id = answer["event_id"].as_str().unwrap_or_default().to_string();
    let status = settled_status(state, &ctx.tenant_id, &event_id, wait).await?;
    Ok(TestEventOut {
        event_id,
        stripe_event_id: answer["stripe_event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        event_type: input.event_type,
        status,
    })
}

/// The event's status once it has finished, or as it is when `wait` seconds have passed.
async fn settled_status(
    state: &AppState,
    tenant_id: &str,
    event_id: &str,
    wait: u64,
) -> Result<String, ApiError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let status = entity::events::Entity::find_by_id_in_tenant(tenant_id, event_id)
            .one(&state.db)
            .await?
            .map(|event| event.status)
            .unwrap_or_else(|| "received".into());
        let finished = matches!(status.as_str(), "processed" | "failed" | "ignored");
        if finished || tokio::time::Instant::now() >= deadline {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
