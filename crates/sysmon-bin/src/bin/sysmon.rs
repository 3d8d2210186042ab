//! `sysmon`: the master and all-in-one command line.

use clap::{Parser, Subcommand};
use sysmon_bin::cli::CommonArgs;
use sysmon_bin::cmd;

/// sysmon: distributed host monitoring.
///
/// On one machine, `sysmon standalone` samples this host, stores the history in
/// SQLite and serves the dashboard: no Kafka, no Redis.
///
/// Distributed: run `sysmon-agent --brokers MASTER:9092` on every worker and
/// `sysmon ingest` + `sysmon dashboard` on the master.
///
/// Settings come from (lowest first) built-in defaults, the --config TOML file,
/// SYSMON_* environment variables, and flags. `sysmon config --print-default`
/// prints a commented file.
#[derive(Debug, Parser)]
#[command(name = "sysmon", version, about, long_about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Agent + ingester + dashboard in one process, on SQLite (no Kafka, no Redis).
    ///
    /// Example: sysmon standalone --db data/sysmon.db --interval 1s
    Standalone(cmd::standalone::StandaloneArgs),
    /// Sample this host and publish (same as the `sysmon-agent` binary).
    ///
    /// Example: sysmon agent --brokers 192.168.1.100:9092
    Agent(cmd::agent::AgentArgs),
    /// Print stored snapshots, oldest first.
    ///
    /// Example: sysmon query --machine web-01 --since 1h --format table
    Query(cmd::query::QueryArgs),
    /// Print the default configuration, or check a configuration file.
    ///
    /// Example: sysmon config --print-default > sysmon.toml
    Config(cmd::config::ConfigArgs),
    /// Consume the metrics topic (consumer group) into SQLite (+ Redis); commit after storing.
    ///
    /// Example: sysmon ingest --brokers 127.0.0.1:9092 --db data/sysmon.db --redis redis://127.0.0.1:6379
    Ingest(cmd::ingest::IngestArgs),
    /// Publish realistic snapshots for N simulated machines (scale tests, benchmarks).
    ///
    /// Example: sysmon loadgen --brokers 127.0.0.1:9092 --machines 1000 --interval 1s --duration 60s
    Loadgen(cmd::loadgen::LoadgenArgs),
    /// Check this machine's setup: Kafka reachable and usable (and --redis, --db), with fixes.
    ///
    /// Example: sysmon doctor --brokers 192.168.1.100:9092
    Doctor(cmd::doctor::DoctorArgs),
    /// Serve the web dashboard and HTTP API from the SQLite history (+ Redis).
    ///
    /// Example: sysmon dashboard --db data/sysmon.db --listen 0.0.0.0:7861 --auth-token "$TOKEN"
    Dashboard(cmd::dashboard::DashboardArgs),
    /// Copy a SQLite history (samples, processes, rollups, alerts) into PostgreSQL; resumable.
    ///
    /// Example: sysmon import --from data/sysmon.db --db postgresql://sysmon@db.example/sysmon
    Import(cmd::import::ImportArgs),
    /// Score a file of snapshots (JSON lines) offline with the anomaly detector.
    ///
    /// Example: sysmon detect --input trace.jsonl > scores.jsonl
    #[command(long_about = cmd::detect::LONG_ABOUT)]
    Detect(cmd::detect::DetectArgs),
}

fn main() {
    let cli = Cli::parse();
    sysmon_bin::init_logging(&cli.common.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Standalone(a) => cmd::standalone::run(a, &cli.common).await,
            Command::Agent(a) => cmd::agent::run(a, &cli.common).await,
            Command::Query(a) => cmd::query::run(a, &cli.common).await,
            Command::Config(a) => cmd::config::run(a, &cli.common),
            Command::Dashboard(a) => cmd::dashboard::run(a, &cli.common).await,
            Command::Ingest(a) => cmd::ingest::run(a, &cli.common).await,
            Command::Loadgen(a) => cmd::loadgen::run(a, &cli.common).await,
            Command::Doctor(a) => cmd::doctor::run(a, &cli.common).await,
            Command::Import(a) => cmd::import::run(a, &cli.common).await,
            Command::Detect(a) => cmd::detect::run(a, &cli.common),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_never_prints_secret_bearing_environment_values() {
        std::env::set_var("SYSMON_REDIS", "redis://user:hunter2@cache:6379/0");
        std::env::set_var("SYSMON_AUTH_TOKEN", "t0ps3cret");
        let mut cli = Cli::command();
        for sub in ["ingest", "dashboard", "query", "doctor"] {
            let help = cli
                .find_subcommand_mut(sub)
                .unwrap_or_else(|| panic!("no subcommand {sub}"))
                .render_long_help()
                .to_string();
            assert!(
                help.contains("SYSMON_REDIS"),
                "{sub}: the variable is named"
            );
            assert!(
                !help.contains("hunter2"),
                "{sub} --help shows the Redis password"
            );
            assert!(!help.contains("t0ps3cret"), "{sub} --help shows the token");
        }
    }
}
