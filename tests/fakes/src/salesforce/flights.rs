//! Salesforce's limit of concurrent long-running requests ("API Request Limits and
//! Allocations"): requests that have run 20 s or longer count, 25 of them at most on a
//! production org (5 on Developer Edition); while that many run, every new request is
//! refused with `REQUEST_LIMIT_EXCEEDED`, and requests shorter than the threshold are not
//! limited. A test sets the threshold and how long each answer takes, on a shorter clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Delay;

#[derive(Default)]
pub(super) struct Flights {
    /// (most long-running requests at once, the age at which a request counts as long).
    limit: Option<(usize, Duration)>,
    /// How long each admitted API request takes to answer.
    latency: Duration,
    in_flight: Arc<Mutex<HashMap<u64, Instant>>>,
    next: u64,
    /// Requests refused for the limit.
    pub(super) refusals: u64,
    /// The most requests in flight at once so far.
    pub(super) most_at_once: usize,
}

impl Flights {
    pub(super) fn limit(&mut self, most: usize, long_after: Duration, latency: Duration) {
        self.limit = Some((most, long_after));
        self.latency = latency;
    }

    /// Whether a request arriving now is refused: as many long-running requests as the
    /// limit are in flight.
    pub(super) fn refuses(&mut self) -> bool {
        let Some((most, long_after)) = self.limit else {
            return false;
        };
        let long = self
            .in_flight
            .lock()
            .unwrap()
            .values()
            .filter(|started| started.elapsed() >= long_after)
            .count();
        let refused = long >= most;
        if refused {
            self.refusals += 1;
        }
        refused
    }

    /// An admitted request takes off: its answer is held for the latency, and it is in
    /// flight until then.
    pub(super) fn take_off(&mut self) -> Option<Delay> {
        if self.latency.is_zero() {
            return None;
        }
        self.next += 1;
        let id = self.next;
        let in_flight = self.in_flight.clone();
        {
            let mut flying = in_flight.lock().unwrap();
            flying.insert(id, Instant::now());
            self.most_at_once = self.most_at_once.max(flying.len());
        }
        Some(Delay {
            wait: self.latency,
            done: Box::new(move || {
                in_flight.lock().unwrap().remove(&id);
            }),
        })
    }
}
