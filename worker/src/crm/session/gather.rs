//! A write joining a batch (see [`super::batch`]): it waits in line, or leads — lets a busy
//! group's batch fill, then takes the connection's rate slot — before the batch is gathered.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use super::Call;
use super::batch::{Batches, Joined, Lead, STALLED, Turn, Waiter};
use crate::crm::error::{CrmError, ErrorKind};

impl Call<'_> {
    /// Joins the batch of `group` (a key naming the connection, object and key field) with
    /// one write's `input` for `record`. Returns its answer when another write's batch carried
    /// it, or the lead: then the connection's rate slot is taken (the call's next request
    /// uses it) and the batch gathered, at most `max` writes, for the caller to send and
    /// [`super::batch::Batch::finish`].
    pub async fn join_batch(
        &mut self,
        group: String,
        record: String,
        input: Value,
        max: usize,
    ) -> Result<Joined, CrmError> {
        let batches = self.connector.batches.clone();
        let (tx, rx) = oneshot::channel();
        let leads = {
            let mut groups = batches.lock();
            let state = groups.entry(group.clone()).or_default();
            let leads = !state.leading;
            state.leading = true;
            state.waiting.push_back(Waiter {
                input,
                record,
                tx: (!leads).then_some(tx),
            });
            leads
        };
        let lead = if leads {
            Lead::new(batches.clone(), &group)
        } else {
            match rx.await {
                Ok(Turn::Answer(answer, trail, size)) => {
                    return Ok(Joined::Answered {
                        answer,
                        trail,
                        size,
                    });
                }
                // The lead passed here: this write is first in line.
                Ok(Turn::Lead(lead)) => lead,
                Err(_) => {
                    return Err(CrmError::new(
                        ErrorKind::Transient,
                        "the batch this write waited for was dropped",
                    ));
                }
            }
        };
        // Until the batch is gathered, a leader that gives up (no slot in time) or is
        // cancelled drops `lead`, which leaves the line and passes the lead on.
        let linger = self.connector.batch_linger;
        if !linger.is_zero() && batches.busy(&group) {
            fill(&batches, &group, max, linger).await;
        }
        self.take_slot().await?;
        lead.disarm();
        self.prepaid = true;
        let batch = batches.gather(&group, max.max(1));
        crate::metrics::batch_records(&self.connection.provider, batch.len());
        Ok(Joined::Lead(batch))
    }
}

/// Waits while the group's batch fills: until `max` writes wait, `linger` has passed, or no
/// write has joined for [`STALLED`].
async fn fill(batches: &Batches, group: &str, max: usize, linger: Duration) {
    let started = Instant::now();
    let mut seen = batches.waiting(group);
    let mut grew = Instant::now();
    while seen < max && started.elapsed() < linger && grew.elapsed() < STALLED {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = batches.waiting(group);
        if now > seen {
            seen = now;
            grew = Instant::now();
        }
    }
}
