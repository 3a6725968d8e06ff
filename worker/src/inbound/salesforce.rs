//! Salesforce change capture by polling: for each object a connection watches (`watch`), a
//! `queryAll` on `SystemModstamp` every `poll_seconds` turns the rows changed since the last
//! poll into [`CrmEvent`]s in the inbox.
//!
//! - **Why `SystemModstamp`**: it is indexed and also moves on system changes, unlike
//!   `LastModifiedDate`. **Why `queryAll`**: it also returns the records in the recycle bin
//!   (`IsDeleted`), so deletions become events.
//! - **Where a poll starts**: at the watch's cursor (the newest `SystemModstamp` seen) minus an
//!   overlap of [`OVERLAP`], because many records share a timestamp (comparisons ignore
//!   milliseconds) and a transaction can commit after a poll with an earlier stamp. The first
//!   poll of a watch starts [`FIRST_WINDOW`] before now: watching begins about now, the org's
//!   history is not replayed. A first poll that finds nothing keeps that start as the cursor.
//! - **Dedupe**: a row is an event once per (`Id`, `SystemModstamp`). The watch keeps the
//!   `Id@stamp` pairs still inside the overlap (`seen`), so the overlap and equal stamps never
//!   make an event twice, and the inbox keys the event by the same pair, so a duplicate is
//!   impossible anyway.
//! - **Which fields**: `Id, SystemModstamp, IsDeleted, LastModifiedById, CreatedDate` and the
//!   object's other fields, read from its `describe` once per poll (one API call per poll,
//!   counted). `FIELDS(ALL)` needs a `LIMIT`, and a describe kept from an earlier poll would
//!   miss fields added since. Compound (`address`, `location`) and `base64` fields are left
//!   out (a compound's parts are selected on their own), and the list stops short of
//!   Salesforce's URI limit (16,384 bytes with the headers).
//! - **Events**: `<Object>.deleted` when `IsDeleted`; `<Object>.created` when `CreatedDate`
//!   equals `SystemModstamp` and the record was never seen; else `<Object>.updated`. `record` is
//!   the row without `attributes`, `previous` what the changed fields were at the last version
//!   seen ([`super::versions`]), `vendor` the row verbatim; an event is an echo when
//!   `LastModifiedById` is the connection's `integration_user_id`.
//! - **Costs**: every request (the describe, each page) is counted in the watch's `api_calls`;
//!   the `Sforce-Limit-Info` usage of the last answer is recorded on the connection
//!   (`vendor_info.api_usage`) and returned. A daily limit reached postpones the next poll by
//!   the pause Salesforce's error asks for.

use chrono::{DateTime, Utc};
use entity::connections;
use reqwest::Method;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};

use super::watches::{Clock, Progress, poll_interval, with_call};
use super::{CrmEvent, versions};
use crate::crm::salesforce::{Salesforce, classify, send};
use crate::crm::{Call, Connector, CrmError, ErrorKind, Request};
use crate::queue::Queue;

pub use super::watches::DEFAULT_POLL_SECONDS;

/// How far behind the cursor each poll starts again.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(2);
/// How far back the first poll of a watch looks.
pub const FIRST_WINDOW: chrono::Duration = chrono::Duration::minutes(5);
/// Most pages with new changes one poll reads (2,000 rows each at most); pages of rows seen
/// before (the overlap) do not count.
pub const MAX_PAGES: usize = 25;

/// The fields every poll selects, first.
pub const SYSTEM_FIELDS: [&str; 5] = [
    "Id",
    "SystemModstamp",
    "IsDeleted",
    "LastModifiedById",
    "CreatedDate",
];
/// Field types left out of the selection.
const UNSELECTED_TYPES: [&str; 3] = ["address", "location", "base64"];
/// Most bytes the encoded query may take, leaving room under the 16,384 bytes of URI and
/// headers for the path and the headers.
const QUERY_BUDGET: usize = 12_000;

/// What one poll of one object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOutcome {
    /// Events stored (new to the inbox).
    pub events: usize,
    /// API calls this poll made (the describe and each page).
    pub api_calls: u64,
    /// The watch's cursor after the poll.
    pub cursor: Option<String>,
    /// The org's API usage the last answer reported (`Sforce-Limit-Info`): used, limit.
    pub api_usage: Option<(u64, u64)>,
}

/// A Salesforce datetime (`2024-05-01T12:34:56.000+0000`, or ISO-8601 with `Z`).
pub fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// A datetime as Salesforce writes one.
pub fn format_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// The SOQL of a poll: the changed rows since `since`, oldest first.
pub fn changes_query(object: &str, fields: &[String], since: DateTime<Utc>) -> String {
    format!(
        "SELECT {} FROM {object} WHERE SystemModstamp >= {} ORDER BY SystemModstamp, Id",
        fields.join(", "),
        since.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The fields a poll selects: [`SYSTEM_FIELDS`], then the describe's other selectable fields,
/// as many as fit the URI. Returns them and how many were left out for want of room.
pub fn selected_fields(object: &str, describe: &Value) -> (Vec<String>, usize) {
    let mut fields: Vec<String> = SYSTEM_FIELDS.iter().map(|f| f.to_string()).collect();
    let encoded = |text: &str| {
        url::form_urlencoded::byte_serialize(text.as_bytes())
            .map(str::len)
            .sum::<usize>()
    };
    let mut length = encoded(&changes_query(object, &fields, Utc::now()));
    let mut dropped = 0;
    let described = describe
        .get("fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for field in described {
        let Some(name) = field.get("name").and_then(Value::as_str) else {
            continue;
        };
        let kind = field.get("type").and_then(Value::as_str).unwrap_or("");
        if UNSELECTED_TYPES.contains(&kind)
            || !is_name(name)
            || fields.iter().any(|f| f.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let more = encoded(&format!(", {name}"));
        if length + more > QUERY_BUDGET {
            dropped += 1;
            continue;
        }
        length += more;
        fields.push(name.to_string());
    }
    (fields, dropped)
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The path under the API base of a `nextRecordsUrl` (`/services/data/v60.0/query/01g…-2000`).
fn next_path(next: &str) -> Option<String> {
    let rest = next.strip_prefix("/services/data/")?;
    let (_version, path) = rest.split_once('/')?;
    Some(format!("/{path}"))
}

/// The event of one polled row, given the record's last seen fields (`None`: never seen).
pub fn row_event(
    object: &str,
    row: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    integration_user: Option<&str>,
) -> Option<CrmEvent> {
    let text = |name: &str| row.get(name).and_then(Value::as_str);
    let (id, stamp) = (text("Id")?, text("SystemModstamp")?);
    let mut record = row.clone();
    record.remove("attributes");
    let modified = parse_stamp(stamp);
    let created = before.is_none()
        && text("CreatedDate").is_some_and(|c| c == stamp || parse_stamp(c) == modified);
    let action = if row.get("IsDeleted").and_then(Value::as_bool) == Some(true) {
        "deleted"
    } else if created {
        "created"
    } else {
        "updated"
    };
    let echo = integration_user
        .is_some_and(|user| !user.is_empty() && text("LastModifiedById") == Some(user));
    Some(CrmEvent {
        source: "salesforce",
        key: format!("{id}@{stamp}"),
        event_type: format!("{object}.{action}"),
        object: object.to_string(),
        record_id: id.to_string(),
        occurred_at_ms: modified.unwrap_or_else(Utc::now).timestamp_millis(),
        previous: versions::previous_values(before, &record),
        record,
        echo,
        vendor: Value::Object(row.clone()),
    })
}

/// The clock of Salesforce's watches: its stamps, [`OVERLAP`], [`FIRST_WINDOW`], and a second
/// more of `seen`, as Salesforce compares at whole seconds.
const CLOCK: Clock = Clock {
    parse: parse_stamp,
    overlap: OVERLAP,
    first_window: FIRST_WINDOW,
    keep_before: chrono::Duration::seconds(1),
};

/// Where one poll stands: its progress on the watch, and what Salesforce said of the limits.
struct Poll<'a> {
    progress: Progress<'a>,
    usage: Option<(u64, u64)>,
    integration_user: Option<String>,
}

impl Poll<'_> {
    async fn get(&mut self, call: &mut Call<'_>, request: Request) -> anyhow::Result<Value> {
        self.progress.calls += 1;
        let reply = send(call, request).await?;
        if let Some(usage) = reply
            .header("sforce-limit-info")
            .and_then(crate::crm::limits::parse_api_usage)
        {
            self.usage = Some(usage);
        }
        if !reply.is_success() {
            return Err(classify(&reply).into());
        }
        reply.json().ok_or_else(|| {
            CrmError::new(ErrorKind::Transient, "Salesforce's answer was not JSON").into()
        })
    }

    /// The describe, then every page of the changes.
    async fn run(&mut self, call: &mut Call<'_>) -> anyhow::Result<()> {
        let object = self.progress.object;
        if !is_name(object) {
            anyhow::bail!("{object:?} is not a Salesforce object name");
        }
        let describe = self
            .get(
                call,
                Request::new(Method::GET, format!("/sobjects/{object}/describe")),
            )
            .await?;
        let (fields, dropped) = selected_fields(object, &describe);
        if dropped > 0 {
            tracing::warn!(
                connection_id = %self.progress.connection.id,
                object,
                dropped,
                "the object has more fields than one query can name; polling the first ones"
            );
        }
        let since = self.progress.since();
        if self.progress.cursor.is_none() {
            self.progress.cursor = Some(format_stamp(since));
        }
        let soql = changes_query(object, &fields, since);
        let mut request = Request::new(Method::GET, "/queryAll/").query("q", soql);
        let mut fresh_pages = 0;
        loop {
            if fresh_pages >= MAX_PAGES {
                // One org's backlog does not hold the watcher: the cursor is saved after each
                // page, so the next poll goes on from there.
                tracing::warn!(
                    object,
                    pages = MAX_PAGES,
                    "more changed rows follow; the next poll goes on from the cursor"
                );
                return Ok(());
            }
            let stored = self.progress.events;
            let page = self.get(call, request).await?;
            let rows = page.get("records").and_then(Value::as_array);
            for row in rows.into_iter().flatten().filter_map(Value::as_object) {
                self.take(row).await?;
            }
            if self.progress.events > stored {
                fresh_pages += 1;
            }
            self.progress.save().await?;
            if page.get("done").and_then(Value::as_bool) != Some(false) {
                return Ok(());
            }
            let next = page
                .get("nextRecordsUrl")
                .and_then(Value::as_str)
                .and_then(next_path)
                .ok_or_else(|| {
                    CrmError::new(
                        ErrorKind::Transient,
                        "Salesforce said more rows follow but named no nextRecordsUrl",
                    )
                })?;
            request = Request::new(Method::GET, next);
        }
    }

    /// Turns one row into an event unless seen, and stores it (see [`Progress::store`]).
    async fn take(&mut self, row: &Map<String, Value>) -> anyhow::Result<()> {
        let text = |name: &str| row.get(name).and_then(Value::as_str);
        let object = self.progress.object;
        let (Some(id), Some(stamp)) = (text("Id"), text("SystemModstamp")) else {
            tracing::warn!(object, "a polled row without Id or SystemModstamp");
            return Ok(());
        };
        if self.progress.has_seen(id, stamp) {
            return Ok(());
        }
        let before = self.progress.last_version(id).await?;
        let integration_user = self.integration_user.as_deref();
        let Some(event) = row_event(object, row, before.as_ref(), integration_user) else {
            return Ok(());
        };
        self.progress
            .store(&event, before.as_ref(), stamp, false)
            .await
    }
}

/// Polls one object the connection watches: the rows changed since the watch's cursor become
/// events in the inbox, and the watch moves on (see the module's documentation). On failure
/// the watch keeps what was done, records the error in `last_error`, and the error is returned.
pub async fn poll_object(
    db: &DatabaseConnection,
    queue: &Queue,
    connector: &Connector,
    connection: &connections::Model,
    object: &str,
) -> anyhow::Result<PollOutcome> {
    let progress = Progress::open(db, queue, connection, object, CLOCK).await?;
    let settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let mut poll = Poll {
        progress,
        usage: None,
        integration_user: crate::crm::config::text(&settings, "integration_user_id")
            .map(str::to_string),
    };
    let result = with_call(connector, connection, &Salesforce, async |call| {
        poll.run(call).await
    })
    .await;
    let progress = &poll.progress;
    progress.finish(poll_interval(&settings), &result).await?;
    result?;
    Ok(PollOutcome {
        events: progress.events,
        api_calls: progress.calls,
        cursor: progress.cursor.clone(),
        api_usage: poll.usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;
    use serde_json::json;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn stamps_and_pages_read_as_salesforce_writes_them() {
        let at = parse_stamp("2024-05-01T12:34:56.789+0000").unwrap();
        assert_eq!(at.timestamp_millis(), 1_714_566_896_789);
        assert_eq!(format_stamp(at), "2024-05-01T12:34:56.789+0000");
        assert_eq!(
            parse_stamp("2024-05-01T12:34:56Z"),
            Some(at.with_nanosecond(0).unwrap())
        );
        assert_eq!(
            next_path("/services/data/v60.0/query/01gD0000002HU6KIAW-2000").as_deref(),
            Some("/query/01gD0000002HU6KIAW-2000")
        );
        assert_eq!(next_path("https://elsewhere.example/x"), None);
    }

    #[test]
    fn the_query_selects_the_system_fields_then_the_described_ones_that_fit() {
        let describe = json!({"fields": [
            {"name": "Id", "type": "id"},
            {"name": "Name", "type": "string"},
            {"name": "BillingAddress", "type": "address"},
            {"name": "Logo", "type": "base64"},
            {"name": "StageName", "type": "picklist"},
            {"name": "Bad Name", "type": "string"},
        ]});
        let (fields, dropped) = selected_fields("Opportunity", &describe);
        assert_eq!(
            fields,
            [
                "Id",
                "SystemModstamp",
                "IsDeleted",
                "LastModifiedById",
                "CreatedDate",
                "Name",
                "StageName"
            ]
        );
        assert_eq!(dropped, 0);
        let since = parse_stamp("2024-05-01T12:34:56.789+0000").unwrap();
        assert_eq!(
            changes_query("Opportunity", &fields[..2], since),
            "SELECT Id, SystemModstamp FROM Opportunity WHERE SystemModstamp >= \
             2024-05-01T12:34:56Z ORDER BY SystemModstamp, Id"
        );
        // An org with thousands of fields: the query stays under the URI limit.
        let many: Vec<Value> = (0..2000)
            .map(|i| json!({"name": format!("Custom_Field_Number_{i}__c"), "type": "string"}))
            .collect();
        let (fields, dropped) = selected_fields("Opportunity", &json!({"fields": many}));
        let soql = changes_query("Opportunity", &fields, since);
        let encoded: usize = url::form_urlencoded::byte_serialize(soql.as_bytes())
            .map(str::len)
            .sum();
        assert!(
            encoded <= QUERY_BUDGET && dropped > 0,
            "{encoded} {dropped}"
        );
        assert_eq!(fields.len() + dropped, 2005);
    }

    #[test]
    fn rows_become_created_updated_deleted_and_echo_events() {
        let stamp = "2024-05-01T12:00:00.000+0000";
        let new = row(json!({"attributes": {"type": "Opportunity"}, "Id": "006A",
            "SystemModstamp": stamp, "CreatedDate": stamp, "IsDeleted": false,
            "LastModifiedById": "005X", "StageName": "Prospecting"}));
        let event = row_event("Opportunity", &new, None, Some("005X")).unwrap();
        assert_eq!(event.event_type, "Opportunity.created");
        assert_eq!(event.key, format!("006A@{stamp}"));
        assert!(event.echo);
        assert!(!event.record.contains_key("attributes"));
        assert_eq!(event.vendor["attributes"]["type"], "Opportunity");
        assert_eq!(event.occurred_at_ms, 1_714_564_800_000);
        assert!(event.previous.is_empty());

        // Seen before: an update, with what changed.
        let mut before = event.record.clone();
        before.insert("StageName".into(), json!("Negotiation"));
        let event = row_event("Opportunity", &new, Some(&before), None).unwrap();
        assert_eq!(event.event_type, "Opportunity.updated");
        assert_eq!(event.previous, row(json!({"StageName": "Negotiation"})));
        assert!(!event.echo);

        let mut gone = new.clone();
        gone.insert("IsDeleted".into(), json!(true));
        gone.insert("LastModifiedById".into(), json!("005Y"));
        let event = row_event("Opportunity", &gone, None, Some("005X")).unwrap();
        assert_eq!(event.event_type, "Opportunity.deleted");
        assert!(!event.echo);
        assert!(row_event("Opportunity", &row(json!({"Id": "006B"})), None, None).is_none());
    }
}
