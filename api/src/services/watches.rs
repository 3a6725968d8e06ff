//! What a connection watches at its CRM (`settings.watch`): each object's polling cursor, the
//! API calls polling made, the Zoho notification channel and when it expires, the last error —
//! and a poll made now, for a tenant who does not want to wait for the next one.

use entity::{Role, TenantOwned, crm_watches};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;

/// One object a connection watches.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchOut {
    /// The vendor's object name (`Opportunity`, `Deals`), or `_channel` for Zoho's channel.
    pub object: String,
    /// The newest modification time seen, as the vendor writes it.
    pub cursor: Option<String>,
    /// API calls polling this object made, in all (they count against the org's limits).
    pub api_calls: i64,
    pub polled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub next_poll_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Zoho: the notification channel, and when Zoho drops it unless renewed.
    pub channel_id: Option<String>,
    pub channel_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the last poll or renewal failed, if it did.
    pub last_error: Option<String>,
}

impl From<crm_watches::Model> for WatchOut {
    fn from(w: crm_watches::Model) -> Self {
        WatchOut {
            object: w.object,
            cursor: w.cursor,
            api_calls: w.api_calls,
            polled_at: w.polled_at,
            next_poll_at: w.next_poll_at,
            channel_id: w.channel_id,
            channel_expires_at: w.channel_expires_at,
            last_error: w.last_error,
        }
    }
}

/// What a poll made now did, and where each watch stands after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollOut {
    /// Objects polled.
    pub polls: usize,
    /// Changes stored as events by this poll.
    pub events: usize,
    /// Zoho notification channels looked after.
    pub channels: usize,
    pub watches: Vec<WatchOut>,
}

/// The connection's watches.
pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<Vec<WatchOut>, ApiError> {
    let connection = super::connections::find(state, ctx, id).await?;
    Ok(crm_watches::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(crm_watches::Column::ConnectionId.eq(connection.id.as_str()))
        .order_by_asc(crm_watches::Column::Object)
        .all(&state.db)
        .await?
        .into_iter()
        .map(WatchOut::from)
        .collect())
}

/// Polls every object the connection watches now.
pub async fn poll(state: &AppState, ctx: &TenantContext, id: &str) -> Result<PollOut, ApiError> {
    let connection = super::connections::find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    // What the connection is, not what was sent: a conflict with its state.
    if !matches!(connection.provider.as_str(), "salesforce" | "zoho") {
        return Err(ApiError::Conflict {
            detail: format!(
                "{} connections are not polled; HubSpot pushes its changes to the connection's inbound_url",
                connection.provider
            ),
            field: Some("provider".into()),
        });
    }
    if connection.status != "active" {
        return Err(ApiError::Conflict {
            detail: format!(
                "the connection is {}; only an active one is polled",
                connection.status
            ),
            field: Some("status".into()),
        });
    }
    let report = tributary_worker::inbound::watcher::watch_now(
        &state.db,
        &state.queue,
        state.connector(),
        &state.settings.public_url,
        &connection,
    )
    .await
    .map_err(|e| ApiError::BadGateway(format!("polling the CRM failed: {e:#}")))?
    .ok_or_else(|| ApiError::Conflict {
        detail: "the connection watches nothing: set settings.watch to the objects to poll, e.g. [\"Opportunity\"]".into(),
        field: Some("settings.watch".into()),
    })?;
    Ok(PollOut {
        polls: report.polls,
        events: report.events,
        channels: report.channels,
        watches: list(state, ctx, id).await?,
    })
}
