//! The api and worker processes: starting them, waiting until they are ready, stopping them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::options::Options;

pub struct Processes {
    pub api: Child,
    pub workers: Vec<Child>,
}

impl Processes {
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut all = vec![("api".to_string(), self.api.id())];
        for (i, w) in self.workers.iter().enumerate() {
            all.push((format!("worker{}", i + 1), w.id()));
        }
        all
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.api))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn spawn(binary: &Path, env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()))
}

pub async fn wait_ready(client: &reqwest::Client, url: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not become ready at {url}:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `api` and `worker` binaries next to this one; exits when one the run needs is missing.
pub fn binaries(o: &Options) -> (PathBuf, PathBuf) {
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let (api_bin, worker_bin) = (bin_dir.join("api"), bin_dir.join("worker"));
    if !api_bin.exists() || (o.workers > 0 && !worker_bin.exists()) {
        eprintln!(
            "{} (and worker) not built: cargo build --release -p api -p worker -p tributary-tests",
            api_bin.display()
        );
        std::process::exit(2);
    }
    (api_bin, worker_bin)
}

/// The processes' environment: the `TRIBUTARY_*` variables of this one (not the tests'), and
/// the run's database, address and settings where they do not set them.
pub fn environment(
    o: &Options,
    database_url: &str,
    port: u16,
    public: &str,
    dir: &Path,
    run_id: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TRIBUTARY_") && !k.starts_with("TRIBUTARY_TEST_"))
        .collect();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v.into()));
        }
    };
    for (k, v) in [
        ("DATABASE_URL", database_url),
        ("RUST_LOG", "warn"),
        ("TRIBUTARY_LISTEN", &format!("127.0.0.1:{port}")),
        ("TRIBUTARY_PUBLIC_URL", public),
        ("TRIBUTARY_DATA_DIR", &dir.display().to_string()),
        // The fake CRM listens on loopback.
        ("TRIBUTARY_VENDOR_URLS", "any"),
        // One account is offered far more than the default per-account webhook rate.
        ("TRIBUTARY_WEBHOOK_RATE", "1000000/second"),
        (
            "TRIBUTARY_EMBEDDED_WORKER",
            if o.workers == 0 { "true" } else { "false" },
        ),
        ("TRIBUTARY_METRICS_TOKEN", "bench-metrics-token"),
    ] {
        set(&mut env, k, v);
    }
    if o.backend == "redis" {
        let redis = std::env::var("TRIBUTARY_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        set(&mut env, "TRIBUTARY_QUEUE_URL", &redis);
        set(
            &mut env,
            "TRIBUTARY_QUEUE_NAMESPACE",
            &format!("bench{run_id}"),
        );
    }
    env
}

/// Starts the api, then `workers` worker processes each with a probe port of its own, waiting
/// until each is ready; their logs go to `dir`.
pub async fn start(
    client: &reqwest::Client,
    (api_bin, worker_bin): &(PathBuf, PathBuf),
    env: &[(String, String)],
    dir: &Path,
    workers: usize,
    public: &str,
) -> Processes {
    let api_log = dir.join("api.log");
    let api = spawn(api_bin, env, &api_log);
    wait_ready(client, &format!("{public}/readyz"), "the api", &api_log).await;
    let mut children = Vec::new();
    for i in 0..workers {
        let mut worker_env = env.to_vec();
        let probe = free_port();
        worker_env.retain(|(k, _)| k != "TRIBUTARY_WORKER_LISTEN");
        worker_env.push((
            "TRIBUTARY_WORKER_LISTEN".into(),
            format!("127.0.0.1:{probe}"),
        ));
        let log = dir.join(format!("worker{i}.log"));
        children.push(spawn(worker_bin, &worker_env, &log));
        wait_ready(
            client,
            &format!("http://127.0.0.1:{probe}/readyz"),
            "a worker",
            &log,
        )
        .await;
    }
    Processes {
        api,
        workers: children,
    }
}
