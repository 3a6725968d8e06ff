//! The queue's consumer: job slots that take `ProcessEvent` jobs from whichever backend holds
//! the queue and hand each to the engine.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;

use crate::engine::Engine;
use crate::gate::Gate;
use crate::queue::{ProcessEvent, Queue};

/// How often an idle worker looks for new jobs on the polling backends.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A consumer, or a part of one, running until it is told to stop.
pub type Running = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// `concurrency` job slots consuming the queue until `stop` turns true (then `Ok`); an
/// error is the consumer dying. The caller runs it in a task of its own.
///
/// The SQL queues hand out the highest priority first themselves. Redis has a list per
/// priority: a worker takes from each, and the `concurrency` slots are shared through a
/// [`Gate`] that gives a freed slot to the highest priority waiting.
pub fn consumer(
    queue: &Queue,
    engine: Arc<Engine>,
    concurrency: usize,
    name: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Running {
    let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let backend = queue.backend_name();
    // The same worker over each backend's own storage type.
    macro_rules! spawn_on {
        ($storage:expr, $name:expr, $slots:expr, $stop:expr) => {{
            let worker = WorkerBuilder::new($name)
                .backend($storage.poll_with_strategy(Ticker::new(POLL_INTERVAL)))
                .data($slots)
                .concurrency(concurrency)
                .build(run_process_event);
            let mut stop = $stop;
            // Until told to stop: then no new jobs, and the ones in hand finish.
            let signal = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
                Ok::<(), WorkerError>(())
            };
            Box::pin(async move {
                worker.run_until(signal).await.map_err(|e| {
                    tracing::error!(error = %e, backend, "queue worker stopped");
                    format!("the {backend} queue worker failed: {e}")
                })
            })
        }};
    }
    let slots = |gate: Option<Arc<Gate>>| Slots {
        engine: engine.clone(),
        gate,
    };
    match queue.clone() {
        Queue::Sqlite(storage) => spawn_on!(storage, name, slots(None), stop),
        Queue::Postgres(storage) => spawn_on!(storage, name, slots(None), stop),
        Queue::Redis(lanes) => {
            let gate = Gate::new(concurrency);
            let first = (*lanes).clone();
            let promoter: Running = Box::pin(crate::lanes::promote_forever(
                (*lanes).clone(),
                stop.clone(),
            ));
            let workers = lanes
                .storages
                .into_iter()
                .enumerate()
                .map(|(lane, storage)| -> Running {
                    spawn_on!(
                        storage,
                        format!("{name}-p{lane}"),
                        slots(Some(gate.clone())),
                        stop.clone()
                    )
                })
                .chain([promoter])
                .collect::<Vec<_>>();
            Box::pin(async move {
                // Before the first fetch: apalis's fails on thousands of due jobs left in
                // `:scheduled` (by an older version), and a failed fetch stops the worker.
                if let Err(e) = first.promote_all().await {
                    return Err(format!("the redis queue: moving due jobs failed: {e:#}"));
                }
                futures::future::try_join_all(workers).await.map(drop)
            })
        }
    }
}

/// What a job slot needs: the engine, and the gate its slot is taken from (Redis).
#[derive(Clone)]
struct Slots {
    engine: Arc<Engine>,
    gate: Option<Arc<Gate>>,
}

async fn run_process_event(job: ProcessEvent, slots: Data<Slots>) -> Result<(), BoxDynError> {
    let _pass = match &slots.gate {
        Some(gate) => Some(gate.enter(job.priority).await),
        None => None,
    };
    let Err(e) = slots.engine.run_job(&job.event_id).await else {
        return Ok(());
    };
    tracing::error!(event_id = %job.event_id, error = format!("{e:#}"), "processing failed");
    if slots.gate.is_some() {
        // Redis: apalis would retry from its scheduled set, which its fetch cannot empty once
        // thousands are due in the same second (see `lanes`); the job goes back through the
        // queue's own delayed set instead.
        let again = slots
            .engine
            .queue
            .push(job.clone(), Some(RETRY_AFTER_ERROR))
            .await;
        if again.is_ok() {
            return Ok(());
        }
    }
    Err(BoxDynError::from(format!("{e:#}")))
}

/// How long a job that failed on Redis waits before it is taken again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// Wakes an idle worker every `interval` to look for jobs. Unlike a timer that is re-created
/// but not polled when it fires, this arms the next tick before reporting the current one, so
/// the worker is always woken again even when its fetch finishes within the same poll.
struct Ticker {
    interval: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Ticker {
    fn new(interval: Duration) -> Self {
        Ticker {
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl PollStrategy for Ticker {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _snapshot: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        use std::future::Future;
        let mut fired = false;
        while self.sleep.as_mut().poll(cx).is_ready() {
            fired = true;
            let next = tokio::time::Instant::now() + self.interval;
            self.sleep.as_mut().reset(next);
        }
        if fired {
            std::task::Poll::Ready(Some(()))
        } else {
            std::task::Poll::Pending
        }
    }
}
