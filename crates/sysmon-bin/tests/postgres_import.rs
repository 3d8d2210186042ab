//! `sysmon import` from a SQLite history into a real PostgreSQL database (its
//! own, dropped after), run twice (idempotent, resumable), and `sysmon query`
//! answering the same from both engines.

use std::process::Command;
use std::sync::Arc;

use sysmon_analytics::alerts::{AlertEvent, AlertState, Severity};
use sysmon_analytics::AnalyticsRecord;
use sysmon_core::config::SqliteConfig;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Sink, Snapshot};
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::postgres::TestDatabase;

fn sysmon(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sysmon"))
        .args(args)
        .env_remove("SYSMON_DB")
        .output()
        .expect("run sysmon");
    assert!(
        out.status.success(),
        "sysmon {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_history_is_imported_idempotently_and_queries_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sysmon.db");
    let sqlite = SqliteSink::open(&SqliteConfig {
        path: path.clone(),
        ..SqliteConfig::default()
    })
    .unwrap();
    let now = sysmon_core::agent::now_epoch_secs();
    let t0 = ((now - 900.0) / 60.0).floor() * 60.0;
    let mut rows: Vec<Snapshot> = Vec::new();
    for m in 0..3 {
        let mut synth = SyntheticMachine::new(format!("imp-{m}"), m + 3);
        for i in 0..300 {
            rows.push(synth.next_snapshot(t0 + i as f64 * 2.0, 5));
        }
    }
    sqlite.write(Arc::from(rows)).await.unwrap();
    sqlite.maintain_at(now).await.unwrap();
    sqlite
        .write_analytics(AnalyticsRecord {
            episodes: Vec::new(),
            scores: Vec::new(),
            events: vec![AlertEvent {
                rule: "cpu_high".into(),
                severity: Severity::Critical,
                machine_id: Some("imp-1".into()),
                subject: None,
                state: AlertState::Firing,
                value: 97.0,
                at: t0 + 60.0,
                message: "cpu_usage on imp-1 is 97.0 > 95".into(),
            }],
            active: None,
        })
        .await
        .unwrap();
    let rollups_in_sqlite = 3 * 10;
    drop(sqlite);

    let db = TestDatabase::create();
    let url = db.url();
    let from = path.to_str().unwrap();
    let out = sysmon(&["import", "--from", from, "--db", &url, "--no-progress"]);
    assert!(
        out.contains("imported 3 machine(s), 900 sample(s)"),
        "{out}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM samples"), "900");
    assert_eq!(db.sql("SELECT count(*) FROM processes"), "900");
    assert_eq!(
        db.sql("SELECT count(*) FROM rollups"),
        rollups_in_sqlite.to_string()
    );
    assert_eq!(db.sql("SELECT count(*) FROM alert_events"), "1");

    // Again (an interrupted import resumed): nothing is duplicated.
    db.sql("DELETE FROM samples WHERE ts > (SELECT min(ts) + 300 FROM samples)");
    let out = sysmon(&["import", "--from", from, "--db", &url, "--no-progress"]);
    assert!(out.contains("0 alert event(s) added"), "{out}");
    assert_eq!(db.sql("SELECT count(*) FROM samples"), "900");
    assert_eq!(
        db.sql("SELECT count(*) FROM rollups"),
        rollups_in_sqlite.to_string()
    );
    assert_eq!(db.sql("SELECT count(*) FROM alert_events"), "1");

    // The same `sysmon query` output from both engines.
    for args in [
        vec!["--since", "1h"],
        vec!["--since", "1h", "--machine", "imp-2", "--format", "table"],
        vec!["--machines"],
    ] {
        let mut sqlite_args = vec!["query", "--db", from];
        sqlite_args.extend(&args);
        let mut pg_args = vec!["query", "--db", url.as_str()];
        pg_args.extend(&args);
        let a = sysmon(&sqlite_args);
        assert!(!a.is_empty());
        assert_eq!(a, sysmon(&pg_args), "{args:?}");
    }
}
