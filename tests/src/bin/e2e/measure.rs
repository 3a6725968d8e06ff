//! What the processes cost: CPU and memory from /proc, SQL statements from
//! pg_stat_statements, and pgbench's ceiling; and the percentiles of what was measured.

use crate::processes::Processes;

pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of one process.
pub fn cpu_of(pid: u32, ticks: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11) + field(12)) / ticks
}

/// CPU seconds of every process whose command name is `name` (Postgres runs one per
/// connection).
pub fn cpu_of_named(name: &str, ticks: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| cpu_of(pid, ticks))
        .sum()
}

/// Busy CPU seconds of the whole machine (all cores).
pub fn box_cpu(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 5 {
        return 0.0;
    }
    let idle = v[3] + v[4];
    (v.iter().take(8).sum::<f64>() - idle) / ticks
}

/// A field of /proc/<pid>/status in MiB (`VmHWM`, `VmRSS`).
pub fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[derive(Clone, Default)]
pub struct CpuSnapshot {
    pub by_process: Vec<(String, f64)>,
    pub postgres: f64,
    pub redis: f64,
    pub harness: f64,
    pub machine: f64,
}

pub fn snapshot(processes: &Processes, ticks: f64) -> CpuSnapshot {
    CpuSnapshot {
        by_process: processes
            .pids()
            .into_iter()
            .map(|(name, pid)| (name, cpu_of(pid, ticks)))
            .collect(),
        postgres: cpu_of_named("postgres", ticks),
        redis: cpu_of_named("redis-server", ticks),
        harness: cpu_of(std::process::id(), ticks),
        machine: box_cpu(ticks),
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Statements run in the current database so far, from pg_stat_statements.
pub async fn statements_so_far(db: &sea_orm::DatabaseConnection) -> Option<f64> {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT coalesce(sum(calls), 0)::float8 AS calls FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ))
        .await
        .ok()??;
    row.try_get::<f64>("", "calls").ok()
}
