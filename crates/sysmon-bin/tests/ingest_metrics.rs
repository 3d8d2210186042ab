//! `sysmon ingest --listen`: the ingester serves the dashboard and `/metrics`,
//! and `/metrics` reports its consumer lag, measured against a real tansu
//! broker: the whole backlog while nothing can be stored, zero once
//! everything is stored and committed; an ingester that owns no partitions
//! while its group has messages waiting says so in its log and at `/metrics`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use std::time::{Duration, Instant};

use support::{poll_until, stored_snapshots, Proc, SYSMON};
use sysmon_testkit::ports::{free_port, wait_for_port};
use sysmon_testkit::tansu::TansuBroker;

const TOKEN: &str = "lag-test-token";

/// `GET path` on 127.0.0.1:port: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {raw}"));
    (status, body.to_string())
}

/// The value of an unlabelled sample `name` in an exposition.
fn sample(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `/metrics` until `cond(lag, stored)` holds; panics with what it saw.
fn metrics_until(
    port: u16,
    what: &str,
    ingest: &Proc,
    mut cond: impl FnMut(Option<i64>, Option<i64>) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get(port, "/metrics", Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        let lag = sample(&body, "sysmon_ingest_consumer_lag");
        let stored = sample(&body, "sysmon_ingest_stored_total");
        if cond(lag, stored) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: lag {lag:?}, stored {stored:?}\n{body}\n{}",
            ingest.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stored_rows(db: &Path) -> usize {
    stored_snapshots(db).len()
}

#[test]
fn ingest_serves_metrics_with_a_consumer_lag_that_drains_to_zero() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sysmon.db");
    let db_arg = db.to_str().unwrap();
    let bootstrap = broker.bootstrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            db_arg,
            "--partitions",
            "2",
            "--listen",
            &listen,
            "--auth-token",
            TOKEN,
            "--batch-size",
            "10",
        ],
        dir.path(),
        "ingest",
    );
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "the ingester does not listen on {listen}:\n{}",
        ingest.log()
    );
    // The token protects /metrics; /healthz stays open.
    assert_eq!(get(port, "/metrics", None).0, 401);
    assert_eq!(get(port, "/healthz", None).0, 200);
    // In the group, empty topic: lag 0.
    metrics_until(port, "lag of the empty topic", &ingest, |lag, _| {
        lag == Some(0)
    });

    // Hold SQLite's write lock: the ingester receives but cannot store, so it
    // commits nothing and the whole backlog is lag.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.busy_timeout(Duration::from_secs(30)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut loadgen = Proc::spawn(
        SYSMON,
        &[
            "loadgen",
            "--brokers",
            &bootstrap,
            "--machines",
            "100",
            "--interval",
            "50ms",
            "--duration",
            "2s",
            "--json",
        ],
        dir.path(),
        "loadgen",
    );
    assert!(
        loadgen.wait(Duration::from_secs(60)).success(),
        "{}",
        loadgen.log()
    );
    let summary: serde_json::Value = serde_json::from_str(loadgen.stdout().trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    let published = summary["published"].as_i64().unwrap();
    assert!(published > 0);

    // Nothing could be stored, so nothing was committed. Release the lock: the
    // ingester drains the backlog 10 messages a batch, one commit each, and
    // the lag (refreshed from librdkafka's statistics once a second while it
    // receives) shows the backlog, then returns to 0.
    let (_, body) = get(port, "/metrics", Some(TOKEN));
    assert_eq!(
        sample(&body, "sysmon_ingest_stored_total"),
        Some(0),
        "{body}"
    );
    assert!(
        body.contains("# TYPE sysmon_ingest_consumer_lag gauge"),
        "{body}"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let mut max_seen = 0;
    metrics_until(port, "lag drained", &ingest, |lag, stored| {
        max_seen = max_seen.max(lag.unwrap_or(0));
        lag == Some(0) && stored == Some(published)
    });
    assert!(
        max_seen > 0 && max_seen <= published,
        "the backlog showed as lag: max {max_seen} of {published}"
    );
    assert_eq!(stored_rows(&db), published as usize);

    // The dashboard's API is served by the ingester too.
    let (status, machines) = get(port, "/api/machines", Some(TOKEN));
    assert_eq!(status, 200, "{machines}");
    let machines: serde_json::Value = serde_json::from_str(&machines).unwrap();
    let n = machines["machines"].as_array().map(Vec::len);
    assert_eq!(n, Some(100), "{machines}");

    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
}

/// `sysmon ingest` of a one-partition topic as static member `name`, with its
/// own database `db`, serving `/metrics` on `port`.
fn spawn_member(
    bootstrap: &str,
    config: &Path,
    db: &Path,
    name: &str,
    port: u16,
    dir: &Path,
) -> Proc {
    Proc::spawn(
        SYSMON,
        &[
            "--config",
            config.to_str().unwrap(),
            "ingest",
            "--brokers",
            bootstrap,
            "--db",
            db.to_str().unwrap(),
            "--partitions",
            "1",
            "--instance-id",
            name,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--auth-token",
            TOKEN,
            "--batch-size",
            "10",
        ],
        dir,
        name,
    )
}

/// Polls `port`'s `/metrics` until `cond` holds on the exposition.
fn exposition_until(port: u16, what: &str, proc: &Proc, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = get(port, "/metrics", Some(TOKEN));
        assert_eq!(status, 200, "{body}");
        if cond(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}:\n{body}\n{}", proc.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two static members of a group reading a one-partition topic: one owns the
/// partition, the other nothing. The owner is killed (SIGKILL, so it never
/// leaves the group) and samples keep coming: the idle member says in its log
/// and at `/metrics` (`sysmon_ingest_idle_group_lag`) that it owns no
/// partitions while the group has messages waiting. The killed member,
/// restarted under its name, takes its partition back at once and stores every
/// sample; the idle member then reports the backlog consumed.
#[test]
fn an_idle_member_beside_a_backlog_says_so_in_its_log_and_at_metrics() {
    let broker = TansuBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    // tansu evicts a dead member only once its session timed out; a long one
    // keeps the killed owner in the group for the whole test.
    let config = dir.path().join("sysmon.toml");
    std::fs::write(
        &config,
        "[kafka.options]\n\"session.timeout.ms\" = \"300000\"\n",
    )
    .unwrap();
    let ports = [free_port(), free_port()];
    let names = ["ingest-a", "ingest-b"];
    let dbs = [dir.path().join("a.db"), dir.path().join("b.db")];
    let mut members: Vec<Proc> = Vec::new();
    for i in 0..2 {
        let mut p = spawn_member(&bootstrap, &config, &dbs[i], names[i], ports[i], dir.path());
        p.wait_for_log("consumer group assignment", Duration::from_secs(90));
        assert!(
            wait_for_port(ports[i], Duration::from_secs(60)),
            "{}",
            p.log()
        );
        members.push(p);
    }
    // Once both are in the group: one owns the partition, the other none.
    let assigned = |i: usize| {
        sample(
            &get(ports[i], "/metrics", Some(TOKEN)).1,
            "sysmon_ingest_assigned_partitions",
        )
    };
    let settled = || {
        let a = (assigned(0), assigned(1));
        matches!(a, (Some(1), Some(0)) | (Some(0), Some(1)))
    };
    assert!(
        poll_until(Duration::from_secs(90), settled),
        "assignments {:?} {:?}\n{}\n{}",
        assigned(0),
        assigned(1),
        members[0].log(),
        members[1].log()
    );
    let owner = if assigned(0) == Some(1) { 0 } else { 1 };
    let idle = 1 - owner;
    // Nothing waits yet, so the idle member has nothing to say.
    assert!(!members[idle].log().contains("owns no partitions"));

    members[owner].signal("-KILL");
    assert!(!members[owner].wait(Duration::from_secs(10)).success());
    let mut loadgen = Proc::spawn(
        SYSMON,
        &[
            "loadgen",
            "--brokers",
            &bootstrap,
            "--machines",
            "20",
            "--interval",
            "100ms",
            "--duration",
            "3s",
            "--json",
        ],
        dir.path(),
        "loadgen",
    );
    assert!(
        loadgen.wait(Duration::from_secs(60)).success(),
        "{}",
        loadgen.log()
    );
    let summary: serde_json::Value = serde_json::from_str(loadgen.stdout().trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    let published = summary["published"].as_i64().unwrap();
    assert!(published > 0);

    // The idle member notices the backlog it cannot read.
    let body = exposition_until(
        ports[idle],
        "the idle member reports the lag",
        &members[idle],
        |b| sample(b, "sysmon_ingest_idle_group_lag").is_some_and(|l| l > 0),
    );
    assert_eq!(sample(&body, "sysmon_ingest_assigned_partitions"), Some(0));
    assert_eq!(
        sample(&body, "sysmon_ingest_stored_total"),
        Some(0),
        "{body}"
    );
    assert!(
        body.contains("# TYPE sysmon_ingest_idle_group_lag gauge"),
        "{body}"
    );
    let log = members[idle].log();
    assert_eq!(
        log.matches("owns no partitions while its group has messages waiting")
            .count(),
        1,
        "said once:\n{log}"
    );

    // The killed member, restarted under its name, resumes its partition.
    members[owner] = spawn_member(
        &bootstrap,
        &config,
        &dbs[owner],
        names[owner],
        ports[owner],
        dir.path(),
    );
    assert!(
        poll_until(Duration::from_secs(90), || stored_rows(&dbs[owner]) as i64
            >= published),
        "the restarted owner stored {} of {published}\n{}",
        stored_rows(&dbs[owner]),
        members[owner].log()
    );
    exposition_until(
        ports[idle],
        "the idle member sees the backlog consumed",
        &members[idle],
        |b| sample(b, "sysmon_ingest_idle_group_lag") == Some(0),
    );
    assert!(
        members[idle]
            .log()
            .contains("the group's backlog is consumed (this ingester still owns no partitions)"),
        "{}",
        members[idle].log()
    );
    for m in &mut members {
        m.signal("-TERM");
        assert!(m.wait(Duration::from_secs(30)).success(), "{}", m.log());
    }
    assert_eq!(
        stored_rows(&dbs[owner]) as i64,
        published,
        "every sample, once"
    );
    assert_eq!(stored_rows(&dbs[idle]), 0);
}
