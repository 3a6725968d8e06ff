//! Worker processes of their own inside a test, sharing the test app's database and queue.

use std::sync::Arc;

use tributary_worker::runtime::Runtime;
use tributary_worker::settings::Settings;

/// A worker process of its own: a runtime on its own thread that can be killed, dropping
/// every task where it stands, as SIGKILL would.
pub struct WorkerProcess {
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerProcess {
    pub fn start(settings: Settings) -> WorkerProcess {
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let pipeline = runtime.block_on(async {
                let db = tributary_worker::db::connect(&settings.database_url)
                    .await
                    .unwrap();
                let keyring = Arc::new(tributary_worker::secrets::load_keyring(&settings).unwrap());
                Runtime::start(&settings, db, true, "worker", keyring)
                    .await
                    .unwrap()
            });
            ready.send(()).unwrap();
            let _ = killed.recv();
            // No orderly stop: nothing after the await in hand runs.
            std::mem::forget(pipeline);
            runtime.shutdown_background();
        });
        started.recv().expect("the worker started");
        WorkerProcess { kill, thread }
    }

    pub fn kill(self) {
        let _ = self.kill.send(());
        self.thread.join().unwrap();
    }
}
