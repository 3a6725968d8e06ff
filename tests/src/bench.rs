//! What the benchmark binaries share: reading their arguments, and the database's ceiling.

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

/// pgbench: single-row inserts of `bytes` at `clients` concurrency for `seconds`; its TPS.
pub fn pgbench(database_url: &str, clients: usize, seconds: u64, bytes: usize) -> Option<f64> {
    let url = url::Url::parse(database_url).ok()?;
    let dir = tempfile::tempdir().ok()?;
    let script = dir.path().join("insert.sql");
    std::fs::write(
        &script,
        format!("INSERT INTO bench_ceiling (body) VALUES (repeat('x', {bytes}));\n"),
    )
    .ok()?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let port = url.port().unwrap_or(5432).to_string();
    let user = if url.username().is_empty() {
        "postgres".to_string()
    } else {
        url.username().to_string()
    };
    let db = url.path().trim_start_matches('/').to_string();
    let psql = std::process::Command::new("psql")
        .args(["-h", &host, "-p", &port, "-U", &user, "-d", &db, "-q", "-c"])
        .arg("DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        .status()
        .ok()?;
    if !psql.success() {
        return None;
    }
    let output = std::process::Command::new("pgbench")
        .args(["-h", &host, "-p", &port, "-U", &user, "-n", "-j", "2"])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&db)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let _ = std::process::Command::new("psql")
        .args(["-h", &host, "-p", &port, "-U", &user, "-d", &db, "-q", "-c"])
        .arg("DROP TABLE IF EXISTS bench_ceiling")
        .status();
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
}
