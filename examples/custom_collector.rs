//! A user-defined collector plugged into the sysmon agent.
//!
//! `OpenFdsCollector` counts this process's open file descriptors and reports
//! them as the custom metric `app.open_fds`. It is registered by name beside the
//! built-in collectors, so it is enabled and configured from the same TOML file:
//!
//! ```toml
//! [collectors.open_fds]
//! metric_name = "app.open_fds"
//! ```
//!
//! Run: `cargo run --example custom_collector`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sysmon::collectors::builtin_registry;
use sysmon::core::agent::AgentOptions;
use sysmon::core::collector::parse_options;
use sysmon::core::{
    channel_transport, Agent, Collector, CollectorError, Payload, Received, Snapshot,
    TransportReceiver,
};

/// Options of the collector, from `[collectors.open_fds]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OpenFdsOptions {
    metric_name: String,
}

impl Default for OpenFdsOptions {
    fn default() -> Self {
        OpenFdsOptions {
            metric_name: "app.open_fds".into(),
        }
    }
}

/// Counts the entries of `/proc/self/fd`.
struct OpenFdsCollector {
    metric_name: String,
}

impl Collector for OpenFdsCollector {
    fn name(&self) -> &str {
        "open_fds"
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let count = std::fs::read_dir("/proc/self/fd")
            .map_err(|source| CollectorError::Io {
                what: "/proc/self/fd".into(),
                source,
            })?
            .count();
        snapshot
            .custom_metrics
            .insert(self.metric_name.clone(), count as f64);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. The built-in registry plus our collector, enabled by default.
    let mut registry = builtin_registry();
    registry.register(
        "open_fds",
        "open file descriptors of this process",
        true,
        Box::new(|table| {
            let o: OpenFdsOptions = parse_options("open_fds", table)?;
            Ok(Box::new(OpenFdsCollector {
                metric_name: o.metric_name,
            }))
        }),
    );

    // 2. Configure it the way a user would, in TOML (built-ins keep their defaults).
    let config: BTreeMap<String, toml::Table> = toml::from_str(
        r#"
        [open_fds]
        metric_name = "example.open_fds"
        [processes]
        enabled = false
        "#,
    )?;
    let collectors = registry.build(&config)?;
    println!(
        "collectors: {}",
        collectors
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 3. Run the agent into an in-process channel and read two snapshots.
    let mut options = AgentOptions::new("example-host");
    options.interval = Duration::from_millis(300);
    let (transport, mut receiver) = channel_transport(16);
    let agent = Agent::new(options, Arc::new(transport))
        .with_collectors(collectors)
        .spawn();

    let mut seen = 0;
    while seen < 2 {
        let Received::Messages(messages) = receiver.receive(10, Duration::from_secs(5)).await?
        else {
            anyhow::bail!("channel closed early");
        };
        for m in messages {
            if let Payload::Snapshot(s) = m.payload {
                let fds = s
                    .custom_metrics
                    .get("example.open_fds")
                    .copied()
                    .ok_or_else(|| anyhow::anyhow!("custom metric missing from the snapshot"))?;
                anyhow::ensure!(fds >= 3.0, "at least stdin/stdout/stderr are open");
                println!(
                    "{} cpu {:.1}% mem {:.1}% example.open_fds = {fds}",
                    s.machine_id, s.cpu_usage, s.memory_usage
                );
                seen += 1;
            }
        }
    }
    let report = agent.shutdown().await;
    println!("agent stopped: {report:?}");
    Ok(())
}
