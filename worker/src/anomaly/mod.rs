//! Anomaly detection on each tenant's own history (see [`method`] for how each detector
//! decides). Every five minutes ([`INTERVAL`]), one process (under a lease):
//!
//! 1. **rolls up** the current hour and the two before into `activity`: live events received
//!    per source, account and type (backfills and reconciliations do not count), delivery
//!    attempts started per flow with those that failed and the event → CRM time of those that
//!    succeeded, and payments' amounts per account and currency — idempotently, so a round
//!    that died is simply done again;
//! 2. **evaluates** every tenant with activity in the last week: silence and spikes on each
//!    event series, failure-rate and latency jumps on each flow, payments of an unusual amount
//!    on each account and currency;
//! 3. keeps one **incident** per (detector, series): opened when a detector speaks, updated
//!    while it goes on speaking, resolved when it is quiet; each opened incident is told once
//!    to the tenant's notification channels that take `anomaly.detected`.
//!
//! Activity older than six weeks is dropped once an hour. `now` is always given, so tests run
//! weeks of traffic without waiting.

pub mod method;
mod rollup;
pub mod sensitivity;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{activity, incidents, tenants};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
};
use serde_json::{Value, json};

use method::{Finding, Series, WEEK, hour_of};
use sensitivity::Sensitivity;

/// How often a round runs.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
/// The lease that keeps the watcher to one process.
const LEASE_NAME: &str = "anomalies";
/// Hours of activity kept.
const KEEP_HOURS: i64 = 6 * WEEK;
/// An event series not seen for this long is no longer watched for silence.
const SILENCE_HORIZON_HOURS: i64 = WEEK;

pub mod detector {
    pub const SILENCE: &str = "silence";
    pub const SPIKE: &str = "spike";
    pub const FAILURE_RATE: &str = "failure_rate";
    pub const LATENCY: &str = "latency";
    pub const AMOUNT: &str = "amount";
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub opened: usize,
    pub resolved: usize,
    /// Incidents still open (and so updated).
    pub ongoing: usize,
}

/// Watches every tenant's activity; one per process.
pub struct Watcher {
    db: DatabaseConnection,
    notifier: Arc<crate::alerts::Notifier>,
    pruned_hour: std::sync::Mutex<i64>,
}

impl Watcher {
    pub fn new(db: DatabaseConnection, notifier: Arc<crate::alerts::Notifier>) -> Watcher {
        Watcher {
            db,
            notifier,
            pruned_hour: std::sync::Mutex::new(i64::MIN),
        }
    }

    /// One round at `now`: roll up, evaluate, open and resolve incidents, notify.
    pub async fn round(&self, now: DateTime<Utc>) -> anyhow::Result<Round> {
        let recent = rollup::roll_up(&self.db, now).await?;
        self.prune(now).await?;
        let tenants: Vec<String> = activity::Entity::find()
            .select_only()
            .column(activity::Column::TenantId)
            .distinct()
            .filter(activity::Column::Hour.gte(hour_of(now) - WEEK))
            .filter(activity::Column::Hour.lte(hour_of(now)))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut round = Round::default();
        for tenant_id in tenants {
            let found = self.evaluate(&tenant_id, now, &recent).await?;
            let done = self.record(&tenant_id, found, now).await?;
            round.opened += done.opened;
            round.resolved += done.resolved;
            round.ongoing += done.ongoing;
        }
        // Also resolves the open incidents of tenants with no activity left to evaluate.
        round.resolved += self.resolve_idle(now).await?;
        Ok(round)
    }

    /// Drops activity older than [`KEEP_HOURS`], once an hour.
    async fn prune(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let hour = hour_of(now);
        {
            let mut pruned = self.pruned_hour.lock().unwrap_or_else(|e| e.into_inner());
            if *pruned == hour {
                return Ok(());
            }
            *pruned = hour;
        }
        activity::Entity::delete_many()
            .filter(activity::Column::Hour.lt(hour - KEEP_HOURS))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// What the detectors find in one tenant's activity: (detector, series) → finding.
    async fn evaluate(
        &self,
        tenant_id: &str,
        now: DateTime<Utc>,
        recent: &rollup::Recent,
    ) -> anyhow::Result<BTreeMap<(&'static str, String), Finding>> {
        let hour = hour_of(now);
        let rows = activity::Entity::find()
            .filter(activity::Column::TenantId.eq(tenant_id))
            .filter(activity::Column::Hour.gte(hour - (method::HISTORY_WEEKS + 1) * WEEK - 2))
            .filter(activity::Column::Hour.lte(hour))
            .all(&self.db)
            .await?;
        let mut all: HashMap<String, Series> = HashMap::new();
        for row in rows {
            let series = all.entry(row.series).or_default();
            series.counts.insert(row.hour, row.count);
            series.sums.insert(row.hour, (row.total, row.total_sq));
            series.first_hour = Some(series.first_hour.map_or(row.hour, |h| h.min(row.hour)));
            if row.last_at > series.last_at {
                series.last_at = row.last_at;
            }
        }
        let levels = Sensitivity::of(
            tenants::Entity::find_by_id(tenant_id.to_string())
                .one(&self.db)
                .await?
                .and_then(|t| t.anomaly_sensitivity)
                .as_deref(),
        );
        let mut found = BTreeMap::new();
        let horizon = now - chrono::Duration::hours(SILENCE_HORIZON_HOURS);
        for (name, series) in &all {
            if name.starts_with("events|") {
                if series.last_at.is_some_and(|at| at > horizon)
                    && let Some(finding) = method::silence(series, now, levels.silence)
                {
                    found.insert((detector::SILENCE, name.clone()), finding);
                }
                if let Some(finding) = method::spike(series, now, levels.spike) {
                    found.insert((detector::SPIKE, name.clone()), finding);
                }
            } else if name.starts_with("latency|") {
                if let Some(finding) = method::latency(series, now, levels.latency) {
                    found.insert((detector::LATENCY, name.clone()), finding);
                }
            } else if name.starts_with("amounts|") {
                let payments = recent
                    .get(&(tenant_id.to_string(), name.clone()))
                    .map_or(&[][..], Vec::as_slice);
                if let Some(finding) = method::unusual_amount(series, payments, now, levels.amount)
                {
                    found.insert((detector::AMOUNT, name.clone()), finding);
                }
            } else if let Some(flow) = name.strip_prefix("attempts|") {
                let failures = all
                    .get(&format!("failures|{flow}"))
                    .cloned()
                    .unwrap_or_default();
                if let Some(finding) =
                    method::failure_rate(series, &failures, now, levels.failure_rate)
                {
                    found.insert((detector::FAILURE_RATE, name.clone()), finding);
                }
            }
        }
        Ok(found)
    }

    /// Opens, updates and resolves the tenant's incidents to match what was found, and
    /// tells the channels of every open incident not told yet.
    async fn record(
        &self,
        tenant_id: &str,
        found: BTreeMap<(&'static str, String), Finding>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Round> {
        let open = incidents::Entity::find()
            .filter(incidents::Column::TenantId.eq(tenant_id))
            .filter(incidents::Column::Status.eq("open"))
            .all(&self.db)
            .await?;
        let mut round = Round::default();
        // What stays open after this round, to tell the channels of.
        let mut still_open: Vec<incidents::Model> = Vec::new();
        for incident in &open {
            let key = (incident.detector.as_str(), incident.series.clone());
            let Some(finding) = found.iter().find(|(k, _)| k.0 == key.0 && k.1 == key.1) else {
                self.resolve(incident, now).await?;
                round.resolved += 1;
                continue;
            };
            let (summary, evidence) = describe(key.0, &key.1, finding.1);
            let updated = incidents::Model {
                summary,
                evidence: evidence.to_string(),
                updated_at: now,
                ..incident.clone()
            };
            incidents::Entity::update_many()
                .set(incidents::ActiveModel {
                    summary: Set(updated.summary.clone()),
                    evidence: Set(updated.evidence.clone()),
                    updated_at: Set(now),
                    ..Default::default()
                })
                .filter(incidents::Column::Id.eq(incident.id.as_str()))
                .exec(&self.db)
                .await?;
            still_open.push(updated);
            round.ongoing += 1;
        }
        for ((detector, series), finding) in &found {
            if open
                .iter()
                .any(|i| i.detector == *detector && &i.series == series)
            {
                continue;
            }
            let (summary, evidence) = describe(detector, series, finding);
            let row = incidents::Model {
                id: crate::new_id(),
                tenant_id: tenant_id.to_string(),
                detector: detector.to_string(),
                series: series.clone(),
                status: "open".into(),
                summary,
                evidence: evidence.to_string(),
                opened_at: now,
                updated_at: now,
                resolved_at: None,
                acknowledged_at: None,
                acknowledged_by: None,
            };
            incidents::Entity::insert(incidents::ActiveModel::from(row.clone()))
                .exec(&self.db)
                .await?;
            still_open.push(row);
            crate::metrics::incident(detector, "opened");
            round.opened += 1;
        }
        // Every open incident is told once; a failed send is tried again next round.
        for incident in still_open {
            let evidence: Value = serde_json::from_str(&incident.evidence).unwrap_or_default();
            self.notifier
                .tell_once(
                    tenant_id,
                    crate::alerts::kind::ANOMALY,
                    &format!("incident:{}", incident.id),
                    &incident.summary,
                    json!({"incident_id": incident.id, "detector": incident.detector,
                           "series": incident.series, "evidence": evidence}),
                )
                .await?;
        }
        Ok(round)
    }

    async fn resolve(&self, incident: &incidents::Model, now: DateTime<Utc>) -> anyhow::Result<()> {
        incidents::Entity::update_many()
            .set(incidents::ActiveModel {
                status: Set("resolved".into()),
                resolved_at: Set(Some(now)),
                updated_at: Set(now),
                ..Default::default()
            })
            .filter(incidents::Column::Id.eq(incident.id.as_str()))
            .filter(incidents::Column::Status.eq("open"))
            .exec(&self.db)
            .await?;
        crate::metrics::incident(&incident.detector, "resolved");
        Ok(())
    }

    /// Resolves open incidents of tenants with no activity in the last week (nothing is left
    /// to say they go on).
    async fn resolve_idle(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let open = incidents::Entity::find()
            .filter(incidents::Column::Status.eq("open"))
            .filter(incidents::Column::UpdatedAt.lt(now))
            .all(&self.db)
            .await?;
        let mut resolved = 0;
        for incident in open {
            self.resolve(&incident, now).await?;
            resolved += 1;
        }
        Ok(resolved)
    }
}

/// An incident's summary and evidence.
fn describe(detector: &str, series: &str, finding: &Finding) -> (String, Value) {
    let parts: Vec<&str> = series.split('|').collect();
    let minutes = (finding.to - finding.from).num_minutes();
    let (summary, look) = match (detector, parts.as_slice()) {
        (detector::SILENCE, ["events", source, account, kind]) => (
            format!(
                "No {kind} from {source} {account} for {minutes} minutes; about {:.0} were expected in that time.",
                finding.expected
            ),
            format!("/v1/events?type={kind}"),
        ),
        (detector::SPIKE, ["events", source, account, kind]) => (
            format!(
                "{:.0} {kind} from {source} {account} in {minutes} minutes; about {:.1} are usual then.",
                finding.observed, finding.expected
            ),
            format!(
                "/v1/events?type={kind}&created_gte={}",
                finding.from.timestamp()
            ),
        ),
        (_, ["attempts", flow]) => (
            format!(
                "Flow {flow}: {:.0}% of its delivery attempts failed in the last {minutes} minutes; {:.1}% is usual.",
                finding.observed * 100.0,
                finding.expected * 100.0
            ),
            format!("/v1/deliveries?flow_id={flow}"),
        ),
        (_, ["latency", flow]) => (
            format!(
                "Flow {flow}: events took {:.1} s to reach the CRM in the last {minutes} minutes; {:.1} s is usual.",
                finding.observed / 1000.0,
                finding.expected / 1000.0
            ),
            format!("/v1/deliveries?flow_id={flow}"),
        ),
        (_, ["amounts", source, account, currency]) => (
            format!(
                "A payment of {:.0} (minor units of {}) from {source} {account}, where about {:.0} is usual.",
                finding.observed,
                currency.to_uppercase(),
                finding.expected
            ),
            format!(
                "/v1/events/{}",
                finding.event_id.as_deref().unwrap_or_default()
            ),
        ),
        _ => (format!("{detector} on {series}"), String::new()),
    };
    let evidence = json!({
        "expected": finding.expected,
        "observed": finding.observed,
        "window": {"from": finding.from, "to": finding.to},
        "p_value": finding.p_value,
        "look_at": look,
        "event_id": finding.event_id,
    });
    (summary, evidence)
}

/// Runs a round every [`INTERVAL`] while this process holds the lease.
pub async fn watch_forever(watcher: Watcher, holder: String) {
    let ttl = INTERVAL + std::time::Duration::from_secs(60);
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match crate::lease::take(&watcher.db, LEASE_NAME, &holder, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "taking the anomaly lease failed");
                continue;
            }
        }
        match watcher.round(crate::now()).await {
            Ok(round) if round.opened + round.resolved > 0 => {
                tracing::info!(
                    opened = round.opened,
                    resolved = round.resolved,
                    ongoing = round.ongoing,
                    "anomaly round"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "an anomaly round failed"),
        }
    }
}
