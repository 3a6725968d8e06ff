//! Backfills: a tenant asks for a Stripe account's events since a time (within Stripe's 30
//! days) to be read from Stripe and ingested where the inbox lacks them; the worker's
//! `stripe::backfill` does it and records progress here to be read. Reconciliations, which the
//! worker schedules itself, are listed alongside.

use entity::{Role, TenantOwned, backfills};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tributary_worker::stripe::backfill::{KIND_BACKFILL, RETENTION, new_backfill};
use tributary_worker::stripe::event_types::EVENT_TYPES;
use utoipa::ToSchema;

use super::stripe_accounts::find;
use super::{audit, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{Page, TenantContext, Validate};
use crate::state::AppState;

tributary_worker::string_enum_schema!(
    /// A Stripe event type, exactly as Stripe names it.
    StripeEventType,
    "A Stripe event type, e.g. `charge.succeeded`: one of Stripe's catalogue.",
    EVENT_TYPES.iter().copied()
);

/// A point in time: RFC 3339 text or Unix seconds.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Timestamp {
    Unix(i64),
    Text(String),
}

impl Timestamp {
    fn parse(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Timestamp::Unix(secs) => chrono::DateTime::from_timestamp(*secs, 0),
            Timestamp::Text(text) => chrono::DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillIn {
    /// Events created at or after this time (RFC 3339 or Unix seconds); at most 30 days ago,
    /// since Stripe keeps events that long.
    #[schema(example = "2026-11-30T00:00:00Z")]
    pub since: Timestamp,
    /// Only these event types (at most 20, exact names). Default: every type.
    #[schema(value_type = Option<Vec<StripeEventType>>, max_items = 20)]
    pub types: Option<Vec<String>>,
}

impl Validate for BackfillIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        match self.since.parse() {
            None => errors.push(FieldError::new(
                "since",
                "must be an RFC 3339 time such as 2026-11-30T00:00:00Z, or Unix seconds",
            )),
            Some(since) if since > now() => {
                errors.push(FieldError::new("since", "must not be in the future"))
            }
            Some(since) if since < now() - RETENTION => errors.push(FieldError::new(
                "since",
                format!(
                    "Stripe lists only the last 30 days of events; since must be after {}",
                    (now() - RETENTION).format("%Y-%m-%dT%H:%M:%SZ")
                ),
            )),
            Some(_) => {}
        }
        if let Some(types) = &self.types {
            if types.len() > 20 {
                errors.push(FieldError::new(
                    "types",
                    "Stripe filters by at most 20 types",
                ));
            }
            for (i, t) in types.iter().enumerate() {
                if !EVENT_TYPES.contains(&t.as_str()) {
                    errors.push(FieldError::new(
                        format!("types[{i}]"),
                        format!("'{t}' is not a Stripe event type"),
                    ));
                }
            }
        }
        super::valid(errors)
    }
}

/// Where a backfill stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillProgress {
    /// Pages (and single events) read from Stripe.
    pub pages_read: i32,
    /// Events since the start time that it has gone through.
    pub events_found: i32,
    /// Of those, put into the inbox now.
    pub ingested: i32,
    /// Of those, already in the inbox (a webhook brought them).
    pub already_present: i32,
    /// Of those, not ingested (see `last_error`).
    pub failed: i32,
    /// Of those, passed over and never stored: their `livemode` is not the account's (a test
    /// event for a live account or the reverse), as a webhook of them would be refused.
    pub skipped: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackfillOut {
    pub id: String,
    pub stripe_account_id: String,
    /// `backfill` (asked for) or `reconcile` (scheduled: events whose webhook failed).
    pub kind: String,
    pub since: chrono::DateTime<chrono::Utc>,
    pub types: Option<Vec<String>>,
    /// `false` for a reconciliation: only events Stripe could not deliver.
    pub delivery_success: Option<bool>,
    /// `pending`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// `scan` (finding the oldest event) or `ingest` (oldest to newest).
    pub phase: String,
    pub progress: BackfillProgress,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<backfills::Model> for BackfillOut {
    fn from(b: backfills::Model) -> Self {
        BackfillOut {
            types: b
                .types
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
            progress: BackfillProgress {
                pages_read: b.pages_read,
                events_found: b.events_found,
                ingested: b.ingested,
                already_present: b.already_present,
                failed: b.failed,
                skipped: b.skipped,
            },
            id: b.id,
            stripe_account_id: b.stripe_account_id,
            kind: b.kind,
            since: b.since,
            delivery_success: b.delivery_success,
            status: b.status,
            phase: b.phase,
            last_error: b.last_error,
            created_at: b.created_at,
            updated_at: b.updated_at,
            finished_at: b.finished_at,
        }
    }
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    input: BackfillIn,
) -> Result<BackfillOut, ApiError> {
    let account = find(&state.db, ctx, account_id).await?;
    ctx.require(Role::Admin)?;
    if account.secret_key.is_none() {
        return Err(ApiError::field(
            "secret_key",
            "the account needs a secret key (or a restricted key with Events read) to list its events at Stripe; PATCH it first",
        ));
    }
    let since = input.since.parse().unwrap_or_else(now);
    let row = new_backfill(&account, KIND_BACKFILL, since, input.types.as_deref(), None);
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    backfills::Entity::insert(backfills::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "backfill.create", "backfill", &row.id).await?;
    txn.commit().await?;
    Ok(row.into())
}

pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    id: &str,
) -> Result<BackfillOut, ApiError> {
    let account = find(&state.db, ctx, account_id).await?;
    let row = backfills::Entity::find_by_id_in_tenant(&ctx.tenant_id, id)
        .filter(backfills::Column::StripeAccountId.eq(account.id.as_str()))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(row.into())
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    page: &Page,
) -> Result<(Vec<BackfillOut>, bool), ApiError> {
    let account = find(&state.db, ctx, account_id).await?;
    let (rows, has_more) = page
        .fetch(
            &state.db,
            backfills::Entity::find_in_tenant(&ctx.tenant_id)
                .filter(backfills::Column::StripeAccountId.eq(account.id.as_str())),
            backfills::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}
