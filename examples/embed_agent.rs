//! Another Rust program running the sysmon agent inside its own tokio runtime
//! and reading its snapshots.
//!
//! The program owns the runtime; the agent is a library: build the collectors,
//! pick a transport (here the in-process channel; `sysmon::sinks::kafka` for
//! Kafka), spawn, read, shut down. Shutdown delivers everything collected.
//!
//! Run: `cargo run --example embed_agent`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sysmon::collectors::builtin_registry;
use sysmon::core::agent::AgentOptions;
use sysmon::core::{channel_transport, Agent, Payload, Received, TransportReceiver};

fn main() -> anyhow::Result<()> {
    // The host program's own runtime (current-thread here, to show it needs no more).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let collectors = builtin_registry().build(&BTreeMap::new())?;
        let mut options = AgentOptions::new("embedded-example");
        options.interval = Duration::from_millis(500);
        options.labels.insert("embedded_by".into(), "embed_agent example".into());

        let (transport, mut receiver) = channel_transport(16);
        let agent = Agent::new(options, Arc::new(transport))
            .with_collectors(collectors)
            .spawn();

        let mut snapshots = Vec::new();
        while snapshots.len() < 3 {
            match receiver.receive(10, Duration::from_secs(5)).await? {
                Received::Messages(messages) => {
                    for m in messages {
                        if let Payload::Snapshot(s) = m.payload {
                            println!(
                                "{} @ {:.3}: cpu {:.1}% ({} cores), memory {:.1}%, load {:?}, {} processes listed",
                                s.machine_id,
                                s.timestamp,
                                s.cpu_usage,
                                s.cpu_per_core.len(),
                                s.memory_usage,
                                s.load_avg.map(|l| l.one),
                                s.top_cpu_processes.len(),
                            );
                            snapshots.push(*s);
                        }
                    }
                }
                Received::Closed => anyhow::bail!("agent stopped early"),
            }
        }
        let report = agent.shutdown().await;
        anyhow::ensure!(report.undelivered == 0, "nothing may be left behind");
        anyhow::ensure!(
            snapshots.iter().all(|s| s.memory_usage > 0.0 && s.memory.is_some()),
            "memory collector must have filled every snapshot"
        );
        println!("ok: {} snapshots read, agent report {report:?}", snapshots.len());
        Ok(())
    })
}
