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
/// next free slot (first come, first served) while the tenant has fewer than `waiting`
/// jobs waiting; beyond that, or after `SLOT_WAIT`, it goes back to the queue. So one busy
/// tenant keeps its share busy without a round trip through the queue, and still holds at
/// most `share + waiting` of the slots.
#[derive(Debug)]
pub struct Fairness {
    share: usize,
    waiting: usize,
    tenants: std::sync::Mutex<HashMap<String, TenantSlots>>,
}

#[derive(Debug, Default)]
pub(super) struct TenantSlots {
    running: usize,
    waiting: usize,
    freed: Arc<tokio::sync::Notify>,
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

    /// A slot for one of `tenant`'s jobs: at once when the tenant is under its share, else
    /// after waiting in line for up to `wait`, if the line is not full. `None`: the job should
    /// go back to the queue.
    pub async fn enter(self: &Arc<Self>, tenant: &str, wait: Duration) -> Option<FairSlot> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut in_line = false;
        loop {
            let freed = {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                if slots.running < self.share {
                    slots.running += 1;
                    if in_line {
                        slots.waiting -= 1;
                    }
                    return Some(self.slot(tenant));
                }
                if !in_line {
                    if slots.waiting >= self.waiting {
                        return None;
                    }
                    slots.waiting += 1;
                    in_line = true;
                }
                slots.freed.clone()
            };
            if tokio::time::timeout_at(deadline, freed.notified())
                .await
                .is_err()
            {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                slots.waiting -= 1;
                // A slot freed just now (its wake-up may have gone to another in line).
                if slots.running < self.share {
                    slots.running += 1;
                    return Some(self.slot(tenant));
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
            if slots.waiting > 0 {
                slots.freed.notify_one();
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
