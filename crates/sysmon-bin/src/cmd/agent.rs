//! `sysmon-agent` / `sysmon agent`: sample this host and publish the snapshots.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use sysmon_analytics::Config;
use sysmon_core::agent::AgentOptions;
use sysmon_core::config::Compression;
use sysmon_core::{codec::Format, Agent, Transport};
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
    fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        self.identity.apply(config)?;
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
    if args.list_collectors {
        println!("{:<12} {:<8} description", "name", "default");
        for (name, description, enabled) in sysmon_collectors::builtin_registry().list() {
            let state = if enabled { "on" } else { "off" };
            println!("{name:<12} {state:<8} {description}");
        }
        return Ok(());
    }
    let mut config = crate::load_config(common.config.as_deref())?;
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
    let stop = crate::shutdown_on_signal();
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
