//! Shared plumbing of the sysmon binaries: logging, signals, config loading,
//! and one module per subcommand under [`cmd`]. The binaries themselves
//! (`src/bin/*.rs`) only parse arguments and dispatch.

pub mod analytics;
pub mod cli;
pub mod cmd;
pub mod history;
pub mod serve;
pub mod service;
pub mod stdout;

use std::path::Path;

use anyhow::Context;
use sysmon_analytics::Config;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Logs to stderr; `level` is a tracing filter (`info`, `debug`, `sysmon_core=debug,warn`).
/// `RUST_LOG` wins when set.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Logs to `file` (appended, created with its directory), for the Windows
/// service, which has no console. `RUST_LOG` wins when set. Falls back to
/// stderr when the file cannot be opened.
pub fn init_file_logging(file: &Path, level: &str) {
    let opened = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
        });
    let Ok(f) = opened else {
        init_logging(level);
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(f))
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// A token cancelled on the first SIGINT or SIGTERM. A second signal exits at once.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: shutting down (delivering what was collected; a second signal exits at once)");
        t.cancel();
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Loads the config file (or the defaults) with a readable error.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    if let Some(p) = path {
        info!(file = %p.display(), "configuration loaded");
    }
    Ok(config)
}

/// Builds the enabled collectors from the config, with the built-in registry.
pub fn build_collectors(config: &Config) -> anyhow::Result<Vec<Box<dyn sysmon_core::Collector>>> {
    sysmon_collectors::builtin_registry()
        .build(&config.collectors)
        .context("building collectors from [collectors] in the configuration")
}
