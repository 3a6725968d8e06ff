//! Batching under backlog: single-record writes to the same connection, object and key field
//! that wait at the same time go out as one batch call (HubSpot's batch upsert takes 100).
//!
//! A group commit, per process. The first write of a group leads: it takes the connection's
//! next rate slot, then gathers every write of the group waiting by then (itself first, up to
//! the batch's size) and sends them as one call. Writes arriving meanwhile wait in line; when
//! the call is answered each gets its own record's answer, and the first in line leads the
//! next batch. An idle connection's write is sent at once, alone, so nothing waits that did
//! not have to; under a backlog the wait for a rate slot is what fills the batch, and while
//! the group is busy (it sent a batch of several writes in the last 5 s) its leader also waits
//! up to the connector's linger for the batch to fill — until it is full, or no write has
//! joined for [`STALLED`] — so each call, which counts against the account's daily
//! allocation, carries as many records as it can.
//!
//! Two writes of the same record (the same key value) never share a batch: the later one
//! waits for the next, so the order they came in is the order the vendor sees them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;

use super::trail::Trail;
use crate::crm::error::{CrmError, ErrorKind};

/// What one write of a batch came to.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The vendor's answer for this record (its result, or its own error in a partial
    /// success); the adapter reads it as it would a single write's.
    Record(Value),
    /// The vendor refused the batch as a whole: send this record alone, so that one bad
    /// record does not fail its neighbours.
    Alone,
    /// The call failed for every record of the batch (a network error, a 5xx, a 429).
    Failed(CrmError),
}

/// A write's turn: answered by another write's batch, or leading one.
pub enum Joined {
    Answered {
        answer: Answer,
        trail: Trail,
        size: usize,
    },
    Lead(Batch),
}

/// The groups of one process, keyed by connection, object and key field.
#[derive(Default)]
pub struct Batches {
    groups: Mutex<HashMap<String, Group>>,
    /// When each group last sent a batch of more than one write: it is busy for
    /// [`BUSY_FOR`] after, and its leaders wait for their batches to fill.
    last_shared: Mutex<HashMap<String, std::time::Instant>>,
}

/// A lingering leader stops waiting when no write has joined for this long: the process's
/// job slots are all in the batch, or the backlog has ended.
pub(super) const STALLED: std::time::Duration = std::time::Duration::from_millis(250);

/// How long after a batch of several writes its group counts as busy.
pub(super) const BUSY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Group {
    pub(super) waiting: VecDeque<Waiter>,
    pub(super) leading: bool,
}

pub(super) struct Waiter {
    pub(super) input: Value,
    pub(super) record: String,
    /// How this write hears its turn; `None` for the write leading now.
    pub(super) tx: Option<oneshot::Sender<Turn>>,
}

pub(super) enum Turn {
    Lead(Lead),
    Answer(Answer, Trail, usize),
}

/// The lead of a group, before its batch is gathered. Dropped armed — its write cancelled, its
/// slot never came, or never read from its channel — it takes its write out of the line and
/// passes the lead on, so a group is never left without one.
pub(super) struct Lead {
    batches: Arc<Batches>,
    group: String,
    armed: bool,
}

impl Lead {
    pub(super) fn new(batches: Arc<Batches>, group: &str) -> Self {
        Lead {
            batches,
            group: group.to_string(),
            armed: true,
        }
    }

    /// The batch is being gathered: the lead is in use.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if self.armed {
            self.batches.leave(&self.group);
            self.batches.pass_lead(&self.group);
        }
    }
}

/// A batch being sent by the write that leads it. Dropped unfinished (its leader cancelled),
/// it tells every write of it that the call was cut short and passes the lead on.
pub struct Batch {
    batches: Arc<Batches>,
    group: String,
    /// The inputs, the leader's first.
    pub inputs: Vec<Value>,
    followers: Vec<oneshot::Sender<Turn>>,
    done: bool,
}

impl Batches {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the group's lead to the first write still waiting, or leaves it idle.
    pub(super) fn pass_lead(self: &Arc<Self>, group: &str) {
        let mut groups = self.lock();
        let Some(state) = groups.get_mut(group) else {
            return;
        };
        while let Some(first) = state.waiting.front_mut() {
            if let Some(tx) = first.tx.take() {
                match tx.send(Turn::Lead(Lead::new(self.clone(), group))) {
                    Ok(()) => return,
                    // Not taken: its write is gone; this lock is held, so no passing on.
                    Err(Turn::Lead(lead)) => lead.disarm(),
                    Err(_) => {}
                }
            }
            state.waiting.pop_front();
        }
        groups.remove(group);
    }

    /// Takes the leader's batch off the front of the line: its own write, then every write
    /// waiting whose record is not in it yet, up to `max`.
    pub(super) fn gather(self: &Arc<Self>, group: &str, max: usize) -> Batch {
        let mut groups = self.lock();
        let state = groups.entry(group.to_string()).or_default();
        let mut inputs = Vec::new();
        let mut followers = Vec::new();
        let mut records = std::collections::HashSet::new();
        let mut kept = VecDeque::new();
        while let Some(waiter) = state.waiting.pop_front() {
            let closed = waiter.tx.as_ref().is_some_and(|tx| tx.is_closed());
            if closed {
                continue;
            }
            if inputs.len() < max && records.insert(waiter.record.clone()) {
                inputs.push(waiter.input);
                followers.extend(waiter.tx);
            } else {
                kept.push_back(waiter);
            }
        }
        state.waiting = kept;
        drop(groups);
        if inputs.len() > 1 {
            let mut shared = self.last_shared.lock().unwrap_or_else(|e| e.into_inner());
            if shared.len() > 10_000 {
                shared.retain(|_, at| at.elapsed() < BUSY_FOR);
            }
            shared.insert(group.to_string(), std::time::Instant::now());
        }
        Batch {
            batches: self.clone(),
            group: group.to_string(),
            inputs,
            followers,
            done: false,
        }
    }

    /// Whether the group sent a batch of several writes in the last [`BUSY_FOR`]: writes
    /// come faster than calls go, so waiting a little fills the next batch.
    pub(super) fn busy(&self, group: &str) -> bool {
        let shared = self.last_shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.get(group).is_some_and(|at| at.elapsed() < BUSY_FOR)
    }

    /// The writes of the group waiting now, its leader's included.
    pub(super) fn waiting(&self, group: &str) -> usize {
        let groups = self.lock();
        groups.get(group).map_or(0, |state| {
            state
                .waiting
                .iter()
                .filter(|w| !w.tx.as_ref().is_some_and(|tx| tx.is_closed()))
                .count()
        })
    }

    /// Drops a leader's own write from the front of the line (its slot never came).
    pub(super) fn leave(&self, group: &str) {
        let mut groups = self.lock();
        if let Some(state) = groups.get_mut(group)
            && state.waiting.front().is_some_and(|w| w.tx.is_none())
        {
            state.waiting.pop_front();
        }
    }
}

impl Batch {
    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Tells each follower its answer (`answers` in the order of `inputs`) and passes the lead
    /// on; returns the leader's own.
    pub fn finish(mut self, mut answers: Vec<Answer>, trail: &Trail) -> Answer {
        self.done = true;
        let size = self.inputs.len();
        answers.resize(
            size,
            Answer::Failed(CrmError::new(
                ErrorKind::Transient,
                "the vendor's batch answer said nothing of this record",
            )),
        );
        let mut answers = answers.into_iter();
        let own = answers.next().expect("a batch holds its leader's write");
        for (tx, answer) in std::mem::take(&mut self.followers).into_iter().zip(answers) {
            let _ = tx.send(Turn::Answer(answer, trail.clone(), size));
        }
        self.batches.pass_lead(&self.group);
        own
    }
}

impl Batch {
    /// The call got no answer: every write of the batch fails with `error`.
    pub fn fail(self, error: &CrmError, trail: &Trail) {
        let size = self.len();
        self.finish(vec![Answer::Failed(error.clone()); size], trail);
    }

    /// The vendor refused the call as a whole: each write is sent again alone, unless waiting
    /// or new credentials can help (then each fails with `error`, to be retried). Returns the
    /// leader's answer.
    pub fn refused(self, error: CrmError, trail: &Trail) -> Answer {
        let size = self.len();
        let whole = if error.kind.is_retryable() || error.kind == ErrorKind::Auth {
            Answer::Failed(error)
        } else {
            Answer::Alone
        };
        self.finish(vec![whole; size], trail)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let cut = CrmError::new(
            ErrorKind::Transient,
            "the batch call this write joined was cut short",
        );
        for tx in self.followers.drain(..) {
            let _ = tx.send(Turn::Answer(
                Answer::Failed(cut.clone()),
                Trail::default(),
                0,
            ));
        }
        self.batches.pass_lead(&self.group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A waiting write of `record`; its receiver, which hears its turn.
    fn wait(batches: &Batches, record: &str) -> oneshot::Receiver<Turn> {
        let (tx, rx) = oneshot::channel();
        let mut groups = batches.lock();
        let state = groups.entry("g".into()).or_default();
        state.leading = true;
        state.waiting.push_back(Waiter {
            input: json!({ "id": record }),
            record: record.into(),
            tx: Some(tx),
        });
        rx
    }

    /// A group whose leader's own write is first in line.
    fn led() -> Arc<Batches> {
        let batches = Arc::new(Batches::default());
        batches
            .lock()
            .entry("g".into())
            .or_default()
            .waiting
            .push_back(Waiter {
                input: json!({ "id": "lead" }),
                record: "lead".into(),
                tx: None,
            });
        batches
    }

    fn ids(batch: &Batch) -> Vec<&str> {
        batch
            .inputs
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_batch_takes_the_line_in_order_up_to_its_size_and_one_write_per_record() {
        let batches = led();
        let mut a = wait(&batches, "a");
        let again = wait(&batches, "a");
        let gone = wait(&batches, "gone");
        drop(gone);
        let mut b = wait(&batches, "b");
        let mut c = wait(&batches, "c");
        let batch = batches.gather("g", 3);
        // The second write of `a` and `c` (past the size) wait; the cancelled one is dropped.
        assert_eq!(ids(&batch), ["lead", "a", "b"]);
        let own = batch.finish(
            vec![
                Answer::Record(json!(0)),
                Answer::Record(json!(1)),
                Answer::Alone,
            ],
            &Trail::default(),
        );
        assert!(matches!(own, Answer::Record(v) if v == json!(0)));
        assert!(matches!(a.try_recv(), Ok(Turn::Answer(Answer::Record(v), _, 3)) if v == json!(1)));
        assert!(matches!(
            b.try_recv(),
            Ok(Turn::Answer(Answer::Alone, _, 3))
        ));
        // The lead passed to the first write still waiting: `a`'s second.
        let mut again = again;
        let Ok(Turn::Lead(lead)) = again.try_recv() else {
            panic!("the lead passes to the first write waiting");
        };
        assert!(c.try_recv().is_err(), "c waits for the next batch");
        // A lead never taken up (its write gone) passes on by itself.
        drop(lead);
        assert!(matches!(c.try_recv(), Ok(Turn::Lead(_))));
    }

    #[test]
    fn a_leader_cancelled_mid_call_fails_its_batch_and_passes_the_lead() {
        let batches = led();
        let mut a = wait(&batches, "a");
        let batch = batches.gather("g", 2);
        let mut b = wait(&batches, "b");
        drop(batch);
        // `a` was in the cancelled batch: told so, to be retried; `b` leads the next.
        assert!(
            matches!(a.try_recv(), Ok(Turn::Answer(Answer::Failed(e), _, _)) if e.message.contains("cut short"))
        );
        let Ok(Turn::Lead(lead)) = b.try_recv() else {
            panic!("b leads the next batch");
        };
        lead.disarm();
        assert!(batches.lock().contains_key("g"));
        // Nobody left waiting: the group is idle again.
        let batches2 = Arc::new(Batches::default());
        let mut only = wait(&batches2, "x");
        let taken = batches2.gather("g", 5);
        assert_eq!(ids(&taken), ["x"]);
        drop(taken);
        assert!(matches!(
            only.try_recv(),
            Ok(Turn::Answer(Answer::Failed(_), _, _))
        ));
        assert!(
            !batches2.lock().contains_key("g"),
            "an idle group is forgotten"
        );
    }
}
