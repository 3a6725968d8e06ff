//! Alerts to tenants' notification channels. Every `TRIBUTARY_ALERT_INTERVAL` each process
//! looks at the tenants that have an enabled channel for three conditions: a connection that
//! needs re-authorization, dead letters at or above the channel's threshold, and a flow whose
//! latest deliveries all failed. A condition is sent to a channel at most once per
//! `TRIBUTARY_ALERT_PERIOD`: the `alerts` row of (channel, condition) is claimed by a
//! compare-and-set before sending, so several processes checking at once send it once.
//!
//! Channels are Slack-compatible incoming webhooks (`{"text": …}`) or generic webhooks (the
//! JSON notice, signed like Stripe signs its webhooks: `Tributary-Signature: t=…,v1=…`, an
//! HMAC-SHA256 over `"{t}.{body}"`). This module never logs a channel's URL or secret.

use crate::sealed;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    TenantOwned, alerts, connections, deliveries, flows, notification_channels, reviews, tenants,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::secrets::{Keyring, SecretContext};
use crate::statuses::delivery_status as ds;

/// The alert kinds a channel can subscribe to.
pub mod kind {
    pub const NEEDS_REAUTH: &str = "connection.needs_reauth";
    pub const PAUSED: &str = "connection.paused";
    pub const DEAD_LETTERS: &str = "deliveries.dead_letters";
    pub const FLOW_FAILING: &str = "flow.failing";
    /// An incident the anomaly detectors opened (see `crate::anomaly`); told once.
    pub const ANOMALY: &str = "anomaly.detected";
    /// A review item waiting for a person longer than its step's `alert_after_minutes`.
    pub const REVIEW_WAITING: &str = "review.waiting";
    /// Sent by `POST /v1/notification-channels/{id}/test`, never by a condition.
    pub const TEST: &str = "test";
}

pub const KINDS: &[&str] = &[
    kind::NEEDS_REAUTH,
    kind::PAUSED,
    kind::DEAD_LETTERS,
    kind::FLOW_FAILING,
    kind::ANOMALY,
    kind::REVIEW_WAITING,
];
pub const CHANNEL_KINDS: &[&str] = &["slack", "webhook"];

pub const SIGNATURE_HEADER: &str = "Tributary-Signature";

/// A claim on an alert older than this is abandoned (its process died mid-send).
const CLAIM_TIMEOUT: chrono::Duration = chrono::Duration::seconds(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a channel is told. A webhook channel receives exactly this JSON; a Slack channel its
/// `summary` as the message text.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// Unique per send, so a receiver can drop a repeat.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant_id: String,
    pub created_at: DateTime<Utc>,
    pub summary: String,
    pub data: Value,
}

/// Why a send failed: the receiver's status if it answered, and what happened.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub status: Option<u16>,
    pub message: String,
}

/// A condition that holds now for one channel.
#[derive(Debug)]
struct Condition {
    key: String,
    kind: &'static str,
    subject_id: Option<String>,
    summary: String,
    data: Value,
}

/// Checks conditions and sends alerts; one per process.
pub struct Notifier {
    db: DatabaseConnection,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
    vendor_urls: crate::settings::VendorUrls,
    interval: Duration,
    period: chrono::Duration,
}

/// Scheme and host of a URL, to show instead of the URL itself.
pub fn url_hint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}/…",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        ),
        Err(_) => "…".into(),
    }
}

fn context<'a>(channel: &'a notification_channels::Model, purpose: &'a str) -> SecretContext<'a> {
    SecretContext {
        tenant_id: &channel.tenant_id,
        purpose,
        row_id: &channel.id,
    }
}

/// The kinds a channel subscribed to (its stored JSON array).
pub fn subscribed(channel: &notification_channels::Model) -> Vec<String> {
    serde_json::from_str(&channel.alerts).unwrap_or_default()
}

impl Notifier {
    pub fn new(
        db: DatabaseConnection,
        keyring: Arc<Keyring>,
        interval: Duration,
        period: Duration,
        vendor_urls: crate::settings::VendorUrls,
    ) -> anyhow::Result<Notifier> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            // A redirect could lead a tenant's alert anywhere, including inside the network.
            .redirect(reqwest::redirect::Policy::none());
        let http = crate::net::guarded(builder, vendor_urls).build()?;
        Ok(Notifier {
            db,
            keyring,
            http,
            vendor_urls,
            interval,
            period: chrono::Duration::from_std(period).unwrap_or(chrono::Duration::hours(1)),
        })
    }

    /// Sends `notice` to `channel` now. Returns the receiver's status on a 2xx.
    pub async fn send(
        &self,
        channel: &notification_channels::Model,
        notice: &Notice,
    ) -> Result<u16, SendFailure> {
        let failure = |status: Option<u16>, message: String| SendFailure { status, message };
        let url = self
            .keyring
            .open(&channel.url, &context(channel, sealed::CHANNEL_URL))
            .map_err(|e| failure(None, format!("the channel's URL cannot be read: {e}")))?;
        let body = match channel.kind.as_str() {
            "slack" => json!({ "text": notice.summary }),
            _ => serde_json::to_value(notice).unwrap_or_default(),
        }
        .to_string();
        if let Ok(parsed) = url::Url::parse(crate::secrets::expose(&url)) {
            crate::net::check_literal(&parsed, self.vendor_urls).map_err(|e| failure(None, e))?;
        }
        let mut request = self
            .http
            .post(crate::secrets::expose(&url))
            .header("content-type", "application/json")
            .header("user-agent", "Tributary-Alerts");
        if let Some(sealed) = &channel.secret {
            let secret = self
                .keyring
                .open(sealed, &context(channel, sealed::CHANNEL_SECRET))
                .map_err(|e| failure(None, format!("the channel's secret cannot be read: {e}")))?;
            let t = crate::now().timestamp();
            request = request.header(
                SIGNATURE_HEADER,
                // Stripe's scheme, so the verification code tenants have for Stripe works.
                crate::stripe::signature::sign(body.as_bytes(), crate::secrets::expose(&secret), t),
            );
        }
        let response = request.body(body).send().await.map_err(|e| {
            if let Some(refused) = crate::net::refusal(&e) {
                return failure(None, refused);
            }
            let what = if e.is_timeout() {
                format!("no answer within {} s", SEND_TIMEOUT.as_secs())
            } else if e.is_connect() {
                "the receiver could not be reached".to_string()
            } else {
                "the request failed".to_string()
            };
            failure(None, what)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let text = crate::net::read_text(response, crate::net::ANSWER_LIMIT)
            .await
            .unwrap_or_else(|e| format!("({e})"));
        let text: String = text.chars().take(300).collect();
        Err(failure(
            Some(status.as_u16()),
            format!("the receiver answered {status}: {text}"),
        ))
    }

    /// Checks every tenant with an enabled channel and sends what is due. Returns how many
    /// alerts went out.
    pub async fn check(&self) -> anyhow::Result<usize> {
        let channels = notification_channels::Entity::find()
            .filter(notification_channels::Column::Enabled.eq(true))
            .order_by_asc(notification_channels::Column::Id)
            .all(&self.db)
            .await?;
        let mut by_tenant: BTreeMap<String, Vec<notification_channels::Model>> = BTreeMap::new();
        for channel in channels {
            by_tenant
                .entry(channel.tenant_id.clone())
                .or_default()
                .push(channel);
        }
        let mut sent = 0;
        for (tenant_id, channels) in by_tenant {
            for (channel, condition) in self.conditions(&tenant_id, &channels).await? {
                if self.alert(channel, condition).await? {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// Every condition that holds now, paired with each channel that wants to hear of it.
    async fn conditions<'c>(
        &self,
        tenant_id: &str,
        channels: &'c [notification_channels::Model],
    ) -> anyhow::Result<Vec<(&'c notification_channels::Model, Condition)>> {
        let wanting = |kind: &str| -> Vec<&'c notification_channels::Model> {
            channels
                .iter()
                .filter(|c| subscribed(c).iter().any(|k| k == kind))
                .collect()
        };
        let tenant = tenants::Entity::find_by_id(tenant_id.to_string())
            .one(&self.db)
            .await?
            .map(|t| t.name)
            .unwrap_or_default();
        let mut found = Vec::new();

        found.extend(
            self.connection_conditions(
                tenant_id,
                &tenant,
                wanting(kind::NEEDS_REAUTH),
                wanting(kind::PAUSED),
            )
            .await?,
        );

        let dead_channels = wanting(kind::DEAD_LETTERS);
        if !dead_channels.is_empty() {
            let dead = deliveries::Entity::find_in_tenant(tenant_id)
                .filter(deliveries::Column::Status.eq(ds::DEAD))
                .count(&self.db)
                .await?;
            for channel in dead_channels {
                let threshold = channel.dead_letter_threshold.max(1) as u64;
                if dead >= threshold {
                    found.push((channel, Condition {
                        key: kind::DEAD_LETTERS.to_string(),
                        kind: kind::DEAD_LETTERS,
                        subject_id: None,
                        summary: format!(
                            "[Tributary · {tenant}] {dead} deliveries are in the dead-letter queue (threshold {threshold}). Review them with GET /v1/deliveries?status=dead and retry with POST /v1/deliveries/{{id}}/retry."
                        ),
                        data: json!({ "dead_letters": dead, "threshold": threshold }),
                    }));
                }
            }
        }

        found.extend(
            self.failing_flows(tenant_id, &tenant, wanting(kind::FLOW_FAILING))
                .await?,
        );
        found.extend(
            self.waiting_reviews(tenant_id, &tenant, wanting(kind::REVIEW_WAITING))
                .await?,
        );
        Ok(found)
    }

    /// Review items still open past their alert time, each with the channels that want them.
    async fn waiting_reviews<'c>(
        &self,
        tenant_id: &str,
        tenant: &str,
        channels: Vec<&'c notification_channels::Model>,
    ) -> anyhow::Result<Vec<(&'c notification_channels::Model, Condition)>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::now();
        let waiting = reviews::Entity::find_in_tenant(tenant_id)
            .filter(reviews::Column::Status.eq("open"))
            .filter(reviews::Column::AlertAt.lte(now))
            .order_by_asc(reviews::Column::CreatedAt)
            .limit(50)
            .all(&self.db)
            .await?;
        let mut found = Vec::new();
        for item in waiting {
            let hours = (now - item.created_at).num_minutes() as f64 / 60.0;
            for channel in &channels {
                found.push((*channel, Condition {
                    key: format!("{}:{}", kind::REVIEW_WAITING, item.id),
                    kind: kind::REVIEW_WAITING,
                    subject_id: Some(item.id.clone()),
                    summary: format!(
                        "[Tributary · {tenant}] A {} write has waited {hours:.1} h for a decision: {}. Decide it at GET /v1/reviews/{}.",
                        item.object, item.summary, item.id
                    ),
                    data: json!({
                        "review_id": item.id,
                        "object": item.object,
                        "reason": item.reason,
                        "waiting_since": item.created_at,
                    }),
                }));
            }
        }
        Ok(found)
    }

    /// Connections that need re-authorization, and connections paused by their vendor (a daily
    /// limit reached), each with the channels that want to hear of it.
    async fn connection_conditions<'c>(
        &self,
        tenant_id: &str,
        tenant: &str,
        reauth: Vec<&'c notification_channels::Model>,
        paused: Vec<&'c notification_channels::Model>,
    ) -> anyhow::Result<Vec<(&'c notification_channels::Model, Condition)>> {
        let mut statuses = Vec::new();
        if !reauth.is_empty() {
            statuses.push("needs_reauth");
        }
        if !paused.is_empty() {
            statuses.push("paused");
        }
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for connection in connections::Entity::find_in_tenant(tenant_id)
            .filter(connections::Column::Status.is_in(statuses))
            .all(&self.db)
            .await?
        {
            let (name, provider, id) = (&connection.name, &connection.provider, &connection.id);
            let (kind, channels, reason, summary) = if connection.status == "paused" {
                let reason = connection
                    .status_reason
                    .as_deref()
                    .unwrap_or("its vendor asked to wait");
                let until = connection
                    .paused_until
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "further notice".into());
                (
                    kind::PAUSED,
                    &paused,
                    reason,
                    format!(
                        "[Tributary · {tenant}] Connection \"{name}\" ({provider}) is paused until {until}: {reason}. Its deliveries wait and resume by themselves then; PATCH /v1/connections/{id} with {{\"status\": \"active\"}} resumes it sooner."
                    ),
                )
            } else {
                let reason = connection
                    .status_reason
                    .as_deref()
                    .unwrap_or("its credentials were refused");
                (
                    kind::NEEDS_REAUTH,
                    &reauth,
                    reason,
                    format!(
                        "[Tributary · {tenant}] Connection \"{name}\" ({provider}) needs re-authorization: {reason}. Its deliveries wait until it is reconnected: POST /v1/connections/{id}/reauthorize, or PATCH it with new credentials."
                    ),
                )
            };
            let mut data = json!({
                "connection_id": id,
                "connection_name": name,
                "provider": provider,
                "reason": reason,
            });
            if kind == kind::PAUSED {
                data["paused_until"] = json!(connection.paused_until);
            }
            for channel in channels {
                found.push((
                    *channel,
                    Condition {
                        key: format!("{kind}:{id}"),
                        kind,
                        subject_id: Some(id.clone()),
                        summary: summary.clone(),
                        data: data.clone(),
                    },
                ));
            }
        }
        Ok(found)
    }

    /// Enabled flows failing in a row past a threshold, each with the channels it reached.
    async fn failing_flows<'c>(
        &self,
        tenant_id: &str,
        tenant: &str,
        flow_channels: Vec<&'c notification_channels::Model>,
    ) -> anyhow::Result<Vec<(&'c notification_channels::Model, Condition)>> {
        let mut found = Vec::new();
        if let Some(longest) = flow_channels
            .iter()
            .map(|c| c.flow_failure_threshold.max(1))
            .max()
        {
            for flow in flows::Entity::find_in_tenant(tenant_id)
                .filter(flows::Column::Enabled.eq(true))
                .all(&self.db)
                .await?
            {
                let (streak, latest) = self.failure_streak(&flow.id, longest).await?;
                for channel in &flow_channels {
                    let threshold = channel.flow_failure_threshold.max(1);
                    if streak < threshold {
                        continue;
                    }
                    let error = latest.as_ref().map_or_else(String::new, |d| {
                        format!(
                            " The latest: step \"{}\", {}: {}.",
                            d.step,
                            d.error_kind.as_deref().unwrap_or("error"),
                            d.error_message.as_deref().unwrap_or("no detail")
                        )
                    });
                    found.push((*channel, Condition {
                        key: format!("{}:{}", kind::FLOW_FAILING, flow.id),
                        kind: kind::FLOW_FAILING,
                        subject_id: Some(flow.id.clone()),
                        summary: format!(
                            "[Tributary · {tenant}] Flow \"{}\" failed its last {streak} deliveries (threshold {threshold}).{error} See GET /v1/deliveries?flow_id={}.",
                            flow.name, flow.id
                        ),
                        data: json!({
                            "flow_id": flow.id,
                            "flow_name": flow.name,
                            "consecutive_failures": streak,
                            "threshold": threshold,
                            "latest_error": latest.as_ref().map(|d| json!({
                                "delivery_id": d.id,
                                "kind": d.error_kind,
                                "message": d.error_message,
                            })),
                        }),
                    }));
                }
            }
        }
        Ok(found)
    }

    /// How many of a flow's latest finished attempts failed in a row (at most `limit`), and the
    /// latest of them. A delivery failed when it is dead, or retrying after an error; one in
    /// flight has not finished and is passed over.
    async fn failure_streak(
        &self,
        flow_id: &str,
        limit: i32,
    ) -> anyhow::Result<(i32, Option<deliveries::Model>)> {
        let recent = deliveries::Entity::find()
            .filter(deliveries::Column::FlowId.eq(flow_id))
            .filter(deliveries::Column::Status.is_in([ds::SUCCEEDED, ds::DEAD, ds::RETRYING]))
            .order_by_desc(deliveries::Column::UpdatedAt)
            .limit(limit as u64 * 2)
            .all(&self.db)
            .await?;
        let mut streak = 0;
        let mut latest = None;
        for delivery in recent {
            if delivery.reason.as_deref() == Some("in_flight") {
                continue;
            }
            let failed = delivery.status == ds::DEAD
                || (delivery.status == ds::RETRYING && delivery.error_kind.is_some());
            if !failed {
                break;
            }
            streak += 1;
            if latest.is_none() {
                latest = Some(delivery);
            }
            if streak >= limit {
                break;
            }
        }
        Ok((streak, latest))
    }

    /// Tells `summary` (of `kind`, keyed `key`) to each enabled channel of the tenant that
    /// takes `kind`, once: a channel it was sent to is never sent it again, one it failed at
    /// is tried again (backing off) at the next call. Returns how many were sent now.
    pub async fn tell_once(
        &self,
        tenant_id: &str,
        kind: &'static str,
        key: &str,
        summary: &str,
        data: Value,
    ) -> anyhow::Result<usize> {
        let channels = notification_channels::Entity::find_in_tenant(tenant_id)
            .filter(notification_channels::Column::Enabled.eq(true))
            .all(&self.db)
            .await?;
        let mut sent = 0;
        for channel in channels
            .iter()
            .filter(|c| subscribed(c).iter().any(|k| k == kind))
        {
            let condition = Condition {
                key: key.to_string(),
                kind,
                subject_id: None,
                summary: summary.to_string(),
                data: data.clone(),
            };
            if self.alert(channel, condition).await? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Sends `condition` to `channel` if it is due there and this process wins the claim.
    /// Returns whether it was sent.
    async fn alert(
        &self,
        channel: &notification_channels::Model,
        condition: Condition,
    ) -> anyhow::Result<bool> {
        let now = crate::now();
        let Some(row) = self.alert_row(channel, &condition, now).await? else {
            return Ok(false);
        };
        if !self.due(&row, now) {
            return Ok(false);
        }
        // The claim: only the process whose update finds the row as it read it sends. Its
        // new `updated_at` is always later than the one read (the row may have been inserted
        // in this same microsecond), so a second claimer's compare can never match again.
        let claimed_at = now.max(row.updated_at + chrono::Duration::microseconds(1));
        let claimed = alerts::Entity::update_many()
            .set(alerts::ActiveModel {
                status: Set("sending".into()),
                summary: Set(condition.summary.clone()),
                attempts: Set(row.attempts + 1),
                last_attempt_at: Set(Some(claimed_at)),
                updated_at: Set(claimed_at),
                ..Default::default()
            })
            .filter(alerts::Column::Id.eq(row.id.as_str()))
            .filter(alerts::Column::Status.eq(row.status.as_str()))
            .filter(alerts::Column::UpdatedAt.eq(row.updated_at))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            return Ok(false);
        }
        let notice = Notice {
            id: crate::new_id(),
            kind: condition.kind.to_string(),
            tenant_id: channel.tenant_id.clone(),
            created_at: now,
            summary: condition.summary,
            data: condition.data,
        };
        let outcome = self.send(channel, &notice).await;
        let at = crate::now();
        let (row_update, channel_update) = match &outcome {
            Ok(_) => (
                alerts::ActiveModel {
                    status: Set("sent".into()),
                    times_sent: Set(row.times_sent + 1),
                    attempts: Set(0),
                    last_error: Set(None),
                    sent_at: Set(Some(at)),
                    updated_at: Set(at),
                    ..Default::default()
                },
                notification_channels::ActiveModel {
                    last_sent_at: Set(Some(at)),
                    last_error: Set(None),
                    ..Default::default()
                },
            ),
            Err(failure) => (
                alerts::ActiveModel {
                    status: Set("failed".into()),
                    last_error: Set(Some(failure.message.clone())),
                    updated_at: Set(at),
                    ..Default::default()
                },
                notification_channels::ActiveModel {
                    last_error: Set(Some(failure.message.clone())),
                    ..Default::default()
                },
            ),
        };
        alerts::Entity::update_many()
            .set(row_update)
            .filter(alerts::Column::Id.eq(row.id.as_str()))
            .filter(alerts::Column::Status.eq("sending"))
            .exec(&self.db)
            .await?;
        notification_channels::Entity::update_many()
            .set(channel_update)
            .filter(notification_channels::Column::Id.eq(channel.id.as_str()))
            .exec(&self.db)
            .await?;
        match outcome {
            Ok(_) => {
                crate::metrics::alert(&notice.kind, "sent");
                tracing::info!(tenant_id = %channel.tenant_id, channel_id = %channel.id, kind = %notice.kind, "alert sent");
                Ok(true)
            }
            Err(failure) => {
                crate::metrics::alert(&notice.kind, "failed");
                tracing::warn!(tenant_id = %channel.tenant_id, channel_id = %channel.id, kind = %notice.kind, error = %failure.message, "alert not delivered");
                Ok(false)
            }
        }
    }

    /// The alert row of `condition` on `channel`, inserted as `pending` unless it is there.
    async fn alert_row(
        &self,
        channel: &notification_channels::Model,
        condition: &Condition,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<alerts::Model>> {
        alerts::Entity::insert(alerts::ActiveModel {
            id: Set(crate::new_id()),
            tenant_id: Set(channel.tenant_id.clone()),
            channel_id: Set(channel.id.clone()),
            condition_key: Set(condition.key.clone()),
            kind: Set(condition.kind.to_string()),
            subject_id: Set(condition.subject_id.clone()),
            summary: Set(condition.summary.clone()),
            status: Set("pending".into()),
            times_sent: Set(0),
            attempts: Set(0),
            last_error: Set(None),
            last_attempt_at: Set(None),
            sent_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([alerts::Column::ChannelId, alerts::Column::ConditionKey])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(alerts::Entity::find()
            .filter(alerts::Column::ChannelId.eq(channel.id.as_str()))
            .filter(alerts::Column::ConditionKey.eq(condition.key.as_str()))
            .one(&self.db)
            .await?)
    }

    /// Whether an alert row may be sent now: never sent; sent longer than a period ago; failed
    /// and its backoff (the check interval, doubling, at most a period) is over; or claimed by
    /// a process that never finished.
    fn due(&self, row: &alerts::Model, now: DateTime<Utc>) -> bool {
        match row.status.as_str() {
            // An incident is told once, however long it stays open.
            "sent" if row.kind == kind::ANOMALY => false,
            "sent" => row.sent_at.is_none_or(|at| now - at >= self.period),
            "failed" => {
                let interval = chrono::Duration::from_std(self.interval)
                    .unwrap_or(chrono::Duration::seconds(30));
                let backoff = (interval
                    * 2i32.saturating_pow(row.attempts.clamp(1, 16) as u32 - 1))
                .min(self.period);
                row.last_attempt_at.is_none_or(|at| now - at >= backoff)
            }
            "sending" => row
                .last_attempt_at
                .is_none_or(|at| now - at >= CLAIM_TIMEOUT),
            _ => true,
        }
    }
}

/// Checks for alerts every `interval` until the process stops.
pub async fn check_forever(notifier: Arc<Notifier>) {
    let mut ticker = tokio::time::interval(notifier.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = notifier.check().await {
            tracing::warn!(error = format!("{e:#}"), "checking alert conditions failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_hide_the_path() {
        assert_eq!(
            url_hint("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/…"
        );
    }
}
