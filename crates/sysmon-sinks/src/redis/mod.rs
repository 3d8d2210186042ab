//! Redis: the hot recent window, the latest state per machine and live fan-out.
//!
//! * [`RedisSink`] ([`sysmon_core::Sink`], name `redis`) writes every batch in
//!   **one pipelined round trip**: per machine the latest snapshot (with its top
//!   processes; binary, like the series), the recent series (a sorted set trimmed
//!   by time and by count) and the `last_seen` index; then it `PUBLISH`es a [`BatchEvent`] on
//!   `<prefix>events`. It is a best-effort sink: Redis down or restarted never
//!   blocks ingestion (every command is bounded by a timeout, an outage is
//!   detected once and then skipped until a background probe sees Redis again),
//!   and when Redis is back the sink repopulates the latest state and, given a
//!   cold store ([`RedisSink::with_backfill`]), the recent window.
//! * [`RedisStore`] ([`sysmon_core::SnapshotStore`]) reads those keys; "latest for
//!   1,000 machines" is a single `MGET` ([`RedisStore::latest_many`]). It refuses
//!   (with an error, so that a [`crate::query::QueryLayer`] falls back to SQLite)
//!   any range Redis does not hold completely.
//!
//! The key layout, the event message and the completeness rule are documented
//! in `docs/redis-layout.md`; [`KeyLayout`] is the single place that builds key
//! names. Redis Cluster is not supported (the write scripts touch several keys).

mod history;
mod live;
mod scripts;
mod sink;
mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use serde::{Deserialize, Serialize};
use sysmon_core::backoff::Backoff;
use sysmon_core::config::{redact_url_password, RedisConfig};
use sysmon_core::{ProcessInfo, Snapshot};

use crate::error::SinksError;

pub use history::RedisHistory;
pub use live::RedisLiveFeed;
pub use sink::{RedisSink, RedisSinkCounters, RedisSinkStats};
pub(crate) use store::sort_canonical;
pub use store::RedisStore;

/// Version of the [`BatchEvent`] message published on `<prefix>events`.
pub const EVENT_VERSION: u32 = 1;

/// Tuning beyond [`RedisConfig`] (which holds the URL, the credentials, the TLS
/// files, the key prefix and the window), and credentials for programs that do
/// not take them from a configuration file. `Default` gives the documented defaults.
#[derive(Clone)]
pub struct RedisOptions {
    /// ACL user name; overrides `RedisConfig::username` and the URL's.
    pub username: Option<String>,
    /// Password; overrides `RedisConfig::password` and the URL's. Never logged.
    pub password: Option<String>,
    /// PEM file with the CA certificate(s) that sign the server's certificate,
    /// for `rediss://` with a private CA; overrides `RedisConfig::ca_cert`.
    /// Default: the system's trust store.
    pub ca_cert: Option<PathBuf>,
    /// Bound on every command or pipeline (default 2 s). A write that takes
    /// longer counts as a failure and starts an outage.
    pub timeout: Duration,
    /// Bound on one connection attempt (default 1 s).
    pub connect_timeout: Duration,
    /// Most samples kept per machine in the recent series. Default: 10 per
    /// second of the window (the agent's smallest interval is 100 ms), so the
    /// count bound only ever bites misbehaving senders.
    pub max_series_len: Option<usize>,
    /// Expiry of a machine's keys after its last write. Default: twice the window.
    pub ttl: Option<Duration>,
    /// First delay between reconnection probes during an outage (default
    /// 100 ms); it doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest delay between reconnection probes (default 1 s): bounds how
    /// late Redis' return is noticed however long the outage lasted.
    pub reconnect_max: Duration,
    /// When the sink starts against a Redis that already holds sysmon data, it
    /// backfills (if it has a cold store) from this long before the previous
    /// writer's last write, to cover batches in flight when it stopped (default 60 s).
    pub backfill_slack: Duration,
    /// Most machines whose newest snapshot is remembered during an outage, to
    /// restore the latest state afterwards (default 100,000). Beyond that the
    /// outage is treated like a loss of Redis' data.
    pub max_pending_machines: usize,
    /// Publish a [`BatchEvent`] per batch (default true).
    pub publish: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            username: None,
            password: None,
            ca_cert: None,
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            max_series_len: None,
            ttl: None,
            reconnect_min: Backoff::DEPENDENCY.min(),
            reconnect_max: Backoff::DEPENDENCY.max(),
            backfill_slack: Duration::from_secs(60),
            max_pending_machines: 100_000,
            publish: true,
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_series_len", &self.max_series_len)
            .field("ttl", &self.ttl)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("backfill_slack", &self.backfill_slack)
            .field("max_pending_machines", &self.max_pending_machines)
            .field("publish", &self.publish)
            .finish()
    }
}

impl RedisOptions {
    /// The series length bound for `window`.
    pub fn series_len_for(&self, window: Duration) -> usize {
        self.max_series_len
            .unwrap_or_else(|| (window.as_secs_f64() * 10.0).ceil() as usize + 10)
            .max(1)
    }

    /// The key expiry for `window`.
    pub fn ttl_for(&self, window: Duration) -> Duration {
        self.ttl.unwrap_or(window * 2).max(Duration::from_millis(1))
    }
}

/// Builds every key name under one prefix (default `sysmon:`).
///
/// | key | type | content |
/// |---|---|---|
/// | `<p>latest:<machine>` | string | newest snapshot, binary (`SMB1`), with its top processes |
/// | `<p>series:<machine>` | sorted set | score = timestamp in ms, member = binary snapshot |
/// | `<p>last_seen` | sorted set | member = machine id, score = newest timestamp (s) |
/// | `<p>hostnames` | hash | machine id → host name |
/// | `<p>alerts:<scope>` | string | JSON array of active alerts (written by the alerting engine) |
/// | `<p>meta` | hash | `complete_since`, `written_at` |
/// | `<p>staged:<writer>:<kind>:<machine>` | string | transient, inside one pipeline |
/// | `<p>events` | channel | [`BatchEvent`] JSON per stored batch |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout under `prefix` (used verbatim: include the separator, e.g. `sysmon:`).
    pub fn new(prefix: impl Into<String>) -> Self {
        KeyLayout {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>latest:<machine>`: the newest snapshot in sysmon's binary encoding
    /// (`sysmon_core::codec::binary`; the same bytes as its series member).
    pub fn latest(&self, machine_id: &str) -> String {
        format!("{}latest:{machine_id}", self.prefix)
    }

    /// `<p>series:<machine>`: the recent series.
    pub fn series(&self, machine_id: &str) -> String {
        format!("{}series:{machine_id}", self.prefix)
    }

    /// `<p>alerts:<machine>`: active alerts of a machine (scope = machine id), or
    /// `<p>fleet_alerts` for the fleet's (scope = the empty
    /// `sysmon_analytics::FLEET_SCOPE`, which no machine id can be: a machine
    /// named `fleet` has a key of its own).
    pub fn alerts(&self, scope: &str) -> String {
        if scope.is_empty() {
            format!("{}fleet_alerts", self.prefix)
        } else {
            format!("{}alerts:{scope}", self.prefix)
        }
    }

    /// `<p>staged:<writer>:<kind>:<machine>`: a value a writer stages within a
    /// pipeline before its script moves it into place (expires after 60 s if
    /// the pipeline is cut short).
    pub fn staged(&self, writer: &str, kind: &str, machine_id: &str) -> String {
        format!("{}staged:{writer}:{kind}:{machine_id}", self.prefix)
    }

    /// `<p>last_seen`: machine id → newest timestamp.
    pub fn last_seen(&self) -> String {
        format!("{}last_seen", self.prefix)
    }

    /// `<p>hostnames`: machine id → host name.
    pub fn hostnames(&self) -> String {
        format!("{}hostnames", self.prefix)
    }

    /// `<p>meta`: the writer's bookkeeping (`complete_since`, `written_at`).
    pub fn meta(&self) -> String {
        format!("{}meta", self.prefix)
    }

    /// `<p>events`: the channel a [`BatchEvent`] is published on per batch.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
}

/// The message published on `<prefix>events` for every stored batch: enough
/// for a fleet overview to update without a round trip; the full snapshots are
/// one `MGET <prefix>latest:<id> ...` away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEvent {
    /// Message version ([`EVENT_VERSION`]).
    pub v: u32,
    /// When the batch was written, seconds since the epoch on the ingester's clock.
    pub stored_at: f64,
    /// One entry per snapshot of the batch, in batch order.
    pub snapshots: Vec<EventEntry>,
}

/// One snapshot of a [`BatchEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEntry {
    /// The machine's id.
    pub machine_id: String,
    /// The snapshot's timestamp (seconds since the epoch, sender's clock).
    pub timestamp: f64,
    /// The host name, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Whole-host CPU in percent.
    pub cpu_usage: f64,
    /// Memory used in percent.
    pub memory_usage: f64,
}

impl BatchEvent {
    /// The event for `batch`, stored at `stored_at`.
    pub fn for_batch(batch: &[Snapshot], stored_at: f64) -> Self {
        BatchEvent {
            v: EVENT_VERSION,
            stored_at,
            snapshots: batch
                .iter()
                .map(|s| EventEntry {
                    machine_id: s.machine_id.clone(),
                    timestamp: s.timestamp,
                    hostname: s.hostname.clone(),
                    cpu_usage: s.cpu_usage,
                    memory_usage: s.memory_usage,
                })
                .collect(),
        }
    }

    /// Parses a published message.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The newest snapshot's process lists ([`RedisStore::top_processes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopProcesses {
    /// The machine's id.
    pub machine_id: String,
    /// The timestamp of the snapshot the lists come from.
    pub timestamp: f64,
    /// Top processes by CPU, highest first.
    pub top_cpu_processes: Vec<ProcessInfo>,
    /// Top processes by resident memory, highest first.
    pub top_mem_processes: Vec<ProcessInfo>,
}

/// Seconds since the epoch on this host's clock.
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The URL without credentials, for logs and errors.
pub(crate) fn describe(client: &Client) -> String {
    let info = client.get_connection_info();
    let scheme = match info.addr() {
        ::redis::ConnectionAddr::TcpTls { .. } => "rediss",
        ::redis::ConnectionAddr::Unix(_) => "redis+unix",
        _ => "redis",
    };
    let user = info
        .redis_settings()
        .username()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    format!(
        "{scheme}://{user}{}/{}",
        info.addr(),
        info.redis_settings().db()
    )
}

/// Checks `config`, parses its URL and builds a client. Credentials: the
/// URL's, overridden by `config.username`/`config.password`, overridden by
/// `options`. `rediss://` uses rustls with the `ring` provider and the system
/// trust store, or the CA in `options.ca_cert` / `config.ca_cert`, and the
/// client certificate in `config.client_cert`/`client_key` if given. Files
/// that cannot be read or hold no valid PEM are configuration errors naming the
/// file and the key to fix.
pub(crate) fn build_client(
    config: &RedisConfig,
    options: &RedisOptions,
) -> Result<Client, SinksError> {
    let url = config.url.as_deref().ok_or_else(|| {
        SinksError::Config("redis.url is not set (redis://host:6379/0 or rediss://...)".into())
    })?;
    config.check().map_err(|e| {
        SinksError::Config(
            e.to_string()
                .trim_start_matches("configuration: ")
                .to_string(),
        )
    })?;
    if options.timeout.is_zero() || options.connect_timeout.is_zero() {
        return Err(SinksError::Config(
            "redis timeouts must be greater than zero".into(),
        ));
    }
    let info = url.into_connection_info().map_err(|e| {
        SinksError::Config(format!(
            "invalid redis.url {} (expected redis://[user:password@]host[:port][/db] or rediss://...): {e}",
            redact_url_password(url)
        ))
    })?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = options.username.as_ref().or(config.username.as_ref()) {
        settings = settings.set_username(u);
    }
    if let Some(p) = options.password.as_ref().or(config.password.as_ref()) {
        settings = settings.set_password(p);
    }
    let tls = matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. });
    let info = info.set_redis_settings(settings);
    let ca_cert = options.ca_cert.as_ref().or(config.ca_cert.as_ref());
    if !tls {
        if ca_cert.is_some() || config.client_cert.is_some() {
            return Err(SinksError::Config(
                "a Redis CA or client certificate is set but redis.url is not rediss:// (TLS)"
                    .into(),
            ));
        }
        return Client::open(info)
            .map_err(|e| SinksError::Config(format!("invalid redis.url: {e}")));
    }
    // Several rustls providers may be compiled into one binary; name ours.
    // An error only means a process-wide default is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match ca_cert {
        Some(path) => Some(read_pem(path, "redis.ca_cert", PemKind::Certificates)?),
        None => None,
    };
    let client_tls = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert, "redis.client_cert", PemKind::Certificates)?,
            client_key: read_pem(key, "redis.client_key", PemKind::PrivateKey)?,
        }),
        _ => None,
    };
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| SinksError::Config(format!("redis TLS setup: {e}")))
}

/// What a PEM file given in the configuration must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PemKind {
    /// One or more `CERTIFICATE` blocks.
    Certificates,
    /// One private key (PKCS#8, PKCS#1 or SEC1).
    PrivateKey,
}

/// Reads `path` (named by the config key `key` in errors) and checks that it
/// holds valid PEM of `kind`, so that a wrong file is reported at startup
/// with the key to fix, not as a TLS failure at every connection.
pub(crate) fn read_pem(path: &Path, key: &str, kind: PemKind) -> Result<Vec<u8>, SinksError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bytes = std::fs::read(path).map_err(|e| SinksError::Io {
        context: format!("reading {key} {}", path.display()),
        source: e,
    })?;
    let bad = |what: String| {
        SinksError::Config(format!(
            "{key} {} {what}; give a PEM file (-----BEGIN {}-----)",
            path.display(),
            match kind {
                PemKind::Certificates => "CERTIFICATE",
                PemKind::PrivateKey => "PRIVATE KEY",
            }
        ))
    };
    match kind {
        PemKind::Certificates => {
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("is not valid PEM ({e})")))?;
            if certs.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
            for c in &certs {
                if let Err(e) = rustls::server::ParsedCertificate::try_from(c) {
                    return Err(bad(format!(
                        "holds a certificate that does not parse ({e})"
                    )));
                }
            }
        }
        PemKind::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| bad(format!("holds no usable private key ({e})")))?;
        }
    }
    Ok(bytes)
}

/// A reconnecting connection that does not connect yet.
pub(crate) fn lazy_manager(
    client: Client,
    options: &RedisOptions,
) -> Result<ConnectionManager, SinksError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| SinksError::Config(format!("redis connection setup: {e}")))
}

/// True for errors that retrying cannot fix: bad credentials, missing ACL
/// permissions, a server certificate that does not verify, TLS spoken to a
/// plain server, a client-side configuration mistake.
pub(crate) fn is_fatal(e: &::redis::RedisError) -> bool {
    use ::redis::{ErrorKind, ServerErrorKind};
    let text = e.to_string();
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || ["WRONGPASS", "NOAUTH", "corrupt message", "UnknownCA"]
        .iter()
        .any(|m| text.contains(m))
        || text.to_ascii_lowercase().contains("certificate")
}

/// What to check for a [`is_fatal`] error.
pub(crate) fn fatal_hint(e: &::redis::RedisError) -> &'static str {
    let text = e.to_string();
    if text.contains("CertificateRequired") {
        "the server requires a client certificate: set redis.client_cert and redis.client_key"
    } else if text.contains("UnknownCA") || text.contains("BadCertificate") {
        "the server refused the client certificate in redis.client_cert: it must be signed by a CA the server trusts (its tls-ca-cert-file)"
    } else if text.contains("certificate") {
        "the TLS handshake failed over a certificate: give the CA that signs the server's certificate in redis.ca_cert, check that the host name in redis.url is in that certificate, and give redis.client_cert/client_key if the server requires client certificates"
    } else if text.contains("corrupt message") {
        "is the server really speaking TLS? use redis:// for a plain server"
    } else if text.contains("NOPERM") || text.contains("no permissions") {
        "the ACL user lacks permissions: it needs ~<prefix>* keys, &<prefix>events and +@all (or the commands sysmon uses)"
    } else {
        "check redis.username and redis.password (or the user:password in redis.url)"
    }
}

/// Sends `PING` within `timeout`.
pub(crate) async fn ping(
    conn: &ConnectionManager,
    timeout: Duration,
) -> Result<(), ::redis::RedisError> {
    let mut c = conn.clone();
    match tokio::time::timeout(timeout, ::redis::cmd("PING").query_async::<String>(&mut c)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(timeout_error(timeout)),
    }
}

pub(crate) fn timeout_error(after: Duration) -> ::redis::RedisError {
    ::redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from Redis within {after:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = KeyLayout::new("sysmon:");
        assert_eq!(k.latest("web-01"), "sysmon:latest:web-01");
        assert_eq!(k.series("web-01"), "sysmon:series:web-01");
        assert_eq!(k.latest("a:b"), "sysmon:latest:a:b");
        assert_eq!(k.last_seen(), "sysmon:last_seen");
        assert_eq!(k.hostnames(), "sysmon:hostnames");
        assert_eq!(k.alerts("fleet"), "sysmon:alerts:fleet");
        assert_eq!(k.alerts(""), "sysmon:fleet_alerts");
        assert_eq!(k.meta(), "sysmon:meta");
        assert_eq!(k.events(), "sysmon:events");
    }

    #[test]
    fn defaults_follow_the_window() {
        let o = RedisOptions::default();
        assert_eq!(o.series_len_for(Duration::from_secs(3600)), 36_010);
        assert_eq!(
            o.ttl_for(Duration::from_secs(3600)),
            Duration::from_secs(7200)
        );
        let o = RedisOptions {
            max_series_len: Some(5),
            ttl: Some(Duration::from_secs(3)),
            ..RedisOptions::default()
        };
        assert_eq!(o.series_len_for(Duration::from_secs(3600)), 5);
        assert_eq!(o.ttl_for(Duration::from_secs(3600)), Duration::from_secs(3));
    }

    #[test]
    fn bad_urls_and_settings_are_config_errors() {
        let o = RedisOptions::default();
        let mut c = RedisConfig::default();
        assert!(matches!(build_client(&c, &o), Err(SinksError::Config(_))));
        c.url = Some("http://localhost".into());
        let e = build_client(&c, &o).unwrap_err().to_string();
        assert!(e.contains("redis.url"), "{e}");
        c.url = Some("redis://127.0.0.1:1/0".into());
        c.window = Duration::from_millis(10);
        assert!(build_client(&c, &o).is_err());
        c.window = Duration::from_secs(60);
        let client = build_client(&c, &o).unwrap();
        assert_eq!(describe(&client), "redis://127.0.0.1:1/0");
    }

    #[test]
    fn credentials_come_from_the_url_or_the_options_and_never_show() {
        let c = RedisConfig {
            url: Some("redis://alice:s3cret@127.0.0.1:6390/2".into()),
            ..RedisConfig::default()
        };
        let client = build_client(&c, &RedisOptions::default()).unwrap();
        let s = client.get_connection_info().redis_settings();
        assert_eq!(s.username(), Some("alice"));
        assert_eq!(s.password(), Some("s3cret"));
        assert_eq!(describe(&client), "redis://alice@127.0.0.1:6390/2");
        let o = RedisOptions {
            username: Some("bob".into()),
            password: Some("pw".into()),
            ..RedisOptions::default()
        };
        let client = build_client(&c, &o).unwrap();
        let s = client.get_connection_info().redis_settings();
        assert_eq!((s.username(), s.password()), (Some("bob"), Some("pw")));
        assert!(!format!("{o:?}").contains("pw\""));
    }

    #[test]
    fn rediss_urls_build_a_tls_client() {
        let c = RedisConfig {
            url: Some("rediss://cache.example:6380/0".into()),
            ..RedisConfig::default()
        };
        let client = build_client(&c, &RedisOptions::default()).unwrap();
        assert!(describe(&client).starts_with("rediss://cache.example:6380"));
    }

    #[test]
    fn events_round_trip() {
        let mut s = Snapshot::new("m1", 1_764_086_400.25);
        s.cpu_usage = 12.5;
        let e = BatchEvent::for_batch(&[s], 1_764_086_401.0);
        let bytes = serde_json::to_vec(&e).unwrap();
        assert_eq!(BatchEvent::parse(&bytes).unwrap(), e);
        assert_eq!(e.snapshots[0].machine_id, "m1");
    }
}
