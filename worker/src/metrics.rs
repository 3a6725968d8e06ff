//! Prometheus metrics, served at `GET /metrics`: webhooks in, ingest latency and webhooks waiting for their commit, queue depth and
//! the age of the oldest waiting event, deliveries by status, CRM calls by status and latency,
//! rate limits and their waits, token refreshes, alerts. Labels are bounded: provider names, statuses,
//! reasons — never an event or record id. The two per-connection gauges (daily usage, pause)
//! name a tenant and a connection, for at most [`CONNECTION_SERIES`] connections each: those
//! nearest their daily cap, and the paused ones with the longest pause left.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What the text exposition is: OpenMetrics 1.0 (it ends with `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric Tributary keeps, in one registry per process.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<Labels, Counter>,
    ingest_seconds: Histogram,
    ingest_pending: Gauge,
    deliveries: Family<Labels, Counter>,
    crm_requests: Family<Labels, Counter>,
    crm_seconds: Histograms,
    event_to_crm: Histograms,
    rate_limited: Family<Labels, Counter>,
    rate_limit_wait: Histograms,
    budget_waits: Histograms,
    batch_records: Histograms,
    token_refreshes: Family<Labels, Counter>,
    queue_depth: Gauge,
    queue_oldest: Gauge<f64, AtomicU64>,
    alerts: Family<Labels, Counter>,
    incidents: Family<Labels, Counter>,
    stripe_errors: Family<Labels, Counter>,
    reconciled: Counter,
    jobs: Family<Labels, Counter>,
    pruned: Family<Labels, Counter>,
    connection_usage: Family<Labels, Gauge<f64, AtomicU64>>,
    connection_paused: Family<Labels, Gauge<f64, AtomicU64>>,
}

/// The most connections each per-connection gauge names.
pub const CONNECTION_SERIES: usize = 25;

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// From a webhook's arrival to the CRM's answer: milliseconds when all is well, hours when a
/// connection waits for re-authorisation.
fn arrival_buckets() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        21600.0, 86400.0,
    ])
}

/// Records per batch call: one alone, up to Salesforce's 200.
fn batch_buckets() -> Histogram {
    Histogram::new([1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0])
}

fn wait_buckets() -> Histogram {
    Histogram::new([1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0])
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("tributary");
    let m = Metrics {
        webhooks: Family::default(),
        ingest_seconds: latency_buckets(),
        ingest_pending: Gauge::default(),
        deliveries: Family::default(),
        crm_requests: Family::default(),
        crm_seconds: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
        event_to_crm: Family::new_with_constructor(arrival_buckets as fn() -> Histogram),
        rate_limited: Family::default(),
        rate_limit_wait: Family::new_with_constructor(wait_buckets as fn() -> Histogram),
        budget_waits: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
        batch_records: Family::new_with_constructor(batch_buckets as fn() -> Histogram),
        token_refreshes: Family::default(),
        queue_depth: Gauge::default(),
        queue_oldest: Gauge::default(),
        alerts: Family::default(),
        incidents: Family::default(),
        stripe_errors: Family::default(),
        reconciled: Counter::default(),
        jobs: Family::default(),
        pruned: Family::default(),
        connection_usage: Family::default(),
        connection_paused: Family::default(),
        registry: Registry::default(),
    };
    registry.register(
        "webhooks",
        "Stripe webhooks by outcome (accepted, duplicate, rejected) and reason",
        m.webhooks.clone(),
    );
    registry.register(
        "ingest_duration_seconds",
        "From a webhook's arrival to its acknowledgement",
        m.ingest_seconds.clone(),
    );
    registry.register(
        "ingest_pending",
        "Verified webhooks waiting for their commit now; past TRIBUTARY_INGEST_MAX_PENDING more are shed with 503",
        m.ingest_pending.clone(),
    );
    registry.register(
        "deliveries",
        "Delivery attempts' outcomes by provider and status (dead = dead letters)",
        m.deliveries.clone(),
    );
    registry.register(
        "crm_requests",
        "Requests to CRM vendors by provider and HTTP status (or error)",
        m.crm_requests.clone(),
    );
    registry.register(
        "crm_request_duration_seconds",
        "CRM vendor request latency by provider",
        m.crm_seconds.clone(),
    );
    registry.register(
        "event_to_crm_seconds",
        "From a webhook's arrival to the CRM's success answer for one delivery step, by provider",
        m.event_to_crm.clone(),
    );
    registry.register(
        "crm_rate_limited",
        "Vendor rate-limit answers (429, daily limits) by provider",
        m.rate_limited.clone(),
    );
    registry.register(
        "crm_rate_limit_wait_seconds",
        "How long a connection was held after a rate limit, by provider",
        m.rate_limit_wait.clone(),
    );
    registry.register(
        "crm_budget_wait_seconds",
        "How long CRM requests waited for their connection's shared rate budget, by provider",
        m.budget_waits.clone(),
    );
    registry.register(
        "crm_batch_records",
        "Records each CRM batch call carried (1 for a write sent alone), by provider",
        m.batch_records.clone(),
    );
    registry.register(
        "token_refreshes",
        "OAuth token refreshes by provider and outcome (ok, refused, failed)",
        m.token_refreshes.clone(),
    );
    registry.register(
        "queue_depth",
        "Events received or queued and not yet finished",
        m.queue_depth.clone(),
    );
    registry.register(
        "queue_oldest_age_seconds",
        "Age of the oldest event not yet finished",
        m.queue_oldest.clone(),
    );
    registry.register(
        "alerts",
        "Alerts to tenants' notification channels by kind and outcome (sent, failed)",
        m.alerts.clone(),
    );
    registry.register(
        "incidents",
        "Incidents the anomaly detectors opened and resolved, by detector and change",
        m.incidents.clone(),
    );
    registry.register(
        "stripe_api_errors",
        "Failed requests to Stripe's API by HTTP status (or error), retries included",
        m.stripe_errors.clone(),
    );
    registry.register(
        "reconciled_events",
        "Events reconciliation found missing from the inbox and ingested",
        m.reconciled.clone(),
    );
    registry.register(
        "jobs",
        "Queue jobs set aside: deferred (tenant at its share of the slots) or panicked",
        m.jobs.clone(),
    );
    registry.register(
        "pruned",
        "Rows removed by the retention loop, by kind (events, deliveries, delivery_attempts, audit_log)",
        m.pruned.clone(),
    );
    registry.register(
        "connection_daily_cap_used_ratio",
        "Daily API usage the vendor last reported over the connection's daily cap (1 = at it)",
        m.connection_usage.clone(),
    );
    registry.register(
        "connection_paused_seconds",
        "Seconds until a paused connection resumes (a vendor's daily limit, or its daily cap)",
        m.connection_paused.clone(),
    );
    Metrics { registry, ..m }
});

/// A job deferred because its tenant had its share of the job slots running.
pub fn job_deferred() {
    METRICS
        .jobs
        .get_or_create(&labels(&[("outcome", "deferred")]))
        .inc();
}

/// A job that panicked (its delivery is dead-lettered; the consumer goes on).
pub fn job_panicked() {
    METRICS
        .jobs
        .get_or_create(&labels(&[("outcome", "panicked")]))
        .inc();
}

pub fn webhook(outcome: &str, reason: &str) {
    METRICS
        .webhooks
        .get_or_create(&labels(&[("outcome", outcome), ("reason", reason)]))
        .inc();
}

pub fn ingest(seconds: f64) {
    METRICS.ingest_seconds.observe(seconds);
}

pub fn delivery(provider: &str, status: &str) {
    METRICS
        .deliveries
        .get_or_create(&labels(&[("provider", provider), ("status", status)]))
        .inc();
}

/// One vendor request: its HTTP status (or `error` when none came back) and latency.
pub fn crm_request(provider: &str, status: Option<u16>, seconds: f64) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    METRICS
        .crm_requests
        .get_or_create(&labels(&[("provider", provider), ("status", &status)]))
        .inc();
    METRICS
        .crm_seconds
        .get_or_create(&labels(&[("provider", provider)]))
        .observe(seconds);
}

/// A delivery step succeeded `seconds` after its event's webhook arrived.
pub fn event_to_crm(provider: &str, seconds: f64) {
    METRICS
        .event_to_crm
        .get_or_create(&labels(&[("provider", provider)]))
        .observe(seconds.max(0.0));
}

pub fn rate_limited(provider: &str, wait_seconds: f64) {
    let provider = labels(&[("provider", provider)]);
    METRICS.rate_limited.get_or_create(&provider).inc();
    METRICS
        .rate_limit_wait
        .get_or_create(&provider)
        .observe(wait_seconds);
}

/// A CRM request waited `seconds` for its rate budget's slot.
pub fn batch_records(provider: &str, records: usize) {
    METRICS
        .batch_records
        .get_or_create(&labels(&[("provider", provider)]))
        .observe(records as f64);
}

pub fn budget_wait(provider: &str, seconds: f64) {
    METRICS
        .budget_waits
        .get_or_create(&labels(&[("provider", provider)]))
        .observe(seconds.max(0.0));
}

pub fn token_refresh(provider: &str, outcome: &str) {
    METRICS
        .token_refreshes
        .get_or_create(&labels(&[("provider", provider), ("outcome", outcome)]))
        .inc();
}

/// Sets the queue gauges (read from the database when scraped).
pub fn queue(depth: i64, oldest_age_seconds: f64) {
    METRICS.queue_depth.set(depth);
    METRICS.queue_oldest.set(oldest_age_seconds);
}

/// Reads the queue's depth and the oldest waiting event's age from the database (the events
/// not yet finished are the truth, whatever the queue backend) into the gauges.
pub async fn read_queue(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use crate::statuses::status;
    use entity::events;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
    let waiting = events::Entity::find()
        .filter(events::Column::Status.is_in([status::RECEIVED, status::QUEUED]));
    let depth = waiting.clone().count(db).await?;
    let oldest = waiting
        .order_by_asc(events::Column::ReceivedAt)
        .one(db)
        .await?
        .map(|e| (crate::now() - e.received_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or(0.0);
    queue(depth as i64, oldest.max(0.0));
    Ok(())
}

/// Reads the per-connection gauges from the database: the connections (of vendors that report
/// their daily usage, or paused) nearest their daily cap, and the paused ones with the longest
/// pause left, [`CONNECTION_SERIES`] of each; a connection no longer among them drops out.
pub async fn read_connections(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use entity::connections;
    use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};
    type Row = (
        String,
        String,
        String,
        String,
        Option<chrono::DateTime<chrono::Utc>>,
        String,
        String,
    );
    let rows: Vec<Row> = connections::Entity::find()
        .select_only()
        .columns([
            connections::Column::Id,
            connections::Column::TenantId,
            connections::Column::Provider,
            connections::Column::Status,
            connections::Column::PausedUntil,
            connections::Column::Settings,
            connections::Column::VendorInfo,
        ])
        .filter(
            Condition::any()
                .add(connections::Column::Status.eq("paused"))
                .add(
                    Condition::all()
                        .add(connections::Column::Status.eq("active"))
                        .add(connections::Column::VendorInfo.contains("api_usage")),
                ),
        )
        .into_tuple()
        .all(db)
        .await?;
    let now = crate::now();
    let mut usage = Vec::new();
    let mut paused = Vec::new();
    for (id, tenant, provider, status, until, settings, info) in rows {
        let settings = serde_json::from_str(&settings).unwrap_or_default();
        let info = serde_json::from_str(&info).unwrap_or_default();
        let series = labels(&[
            ("tenant", &tenant),
            ("provider", &provider),
            ("connection", &id),
        ]);
        if let Some(used) = crate::crm::limits::recorded_usage(&provider, &info)
            && let Some(cap) =
                crate::crm::limits::daily_cap(&provider, &settings, Some(used.allocation))
        {
            usage.push((used.used as f64 / cap.stop_at as f64, series.clone()));
        }
        if status == "paused"
            && let Some(until) = until.filter(|u| *u > now)
        {
            paused.push(((until - now).num_milliseconds() as f64 / 1000.0, series));
        }
    }
    for (family, mut values) in [
        (&METRICS.connection_usage, usage),
        (&METRICS.connection_paused, paused),
    ] {
        values.sort_by(|a, b| b.0.total_cmp(&a.0));
        values.truncate(CONNECTION_SERIES);
        family.clear();
        for (value, series) in values {
            family.get_or_create(&series).set(value);
        }
    }
    Ok(())
}

/// A request to Stripe's API that failed (its status, or `error` when none came back); the
/// client retries 429s and 5xx.
pub fn stripe_request(status: Option<u16>) {
    let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
    METRICS
        .stripe_errors
        .get_or_create(&labels(&[("status", &status)]))
        .inc();
}

/// Events a reconciliation found missing from the inbox and ingested.
pub fn reconciled(count: u64) {
    METRICS.reconciled.inc_by(count);
}

/// An alert sent to a notification channel (or that failed to send), by kind and outcome.
pub fn alert(kind: &str, outcome: &str) {
    METRICS
        .alerts
        .get_or_create(&labels(&[("kind", kind), ("outcome", outcome)]))
        .inc();
}

/// Incidents opened and resolved by the anomaly detectors, by detector.
pub fn incident(detector: &str, change: &str) {
    METRICS
        .incidents
        .get_or_create(&labels(&[("detector", detector), ("change", change)]))
        .inc();
}

/// Rows the retention loop removed, by kind (`events`, `deliveries`, `audit_log`).
pub fn pruned(kind: &str, count: u64) {
    METRICS
        .pruned
        .get_or_create(&labels(&[("kind", kind)]))
        .inc_by(count);
}

/// The Prometheus text exposition of every metric, with `ingest_pending` the webhooks waiting
/// for their commit in the scraped process (0 where no api takes webhooks). Setting and
/// encoding are one step, so two api instances in one process each show their own.
pub fn render(ingest_pending: usize) -> String {
    static RENDERING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = RENDERING.lock().unwrap_or_else(|e| e.into_inner());
    METRICS
        .ingest_pending
        .set(ingest_pending.try_into().unwrap_or(i64::MAX));
    let mut out = String::new();
    encode(&mut out, &METRICS.registry).expect("writing to a String cannot fail");
    out
}
