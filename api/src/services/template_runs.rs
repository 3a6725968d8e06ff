//! Bounds on the template work a tenant can ask of the api: flow previews and validations run
//! on a blocking thread with a wall-clock limit (besides the engine's fuel and size limits),
//! and count against a per-tenant rate, `TRIBUTARY_PREVIEW_RATE` (default `60/minute`).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// How long one preview or validation may take.
pub const TEMPLATE_RUN_TIMEOUT: Duration = Duration::from_secs(5);
/// The rate when `TRIBUTARY_PREVIEW_RATE` is not set.
pub const DEFAULT_PREVIEW_RATE: &str = "60/minute";

/// `N/second|minute|hour` as (N, period).
pub fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let period = match unit.trim() {
        "second" => Duration::from_secs(1),
        "minute" => Duration::from_secs(60),
        "hour" => Duration::from_secs(3600),
        _ => return None,
    };
    Some((count, period))
}

static RATE: LazyLock<(u32, Duration)> =
    LazyLock::new(|| match std::env::var("TRIBUTARY_PREVIEW_RATE") {
        Ok(text) => parse_rate(&text).unwrap_or_else(|| {
            tracing::error!(
                value = %text,
                "TRIBUTARY_PREVIEW_RATE is not N/second|minute|hour; using {DEFAULT_PREVIEW_RATE}"
            );
            parse_rate(DEFAULT_PREVIEW_RATE).expect("the default parses")
        }),
        Err(_) => parse_rate(DEFAULT_PREVIEW_RATE).expect("the default parses"),
    });

/// A token bucket: `capacity` tokens, refilled at `capacity` a `period`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every tenant, in this process.
#[derive(Debug, Default)]
pub struct Buckets {
    tenants: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Takes one token of `tenant`'s bucket, or says in how many seconds one will be there.
    pub fn take(&self, tenant: &str, (capacity, period): (u32, Duration)) -> Result<(), u64> {
        let capacity = f64::from(capacity);
        let per_second = capacity / period.as_secs_f64();
        let now = Instant::now();
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        // Full buckets carry no information: drop them so the map stays small.
        if tenants.len() > 10_000 {
            tenants.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = tenants.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

static BUCKETS: LazyLock<Buckets> = LazyLock::new(Buckets::default);

/// Counts one preview or validation of `tenant`; 429 with `Retry-After` over the rate.
pub fn count(tenant: &str) -> Result<(), ApiError> {
    BUCKETS
        .take(tenant, *RATE)
        .map_err(ApiError::TooManyRequests)
}

/// Runs template work on a blocking thread, at most [`TEMPLATE_RUN_TIMEOUT`]. The engine's
/// fuel ends a render that runs on after the answer was given up.
pub async fn run<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(TEMPLATE_RUN_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(joined)) => Err(ApiError::Internal(anyhow::anyhow!(
            "template work failed: {joined}"
        ))),
        Err(_) => Err(ApiError::field(
            "flow",
            format!(
                "the templates took longer than {} seconds",
                TEMPLATE_RUN_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("60/minute"), Some((60, Duration::from_secs(60))));
        assert_eq!(parse_rate("5/second"), Some((5, Duration::from_secs(1))));
        assert_eq!(parse_rate("0/hour"), None);
        assert_eq!(parse_rate("ten/hour"), None);
        assert_eq!(parse_rate("10/day"), None);
    }

    #[test]
    fn buckets_are_per_tenant() {
        let buckets = Buckets::default();
        let rate = (3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(buckets.take("a", rate).is_ok());
        }
        let wait = buckets.take("a", rate).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(buckets.take("b", rate).is_ok());
    }
}
