//! A connection's limits as they stand: its shared rate budget, its requests in flight where
//! the vendor limits them, and its daily cap.

use entity::connections;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// A connection's shared rate budget as it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RateLimitOut {
    /// The limit its requests are held to (a twentieth under it, for the network's jitter):
    /// this many requests…
    pub requests: Option<u32>,
    /// …per this many seconds; both null when only the vendor's answers (429, daily limits)
    /// hold it.
    pub per_seconds: Option<f64>,
    /// Where the limit comes from: `setting` (its `rate_limit`), `learned` (the vendor's
    /// headers), `edition` (the documented limit of the plan `edition` names), `default` (the
    /// vendor's lowest documented limit) or `none`.
    #[schema(example = "learned")]
    pub source: String,
    /// Requests reserved ahead of now: the line to the vendor, across every process.
    pub reserved_ahead: u64,
    /// When the next request may go, if not at once.
    pub next_slot_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Nothing is sent before this (a vendor's `Retry-After`, or a spent window).
    pub held_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The account's daily API allocation and where Tributary stops on it; null when nothing
    /// says what the allocation is (no `edition`, `daily_limit`, or usage the vendor reports).
    pub daily: Option<DailyCapOut>,
    /// The most of its requests Tributary lets be in flight at once, across every process:
    /// its `max_concurrent_requests` setting, else Salesforce's limit of concurrent
    /// long-running requests (5 on `edition: developer`, else 25); null where nothing limits
    /// requests at once.
    pub max_concurrent_requests: Option<u32>,
    /// Its requests in flight now, across every process; null where nothing limits them.
    pub requests_in_flight: Option<u64>,
}

/// A connection's daily cap: the account's allocation, its usage as the vendor last reported
/// it, and the usage at which Tributary pauses the connection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DailyCapOut {
    /// Requests a day (Salesforce: in any 24 hours; Zoho: credits).
    pub allocation: u64,
    /// Where the allocation comes from: `setting` (`daily_limit`), `reported` (the vendor's
    /// last answer) or `edition` (the plan `edition` names).
    #[schema(example = "reported")]
    pub source: String,
    /// The account's usage as the vendor's last answer reported it (HubSpot, Salesforce); null
    /// where the vendor does not report it (Zoho).
    pub used: Option<u64>,
    /// The share kept for the account's other apps (`daily_reserve_percent`).
    pub reserve_percent: u64,
    /// The usage at which Tributary pauses the connection: the allocation less the reserve.
    pub stop_at: u64,
}

/// The connection's rate budget as it stands.
pub async fn rate_limit(
    state: &AppState,
    connection: &connections::Model,
) -> Result<RateLimitOut, ApiError> {
    use tributary_worker::budget::{Rate, Source};
    use tributary_worker::crm::{limits, pacing};
    let settings = serde_json::from_str(&connection.settings).unwrap_or_default();
    let info: serde_json::Map<String, Value> =
        serde_json::from_str(&connection.vendor_info).unwrap_or_default();
    let usage = limits::recorded_usage(&connection.provider, &info);
    let daily = limits::daily_cap(&connection.provider, &settings, usage.map(|u| u.allocation))
        .map(|cap| DailyCapOut {
            allocation: cap.allocation,
            source: cap.source.as_str().into(),
            used: usage.map(|u| u.used),
            reserve_percent: cap.reserve_percent,
            stop_at: cap.stop_at,
        });
    let planned =
        limits::edition(&connection.provider, &settings).is_some_and(|e| e.burst.is_some());
    let (given, source) = pacing::rate_of(&connection.provider, &settings);
    let budget = state
        .connector()
        .budgets
        .state(&pacing::budget_key(&connection.id))
        .await
        .map_err(|e| ApiError::Unavailable(format!("the rate budget cannot be read now: {e}")))?;
    let learned = budget.as_ref().and_then(|b| b.learned);
    let (rate, named): (Option<Rate>, &str) = match (source, learned) {
        (Source::Setting, _) => (Some(given), "setting"),
        (Source::Default, Some(rate)) => (Some(rate), "learned"),
        (Source::Default, None) if given.requests > 0 && planned => (Some(given), "edition"),
        (Source::Default, None) if given.requests > 0 => (Some(given), "default"),
        _ => (None, "none"),
    };
    let now = chrono::Utc::now().timestamp_micros();
    let at = |micros: i64| {
        (micros > now)
            .then(|| chrono::DateTime::from_timestamp_micros(micros))
            .flatten()
    };
    let (next, held) = budget.map_or((0, 0), |b| (b.next_slot_us, b.held_until_us));
    let interval = rate.map_or(0, Rate::interval_us);
    let reserved_ahead = if interval > 0 && next > now {
        ((next - now) / interval) as u64
    } else {
        0
    };
    let most = limits::concurrent_requests(&connection.provider, &settings);
    let in_flight = match most {
        None => None,
        Some(_) => Some(
            state
                .connector()
                .budgets
                .leases_out(&pacing::budget_key(&connection.id))
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!("the requests in flight cannot be read now: {e}"))
                })?,
        ),
    };
    Ok(RateLimitOut {
        max_concurrent_requests: most,
        requests_in_flight: in_flight,
        requests: rate.map(|r| r.requests),
        per_seconds: rate.map(|r| r.per_ms as f64 / 1000.0),
        source: named.into(),
        reserved_ahead,
        next_slot_at: at(next.max(held)),
        held_until: at(held),
        daily,
    })
}
