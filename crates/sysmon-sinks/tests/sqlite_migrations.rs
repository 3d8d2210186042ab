//! Schema versions: an old database is upgraded in place with its data, a newer
//! or foreign one is refused and left byte-for-byte untouched.

use std::path::Path;

use rusqlite::{params, Connection};
use sysmon_core::config::SqliteConfig;
use sysmon_core::{ProcessInfo, SnapshotStore};
use sysmon_sinks::sqlite::schema::{APPLICATION_ID, LATEST_VERSION};
use sysmon_sinks::sqlite::{codec, Metric, SeriesSource, SqliteSink};
use sysmon_sinks::SinksError;
use tempfile::TempDir;

const T0: f64 = 1_764_086_400.0;

/// The version-1 schema exactly as the first release created it (a frozen
/// copy: if the migration list is ever edited instead of appended to, this
/// database stops upgrading and the test says so).
const V1_SQL: &str = r#"
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
CREATE VIEW samples_by_machine AS
    SELECT m.machine_id, s.key & 4398046511103 AS ts_ms, s.*
    FROM samples s JOIN machines m ON m.id = s.key >> 42;
"#;

fn config(path: &Path) -> SqliteConfig {
    SqliteConfig {
        path: path.to_path_buf(),
        ..SqliteConfig::default()
    }
}

/// A version-1 database holding two samples of `old-01` (cpu 20 and 40).
fn build_v1(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(V1_SQL).unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO machines (id, machine_id, hostname, last_seen) VALUES (1, 'old-01', 'old', ?1)",
        params![T0 + 1.0],
    )
    .unwrap();
    let mut top = Vec::new();
    let p = ProcessInfo {
        pid: 4242,
        name: "postgres".into(),
        cpu_percent: 12.5,
        memory_percent: Some(3.25),
        memory_bytes: Some(1 << 28),
        ..ProcessInfo::default()
    };
    codec::encode_processes(
        std::slice::from_ref(&p),
        std::slice::from_ref(&p),
        &mut Vec::new(),
        &mut top,
    );
    for (k, cpu) in [(0, 20.0), (1, 40.0)] {
        let ts = T0 + k as f64;
        let ts_ms = (ts * 1000.0) as i64;
        conn.execute(
            "INSERT INTO samples (key, ts, schema_version, hostname, cpu, mem, \
             disk_read_total, disk_write_total, net_sent_total, net_recv_total, labels) \
             VALUES ((1 << 42) | ?1, ?2, 1, 'old', ?3, 50.0, 10, 20, 30, 40, '{\"role\":\"db\"}')",
            params![ts_ms, ts, cpu],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO processes (key, top) VALUES ((?1 << 21) | 1, ?2)",
            params![ts_ms, top],
        )
        .unwrap();
    }
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_version_1_database_is_migrated_in_place_with_its_data() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("old.db");
    build_v1(&path);

    let sink = SqliteSink::open(&config(&path)).unwrap();
    assert_eq!(user_version(&path), LATEST_VERSION);

    let machines = sink.machines().await.unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].machine_id, "old-01");
    assert_eq!(machines[0].hostname.as_deref(), Some("old"));

    let got = sink.range(Some("old-01"), T0, T0 + 10.0, 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].cpu_usage, 20.0);
    assert_eq!(got[1].cpu_usage, 40.0);
    assert_eq!(got[0].labels.get("role").map(String::as_str), Some("db"));
    assert_eq!(got[0].top_cpu_processes[0].name, "postgres");
    assert_eq!(got[0].top_mem_processes[0].memory_bytes, Some(1 << 28));
    assert!(
        got[0].custom_metrics.is_empty(),
        "v3 column is NULL for old rows"
    );

    // The old history is rolled up by the first maintenance after the upgrade.
    sink.maintain_at(T0 + 120.0).await.unwrap();
    let s = sink
        .series_from(
            "old-01",
            Metric::Cpu,
            T0 - 60.0,
            T0 + 60.0,
            100,
            SeriesSource::Rollups,
        )
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].count, s[0].avg, s[0].max), (2, 30.0, 40.0));

    // And new data goes in beside it.
    let mut m = sysmon_core::synth::SyntheticMachine::new("new-01", 1);
    let v: sysmon_core::Batch = vec![m.next_snapshot(T0 + 5.0, 3)].into();
    sysmon_core::Sink::write(&sink, v.clone()).await.unwrap();
    assert_eq!(sink.latest("new-01").await.unwrap().as_ref(), v.first());

    // Reopening a current database changes nothing.
    drop(sink);
    let sink = SqliteSink::open(&config(&path)).unwrap();
    assert_eq!(sink.machines().await.unwrap().len(), 2);
    assert_eq!(user_version(&path), LATEST_VERSION);
}

fn assert_refused_untouched(path: &Path, expect: &str) {
    let before = std::fs::read(path).unwrap();
    let err = SqliteSink::open(&config(path)).unwrap_err();
    assert!(matches!(err, SinksError::Schema(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(expect), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was modified"
    );
    assert!(!path.with_extension("db-wal").exists(), "WAL was enabled");
}

#[test]
fn a_database_from_a_newer_sysmon_is_refused_untouched() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE samples_v99 (x)").unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    assert_refused_untouched(
        &path,
        &format!(
            "written by a newer sysmon (schema 99, this build knows {LATEST_VERSION}); \
             refusing to touch it"
        ),
    );
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("shop.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);
             INSERT INTO invoices VALUES (1, 9.5);",
        )
        .unwrap();
    }
    assert_refused_untouched(&path, "not a sysmon database (it holds tables invoices");

    let path = dir.path().join("other-app.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        conn.pragma_update(None, "application_id", 7).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
    }
    assert_refused_untouched(&path, "not a sysmon database (application_id 0x7)");
}

#[test]
fn a_file_that_is_not_sqlite_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database ".repeat(200)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = SqliteSink::open(&config(&path)).unwrap_err().to_string();
    assert!(err.contains("notes.db"), "{err}");
    assert!(err.contains("not a database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn an_empty_path_is_a_configuration_error() {
    let err = SqliteSink::open(&config(Path::new(""))).unwrap_err();
    assert!(matches!(err, SinksError::Config(_)), "{err:?}");
}

#[test]
fn parent_directories_are_created() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b/c/sysmon.db");
    SqliteSink::open(&config(&path)).unwrap();
    assert!(path.exists());
    assert_eq!(user_version(&path), LATEST_VERSION);
}
