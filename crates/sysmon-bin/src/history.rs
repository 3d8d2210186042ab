//! One flag, two engines: `--db` (`SYSMON_DB`, the config's `[sqlite] path`)
//! names a SQLite file or a PostgreSQL database (`postgres://` or
//! `postgresql://` URL). [`History::open`] is the one place the binaries open
//! the history.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sysmon_analytics::Config;
use sysmon_analytics::{AnalyticsSink, SharedFleet};
use sysmon_core::{HistoryReader, Sink, SnapshotStore};
use sysmon_dashboard::StoredAnalytics;
use sysmon_sinks::postgres::{is_postgres_url, PostgresConfig, PostgresSink};
use sysmon_sinks::redis::{RedisHistory, RedisStore};
use sysmon_sinks::sqlite::SqliteSink;

/// The history the configuration names.
#[derive(Debug, Clone)]
pub enum History {
    /// A SQLite file (the embedded default).
    Sqlite(Arc<SqliteSink>),
    /// A PostgreSQL database shared by several ingesters.
    Postgres(Arc<PostgresSink>),
}

/// The PostgreSQL URL of the configured storage, when it is one.
pub fn postgres_url(config: &Config) -> Option<&str> {
    config.sqlite.path.to_str().filter(|p| is_postgres_url(p))
}

impl History {
    /// Opens (creating or migrating) the configured history. `password_file`
    /// holds the PostgreSQL password when the URL has none.
    pub async fn open(config: &Config, password_file: Option<&Path>) -> anyhow::Result<History> {
        match postgres_url(config) {
            Some(url) => {
                let pg = PostgresConfig {
                    password_file: password_file.map(Path::to_path_buf),
                    ..PostgresConfig::from_storage(url, &config.sqlite)
                };
                let sink = PostgresSink::open(&pg)
                    .await
                    .with_context(|| format!("opening {}", pg.redacted_url()))?;
                Ok(History::Postgres(Arc::new(sink)))
            }
            None => {
                let path = &config.sqlite.path;
                let sink = SqliteSink::open(&config.sqlite)
                    .with_context(|| format!("opening {}", path.display()))?;
                Ok(History::Sqlite(Arc::new(sink)))
            }
        }
    }

    /// The history for messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            History::Sqlite(s) => s.describe().to_string(),
            History::Postgres(p) => p.describe().to_string(),
        }
    }

    /// The history as the ingester's required sink.
    pub fn sink(&self) -> Arc<dyn Sink> {
        match self {
            History::Sqlite(s) => s.clone(),
            History::Postgres(p) => p.clone(),
        }
    }

    /// The history's read side.
    pub fn store(&self) -> Arc<dyn SnapshotStore> {
        match self {
            History::Sqlite(s) => s.clone(),
            History::Postgres(p) => p.clone(),
        }
    }

    /// Where the ingester's analytics keep scores and alerts.
    pub fn analytics(&self) -> Arc<dyn AnalyticsSink> {
        match self {
            History::Sqlite(s) => s.clone(),
            History::Postgres(p) => p.clone(),
        }
    }

    /// The history as several ingesters share it (PostgreSQL), for fleet-wide
    /// alert rules; `None` for SQLite (one ingester's own file).
    pub fn shared_fleet(&self) -> Option<Arc<dyn SharedFleet>> {
        match self {
            History::Sqlite(_) => None,
            History::Postgres(p) => Some(p.clone()),
        }
    }

    /// The history's read side with series and sparklines (the dashboard's source).
    pub fn reader(&self) -> Arc<dyn HistoryReader> {
        match self {
            History::Sqlite(s) => s.clone(),
            History::Postgres(p) => p.clone(),
        }
    }

    /// Redis' latest values and recent window in front of this history.
    pub fn reader_with_redis(&self, redis: RedisStore) -> Arc<dyn HistoryReader> {
        match self {
            History::Sqlite(s) => Arc::new(RedisHistory::new(s.clone(), redis)),
            History::Postgres(p) => Arc::new(RedisHistory::new(p.clone(), redis)),
        }
    }

    /// Alerts, anomalies and forecasts as the ingester's analytics stored them here.
    pub fn stored_analytics(&self) -> StoredAnalytics {
        match self {
            History::Sqlite(s) => StoredAnalytics::new(s.clone()),
            History::Postgres(p) => StoredAnalytics::new(p.clone()),
        }
    }
}
