//! Test-only fault hooks, off unless `TRIBUTARY_TEST_FAULTS=true` (never in production). With
//! them on, the test suite can make a job panic (a step whose rendered fields contain
//! [`PANIC_MARKER`]) and make a supervised part of the process die (by creating the file
//! `test-fault-<part>` in `TRIBUTARY_DATA_DIR`), to prove that neither stops the others.
//! With them off (the default) neither the marker nor the files have any effect.

use std::path::PathBuf;

use crate::flow::Operation;

/// A step whose rendered fields contain this panics, when the hooks are on.
pub const PANIC_MARKER: &str = "tributary-test-fault:panic";

/// The hooks, as configured.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Where fault files are looked for; `None` when the hooks are off.
    dir: Option<PathBuf>,
}

impl Faults {
    pub fn from_settings(settings: &crate::settings::Settings) -> Faults {
        if !settings.test_faults {
            return Faults::default();
        }
        tracing::warn!(
            "TRIBUTARY_TEST_FAULTS is on: test-only fault hooks are active; never run a production deployment like this"
        );
        Faults {
            dir: Some(settings.data_dir.clone()),
        }
    }

    /// Panics if the hooks are on and `op` carries [`PANIC_MARKER`].
    pub fn step(&self, op: &Operation) {
        if self.dir.is_some()
            && serde_json::to_string(&op.fields).is_ok_and(|f| f.contains(PANIC_MARKER))
        {
            panic!("test fault: step {} panicked on purpose", op.step);
        }
    }

    /// Never ends with the hooks off; with them on, panics once the file `test-fault-<part>`
    /// appears in the data directory.
    pub fn part(&self, part: &str) -> impl std::future::Future<Output = ()> + Send + 'static {
        let file = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("test-fault-{part}")));
        let part = part.to_string();
        async move {
            let Some(file) = file else {
                return std::future::pending().await;
            };
            loop {
                if file.exists() {
                    panic!("test fault: the {part} was made to stop");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
