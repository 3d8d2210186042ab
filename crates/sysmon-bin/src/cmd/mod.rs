//! One module per subcommand.

pub mod agent;
pub mod config;
pub mod dashboard;
pub mod query;
pub mod standalone;

use std::sync::Arc;

use sysmon_core::config::Config;
use sysmon_core::Transport;

/// The Kafka transport for an agent, from `[kafka]`.
pub fn kafka_transport(config: &Config) -> anyhow::Result<Arc<dyn Transport>> {
    // Wired once `sysmon_sinks::kafka::KafkaTransport` lands (issue 3).
    anyhow::bail!(
        "publishing to Kafka ({}) is not available in this build yet",
        config.kafka.brokers
    )
}
