//! The `crm_watches` row a polling source keeps per (connection, object), and one poll's
//! progress on it. Salesforce ([`super::salesforce`]) and Zoho ([`super::zoho`]) ask their
//! vendors differently but keep their watches alike, so that part lives here once:
//!
//! - **The row**: made on first use ([`watch_row`]); it holds the cursor (the newest stamp
//!   seen, as the vendor wrote it), `seen` (the `id@stamp` pairs still inside the next poll's
//!   overlap), the API calls spent, when the watch polled and is due next, and `last_error`.
//! - **A poll** ([`Progress`]): starts at the cursor minus the overlap (or a first window before
//!   now), stores each new row's event in the inbox and remembers the record's version, moves
//!   the cursor, and saves all that after every page, so a failed poll keeps what it did.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{connections, crm_watches};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Map, Value};

use super::{CrmEvent, versions};
use crate::crm::{Adapter, Call, Connector, CrmError};
use crate::inbox::{self, Stored};
use crate::queue::Queue;

/// Seconds between polls when the connection's `poll_seconds` does not say.
pub const DEFAULT_POLL_SECONDS: u64 = 60;

/// How a vendor's watch reads time: its stamps and the windows a poll looks back over.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Reads one of the vendor's stamps (a cursor, or a row's modification stamp).
    pub parse: fn(&str) -> Option<DateTime<Utc>>,
    /// How far behind the cursor each poll starts again.
    pub overlap: chrono::Duration,
    /// How far back the first poll of a watch looks.
    pub first_window: chrono::Duration,
    /// How long before the next poll's start a seen pair is still kept (Salesforce compares
    /// whole seconds, so a row stamped in the start's second comes back).
    pub keep_before: chrono::Duration,
}

/// The watch row of (connection, object), made on first use. Two makers at once are one row
/// (the table is unique on connection and object): the loser reads the winner's.
pub async fn watch_row(
    db: &DatabaseConnection,
    connection: &connections::Model,
    object: &str,
) -> anyhow::Result<crm_watches::Model> {
    let find = || {
        crm_watches::Entity::find()
            .filter(crm_watches::Column::ConnectionId.eq(connection.id.as_str()))
            .filter(crm_watches::Column::Object.eq(object))
            .one(db)
    };
    if let Some(row) = find().await? {
        return Ok(row);
    }
    let at = crate::now();
    crm_watches::Entity::insert(crm_watches::ActiveModel {
        id: Set(crate::new_id()),
        tenant_id: Set(connection.tenant_id.clone()),
        connection_id: Set(connection.id.clone()),
        object: Set(object.to_string()),
        cursor: Set(None),
        seen: Set("[]".into()),
        api_calls: Set(0),
        polled_at: Set(None),
        next_poll_at: Set(None),
        channel_id: Set(None),
        channel_expires_at: Set(None),
        last_error: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([
            crm_watches::Column::ConnectionId,
            crm_watches::Column::Object,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    find()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the watch of {object} vanished"))
}

/// Writes the columns set in `row` to the watch `id`, and when it changed.
pub async fn update(
    db: &DatabaseConnection,
    id: &str,
    mut row: crm_watches::ActiveModel,
) -> anyhow::Result<()> {
    row.updated_at = Set(crate::now());
    crm_watches::Entity::update_many()
        .set(row)
        .filter(crm_watches::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Records `error` as the watch's `last_error`, leaving the rest as it was.
pub async fn record_failure(
    db: &DatabaseConnection,
    id: &str,
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    let row = crm_watches::ActiveModel {
        last_error: Set(Some(format!("{error:#}"))),
        ..Default::default()
    };
    update(db, id, row).await
}

/// How long to wait between polls: the connection's `poll_seconds`, else
/// [`DEFAULT_POLL_SECONDS`].
pub fn poll_interval(settings: &Map<String, Value>) -> Duration {
    let seconds = settings.get("poll_seconds").and_then(Value::as_u64);
    Duration::from_secs(seconds.unwrap_or(DEFAULT_POLL_SECONDS))
}

/// Runs `work` on a call to the connection's vendor, then keeps what the call learned (its
/// session, the usage the vendor reported). A call that cannot open is `work`'s failure.
pub async fn with_call<T>(
    connector: &Connector,
    connection: &connections::Model,
    adapter: &'static dyn Adapter,
    work: impl AsyncFnOnce(&mut Call<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut call = Call::open(connector, connection, adapter)?;
    let result = work(&mut call).await;
    call.finish().await;
    result
}

/// The key of one version of one record: its id and the vendor's modification stamp. A poll
/// sees a pair once, and the inbox keys the pair's event by it.
pub fn pair(id: &str, stamp: &str) -> String {
    format!("{id}@{stamp}")
}

/// One poll of one watched object: the watch as read, and what the poll has done since.
pub struct Progress<'a> {
    db: &'a DatabaseConnection,
    queue: &'a Queue,
    /// The connection polled.
    pub connection: &'a connections::Model,
    /// The vendor's object (module) polled.
    pub object: &'a str,
    watch: crm_watches::Model,
    clock: Clock,
    /// The newest stamp seen, as the vendor wrote it.
    pub cursor: Option<String>,
    seen: BTreeSet<String>,
    /// API calls made so far.
    pub calls: u64,
    /// Events stored so far (new to the inbox).
    pub events: usize,
}

impl<'a> Progress<'a> {
    /// Starts a poll of `object` where its watch (made now if need be) left off.
    pub async fn open(
        db: &'a DatabaseConnection,
        queue: &'a Queue,
        connection: &'a connections::Model,
        object: &'a str,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let watch = watch_row(db, connection, object).await?;
        let seen: Vec<String> = serde_json::from_str(&watch.seen).unwrap_or_default();
        Ok(Progress {
            db,
            queue,
            connection,
            object,
            cursor: watch.cursor.clone(),
            watch,
            clock,
            seen: seen.into_iter().collect(),
            calls: 0,
            events: 0,
        })
    }

    /// Where the poll starts: the cursor minus the overlap, or the first window.
    pub fn since(&self) -> DateTime<Utc> {
        match self.cursor.as_deref().and_then(self.clock.parse) {
            Some(cursor) => cursor - self.clock.overlap,
            None => crate::now() - self.clock.first_window,
        }
    }

    /// Whether this version of the record was made an event already.
    pub fn has_seen(&self, id: &str, stamp: &str) -> bool {
        self.seen.contains(&pair(id, stamp))
    }

    /// The fields of the record's last version seen (`None`: never seen).
    pub async fn last_version(&self, id: &str) -> anyhow::Result<Option<Map<String, Value>>> {
        let version = versions::last_seen(self.db, &self.connection.id, self.object, id).await?;
        Ok(version.map(|v| v.fields))
    }

    /// Stores `event` (version `stamp` of its record) in the inbox, remembers the version
    /// (`merge`: onto `before`, for a vendor that lists only some fields), moves the cursor
    /// when the stamp is newer, and marks the pair seen.
    pub async fn store(
        &mut self,
        event: &CrmEvent,
        before: Option<&Map<String, Value>>,
        stamp: &str,
        merge: bool,
    ) -> anyhow::Result<()> {
        let (db, connection, id) = (self.db, self.connection, event.record_id.as_str());
        let row = super::new_row(&connection.tenant_id, &connection.id, event);
        if let Stored::New(_) = inbox::store(db, self.queue, row).await? {
            self.events += 1;
        }
        versions::remember(
            db,
            &connection.tenant_id,
            &connection.id,
            self.object,
            id,
            before,
            &event.record,
            stamp,
            merge,
        )
        .await?;
        let parse = self.clock.parse;
        let cursor = self.cursor.as_deref().and_then(parse);
        if parse(stamp).is_some_and(|at| cursor.is_none_or(|cursor| at > cursor)) {
            self.cursor = Some(stamp.to_string());
        }
        self.seen.insert(pair(id, stamp));
        Ok(())
    }

    /// Saves the cursor, the pairs seen and the calls spent (after each page, so that a poll
    /// that fails later keeps them).
    pub async fn save(&self) -> anyhow::Result<()> {
        self.write(None).await
    }

    /// Ends the poll: saves it as [`Progress::save`] does, when it polled, its error as
    /// `last_error` (cleared on success), and when the next poll is due: `interval` on, or
    /// later when the vendor asked for a longer pause.
    pub async fn finish(
        &self,
        interval: Duration,
        result: &anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut wait = interval;
        let error = result.as_ref().err().map(|e| {
            if let Some(pause) = e.downcast_ref::<CrmError>().and_then(|c| c.pause) {
                wait = wait.max(pause);
            }
            format!("{e:#}")
        });
        let at = crate::now();
        let next = crate::vendor_time::after(at, wait);
        self.write(Some((error, at, next))).await
    }

    /// The pairs still inside the next poll's overlap.
    fn kept_seen(&self) -> Vec<&String> {
        let floor = self.since() - self.clock.keep_before;
        self.seen
            .iter()
            .filter(|pair| {
                pair.rsplit_once('@')
                    .and_then(|(_, stamp)| (self.clock.parse)(stamp))
                    .is_some_and(|at| at >= floor)
            })
            .collect()
    }

    /// Saves the progress; with `ended` (the error, if any, when the poll ended and when the
    /// next is due) also the poll's end.
    async fn write(&self, ended: Option<Ended>) -> anyhow::Result<()> {
        let mut row = crm_watches::ActiveModel {
            cursor: Set(self.cursor.clone()),
            seen: Set(serde_json::to_string(&self.kept_seen())?),
            api_calls: Set(self.watch.api_calls.saturating_add(self.calls as i64)),
            ..Default::default()
        };
        if let Some((error, at, next)) = ended {
            row.polled_at = Set(Some(at));
            row.next_poll_at = Set(Some(next));
            row.last_error = Set(error);
        }
        update(self.db, &self.watch.id, row).await
    }
}

/// How a poll ended: its error, if any, when, and when the next is due.
type Ended = (Option<String>, DateTime<Utc>, DateTime<Utc>);
