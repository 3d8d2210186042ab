//! RedisSink and RedisStore against a real redis-server (started per test on a
//! free port), compared with the SQLite history.

mod redis_support;

use std::time::Duration;

use futures::StreamExt;
use redis_support::*;
use sysmon_core::{Batch, Sink, Snapshot, SnapshotStore};
use sysmon_sinks::redis::{BatchEvent, RedisSink, RedisStore};
use sysmon_testkit::redis_server::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_exactly_what_sqlite_holds_for_the_window() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cold = sqlite(&dir);

    // K = 240 samples from each of M = 7 machines over the last 4 minutes. The
    // first half reached only SQLite (say the ingester ran without Redis); then
    // the sink starts against an empty Redis and backfills the window.
    let (m, k) = (7, 240);
    let start = now() - k as f64;
    let mut machines = fleet(m);
    let all = batches(&mut machines, start, k, 1.0, 50);
    let (before, after) = all.split_at(all.len() / 2);
    for b in before {
        cold.write(b.clone()).await.unwrap();
    }
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t1:", HOUR), quick_options())
        .await
        .unwrap()
        .with_backfill(cold.clone());
    let store = sink.store();
    for b in after {
        write_both(&cold, &sink, b).await;
    }
    // Replays (at-least-once delivery) and an old batch arriving late change nothing.
    write_both(&cold, &sink, &all[3]).await;
    write_both(&cold, &sink, &all[0]).await;
    // A re-sent sample with the same millisecond but new content replaces the old one.
    let last = &all[all.len() - 1];
    let mut changed = last[last.len() - 1].clone();
    changed.cpu_usage = 99.5;
    write_both(&cold, &sink, &Batch::from(vec![changed.clone()])).await;
    wait_repaired(&sink, 1).await;

    let total: usize = m * k;
    let ids: Vec<String> = (0..m).map(|i| format!("m{i:02}")).collect();

    // machines
    let (rm, cm) = (
        store.machines().await.unwrap(),
        cold.machines().await.unwrap(),
    );
    assert_eq!(rm.len(), m);
    assert_eq!(rm, cm);

    // latest, one by one and in one MGET
    let many = store.latest_many(&ids).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let r = store.latest(id).await.unwrap().expect("latest in redis");
        let c = cold.latest(id).await.unwrap().expect("latest in sqlite");
        assert_eq!(r, c, "latest of {id}");
        assert_eq!(many[i].as_ref(), Some(&c));
    }
    let newest = store.latest(&changed.machine_id).await.unwrap().unwrap();
    assert_eq!(newest, changed, "the last write of a millisecond wins");
    let top = store
        .top_processes(&changed.machine_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(top.top_cpu_processes, newest.top_cpu_processes);
    assert_eq!(top.top_mem_processes, newest.top_mem_processes);
    assert_eq!(top.timestamp, newest.timestamp);
    assert_eq!(store.latest("nope").await.unwrap(), None);

    // the window: all machines, each machine, limits and exact edges
    let (since, until) = (start - 10.0, now() + 10.0);
    let r = store.range(None, since, until, 1_000_000).await.unwrap();
    let c = cold.range(None, since, until, 1_000_000).await.unwrap();
    assert_eq!(r.len(), total);
    assert_same("all machines", &r, &c);
    for id in &ids {
        let r = store
            .range(Some(id), since, until, 1_000_000)
            .await
            .unwrap();
        let c = cold.range(Some(id), since, until, 1_000_000).await.unwrap();
        assert_eq!(r.len(), k);
        assert_same(id, &r, &c);
    }
    for limit in [1, 7, 77, 500] {
        let r = store.range(None, since, until, limit).await.unwrap();
        let c = cold.range(None, since, until, limit).await.unwrap();
        assert_same(&format!("limit {limit}"), &r, &c);
    }
    // [since, until) with both edges on sample timestamps: since included, until excluded.
    let edge_since = all[10][3].timestamp;
    let edge_until = all[20][5].timestamp;
    let r = store
        .range(None, edge_since, edge_until, 100_000)
        .await
        .unwrap();
    let c = cold
        .range(None, edge_since, edge_until, 100_000)
        .await
        .unwrap();
    assert_same("exact edges", &r, &c);
    assert_eq!(r.first().map(|s| s.timestamp), Some(edge_since));
    assert!(r.iter().all(|s| s.timestamp < edge_until));

    // Older than the window: Redis refuses rather than answering partially.
    let e = store
        .range(None, now() - 2.0 * 3600.0, now(), 10)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("window"), "{e}");

    // Staged values were moved into place or dropped: none linger.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let staged: Vec<String> = redis::cmd("KEYS")
        .arg("t1:staged:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(staged.is_empty(), "{staged:?}");
    let no_ttl: Vec<String> = {
        let all: Vec<String> = redis::cmd("KEYS")
            .arg("t1:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut v = Vec::new();
        for k in all {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            if ttl < 0 {
                v.push(k);
            }
        }
        v
    };
    assert!(no_ttl.is_empty(), "every key expires by itself: {no_ttl:?}");

    let c = sink.counters();
    assert!(c.connected);
    assert_eq!(c.write_failures, 0);
    let first_half: usize = before.iter().map(|b| b.len()).sum();
    assert!(c.backfilled_snapshots >= first_half as u64, "{c:?}");
    assert_eq!(c.repairs, 1, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cold_store_redis_refuses_ranges_it_may_not_hold_completely() {
    let server = RedisServer::start();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t2:", HOUR), quick_options())
        .await
        .unwrap();
    let store = sink.store();
    let mut machines = fleet(3);
    // Samples from before this writer started: Redis cannot vouch for that time.
    let old = batches(&mut machines, now() - 60.0, 30, 1.0, 30);
    for b in &old {
        sink.write(b.clone()).await.unwrap();
    }
    let complete_since = store.complete_since().await.unwrap().unwrap();
    assert!(complete_since > old[0][0].timestamp);
    let e = store
        .range(None, now() - 60.0, now(), 100)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("only from"), "{e}");
    // Latest needs no history: it is right at once.
    assert_eq!(
        store.latest("m01").await.unwrap().unwrap().timestamp,
        old.last()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.machine_id == "m01")
            .unwrap()
            .timestamp
    );
    // From complete_since on, ranges are answered.
    let fresh = batches(&mut machines, complete_since + 0.5, 3, 0.2, 9);
    for b in &fresh {
        sink.write(b.clone()).await.unwrap();
    }
    let r = store
        .range(None, complete_since, now() + 5.0, 100)
        .await
        .unwrap();
    let want: Vec<Snapshot> = {
        let mut v: Vec<Snapshot> = fresh.iter().flat_map(|b| b.iter().cloned()).collect();
        v.sort_by_key(|s| (s.timestamp_millis(), s.machine_id.clone()));
        v
    };
    assert_same("after complete_since", &r, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_every_batch_published_while_connected() {
    let server = RedisServer::start();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t3:", HOUR), quick_options())
        .await
        .unwrap();
    // Before anyone listens: published to nobody (pub/sub keeps no history).
    let mut machines = fleet(4);
    let early = batches(&mut machines, now() - 30.0, 2, 1.0, 4);
    for b in &early {
        sink.write(b.clone()).await.unwrap();
    }

    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(sink.keys().events()).await.unwrap();
    let written = batches(&mut machines, now() - 20.0, 25, 0.5, 7);
    let n = written.len();
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut stream = pubsub.on_message();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(msg)) => got.push((
                    msg.get_channel_name().to_string(),
                    msg.get_payload_bytes().to_vec(),
                )),
                _ => break,
            }
        }
        got
    });
    for b in &written {
        sink.write(b.clone()).await.unwrap();
    }
    let got = collector.await.unwrap();
    assert_eq!(got.len(), written.len(), "one message per batch");
    for ((channel, payload), batch) in got.iter().zip(&written) {
        assert_eq!(channel, "t3:events");
        let event = BatchEvent::parse(payload).unwrap();
        assert_eq!(event.v, 1);
        let pairs: Vec<(String, f64)> = event
            .snapshots
            .iter()
            .map(|e| (e.machine_id.clone(), e.timestamp))
            .collect();
        let want: Vec<(String, f64)> = batch
            .iter()
            .map(|s| (s.machine_id.clone(), s.timestamp))
            .collect();
        assert_eq!(pairs, want);
        assert_eq!(event.snapshots[0].cpu_usage, batch[0].cpu_usage);
        assert_eq!(event.snapshots[0].hostname, batch[0].hostname);
    }
    assert_eq!(
        sink.counters().events_published,
        (early.len() + written.len()) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_machine_that_stopped_reporting_expire() {
    let server = RedisServer::start();
    // A 2 s window: keys expire 4 s after their last write.
    let sink = RedisSink::connect_with(
        &redis_config(&server.url(), "t4:", Duration::from_secs(2)),
        quick_options(),
    )
    .await
    .unwrap();
    let k = sink.keys().clone();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut machines = fleet(2);
    let (retired, alive) = ("m00", "m01");
    let first = batches(&mut machines, now(), 1, 1.0, 2);
    sink.write(first[0].clone()).await.unwrap();
    sink.put_active_alerts(retired, &serde_json::json!([{"rule": "cpu_high"}]))
        .await
        .unwrap();
    let probe = conn.clone();
    let exists = |key: String| {
        let mut c = probe.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut c)
                .await
                .unwrap()
                == 1
        }
    };
    for key in [k.latest(retired), k.series(retired), k.alerts(retired)] {
        assert!(exists(key.clone()).await, "{key} written");
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(k.latest(retired))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 4000, "ttl {ttl} ms");

    // Only `alive` keeps reporting, for 5 s.
    let mut only_alive = vec![machines.remove(1)];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let b = batches(&mut only_alive, now(), 1, 1.0, 1);
        sink.write(b[0].clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for key in [k.latest(retired), k.series(retired), k.alerts(retired)] {
        assert!(!exists(key.clone()).await, "{key} should have expired");
    }
    for key in [k.latest(alive), k.series(alive)] {
        assert!(exists(key.clone()).await, "{key} should live on");
    }
    let store = sink.store();
    let ids: Vec<String> = store
        .machines()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.machine_id)
        .collect();
    assert_eq!(ids, vec![alive.to_string()], "last_seen pruned");
    let hostnames: Vec<String> = redis::cmd("HKEYS")
        .arg(k.hostnames())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hostnames, vec![alive.to_string()]);
    // The alive machine's series is trimmed to the window.
    let n: i64 = redis::cmd("ZCARD")
        .arg(k.series(alive))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((5..=15).contains(&n), "{n} samples in a 2 s window at 5/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_is_bounded_by_count_too() {
    let server = RedisServer::start();
    let options = sysmon_sinks::redis::RedisOptions {
        max_series_len: Some(10),
        ..quick_options()
    };
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t5:", HOUR), options)
        .await
        .unwrap();
    let mut machines = fleet(1);
    for b in batches(&mut machines, now() - 100.0, 50, 1.0, 7) {
        sink.write(b).await.unwrap();
    }
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
        .arg(sink.keys().series("m00"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members.len(), 10);
    // The newest ten are kept.
    let newest = sink.store().latest("m00").await.unwrap().unwrap();
    assert_eq!(members[9].1, newest.timestamp_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_at_startup_is_not_an_error_and_is_picked_up_later() {
    let mut server = RedisServer::start();
    server.stop();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t7:", HOUR), quick_options())
        .await
        .expect("an unreachable redis must not stop the ingester from starting");
    assert!(!sink.is_connected());
    let mut machines = fleet(2);
    let b = batches(&mut machines, now(), 1, 1.0, 2);
    assert!(sink.write(b[0].clone()).await.is_err());
    server.start_again();
    let (ok, _) = wait_until(Duration::from_secs(10), || async { sink.is_connected() }).await;
    assert!(ok, "the sink reconnects by itself");
    // The batch written while Redis was away is restored (its latest state).
    let b2 = batches(&mut machines, now(), 1, 1.0, 1);
    sink.write(b2[0].clone()).await.unwrap();
    wait_repaired(&sink, 1).await;
    let m01 = sink.store().latest("m01").await.unwrap().unwrap();
    assert_eq!(m01, b[0][1]);
    let c = sink.counters();
    assert_eq!((c.outages, c.batches_skipped), (1, 1), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_binary_readable_as_json_and_old_json_values_still_read() {
    let server = RedisServer::start();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t9:", HOUR), quick_options())
        .await
        .unwrap();
    let mut machines = fleet(2);
    let b = batches(&mut machines, now(), 3, 1.0, 2);
    for batch in &b {
        sink.write(batch.clone()).await.unwrap();
    }
    let newest = b[2][0].clone();
    let store = sink.store();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(store.keys().latest("m00"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        &raw[..4],
        b"SMB2",
        "latest is stored in the binary encoding"
    );
    assert_eq!(
        sysmon_core::codec::binary::decode(&raw).unwrap(),
        newest,
        "and decodes to the newest snapshot"
    );
    let json = store.latest_many_json(&["m00", "nope"]).await.unwrap();
    assert_eq!(
        json[0].as_deref(),
        Some(&sysmon_core::encode_json(&newest)[..])
    );
    assert_eq!(json[1], None);
    let top = store.top_processes("m00").await.unwrap().unwrap();
    assert_eq!(top.top_cpu_processes, newest.top_cpu_processes);
    assert_eq!(top.top_mem_processes, newest.top_mem_processes);
    assert!(!newest.top_cpu_processes.is_empty());

    // A value left by a sysmon that stored native JSON still reads.
    let old = b[2][1].clone();
    let _: () = redis::cmd("SET")
        .arg(store.keys().latest("m01"))
        .arg(sysmon_core::encode_json(&old))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.latest("m01").await.unwrap(), Some(old.clone()));
    let json = store.latest_many_json(&["m01"]).await.unwrap();
    assert_eq!(
        json[0].as_deref(),
        Some(&sysmon_core::encode_json(&old)[..])
    );
    // Garbage is an error, not a wrong answer.
    let _: () = redis::cmd("SET")
        .arg(store.keys().latest("m01"))
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = store.latest("m01").await.unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_series_ttls_and_replaces_survive_what_the_sink_remembers() {
    let server = RedisServer::start();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t10:", HOUR), quick_options())
        .await
        .unwrap();
    let store = sink.store();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let t0 = now().floor();
    let snap = |t: f64, host: &str, cpu: f64| {
        let mut s = Snapshot::new("h1", t);
        s.hostname = Some(host.to_string());
        s.cpu_usage = cpu;
        s
    };
    let hostname =
        |store: RedisStore| async move { store.machines().await.unwrap()[0].hostname.clone() };
    sink.write(vec![snap(t0, "alpha", 1.0)].into())
        .await
        .unwrap();
    sink.write(vec![snap(t0 + 1.0, "alpha", 2.0)].into())
        .await
        .unwrap();
    assert_eq!(hostname(store.clone()).await.as_deref(), Some("alpha"));
    // A renamed host: the new name replaces the old one.
    sink.write(vec![snap(t0 + 2.0, "beta", 3.0)].into())
        .await
        .unwrap();
    assert_eq!(hostname(store.clone()).await.as_deref(), Some("beta"));

    // Redis loses everything between two writes without the sink noticing
    // (no failed write): the next write still restores the host name and a
    // TTL on the new series, though the sink already wrote both before.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    sink.write(vec![snap(t0 + 3.0, "beta", 4.0)].into())
        .await
        .unwrap();
    assert_eq!(hostname(store.clone()).await.as_deref(), Some("beta"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(store.keys().series("h1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "the new series expires by itself: {ttl}");

    // A later batch replaying an older millisecond with other content
    // replaces it, and a newer sample than any written is simply added.
    sink.write(vec![snap(t0 + 3.0, "beta", 99.0), snap(t0 + 4.0, "beta", 5.0)].into())
        .await
        .unwrap();
    let members: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
        .arg(store.keys().series("h1"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    let cpus: Vec<(i64, f64)> = members
        .iter()
        .map(|(m, ms)| {
            (
                *ms,
                sysmon_core::codec::binary::decode(m).unwrap().cpu_usage,
            )
        })
        .collect();
    let ms = |t: f64| (t * 1000.0) as i64;
    assert_eq!(cpus, vec![(ms(t0 + 3.0), 99.0), (ms(t0 + 4.0), 5.0)]);
    assert_eq!(
        store.latest("h1").await.unwrap().map(|s| s.cpu_usage),
        Some(5.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_latest_write_never_wins_over_a_newer_one_from_another_writer() {
    // Two ingesters' sinks (a consumer-group rebalance): each writes the latest
    // state directly when its samples are newer than anything it wrote itself.
    let server = RedisServer::start();
    let config = redis_config(&server.url(), "t11:", HOUR);
    let a = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    let b = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    let store = a.store();
    let t0 = now().floor();
    let snap = |t: f64, cpu: f64| {
        let mut s = Snapshot::new("m1", t);
        s.cpu_usage = cpu;
        s
    };
    a.write(vec![snap(t0, 1.0)].into()).await.unwrap();
    a.write(vec![snap(t0 + 1.0, 2.0)].into()).await.unwrap();
    b.write(vec![snap(t0 + 3.0, 3.0)].into()).await.unwrap();
    // a's sample is newer than a's own but older than b's: latest stays b's.
    a.write(vec![snap(t0 + 2.0, 9.0)].into()).await.unwrap();
    let latest = store.latest("m1").await.unwrap().unwrap();
    assert_eq!((latest.timestamp, latest.cpu_usage), (t0 + 3.0, 3.0));
    let machines = store.machines().await.unwrap();
    assert_eq!(machines[0].last_seen, t0 + 3.0);
    // Every sample is in the series.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
        .arg(store.keys().series("m1"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let cpus: Vec<f64> = members
        .iter()
        .map(|m| sysmon_core::codec::binary::decode(m).unwrap().cpu_usage)
        .collect();
    assert_eq!(cpus, vec![1.0, 2.0, 9.0, 3.0]);
    // And a's next newer sample moves it forward again.
    a.write(vec![snap(t0 + 4.0, 4.0)].into()).await.unwrap();
    assert_eq!(
        store.latest("m1").await.unwrap().map(|s| s.cpu_usage),
        Some(4.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_details_round_trip_through_redis() {
    let server = RedisServer::start();
    let sink = RedisSink::connect_with(&redis_config(&server.url(), "t14:", HOUR), quick_options())
        .await
        .unwrap();
    let mut machines = fleet(2);
    let t0 = now();
    let detailed: Vec<Batch> = batches(&mut machines, t0, 3, 1.0, 2)
        .iter()
        .map(|b| {
            let mut v = b.to_vec();
            v.iter_mut().for_each(sysmon_core::synth::fill_host_details);
            Batch::from(v)
        })
        .collect();
    for b in &detailed {
        sink.write(b.clone()).await.unwrap();
    }
    let store = sink.store();
    let newest = detailed[2][1].clone();
    assert!(newest.tcp.is_some() && !newest.top_cpu_cgroups.is_empty());
    assert_eq!(
        store.latest(&newest.machine_id).await.unwrap().unwrap(),
        newest
    );
    let sent: Vec<Snapshot> = detailed
        .iter()
        .flat_map(|b| {
            b.iter()
                .filter(|s| s.machine_id == newest.machine_id)
                .cloned()
        })
        .collect();
    let back = store
        .range(Some(&newest.machine_id), sent[0].timestamp, t0 + 600.0, 100)
        .await
        .unwrap();
    assert_eq!(back, sent);
}
