//! Notification channels: where a tenant's alerts go (a Slack-compatible incoming webhook, or a
//! generic webhook signed with a secret). The URL and the secret are sealed like every secret
//! and never returned, except a generated secret, once, when it is made. What is sent and
//! when is the worker's `alerts` module.

use entity::{Role, TenantOwned, alerts, notification_channels};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tributary_worker::alerts::{self as worker_alerts, CHANNEL_KINDS, KINDS, Notice};
use tributary_worker::crm::config;
use tributary_worker::sealed;
use utoipa::ToSchema;

use super::fields::Name;
use super::{audit, check_name, new_id, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{IfMatch, Page, TenantContext, Validate};
use crate::state::AppState;
use tributary_worker::secrets::SecretContext;

tributary_worker::string_enum_schema!(
    /// How a channel receives alerts.
    ChannelKind,
    "`slack`: a Slack-compatible incoming webhook; `webhook`: the signed JSON notice.",
    CHANNEL_KINDS.iter().copied()
);

tributary_worker::string_enum_schema!(
    /// The alert kinds a channel can receive.
    AlertKind,
    "`connection.needs_reauth`, `connection.paused`, `deliveries.dead_letters`, `flow.failing`, `anomaly.detected` (an incident the anomaly detectors opened, told once) or `review.waiting` (a review item waiting for a decision past its step's `alert_after_minutes`).",
    KINDS.iter().copied()
);

tributary_worker::string_enum_schema!(
    /// Where an alert's latest send stands.
    AlertStatus,
    "`pending`, `sending` (one process is sending it), `sent` or `failed`.",
    ["pending", "sending", "sent", "failed"]
);

const DEFAULT_DEAD_LETTER_THRESHOLD: i32 = 10;
const DEFAULT_FLOW_FAILURE_THRESHOLD: i32 = 5;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannelIn {
    #[schema(value_type = Name, example = "#billing-alerts")]
    pub name: String,
    /// `slack` (a Slack-compatible incoming webhook: `{"text": …}`) or `webhook` (the JSON
    /// notice, signed in `Tributary-Signature`).
    #[schema(value_type = ChannelKind, example = "slack")]
    pub kind: String,
    /// Where alerts are POSTed. Never returned: a Slack URL is itself a secret.
    #[schema(example = "https://hooks.slack.com/services/T000/B000/XXXX")]
    pub url: String,
    /// `webhook` only (refused with `slack`): the signing secret, 16 to 200 characters.
    /// Omitted, one is generated and returned once.
    #[schema(min_length = 16, max_length = 200)]
    pub secret: Option<String>,
    /// The alert kinds to send: `connection.needs_reauth`, `connection.paused`,
    /// `deliveries.dead_letters`, `flow.failing`. Default: all.
    #[schema(value_type = Option<Vec<AlertKind>>, min_items = 1)]
    pub alerts: Option<Vec<String>>,
    /// Dead letters in the tenant's dead-letter queue at which to alert (default 10).
    #[schema(minimum = 1, maximum = 1000000)]
    pub dead_letter_threshold: Option<i32>,
    /// Failed deliveries in a row of one flow at which to alert (default 5).
    #[schema(minimum = 1, maximum = 1000)]
    pub flow_failure_threshold: Option<i32>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannelPatch {
    #[schema(value_type = Option<Name>)]
    pub name: Option<String>,
    pub url: Option<String>,
    /// `webhook` only: a new signing secret, 16 to 200 characters.
    #[schema(min_length = 16, max_length = 200)]
    pub secret: Option<String>,
    #[schema(value_type = Option<Vec<AlertKind>>, min_items = 1)]
    pub alerts: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub dead_letter_threshold: Option<i32>,
    #[schema(minimum = 1, maximum = 1000)]
    pub flow_failure_threshold: Option<i32>,
    pub enabled: Option<bool>,
}

fn check_alerts(alerts: &[String], errors: &mut Vec<FieldError>) {
    if alerts.is_empty() {
        errors.push(FieldError::new(
            "alerts",
            "must name at least one alert kind",
        ));
    }
    for (i, kind) in alerts.iter().enumerate() {
        if !KINDS.contains(&kind.as_str()) {
            errors.push(FieldError::new(
                format!("alerts[{i}]"),
                format!("must be one of {}", KINDS.join(", ")),
            ));
        }
    }
}

fn check_threshold(field: &str, value: Option<i32>, max: i32, errors: &mut Vec<FieldError>) {
    if let Some(value) = value
        && !(1..=max).contains(&value)
    {
        errors.push(FieldError::new(
            field,
            format!("must be a whole number from 1 to {max}"),
        ));
    }
}

fn check_secret(secret: Option<&str>, errors: &mut Vec<FieldError>) {
    if let Some(secret) = secret {
        let count = secret.chars().count();
        if !(16..=200).contains(&count) {
            errors.push(FieldError::new(
                "secret",
                "must be from 16 to 200 characters",
            ));
        }
    }
}

/// The checks that need no settings; the URL is checked against `TRIBUTARY_VENDOR_URLS` in
/// the service.
fn check_common(
    alerts: Option<&[String]>,
    dead: Option<i32>,
    flow: Option<i32>,
    secret: Option<&str>,
    errors: &mut Vec<FieldError>,
) {
    if let Some(alerts) = alerts {
        check_alerts(alerts, errors);
    }
    check_threshold("dead_letter_threshold", dead, 1_000_000, errors);
    check_threshold("flow_failure_threshold", flow, 1_000, errors);
    check_secret(secret, errors);
}

impl Validate for NotificationChannelIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("name", &self.name, &mut errors);
        if !CHANNEL_KINDS.contains(&self.kind.as_str()) {
            errors.push(FieldError::new("kind", "must be slack or webhook"));
        } else if self.kind == "slack" && self.secret.is_some() {
            errors.push(FieldError::new(
                "secret",
                "slack channels are not signed; use kind webhook for a signed channel",
            ));
        }
        check_common(
            self.alerts.as_deref(),
            self.dead_letter_threshold,
            self.flow_failure_threshold,
            self.secret.as_deref(),
            &mut errors,
        );
        super::valid(errors)
    }
}

impl Validate for NotificationChannelPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            check_name("name", name, &mut errors);
        }
        check_common(
            self.alerts.as_deref(),
            self.dead_letter_threshold,
            self.flow_failure_threshold,
            self.secret.as_deref(),
            &mut errors,
        );
        super::valid(errors)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationChannelOut {
    pub id: String,
    pub name: String,
    #[schema(value_type = ChannelKind)]
    pub kind: String,
    /// Scheme and host of the URL; the URL itself is never returned.
    #[schema(example = "https://hooks.slack.com/…")]
    pub url_hint: String,
    /// Whether alerts carry a `Tributary-Signature` header.
    pub signed: bool,
    #[schema(value_type = Vec<AlertKind>)]
    pub alerts: Vec<String>,
    pub dead_letter_threshold: i32,
    pub flow_failure_threshold: i32,
    pub enabled: bool,
    pub last_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the latest send failed, until one succeeds.
    pub last_error: Option<String>,
    /// The generated signing secret, in the response that made it and never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<notification_channels::Model> for NotificationChannelOut {
    fn from(c: notification_channels::Model) -> Self {
        NotificationChannelOut {
            alerts: worker_alerts::subscribed(&c),
            signed: c.secret.is_some(),
            id: c.id,
            name: c.name,
            kind: c.kind,
            url_hint: c.url_hint,
            dead_letter_threshold: c.dead_letter_threshold,
            flow_failure_threshold: c.flow_failure_threshold,
            enabled: c.enabled,
            last_sent_at: c.last_sent_at,
            last_error: c.last_error,
            secret: None,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// One alert condition of a channel: what was said, how often, and whether it went out.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertOut {
    pub id: String,
    #[schema(value_type = AlertKind)]
    pub kind: String,
    /// The condition, e.g. `connection.needs_reauth:{connection id}`.
    pub condition: String,
    /// The connection or flow it is about.
    pub subject_id: Option<String>,
    pub summary: String,
    #[schema(value_type = AlertStatus)]
    pub status: String,
    pub times_sent: i32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<alerts::Model> for AlertOut {
    fn from(a: alerts::Model) -> Self {
        AlertOut {
            id: a.id,
            kind: a.kind,
            condition: a.condition_key,
            subject_id: a.subject_id,
            summary: a.summary,
            status: a.status,
            times_sent: a.times_sent,
            last_error: a.last_error,
            last_attempt_at: a.last_attempt_at,
            sent_at: a.sent_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationTestOut {
    pub ok: bool,
    /// What the receiver answered, or what failed.
    pub detail: String,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
}

fn check_url(state: &AppState, url: &str, errors: &mut Vec<FieldError>) {
    if url.len() > 2000 {
        errors.push(FieldError::new("url", "must be at most 2000 characters"));
    } else if let Err(message) = config::check_url("http", url, state.settings.vendor_urls) {
        errors.push(FieldError::new("url", message));
    }
}

fn seal(state: &AppState, tenant_id: &str, id: &str, purpose: &str, plain: &str) -> String {
    state.keyring.seal(
        plain,
        &SecretContext {
            tenant_id,
            purpose,
            row_id: id,
        },
    )
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: NotificationChannelIn,
) -> Result<NotificationChannelOut, ApiError> {
    ctx.require(Role::Admin)?;
    let mut errors = Vec::new();
    check_url(state, &input.url, &mut errors);
    super::valid(errors).map_err(ApiError::Validation)?;
    let id = new_id();
    let generated = (input.kind == "webhook" && input.secret.is_none())
        .then(|| format!("tcs_{}", tributary_worker::secrets::random_token::<32>()));
    let secret = input.secret.as_deref().or(generated.as_deref());
    let mut alerts = input
        .alerts
        .unwrap_or_else(|| KINDS.iter().map(|k| k.to_string()).collect());
    alerts.sort();
    alerts.dedup();
    let at = now();
    let row = notification_channels::Model {
        url: seal(state, &ctx.tenant_id, &id, sealed::CHANNEL_URL, &input.url),
        url_hint: worker_alerts::url_hint(&input.url),
        secret: secret.map(|s| seal(state, &ctx.tenant_id, &id, sealed::CHANNEL_SECRET, s)),
        id,
        tenant_id: ctx.tenant_id.clone(),
        name: input.name.trim().to_string(),
        kind: input.kind,
        alerts: serde_json::to_string(&alerts).unwrap_or_else(|_| "[]".into()),
        dead_letter_threshold: input
            .dead_letter_threshold
            .unwrap_or(DEFAULT_DEAD_LETTER_THRESHOLD),
        flow_failure_threshold: input
            .flow_failure_threshold
            .unwrap_or(DEFAULT_FLOW_FAILURE_THRESHOLD),
        enabled: input.enabled.unwrap_or(true),
        last_sent_at: None,
        last_error: None,
        created_at: at,
        updated_at: at,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    notification_channels::Entity::insert(notification_channels::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(
        &txn,
        ctx,
        "notification_channel.create",
        "notification_channel",
        &row.id,
    )
    .await?;
    txn.commit().await?;
    Ok(NotificationChannelOut {
        secret: generated,
        ..row.into()
    })
}

pub async fn find(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<notification_channels::Model, ApiError> {
    super::owned::<notification_channels::Entity, _>(&state.db, ctx, id).await
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<NotificationChannelOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            notification_channels::Entity::find_in_tenant(&ctx.tenant_id),
            notification_channels::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}

pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    patch: NotificationChannelPatch,
    if_match: &IfMatch,
) -> Result<NotificationChannelOut, ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let mut errors = Vec::new();
    if let Some(url) = &patch.url {
        check_url(state, url, &mut errors);
    }
    if patch.secret.is_some() && existing.kind == "slack" {
        errors.push(FieldError::new(
            "secret",
            "slack channels are not signed; use kind webhook for a signed channel",
        ));
    }
    super::valid(errors).map_err(ApiError::Validation)?;
    let tenant_id = existing.tenant_id.clone();
    let mut active: notification_channels::ActiveModel = existing.into();
    if let Some(name) = patch.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(url) = patch.url {
        active.url = Set(seal(state, &tenant_id, id, sealed::CHANNEL_URL, &url));
        active.url_hint = Set(worker_alerts::url_hint(&url));
        active.last_error = Set(None);
    }
    if let Some(secret) = patch.secret {
        active.secret = Set(Some(seal(
            state,
            &tenant_id,
            id,
            sealed::CHANNEL_SECRET,
            &secret,
        )));
    }
    if let Some(mut alerts) = patch.alerts {
        alerts.sort();
        alerts.dedup();
        active.alerts = Set(serde_json::to_string(&alerts).unwrap_or_else(|_| "[]".into()));
    }
    if let Some(threshold) = patch.dead_letter_threshold {
        active.dead_letter_threshold = Set(threshold);
    }
    if let Some(threshold) = patch.flow_failure_threshold {
        active.flow_failure_threshold = Set(threshold);
    }
    if let Some(enabled) = patch.enabled {
        active.enabled = Set(enabled);
    }
    active.updated_at = Set(now());
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let current =
        super::owned_for_update::<notification_channels::Entity, _>(&txn, ctx, id).await?;
    if_match.check(
        &NotificationChannelOut::from(current),
        "notification channel",
    )?;
    let updated = active.update(&txn).await?;
    audit::log(
        &txn,
        ctx,
        "notification_channel.update",
        "notification_channel",
        id,
    )
    .await?;
    txn.commit().await?;
    Ok(updated.into())
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    alerts::Entity::delete_many()
        .filter(alerts::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(alerts::Column::ChannelId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    notification_channels::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &existing.id)
        .exec(&txn)
        .await?;
    audit::log(
        &txn,
        ctx,
        "notification_channel.delete",
        "notification_channel",
        id,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Sends a test notice now, whatever the channel's alert kinds and period.
pub async fn test(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<NotificationTestOut, ApiError> {
    let channel = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let notice = Notice {
        id: new_id(),
        kind: worker_alerts::kind::TEST.into(),
        tenant_id: ctx.tenant_id.clone(),
        created_at: now(),
        summary: format!(
            "[Tributary] A test of the notification channel \"{}\": alerts will arrive here.",
            channel.name
        ),
        data: serde_json::json!({ "channel_id": channel.id }),
    };
    Ok(
        match state.pipeline.notifier.send(&channel, &notice).await {
            Ok(status) => NotificationTestOut {
                ok: true,
                detail: format!("the receiver answered {status}"),
                status: Some(status),
            },
            Err(failure) => NotificationTestOut {
                ok: false,
                detail: failure.message,
                status: failure.status,
            },
        },
    )
}

/// A channel's alert conditions, newest first.
pub async fn alerts(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    page: &Page,
) -> Result<(Vec<AlertOut>, bool), ApiError> {
    let channel = find(state, ctx, id).await?;
    let (rows, has_more) = page
        .fetch(
            &state.db,
            alerts::Entity::find_in_tenant(&ctx.tenant_id)
                .filter(alerts::Column::ChannelId.eq(channel.id.as_str())),
            alerts::Column::Id,
        )
        .await?;
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}
