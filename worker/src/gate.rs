//! Job slots handed out by priority. When every slot is taken, the next one freed goes to the
//! highest-priority job waiting for one (the earliest of equals). The Redis queue's lanes —
//! one list per priority — share one gate, so however long the backlog's lane, a live payment
//! failure waits only for the next slot to free.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

pub struct Gate {
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    arrivals: u64,
}

struct Waiter {
    priority: i16,
    arrival: u64,
    grant: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    /// Higher priority first; of equals, the earlier arrival.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.arrival.cmp(&self.arrival))
    }
}

/// A slot held; dropping it frees the slot for the next job.
pub struct Pass {
    gate: Arc<Gate>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A wait for a slot; if the waiting job is cancelled after its slot was granted, the slot
/// goes on to the next job instead of being lost.
struct Waiting {
    gate: Arc<Gate>,
    granted: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut granted) = self.granted.take() {
            granted.close();
            if granted.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl Gate {
    pub fn new(slots: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: BinaryHeap::new(),
                arrivals: 0,
            }),
        })
    }

    /// Waits for a slot, ahead of every waiting job of a lower priority.
    pub async fn enter(self: &Arc<Self>, priority: i16) -> Pass {
        let granted = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.free > 0 {
                state.free -= 1;
                return Pass { gate: self.clone() };
            }
            let (grant, granted) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.push(Waiter {
                priority,
                arrival,
                grant,
            });
            granted
        };
        let mut waiting = Waiting {
            gate: self.clone(),
            granted: Some(granted),
        };
        if let Some(granted) = waiting.granted.as_mut() {
            // The sender lives in the gate, which this future keeps alive: only a grant ends
            // the wait.
            let _ = granted.await;
        }
        waiting.granted = None;
        Pass { gate: self.clone() }
    }

    /// Gives a freed slot to the highest-priority job still waiting, else keeps it free.
    fn release(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(waiter) = state.waiting.pop() {
            if waiter.grant.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_waiting() {
        let gate = Gate::new(1);
        let held = gate.enter(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("bulk 1", 0), ("live", 2), ("bulk 2", 0), ("failure", 3)] {
            let gate = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _pass = gate.enter(priority).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Each arrives before the next.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["failure", "live", "bulk 1", "bulk 2"]
        );
    }

    #[tokio::test]
    async fn a_cancelled_wait_passes_its_slot_on() {
        let gate = Gate::new(1);
        let held = gate.enter(0).await;
        let cancelled = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _pass = gate.enter(3).await;
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let next = tokio::spawn({
            let gate = gate.clone();
            async move {
                let _pass = gate.enter(0).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the slot went on to the next job")
            .unwrap();
        // Every slot came back: one can be taken at once.
        tokio::time::timeout(Duration::from_secs(5), gate.enter(1))
            .await
            .expect("the slot is free");
    }
}
