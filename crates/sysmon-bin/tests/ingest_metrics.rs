//! `sysmon ingest --listen`: the ingester serves the dashboard and `/metrics`,
//! and `/metrics` reports its consumer lag, measured against a real tansu
//! broker: the whole backlog while nothing can be stored, zero once
//! everything is stored and committed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use std::time::{Duration, Instant};

use support::{Proc, SYSMON};
use sysmon_core::config::SqliteConfig;
use sysmon_sinks::sqlite::SqliteSink;
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
        sink.snapshots(None, 0.0, 1e12, usize::MAX)
            .await
            .unwrap()
            .len()
    })
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
