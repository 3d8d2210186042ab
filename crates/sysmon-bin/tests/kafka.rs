//! Distributed mode with real processes: `sysmon-agent` and `sysmon loadgen`
//! publishing to a real tansu broker, `sysmon ingest` consuming into SQLite,
//! `sysmon doctor` checking the setup.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{AGENT, SYSMON};
use sysmon_core::config::SqliteConfig;
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;

/// Rows per machine in the SQLite history (each `(machine, timestamp)` is a
/// primary key, so a row is never there twice).
fn rows_per_machine(db: &Path) -> HashMap<String, usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = SqliteSink::open(&SqliteConfig {
            path: db.to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        let mut m = HashMap::new();
        for s in sink.snapshots(None, 0.0, 1e12, usize::MAX).await.unwrap() {
            *m.entry(s.machine_id).or_insert(0) += 1;
        }
        m
    })
}

fn total(rows: &HashMap<String, usize>) -> usize {
    rows.values().sum()
}

/// `field=N` from a log line containing `marker`.
fn logged_number(log: &str, marker: &str, field: &str) -> u64 {
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

#[test]
fn three_agent_processes_and_one_ingester_store_every_sample_once() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sysmon.db");
    let db_arg = db.to_str().unwrap();
    let bootstrap = broker.bootstrap();
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            db_arg,
            "--partitions",
            "3",
        ],
        dir.path(),
        "ingest",
    );
    ingest.wait_for_log("consumer group assignment", Duration::from_secs(60));

    let mut agents: Vec<Proc> = (0..3)
        .map(|i| {
            let id = format!("worker-{i}");
            let format = if i == 1 { "binary" } else { "json" };
            Proc::spawn(
                AGENT,
                &[
                    "--brokers",
                    &bootstrap,
                    "--machine-id",
                    &id,
                    "--interval",
                    "200ms",
                    "--format",
                    format,
                ],
                dir.path(),
                &id,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let mut published = HashMap::new();
    for a in &mut agents {
        a.signal("-TERM");
        let status = a.wait(Duration::from_secs(30));
        assert!(status.success(), "{} failed:\n{}", a.name, a.log());
        let log = a.log();
        let collected = logged_number(&log, "agent exited", "collected");
        let n = logged_number(&log, "agent exited", "published");
        assert_eq!(n, collected, "{}", a.name);
        assert!(n >= 10, "{} published only {n}", a.name);
        published.insert(a.name.clone(), n as usize);
    }
    let expected: usize = published.values().sum();
    let complete = poll_until(Duration::from_secs(60), || {
        total(&rows_per_machine(&db)) >= expected
    });
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    assert!(complete, "ingest log:\n{}", ingest.log());
    let rows = rows_per_machine(&db);
    for (machine, n) in &published {
        assert_eq!(rows.get(machine), Some(n), "{machine}: rows {rows:?}");
    }
    assert_eq!(total(&rows), expected);
    assert_eq!(logged_number(&ingest.log(), "ingest exited", "rejected"), 0);
}

#[test]
fn ingester_killed_with_sigkill_mid_stream_loses_nothing_and_doubles_nothing() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sysmon.db");
    let db_arg = db.to_str().unwrap().to_string();
    let bootstrap = broker.bootstrap();
    // A dead member holds its partitions until its session times out.
    let config = dir.path().join("sysmon.toml");
    std::fs::write(
        &config,
        "[kafka.options]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let ingest_args = [
        "--config",
        &config_arg,
        "ingest",
        "--brokers",
        &bootstrap,
        "--db",
        &db_arg,
        "--partitions",
        "4",
        "--batch-size",
        "100",
    ];
    let mut first = Proc::spawn(SYSMON, &ingest_args, dir.path(), "ingest-1");
    first.wait_for_log("consumer group assignment", Duration::from_secs(60));

    let machines = 40;
    let mut loadgen = Proc::spawn(
        SYSMON,
        &[
            "loadgen",
            "--brokers",
            &bootstrap,
            "--machines",
            "40",
            "--interval",
            "100ms",
            "--duration",
            "10s",
            "--json",
        ],
        dir.path(),
        "loadgen",
    );
    // Mid-stream: the ingester has stored some and more keeps coming.
    assert!(
        poll_until(Duration::from_secs(60), || total(&rows_per_machine(&db))
            >= 400),
        "{}",
        first.log()
    );
    assert!(
        loadgen.child.try_wait().unwrap().is_none(),
        "loadgen still running"
    );
    first.signal("-KILL");
    let status = first.wait(Duration::from_secs(10));
    assert!(!status.success());
    let at_kill = total(&rows_per_machine(&db));

    let mut second = Proc::spawn(SYSMON, &ingest_args, dir.path(), "ingest-2");
    let status = loadgen.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", loadgen.log());
    let summary: serde_json::Value = serde_json::from_str(loadgen.stdout().trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    let published = summary["published"].as_u64().unwrap() as usize;
    assert!(published > at_kill, "the kill was mid-stream");

    let complete = poll_until(Duration::from_secs(90), || {
        total(&rows_per_machine(&db)) >= published
    });
    second.signal("-TERM");
    assert!(
        second.wait(Duration::from_secs(30)).success(),
        "{}",
        second.log()
    );
    assert!(
        complete,
        "stored {} of {published}\n{}",
        total(&rows_per_machine(&db)),
        second.log()
    );
    let rows = rows_per_machine(&db);
    assert_eq!(total(&rows), published, "every published sample, once");
    assert_eq!(rows.len(), machines);
    let per_machine = published / machines;
    assert!(
        rows.values().all(|&n| n == per_machine),
        "each machine published {per_machine}: {rows:?}"
    );
    eprintln!(
        "killed at {at_kill} rows; the second ingester stored {} (replays included) for {published} published",
        logged_number(&second.log(), "ingest exited", "stored")
    );
}

#[test]
fn doctor_reports_a_healthy_broker_and_a_closed_port_with_fixes() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new(SYSMON)
        .args(["doctor", "--brokers", &broker.bootstrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("round trip"), "{text}");
    assert!(text.contains("all checks passed"), "{text}");

    let closed = sysmon_testkit::ports::free_port();
    let bad = Command::new(SYSMON)
        .args([
            "doctor",
            "--brokers",
            &format!("127.0.0.1:{closed}"),
            "--db",
            dir.path().join("x.db").to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let report: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let tcp = checks
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("tcp"))
        .unwrap();
    assert_eq!(tcp["status"], "fail");
    assert!(tcp["fix"].as_str().unwrap().contains("start the broker"));
    assert!(checks.iter().any(|c| c["name"] == "sqlite"));
}
