//! Per-tenant limits (`TRIBUTARY_MAX_FLOWS`, `TRIBUTARY_MAX_CONNECTIONS`,
//! `TRIBUTARY_MAX_STEPS_PER_FLOW`) and the webhook rate per Stripe account
//! (`TRIBUTARY_WEBHOOK_RATE`). A request over a limit is refused before anything is written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use entity::{TenantOwned, tenants};
use sea_orm::sea_query::LockType;
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QuerySelect};
use tributary_worker::settings::Rate;

use crate::error::ApiError;

/// Refuses with 409 when the tenant already has `limit` rows of `E`. Call it inside the
/// transaction that inserts the row: it locks the tenant's row first (Postgres; SQLite's write
/// transaction is already exclusive), so concurrent creations are counted one after another.
/// The lock is `FOR NO KEY UPDATE`: inserts elsewhere that only reference the tenant (events,
/// audit entries) do not wait for it.
pub async fn ensure_room<E, C>(
    db: &C,
    tenant_id: &str,
    limit: u64,
    field: &str,
    message: String,
) -> Result<(), ApiError>
where
    E: TenantOwned,
    E::Model: Sync,
    C: ConnectionTrait,
{
    tenants::Entity::find_by_id(tenant_id.to_string())
        .lock(LockType::NoKeyUpdate)
        .one(db)
        .await?;
    if E::find_in_tenant(tenant_id).count(db).await? >= limit {
        return Err(ApiError::Conflict {
            detail: message,
            field: Some(field.to_string()),
        });
    }
    Ok(())
}

/// A token bucket per key, in this process: `rate.count` at once, refilled evenly over
/// `rate.period`. Several replicas each keep their own, so the rate is per replica.
pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept before full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.count) / self.rate.period.as_secs_f64().max(0.001)
    }

    /// Takes one token for `key`; `Err(seconds)` when there is none, with how long until one.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        self.take_n(key, 1)
    }

    /// Takes `n` tokens for `key` at once (a batch of `n` events): all or none. More than the
    /// bucket holds takes a full bucket.
    pub fn take_n(&self, key: &str, n: usize) -> Result<(), u64> {
        let capacity = f64::from(self.rate.count);
        let per_second = self.per_second();
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second)
            .min(capacity);
        bucket.at = now;
        let need = (n.max(1) as f64).min(capacity.max(1.0));
        if bucket.tokens >= need {
            bucket.tokens -= need;
            Ok(())
        } else {
            Err(((need - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_runs_out_per_key_and_says_when_to_come_back() {
        let limiter = RateLimiter::new(Rate {
            count: 3,
            period: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(limiter.take("a").is_ok());
        }
        let wait = limiter.take("a").unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(limiter.take("b").is_ok());
    }

    #[test]
    fn a_batch_takes_a_token_per_event_all_or_none() {
        let limiter = RateLimiter::new(Rate {
            count: 10,
            period: Duration::from_secs(60),
        });
        assert!(limiter.take_n("a", 7).is_ok());
        let wait = limiter.take_n("a", 4).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(
            limiter.take_n("a", 3).is_ok(),
            "the refused batch took nothing"
        );
        assert!(limiter.take("a").is_err());
        // More than the bucket holds takes a full bucket, never forever refused.
        assert!(limiter.take_n("b", 500).is_ok());
        assert!(limiter.take("b").is_err());
    }
}
