//! [`PostgresConfig`]: where the PostgreSQL history lives and how long it keeps data.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sysmon_core::config::SqliteConfig;

use crate::error::SinksError;

/// Whether `s` names a PostgreSQL database (`postgres://` or `postgresql://`)
/// rather than a SQLite file.
pub fn is_postgres_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with any password replaced by `***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; credentials before its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let redacted_tail = redact_query_password(tail);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{redacted_tail}"),
            None => format!("{scheme}://{userinfo}@{host}{redacted_tail}"),
        },
        None => format!("{scheme}://{authority}{redacted_tail}"),
    }
}

/// `?password=...` is accepted by the URL syntax too.
fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// The PostgreSQL history's settings.
///
/// The password comes, first found, from the URL, from `password_file` (its
/// first line), or from the `PGPASSWORD` environment variable; it is never
/// printed (`Debug` and every message show the URL redacted). TLS follows the
/// URL's `sslmode` with libpq's meanings: `disable`; `prefer` (the default) and
/// `require` encrypt without authenticating the server; `verify-ca` and
/// `verify-full` also verify its certificate (and host name) against the
/// system's roots plus the PEM file of the URL's `sslrootcert`. Sessions run
/// with `jit = off` (sysmon's statements are short, and compiling one took
/// longer than running it) unless the URL's `options` set `jit` themselves.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgresql://user[:password]@host[:port]/database[?sslmode=verify-full&sslrootcert=ca.pem]`.
    pub url: String,
    /// A file whose first line is the password (when the URL has none).
    pub password_file: Option<PathBuf>,
    /// Connections in the pool (writes, reads and maintenance share them).
    pub pool_size: usize,
    /// How long raw samples (and processes, anomaly scores) are kept.
    #[serde(with = "sysmon_core::duration::serde_duration")]
    pub raw_retention: Duration,
    /// How long per-minute rollups and alert history are kept.
    #[serde(with = "sysmon_core::duration::serde_duration")]
    pub rollup_retention: Duration,
    /// How far ahead maintenance creates time partitions.
    #[serde(with = "sysmon_core::duration::serde_duration")]
    pub partitions_ahead: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("raw_retention", &self.raw_retention)
            .field("rollup_retention", &self.rollup_retention)
            .field("partitions_ahead", &self.partitions_ahead)
            .finish()
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        let sqlite = SqliteConfig::default();
        PostgresConfig {
            url: String::new(),
            password_file: None,
            pool_size: 8,
            raw_retention: sqlite.raw_retention,
            rollup_retention: sqlite.rollup_retention,
            partitions_ahead: Duration::from_secs(6 * 3600),
        }
    }
}

impl PostgresConfig {
    /// The settings for `url` with the retention of the `[sqlite]` section (the
    /// storage settings `--db` replaces).
    pub fn from_storage(url: &str, storage: &SqliteConfig) -> PostgresConfig {
        PostgresConfig {
            url: url.to_string(),
            raw_retention: storage.raw_retention,
            rollup_retention: storage.rollup_retention,
            ..PostgresConfig::default()
        }
    }

    /// The URL with its password hidden.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks the values that cannot work.
    pub(crate) fn check(&self) -> Result<(), SinksError> {
        if !is_postgres_url(&self.url) {
            return Err(SinksError::Config(format!(
                "postgres url {:?} must start with postgres:// or postgresql://",
                self.redacted_url()
            )));
        }
        if self.pool_size < 2 {
            return Err(SinksError::Config(format!(
                "postgres pool_size must be at least 2, got {}",
                self.pool_size
            )));
        }
        if self.raw_retention < Duration::from_secs(3600) {
            return Err(SinksError::Config(format!(
                "raw_retention must be at least 1h with PostgreSQL (hourly partitions), got {:?}",
                self.raw_retention
            )));
        }
        if self.rollup_retention < Duration::from_secs(86_400) {
            return Err(SinksError::Config(format!(
                "rollup_retention must be at least 1d with PostgreSQL (daily partitions), got {:?}",
                self.rollup_retention
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_case_insensitively() {
        assert!(is_postgres_url("postgres://localhost/x"));
        assert!(is_postgres_url("PostgreSQL://localhost/x"));
        assert!(!is_postgres_url("data/sysmon.db"));
        assert!(!is_postgres_url("postgres.db"));
        assert!(!is_postgres_url(""));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgresql://u:s3cret@db:5432/sysmon?sslmode=require"),
            "postgresql://u:***@db:5432/sysmon?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u@db/sysmon?password=s3cret&sslmode=disable"),
            "postgres://u@db/sysmon?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        let c = PostgresConfig {
            url: "postgres://u:s3cret@h/d".into(),
            ..PostgresConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
