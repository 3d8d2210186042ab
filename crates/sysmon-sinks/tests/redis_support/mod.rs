//! Helpers shared by the `redis_*` integration tests (not a test crate itself).

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmon_core::config::{RedisConfig, SqliteConfig};
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, Sink, Snapshot};
use sysmon_sinks::redis::{RedisOptions, RedisSink};
use sysmon_sinks::sqlite::SqliteSink;

/// Seconds since the epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A SQLite history in `dir`.
pub fn sqlite(dir: &tempfile::TempDir) -> Arc<SqliteSink> {
    Arc::new(
        SqliteSink::open(&SqliteConfig {
            path: dir.path().join("history.db"),
            ..SqliteConfig::default()
        })
        .unwrap(),
    )
}

/// A Redis config for `url` under `prefix` keeping `window`.
pub fn redis_config(url: &str, prefix: &str, window: Duration) -> RedisConfig {
    RedisConfig {
        url: Some(url.to_string()),
        prefix: prefix.to_string(),
        window,
        ..RedisConfig::default()
    }
}

/// Options with quick reconnection, for tests.
pub fn quick_options() -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(500),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(400),
        ..RedisOptions::default()
    }
}

/// `m` synthetic machines `m00`, `m01`, ...
pub fn fleet(m: usize) -> Vec<SyntheticMachine> {
    (0..m)
        .map(|i| SyntheticMachine::new(format!("m{i:02}"), 1000 + i as u64))
        .collect()
}

/// `steps` samples of every machine, one per `step` seconds from `start`,
/// interleaved in time order and cut into batches of `per_batch`.
pub fn batches(
    fleet: &mut [SyntheticMachine],
    start: f64,
    steps: usize,
    step: f64,
    per_batch: usize,
) -> Vec<Batch> {
    let mut all = Vec::new();
    for k in 0..steps {
        for (i, m) in fleet.iter_mut().enumerate() {
            // Machines report a little apart, at sub-second (exact ms) times.
            let ts = start + k as f64 * step + i as f64 * 0.013;
            all.push(m.next_snapshot((ts * 1000.0).round() / 1000.0, 5));
        }
    }
    all.chunks(per_batch)
        .map(|c| Batch::from(c.to_vec()))
        .collect()
}

/// Writes `batch` to SQLite, then to Redis (the ingester's order).
pub async fn write_both(cold: &SqliteSink, hot: &RedisSink, batch: &Batch) {
    cold.write(batch.clone()).await.unwrap();
    hot.write(batch.clone()).await.unwrap();
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it did
/// and how long it took.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> (bool, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return (true, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (f().await, start.elapsed())
}

/// Waits until the sink finished `n` repairs and runs none.
pub async fn wait_repaired(sink: &RedisSink, n: u64) {
    let (ok, _) = wait_until(Duration::from_secs(20), || async {
        let c = sink.counters();
        c.repairs >= n && !c.repairing
    })
    .await;
    assert!(
        ok,
        "the redis sink did not finish its repair: {:?}",
        sink.counters()
    );
}

/// (machine, ms) of each snapshot, for readable assertion failures.
pub fn keys(v: &[Snapshot]) -> Vec<(String, i64)> {
    v.iter()
        .map(|s| (s.machine_id.clone(), s.timestamp_millis()))
        .collect()
}

/// Asserts two answers are identical, with a readable message first.
pub fn assert_same(what: &str, redis: &[Snapshot], cold: &[Snapshot]) {
    assert_eq!(keys(redis), keys(cold), "{what}: different samples");
    assert!(redis == cold, "{what}: same keys, different content");
}
