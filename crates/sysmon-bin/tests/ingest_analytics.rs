//! The distributed path's analytics, process level: snapshots published to a
//! real tansu broker, `sysmon ingest` with a real redis-server. A machine at
//! 95 % CPU for a minute fires `cpu_high`: the active alert appears in Redis
//! (`sysmon:alerts:<machine>`), the history and a score per sample in SQLite.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{wait_for, wait_until, Proc, SYSMON};
use sysmon_core::config::{KafkaConfig, SqliteConfig};
use sysmon_core::{Snapshot, Transport};
use sysmon_sinks::kafka::KafkaTransport;
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::redis_server::RedisServer;
use sysmon_testkit::tansu::TansuBroker;

fn snap(id: &str, t: f64, cpu: f64) -> Snapshot {
    let mut s = Snapshot::new(id, t);
    s.hostname = Some(format!("{id}.example"));
    s.cpu_usage = cpu;
    s.memory_usage = 35.0;
    s
}

#[test]
fn ingest_alerts_reach_redis_and_sqlite() {
    let broker = TansuBroker::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingest.db");
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "ingest",
            "--brokers",
            &broker.bootstrap(),
            "--partitions",
            "2",
            "--group",
            "analytics-test",
            "--redis",
            &redis.url(),
            "--db",
            db.to_str().unwrap(),
        ],
        dir.path(),
        "ingest",
    );
    wait_for(
        "the ingester to join",
        Duration::from_secs(60),
        || ingest.log(),
        || ingest.log().contains("sysmon ingest running").then_some(()),
    );

    // One minute of two machines, published at once (the topic exists now).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    let batch: Vec<Snapshot> = (0..60)
        .flat_map(|k| {
            let t = now - 60.0 + k as f64;
            [snap("hot-01", t, 95.0), snap("cool-01", t, 12.0)]
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let transport = KafkaTransport::new(&KafkaConfig {
            brokers: broker.bootstrap(),
            ..KafkaConfig::default()
        })
        .unwrap();
        transport.publish(&batch).await.unwrap();
        transport.flush(Duration::from_secs(10)).await.unwrap();
    });

    // Both machines' minute is stored (key = machine id: they sit on different
    // partitions and may arrive in different batches) before anything is judged.
    wait_until(
        "all 120 samples stored",
        Duration::from_secs(60),
        || ingest.log(),
        || {
            rusqlite::Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0)))
                .is_ok_and(|n: i64| n == 120)
        },
    );

    // The active alert in Redis, written by the ingester's analytics.
    let get = |key: &str| -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "--raw", "GET", key])
            .output()
            .expect("redis-cli (Debian's redis-tools) is installed with redis-server");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let alerts: serde_json::Value = wait_for(
        "hot-01's alert in Redis",
        Duration::from_secs(60),
        || ingest.log(),
        || serde_json::from_str(&get("sysmon:alerts:hot-01")?).ok(),
    );
    let first = &alerts[0];
    assert_eq!(first["rule"], "cpu_high", "{alerts}");
    assert_eq!(first["state"], "firing", "{alerts}");
    assert_eq!(first["machine_id"], "hot-01");
    assert_eq!(
        get("sysmon:alerts:cool-01"),
        None,
        "nothing active for the cool machine"
    );

    // Stop; the history and the scores are in SQLite.
    ingest.signal("-TERM");
    ingest.wait(Duration::from_secs(30));
    assert!(
        ingest.log().contains("cpu_high"),
        "the firing is logged:\n{}",
        ingest.log()
    );
    rt.block_on(async {
        let sink = SqliteSink::open(&SqliteConfig {
            path: db.clone(),
            ..SqliteConfig::default()
        })
        .unwrap();
        let history = sink.alert_history(0.0, 100).await.unwrap();
        let hot: Vec<_> = history
            .iter()
            .filter(|e| e.machine_id.as_deref() == Some("hot-01"))
            .map(|e| (e.rule.as_str(), e.state.name()))
            .collect();
        assert_eq!(hot, vec![("cpu_high", "firing")]);
        assert!(history
            .iter()
            .all(|e| e.machine_id.as_deref() != Some("cool-01")));
        for id in ["hot-01", "cool-01"] {
            let scores = sink.anomaly_scores(id, 0.0, 4.0e12).await.unwrap();
            assert_eq!(scores.len(), 60, "{id}: a score per stored sample");
        }
        let active = sink.active_alerts().await.unwrap();
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0].machine_id.as_deref(), Some("hot-01"));
    });
}
