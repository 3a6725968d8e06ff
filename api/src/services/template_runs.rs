//! Bounds on the template work a tenant can ask of the api: flow previews and validations run
//! on a blocking thread with a wall-clock limit (besides the engine's fuel and size limits),
//! and count against a per-tenant rate, `TRIBUTARY_PREVIEW_RATE` (default `60/minute`).

use std::time::Duration;

use crate::error::ApiError;
use crate::state::AppState;

/// How long one preview or validation may take.
pub const TEMPLATE_RUN_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts one preview or validation of `tenant`; 429 with `Retry-After` over the rate.
pub fn count(state: &AppState, tenant: &str) -> Result<(), ApiError> {
    state
        .preview_rate
        .take(tenant)
        .map_err(ApiError::TooManyRequests)
}

/// Runs template work on a blocking thread, at most [`TEMPLATE_RUN_TIMEOUT`]. The engine's
/// fuel ends a render that runs on after the answer was given up.
pub async fn run<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(TEMPLATE_RUN_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(joined)) => {
            // A template that makes the engine fail is the template's problem, not a 500.
            tracing::error!(error = %joined, "template work panicked");
            Err(ApiError::field(
                "flow",
                "the templates could not be evaluated (the engine failed on them)",
            ))
        }
        Err(_) => Err(ApiError::field(
            "flow",
            format!(
                "the templates took longer than {} seconds",
                TEMPLATE_RUN_TIMEOUT.as_secs()
            ),
        )),
    }
}
