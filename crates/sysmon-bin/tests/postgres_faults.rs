//! Faults of the PostgreSQL fleet store with real processes: `sysmon loadgen`
//! publishing to a real tansu broker, `sysmon ingest --db postgresql://…`
//! consuming into a database of this test on the machine's PostgreSQL.
//!
//! - The database unreachable for 60 s during ingest: the outage is logged once
//!   at its start and once at its end, and every published sample is stored
//!   exactly once after it returns.
//! - An ingester SIGKILLed while the database is unreachable and restarted after
//!   it returns: nothing it had not stored was committed to Kafka, so every
//!   published sample is stored exactly once.
//! - Two ingesters of one group on one database, one SIGKILLed mid-stream and
//!   restarted: every published sample stored exactly once, and the restarted
//!   one warms its detector from the machines' stored history.
//! - A full database (its tablespace on a small tmpfs filled to ENOSPC): a clear
//!   "disk is full" error, nothing stored while full, ingestion resumes by
//!   itself once space is freed; full again and the ingester SIGKILLed while
//!   paused: it had committed nothing it had not stored, so its successor
//!   stores every published sample exactly once. Skipped, with the reason
//!   printed, where a tmpfs cannot be mounted (not root).
//!
//! The database is "stopped" as its clients see a stop (every connection closed,
//! new ones refused: `ALTER DATABASE … ALLOW_CONNECTIONS false` and
//! `pg_terminate_backend`), because the server itself is shared with other tests.

mod support;

use std::time::{Duration, Instant};

use support::SYSMON;
use sysmon_testkit::postgres::TestDatabase;
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;

/// Stored samples: `(rows, distinct (machine, time) pairs, machines)`.
fn stored(db: &TestDatabase) -> (usize, usize, usize) {
    let out = db.sql(
        "SELECT count(*), count(DISTINCT (machine, time)), count(DISTINCT machine) FROM samples",
    );
    let n: Vec<usize> = out
        .split('|')
        .map(|v| v.trim().parse().unwrap_or(0))
        .collect();
    (n[0], n[1], n[2])
}

/// Stored sample rows, 0 while the schema does not exist yet.
fn rows(db: &TestDatabase) -> usize {
    let exists = db.sql("SELECT to_regclass('samples') IS NOT NULL");
    if exists != "t" {
        return 0;
    }
    stored(db).0
}

fn ingest(bootstrap: &str, url: &str, instance: &str, dir: &std::path::Path) -> Proc {
    Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            bootstrap,
            "--db",
            url,
            "--partitions",
            "4",
            "--batch-size",
            "100",
            "--instance-id",
            instance,
        ],
        dir,
        instance,
    )
}

fn loadgen(
    bootstrap: &str,
    machines: usize,
    interval: &str,
    duration: &str,
    dir: &std::path::Path,
) -> Proc {
    let machines = machines.to_string();
    Proc::spawn(
        SYSMON,
        &[
            "loadgen",
            "--brokers",
            bootstrap,
            "--machines",
            &machines,
            "--interval",
            interval,
            "--duration",
            duration,
            "--json",
        ],
        dir,
        "loadgen",
    )
}

/// Waits for loadgen to finish and returns how many samples it published.
fn published(loadgen: &mut Proc) -> usize {
    let status = loadgen.wait(Duration::from_secs(180));
    assert!(status.success(), "{}", loadgen.log());
    let summary: serde_json::Value = serde_json::from_str(loadgen.stdout().trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    summary["published"].as_u64().unwrap() as usize
}

fn lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Asserts every published sample is stored once, waiting up to 120 s.
fn assert_all_stored_once(db: &TestDatabase, published: usize, machines: usize, procs: &[&Proc]) {
    let complete = poll_until(Duration::from_secs(120), || rows(db) >= published);
    let logs: String = procs
        .iter()
        .map(|p| p.log())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert!(complete, "stored {} of {published}\n{logs}", rows(db));
    let (n, distinct, stored_machines) = stored(db);
    assert_eq!(n, published, "every published sample, once\n{logs}");
    assert_eq!(distinct, published);
    assert_eq!(stored_machines, machines);
}

const FAILED: &str = "sink write failed; retrying";
const RECOVERED: &str = "sink recovered";

#[test]
fn postgres_unreachable_for_60s_is_logged_once_each_way_and_nothing_is_lost_or_doubled() {
    let broker = TansuBroker::start();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let url = db.url();

    let mut first = ingest(&bootstrap, &url, "ingest-a", dir.path());
    first.wait_for_log("consumer group assignment", Duration::from_secs(60));
    // 20 machines every 500 ms for 100 s: the outage starts ~10 s in and
    // lasts 60 s, so samples keep coming before, during and after it.
    let machines = 20;
    let mut gen = loadgen(&bootstrap, machines, "500ms", "100s", dir.path());
    assert!(
        poll_until(Duration::from_secs(60), || rows(&db) >= 200),
        "{}",
        first.log()
    );

    let at_cut = rows(&db);
    db.cut_off();
    let cut = Instant::now();
    first.wait_for_log(FAILED, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(60).saturating_sub(cut.elapsed()));
    let during = first.log();
    assert_eq!(lines(&during, FAILED), 1, "the start, once:\n{during}");
    assert_eq!(lines(&during, RECOVERED), 0, "{during}");
    db.reopen();

    first.wait_for_log(RECOVERED, Duration::from_secs(30));
    let total = published(&mut gen);
    assert!(total > at_cut + 1000, "samples came during the outage");
    assert_all_stored_once(&db, total, machines, &[&first]);
    first.signal("-TERM");
    assert!(
        first.wait(Duration::from_secs(30)).success(),
        "{}",
        first.log()
    );
    let log = first.log();
    assert_eq!(lines(&log, FAILED), 1, "one line at the start:\n{log}");
    assert_eq!(lines(&log, RECOVERED), 1, "one line at the end:\n{log}");
}

#[test]
fn an_ingester_killed_while_postgres_is_unreachable_committed_nothing_it_had_not_stored() {
    let broker = TansuBroker::start();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let url = db.url();

    let mut first = ingest(&bootstrap, &url, "ingest-k", dir.path());
    first.wait_for_log("consumer group assignment", Duration::from_secs(60));
    let machines = 20;
    let mut gen = loadgen(&bootstrap, machines, "200ms", "30s", dir.path());
    assert!(
        poll_until(Duration::from_secs(60), || rows(&db) >= 200),
        "{}",
        first.log()
    );
    db.cut_off();
    first.wait_for_log(FAILED, Duration::from_secs(30));
    // It keeps receiving while it cannot store; whatever it would commit now
    // would be lost when it dies.
    std::thread::sleep(Duration::from_secs(5));
    first.signal("-KILL");
    assert!(!first.wait(Duration::from_secs(10)).success());
    db.reopen();
    let at_kill = rows(&db);

    // The same static member name takes the partitions back at once.
    let mut second = ingest(&bootstrap, &url, "ingest-k", dir.path());
    let total = published(&mut gen);
    assert!(total > at_kill, "the kill was mid-stream");
    assert_all_stored_once(&db, total, machines, &[&first, &second]);
    second.signal("-TERM");
    assert!(
        second.wait(Duration::from_secs(30)).success(),
        "{}",
        second.log()
    );
}

#[test]
fn two_ingesters_on_one_postgres_one_sigkilled_and_restarted_store_every_sample_once() {
    let broker = TansuBroker::start();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let url = db.url();

    let mut a = ingest(&bootstrap, &url, "ingest-1", dir.path());
    let mut b = ingest(&bootstrap, &url, "ingest-2", dir.path());
    a.wait_for_log("consumer group assignment", Duration::from_secs(60));
    b.wait_for_log("consumer group assignment", Duration::from_secs(60));

    let machines = 40;
    let mut gen = loadgen(&bootstrap, machines, "100ms", "15s", dir.path());
    assert!(
        poll_until(Duration::from_secs(60), || rows(&db) >= 600),
        "{}\n---\n{}",
        a.log(),
        b.log()
    );
    assert!(
        gen.child.try_wait().unwrap().is_none(),
        "loadgen still running"
    );
    b.signal("-KILL");
    assert!(!b.wait(Duration::from_secs(10)).success());
    let at_kill = rows(&db);
    let mut b2 = ingest(&bootstrap, &url, "ingest-2", dir.path());

    let total = published(&mut gen);
    assert!(total > at_kill, "the kill was mid-stream");
    assert_all_stored_once(&db, total, machines, &[&a, &b, &b2]);
    for p in [&mut a, &mut b2] {
        p.signal("-TERM");
        assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.log());
    }
    // The restarted ingester's detector had no state for the machines of its
    // partitions: it learned their history from the shared store first.
    assert!(
        b2.log().contains("warmed the detector from stored history"),
        "{}",
        b2.log()
    );
}

/// A small tmpfs mounted on a temporary directory, used as the tablespace of
/// one test's database, so that the database can be filled to ENOSPC without
/// touching the server's own disk. Unmounted and dropped on drop (after the
/// database, which must be dropped first: declare this guard before it).
struct FullableTablespace {
    dir: tempfile::TempDir,
    name: String,
}

impl FullableTablespace {
    /// Mounts `size_mb` of tmpfs and creates the tablespace on it; the reason
    /// when this machine cannot (not root, no mount permission).
    fn create(size_mb: u32) -> Result<FullableTablespace, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mb}m,mode=0755"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let ts = FullableTablespace {
            name: format!("sysmon_test_full_{}_{nanos}", std::process::id()),
            dir,
        };
        // PostgreSQL wants an empty directory it owns.
        let location = ts.dir.path().join("pg");
        std::fs::create_dir(&location).map_err(|e| e.to_string())?;
        let chown = std::process::Command::new("chown")
            .arg("postgres:postgres")
            .arg(&location)
            .status()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !chown.success() {
            return Err("cannot give the tablespace directory to postgres".into());
        }
        sysmon_testkit::postgres::psql(
            "postgres",
            &format!(
                "CREATE TABLESPACE {} LOCATION '{}'",
                ts.name,
                location.display()
            ),
        );
        Ok(ts)
    }

    fn filler(&self) -> std::path::PathBuf {
        self.dir.path().join("filler")
    }

    /// Fills the file system to ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
    }

    /// Frees what [`fill`](Self::fill) took.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for FullableTablespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(format!(
                "{}/postgres",
                sysmon_testkit::postgres::server_url()
            ))
            .args([
                "-XqtA",
                "-c",
                &format!("DROP TABLESPACE IF EXISTS {}", self.name),
            ])
            .output();
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

const DISK_FULL: &str = "disk is full";

#[test]
fn a_full_database_pauses_ingestion_with_a_clear_error_commits_nothing_and_resumes() {
    let tablespace = match FullableTablespace::create(48) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: a full database needs a tmpfs tablespace here ({why})");
            return;
        }
    };
    let broker = TansuBroker::start();
    // Dropped before the tablespace (reverse order of declaration).
    let db = TestDatabase::create();
    db.admin(&format!(
        "ALTER DATABASE {} SET TABLESPACE {}",
        db.name(),
        tablespace.name
    ));
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let url = db.url();

    let mut first = ingest(&bootstrap, &url, "ingest-f", dir.path());
    first.wait_for_log("consumer group assignment", Duration::from_secs(60));
    let machines = 20;
    let mut gen = loadgen(&bootstrap, machines, "200ms", "90s", dir.path());
    assert!(
        poll_until(Duration::from_secs(60), || rows(&db) >= 300),
        "{}",
        first.log()
    );

    // Full: a clear error, nothing stored meanwhile, then it resumes by itself.
    tablespace.fill();
    first.wait_for_log(FAILED, Duration::from_secs(60));
    let log = first.log();
    assert!(log.contains(DISK_FULL), "a clear message:\n{log}");
    let paused = rows(&db);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(rows(&db), paused, "nothing stored while full");
    tablespace.free();
    first.wait_for_log(RECOVERED, Duration::from_secs(60));
    assert!(
        poll_until(Duration::from_secs(60), || rows(&db) > paused),
        "{}",
        first.log()
    );

    // Full again, and the ingester dies while paused: whatever it had
    // received but not stored was not committed, so its successor stores it.
    let before = rows(&db);
    tablespace.fill();
    assert!(
        poll_until(Duration::from_secs(60), || lines(&first.log(), FAILED) >= 2),
        "{}",
        first.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    first.signal("-KILL");
    assert!(!first.wait(Duration::from_secs(10)).success());
    tablespace.free();
    let mut second = ingest(&bootstrap, &url, "ingest-f", dir.path());
    let total = published(&mut gen);
    assert!(total > before, "the second fill was mid-stream");
    assert_all_stored_once(&db, total, machines, &[&first, &second]);
    second.signal("-TERM");
    assert!(
        second.wait(Duration::from_secs(30)).success(),
        "{}",
        second.log()
    );
    drop(db);
}
