//! Zoho CRM changes into Tributary, two ways (NOTIFICATIONS.md):
//!
//! - **Notifications** (`notifications: true`): one channel per connection
//!   ([`ensure_channel`], `POST {api}/crm/v8/actions/watch`) watches `<Module>.all` of every
//!   module in `watch`, with the connection's inbound URL as `notify_url` and a token of at most
//!   50 characters that every callback carries back. Zoho documents no signature, so
//!   [`parse_notification`] compares that token in constant time and turns each record id of
//!   the callback into a [`CrmEvent`]. Callbacks are hints: [`hydrate`] re-reads the record
//!   before flows see it. Channels expire (at most a week; an hour when Zoho does not take the
//!   expiry asked for): each is asked for 6 days and renewed with `PATCH` once less than a day
//!   is left; a channel Zoho has dropped (`NOT_SUBSCRIBED`) is enabled again with `POST`.
//! - **Polling** (the default, [`poll_module`]): every `poll_seconds` the records of a module
//!   modified since the watch's cursor, oldest first (see below).
//!
//! **Where the channel is kept**: in the `crm_watches` row of object [`CHANNEL_OBJECT`] of the
//! connection (one channel for all its modules, as Zoho's `events` list allows): `channel_id`,
//! `channel_expires_at` (the earliest `channel_expiry` Zoho answered) and `last_error`. Its
//! `seen` holds a digest of the channel's details (events, notify URL, token), so that a change
//! to any of them is sent to Zoho (`PUT`, replacing every detail) without keeping the token.
//!
//! **Polling, how**: `GET /crm/v8/<Module>?fields=…&sort_by=Modified_Time&sort_order=asc&page=N
//! &per_page=200` with `If-Modified-Since`, rather than COQL: both need the field names, but the
//! list needs no query language and Zoho answers 304 when nothing changed. The field names are
//! the module's (`/settings/fields`, read once per poll: one API call, counted, so fields added
//! since are not missed), the modification fields first, at most 50 (Zoho's limit). A poll reads
//! at most 10 pages (the 2,000 records Zoho pages without a `page_token`); the rest follow on
//! the next poll, as the cursor has moved.
//! - **Where a poll starts**: the cursor (the newest `Modified_Time` seen, as Zoho wrote it)
//!   minus [`OVERLAP`], since Zoho's times are whole seconds and a change can commit after a
//!   poll with an earlier time. The first poll of a module starts [`FIRST_WINDOW`] before now:
//!   watching begins about now, the org's history is not replayed; a first poll that finds
//!   nothing keeps that start as the cursor, so no later change is missed however far apart
//!   the polls are.
//! - **Dedupe**: an event per (`id`, `Modified_Time`): the watch keeps the `id@Modified_Time`
//!   pairs still inside the overlap (`seen`), and the inbox keys the event by the same pair.
//! - **Events**: `<Module>.created` when `Created_Time` equals `Modified_Time` and no version
//!   of the record was stored, else `<Module>.updated` (deletions are not listed; they come
//!   with notifications); `previous` from the last stored version ([`super::versions`]);
//!   an echo when `Modified_By.id` is the connection's `integration_user_id`. Every request is
//!   counted in the watch's `api_calls`; the next poll is due `poll_seconds` (60) later.

use chrono::{DateTime, Utc};
use entity::{connections, crm_watches};
use reqwest::Method;
use sea_orm::{ActiveValue::Set, DatabaseConnection};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::watches::{self, Clock, Progress, poll_interval, with_call};
use super::{CrmEvent, parse_stamp, versions};
use crate::crm::zoho::{self as api, Zoho};
use crate::crm::{Call, Connector};
use crate::queue::Queue;

pub use super::watches::DEFAULT_POLL_SECONDS;

/// The object of the `crm_watches` row that keeps a connection's notification channel.
pub const CHANNEL_OBJECT: &str = "_channel";
/// How little of a channel's life may be left before it is renewed.
pub const RENEW_WITHIN: chrono::Duration = chrono::Duration::days(1);
/// Zoho's longest channel token.
pub const MAX_TOKEN: usize = 50;
/// How far behind the cursor each poll starts again.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(2);
/// How far back the first poll of a module looks.
pub const FIRST_WINDOW: chrono::Duration = chrono::Duration::minutes(5);
/// Most pages one poll reads (200 records each: Zoho's reach without a `page_token`).
pub const MAX_PAGES: u32 = 10;

/// What [`ensure_channel`] did to the connection's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAction {
    /// Live, with more than a day left: nothing sent.
    Kept,
    /// Enabled (`POST`): there was none.
    Created,
    /// Expiry moved on (`PATCH`).
    Renewed,
    /// Its modules, notify URL or token changed (`PUT`).
    Updated,
    /// Zoho had dropped it: enabled again under a new id (`POST`).
    Recreated,
}

/// The connection's channel after [`ensure_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    pub channel_id: String,
    pub expires_at: DateTime<Utc>,
    pub action: ChannelAction,
}

/// What one poll of one module did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOutcome {
    /// Events stored (new to the inbox).
    pub events: usize,
    /// API calls this poll made (the field list and each page).
    pub api_calls: u64,
    /// The watch's cursor after the poll.
    pub cursor: Option<String>,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// Not JSON, or not shaped like Zoho's callbacks.
    #[error("not a Zoho CRM notification: {0}")]
    Malformed(String),
    /// The token is not the channel's: not from Zoho, or for another channel.
    #[error("the notification's token is not the channel's")]
    WrongToken,
}

fn settings_of(connection: &connections::Model) -> Map<String, Value> {
    serde_json::from_str(&connection.settings).unwrap_or_default()
}

/// Whether `record` was last modified by the connection's integration user; `None` when the
/// connection names none.
fn modified_by_integration(
    settings: &Map<String, Value>,
    record: &Map<String, Value>,
) -> Option<bool> {
    let user = crate::crm::config::text(settings, "integration_user_id")?;
    let by = text_of(record.get("Modified_By").and_then(|b| b.get("id")));
    Some(by.as_deref() == Some(user))
}

/// The digest of a channel's details, kept instead of the token.
fn fingerprint(events: &[String], notify_url: &str, token: &str) -> String {
    use sha2::Digest;
    let text = format!("{}\n{notify_url}\n{token}", events.join(","));
    hex::encode(sha2::Sha256::digest(text))
}

/// Renews, updates or (re)creates the channel as the stored row calls for.
async fn channel_call(
    call: &mut Call<'_>,
    row: &crm_watches::Model,
    same: bool,
    events: &[String],
    notify_url: &str,
    token: &str,
) -> anyhow::Result<ChannelState> {
    let now = crate::now();
    let live = row.channel_expires_at.is_some_and(|at| at > now);
    let mut action = ChannelAction::Created;
    if let Some(id) = row.channel_id.as_deref() {
        action = ChannelAction::Recreated;
        if live {
            let method = if same { Method::PATCH } else { Method::PUT };
            let body = api::channel_body(id, events, notify_url, token);
            if let api::Watched::Until(expires_at) = api::send_watch(call, method, body).await? {
                let action = if same {
                    ChannelAction::Renewed
                } else {
                    ChannelAction::Updated
                };
                return Ok(ChannelState {
                    channel_id: id.to_string(),
                    expires_at,
                    action,
                });
            }
        }
    }
    let id = api::new_channel_id();
    match api::send_watch(
        call,
        Method::POST,
        api::channel_body(&id, events, notify_url, token),
    )
    .await?
    {
        api::Watched::Until(expires_at) => Ok(ChannelState {
            channel_id: id,
            expires_at,
            action,
        }),
        api::Watched::NotSubscribed => {
            anyhow::bail!("Zoho CRM answered NOT_SUBSCRIBED to a new channel")
        }
    }
}

/// Keeps the connection's notification channel alive: enables one watching `<Module>.all` of
/// each of `modules`, posting to `notify_url` with `token` (at most 50 characters), renews it
/// when less than a day is left, sends changed details, and enables it again when Zoho has
/// dropped it. The channel is kept on the connection's [`CHANNEL_OBJECT`] watch; a failure is
/// kept there as `last_error` and returned.
pub async fn ensure_channel(
    db: &DatabaseConnection,
    connector: &Connector,
    connection: &connections::Model,
    modules: &[String],
    notify_url: &str,
    token: &str,
) -> anyhow::Result<ChannelState> {
    if modules.is_empty() {
        anyhow::bail!("a Zoho notification channel needs at least one module to watch");
    }
    if token.is_empty() || token.chars().count() > MAX_TOKEN {
        anyhow::bail!("a Zoho channel token has 1 to {MAX_TOKEN} characters");
    }
    let row = watches::watch_row(db, connection, CHANNEL_OBJECT).await?;
    let events: Vec<String> = modules.iter().map(|m| format!("{m}.all")).collect();
    let digest = fingerprint(&events, notify_url, token);
    let seen: Vec<String> = serde_json::from_str(&row.seen).unwrap_or_default();
    let same = seen.first() == Some(&digest);
    if let (Some(id), Some(expires_at)) = (&row.channel_id, row.channel_expires_at)
        && same
        && expires_at > crate::now() + RENEW_WITHIN
    {
        return Ok(ChannelState {
            channel_id: id.clone(),
            expires_at,
            action: ChannelAction::Kept,
        });
    }
    let result = with_call(connector, connection, &Zoho, async |call| {
        channel_call(call, &row, same, &events, notify_url, token).await
    })
    .await;
    match &result {
        Ok(state) => {
            let update = crm_watches::ActiveModel {
                channel_id: Set(Some(state.channel_id.clone())),
                channel_expires_at: Set(Some(state.expires_at)),
                seen: Set(json!([digest]).to_string()),
                last_error: Set(None),
                ..Default::default()
            };
            watches::update(db, &row.id, update).await?;
        }
        Err(e) => watches::record_failure(db, &row.id, e).await?,
    }
    result
}

/// `insert` → `created`, `update` → `updated`, `delete` → `deleted`; others as they are.
fn event_kind(operation: &str) -> &str {
    match operation {
        "insert" => "created",
        "update" => "updated",
        "delete" => "deleted",
        other => other,
    }
}

/// A text or number field of the callback, as text.
fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A callback Zoho posted to a channel's `notify_url`, checked against the channel's token
/// (constant time) and turned into one event per record id: `<Module>.created|updated|
/// deleted`, keyed `{channel_id}:{server_time}:{id}:{operation}`, with the record's id and the
/// changed values the callback carries, `vendor` the whole callback.
pub fn parse_notification(
    body: &[u8],
    expected_token: &str,
) -> Result<Vec<CrmEvent>, NotificationError> {
    let malformed = |what: &str| NotificationError::Malformed(what.to_string());
    let callback: Value = serde_json::from_slice(body).map_err(|e| malformed(&e.to_string()))?;
    let object = callback
        .as_object()
        .ok_or_else(|| malformed("not a JSON object"))?;
    let token = object.get("token").and_then(Value::as_str).unwrap_or("");
    let matches: bool = token.as_bytes().ct_eq(expected_token.as_bytes()).into();
    if expected_token.is_empty() || !matches {
        return Err(NotificationError::WrongToken);
    }
    let module = text_of(object.get("module")).ok_or_else(|| malformed("no module"))?;
    let operation = text_of(object.get("operation")).ok_or_else(|| malformed("no operation"))?;
    let channel_id = text_of(object.get("channel_id")).ok_or_else(|| malformed("no channel_id"))?;
    let server_time = match object.get("server_time") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| malformed("no server_time"))?;
    let ids: Vec<String> = object
        .get("ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(|id| text_of(Some(id))).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(malformed("no ids"));
    }
    let mut values = api::affected_values(object.get("affected_fields"), &ids);
    let kind = event_kind(&operation);
    Ok(ids
        .into_iter()
        .map(|id| {
            let mut record = values.remove(&id).unwrap_or_default();
            record.insert("id".into(), Value::String(id.clone()));
            CrmEvent {
                source: "zoho",
                key: format!("{channel_id}:{server_time}:{id}:{operation}"),
                event_type: format!("{module}.{kind}"),
                object: module.clone(),
                record_id: id,
                occurred_at_ms: server_time,
                record,
                previous: Map::new(),
                echo: false,
                vendor: callback.clone(),
            }
        })
        .collect())
}

/// A stored Zoho event payload with the record as Zoho has it now: notifications are hints,
/// so a created or updated record is read again (`GET /crm/v8/<Module>/<id>`), `data.object`
/// becomes its fields, `data.previous_attributes` what they were at the last version seen, and
/// `echo` whether the connection's `integration_user_id` modified it last. `None` when the
/// record is gone. Deletions, and polled events (whole records already), come back as they are.
pub async fn hydrate(
    db: &DatabaseConnection,
    connector: &Connector,
    connection: &connections::Model,
    payload: &Value,
) -> anyhow::Result<Option<Value>> {
    let vendor = payload.get("vendor");
    // A callback names its operation and ids; a polled record does not.
    let operation = vendor
        .filter(|v| v.get("ids").is_some())
        .and_then(|v| v.get("operation"))
        .and_then(Value::as_str);
    if operation.is_none_or(|op| op == "delete") {
        return Ok(Some(payload.clone()));
    }
    let module = vendor
        .and_then(|v| v.get("module"))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the Zoho notification names no module"))?;
    let id = payload
        .pointer("/data/object/id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the Zoho event names no record id"))?;
    let mut call = Call::open(connector, connection, &Zoho)?;
    let read = api::read_record(&mut call, module, id).await;
    call.finish().await;
    let Some(mut record) = read? else {
        return Ok(None);
    };
    record.insert("id".into(), Value::String(id.to_string()));
    let stamp = record
        .get("Modified_Time")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let previous = versions::previous_and_remember(
        db,
        &connection.tenant_id,
        &connection.id,
        module,
        id,
        &record,
        &stamp,
        false,
    )
    .await?;
    let mut hydrated = payload.clone();
    if let Some(echo) = modified_by_integration(&settings_of(connection), &record) {
        hydrated["echo"] = Value::Bool(echo);
    }
    hydrated["data"] = json!({"object": record, "previous_attributes": previous});
    Ok(Some(hydrated))
}

/// The clock of Zoho's watches: its stamps, [`OVERLAP`] and [`FIRST_WINDOW`].
const CLOCK: Clock = Clock {
    parse: parse_stamp,
    overlap: OVERLAP,
    first_window: FIRST_WINDOW,
    keep_before: chrono::Duration::zero(),
};

/// Where one poll stands: its progress on the watch, and the connection's settings.
struct Poll<'a> {
    progress: Progress<'a>,
    settings: Map<String, Value>,
}

impl Poll<'_> {
    /// The field names, then the pages of records modified since the start.
    async fn run(&mut self, call: &mut Call<'_>) -> anyhow::Result<()> {
        let module = self.progress.object;
        self.progress.calls += 1;
        let fields = api::field_names(call, module).await?;
        let since = self.progress.since();
        if self.progress.cursor.is_none() {
            self.progress.cursor = Some(api::iso_text(since + OVERLAP));
        }
        let since = api::iso_text(since);
        for page in 1..=MAX_PAGES {
            self.progress.calls += 1;
            let (records, more) = api::modified_since(call, module, &fields, &since, page).await?;
            for record in &records {
                self.take(record).await?;
            }
            self.progress.save().await?;
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Turns one record into an event unless seen, and stores it (see [`Progress::store`]).
    async fn take(&mut self, record: &Map<String, Value>) -> anyhow::Result<()> {
        let text = |name: &str| text_of(record.get(name));
        let module = self.progress.object;
        let (Some(id), Some(stamp)) = (text("id"), text("Modified_Time")) else {
            tracing::warn!(module, "a polled Zoho record without id or Modified_Time");
            return Ok(());
        };
        if self.progress.has_seen(&id, &stamp) {
            return Ok(());
        }
        let before = self.progress.last_version(&id).await?;
        let created = before.is_none() && text("Created_Time").as_deref() == Some(stamp.as_str());
        let kind = if created { "created" } else { "updated" };
        let at = parse_stamp(&stamp);
        let event = CrmEvent {
            source: "zoho",
            key: watches::pair(&id, &stamp),
            event_type: format!("{module}.{kind}"),
            object: module.to_string(),
            record_id: id,
            occurred_at_ms: at.map_or(0, |at| at.timestamp_millis()),
            record: record.clone(),
            previous: versions::previous_values(before.as_ref(), record),
            echo: modified_by_integration(&self.settings, record) == Some(true),
            vendor: Value::Object(record.clone()),
        };
        // Merged: a module with more than 50 fields is polled on its first 50.
        self.progress
            .store(&event, before.as_ref(), &stamp, true)
            .await
    }
}

/// Polls one module the connection watches: the records modified since the watch's cursor
/// become events in the inbox, and the watch moves on (see the module's documentation). On
/// failure the watch keeps what was done, records the error in `last_error`, and the error is
/// returned.
pub async fn poll_module(
    db: &DatabaseConnection,
    queue: &Queue,
    connector: &Connector,
    connection: &connections::Model,
    module: &str,
) -> anyhow::Result<PollOutcome> {
    let progress = Progress::open(db, queue, connection, module, CLOCK).await?;
    let settings = settings_of(connection);
    let interval = poll_interval(&settings);
    let mut poll = Poll { progress, settings };
    let result = with_call(connector, connection, &Zoho, async |call| {
        poll.run(call).await
    })
    .await;
    let progress = &poll.progress;
    progress.finish(interval, &result).await?;
    result?;
    Ok(PollOutcome {
        events: progress.events,
        api_calls: progress.calls,
        cursor: progress.cursor.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "acme-7f3c9e2b41d84a";

    fn callback(operation: &str, ids: Value, affected: Value) -> Vec<u8> {
        json!({"server_time": 1_735_689_601_234_i64, "query_params": {"tenant": "acme"},
               "module": "Deals", "resource_uri": "https://www.zohoapis.com/crm/v2/Deals",
               "ids": ids, "affected_fields": affected, "operation": operation,
               "channel_id": "1000000068001", "token": TOKEN})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_callback_with_the_channels_token_is_one_event_per_record() {
        let body = callback("insert", json!(["5725767000003000064"]), json!([]));
        let events = parse_notification(&body, TOKEN).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.source, "zoho");
        assert_eq!(event.event_type, "Deals.created");
        assert_eq!(event.object, "Deals");
        assert_eq!(event.record_id, "5725767000003000064");
        assert_eq!(
            event.key,
            "1000000068001:1735689601234:5725767000003000064:insert"
        );
        assert_eq!(event.occurred_at_ms, 1_735_689_601_234);
        assert_eq!(
            Value::Object(event.record.clone()),
            json!({"id": "5725767000003000064"})
        );
        assert!(event.previous.is_empty() && !event.echo);
        let sent: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event.vendor, sent);
        let row = super::super::new_row("t1", "conn1", event);
        assert_eq!(row.source, "zoho");
        assert_eq!(row.stripe_event_id, event.key);
    }

    #[test]
    fn a_wrong_missing_or_unexpected_token_is_refused() {
        let body = callback("insert", json!(["1"]), json!([]));
        for expected in ["acme-7f3c9e2b41d84b", "acme", ""] {
            assert_eq!(
                parse_notification(&body, expected),
                Err(NotificationError::WrongToken),
                "{expected}"
            );
        }
        let mut unsigned: Value = serde_json::from_slice(&body).unwrap();
        unsigned.as_object_mut().unwrap().remove("token");
        let unsigned = unsigned.to_string().into_bytes();
        assert_eq!(
            parse_notification(&unsigned, TOKEN),
            Err(NotificationError::WrongToken)
        );
        assert!(matches!(
            parse_notification(b"not json", TOKEN),
            Err(NotificationError::Malformed(_))
        ));
        let no_ids = callback("insert", json!([]), json!([]));
        assert!(matches!(
            parse_notification(&no_ids, TOKEN),
            Err(NotificationError::Malformed(_))
        ));
    }

    #[test]
    fn operations_map_to_created_updated_deleted() {
        for (operation, kind) in [
            ("insert", "Deals.created"),
            ("update", "Deals.updated"),
            ("delete", "Deals.deleted"),
            ("restore", "Deals.restore"),
        ] {
            let events =
                parse_notification(&callback(operation, json!(["7"]), json!([])), TOKEN).unwrap();
            assert_eq!(events[0].event_type, kind);
            assert!(events[0].key.ends_with(&format!(":7:{operation}")));
        }
    }

    #[test]
    fn several_ids_are_several_events_with_the_values_each_carries() {
        let ids = json!(["11", "12"]);
        // Values per record id.
        let per_record = json!([{"11": {"Stage": "Closed Won"}}, {"12": {"Amount": 10}}]);
        let events =
            parse_notification(&callback("update", ids.clone(), per_record), TOKEN).unwrap();
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].key, events[1].key);
        assert_eq!(
            Value::Object(events[0].record.clone()),
            json!({"id": "11", "Stage": "Closed Won"})
        );
        assert_eq!(
            Value::Object(events[1].record.clone()),
            json!({"id": "12", "Amount": 10})
        );
        // Names only: nothing but the id is known.
        let names = json!(["Stage", "Amount"]);
        let events = parse_notification(&callback("update", ids.clone(), names), TOKEN).unwrap();
        assert!(events.iter().all(|e| e.record.len() == 1));
        // Values for the whole callback, as pairs or as one object.
        for shape in [
            json!([{"api_name": "Stage", "value": "Lost"}]),
            json!([{"Stage": "Lost", "id": "ignored"}]),
        ] {
            let events =
                parse_notification(&callback("update", ids.clone(), shape), TOKEN).unwrap();
            for (event, id) in events.iter().zip(["11", "12"]) {
                assert_eq!(
                    Value::Object(event.record.clone()),
                    json!({"id": id, "Stage": "Lost"})
                );
            }
        }
        // Numeric ids and a numeric channel id read as text.
        let mut numeric: Value =
            serde_json::from_slice(&callback("delete", json!([]), json!([]))).unwrap();
        numeric["ids"] = json!([13]);
        numeric["channel_id"] = json!(1000000068001_u64);
        let events = parse_notification(numeric.to_string().as_bytes(), TOKEN).unwrap();
        assert_eq!(events[0].key, "1000000068001:1735689601234:13:delete");
    }

    #[test]
    fn the_channel_digest_changes_with_any_detail() {
        let events = vec!["Deals.all".to_string()];
        let base = fingerprint(&events, "https://h/webhooks/zoho/x", "t");
        assert_eq!(base, fingerprint(&events, "https://h/webhooks/zoho/x", "t"));
        assert_ne!(base, fingerprint(&events, "https://h/webhooks/zoho/x", "u"));
        assert_ne!(base, fingerprint(&events, "https://h/webhooks/zoho/y", "t"));
        assert_ne!(base, fingerprint(&[], "https://h/webhooks/zoho/x", "t"));
        assert_eq!(base.len(), 64);
    }
}
