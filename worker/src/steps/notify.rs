//! `notify`: sends `message` (a template), titled by the optional `fields.subject`, to every
//! enabled notification channel of the tenant: the Slack-compatible or signed generic webhooks
//! Tributary's own alerts go to ([`crate::alerts`] sends it, as it sends alerts). A Slack
//! channel gets `{"text": "<subject>\n<message>"}`; a webhook channel the JSON notice of type
//! `flow.notify`, whose `data` holds `subject`, `message`, the other `fields`, and the flow,
//! event, delivery and step it came from.
//!
//! Once per event, step and channel, whatever the retries and replays: each channel's send is
//! claimed first in the send ledger (`email_sends`, keyed `notify:<delivery>:<channel>`), as an
//! `email` step claims its Message-ID. A channel that took the notice is never sent it again; a
//! send that failed gives its claim back, so the retry (the engine's backoff) sends to that
//! channel only; a send cut off mid-way (the process died) is not repeated, to never say it
//! twice. The notice `id` is the same on every attempt, so a receiver can drop a repeat too.
//!
//! It runs like an `http` step without a connection ([`Runs::Endpoint`]): under a lease, with
//! retries, held by no CRM connection's pause. A tenant without an enabled channel gets a dead
//! letter saying to add one (retry it once there is).

use entity::{TenantOwned, connections, deliveries, email_sends, notification_channels};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Map, Value, json};

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates};
use crate::alerts::{Notice, Notifier, SendFailure};
use crate::crm::{BoxFuture, Connector, CrmError, CrmOutcome, ErrorKind, Trail};
use crate::flow::{Action, Operation, Step, ValidationError};

/// The `type` of the notice a webhook channel receives.
pub const NOTICE_KIND: &str = "flow.notify";

pub struct Notify;

impl StepKind for Notify {
    fn action(&self) -> Action {
        Action::Notify
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&["id", "action", "object", "message", "fields", "when"])
    }

    fn needs_object(&self) -> bool {
        false
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        if !step.has_text("message") {
            problems.push(ValidationError::new(
                "message",
                "a notify step needs the message to send, e.g. Subscription {{ object.id }} was canceled",
            ));
        }
        if step
            .object("fields")
            .is_some_and(|f| f.contains_key("message"))
        {
            problems.push(ValidationError::new(
                "fields.message",
                "the message is the step's own `message`; fields carry the subject and extra data",
            ));
        }
    }

    fn render(
        &self,
        step: &Step,
        op: &mut Operation,
        templates: &dyn Templates,
    ) -> Result<(), ValidationError> {
        let message = templates
            .text(step.message.as_deref().unwrap_or_default())
            .map_err(|message| ValidationError::new("message", message))?
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                ValidationError::new("message", "rendered empty; there is nothing to send")
            })?;
        if let Some(subject) = op.fields.get("subject").filter(|s| !s.is_string()) {
            let text = subject.to_string();
            op.fields.insert("subject".into(), Value::String(text));
        }
        op.fields.insert("message".into(), Value::String(message));
        Ok(())
    }

    fn runs(&self, _own_connection: bool) -> Runs {
        Runs::Endpoint
    }

    /// No address of its own: the tenant's channels are read when it runs. The connection is
    /// only what carries the tenant to [`StepKind::execute`].
    fn endpoint(
        &self,
        _op: &mut Operation,
        tenant_id: &str,
        _vendor_urls: crate::settings::VendorUrls,
    ) -> Result<connections::Model, CrmError> {
        let now = crate::now();
        Ok(connections::Model {
            inbound_token: None,
            vendor_account: None,
            id: String::new(),
            tenant_id: tenant_id.to_string(),
            name: "notify step".into(),
            provider: "notify".into(),
            auth_type: "none".into(),
            credentials: None,
            settings: "{}".into(),
            status: "active".into(),
            status_reason: None,
            paused_until: None,
            session: None,
            refresh_lease_until: None,
            vendor_info: "{}".into(),
            created_at: now,
            updated_at: now,
        })
    }

    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let result = match cx.connection() {
                Ok(connection) => send(cx.connector, &connection.tenant_id, cx.delivery_id, cx.op)
                    .await
                    .map(Done::Wrote),
                Err(error) => Err(error),
            };
            (result, Trail::default())
        })
    }
}

fn transient(what: &str, error: impl std::fmt::Display) -> CrmError {
    CrmError::new(ErrorKind::Transient, format!("{what}: {error}"))
}

/// The ledger key of one channel's send of one delivery's notice.
fn send_key(delivery_id: &str, channel_id: &str) -> String {
    format!("notify:{delivery_id}:{channel_id}")
}

/// What one channel made of this attempt.
enum Sent {
    /// It took the notice now.
    Now,
    /// It had it already (or another run is sending it): not sent again.
    Before(String),
    /// It refused it, or could not be reached.
    Failed(SendFailure),
}

/// Sends the operation's notice to every enabled channel of the tenant that does not have it
/// yet. Fails (retryably, unless every refusal was final) when a channel did not take it.
async fn send(
    connector: &Connector,
    tenant_id: &str,
    delivery_id: &str,
    op: &Operation,
) -> Result<CrmOutcome, CrmError> {
    let channels = notification_channels::Entity::find_in_tenant(tenant_id)
        .filter(notification_channels::Column::Enabled.eq(true))
        .order_by_asc(notification_channels::Column::Id)
        .all(&connector.db)
        .await
        .map_err(|e| transient("reading the notification channels", e))?;
    if channels.is_empty() {
        return Err(CrmError::new(
            ErrorKind::Permanent,
            "the tenant has no enabled notification channel to send this to: add one with POST /v1/notification-channels (a Slack incoming webhook or a webhook), then retry this delivery",
        ));
    }
    let notifier = Notifier::new(
        connector.db.clone(),
        connector.keyring.clone(),
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(3600),
        connector.vendor_urls,
    )
    .map_err(|e| transient("preparing the sender", e))?;
    let mut notice = notice(connector, tenant_id, delivery_id, op).await?;
    let base_id = notice.id.clone();

    let (mut sent, mut before, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for channel in &channels {
        notice.id = format!("{base_id}.{}", channel.id);
        match send_once(connector, &notifier, channel, delivery_id, &notice).await? {
            Sent::Now => sent.push(channel),
            Sent::Before(why) => before.push((channel, why)),
            Sent::Failed(failure) => failed.push((channel, failure)),
        }
    }
    let named = |c: &notification_channels::Model| format!("\"{}\" ({})", c.name, c.id);
    if !failed.is_empty() {
        let retry = failed
            .iter()
            .any(|(_, f)| f.status.is_none_or(|s| s == 408 || s == 429 || s >= 500));
        let reasons: Vec<String> = failed
            .iter()
            .map(|(c, f)| format!("{}: {}", named(c), f.message))
            .collect();
        let mut error = CrmError::new(
            if retry {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            },
            format!(
                "{} of {} notification channels did not take the notice ({}); {} already have it and are not sent it again",
                failed.len(),
                channels.len(),
                reasons.join("; "),
                sent.len() + before.len()
            ),
        );
        error.vendor_status = failed.iter().find_map(|(_, f)| f.status);
        return Err(error);
    }
    Ok(CrmOutcome {
        record_id: base_id,
        warnings: before
            .iter()
            .map(|(c, why)| format!("{} {why}; not sent again", named(c)))
            .collect(),
        response: Some(json!({
            "channels": channels.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "sent": sent.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "already_sent": before.iter().map(|(c, _)| c.id.clone()).collect::<Vec<_>>(),
            "subject": op.fields.get("subject"),
            "message": op.fields.get("message"),
        })),
    })
}

/// The notice of this delivery: the same `id` (and content) on every attempt.
async fn notice(
    connector: &Connector,
    tenant_id: &str,
    delivery_id: &str,
    op: &Operation,
) -> Result<Notice, CrmError> {
    let delivery = deliveries::Entity::find_by_id(delivery_id.to_string())
        .one(&connector.db)
        .await
        .map_err(|e| transient("reading the delivery", e))?;
    let text = |key: &str| op.fields.get(key).and_then(Value::as_str).map(str::trim);
    let message = text("message").unwrap_or_default().to_string();
    let subject = text("subject").filter(|s| !s.is_empty());
    let summary = match subject {
        Some(subject) => format!("{subject}\n{message}"),
        None => message.clone(),
    };
    let extra: Map<String, Value> = op
        .fields
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "subject" | "message"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(Notice {
        id: format!("notify_{delivery_id}"),
        kind: NOTICE_KIND.to_string(),
        tenant_id: tenant_id.to_string(),
        created_at: crate::now(),
        summary,
        data: json!({
            "subject": subject,
            "message": message,
            "fields": extra,
            "step": op.step,
            "delivery_id": delivery_id,
            "flow_id": delivery.as_ref().map(|d| d.flow_id.clone()),
            "event_id": delivery.as_ref().map(|d| d.event_id.clone()),
        }),
    })
}

/// Sends the notice to one channel unless the ledger says it has it, or another run is
/// sending it; claims the send first, gives the claim back when the send failed.
async fn send_once(
    connector: &Connector,
    notifier: &Notifier,
    channel: &notification_channels::Model,
    delivery_id: &str,
    notice: &Notice,
) -> Result<Sent, CrmError> {
    let key = send_key(delivery_id, &channel.id);
    let earlier = email_sends::Entity::find_by_id(key.clone())
        .filter(email_sends::Column::TenantId.eq(channel.tenant_id.as_str()))
        .one(&connector.db)
        .await
        .map_err(|e| transient("reading the send ledger", e))?;
    if let Some(earlier) = earlier {
        let at = earlier.updated_at.to_rfc3339();
        return Ok(Sent::Before(if earlier.status == "sent" {
            format!("took this notice at {at}")
        } else {
            format!(
                "was being sent this notice at {at} when that attempt was cut off, so it may have it"
            )
        }));
    }
    let now = crate::now();
    let claimed = email_sends::Entity::insert(email_sends::ActiveModel {
        message_id: Set(key.clone()),
        tenant_id: Set(channel.tenant_id.clone()),
        connection_id: Set(channel.id.clone()),
        status: Set("sending".into()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(email_sends::Column::MessageId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&connector.db)
    .await
    .map_err(|e| transient("recording the send", e))?;
    if claimed != 1 {
        return Ok(Sent::Before(
            "is being sent this notice by another run".into(),
        ));
    }
    match notifier.send(channel, notice).await {
        Ok(_) => {
            email_sends::Entity::update_many()
                .set(email_sends::ActiveModel {
                    status: Set("sent".into()),
                    updated_at: Set(crate::now()),
                    ..Default::default()
                })
                .filter(email_sends::Column::MessageId.eq(key.as_str()))
                .exec(&connector.db)
                .await
                .map_err(|e| transient("recording the send", e))?;
            crate::metrics::alert(NOTICE_KIND, "sent");
            Ok(Sent::Now)
        }
        Err(failure) => {
            // Not taken: a later attempt sends it.
            let _ = email_sends::Entity::delete_by_id(key)
                .exec(&connector.db)
                .await;
            crate::metrics::alert(NOTICE_KIND, "failed");
            tracing::warn!(tenant_id = %channel.tenant_id, channel_id = %channel.id, error = %failure.message, "a notify step's notice was not delivered");
            Ok(Sent::Failed(failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(step: Value) -> Vec<(String, String)> {
        let mut found = Vec::new();
        Notify.validate(
            &Shape {
                map: step.as_object().expect("an object"),
            },
            &mut found,
        );
        found.into_iter().map(|p| (p.path, p.message)).collect()
    }

    #[test]
    fn a_notify_step_needs_its_message_and_keeps_fields_for_the_rest() {
        assert_eq!(
            problems(
                json!({"id": "n", "action": "notify", "message": "Canceled {{ object.id }}",
                            "fields": {"subject": "Churn", "amount": "{{ object.amount }}"}})
            ),
            vec![]
        );
        let found = problems(json!({"id": "n", "action": "notify", "message": " ",
                                    "fields": {"message": "x"}}));
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["message", "fields.message"]);
        assert_eq!(Notify.runs(false), Runs::Endpoint);
        assert_eq!(Notify.runs(true), Runs::Endpoint);
    }

    #[test]
    fn the_endpoint_carries_the_tenant_and_no_credentials() {
        let mut op = crate::flow::Operation {
            step: "alert".into(),
            action: Action::Notify,
            object: String::new(),
            match_fields: Map::new(),
            fields: Map::new(),
            record_id: None,
            fallback_fields: Vec::new(),
            associate: Vec::new(),
            method: None,
            path: None,
            expand: Vec::new(),
            select: Vec::new(),
            connection_id: None,
            url: None,
            headers: Map::new(),
            review: None,
            decided: None,
            secrets: Vec::new(),
        };
        let target = Notify
            .endpoint(&mut op, "tenant_1", crate::settings::VendorUrls::Any)
            .expect("a connection");
        assert_eq!(target.tenant_id, "tenant_1");
        assert!(target.id.is_empty(), "no connection of the tenant's");
        assert_eq!(target.credentials, None);
        assert_eq!(send_key("d1", "c1"), "notify:d1:c1");
    }
}
