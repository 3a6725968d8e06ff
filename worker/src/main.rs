//! The `worker` binary. Until the event pipeline lands there are no jobs to run, so it says so
//! and exits rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "worker: no job consumers exist yet (queue '{}' arrives with the event pipeline); \
         run `cargo run -p api` for the platform",
        tributary_worker::queue::PROCESS_EVENT_QUEUE
    );
    ExitCode::from(2)
}
