//! The configuration file shared by every sysmon binary.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`),
//! `SYSMON_*` environment variables, command-line flags. Every section and key
//! is optional; unknown keys are errors (a typo never silently does nothing).
//! `sysmon config --print-default` prints [`DEFAULT_CONFIG_TOML`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::{Format, DEFAULT_MAX_MESSAGE_BYTES};
use crate::duration::serde_duration;
use crate::error::CoreError;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The agent: identity, schedule, buffering.
    pub agent: AgentConfig,
    /// Per-collector tables: `enabled` plus the collector's own options.
    pub collectors: BTreeMap<String, toml::Table>,
    /// SQLite history.
    pub sqlite: SqliteConfig,
    /// The ingester.
    pub ingest: IngestConfig,
    /// The dashboard and HTTP API.
    pub dashboard: DashboardConfig,
    /// Kafka (distributed mode).
    pub kafka: KafkaConfig,
    /// Redis (hot window).
    pub redis: RedisConfig,
    /// Alert rules and webhook targets.
    pub alerts: crate::analytics::alerts::AlertsConfig,
    /// The anomaly detector.
    pub anomaly: crate::analytics::detector::DetectorConfig,
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Fixed machine id; default `<hostname>-<hash of /etc/machine-id>`.
    pub machine_id: Option<String>,
    /// Sampling interval.
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    /// Samples kept while the transport is unreachable; the oldest are dropped beyond.
    pub buffer_capacity: usize,
    /// Most snapshots published in one batch.
    pub batch_size: usize,
    /// How long shutdown waits to deliver what was already collected.
    #[serde(with = "serde_duration")]
    pub shutdown_timeout: Duration,
    /// Optional directory where undelivered samples are spooled to survive a restart.
    pub spool_dir: Option<PathBuf>,
    /// Free-form labels attached to every snapshot.
    pub labels: BTreeMap<String, String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            machine_id: None,
            interval: Duration::from_secs(1),
            buffer_capacity: 3600,
            batch_size: 500,
            shutdown_timeout: Duration::from_secs(10),
            spool_dir: None,
            labels: BTreeMap::new(),
        }
    }
}

/// `[sqlite]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// The database file.
    pub path: PathBuf,
    /// How long raw samples are kept.
    #[serde(with = "serde_duration")]
    pub raw_retention: Duration,
    /// How long per-minute rollups are kept.
    #[serde(with = "serde_duration")]
    pub rollup_retention: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("data/sysmon.db"),
            raw_retention: Duration::from_secs(24 * 3600),
            rollup_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `[ingest]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most messages written to the sinks in one batch.
    pub batch_size: usize,
    /// Longest wait to fill a batch.
    #[serde(with = "serde_duration")]
    pub batch_wait: Duration,
    /// Messages larger than this are dead-lettered.
    pub max_message_bytes: usize,
    /// How often rollups and retention run.
    #[serde(with = "serde_duration")]
    pub maintenance_interval: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_size: 1000,
            batch_wait: Duration::from_millis(200),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            maintenance_interval: Duration::from_secs(60),
        }
    }
}

/// `[dashboard]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Address to listen on; loopback by default, `0.0.0.0:7861` for the LAN.
    pub listen: String,
    /// Bearer token required on every route but `/healthz` when set.
    pub auth_token: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: "127.0.0.1:7861".into(),
            auth_token: None,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// The metrics topic.
    pub topic: String,
    /// The dead-letter topic; default `<topic>.dlq`.
    pub dlq_topic: Option<String>,
    /// The ingesters' consumer group.
    pub group: String,
    /// The agent's wire format.
    pub format: Format,
    /// Partitions when the ingester creates the topic.
    pub partitions: i32,
    /// Replication factor when the ingester creates the topic.
    pub replication_factor: i32,
    /// librdkafka properties passed through unchanged (TLS, SASL, tuning).
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "system_metrics".into(),
            dlq_topic: None,
            group: "sysmon-ingest".into(),
            format: Format::Json,
            partitions: 6,
            replication_factor: 1,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The dead-letter topic: `dlq_topic` or `<topic>.dlq`.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }
}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS; unset = no Redis.
    pub url: Option<String>,
    /// Prefix of every key.
    pub prefix: String,
    /// How much recent history per machine Redis keeps.
    #[serde(with = "serde_duration")]
    pub window: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            prefix: "sysmon:".into(),
            window: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, CoreError> {
        let config: Config = toml::from_str(text).map_err(|e| CoreError::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, CoreError> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| CoreError::Io {
                    context: format!("reading config file {}", p.display()),
                    source: e,
                })?;
                Config::from_toml(&text).map_err(|e| match e {
                    CoreError::Config(m) => CoreError::Config(format!("{}: {m}", p.display())),
                    other => other,
                })
            }
        }
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), CoreError> {
        let bad = |m: &str| Err(CoreError::Config(m.to_string()));
        if self.agent.interval < Duration::from_millis(100) {
            return bad("agent.interval must be at least 100ms");
        }
        if self.agent.buffer_capacity == 0 {
            return bad("agent.buffer_capacity must be at least 1");
        }
        if self.agent.batch_size == 0 || self.ingest.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.kafka.partitions < 1 {
            return bad("kafka.partitions must be at least 1");
        }
        if self.sqlite.raw_retention < Duration::from_secs(60) {
            return bad("sqlite.raw_retention must be at least 1m");
        }
        self.alerts.check()?;
        self.anomaly.check()?;
        Ok(())
    }
}

/// The commented default configuration printed by `sysmon config --print-default`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_the_defaults() {
        let parsed = Config::from_toml(DEFAULT_CONFIG_TOML).unwrap();
        let expected = Config {
            collectors: parsed.collectors.clone(),
            ..Config::default()
        };
        assert_eq!(parsed, expected);
        assert!(parsed.collectors.contains_key("processes"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = Config::from_toml("[agent]\nintervall = \"1s\"").unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
        let e = Config::from_toml("[agent]\ninterval = \"fast\"").unwrap_err();
        assert!(e.to_string().contains("15m"), "{e}");
        let e = Config::from_toml("[agent]\ninterval = \"10ms\"").unwrap_err();
        assert!(e.to_string().contains("100ms"), "{e}");
        let e = Config::from_toml("[kafka]\nformat = \"xml\"").unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
    }

    #[test]
    fn alerts_and_anomaly_sections_parse_and_are_checked() {
        let c = Config::from_toml(
            "[anomaly]\ntrees = 150\ncontamination = \"auto\"\n\
             [[alerts.rules]]\nname = \"swap\"\nmetric = \"swap_usage\"\nthreshold = 50\nfor = \"1m\"",
        )
        .unwrap();
        assert_eq!(c.anomaly.trees, 150);
        assert_eq!(c.alerts.rules.len(), 1, "rules replace the defaults");
        assert_eq!(c.alerts.rules[0].name, "swap");
        let e = Config::from_toml("[anomaly]\ntrees = 0").unwrap_err();
        assert!(e.to_string().contains("anomaly.trees"), "{e}");
        let e = Config::from_toml("[[alerts.webhooks]]\nurl = \"nope\"").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(Config::default().alerts.rules.len(), 4);
    }

    #[test]
    fn partial_files_keep_other_defaults() {
        let c = Config::from_toml("[agent]\ninterval = 2\n[agent.labels]\nrole = \"db\"").unwrap();
        assert_eq!(c.agent.interval, Duration::from_secs(2));
        assert_eq!(c.agent.labels["role"], "db");
        assert_eq!(c.sqlite, SqliteConfig::default());
        assert_eq!(c.kafka.dlq_topic(), "system_metrics.dlq");
    }
}
