//! Helpers shared by the process tests: the binaries under test; the
//! process handling itself is `sysmon_testkit::process` (each test file uses a subset).
#![allow(unused_imports, dead_code)]

pub use sysmon_testkit::process::{poll_until, wait_for, wait_until, Proc};

/// The `sysmon` binary under test.
pub const SYSMON: &str = env!("CARGO_BIN_EXE_sysmon");
/// The `sysmon-agent` binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_sysmon-agent");

/// Every snapshot in the SQLite history at `db`, oldest first.
pub fn stored_snapshots(db: &std::path::Path) -> Vec<sysmon_core::Snapshot> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = sysmon_sinks::sqlite::SqliteSink::open(&sysmon_core::config::SqliteConfig {
            path: db.to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        sink.snapshots(None, 0.0, 1e12, usize::MAX).await.unwrap()
    })
}

/// `field=N` from a log line containing `marker`.
pub fn logged_number(log: &str, marker: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in:\n{log}"));
    let start = line
        .find(&format!("{field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        + field.len()
        + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {field} in {line}"))
}
