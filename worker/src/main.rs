//! The `worker` binary: job consumers and the sweeper, without the HTTP API, for deployments
//! that scale workers separately. Concurrency: `TRIBUTARY_WORKER_CONCURRENCY`; probes and
//! metrics on `TRIBUTARY_WORKER_LISTEN`.

use std::process::ExitCode;

use clap::Parser;
use tributary_worker::{db, probe, runtime::Runtime, settings::Settings, telemetry};

/// Tributary's standalone worker: runs tenants' flows from the queue, the sweeper and the
/// background loops, without the HTTP API; probes and metrics on TRIBUTARY_WORKER_LISTEN.
///
/// Exit codes: 0 stopped by SIGTERM or Ctrl-C after finishing the jobs in hand (or --help,
/// --version); 1 failed, or a consumer or background loop stopped (so it is restarted); 2 a bad
/// command line or configuration.
#[derive(Parser)]
#[command(name = "worker", version, after_help = tributary_worker::variables::help())]
struct Cli {}

fn main() -> ExitCode {
    Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let db = db::connect_pooled(&settings.database_url, settings.database_pool_size).await?;
    if settings.auto_migrate {
        db::migrate(&db).await?;
    }
    let keyring = std::sync::Arc::new(tributary_worker::secrets::load_keyring(&settings)?);
    let mut pipeline = Runtime::start(&settings, db.clone(), true, "worker", keyring).await?;
    let drainer = pipeline.drainer();
    // Probes and metrics stay up while the jobs in hand drain.
    let probe = match settings.worker_listen {
        Some(address) => {
            let server = probe::serve(address, db, pipeline.queue.clone(), pipeline.health())?;
            let handle = server.handle();
            tokio::spawn(server);
            tracing::info!(%address, "health and metrics on http://{address} (/healthz, /readyz, /metrics)");
            Some(handle)
        }
        None => None,
    };
    tracing::info!("worker running; stop with SIGTERM or Ctrl-C");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let health = pipeline.health();
    // A consumer or background loop that stops ends the process non-zero, to be restarted.
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
        why = health.first_stop() => Some(why),
    };
    tracing::info!("stopping: finishing the jobs in hand");
    drainer.drain().await;
    if let Some(probe) = probe {
        probe.stop(true).await;
    }
    drop(pipeline);
    if let Some(why) = failed {
        anyhow::bail!("{why}; exiting so the process is restarted");
    }
    tracing::info!("stopped");
    Ok(())
}
