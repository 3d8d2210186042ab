//! One module per subcommand.

pub mod agent;
pub mod config;
pub mod dashboard;
pub mod detect;
pub mod doctor;
pub mod import;
pub mod ingest;
pub mod loadgen;
pub mod query;
pub mod standalone;

use std::sync::Arc;

use sysmon_analytics::Config;
use sysmon_core::Transport;

/// The Kafka transport for an agent, from `[kafka]` (brokers, topic, format,
/// and `[kafka.options]` passed to librdkafka: TLS, SASL).
pub fn kafka_transport(config: &Config) -> anyhow::Result<Arc<dyn Transport>> {
    let transport = sysmon_sinks::kafka::KafkaTransport::new(&config.kafka)
        .map_err(|e| anyhow::anyhow!("cannot publish to Kafka at {}: {e}", config.kafka.brokers))?;
    Ok(Arc::new(transport))
}
