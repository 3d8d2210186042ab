//! Redis hot window: write throughput of `RedisSink` (one pipelined round trip
//! per batch of 1,000 snapshots) and the latency of "latest for 1,000 machines"
//! (one `MGET`), against a local redis-server started on a free port.
//!
//! `cargo bench --bench redis_sink` (add `-- --measurement-time 5` for a short run).
//! Besides criterion's medians it prints p50/p99 of the latest query, measured
//! over 1,000 sequential queries.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sysmon_core::config::RedisConfig;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, Sink};
use sysmon_sinks::redis::{RedisOptions, RedisSink};
use sysmon_testkit::redis_server::RedisServer;

const BATCH: usize = 1000;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The ingester's kind of runtime: the connection's I/O runs on a worker while
/// the sink encodes the next group of machines.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn connect(rt: &tokio::runtime::Runtime, server: &RedisServer, prefix: &str) -> RedisSink {
    let config = RedisConfig {
        url: Some(server.url()),
        prefix: prefix.into(),
        window: Duration::from_secs(3600),
    };
    // A bounded series keeps the server's memory flat however long criterion runs.
    let options = RedisOptions {
        max_series_len: Some(100),
        timeout: Duration::from_secs(10),
        ..RedisOptions::default()
    };
    rt.block_on(RedisSink::connect_with(&config, options))
        .expect("connect to the bench redis-server")
}

/// A fleet and a clock that hands out the next batch: `machines` machines,
/// `BATCH / machines` samples each, one second apart.
struct Feed {
    fleet: Vec<SyntheticMachine>,
    t: f64,
}

impl Feed {
    fn new(machines: usize) -> Feed {
        Feed {
            fleet: (0..machines)
                .map(|i| SyntheticMachine::new(format!("bench-{i:04}"), i as u64))
                .collect(),
            t: (now() - 3000.0).round(),
        }
    }

    fn next_batch(&mut self) -> Batch {
        let per = BATCH / self.fleet.len();
        let mut v = Vec::with_capacity(BATCH);
        for _ in 0..per {
            self.t += 1.0;
            for m in &mut self.fleet {
                v.push(m.next_snapshot(self.t, 10));
            }
        }
        Batch::from(v)
    }
}

fn writes(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = runtime();
    let mut group = c.benchmark_group("redis_sink");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, machines) in [
        ("write_1000/1000_machines_x1", 1000),
        ("write_1000/100_machines_x10", 100),
    ] {
        let sink = connect(&rt, &server, &format!("bench-{machines}:"));
        let mut feed = Feed::new(machines);
        group.bench_function(name, |b| {
            b.iter_batched(
                || feed.next_batch(),
                |batch| rt.block_on(sink.write(batch)).expect("redis write"),
                BatchSize::SmallInput,
            )
        });
        let sample = feed.next_batch();
        let json = sysmon_core::encode_json(&sample[0]).len();
        let bin = sysmon_core::codec::binary::encode(&sample[0]).len();
        eprintln!(
            "redis_sink/{name}: a snapshot is {json} B as JSON (latest), {bin} B binary (series)"
        );
    }
    group.finish();
}

fn latest(c: &mut Criterion) {
    let server = RedisServer::start();
    let rt = runtime();
    let sink = connect(&rt, &server, "bench-latest:");
    let mut feed = Feed::new(1000);
    for _ in 0..3 {
        rt.block_on(sink.write(feed.next_batch()))
            .expect("redis write");
    }
    let store = sink.store();
    let ids: Vec<String> = (0..1000).map(|i| format!("bench-{i:04}")).collect();
    let got = rt.block_on(store.latest_many(&ids)).expect("latest_many");
    assert!(
        got.iter().all(|s| s.is_some()),
        "every machine has a latest snapshot"
    );

    let mut group = c.benchmark_group("redis_store");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("latest_1000_machines/mget_decoded", |b| {
        b.iter(|| rt.block_on(store.latest_many(&ids)).expect("latest_many"))
    });
    group.bench_function("latest_1000_machines/mget_raw_json", |b| {
        b.iter(|| {
            rt.block_on(store.latest_many_json(&ids))
                .expect("latest_many_json")
        })
    });
    group.finish();

    // Percentiles only in a real benchmark run (`cargo bench`), not when
    // `cargo test --benches` runs each benchmark once as a smoke test.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for (what, decoded) in [("mget_decoded", true), ("mget_raw_json", false)] {
        let mut times: Vec<Duration> = (0..1000)
            .map(|_| {
                let t = Instant::now();
                if decoded {
                    rt.block_on(store.latest_many(&ids)).expect("latest_many");
                } else {
                    rt.block_on(store.latest_many_json(&ids))
                        .expect("latest_many_json");
                }
                t.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "redis_store/latest_1000_machines/{what}: p50 {:?}, p99 {:?}, max {:?} over 1000 queries",
            times[500], times[990], times[999]
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = writes, latest
}
criterion_main!(benches);
