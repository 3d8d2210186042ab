//! Distributed mode with real processes: `sysmon-agent` and `sysmon loadgen`
//! publishing to a real tansu broker, `sysmon ingest` consuming into SQLite,
//! `sysmon doctor` checking the setup.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{logged_number, stored_snapshots, AGENT, SYSMON};
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;

/// Rows per machine in the SQLite history (each `(machine, timestamp)` is a
/// primary key, so a row is never there twice).
fn rows_per_machine(db: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in stored_snapshots(db) {
        *m.entry(s.machine_id).or_insert(0) += 1;
    }
    m
}

fn total(rows: &HashMap<String, usize>) -> usize {
    rows.values().sum()
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
        let n = stop_agent(a);
        assert!(n >= 10, "{} published only {n}", a.name);
        published.insert(a.name.clone(), n);
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
    // The default static membership (`--instance-id` defaults to
    // `ingest-<machine id>`): the restarted ingester has the killed one's name
    // and takes its partitions back at once, without waiting for the dead
    // member's session (45 s) to time out.
    let ingest_args = [
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

// --- The legacy Python consumer reads what sysmon-agent publishes ---------------

/// The legacy consumer's requirements, as installed into the test's venv.
const LEGACY_REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/legacy/requirements.txt"
);
const LEGACY_CONSUMER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/legacy/legacy_consumer.py"
);
/// docs/migrating.md's import of the legacy history.
const IMPORT_LEGACY_HISTORY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/import_legacy_history.py"
);
const MIGRATING_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/migrating.md");

/// A Python venv with the legacy consumer's requirements (`kafka-python` alone,
/// no codec extras), created once under the target dir and reused while the
/// requirements file is unchanged. Returns its interpreter.
fn legacy_python() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("legacy-venv");
        let python = dir.join("bin").join("python");
        let marker = dir.join("installed-requirements.txt");
        let requirements = std::fs::read_to_string(LEGACY_REQUIREMENTS).unwrap();
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str()) {
            return python;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let run = |cmd: &mut Command, what: &str| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("{what}: {e} (scripts/setup.sh installs python3)"));
            assert!(
                out.status.success(),
                "{what} failed (scripts/setup.sh installs python3-venv; pip needs PyPI):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let host_python = std::env::var("SYSMON_TEST_PYTHON").unwrap_or("python3".into());
        run(
            Command::new(&host_python).args(["-m", "venv"]).arg(&dir),
            "python3 -m venv",
        );
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                LEGACY_REQUIREMENTS,
            ]),
            "pip install -r testdata/legacy/requirements.txt",
        );
        std::fs::write(&marker, requirements).unwrap();
        python
    })
    .clone()
}

/// Creates `topic` with one partition (tansu does not create topics on produce).
fn create_topic(bootstrap: &str, topic: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sysmon_sinks::kafka::ensure_topic(
        bootstrap,
        &Default::default(),
        topic,
        1,
        1,
    ))
    .expect("create the topic");
}

/// Starts the legacy consumer on `topic` and waits until it is positioned.
///
/// It reads from "latest", as the original does: started on an empty topic
/// before any agent publishes, "latest" is offset 0, i.e. it will see every
/// message. (tansu 0.6.0 answers "latest" on a topic holding records with the
/// base offset of the last batch plus one, so a consumer started later could
/// re-read part of that batch; the order here avoids depending on that.)
fn start_legacy_consumer(bootstrap: &str, topic: &str, dir: &Path, name: &str) -> Proc {
    let python = legacy_python();
    let ready = dir.join(format!("{name}.ready"));
    let db = dir.join(format!("{name}.db"));
    let mut consumer = Proc::spawn(
        python.to_str().unwrap(),
        &[
            LEGACY_CONSUMER,
            "--brokers",
            bootstrap,
            "--topic",
            topic,
            "--db",
            db.to_str().unwrap(),
            "--ready-file",
            ready.to_str().unwrap(),
        ],
        dir,
        name,
    );
    consumer.wait_for_log("ready: positions", Duration::from_secs(60));
    let positions = std::fs::read_to_string(&ready).unwrap();
    assert_eq!(positions.trim(), r#"{"0": 0}"#, "{}", consumer.log());
    consumer
}

/// Starts `sysmon-agent --interval 1s` with `extra` flags, publishing to `topic`.
fn run_agent(bootstrap: &str, topic: &str, id: &str, extra: &[&str], dir: &Path) -> Proc {
    let mut args = vec![
        "--brokers",
        bootstrap,
        "--topic",
        topic,
        "--machine-id",
        id,
        "--interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(AGENT, &args, dir, id)
}

/// Stops an agent with SIGTERM; returns how many samples it published (all it collected).
fn stop_agent(agent: &mut Proc) -> usize {
    agent.signal("-TERM");
    let status = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "{} failed:\n{}", agent.name, agent.log());
    let log = agent.log();
    let published = logged_number(&log, "agent exited", "published");
    assert_eq!(published, logged_number(&log, "agent exited", "collected"));
    published as usize
}

/// `raw_metrics` rows of the legacy consumer's database.
#[derive(Debug, Clone, PartialEq)]
struct LegacyRow {
    machine_id: String,
    timestamp: String,
    cpu_usage: f64,
    memory_usage: f64,
    disk_io_read: f64,
    disk_io_write: f64,
    net_io_sent: f64,
    net_io_recv: f64,
}

fn legacy_rows(db: &Path) -> Vec<LegacyRow> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return Vec::new();
    };
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut stmt) = conn.prepare(
        "SELECT machine_id, timestamp, cpu_usage, memory_usage, disk_io_read, disk_io_write, \
         net_io_sent, net_io_recv FROM raw_metrics ORDER BY machine_id, timestamp",
    ) else {
        return Vec::new(); // the consumer has not created its tables yet
    };
    stmt.query_map([], |r| {
        Ok(LegacyRow {
            machine_id: r.get(0)?,
            timestamp: r.get(1)?,
            cpu_usage: r.get(2)?,
            memory_usage: r.get(3)?,
            disk_io_read: r.get(4)?,
            disk_io_write: r.get(5)?,
            net_io_sent: r.get(6)?,
            net_io_recv: r.get(7)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The row the legacy consumer must store for `s` (its clock: `TZ=UTC`).
fn expected_legacy_row(s: &sysmon_core::Snapshot) -> LegacyRow {
    // datetime.fromtimestamp rounds to microseconds, strftime drops them.
    let micros = (s.timestamp * 1e6).round() as i64;
    let when = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    LegacyRow {
        machine_id: s.machine_id.clone(),
        timestamp: when.format("%Y-%m-%d %H:%M:%S").to_string(),
        cpu_usage: s.cpu_usage,
        memory_usage: s.memory_usage,
        disk_io_read: s.disk_io.read as f64,
        disk_io_write: s.disk_io.write as f64,
        net_io_sent: s.network_io.sent as f64,
        net_io_recv: s.network_io.recv as f64,
    }
}

/// The legacy consumer, installed as its requirements install it (no codec
/// libraries), stores every sample that `sysmon-agent` publishes with its
/// default compression (gzip) and with `--compression none`, with the values
/// `sysmon ingest`, reading the same topic beside it, stores.
#[test]
fn legacy_python_consumer_stores_every_sample_of_a_default_agent() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "system_metrics");
    let mut legacy = start_legacy_consumer(&bootstrap, "system_metrics", dir.path(), "legacy");
    let sysmon_db = dir.path().join("sysmon.db");
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            sysmon_db.to_str().unwrap(),
        ],
        dir.path(),
        "ingest",
    );

    let mut agents = [
        run_agent(&bootstrap, "system_metrics", "worker-gzip", &[], dir.path()),
        run_agent(
            &bootstrap,
            "system_metrics",
            "worker-none",
            &["--compression", "none"],
            dir.path(),
        ),
    ];
    agents[0].wait_for_log("gzip compression", Duration::from_secs(10));
    agents[1].wait_for_log("none compression", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    let published: Vec<usize> = agents.iter_mut().map(stop_agent).collect();
    assert!(published.iter().all(|&n| n >= 2), "{published:?}");
    let published: usize = published.iter().sum();

    let legacy_db = dir.path().join("legacy.db");
    let complete = poll_until(Duration::from_secs(60), || {
        legacy_rows(&legacy_db).len() >= published
            && stored_snapshots(&sysmon_db).len() >= published
    });
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    assert!(
        complete,
        "legacy stored {} and sysmon {} of {published}\nlegacy consumer:\n{}\ningest:\n{}",
        legacy_rows(&legacy_db).len(),
        stored_snapshots(&sysmon_db).len(),
        legacy.log(),
        ingest.log()
    );
    assert!(
        legacy.child.try_wait().unwrap().is_none(),
        "the legacy consumer's loop stopped:\n{}",
        legacy.log()
    );
    assert!(!legacy.log().contains("ERROR"), "{}", legacy.log());

    let snapshots = stored_snapshots(&sysmon_db);
    assert_eq!(snapshots.len(), published);
    let mut expected: Vec<LegacyRow> = snapshots.iter().map(expected_legacy_row).collect();
    expected.sort_by(|a, b| (&a.machine_id, &a.timestamp).cmp(&(&b.machine_id, &b.timestamp)));
    assert_eq!(legacy_rows(&legacy_db), expected);
    for id in ["worker-gzip", "worker-none"] {
        assert!(expected.iter().any(|r| r.machine_id == id), "{id}");
    }

    // The migration guide's history import, run on what the legacy consumer
    // stored: the legacy consumer stopped, the script publishes its rows to a
    // topic a fresh ingester reads, and that history holds each row once.
    legacy.signal("-TERM");
    legacy.wait(Duration::from_secs(30));
    import_legacy_history_as_the_guide_says(&bootstrap, &legacy_db, dir.path());
}

/// Runs scripts/import_legacy_history.py (the copy in docs/migrating.md must be
/// the same text) on `legacy_db` into a fresh `sysmon ingest` history, and
/// checks it holds every legacy row, once per machine and second.
fn import_legacy_history_as_the_guide_says(bootstrap: &str, legacy_db: &Path, dir: &Path) {
    let script = std::fs::read_to_string(IMPORT_LEGACY_HISTORY).unwrap();
    let guide = std::fs::read_to_string(MIGRATING_MD).unwrap();
    assert!(
        guide.contains(&format!("```python\n{script}```")),
        "docs/migrating.md's copy of scripts/import_legacy_history.py differs"
    );
    let rows = legacy_rows(legacy_db);
    assert!(!rows.is_empty());
    create_topic(bootstrap, "imported");
    let db = dir.join("imported.db");
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            bootstrap,
            "--topic",
            "imported",
            "--group",
            "import-check",
            "--db",
            db.to_str().unwrap(),
        ],
        dir,
        "ingest-imported",
    );
    let out = Command::new(legacy_python())
        .arg(IMPORT_LEGACY_HISTORY)
        .arg(legacy_db)
        .arg(bootstrap)
        .arg("imported")
        // The legacy consumer's clock (it stored local time).
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("published {} samples", rows.len()));
    // One stored sample per machine and second (two legacy rows in the same
    // second are one (machine, timestamp) key; the later one wins).
    let mut by_key: HashMap<(String, String), LegacyRow> = HashMap::new();
    for r in rows {
        by_key.insert((r.machine_id.clone(), r.timestamp.clone()), r);
    }
    let complete = poll_until(Duration::from_secs(60), || {
        stored_snapshots(&db).len() >= by_key.len()
    });
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    assert!(
        complete,
        "imported {} of {}:\n{}",
        stored_snapshots(&db).len(),
        by_key.len(),
        ingest.log()
    );
    let imported = stored_snapshots(&db);
    assert_eq!(imported.len(), by_key.len());
    for s in &imported {
        let mut back = expected_legacy_row(s);
        let key = (back.machine_id.clone(), back.timestamp.clone());
        let row = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("imported {key:?} is no legacy row"));
        // Whole seconds: the legacy consumer kept no fraction.
        assert_eq!(s.timestamp.fract(), 0.0, "{key:?}");
        back.timestamp = row.timestamp.clone();
        assert_eq!(&back, row);
    }
}

/// The real codec behaviour behind the default: an lz4-compressed batch stops
/// the legacy consumer's loop with kafka-python's `UnsupportedCodecError`, and
/// it stores nothing.
#[test]
fn legacy_python_consumer_cannot_read_lz4_batches() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "system_metrics");
    let python = legacy_python();
    let codecs = Command::new(&python)
        .args([
            "-c",
            "import kafka.codec as c; print(c.has_gzip(), c.has_lz4(), c.has_snappy(), c.has_zstd())",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&codecs.stdout).trim(),
        "True False False False",
        "kafka-python as the legacy requirements install it: gzip only"
    );
    let mut legacy = start_legacy_consumer(&bootstrap, "system_metrics", dir.path(), "legacy");
    let mut agent = run_agent(
        &bootstrap,
        "system_metrics",
        "worker-lz4",
        &["--compression", "lz4"],
        dir.path(),
    );
    // The first batch ends the loop.
    let status = legacy.wait(Duration::from_secs(60));
    let published = stop_agent(&mut agent);
    assert_eq!(status.code(), Some(1), "{}", legacy.log());
    assert!(
        legacy.log().contains("Error in consumer loop"),
        "{}",
        legacy.log()
    );
    assert!(
        legacy
            .log()
            .contains("UnsupportedCodecError: Libraries for lz4 compression codec not found"),
        "{}",
        legacy.log()
    );
    assert!(published >= 1, "{}", agent.log());
    assert_eq!(legacy_rows(&dir.path().join("legacy.db")), Vec::new());
}
