//! The command-line options.

use std::path::PathBuf;

pub struct Options {
    pub backend: String,
    pub rates: Vec<f64>,
    pub duration: u64,
    pub drain: u64,
    pub workers: usize,
    pub ingest_clients: usize,
    pub out: PathBuf,
}

pub fn options() -> Options {
    let mut o = Options {
        backend: "postgres".into(),
        rates: vec![250.0, 500.0, 1000.0, 2000.0],
        duration: 20,
        drain: 60,
        workers: 0,
        ingest_clients: 64,
        out: PathBuf::from("target/bench"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let bad = |what: &str| -> ! {
            eprintln!(
                "{}: {what} (got {value:?}); see the top of tests/src/bin/e2e/main.rs",
                args[i]
            );
            std::process::exit(2)
        };
        match args[i].as_str() {
            "--backend" if ["sqlite", "postgres", "redis"].contains(&value.as_str()) => {
                o.backend = value.clone()
            }
            "--backend" => bad("sqlite, postgres or redis"),
            "--rates" => {
                o.rates = value
                    .split(',')
                    .map(|r| r.trim().parse::<f64>().ok().filter(|r| *r > 0.0))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_else(|| bad("comma-separated positive numbers"))
            }
            "--duration" => o.duration = value.parse().unwrap_or_else(|_| bad("seconds")),
            "--drain" => o.drain = value.parse().unwrap_or_else(|_| bad("seconds")),
            "--workers" => o.workers = value.parse().unwrap_or_else(|_| bad("a count")),
            "--ingest-clients" => {
                o.ingest_clients = value.parse().unwrap_or_else(|_| bad("a count"))
            }
            "--out" => o.out = PathBuf::from(&value),
            _ => {
                eprintln!(
                    "unknown option {}; see the top of tests/src/bin/e2e/main.rs",
                    args[i]
                );
                std::process::exit(2)
            }
        }
        i += 2;
    }
    o
}
