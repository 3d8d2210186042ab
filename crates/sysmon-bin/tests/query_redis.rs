//! `sysmon query --redis`: the real binary reads the recent window from a real
//! redis-server and older samples from SQLite, and prints exactly what it
//! prints from SQLite alone.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sysmon_core::config::{RedisConfig, SqliteConfig};
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, Sink};
use sysmon_sinks::redis::RedisSink;
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::redis_server::RedisServer;

fn query(db: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sysmon"))
        .args(["query", "--db"])
        .arg(db)
        .args(extra)
        .env_remove("SYSMON_REDIS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_with_redis_prints_what_sqlite_alone_prints() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let sqlite = Arc::new(
        SqliteSink::open(&SqliteConfig {
            path: db.clone(),
            ..SqliteConfig::default()
        })
        .unwrap(),
    );
    // A 10-minute Redis window; 20 minutes of history from 3 machines.
    let config = RedisConfig {
        url: Some(server.url()),
        prefix: "sysmon:".into(),
        window: Duration::from_secs(600),
        ..RedisConfig::default()
    };
    let redis = RedisSink::connect(&config)
        .await
        .unwrap()
        .with_backfill(sqlite.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .round();
    let mut fleet: Vec<SyntheticMachine> = (0..3)
        .map(|i| SyntheticMachine::new(format!("q{i}"), i))
        .collect();
    for k in 0..240 {
        let t = now - 1200.0 + k as f64 * 5.0;
        let batch: Batch = fleet
            .iter_mut()
            .map(|m| m.next_snapshot(t, 3))
            .collect::<Vec<_>>()
            .into();
        sqlite.write(batch.clone()).await.unwrap();
        redis.write(batch).await.unwrap();
    }
    // Wait for the sink's first repair (Redis was empty: it backfills the window).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while redis.counters().repairs == 0 || redis.counters().repairing {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            redis.counters()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let url = server.url();
    for since in ["5m", "15m", "30m"] {
        let cold = query(&db, &["--since", since]);
        let hot = query(&db, &["--since", since, "--redis", &url]);
        assert!(!cold.is_empty());
        assert_eq!(hot, cold, "--since {since}");
    }
    let cold = query(&db, &["--since", "15m", "--machine", "q1", "--limit", "7"]);
    let hot = query(
        &db,
        &[
            "--since",
            "15m",
            "--machine",
            "q1",
            "--limit",
            "7",
            "--redis",
            &url,
        ],
    );
    assert_eq!(hot.lines().count(), 7);
    assert_eq!(hot, cold);
    assert_eq!(
        query(&db, &["--machines", "--redis", &url]),
        query(&db, &["--machines"])
    );

    // A wrong password is a clear error, not a silent fallback.
    let bad = url.replace("redis://", "redis://nobody:wrong@");
    let out = Command::new(env!("CARGO_BIN_EXE_sysmon"))
        .args(["query", "--db"])
        .arg(&db)
        .args(["--redis", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Redis") || err.contains("redis"), "{err}");
}
