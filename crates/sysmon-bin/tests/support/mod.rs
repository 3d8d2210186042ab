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
