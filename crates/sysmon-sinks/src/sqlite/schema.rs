//! The database schema and its versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`; a sysmon database also
//! carries `PRAGMA application_id` = [`APPLICATION_ID`] so that it can be told
//! apart from any other SQLite file. [`MIGRATIONS`] is an append-only list: step
//! `i` takes a database from version `i` to `i + 1`. A released step is never
//! edited; a schema change is a new step.
//!
//! Opening a file:
//!
//! * a new, empty file is created at the latest version;
//! * a sysmon database at an older version is migrated in place, in one
//!   transaction, its data kept;
//! * a sysmon database at a *newer* version is refused untouched (an older
//!   build must not guess at a schema it does not know);
//! * any other SQLite file (tables but no sysmon version, or another
//!   application's id) is refused untouched: pointing `--db` at the wrong file
//!   should be an error, not a silent merge of two applications' tables.
//!
//! # Tables (latest version)
//!
//! * `machines(id INTEGER PRIMARY KEY, machine_id TEXT UNIQUE, hostname, last_seen)`:
//!   machine ids interned to small integers; hostname and time of the newest sample.
//! * `samples(key INTEGER PRIMARY KEY, ts, ...)`: one row per raw snapshot, keyed by
//!   `(machine, ts_ms)` packed into one integer, `machine << 42 | ts_ms` (see
//!   `keys.rs`: machine-major, so a machine's history is contiguous); `ts_ms` is
//!   [`sysmon_core::Snapshot::timestamp_millis`] (the idempotency key) and `ts`
//!   the exact timestamp. The view `samples_by_machine` unpacks the key. Every numeric field has
//!   its own column; per-core CPU and filesystems are compact blobs, labels,
//!   collector errors and custom metrics JSON (see [`super::codec`]).
//!   Unsigned 64-bit counters are stored as their bit pattern in SQLite's
//!   signed integers (exact; values above 2^63 read as negative from SQL).
//! * `processes(key INTEGER PRIMARY KEY, top)`: both top-process lists of a sample in
//!   one blob, keyed by the same `(machine, ts_ms)` packed time-major,
//!   `ts_ms << 21 | machine`, so that writes append at the end of the table.
//! * `rollups(machine, minute_ms, n, cpu_avg/min/max, ...) PRIMARY KEY (machine, minute_ms)`:
//!   per-minute avg/min/max of the charted metrics, with per-metric sample counts
//!   so that minutes merge into larger buckets exactly.
//! * `dirty_minutes(machine, minute_ms)`: minutes written since the last
//!   maintenance, to be recomputed from raw samples.
//! * `meta(key, value)`: `raw_horizon_ms`, the start of the oldest minute whose raw
//!   samples are complete (everything before it was deleted by retention).
//! * `anomaly_scores(key, ts, score, anomaly, reasons)`: the anomaly detector's
//!   verdict on each sample, keyed like `samples` and deleted with them.
//! * `alert_events(id, at, rule, severity, machine_id, subject, state, value, message)`:
//!   alert transitions (firing, resolved), kept as long as rollups.
//! * `active_alerts(rule, machine_id, subject, ...)`: the pending and firing alerts,
//!   replaced as a whole by the ingester's analytics.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::SinksError;

/// `PRAGMA application_id` of a sysmon database: `"SYMN"`.
pub const APPLICATION_ID: i32 = 0x5359_4D4E;

/// Version 1: interned machines, raw samples, processes.
const V1: &str = r#"
CREATE TABLE machines (
    id          INTEGER PRIMARY KEY,
    machine_id  TEXT NOT NULL UNIQUE,
    hostname    TEXT,
    last_seen   REAL NOT NULL
);

CREATE TABLE samples (
    key               INTEGER PRIMARY KEY,  -- machine << 42 | ts_ms
    ts                REAL NOT NULL,
    schema_version    INTEGER NOT NULL,
    hostname          TEXT,
    interval_secs     REAL,
    cpu               REAL NOT NULL,
    mem               REAL NOT NULL,
    disk_read_total   INTEGER NOT NULL,
    disk_write_total  INTEGER NOT NULL,
    net_sent_total    INTEGER NOT NULL,
    net_recv_total    INTEGER NOT NULL,
    load1             REAL,
    load5             REAL,
    load15            REAL,
    mem_total         INTEGER,
    mem_used          INTEGER,
    mem_available     INTEGER,
    swap_total        INTEGER,
    swap_used         INTEGER,
    disk_read_rate    REAL,
    disk_write_rate   REAL,
    net_sent_rate     REAL,
    net_recv_rate     REAL,
    uptime_secs       INTEGER,
    cpu_per_core      BLOB,
    filesystems       BLOB,
    labels            TEXT,
    collector_errors  TEXT
);

CREATE TABLE processes (
    key  INTEGER PRIMARY KEY,  -- ts_ms << 21 | machine
    top  BLOB NOT NULL
);

-- The packed keys unpacked, for people reading the file with the sqlite3 shell.
CREATE VIEW samples_by_machine AS
    SELECT m.machine_id, s.key & 4398046511103 AS ts_ms, s.*
    FROM samples s JOIN machines m ON m.id = s.key >> 42;
"#;

/// Version 2: per-minute rollups, the minutes to recompute, retention state.
/// Every minute already in `samples` is marked dirty, so the first maintenance
/// after the upgrade rolls up the history a version-1 database holds.
const V2: &str = r#"
CREATE TABLE rollups (
    machine          INTEGER NOT NULL REFERENCES machines(id),
    minute_ms        INTEGER NOT NULL,
    n                INTEGER NOT NULL,
    cpu_avg          REAL NOT NULL,
    cpu_min          REAL NOT NULL,
    cpu_max          REAL NOT NULL,
    mem_avg          REAL NOT NULL,
    mem_min          REAL NOT NULL,
    mem_max          REAL NOT NULL,
    n_disk           INTEGER NOT NULL,
    disk_read_avg    REAL,
    disk_read_min    REAL,
    disk_read_max    REAL,
    disk_write_avg   REAL,
    disk_write_min   REAL,
    disk_write_max   REAL,
    n_net            INTEGER NOT NULL,
    net_sent_avg     REAL,
    net_sent_min     REAL,
    net_sent_max     REAL,
    net_recv_avg     REAL,
    net_recv_min     REAL,
    net_recv_max     REAL,
    n_load           INTEGER NOT NULL,
    load1_avg        REAL,
    load1_min        REAL,
    load1_max        REAL,
    n_swap           INTEGER NOT NULL,
    swap_avg         REAL,
    swap_min         REAL,
    swap_max         REAL,
    PRIMARY KEY (machine, minute_ms)
) WITHOUT ROWID;

CREATE TABLE dirty_minutes (
    machine    INTEGER NOT NULL,
    minute_ms  INTEGER NOT NULL,
    PRIMARY KEY (machine, minute_ms)
) WITHOUT ROWID;

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;

INSERT OR IGNORE INTO dirty_minutes (machine, minute_ms)
    SELECT DISTINCT key >> 42, ((key & 4398046511103) / 60000) * 60000 FROM samples;
"#;

/// Version 3: user-defined metrics (`Snapshot::custom_metrics`), JSON.
const V3: &str = r#"
ALTER TABLE samples ADD COLUMN custom_metrics TEXT;
"#;

/// Version 4: analytics. Every anomaly score (keyed like `samples`, flagged ones
/// indexed by time), the history of alert transitions, and the active alerts.
const V4: &str = r#"
CREATE TABLE anomaly_scores (
    key      INTEGER PRIMARY KEY,  -- machine << 42 | ts_ms, as in samples
    ts       REAL NOT NULL,
    score    REAL NOT NULL,
    anomaly  INTEGER NOT NULL,
    reasons  TEXT                  -- JSON array of strings, NULL when none
);
CREATE INDEX anomaly_scores_flagged ON anomaly_scores (ts) WHERE anomaly = 1;

CREATE TABLE alert_events (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    machine_id  TEXT,              -- NULL for fleet-scoped rules
    subject     TEXT,              -- the mount point of filesystem rules
    state       TEXT NOT NULL,     -- firing | resolved
    value       REAL,
    message     TEXT NOT NULL
);
CREATE INDEX alert_events_at ON alert_events (at);

CREATE TABLE active_alerts (
    rule        TEXT NOT NULL,
    machine_id  TEXT NOT NULL,     -- '' for fleet-scoped rules
    subject     TEXT NOT NULL,     -- '' when none
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,     -- pending | firing
    since       REAL NOT NULL,
    value       REAL,
    message     TEXT NOT NULL,
    PRIMARY KEY (rule, machine_id, subject)
) WITHOUT ROWID;
"#;

/// Version 5: the host details (pressure, disks, TCP, cgroups, temperatures,
/// open files, network errors) in sysmon's binary encoding
/// (`sysmon_core::codec::binary::encode_host_details`); NULL when none.
const V5: &str = r#"
ALTER TABLE samples ADD COLUMN host_details BLOB;
"#;

/// Version 6: anomaly episodes (a flag that persists is one episode with a
/// start, an end and a peak), keyed by machine and start; `open` while it may
/// still grow.
const V6: &str = r#"
CREATE TABLE anomaly_episodes (
    machine_id  TEXT NOT NULL,
    start       REAL NOT NULL,
    end_ts      REAL NOT NULL,
    peak_at     REAL NOT NULL,
    peak_score  REAL NOT NULL,
    samples     INTEGER NOT NULL,
    metrics     TEXT NOT NULL,     -- JSON array of metric names
    reasons     TEXT NOT NULL,     -- JSON array of the peak's reasons
    open        INTEGER NOT NULL,
    PRIMARY KEY (machine_id, start)
) WITHOUT ROWID;
CREATE INDEX anomaly_episodes_end ON anomaly_episodes (end_ts);
"#;

/// The migration steps, oldest first: `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// What an existing file holds, read without changing it.
#[derive(Debug)]
struct Inspection {
    user_version: i64,
    application_id: i64,
    tables: Vec<String>,
}

fn inspect(conn: &Connection) -> Result<Inspection, SinksError> {
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let application_id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Inspection {
        user_version,
        application_id,
        tables,
    })
}

/// Whether the file may be used, and from which version it must be migrated.
/// Returns the current version, or an error that says why the file is refused.
fn check(found: &Inspection, what: &str) -> Result<i64, SinksError> {
    if found.application_id != 0 && found.application_id != i64::from(APPLICATION_ID) {
        return Err(SinksError::Schema(format!(
            "{what} is not a sysmon database (application_id {:#x}); refusing to touch it",
            found.application_id
        )));
    }
    if found.user_version > LATEST_VERSION {
        return Err(SinksError::Schema(format!(
            "{what} was written by a newer sysmon (schema {}, this build knows {LATEST_VERSION}); \
             refusing to touch it",
            found.user_version
        )));
    }
    if found.user_version < 0 {
        return Err(SinksError::Schema(format!(
            "{what} has an impossible schema version {}; refusing to touch it",
            found.user_version
        )));
    }
    if found.user_version == 0 && !found.tables.is_empty() {
        let mut names = found.tables.iter().take(5).cloned().collect::<Vec<_>>();
        if found.tables.len() > 5 {
            names.push("...".into());
        }
        return Err(SinksError::Schema(format!(
            "{what} is not a sysmon database (it holds tables {} and no sysmon schema version); \
             refusing to touch it, use a new file",
            names.join(", ")
        )));
    }
    if found.user_version > 0 && found.application_id == 0 {
        return Err(SinksError::Schema(format!(
            "{what} is not a sysmon database (schema version {} but no sysmon application id); \
             refusing to touch it",
            found.user_version
        )));
    }
    Ok(found.user_version)
}

/// Refuses a file sysmon must not touch, without writing to it. Call before
/// any pragma that changes the file (journal mode, page size).
/// Returns true when the file is new (no schema yet).
pub fn preflight(conn: &Connection, what: &str) -> Result<bool, SinksError> {
    let found = inspect(conn)?;
    Ok(check(&found, what)? == 0)
}

/// Brings the database to [`LATEST_VERSION`], in one immediate transaction
/// (another process opening the same file at the same time waits, then sees
/// the new version and does nothing). Returns the version found before.
pub fn migrate(conn: &mut Connection, what: &str) -> Result<i64, SinksError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = check(&inspect(&tx)?, what)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql).map_err(|e| {
            SinksError::Schema(format!("{what}: migration to schema {} failed: {e}", i + 1))
        })?;
    }
    if from < LATEST_VERSION {
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", LATEST_VERSION)?;
    }
    tx.commit()?;
    if from != LATEST_VERSION {
        tracing::info!(
            db = what,
            from,
            to = LATEST_VERSION,
            "sqlite schema migrated"
        );
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_new_database_is_created_at_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(preflight(&conn, "test").unwrap());
        assert_eq!(migrate(&mut conn, "test").unwrap(), 0);
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST_VERSION);
        assert!(columns(&conn, "samples").contains(&"custom_metrics".to_string()));
        // Migrating again does nothing.
        assert_eq!(migrate(&mut conn, "test").unwrap(), LATEST_VERSION);
    }

    #[test]
    fn every_step_upgrades_the_previous_one() {
        for start in 0..LATEST_VERSION {
            let mut conn = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..start as usize] {
                conn.execute_batch(sql).unwrap();
            }
            if start > 0 {
                conn.pragma_update(None, "application_id", APPLICATION_ID)
                    .unwrap();
                conn.pragma_update(None, "user_version", start).unwrap();
            }
            assert_eq!(migrate(&mut conn, "test").unwrap(), start);
            assert_eq!(columns(&conn, "rollups").len(), 31);
        }
    }

    #[test]
    fn foreign_files_are_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
            .unwrap();
        let err = preflight(&conn, "x.db").unwrap_err().to_string();
        assert!(err.contains("not a sysmon database"), "{err}");
        assert!(err.contains("invoices"), "{err}");

        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        assert!(preflight(&conn, "x.db").is_err());
    }
}
