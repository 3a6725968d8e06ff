//! The CRM watcher: one process at a time (a lease) looks after what every active connection
//! watches at its CRM (`watch` setting): Salesforce objects are polled on `SystemModstamp` and
//! Zoho modules on `Modified_Time`, each when its `poll_seconds` have passed; a Zoho connection
//! with `notifications: true` instead keeps a Notifications API channel to its inbound URL,
//! enabled and renewed before it expires. A connection whose CRM fails is left alone for its
//! poll interval (the failure is kept on its watch as `last_error`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use chrono::{DateTime, Utc};
use entity::{connections, crm_watches};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Map, Value};

use crate::crm::Connector;
use crate::queue::Queue;

/// The watcher's lease: one process polls at a time.
const WATCH_LEASE: &str = "crm-watcher";

/// Connections looked after at once in a round.
const PARALLEL_CONNECTIONS: usize = 4;

/// The longest one connection's polls (or channel renewal) may take in a round; past it the
/// round moves on and the connection rests for its poll interval.
const CONNECTION_TIME: Duration = Duration::from_secs(120);

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchReport {
    /// Objects polled, and the events their polls stored.
    pub polls: usize,
    pub events: usize,
    /// Zoho channels looked after.
    pub channels: usize,
    /// Connections whose CRM failed this round.
    pub failures: usize,
}

/// Runs rounds every `interval` until the process stops.
pub async fn run_forever(
    db: DatabaseConnection,
    queue: Queue,
    connector: Arc<Connector>,
    public_url: String,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let holder = crate::new_id();
    let lease = interval.saturating_mul(3).max(Duration::from_secs(30));
    let mut resting: HashMap<String, DateTime<Utc>> = HashMap::new();
    loop {
        ticker.tick().await;
        match crate::lease::take(&db, WATCH_LEASE, &holder, lease).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "taking the CRM watcher's lease failed");
                continue;
            }
        }
        match watch_once(&db, &queue, &connector, &public_url, &mut resting).await {
            Ok(report) if report.events > 0 => {
                tracing::info!(
                    polls = report.polls,
                    events = report.events,
                    "CRM changes stored"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "the CRM watcher's round failed"),
        }
    }
}

fn settings_of(connection: &connections::Model) -> Map<String, Value> {
    serde_json::from_str(&connection.settings).unwrap_or_default()
}

/// The objects a connection watches (its `watch` setting).
pub fn watched(settings: &Map<String, Value>) -> Vec<String> {
    settings
        .get("watch")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn poll_interval(settings: &Map<String, Value>) -> chrono::Duration {
    let seconds = settings
        .get("poll_seconds")
        .and_then(Value::as_u64)
        .unwrap_or(crate::inbound::salesforce::DEFAULT_POLL_SECONDS);
    chrono::Duration::seconds(seconds.clamp(10, 86_400) as i64)
}

/// One round over every active connection that watches something. `resting` holds the
/// connections that failed, until when they are left alone.
pub async fn watch_once(
    db: &DatabaseConnection,
    queue: &Queue,
    connector: &Connector,
    public_url: &str,
    resting: &mut HashMap<String, DateTime<Utc>>,
) -> anyhow::Result<WatchReport> {
    let now = crate::now();
    resting.retain(|_, until| *until > now);
    let connections = connections::Entity::find()
        .filter(connections::Column::Provider.is_in(["salesforce", "zoho"]))
        .filter(connections::Column::Status.eq("active"))
        .all(db)
        .await?;
    let watch = Watch {
        db,
        queue,
        connector,
        public_url,
        force: false,
    };
    let due: Vec<(connections::Model, Map<String, Value>, Vec<String>)> = connections
        .into_iter()
        .filter(|c| !resting.contains_key(&c.id))
        .filter_map(|c| {
            let settings = settings_of(&c);
            let objects = watched(&settings);
            (!objects.is_empty()).then_some((c, settings, objects))
        })
        .collect();
    // A few connections at a time, each within its time: one slow CRM delays nobody else.
    type Round<'a> = (
        &'a connections::Model,
        &'a Map<String, Value>,
        WatchReport,
        anyhow::Result<()>,
    );
    let watch = &watch;
    let work: Vec<futures::future::BoxFuture<'_, Round<'_>>> = due
        .iter()
        .map(|(connection, settings, objects)| {
            let round: futures::future::BoxFuture<'_, Round<'_>> = Box::pin(async move {
                let mut report = WatchReport::default();
                let result = tokio::time::timeout(
                    CONNECTION_TIME,
                    watch.connection(connection, settings, objects, now, &mut report),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "watching took longer than {} s",
                        CONNECTION_TIME.as_secs()
                    ))
                });
                (connection, settings, report, result)
            });
            round
        })
        .collect();
    let rounds = futures::stream::iter(work)
        .buffer_unordered(PARALLEL_CONNECTIONS)
        .collect::<Vec<_>>()
        .await;
    let mut report = WatchReport::default();
    for (connection, settings, one, result) in rounds {
        report.polls += one.polls;
        report.events += one.events;
        report.channels += one.channels;
        if let Err(e) = result {
            report.failures += 1;
            resting.insert(connection.id.clone(), now + poll_interval(settings));
            tracing::warn!(connection_id = %connection.id, error = format!("{e:#}"), "watching the CRM failed; trying again after the poll interval");
        }
    }
    Ok(report)
}

/// Polls every object `connection` watches now, whenever they were polled last (`POST
/// /v1/connections/{id}/poll`), or looks after its Zoho channel. `Ok(None)` when it watches
/// nothing.
pub async fn watch_now(
    db: &DatabaseConnection,
    queue: &Queue,
    connector: &Connector,
    public_url: &str,
    connection: &connections::Model,
) -> anyhow::Result<Option<WatchReport>> {
    let settings = settings_of(connection);
    let objects = watched(&settings);
    if objects.is_empty() {
        return Ok(None);
    }
    let watch = Watch {
        db,
        queue,
        connector,
        public_url,
        force: true,
    };
    let mut report = WatchReport::default();
    watch
        .connection(connection, &settings, &objects, crate::now(), &mut report)
        .await?;
    Ok(Some(report))
}

/// What a round works with; `force` polls whatever the objects' next poll time says.
struct Watch<'a> {
    db: &'a DatabaseConnection,
    queue: &'a Queue,
    connector: &'a Connector,
    public_url: &'a str,
    force: bool,
}

/// The lease one connection is watched under: the watcher and a poll asked for by the tenant
/// never look after the same connection at once (two would each enable a Zoho channel).
fn connection_lease(connection: &connections::Model) -> String {
    format!("watch:{}", connection.id)
}

impl Watch<'_> {
    /// Watches `connection` under its lease. The watcher skips a connection someone else is
    /// watching now; a forced poll waits for that to end (at most [`CONNECTION_TIME`]).
    async fn connection(
        &self,
        connection: &connections::Model,
        settings: &Map<String, Value>,
        objects: &[String],
        now: DateTime<Utc>,
        report: &mut WatchReport,
    ) -> anyhow::Result<()> {
        let name = connection_lease(connection);
        let holder = crate::new_id();
        let ttl = CONNECTION_TIME + Duration::from_secs(30);
        let started = std::time::Instant::now();
        while !crate::lease::take(self.db, &name, &holder, ttl).await? {
            if !self.force {
                return Ok(());
            }
            if started.elapsed() > CONNECTION_TIME {
                anyhow::bail!("the connection is being polled already; try again later");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let result = self
            .connection_held(connection, settings, objects, now, report)
            .await;
        if let Err(e) = crate::lease::release(self.db, &name, &holder).await {
            tracing::warn!(connection_id = %connection.id, error = %e, "releasing a watch lease failed; it runs out by itself");
        }
        result
    }

    async fn connection_held(
        &self,
        connection: &connections::Model,
        settings: &Map<String, Value>,
        objects: &[String],
        now: DateTime<Utc>,
        report: &mut WatchReport,
    ) -> anyhow::Result<()> {
        let (db, queue, connector, public_url) =
            (self.db, self.queue, self.connector, self.public_url);
        let notifications = settings.get("notifications").and_then(Value::as_bool) == Some(true);
        if connection.provider == "zoho" && notifications {
            let Some(token) = connection.inbound_token.as_deref() else {
                anyhow::bail!("the connection has no inbound URL for Zoho's notifications");
            };
            let notify_url = format!("{public_url}/webhooks/zoho/{token}");
            crate::inbound::zoho::ensure_channel(
                db,
                connector,
                connection,
                objects,
                &notify_url,
                &crate::inbound::zoho_channel_token(token),
            )
            .await?;
            report.channels += 1;
            return Ok(());
        }
        let due: Vec<crm_watches::Model> = crm_watches::Entity::find()
            .filter(crm_watches::Column::ConnectionId.eq(connection.id.as_str()))
            .all(db)
            .await?;
        for object in objects {
            let row = due.iter().find(|w| &w.object == object);
            if !self.force && row.and_then(|w| w.next_poll_at).is_some_and(|at| at > now) {
                continue;
            }
            let events = match connection.provider.as_str() {
                "salesforce" => {
                    crate::inbound::salesforce::poll_object(
                        db, queue, connector, connection, object,
                    )
                    .await?
                    .events
                }
                _ => {
                    crate::inbound::zoho::poll_module(db, queue, connector, connection, object)
                        .await?
                        .events
                }
            };
            report.polls += 1;
            report.events += events;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_watch_setting_and_interval_are_read_with_defaults() {
        let settings = json!({"watch": ["Opportunity", 3, "Account"], "poll_seconds": 5});
        let settings = settings.as_object().unwrap();
        assert_eq!(watched(settings), ["Opportunity", "Account"]);
        assert_eq!(poll_interval(settings), chrono::Duration::seconds(10));
        assert_eq!(poll_interval(&Map::new()), chrono::Duration::seconds(60));
    }
}
