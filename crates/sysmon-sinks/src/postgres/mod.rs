//! PostgreSQL history: [`PostgresSink`], one store for a fleet of ingesters.
//!
//! The same content as the SQLite history (raw samples, top processes,
//! per-minute rollups, anomaly scores, alert history, active alerts) in a
//! database several ingesters share, so that every query, dashboard and
//! alert rule sees the whole fleet. Split by job:
//!
//! * [`config`]: [`PostgresConfig`] (URL, password file, retention), redaction.
//! * `pool`: connecting (tokio-postgres, rustls for `sslmode`, a deadpool pool).
//! * [`schema`]: tables and versioned migrations.
//! * `write`: [`Sink::write`], binary COPY into temporary tables, then
//!   `INSERT ... ON CONFLICT DO UPDATE` in the batch's transaction (idempotent).
//! * `maintain`: time partitions created ahead, retention by dropping whole
//!   partitions, idempotent per-minute rollups.
//! * `lock`: maintenance runs in exactly one ingester at a time (an advisory
//!   lock, handed over when its holder dies).
//! * `read`: [`SnapshotStore`].
//! * `analytics`: [`AnalyticsSink`](sysmon_analytics::AnalyticsSink), and
//!   [`SharedFleet`](sysmon_analytics::SharedFleet): fleet-wide alert rules
//!   run in the holder of the maintenance lock on every machine's latest
//!   stored values, the other ingesters skip them.
//!
//! Failures a retry may cure (the server down or restarting, connections
//! refused, a read-only or full database, a deadlock) are
//! [`SinkError::Unavailable`]: the ingester keeps the batch, retries and
//! commits nothing to Kafka meanwhile. The outage is logged when it starts
//! and when it ends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sysmon_sinks::postgres::{PostgresConfig, PostgresSink};
//!
//! let config = PostgresConfig {
//!     url: "postgresql://sysmon@db.example/sysmon?sslmode=require".into(),
//!     ..PostgresConfig::default()
//! };
//! let sink = PostgresSink::open(&config).await?;
//! # Ok(()) }
//! ```

mod analytics;
pub mod config;
mod copy;
mod import;
mod lock;
mod maintain;
mod pool;
mod read;
mod reader;
pub mod schema;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use sysmon_analytics::AnalyticsRecord;
use sysmon_core::{Batch, MachineSummary, Sink, SinkError, Snapshot, SnapshotStore, StoreError};
use tokio_postgres::error::SqlState;

use crate::error::SinksError;

pub use config::{is_postgres_url, redact_url, PostgresConfig};
pub use lock::MAINTENANCE_LOCK;
pub use maintain::PostgresMaintenance;

/// The sink's name in logs and metrics.
pub const NAME: &str = "postgres";

/// PostgreSQL history; see the [module docs](self).
///
/// Cheap to clone: clones share the pool, the partition cache and the
/// maintenance lock.
#[derive(Clone)]
pub struct PostgresSink {
    inner: Arc<Inner>,
}

struct Inner {
    config: PostgresConfig,
    connector: pool::Connector,
    pool: Pool,
    partitions: maintain::PartitionCache,
    lock: lock::MaintenanceLock,
    /// Whether the last write failed with a retryable error (an outage).
    down: AtomicBool,
    /// Every batch takes the replay (merge) way; see [`PostgresSink::set_merge_only`].
    merge_only: AtomicBool,
    /// The database as named in messages (URL, password redacted).
    what: String,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("db", &self.inner.what)
            .field("leads_maintenance", &self.leads_maintenance())
            .finish()
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether a retry may cure `e` (see the [module docs](self)).
fn retryable(e: &SinksError) -> bool {
    match e {
        SinksError::PostgresPool(_) | SinksError::Task(_) | SinksError::Io { .. } => true,
        SinksError::Postgres(err) => match err.code() {
            // No SQLSTATE: the connection broke or could not be opened.
            None => true,
            Some(code) => {
                let c = code.code();
                // 08 connection, 40 rollback (deadlock, serialization), 53 resources
                // (disk full, out of memory, too many connections), 57 operator
                // intervention (shutdown, restart), 25006 read-only, 55000 a
                // database not accepting connections, 55P03 lock not available.
                c.starts_with("08")
                    || c.starts_with("40")
                    || c.starts_with("53")
                    || c.starts_with("57")
                    || *code == SqlState::READ_ONLY_SQL_TRANSACTION
                    || *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
                    || *code == SqlState::LOCK_NOT_AVAILABLE
            }
        },
        _ => false,
    }
}

/// A message that says what to do, for the failures users meet.
fn explain(e: &SinksError) -> String {
    if let SinksError::Postgres(err) = e {
        if err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
            return format!(
                "the database is read-only (default_transaction_read_only, or a standby); \
                 ingestion is paused until it accepts writes: {e}"
            );
        }
        if err.code() == Some(&SqlState::DISK_FULL) {
            return format!("the database server's disk is full; ingestion is paused: {e}");
        }
    }
    e.to_string()
}

/// [`SinksError`] as the ingester's [`SinkError`].
pub(crate) fn to_sink_error(e: SinksError) -> SinkError {
    let message = explain(&e);
    if retryable(&e) {
        SinkError::Unavailable {
            sink: NAME.into(),
            message,
            source: Some(Box::new(e)),
        }
    } else {
        SinkError::Failed {
            sink: NAME.into(),
            message,
            source: Some(Box::new(e)),
        }
    }
}

pub(crate) fn to_store_error(e: SinksError) -> StoreError {
    StoreError::Backend {
        store: NAME.into(),
        message: explain(&e),
        source: Some(Box::new(e)),
    }
}

/// Whether a write failed for want of a partition (another ingester's
/// retention dropped one this process thought existed).
fn no_partition(e: &SinksError) -> bool {
    matches!(e, SinksError::Postgres(err)
        if err.code() == Some(&SqlState::CHECK_VIOLATION)
            && err.as_db_error().is_some_and(|d| d.message().contains("no partition")))
}

impl PostgresSink {
    /// Connects to `config.url` and migrates the database to the current
    /// schema. Fails with [`SinksError::Schema`] for a database written by a
    /// newer sysmon or holding another application's tables (both untouched).
    pub async fn open(config: &PostgresConfig) -> Result<PostgresSink, SinksError> {
        let connector = pool::connect_config(config)?;
        let what = config.redacted_url();
        let pool = pool::pool(config, &connector)?;
        let sink = PostgresSink {
            inner: Arc::new(Inner {
                config: config.clone(),
                connector,
                pool,
                partitions: maintain::PartitionCache::default(),
                lock: lock::MaintenanceLock::default(),
                down: AtomicBool::new(false),
                merge_only: AtomicBool::new(false),
                what,
            }),
        };
        {
            let mut client = sink.client().await.map_err(|e| {
                SinksError::Unavailable(format!("cannot connect to {}: {e}", sink.inner.what))
            })?;
            schema::migrate(&mut client, &sink.inner.what).await?;
        }
        tracing::info!(db = %sink.inner.what, "postgres history opened");
        Ok(sink)
    }

    /// The database, password redacted.
    pub fn describe(&self) -> &str {
        &self.inner.what
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, SinksError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| SinksError::PostgresPool(e.to_string()))
    }

    /// Stores `snapshots` in one transaction (what [`Sink::write`] does).
    pub async fn write_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), SinksError> {
        let mut client = self.client().await?;
        let merge_only = self.inner.merge_only.load(Ordering::Relaxed);
        let result =
            write::write_batch(&mut client, &self.inner.partitions, snapshots, merge_only).await;
        match result {
            Err(e) if no_partition(&e) => {
                self.inner.partitions.clear();
                write::write_batch(&mut client, &self.inner.partitions, snapshots, merge_only).await
            }
            other => other,
        }
    }

    /// For benchmarks and tests: every batch takes the replay way (staging
    /// tables and `INSERT ... ON CONFLICT`) instead of the direct COPY of new
    /// samples. The stored result is the same.
    #[doc(hidden)]
    pub fn set_merge_only(&self, merge_only: bool) {
        self.inner.merge_only.store(merge_only, Ordering::Relaxed);
    }

    /// Stores an analytics record in one transaction.
    pub async fn write_analytics(&self, record: &AnalyticsRecord) -> Result<(), SinksError> {
        let mut client = self.client().await?;
        analytics::write_record(&mut client, &self.inner.partitions, record).await
    }

    /// Whether this process held the maintenance lock at its last attempt.
    pub fn leads_maintenance(&self) -> bool {
        self.inner.lock.is_leader()
    }

    /// Keeps or takes the maintenance lock; returns whether this process holds it.
    pub async fn try_lead(&self) -> Result<bool, SinksError> {
        self.inner.lock.acquire(&self.inner.connector).await
    }

    /// Gives the maintenance lock up, so that another ingester takes it over.
    pub async fn step_down(&self) {
        self.inner.lock.release().await
    }

    /// One maintenance pass as of `now_secs` when this process holds (or
    /// takes) the maintenance lock: partitions ahead, rollups, retention.
    /// `None` when another process holds the lock.
    pub async fn maintain_at(
        &self,
        now_secs: f64,
    ) -> Result<Option<PostgresMaintenance>, SinksError> {
        if !now_secs.is_finite() {
            return Err(SinksError::InvalidInput(format!(
                "maintenance time {now_secs} is not a number of seconds"
            )));
        }
        if !self.try_lead().await? {
            return Ok(None);
        }
        let mut client = self.client().await?;
        let c = &self.inner.config;
        let report = maintain::maintain(
            &mut client,
            &self.inner.partitions,
            (now_secs * 1000.0).round() as i64,
            c.raw_retention,
            c.rollup_retention,
            c.partitions_ahead,
        )
        .await?;
        if report != PostgresMaintenance::default() {
            tracing::debug!(?report, "postgres maintenance");
        }
        Ok(Some(report))
    }

    /// The newest raw snapshot of every machine, by machine id.
    pub async fn latest_all(&self) -> Result<Vec<Snapshot>, SinksError> {
        read::latest_all(&**self.client().await?).await
    }

    /// The newest snapshot (without top processes) of every machine with
    /// one at or after `since` (seconds): the input of fleet-wide alert rules.
    pub async fn fleet_latest_snapshots(&self, since: f64) -> Result<Vec<Snapshot>, SinksError> {
        read::fleet_latest(&**self.client().await?, since).await
    }

    /// Every known machine (see [`SnapshotStore::machines`]).
    pub async fn list_machines(&self) -> Result<Vec<MachineSummary>, SinksError> {
        read::machines(&**self.client().await?).await
    }

    /// The newest snapshot of `machine_id` (see [`SnapshotStore::latest`]).
    pub async fn latest_snapshot(&self, machine_id: &str) -> Result<Option<Snapshot>, SinksError> {
        read::latest(&**self.client().await?, machine_id).await
    }

    /// Stored snapshots (see [`SnapshotStore::range`]).
    pub async fn snapshots(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, SinksError> {
        read::range(&**self.client().await?, machine_id, since, until, limit).await
    }

    /// Logs an outage when it starts and when it ends.
    fn note_outcome<T>(&self, r: &Result<T, SinksError>) {
        match r {
            Ok(_) => {
                if self.inner.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(db = %self.inner.what, "postgres is back; writes succeed again");
                }
            }
            Err(e) if retryable(e) => {
                if !self.inner.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(db = %self.inner.what, error = %explain(e),
                        "postgres unavailable; ingestion paused (nothing is committed until writes succeed)");
                }
            }
            Err(_) => {}
        }
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        NAME
    }

    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        let r = self.write_snapshots(&batch).await;
        self.note_outcome(&r);
        r.map_err(to_sink_error)
    }

    /// Runs maintenance when this ingester holds the maintenance lock (or
    /// takes it over from one that died); otherwise nothing.
    async fn maintain(&self) -> Result<(), SinkError> {
        self.maintain_at(now_secs())
            .await
            .map(|_| ())
            .map_err(to_sink_error)
    }
}

#[async_trait]
impl SnapshotStore for PostgresSink {
    async fn machines(&self) -> Result<Vec<MachineSummary>, StoreError> {
        self.list_machines().await.map_err(to_store_error)
    }

    async fn latest(&self, machine_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.latest_snapshot(machine_id)
            .await
            .map_err(to_store_error)
    }

    async fn range(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.snapshots(machine_id, since, until, limit)
            .await
            .map_err(to_store_error)
    }
}
