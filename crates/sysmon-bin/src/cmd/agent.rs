//! `sysmon-agent` / `sysmon agent`: sample this host and publish the snapshots.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use sysmon_analytics::Config;
use sysmon_core::agent::AgentOptions;
use sysmon_core::config::Compression;
use sysmon_core::{codec::Format, Agent, Transport};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{AgentIdentityArgs, CommonArgs};
use crate::stdout::StdoutTransport;

/// Flags of the agent.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    identity: AgentIdentityArgs,
    /// Print one native-JSON snapshot per line on stdout instead of publishing to Kafka.
    #[arg(long)]
    stdout: bool,
    /// Take one snapshot (after one interval, so CPU and rates cover a real interval),
    /// print it as JSON on stdout, and exit.
    #[arg(long)]
    once: bool,
    /// Kafka bootstrap brokers, `host:port[,host:port...]`: publish there.
    #[arg(long, env = "SYSMON_BROKERS")]
    brokers: Option<String>,
    /// Kafka topic [default: system_metrics].
    #[arg(long, env = "SYSMON_TOPIC")]
    topic: Option<String>,
    /// Wire format on Kafka: `json` (readable by the legacy Python consumer) or `binary` (compact).
    #[arg(long, env = "SYSMON_FORMAT")]
    format: Option<Format>,
    /// Compression of Kafka record batches: `none`, `gzip`, `lz4`, `zstd` or `snappy`.
    /// The default, gzip, costs the agent next to nothing at 1 s and is what the legacy
    /// Python consumer reads as its requirements install it (none and gzip only; lz4,
    /// zstd and snappy stop it with UnsupportedCodecError) [default: [kafka] compression, gzip].
    #[arg(long, value_name = "CODEC", env = "SYSMON_COMPRESSION")]
    compression: Option<Compression>,
    /// Keep undelivered samples in DIR across restarts: saved at shutdown (and every
    /// few seconds while Kafka is unreachable), delivered first, in order, by the next
    /// start, then removed. Bounded by the buffer capacity [default: [agent] spool_dir, none].
    #[arg(long, value_name = "DIR", env = "SYSMON_SPOOL_DIR")]
    spool_dir: Option<std::path::PathBuf>,
    /// List the available collectors and exit.
    #[arg(long)]
    list_collectors: bool,
}

impl AgentArgs {
    /// The agent's flags and common flags for the Windows service, from what
    /// `service install` stored in its command line.
    pub fn for_service(s: &crate::service::InstallArgs) -> (AgentArgs, CommonArgs) {
        let agent = AgentArgs {
            identity: AgentIdentityArgs {
                machine_id: s.machine_id.clone(),
                interval: None,
            },
            stdout: false,
            once: false,
            brokers: s.brokers.clone(),
            topic: s.topic.clone(),
            format: None,
            compression: None,
            spool_dir: s.spool_dir.clone(),
            list_collectors: false,
        };
        let common = CommonArgs {
            config: s.config.clone(),
            log_level: s.log_level.clone().unwrap_or_else(|| "info".into()),
        };
        (agent, common)
    }

    fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        self.identity.apply(config)?;
        // Windows: the machine id from the MachineGuid (Linux: /etc/machine-id, in core).
        #[cfg(windows)]
        if config.agent.machine_id.is_none() {
            config.agent.machine_id = crate::service::windows_machine_id();
        }
        if let Some(b) = &self.brokers {
            config.kafka.brokers = b.clone();
        }
        if let Some(t) = &self.topic {
            config.kafka.topic = t.clone();
        }
        if let Some(f) = self.format {
            config.kafka.format = f;
        }
        if let Some(c) = self.compression {
            config.kafka.compression = c;
        }
        if let Some(d) = &self.spool_dir {
            config.agent.spool_dir = Some(d.clone());
        }
        Ok(())
    }
}

/// Runs the agent until SIGINT/SIGTERM (or once with `--once`).
pub async fn run(args: AgentArgs, common: &CommonArgs) -> anyhow::Result<()> {
    run_until(args, common, None).await
}

/// Runs the agent until `stop` is cancelled (`None`: until SIGINT/SIGTERM, or
/// Ctrl+C on Windows), then delivers what it collected.
pub async fn run_until(
    args: AgentArgs,
    common: &CommonArgs,
    stop: Option<CancellationToken>,
) -> anyhow::Result<()> {
    if args.list_collectors {
        println!("{:<12} {:<8} description", "name", "default");
        for (name, description, enabled) in sysmon_collectors::builtin_registry().list() {
            let state = if enabled { "on" } else { "off" };
            println!("{name:<12} {state:<8} {description}");
        }
        return Ok(());
    }
    // Windows: %ProgramData%\sysmon\agent.toml when no --config is given and it exists.
    #[cfg(windows)]
    let default_config = Some(crate::service::WindowsPaths::from_env().config)
        .filter(|p| common.config.is_none() && p.is_file());
    #[cfg(not(windows))]
    let default_config: Option<std::path::PathBuf> = None;
    let mut config = crate::load_config(common.config.as_deref().or(default_config.as_deref()))?;
    args.apply(&mut config)?;
    let collectors = crate::build_collectors(&config)?;
    let options = AgentOptions::from_config(&config.agent)?;

    if args.once {
        let interval = options.interval;
        let mut agent =
            Agent::new(options, Arc::new(StdoutTransport::default())).with_collectors(collectors);
        tokio::time::sleep(interval).await;
        let snapshot = tokio::task::spawn_blocking(move || agent.sample_now())
            .await
            .context("sampling thread failed")?;
        println!(
            "{}",
            String::from_utf8_lossy(&sysmon_core::encode_json(&snapshot))
        );
        return Ok(());
    }

    let transport: Arc<dyn Transport> = if args.stdout {
        Arc::new(StdoutTransport::default())
    } else if args.brokers.is_some() {
        crate::cmd::kafka_transport(&config)?
    } else {
        bail!(
            "nowhere to send snapshots: pass --stdout to print them, or --brokers HOST:PORT \
             to publish to Kafka (see --help)"
        );
    };
    let stop = stop.unwrap_or_else(crate::shutdown_on_signal);
    let handle = Agent::new(options, transport)
        .with_collectors(collectors)
        .spawn();
    stop.cancelled().await;
    let report = handle.shutdown().await;
    info!(
        collected = report.collected,
        published = report.published,
        dropped = report.dropped,
        undelivered = report.undelivered,
        spooled = report.spooled,
        "agent exited"
    );
    if report.undelivered > report.spooled {
        bail!(
            "{} snapshots could not be delivered before the shutdown timeout (and were not spooled)",
            report.undelivered - report.spooled
        );
    }
    Ok(())
}
