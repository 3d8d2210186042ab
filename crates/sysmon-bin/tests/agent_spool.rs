//! The agent's on-disk spool, process level: `sysmon-agent --spool-dir` with
//! no broker reachable keeps its samples, writes them to the spool at
//! SIGTERM, and the next start (broker up) delivers them first, so SQLite ends
//! with every sample of both runs, each once.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::{wait_until, Proc, AGENT, SYSMON};
use sysmon_core::config::SqliteConfig;
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::tansu::TansuBroker;

const MACHINE: &str = "spool-test-01";

/// Timestamps (ms) in the spool file.
fn spooled(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let s = sysmon_core::codec::decode(l.as_bytes()).expect("spool lines are snapshots");
            assert_eq!(s.machine_id, MACHINE);
            s.timestamp_millis()
        })
        .collect()
}

fn stored(db: &Path) -> Vec<i64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sink = SqliteSink::open(&SqliteConfig {
            path: db.to_path_buf(),
            ..SqliteConfig::default()
        })
        .unwrap();
        sink.snapshots(Some(MACHINE), 0.0, 4.0e12, 1_000_000)
            .await
            .unwrap()
            .iter()
            .map(|s| s.timestamp_millis())
            .collect()
    })
}

#[test]
fn the_spool_carries_an_outage_backlog_across_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let spool_file = spool_dir.join(format!("{MACHINE}.spool.jsonl"));
    let db = dir.path().join("spool.db");

    // 1. No broker: a port nothing listens on.
    let dead = format!("127.0.0.1:{}", sysmon_testkit::ports::free_port());
    let spool_arg = spool_dir.to_str().unwrap();
    let agent_args = |brokers: &str| -> Vec<String> {
        [
            "--brokers",
            brokers,
            "--machine-id",
            MACHINE,
            "--interval",
            "1s",
            "--spool-dir",
            spool_arg,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args: Vec<String> = agent_args(&dead);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Proc::spawn(AGENT, &args, dir.path(), "agent1");
    std::thread::sleep(Duration::from_secs(5));
    agent.stop(Duration::from_secs(60));
    let backlog = spooled(&spool_file);
    assert!(
        backlog.len() >= 3,
        "the undelivered samples are spooled at exit: {} in {}\n{}",
        backlog.len(),
        spool_file.display(),
        agent.log()
    );
    assert!(backlog.windows(2).all(|w| w[0] < w[1]), "oldest first");

    // 2. The broker and the ingester are up; the agent starts again.
    let broker = TansuBroker::start();
    let bootstrap = broker.bootstrap();
    let db_arg = db.to_str().unwrap();
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            db_arg,
            "--group",
            "spool-test",
        ],
        dir.path(),
        "ingest",
    );
    wait_until(
        "the ingester",
        Duration::from_secs(60),
        || ingest.log(),
        || ingest.log().contains("sysmon ingest running"),
    );
    let args: Vec<String> = agent_args(&bootstrap);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Proc::spawn(AGENT, &args, dir.path(), "agent2");
    let want: BTreeSet<i64> = backlog.iter().copied().collect();
    wait_until(
        "the spooled backlog in SQLite",
        Duration::from_secs(90),
        || agent.log(),
        || {
            let have: BTreeSet<i64> = stored(&db).into_iter().collect();
            want.is_subset(&have) && have.len() > want.len()
        },
    );
    wait_until(
        "the delivered spool to be removed",
        Duration::from_secs(30),
        || agent.log(),
        || !spool_file.exists(),
    );
    agent.stop(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    ingest.stop(Duration::from_secs(60));

    let rows = stored(&db);
    let unique: BTreeSet<i64> = rows.iter().copied().collect();
    assert_eq!(rows.len(), unique.len(), "no sample stored twice");
    assert!(want.is_subset(&unique), "every spooled sample is stored");
    assert!(
        !spool_file.exists() || spooled(&spool_file).is_empty(),
        "a clean run leaves nothing spooled"
    );
}
