//! Whether a process's job consumers and background loops still run. Each runs under
//! [`supervise`]: when one ends or panics, it is recorded here by name, readiness answers 503
//! naming it, and the process exits non-zero so its supervisor (Kubernetes) restarts it.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;

use crate::faults::Faults;

/// The parts of a process and why any of them stopped.
#[derive(Debug)]
pub struct Health {
    /// Part name → `None` while it runs, or why it stopped.
    parts: Mutex<BTreeMap<String, Option<String>>>,
    /// The first part that stopped, for whoever waits on it.
    stopped: tokio::sync::watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            parts: Mutex::default(),
            stopped: tokio::sync::watch::channel(None).0,
        }
    }
}

impl Health {
    fn running(&self, name: &str) {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), None);
    }

    fn stopped(&self, name: &str, why: String) {
        let detail = format!("the {name} stopped: {why}");
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Some(why));
        self.stopped.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(detail);
                true
            } else {
                false
            }
        });
    }

    /// Ok while every part runs; else which stopped and why (for `/readyz`).
    pub fn check(&self) -> Result<(), String> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let stopped: Vec<String> = parts
            .iter()
            .filter_map(|(name, why)| why.as_ref().map(|why| format!("the {name} stopped: {why}")))
            .collect();
        if stopped.is_empty() {
            Ok(())
        } else {
            Err(stopped.join("; "))
        }
    }

    /// Waits until a part stops; returns what stopped and why.
    pub async fn first_stop(&self) -> String {
        let mut watch = self.stopped.subscribe();
        match watch.wait_for(Option::is_some).await {
            Ok(first) => first.clone().unwrap_or_default(),
            // The sender lives as long as `self`: unreachable, but never a false alarm.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `part` as the part `name` in its own task. It is expected to run until the process
/// stops: if it returns an error or panics, that is recorded in `health`. `Ok(())` is a
/// planned end (a consumer drained on shutdown).
pub fn supervise<F>(
    health: &Arc<Health>,
    faults: &Faults,
    name: &str,
    part: F,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    health.running(name);
    let health = health.clone();
    let name = name.to_string();
    let fault = faults.part(&name);
    tokio::spawn(async move {
        let run = async move {
            tokio::select! {
                result = part => result,
                () = fault => Ok(()),
            }
        };
        let why = match AssertUnwindSafe(run).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(why)) => why,
            Err(payload) => format!("it panicked: {}", panic_message(payload.as_ref())),
        };
        tracing::error!(part = %name, reason = %why, "a part of the worker stopped; the process is not ready");
        health.stopped(&name, why);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_part_is_named() {
        let health = Arc::new(Health::default());
        let faults = Faults::default();
        supervise(&health, &faults, "sweeper", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let task = supervise(&health, &faults, "alerts", async { panic!("boom") });
        let _ = task.await;
        let detail = health.check().unwrap_err();
        assert_eq!(detail, "the alerts stopped: it panicked: boom");
        assert_eq!(health.first_stop().await, detail);
    }

    #[tokio::test]
    async fn a_planned_end_is_not_a_failure() {
        let health = Arc::new(Health::default());
        let task = supervise(&health, &Faults::default(), "consumer", async { Ok(()) });
        let _ = task.await;
        assert_eq!(health.check(), Ok(()));
    }
}
