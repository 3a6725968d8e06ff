//! What the benchmark binaries share: reading their arguments.

use crate::Backend;

/// The argument at `at`, parsed, else `default`.
pub fn arg<T: std::str::FromStr>(args: &[String], at: usize, default: T) -> T {
    args.get(at).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// The backend the first argument names: `sqlite`, `redis` (Postgres with the Redis queue),
/// else Postgres.
pub fn backend(args: &[String]) -> Backend {
    match args.get(1).map(String::as_str) {
        Some("sqlite") => Backend::Sqlite,
        Some("redis") => Backend::PostgresRedis,
        _ => Backend::Postgres,
    }
}
