//! Every request of a connection takes a slot of its shared rate budget first (see
//! [`crate::budget`]), so all processes together stay under the vendor's limit; every answer
//! teaches the budget what the vendor says of its limit, and a 429 holds the budget until the
//! vendor's `Retry-After`, so no process sends early.

use std::time::Duration;

use super::Call;
use super::wire::Reply;
use crate::budget::{Rate, Slot, Source};
use crate::crm::error::{CrmError, ErrorKind};

/// The longest a request waits for its slot in line; beyond, the delivery is retried when the
/// slot comes (a throttled attempt, which does not use up its retries).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The rate a connection's requests are held to, and whether a learned one may replace it:
/// its `rate_limit` setting, else its plan's or the vendor's default
/// ([`crate::crm::limits::default_rate`]); none (holds only) for neither.
pub fn rate_of(
    provider: &str,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> (Rate, Source) {
    if let Some(rate) = settings
        .get("rate_limit")
        .and_then(|v| crate::crm::config::rate_limit(v).ok())
    {
        return (rate, Source::Setting);
    }
    (
        crate::crm::limits::default_rate(provider, settings).unwrap_or(Rate::new(0, 1)),
        Source::Default,
    )
}

/// The key of a connection's budget.
pub fn budget_key(connection_id: &str) -> String {
    format!("crm:{connection_id}")
}

fn header_number(reply: &Reply, name: &str) -> Option<u64> {
    reply.header(name)?.trim().parse().ok()
}

impl Call<'_> {
    /// Waits for the connection's next slot; a slot further than [`PATIENCE`] away (a hold, or
    /// a long line) is a rate-limited error naming when to come back, with nothing sent.
    pub(super) async fn take_slot(&self) -> Result<(), CrmError> {
        // An `http` step without a connection has no budget of its own (nothing to key it
        // by but the tenant's, which would let one URL's 429 hold every other).
        if self.connection.id.is_empty() {
            return Ok(());
        }
        let (rate, source) = rate_of(&self.connection.provider, &self.settings);
        let key = budget_key(&self.connection.id);
        let budgets = &self.connector.budgets;
        let provider = self.connection.provider.as_str();
        let deadline = std::time::Instant::now() + PATIENCE;
        let failed = |e: String| CrmError::new(ErrorKind::Transient, e);
        if rate.requests == 0 {
            // No limit to keep: only a hold (a vendor's Retry-After) stops it, and reading
            // costs the shared store less than reserving.
            return match budgets.held(&key).await.map_err(failed)? {
                None => Ok(()),
                Some(wait) if wait <= PATIENCE => {
                    crate::metrics::budget_wait(provider, wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    Ok(())
                }
                Some(wait) => Err(too_far(provider, wait)),
            };
        }
        loop {
            let patience = deadline.saturating_duration_since(std::time::Instant::now());
            let slot = budgets
                .reserve(&key, &self.connection.tenant_id, rate, source, patience)
                .await
                .map_err(failed)?;
            let wait = match slot {
                Slot::After(wait) => wait,
                Slot::TooFar(wait) => return Err(too_far(provider, wait)),
            };
            if wait.is_zero() {
                return Ok(());
            }
            crate::metrics::budget_wait(provider, wait.as_secs_f64());
            tokio::time::sleep(wait).await;
            // A hold set while this request waited (another process's 429) comes first: it
            // takes a slot after the hold instead.
            if budgets.held(&key).await.map_err(failed)?.is_none() {
                return Ok(());
            }
        }
    }
}

/// The error for a slot further than [`PATIENCE`] away: nothing sent, retried then.
fn too_far(provider: &str, wait: Duration) -> CrmError {
    crate::metrics::budget_wait(provider, 0.0);
    let mut error = CrmError::new(
        ErrorKind::RateLimited,
        format!(
            "the connection's rate budget has no slot for {} s (a vendor's Retry-After, or a \
             line of requests); tried again then",
            wait.as_secs().max(1)
        ),
    );
    error.retry_after = Some(wait.max(Duration::from_secs(1)));
    error
}

impl Call<'_> {
    /// Learns from an answer: the limit the vendor states, and a hold when it says to wait.
    pub(super) async fn note_limits(&self, reply: &Reply) {
        if self.connection.id.is_empty() {
            return;
        }
        let budgets = &self.connector.budgets;
        let key = &budget_key(&self.connection.id);
        let tenant = self.connection.tenant_id.as_str();
        let mut window = None;
        if self.connection.provider == "hubspot" {
            let max = header_number(reply, "x-hubspot-ratelimit-max");
            let interval = header_number(reply, "x-hubspot-ratelimit-interval-milliseconds");
            if let (Some(max @ 1..=100_000), Some(ms @ 1..=86_400_000)) = (max, interval) {
                let spent = header_number(reply, "x-hubspot-ratelimit-remaining") == Some(0);
                window = Some((Rate::new(max as u32, ms), spent));
            }
        }
        // A 429's hold is written first, before anything else is learned: every moment
        // before it is in the store is a moment another process may send early.
        let hold = |wait: Duration| async move {
            let wait = wait.min(crate::vendor_time::MAX_HOLD);
            let until = crate::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
            budgets.hold(key, tenant, until).await;
        };
        if reply.status == 429 {
            // The window, when HubSpot says it is spent (by someone else, as a 429 says).
            let spent = window.and_then(|(rate, spent)| spent.then_some(rate.per_ms));
            hold(
                reply
                    .retry_after()
                    .or(spent.map(Duration::from_millis))
                    .unwrap_or(Duration::from_secs(1)),
            )
            .await;
        }
        // Salesforce's concurrent long-running requests are all taken (by other apps too):
        // no process sends until some have ended.
        let provider = self.connection.provider.as_str();
        if crate::crm::limits::concurrency_refused(provider, reply.status, &reply.body) {
            hold(crate::crm::limits::CONCURRENCY_HOLD).await;
        }
        if let Some((rate, spent)) = window {
            let new = budgets.learn(key, tenant, rate).await;
            // The window was spent at a pace not yet learned: nothing more until it has
            // passed. Under the learned pace a spent window frees itself one request at a time.
            if spent && new && reply.status != 429 {
                hold(Duration::from_millis(rate.per_ms)).await;
            }
        }
        self.keep_daily_cap(reply).await;
    }
}

impl Call<'_> {
    /// Pauses the connection when the account's daily usage, as the answer reports it, has
    /// reached the connection's daily cap (see [`crate::crm::limits`]): nothing more is sent
    /// until the pause ends, and the connection says why.
    async fn keep_daily_cap(&self, reply: &Reply) {
        use crate::crm::limits;
        let provider = self.connection.provider.as_str();
        let Some(usage) =
            limits::reported_usage(provider, |name| reply.header(name).map(str::to_string))
        else {
            return;
        };
        let Some(cap) = limits::daily_cap(provider, &self.settings, Some(usage.allocation)) else {
            return;
        };
        if usage.used < cap.stop_at {
            return;
        }
        let until = crate::vendor_time::after(crate::now(), limits::CAP_PAUSE);
        let reason = limits::cap_reason(provider, usage, cap);
        if let Err(e) =
            super::status::pause(&self.connector.db, &self.connection.id, until, &reason).await
        {
            tracing::warn!(connection_id = %self.connection.id, error = %e,
                "could not pause a connection at its daily cap");
        }
    }
}
