//! QueryLayer: the same answers with and without Redis; ranges that straddle
//! the hot window merge the cold and hot parts correctly.

mod redis_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis_support::*;
use sysmon_core::{Batch, Sink, Snapshot, SnapshotStore};
use sysmon_sinks::query::QueryLayer;
use sysmon_sinks::redis::RedisSink;
use sysmon_testkit::redis_server::RedisServer;

const WINDOW: Duration = Duration::from_secs(600);

fn strictly_ordered(v: &[Snapshot]) -> bool {
    v.windows(2).all(|w| {
        (w[0].timestamp_millis(), &w[0].machine_id) < (w[1].timestamp_millis(), &w[1].machine_id)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_layer_answers_the_same_with_and_without_redis() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cold = sqlite(&dir);
    let sink =
        RedisSink::connect_with(&redis_config(&server.url(), "q1:", WINDOW), quick_options())
            .await
            .unwrap()
            .with_backfill(cold.clone());

    // 4 machines, one sample every 5 s over the last 30 minutes (Redis keeps 10).
    let mut machines = fleet(4);
    let start = now() - 1800.0;
    for b in batches(&mut machines, start, 360, 5.0, 40) {
        write_both(&cold, &sink, &b).await;
    }
    // A machine that went silent 20 minutes ago, known only to SQLite.
    let mut old = vec![sysmon_core::synth::SyntheticMachine::new("old01", 7)];
    for b in batches(&mut old, now() - 1300.0, 5, 5.0, 5) {
        cold.write(b).await.unwrap();
    }
    wait_repaired(&sink, 1).await;

    let with = QueryLayer::with_redis(cold.clone(), sink.store());
    let generic = QueryLayer::new(
        cold.clone(),
        Some(Arc::new(sink.store())),
        QueryLayer::hot_window_for(WINDOW),
    );
    let without = QueryLayer::cold_only(cold.clone());
    assert!(with.has_hot() && !without.has_hot());
    assert_eq!(with.hot_window(), Duration::from_secs(540));

    // machines and latest
    assert_eq!(
        with.machines().await.unwrap(),
        without.machines().await.unwrap()
    );
    let ids: Vec<String> = without
        .machines()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.machine_id)
        .collect();
    assert_eq!(ids.len(), 5);
    for id in &ids {
        let a = with.latest(id).await.unwrap();
        assert_eq!(a, without.latest(id).await.unwrap(), "latest of {id}");
        assert_eq!(a, generic.latest(id).await.unwrap(), "latest of {id}");
        assert!(a.is_some());
    }
    assert_eq!(
        with.latest_many(&ids).await.unwrap(),
        without.latest_many(&ids).await.unwrap()
    );
    assert_eq!(
        generic.latest_many(&ids).await.unwrap(),
        without.latest_many(&ids).await.unwrap()
    );
    assert!(
        with.stats().hot_answers.load(Ordering::Relaxed) > 0,
        "redis served latest"
    );

    // ranges: old, recent, straddling; all machines and one; with limits
    let t = now();
    let cases: Vec<(&str, f64, f64)> = vec![
        ("old only", t - 1800.0, t - 1200.0),
        ("recent only", t - 300.0, t + 5.0),
        ("straddling", t - 900.0, t + 5.0),
        ("straddling, ends in the past", t - 700.0, t - 100.0),
        ("everything", t - 3600.0, t + 5.0),
    ];
    for (name, since, until) in &cases {
        for machine in [None, Some("m02"), Some("old01")] {
            for limit in [1usize, 10, 150, 100_000] {
                let what = format!("{name}, {machine:?}, limit {limit}");
                let a = with.range(machine, *since, *until, limit).await.unwrap();
                let b = without.range(machine, *since, *until, limit).await.unwrap();
                let c = generic.range(machine, *since, *until, limit).await.unwrap();
                assert_same(&what, &a, &b);
                assert_same(&what, &c, &b);
                assert!(
                    strictly_ordered(&a),
                    "{what}: not oldest first without repeats"
                );
                assert!(a.len() <= limit);
            }
        }
    }
    let all = with.range(None, t - 900.0, t + 5.0, 100_000).await.unwrap();
    assert!(
        (4 * 178..=4 * 180).contains(&all.len()),
        "about 15 minutes of 4 machines at 5 s: {}",
        all.len()
    );

    let s = with.stats();
    let (hot, cold_n, fallbacks) = (
        s.hot_answers.load(Ordering::Relaxed),
        s.cold_answers.load(Ordering::Relaxed),
        s.hot_fallbacks.load(Ordering::Relaxed),
    );
    assert!(hot >= 20 && cold_n >= 20, "hot {hot}, cold {cold_n}");
    assert_eq!(fallbacks, 0, "redis held the whole hot window");

    // Redis goes away: the answers stay the same (from SQLite).
    server.stop();
    for (name, since, until) in &cases {
        let a = with.range(None, *since, *until, 100_000).await.unwrap();
        let b = without.range(None, *since, *until, 100_000).await.unwrap();
        assert_same(&format!("{name} with redis down"), &a, &b);
    }
    for id in &ids {
        assert_eq!(
            with.latest(id).await.unwrap(),
            without.latest(id).await.unwrap()
        );
    }
    assert!(with.stats().hot_fallbacks.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straddling_range_takes_the_recent_part_from_redis() {
    // Prove the split by making the two stores differ on purpose: Redis gets a
    // recent sample SQLite does not have. A straddling query returns SQLite's
    // old part and Redis' recent part, merged in order.
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cold = sqlite(&dir);
    let sink =
        RedisSink::connect_with(&redis_config(&server.url(), "q2:", WINDOW), quick_options())
            .await
            .unwrap()
            .with_backfill(cold.clone());
    let mut machines = fleet(2);
    for b in batches(&mut machines, now() - 1200.0, 240, 5.0, 20) {
        write_both(&cold, &sink, &b).await;
    }
    wait_repaired(&sink, 1).await;
    let mut only_hot =
        machines[0].next_snapshot(((now() - 60.0) * 1000.0).round() / 1000.0 + 0.001, 3);
    only_hot.cpu_usage = 1.25;
    sink.write(Batch::from(vec![only_hot.clone()]))
        .await
        .unwrap();
    let mut only_cold =
        machines[1].next_snapshot(((now() - 1100.0) * 1000.0).round() / 1000.0 + 0.002, 3);
    only_cold.cpu_usage = 2.5;
    cold.write(Batch::from(vec![only_cold.clone()]))
        .await
        .unwrap();

    let layer = QueryLayer::with_redis(cold.clone(), sink.store());
    let got = layer
        .range(None, now() - 1150.0, now() + 5.0, 100_000)
        .await
        .unwrap();
    assert!(got.contains(&only_hot), "recent part from redis");
    assert!(got.contains(&only_cold), "old part from sqlite");
    assert!(strictly_ordered(&got));
    let plain = cold
        .range(None, now() - 1150.0, now() + 5.0, 100_000)
        .await
        .unwrap();
    assert_eq!(got.len(), plain.len() + 1);
}
