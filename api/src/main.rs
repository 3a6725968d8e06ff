//! The `api` binary: serves the platform, or runs an operator command.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tributary_api::{app, commands, openapi, state};
use tributary_worker::{db, settings::Settings, telemetry};

/// Tributary: Stripe payment events into CRM records, for many tenants.
///
/// Exit codes: 0 done (or --help, --version); 1 failed while running; 2 a bad command line
/// or configuration (the message names the argument or variable).
#[derive(Parser)]
#[command(name = "api", version, after_help = tributary_worker::variables::help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Start the REST API and webhook ingress, with an embedded worker unless
    /// TRIBUTARY_EMBEDDED_WORKER=false (the default command)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Re-encrypt every stored secret under the current encryption key
    RotateKeys,
    /// Print the OpenAPI document
    Openapi,
}

fn main() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if command == Command::Openapi {
        // A reader that stops early (`api openapi | head`) is not an error.
        let mut out = std::io::stdout().lock();
        return match out
            .write_all(openapi::document_json().as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the document: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings);
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    match runtime.block_on(run(command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let db = db::connect(&settings.database_url).await?;
            db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::RotateKeys => {
            let keyring = state::load_keyring(&settings)?;
            let db = db::connect(&settings.database_url).await?;
            let report = commands::rotate_keys(&db, &keyring).await?;
            tracing::info!(
                key = keyring.current_key_id(),
                resealed = report.resealed,
                already_current = report.current,
                "secrets re-encrypted under the current key"
            );
            Ok(())
        }
        Command::Serve | Command::Openapi => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen;
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("TRIBUTARY_LISTEN: cannot bind {listen}"))?;
    let mut state = state::AppState::build(settings).await?;
    let drainer = state.pipeline.drainer();
    let health = state.pipeline.health();
    tracing::info!(
        database = %db::redact(&state.settings.database_url),
        signup = if state.settings.signup_open { "open" } else { "closed" },
        "Tributary listening on http://{listen} — console at http://{listen}/, API reference at http://{listen}/docs (spec: /openapi.json)"
    );
    // SIGTERM or SIGINT: the server stops accepting and finishes its requests; then the
    // embedded worker finishes the jobs in hand (TRIBUTARY_SHUTDOWN_GRACE).
    let server = app::server(listener, state, None, true)?;
    let handle = server.handle();
    // A consumer or background loop of the embedded worker that stops ends the process
    // non-zero, to be restarted; readiness says which meanwhile.
    let failed = tokio::select! {
        served = server => {
            served?;
            None
        }
        why = health.first_stop() => Some(why),
    };
    if failed.is_some() {
        handle.stop(true).await;
    }
    drainer.drain().await;
    if let Some(why) = failed {
        anyhow::bail!("{why}; exiting so the process is restarted");
    }
    tracing::info!("stopped");
    Ok(())
}
