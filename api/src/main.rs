//! The `api` binary: serves the platform, or runs an operator command.

use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context;
use tributary_api::{app, commands, db, openapi, settings::Settings, telemetry};

const USAGE: &str = "usage: api [serve | migrate | rotate-keys | openapi]
  serve        start the REST API and webhook ingress (the default)
  migrate      apply pending database migrations and exit
  rotate-keys  re-encrypt every stored secret under the current encryption key
  openapi      print the OpenAPI document";

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    if command == "openapi" {
        print!("{}", openapi::document_json());
        return ExitCode::SUCCESS;
    }
    if !matches!(command.as_str(), "serve" | "migrate" | "rotate-keys") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
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
    match runtime.block_on(run(command.as_str(), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: &str, settings: Settings) -> anyhow::Result<()> {
    match command {
        "migrate" => {
            let db = db::connect(&settings.database_url).await?;
            db::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        "rotate-keys" => {
            let keyring = app::load_keyring(&settings)?;
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
        _ => serve(settings).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listen = settings.listen;
    let listener = TcpListener::bind(listen)
        .with_context(|| format!("TRIBUTARY_LISTEN: cannot bind {listen}"))?;
    let mut state = app::AppState::build(settings).await?;
    let drainer = state.pipeline.drainer();
    let health = state.pipeline.health();
    tracing::info!(
        database = %db::redact(&state.settings.database_url),
        signup = if state.settings.signup_open { "open" } else { "closed" },
        "Tributary listening on http://{listen} — API reference at http://{listen}/docs (spec: /openapi.json)"
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
