//! The configuration file shared by every sysmon binary.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config`),
//! `SYSMON_*` environment variables, command-line flags. Every section and key
//! is optional; unknown keys are errors (a typo never silently does nothing).
//! `sysmon config --print-default` prints [`DEFAULT_CONFIG_TOML`] followed by
//! the analytics crate's sections.
//!
//! The `[alerts]` and `[anomaly]` sections belong to `sysmon-analytics`: core
//! only knows them as the type parameters of [`Config`]. `Config` alone (the
//! defaults `toml::Table`) accepts and ignores them, so a program that embeds
//! the agent reads the same file as the master without compiling the
//! analytics; `sysmon_analytics::Config` fills them with the typed, checked
//! sections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{Format, DEFAULT_MAX_MESSAGE_BYTES};
use crate::duration::serde_duration;
use crate::error::CoreError;

/// The whole configuration.
///
/// `Alerts` and `Anomaly` are the `[alerts]` and `[anomaly]` sections, owned
/// by whoever evaluates them (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config<Alerts = toml::Table, Anomaly = toml::Table> {
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
    /// `[alerts]`: alert rules and webhook targets.
    pub alerts: Alerts,
    /// `[anomaly]`: the anomaly detector.
    pub anomaly: Anomaly,
}

/// A section of [`Config`] defined outside core: parsed with the rest of
/// the file (unknown keys rejected by its own `deny_unknown_fields`) and
/// checked by [`Config::check`].
pub trait ConfigSection: Default + DeserializeOwned {
    /// Checks values that parse but make no sense.
    fn check(&self) -> Result<(), CoreError>;
}

/// An untyped section: accepted as written, checked by nobody.
impl ConfigSection for toml::Table {
    fn check(&self) -> Result<(), CoreError> {
        Ok(())
    }
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
    /// Samples dated further than this ahead of the ingester's clock are
    /// dead-lettered (`future_timestamp`): a forged or badly skewed sample
    /// would otherwise stay a machine's "latest" state for years.
    #[serde(with = "serde_duration")]
    pub max_future_skew: Duration,
    /// Samples older than this are dead-lettered (`too_old`): retention would
    /// delete them at once. Default: `[sqlite] rollup_retention`.
    #[serde(default, with = "crate::duration::serde_opt_duration")]
    pub max_sample_age: Option<Duration>,
    /// Per-machine state the ingester keeps in memory (the anomaly detector's
    /// windows, the alert rules' state, open anomaly episodes) is forgotten
    /// once no snapshot came from the machine for this long (the ingester's
    /// clock). It must be longer than every `machine_offline` rule's `after`:
    /// an offline machine is alerted first; forgetting it later ends its alerts
    /// with a `resolved` event saying it is no longer tracked. A machine that
    /// reports again afterwards starts afresh.
    #[serde(with = "serde_duration")]
    pub forget_silent_machines_after: Duration,
    /// Most machines the ingester's analytics track at once. Samples of further
    /// machines are still stored, but not scored or alerted on (counted by
    /// `sysmon_analytics_machine_cap_hits_total`) until silent machines are
    /// forgotten. Bounds memory against a flood of made-up machine ids.
    pub max_tracked_machines: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_size: 1000,
            batch_wait: Duration::from_millis(200),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            maintenance_interval: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(300),
            max_sample_age: None,
            forget_silent_machines_after: Duration::from_secs(3600),
            max_tracked_machines: 10_000,
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
    /// This ingester's static member name in the group (librdkafka
    /// `group.instance.id`): a restarted ingester with the same name gets its
    /// partitions back at once instead of after the session timeout (tansu
    /// never evicts a dead member). `sysmon ingest` defaults it to
    /// `ingest-<machine id>`; two ingesters on one host need different names
    /// (`--instance-id`), or the second fences the first. Empty: dynamic
    /// membership.
    pub instance_id: Option<String>,
    /// The agent's wire format.
    pub format: Format,
    /// How the agent's producer compresses record batches (`none`, `gzip`,
    /// `lz4`, `zstd`, `snappy`); also used for dead letters. The default,
    /// `gzip`, is what the legacy Python consumer can read as its requirements
    /// install it (`kafka-python` without codec libraries reads only `none`
    /// and `gzip`). A `compression.type` in `options` overrides it.
    pub compression: Compression,
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
            instance_id: None,
            format: Format::Json,
            compression: Compression::Gzip,
            partitions: 6,
            replication_factor: 1,
            options: BTreeMap::new(),
        }
    }
}

impl<Alerts, Anomaly> Config<Alerts, Anomaly> {
    /// The `[ingest]` options with their defaults resolved: `max_sample_age`
    /// is `[sqlite] rollup_retention` unless set.
    pub fn ingest_options(&self) -> IngestConfig {
        let mut o = self.ingest.clone();
        if o.max_sample_age.is_none() {
            o.max_sample_age = Some(self.sqlite.rollup_retention);
        }
        o
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

/// Compression of Kafka record batches (librdkafka's `compression.type`).
///
/// Consumers must support the codec: the legacy Python consumer, installed
/// from its own requirements (`kafka-python` alone), reads only `none` and
/// `gzip` and stops at the first `lz4`, `snappy` or `zstd` batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression: the most bytes, the least CPU, readable by every client.
    None,
    /// gzip (zlib): about a third of the bytes of JSON, readable by every
    /// client, more CPU than lz4 (nothing an agent at 1 s notices).
    Gzip,
    /// lz4: fast and fairly small; for high volumes (the load generator's
    /// default). Needs the `lz4` library in Python clients.
    Lz4,
    /// zstd: the smallest batches. Needs `zstandard` in Python clients and
    /// Kafka 2.1+ brokers.
    Zstd,
    /// snappy: fast, larger than lz4. Needs `python-snappy` in Python clients.
    Snappy,
}

impl Compression {
    /// Every codec, in the order `--help` lists them.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ];

    /// librdkafka's name for it (`compression.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == wanted)
            .ok_or_else(|| {
                format!("unknown compression {s:?}: expected none, gzip, lz4, zstd or snappy")
            })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[redis]`
///
/// Credentials and TLS files may come from the URL or from their own keys
/// (which override the URL's). The password is never shown: `Debug` redacts it,
/// in `password` and inside `url`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS; unset = no Redis.
    pub url: Option<String>,
    /// ACL user name (Redis 6+); overrides the one in `url`.
    pub username: Option<String>,
    /// Password (of `username`, or of `requirepass`); overrides the one in `url`.
    pub password: Option<String>,
    /// `rediss://` only: PEM file with the CA certificate(s) that sign the
    /// server's certificate (a private CA). Default: the system's trust store.
    pub ca_cert: Option<PathBuf>,
    /// `rediss://` only: PEM client certificate (chain), for a server that
    /// requires client certificates (`tls-auth-clients yes`). Needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// `rediss://` only: PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
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
            username: None,
            password: None,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            prefix: "sysmon:".into(),
            window: Duration::from_secs(3600),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url_password))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .finish()
    }
}

impl RedisConfig {
    /// Checks values that parse but make no sense (the URL itself is parsed
    /// when the Redis client is built).
    pub fn check(&self) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::Config(m));
        if self.window < Duration::from_secs(1) {
            return bad(format!(
                "redis.window must be at least 1s, got {:?}",
                self.window
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return bad(
                "redis.client_cert and redis.client_key go together: set both or neither".into(),
            );
        }
        let tls_files = [
            ("ca_cert", &self.ca_cert),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ];
        if let Some(url) = &self.url {
            if !url.starts_with("rediss://") {
                if let Some((name, _)) = tls_files.iter().find(|(_, v)| v.is_some()) {
                    return bad(format!(
                        "redis.{name} is set but redis.url is not rediss:// (TLS): use rediss://host:port or remove redis.{name}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `url` with the password part of its user info (`user:PASSWORD@`) replaced
/// by `<redacted>`, for logs and `Debug`. A password may hold `/ ? # @`
/// unescaped, so everything from the first `:` to the last `@` goes (more
/// than the password when a query holds an `@`: never less).
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:<redacted>{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

impl<Alerts: ConfigSection, Anomaly: ConfigSection> Config<Alerts, Anomaly> {
    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, CoreError> {
        let config: Self = toml::from_str(text).map_err(|e| CoreError::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, CoreError> {
        match path {
            None => Ok(Self::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| CoreError::Io {
                    context: format!("reading config file {}", p.display()),
                    source: e,
                })?;
                Self::from_toml(&text).map_err(|e| match e {
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
        if self.ingest.forget_silent_machines_after < Duration::from_secs(1) {
            return bad("ingest.forget_silent_machines_after must be at least 1s");
        }
        if self.ingest.max_tracked_machines == 0 {
            return bad("ingest.max_tracked_machines must be at least 1");
        }
        if self.kafka.partitions < 1 {
            return bad("kafka.partitions must be at least 1");
        }
        if self.sqlite.raw_retention < Duration::from_secs(60) {
            return bad("sqlite.raw_retention must be at least 1m");
        }
        self.redis.check()?;
        self.alerts.check()?;
        self.anomaly.check()?;
        Ok(())
    }
}

/// The commented default of core's sections, the start of what
/// `sysmon config --print-default` prints (`sysmon_analytics` appends its own).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_the_defaults() {
        let parsed = <Config>::from_toml(DEFAULT_CONFIG_TOML).unwrap();
        let expected = Config {
            collectors: parsed.collectors.clone(),
            ..Config::default()
        };
        assert_eq!(parsed, expected);
        assert!(parsed.collectors.contains_key("processes"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = <Config>::from_toml("[agent]\nintervall = \"1s\"").unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
        let e = <Config>::from_toml("[agent]\ninterval = \"fast\"").unwrap_err();
        assert!(e.to_string().contains("15m"), "{e}");
        let e = <Config>::from_toml("[agent]\ninterval = \"10ms\"").unwrap_err();
        assert!(e.to_string().contains("100ms"), "{e}");
        let e = <Config>::from_toml("[kafka]\nformat = \"xml\"").unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
        let e = <Config>::from_toml("[kafka]\ncompression = \"brotli\"").unwrap_err();
        assert!(e.to_string().contains("compression"), "{e}");
    }

    #[test]
    fn compression_parses_from_toml_and_flags_and_defaults_to_gzip() {
        assert_eq!(KafkaConfig::default().compression, Compression::Gzip);
        let c = <Config>::from_toml("[kafka]\ncompression = \"lz4\"").unwrap();
        assert_eq!(c.kafka.compression, Compression::Lz4);
        for c in Compression::ALL {
            assert_eq!(c.as_str().parse::<Compression>(), Ok(c));
            assert_eq!(c.to_string().to_uppercase().parse::<Compression>(), Ok(c));
        }
        let e = "brotli".parse::<Compression>().unwrap_err();
        assert!(e.contains("none, gzip, lz4, zstd or snappy"), "{e}");
    }

    #[test]
    fn analytics_sections_are_accepted_untyped() {
        let c =
            <Config>::from_toml("[anomaly]\ntrees = 0\n[[alerts.rules]]\nname = \"x\"").unwrap();
        assert_eq!(c.anomaly["trees"].as_integer(), Some(0));
        assert!(c.alerts.contains_key("rules"));
    }

    #[test]
    fn redis_credentials_and_tls_files_are_checked_and_never_shown() {
        let c = <Config>::from_toml(
            "[redis]\nurl = \"rediss://ingest:urlpw@cache:6380/0\"\nusername = \"ingest\"\n\
             password = \"s3cret\"\nca_cert = \"/etc/ca.pem\"\n\
             client_cert = \"/etc/c.pem\"\nclient_key = \"/etc/c.key\"",
        )
        .unwrap();
        assert_eq!(c.redis.password.as_deref(), Some("s3cret"));
        assert_eq!(c.redis.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        let shown = format!("{:?}", c);
        assert!(
            !shown.contains("s3cret") && !shown.contains("urlpw"),
            "{shown}"
        );
        assert!(
            shown.contains("rediss://ingest:<redacted>@cache:6380/0"),
            "{shown}"
        );
        let e = <Config>::from_toml("[redis]\nurl = \"rediss://h\"\nclient_cert = \"/c.pem\"")
            .unwrap_err();
        assert!(e.to_string().contains("client_key"), "{e}");
        let e =
            <Config>::from_toml("[redis]\nurl = \"redis://h\"\nca_cert = \"/ca.pem\"").unwrap_err();
        assert!(e.to_string().contains("rediss://"), "{e}");
        let e = <Config>::from_toml("[redis]\nwindow = \"100ms\"").unwrap_err();
        assert!(e.to_string().contains("redis.window"), "{e}");
        assert_eq!(
            redact_url_password("redis://:pw@h:1/0"),
            "redis://:<redacted>@h:1/0"
        );
        assert_eq!(redact_url_password("redis://u@h/0"), "redis://u@h/0");
        assert_eq!(redact_url_password("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(
            redact_url_password("redis://u:p@ss@h/0"),
            "redis://u:<redacted>@h/0"
        );
        // `/ ? #` in a password (unescaped) never leak
        for pw in ["p/ss", "p?ss", "p#ss", "a/b?c#d@e"] {
            let shown = redact_url_password(&format!("rediss://user:{pw}@cache:6380/0"));
            assert_eq!(shown, "rediss://user:<redacted>@cache:6380/0", "{pw}");
        }
        // an `@` in a query over-redacts, never under-redacts
        let shown = redact_url_password("redis://u:pw@h:1/0?client=a@b");
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn partial_files_keep_other_defaults() {
        let c =
            <Config>::from_toml("[agent]\ninterval = 2\n[agent.labels]\nrole = \"db\"").unwrap();
        assert_eq!(c.agent.interval, Duration::from_secs(2));
        assert_eq!(c.agent.labels["role"], "db");
        assert_eq!(c.sqlite, SqliteConfig::default());
        assert_eq!(c.kafka.dlq_topic(), "system_metrics.dlq");
    }
}
