//! Each tenant's share of a process's job slots, and which delivery a job is working on (so a
//! panic can be pinned on it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a job over its tenant's share and its waiting room waits in the queue before it
/// is offered again.
pub(super) const DEFER_DELAY: Duration = Duration::from_secs(1);

/// How long a job may wait in the process for one of its tenant's slots before it goes back to
/// the queue instead.
pub(super) const SLOT_WAIT: Duration = Duration::from_millis(500);

/// Each tenant's share of a process's job slots: at most `share` of one tenant's jobs run at
/// once, so a tenant whose CRM hangs or fails holds no more than that, and the other slots
/// stay free for everyone else. A job over the share waits in the process for the tenant's
/// next free slot (the highest priority first) while fewer than `waiting` of the tenant's
/// jobs of its priority or higher are waiting; beyond that, or after `SLOT_WAIT`, it goes back
/// to the queue. So one busy tenant keeps its share busy without a round trip through the
/// queue, its failed payment is not sent back behind its own backlog, and it still holds at
/// most `share + waiting` slots for each priority.
#[derive(Debug)]
pub struct Fairness {
    share: usize,
    waiting: usize,
    tenants: std::sync::Mutex<HashMap<String, TenantSlots>>,
}

#[derive(Debug, Default)]
pub(super) struct TenantSlots {
    running: usize,
    /// Jobs in line, by priority.
    waiting: [usize; PRIORITIES],
    freed: Arc<tokio::sync::Notify>,
}

/// Priorities [`crate::queue::priority::BULK`] to `LIVE_FAILURE`.
const PRIORITIES: usize = crate::queue::LANES;

impl TenantSlots {
    fn in_line(&self) -> usize {
        self.waiting.iter().sum()
    }

    /// Jobs in line at a priority above `priority`.
    fn ahead_of(&self, priority: usize) -> usize {
        self.waiting[priority + 1..].iter().sum()
    }

    /// Takes a slot for a job at `priority` if the tenant runs fewer than `share` and no job
    /// of a higher priority is in line.
    fn take(&mut self, share: usize, priority: usize) -> bool {
        let free = self.running < share && self.ahead_of(priority) == 0;
        if free {
            self.running += 1;
        }
        free
    }
}

impl Fairness {
    /// `share` of a process's `slots` per tenant; a tenant's jobs may also wait in half of the
    /// slots the share leaves to others.
    pub fn new(share: usize, slots: usize) -> Arc<Fairness> {
        let share = share.max(1);
        Arc::new(Fairness {
            share,
            waiting: slots.saturating_sub(share) / 2,
            tenants: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantSlots>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one of `tenant`'s jobs at `priority`: at once when the tenant is under its
    /// share and none of its jobs of a higher priority is in line, else after waiting in line
    /// for up to `wait`. The line is by priority: a freed slot goes to the highest waiting, and
    /// a job is turned away only when `waiting` jobs of its priority or higher are in line, so
    /// a live failed payment is never sent back behind its own tenant's backfill. `None`: the
    /// job should go back to the queue.
    pub async fn enter(
        self: &Arc<Self>,
        tenant: &str,
        priority: i16,
        wait: Duration,
    ) -> Option<FairSlot> {
        let priority = (priority.max(0) as usize).min(PRIORITIES - 1);
        let deadline = tokio::time::Instant::now() + wait;
        let freed = {
            let mut tenants = self.lock();
            let slots = tenants.entry(tenant.to_string()).or_default();
            if slots.take(self.share, priority) {
                return Some(self.slot(tenant));
            }
            if slots.waiting[priority..].iter().sum::<usize>() >= self.waiting {
                return None;
            }
            slots.waiting[priority] += 1;
            slots.freed.clone()
        };
        loop {
            // Listening first, then looking: a slot freed before this job listened is seen
            // by the look, one freed after it wakes the job.
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                if slots.take(self.share, priority) {
                    slots.waiting[priority] -= 1;
                    return Some(self.slot(tenant));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                slots.waiting[priority] -= 1;
                // A slot freed just as the wait ran out.
                if slots.take(self.share, priority) {
                    return Some(self.slot(tenant));
                }
                if slots.in_line() > 0 {
                    // Those behind may take a slot this one was owed.
                    slots.freed.notify_waiters();
                }
                return None;
            }
        }
    }

    fn slot(self: &Arc<Self>, tenant: &str) -> FairSlot {
        FairSlot {
            fairness: self.clone(),
            tenant: tenant.to_string(),
        }
    }
}

/// One running job of a tenant; its slot is given back when dropped (even on a panic).
#[derive(Debug)]
pub struct FairSlot {
    fairness: Arc<Fairness>,
    tenant: String,
}

impl Drop for FairSlot {
    fn drop(&mut self) {
        let mut tenants = self.fairness.lock();
        if let Some(slots) = tenants.get_mut(&self.tenant) {
            slots.running = slots.running.saturating_sub(1);
            if slots.in_line() > 0 {
                // Every job in line looks; the highest priority takes the slot.
                slots.freed.notify_waiters();
            } else if slots.running == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

pub(super) fn note_current_delivery(id: &str) {
    let _ = CURRENT_DELIVERY.try_with(|current| *current.borrow_mut() = Some(id.to_string()));
}

tokio::task_local! {
    /// The delivery a job is working on, to name it if the job panics.
    pub(super) static CURRENT_DELIVERY: std::cell::RefCell<Option<String>>;
}
