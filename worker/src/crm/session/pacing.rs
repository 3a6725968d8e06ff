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

/// A vendor's documented limit, before its headers say better: HubSpot's lowest (Free and
/// Starter, 100 per 10 s). The other vendors limit by the day or by concurrency, which their
/// answers handle (a daily limit pauses the connection).
pub fn default_rate(provider: &str) -> Option<Rate> {
    match provider {
        "hubspot" => Some(Rate::new(100, 10_000)),
        _ => None,
    }
}

/// The rate a connection's requests are held to, and whether a learned one may replace it:
/// its `rate_limit` setting, else the vendor's default; none (holds only) for neither.
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
        default_rate(provider).unwrap_or(Rate::new(0, 1)),
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
        let key = budget_key(&self.connection.id);
        let tenant = self.connection.tenant_id.as_str();
        let mut wait = None;
        if self.connection.provider == "hubspot" {
            let max = header_number(reply, "x-hubspot-ratelimit-max");
            let interval = header_number(reply, "x-hubspot-ratelimit-interval-milliseconds");
            if let (Some(max @ 1..=100_000), Some(ms @ 1..=86_400_000)) = (max, interval) {
                let new = budgets.learn(&key, tenant, Rate::new(max as u32, ms)).await;
                let spent = header_number(reply, "x-hubspot-ratelimit-remaining") == Some(0);
                // The window was spent at a pace not yet learned (or by someone else, as a
                // 429 says): nothing more until it has passed. Under the learned pace a spent
                // window frees itself one request at a time.
                if spent && (new || reply.status == 429) {
                    wait = Some(Duration::from_millis(ms));
                }
            }
        }
        if reply.status == 429 {
            wait = reply
                .retry_after()
                .or(wait)
                .or(Some(Duration::from_secs(1)));
        }
        if let Some(wait) = wait {
            let wait = wait.min(crate::vendor_time::MAX_HOLD);
            let until = crate::now()
                + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
            budgets.hold(&key, tenant, until).await;
        }
    }
}
