//! SQLite history: [`SqliteSink`].
//!
//! The durable store of every snapshot: raw samples (default 24 h) and
//! per-minute rollups (default 30 days), in one SQLite file in WAL mode.
//!
//! * Writes ([`Sink::write`]) take one transaction per batch with cached
//!   prepared statements; the key `(machine, ts_ms)` makes a replayed batch
//!   replace what it wrote before instead of duplicating it. With WAL and
//!   `synchronous=NORMAL` a committed batch survives a crash of the process;
//!   an OS crash or power loss may lose the last batches before a checkpoint,
//!   never corrupt the file (the ingester's at-least-once replay covers them
//!   when the transport still holds them). The sink checks only what it needs
//!   to store a snapshot exactly (no NaN, a timestamp within the key range);
//!   plausibility is validated by the ingester before any sink sees a batch.
//! * Reads ([`SnapshotStore`], [`SqliteSink::series`], [`SqliteSink::fleet_series`],
//!   [`SqliteSink::latest_all`]) use their own read-only connections, so the
//!   dashboard reads while the ingester writes (WAL allows concurrent readers).
//! * [`Sink::maintain`] (called periodically by the ingester) recomputes the
//!   minutes written since the last pass and enforces retention.
//!
//! Every SQLite call runs on tokio's blocking pool, never on the async runtime.
//! Schema and migrations: [`schema`]. Encodings of the variable-length parts: [`codec`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sysmon_core::config::SqliteConfig;
//! use sysmon_sinks::sqlite::{Metric, SqliteSink};
//!
//! let sink = SqliteSink::open(&SqliteConfig::default())?;
//! let now = 1_764_086_400.0;
//! let cpu = sink.series("web-01", Metric::Cpu, now - 3600.0, now, 1000).await?;
//! # Ok(()) }
//! ```

pub(crate) mod analytics;
pub mod codec;
mod export;
mod keys;
mod maintain;
pub(crate) mod read;
pub(crate) mod reader;
pub mod schema;
pub(crate) mod series;
pub(crate) mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sysmon_core::config::SqliteConfig;
use sysmon_core::{Batch, MachineSummary, Sink, SinkError, Snapshot, SnapshotStore, StoreError};

use crate::error::SinksError;

pub use analytics::ScorePoint;
pub use export::{RollupCursor, RollupRow, ROLLUP_COLUMNS};
pub use maintain::MaintenanceReport;
pub use series::{
    Bucket, FleetAgg, FleetBucket, Metric, ParseNameError, SeriesSource,
    FLEET_RAW_BUDGET_MACHINE_SECS, RAW_RANGE_LIMIT_SECS,
};

/// The sink's name in logs and metrics.
pub const NAME: &str = "sqlite";

/// How long a connection waits for a lock held by another before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer connection (KiB).
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// Page cache of each reader connection (KiB).
const READER_CACHE_KIB: i64 = 8 * 1024;
/// WAL pages after which a commit checkpoints the WAL into the database (64 MiB
/// at 4 KiB pages). SQLite's default of 1,000 pages makes every third batch at
/// full speed pay for a checkpoint (and its fsync), and a page rewritten by
/// several batches in between is copied once instead of once per batch.
/// (A background checkpoint thread was tried: no faster on these 2-core
/// machines, where it competes with the writer for a core.)
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;
/// Size the WAL file is truncated back to after a checkpoint, in bytes.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Idle reader connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;
/// Statements cached per connection (the write path uses 5, reads about 20).
const STATEMENT_CACHE: usize = 64;

/// SQLite history of every snapshot; see the [module docs](self).
///
/// Cheap to clone: clones share the connections, so one sink can be handed to
/// the ingester (as a [`Sink`]) and to the dashboard (as a [`SnapshotStore`]).
#[derive(Clone)]
pub struct SqliteSink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink")
            .field("db", &self.inner.what)
            .field("raw_retention_ms", &self.inner.raw_retention_ms)
            .field("rollup_retention_ms", &self.inner.rollup_retention_ms)
            .finish()
    }
}

struct Inner {
    /// The one connection that writes (SQLite has one writer at a time anyway).
    writer: Mutex<Connection>,
    readers: Readers,
    raw_retention_ms: i64,
    rollup_retention_ms: i64,
    /// The database as named in messages: its path, or `:memory:`.
    what: String,
}

enum Readers {
    /// In-memory databases have one connection: reads share the writer's.
    Writer,
    /// Read-only connections to the file, opened on demand and reused.
    Pool {
        path: PathBuf,
        idle: Mutex<Vec<Connection>>,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written batch behind:
    // the open transaction is rolled back when it is dropped.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn retention_ms(name: &str, d: Duration) -> Result<i64, SinksError> {
    if d < Duration::from_secs(60) {
        return Err(SinksError::Config(format!(
            "sqlite.{name} must be at least 1m, got {d:?}"
        )));
    }
    Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn configure_writer(conn: &mut Connection, what: &str, file: bool) -> Result<(), SinksError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Refuse foreign or newer files before any pragma that would change them.
    schema::preflight(conn, what)?;
    if file {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SinksError::Config(format!(
                "{what}: could not switch to WAL (journal mode stays {mode:?}); \
                 is it on a file system without shared-memory support?"
            )));
        }
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    schema::migrate(conn, what)?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, SinksError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|source| SinksError::SqliteOpen {
            path: path.to_path_buf(),
            source,
        })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

impl Inner {
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, SinksError>,
    ) -> Result<T, SinksError> {
        f(&mut lock(&self.writer))
    }

    /// Runs `f` in one read transaction (a consistent view across its queries),
    /// interruptible through `cancel` while it runs.
    fn with_reader<T>(
        &self,
        cancel: &ReadCancel,
        f: impl FnOnce(&Connection) -> Result<T, SinksError>,
    ) -> Result<T, SinksError> {
        match &self.readers {
            Readers::Writer => {
                let mut conn = lock(&self.writer);
                cancel.arm(&conn)?;
                let result = conn
                    .transaction()
                    .map_err(SinksError::from)
                    .and_then(|tx| f(&tx));
                cancel.disarm();
                result
            }
            Readers::Pool { path, idle } => {
                let pooled = lock(idle).pop();
                let mut conn = match pooled {
                    Some(c) => c,
                    None => open_reader(path)?,
                };
                cancel.arm(&conn)?;
                let result = conn
                    .transaction()
                    .map_err(SinksError::from)
                    .and_then(|tx| f(&tx));
                cancel.disarm();
                // A connection that just failed (or was interrupted) may be
                // broken: only healthy ones go back.
                if result.is_ok() {
                    let mut idle = lock(idle);
                    if idle.len() < MAX_IDLE_READERS {
                        idle.push(conn);
                    }
                }
                result
            }
        }
    }
}

/// Lets the caller of a read stop it: a dashboard request that timed out (its
/// future dropped) would otherwise leave its query scanning on the blocking
/// pool, holding a connection (and, in memory, the writer's lock) for nothing.
#[derive(Default)]
struct ReadCancel {
    state: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    /// The running read's connection, while it runs.
    handle: Option<rusqlite::InterruptHandle>,
}

impl ReadCancel {
    /// About to read on `conn`: fails if the caller is gone already.
    fn arm(&self, conn: &Connection) -> Result<(), SinksError> {
        let mut s = lock(&self.state);
        if s.cancelled {
            return Err(SinksError::Unavailable(
                "read cancelled: its caller went away".into(),
            ));
        }
        s.handle = Some(conn.get_interrupt_handle());
        Ok(())
    }

    /// The read is over: nothing to interrupt any more.
    fn disarm(&self) {
        lock(&self.state).handle = None;
    }

    /// The caller went away: interrupt the running statement (SQLite stops it
    /// at its next step with `SQLITE_INTERRUPT`), or keep a read from starting.
    fn cancel(&self) {
        let mut s = lock(&self.state);
        s.cancelled = true;
        if let Some(h) = s.handle.take() {
            h.interrupt();
        }
    }
}

/// Cancels its read when dropped before the read finished.
struct CancelOnDrop {
    cancel: Arc<ReadCancel>,
    finished: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel.cancel();
        }
    }
}

impl SqliteSink {
    /// Opens (creating it and its parent directories if needed) the database at
    /// `config.path`, in WAL mode with `synchronous=NORMAL`, and migrates it to
    /// the current schema.
    ///
    /// Fails with [`SinksError::Schema`] for a file written by a newer sysmon or
    /// a SQLite file of another application (both left untouched), and with
    /// [`SinksError::Config`] for a retention shorter than a minute.
    pub fn open(config: &SqliteConfig) -> Result<SqliteSink, SinksError> {
        let raw_retention_ms = retention_ms("raw_retention", config.raw_retention)?;
        let rollup_retention_ms = retention_ms("rollup_retention", config.rollup_retention)?;
        let path = config.path.clone();
        if path.as_os_str().is_empty() {
            return Err(SinksError::Config(
                "sqlite.path is empty; give the database file, e.g. data/sysmon.db".into(),
            ));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SinksError::Io {
                context: format!("creating the database directory {}", parent.display()),
                source,
            })?;
        }
        let what = path.display().to_string();
        let mut writer = Connection::open(&path).map_err(|source| SinksError::SqliteOpen {
            path: path.clone(),
            source,
        })?;
        configure_writer(&mut writer, &what, true).map_err(|e| match e {
            SinksError::Sqlite(source) => SinksError::SqliteOpen {
                path: path.clone(),
                source,
            },
            other => other,
        })?;
        tracing::info!(db = %what, "sqlite history opened");
        Ok(SqliteSink {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Readers::Pool {
                    path,
                    idle: Mutex::new(Vec::new()),
                },
                raw_retention_ms,
                rollup_retention_ms,
                what,
            }),
        })
    }

    /// A private in-memory database (tests, throwaway runs) with the default
    /// retention. Reads share the single connection.
    pub fn open_in_memory() -> Result<SqliteSink, SinksError> {
        let defaults = SqliteConfig::default();
        let mut writer = Connection::open_in_memory()?;
        configure_writer(&mut writer, ":memory:", false)?;
        Ok(SqliteSink {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Readers::Writer,
                raw_retention_ms: retention_ms("raw_retention", defaults.raw_retention)?,
                rollup_retention_ms: retention_ms("rollup_retention", defaults.rollup_retention)?,
                what: ":memory:".into(),
            }),
        })
    }

    /// The database as named in messages: its path, or `:memory:`.
    pub fn describe(&self) -> &str {
        &self.inner.what
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, SinksError> + Send + 'static,
    ) -> Result<T, SinksError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| SinksError::Task(e.to_string()))?
    }

    /// Runs `f` in one read transaction on the blocking pool. When the returned
    /// future is dropped before it completes (a request timed out), the query is
    /// interrupted instead of running on.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SinksError> + Send + 'static,
    ) -> Result<T, SinksError> {
        let cancel = Arc::new(ReadCancel::default());
        let mut guard = CancelOnDrop {
            cancel: cancel.clone(),
            finished: false,
        };
        let result = self
            .blocking(move |inner| inner.with_reader(&cancel, f))
            .await;
        guard.finished = true;
        result
    }

    /// Stores `snapshots` in one transaction (what [`Sink::write`] does with a batch).
    pub async fn write_snapshots(&self, snapshots: Batch) -> Result<(), SinksError> {
        self.blocking(move |inner| inner.with_writer(|c| write::write_batch(c, &snapshots)))
            .await
    }

    /// One maintenance pass as of `now_secs` (seconds since the epoch): recompute
    /// the per-minute rollups of the minutes written since the last pass, then
    /// delete raw samples older than the raw retention (whole minutes) and
    /// rollups older than the rollup retention. [`Sink::maintain`] calls this
    /// with the current time.
    pub async fn maintain_at(&self, now_secs: f64) -> Result<MaintenanceReport, SinksError> {
        if !now_secs.is_finite() {
            return Err(SinksError::InvalidInput(format!(
                "maintenance time {now_secs} is not a number of seconds"
            )));
        }
        let now_ms = (now_secs * 1000.0).round() as i64;
        self.blocking(move |inner| {
            // Rollups first, a hundred machines per transaction: writes get the
            // lock between chunks instead of waiting for a whole fleet's minutes.
            let mut rolled = 0;
            loop {
                let (n, done) = inner
                    .with_writer(|c| maintain::rollup_chunk(c, maintain::ROLLUP_CHUNK_MACHINES))?;
                rolled += n;
                if done {
                    break;
                }
            }
            // Then retention, with whatever was written meanwhile rolled up first.
            let mut report = inner.with_writer(|c| {
                maintain::maintain(c, now_ms, inner.raw_retention_ms, inner.rollup_retention_ms)
            })?;
            report.minutes_rolled_up += rolled;
            Ok(report)
        })
        .await
    }

    /// `machine_id`'s `metric` with `since <= t < until` (seconds since the
    /// epoch), downsampled to at most `max_points` buckets (at least 2 for the
    /// bound to hold exactly; 1 may give 2). Raw samples serve ranges up to
    /// [`RAW_RANGE_LIMIT_SECS`] within the raw retention, per-minute rollups the
    /// rest. An unknown machine has an empty series; a reversed range or
    /// `max_points == 0` is [`SinksError::InvalidInput`].
    pub async fn series(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Bucket>, SinksError> {
        self.series_from(
            machine_id,
            metric,
            since,
            until,
            max_points,
            SeriesSource::Auto,
        )
        .await
    }

    /// [`SqliteSink::series`] computed from the given source.
    pub async fn series_from(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        source: SeriesSource,
    ) -> Result<Vec<Bucket>, SinksError> {
        let machine_id = machine_id.to_string();
        self.read(move |c| series::series(c, &machine_id, metric, since, until, max_points, source))
            .await
    }

    /// `metric` across every machine with `since <= t < until`, in at most about
    /// `max_points` buckets: per bucket the fleet average (machines weigh
    /// equally), the lowest and highest sample of any machine, and `value`
    /// chosen by `agg`. Raw samples serve ranges up to
    /// [`FLEET_RAW_BUDGET_MACHINE_SECS`] / machines (and at most
    /// [`RAW_RANGE_LIMIT_SECS`]), per-minute rollups the rest.
    pub async fn fleet_series(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        agg: FleetAgg,
    ) -> Result<Vec<FleetBucket>, SinksError> {
        self.fleet_series_from(metric, since, until, max_points, agg, SeriesSource::Auto)
            .await
    }

    /// [`SqliteSink::fleet_series`] computed from the given source.
    pub async fn fleet_series_from(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        agg: FleetAgg,
        source: SeriesSource,
    ) -> Result<Vec<FleetBucket>, SinksError> {
        self.read(move |c| series::fleet_series(c, metric, since, until, max_points, agg, source))
            .await
    }

    /// The fleet series of each group of machines (see
    /// [`HistoryReader::group_series`](sysmon_core::HistoryReader::group_series)),
    /// from `source`.
    pub async fn group_series_from(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        source: SeriesSource,
        groups: Vec<Vec<String>>,
    ) -> Result<Vec<Vec<FleetBucket>>, SinksError> {
        self.read(move |c| {
            series::group_series(c, metric, since, until, max_points, source, &groups)
        })
        .await
    }

    /// The series of each of `machine_ids` over `since <= t < until`, in at
    /// most `max_points` buckets each, in one read (see [`SqliteSink::series`]);
    /// machines without data are left out.
    pub async fn sparklines(
        &self,
        machine_ids: Vec<String>,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<(String, Vec<Bucket>)>, SinksError> {
        self.read(move |c| series::sparklines(c, &machine_ids, metric, since, until, max_points))
            .await
    }

    /// The newest raw snapshot of every machine, by machine id.
    pub async fn latest_all(&self) -> Result<Vec<Snapshot>, SinksError> {
        self.read(read::latest_all).await
    }

    /// Every known machine (see [`SnapshotStore::machines`]).
    pub async fn list_machines(&self) -> Result<Vec<MachineSummary>, SinksError> {
        self.read(read::machines).await
    }

    /// The newest snapshot of `machine_id` (see [`SnapshotStore::latest`]).
    pub async fn latest_snapshot(&self, machine_id: &str) -> Result<Option<Snapshot>, SinksError> {
        let machine_id = machine_id.to_string();
        self.read(move |c| read::latest(c, &machine_id)).await
    }

    /// Stored snapshots (see [`SnapshotStore::range`]).
    pub async fn snapshots(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, SinksError> {
        let machine_id = machine_id.map(str::to_string);
        self.read(move |c| read::range(c, machine_id.as_deref(), since, until, limit))
            .await
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Errors a retry may cure (a lock held too long, a full disk, an I/O hiccup)
/// become [`SinkError::Unavailable`]; the rest [`SinkError::Failed`].
pub(crate) fn to_sink_error(e: SinksError) -> SinkError {
    let retryable = match &e {
        SinksError::Sqlite(err) | SinksError::SqliteOpen { source: err, .. } => matches!(
            err.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::OutOfMemory
            )
        ),
        SinksError::Task(_) | SinksError::Io { .. } => true,
        _ => false,
    };
    let message = e.to_string();
    if retryable {
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
    StoreError::backend(NAME, e)
}

#[async_trait]
impl Sink for SqliteSink {
    fn name(&self) -> &str {
        NAME
    }

    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        self.write_snapshots(batch).await.map_err(to_sink_error)
    }

    async fn maintain(&self) -> Result<(), SinkError> {
        self.maintain_at(now_secs())
            .await
            .map(|_| ())
            .map_err(to_sink_error)
    }
}

#[async_trait]
impl SnapshotStore for SqliteSink {
    /// Every machine with stored data (raw samples or rollups), by id. A machine
    /// is forgotten by maintenance once retention has removed all its data.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A query that scans for a long time (a billion-row recursive count).
    const ENDLESS: &str = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r \
                           WHERE i < 1000000000) SELECT count(*) FROM r";

    async fn dropped_read_is_interrupted(sink: SqliteSink) {
        let outcome: Arc<Mutex<Option<Result<i64, String>>>> = Arc::default();
        let started = Arc::new(AtomicBool::new(false));
        let (o, s) = (outcome.clone(), started.clone());
        let read = sink.read(move |c| {
            s.store(true, Ordering::SeqCst);
            let r = c
                .query_row(ENDLESS, [], |row| row.get::<_, i64>(0))
                .map_err(SinksError::from);
            *lock(&o) = Some(r.as_ref().map(|v| *v).map_err(|e| e.to_string()));
            r
        });
        // The caller gives up once the query runs (a dashboard request timing out).
        let waiting = async {
            while !started.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::select! {
            _ = read => panic!("a billion-row count finished first"),
            _ = waiting => {}
        }
        // The blocking read ends by itself, interrupted, rather than counting on.
        let mut got = None;
        for _ in 0..12_000 {
            if let Some(r) = lock(&outcome).take() {
                got = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = got.expect("the read is still running").unwrap_err();
        assert!(err.contains("interrupt"), "{err}");
        // The store still answers.
        assert!(sink.list_machines().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_read_is_interrupted_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SqliteSink::open(&SqliteConfig {
            path: dir.path().join("t.db"),
            ..SqliteConfig::default()
        })
        .unwrap();
        dropped_read_is_interrupted(sink).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_read_is_interrupted_in_memory() {
        dropped_read_is_interrupted(SqliteSink::open_in_memory().unwrap()).await;
    }
}
