//! `sysmon-agent`: the lean worker binary. Samples this host and publishes.

use clap::Parser;
use sysmon_bin::cli::CommonArgs;
use sysmon_bin::cmd::agent::AgentArgs;

/// sysmon-agent: sample this host every interval and publish the snapshots.
///
/// Publish to Kafka: `sysmon-agent --brokers 192.168.1.100:9092`.
/// Print JSON lines instead: `sysmon-agent --stdout`; one snapshot: `--once`.
///
/// The machine id is stable across restarts: --machine-id, else
/// <hostname>-<hash of /etc/machine-id> (on Windows, of the MachineGuid).
/// While the broker is unreachable the agent
/// keeps sampling into a bounded buffer and delivers the backlog in order later.
#[derive(Debug, Parser)]
#[command(name = "sysmon-agent", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    agent: AgentArgs,
    #[cfg(windows)]
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands (Windows only).
#[cfg(windows)]
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Install, remove (or, for the service manager, run) the Windows service.
    #[command(subcommand)]
    Service(sysmon_bin::service::ServiceCommand),
}

fn main() {
    let cli = Cli::parse();
    #[cfg(windows)]
    if let Some(Command::Service(command)) = cli.command {
        let is_run = matches!(command, sysmon_bin::service::ServiceCommand::Run(_));
        if !is_run {
            sysmon_bin::init_logging(&cli.common.log_level);
        }
        if let Err(e) = sysmon_bin::service::run(command, &cli.common) {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    sysmon_bin::init_logging(&cli.common.log_level);
    // One thread is plenty for sampling once a second; collectors run on the
    // blocking pool, so /proc reads never stall the runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(sysmon_bin::cmd::agent::run(cli.agent, &cli.common)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
