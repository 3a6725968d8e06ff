//! A connection whose vendor limits the requests that run at once (Salesforce; see
//! [`crate::crm::limits::concurrent_requests`]) lends each request a lease of its shared
//! budget ([`crate::budget`]) while it is in flight, so all processes together never have
//! more out than the limit. A request that finds every lease out waits for one, up to
//! [`PATIENCE`], in its process's line: only the first of the line asks the shared store,
//! again when one of the process's own leases is given back or every [`LOOK_AGAIN`]. Beyond
//! its patience, the delivery is retried later, as a throttled attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Call;
use super::pacing::{PATIENCE, budget_key};
use crate::budget::Budgets;
use crate::crm::error::{CrmError, ErrorKind};

/// How often a request waiting for a lease looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// How long past its longest life — the wait for its rate slot ([`PATIENCE`]) and its
/// timeout — a lease counts if its process dies before giving it back.
const GRACE: Duration = Duration::from_secs(10);

/// One request's lease, given back when dropped (its answer is in, or it failed).
pub(super) struct Lease {
    budgets: Arc<Budgets>,
    key: String,
    id: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (budgets, key, id) = (
            self.budgets.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.id),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { budgets.give_back(&key, &id).await });
        }
    }
}

impl Call<'_> {
    /// A lease for the request about to be sent, when the connection limits its requests at
    /// once; waits while all are out.
    pub(super) async fn take_lease(&self) -> Result<Option<Lease>, CrmError> {
        if self.connection.id.is_empty() {
            return Ok(None);
        }
        let provider = self.connection.provider.as_str();
        let Some(most) = crate::crm::limits::concurrent_requests(provider, &self.settings) else {
            return Ok(None);
        };
        let budgets = &self.connector.budgets;
        let key = budget_key(&self.connection.id);
        let id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let gate = budgets.lease_gate(&key);
        let Ok(_turn) = tokio::time::timeout(PATIENCE, gate.turn.lock()).await else {
            return Err(all_out(provider, most));
        };
        loop {
            let expires = crate::now()
                + chrono::Duration::from_std(PATIENCE + self.timeout + GRACE)
                    .unwrap_or(chrono::Duration::minutes(10));
            let taken = budgets
                .take_lease(
                    &key,
                    &self.connection.tenant_id,
                    &id,
                    most,
                    expires.timestamp_micros(),
                )
                .await
                .map_err(|e| CrmError::new(ErrorKind::Transient, e))?;
            if taken {
                if started.elapsed() >= LOOK_AGAIN {
                    crate::metrics::budget_wait(provider, started.elapsed().as_secs_f64());
                }
                return Ok(Some(Lease {
                    budgets: budgets.clone(),
                    key,
                    id,
                }));
            }
            if started.elapsed() >= PATIENCE {
                return Err(all_out(provider, most));
            }
            // Another process's lease may end at any time; this process's wake the line.
            let _ = tokio::time::timeout(LOOK_AGAIN, gate.freed.notified()).await;
        }
    }
}

/// Every lease stayed out for [`PATIENCE`]: nothing sent, tried again shortly.
fn all_out(provider: &str, most: u32) -> CrmError {
    crate::metrics::budget_wait(provider, 0.0);
    let mut error = CrmError::new(
        ErrorKind::RateLimited,
        format!(
            "all {most} of the connection's requests at once are in flight \
             (max_concurrent_requests); tried again shortly"
        ),
    );
    error.retry_after = Some(Duration::from_secs(5));
    error
}
