//! Redis hot window: write throughput of `RedisSink` (one pipelined round trip
//! per batch of 1,000 snapshots) and the latency of "latest for 1,000 machines"
//! (one `MGET`), against a local redis-server started on a free port.
//!
//! `cargo bench --bench redis_sink` (add `-- --measurement-time 5` for a short run).
//! Besides criterion's medians it prints p50/p99 of the latest query, measured
//! over 1,000 sequential queries, and for each write shape where the time goes:
//! redis-server CPU and this process's CPU per batch (`INFO cpu`,
//! `/proc/self/stat`) and Redis' calls per machine by command
//! (`INFO commandstats`, needs `redis-cli`), over 300 batches.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sysmon_core::config::RedisConfig;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, Sink};
use sysmon_sinks::redis::{RedisOptions, RedisSink};
use sysmon_testkit::bench;
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
        ..RedisConfig::default()
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
        if bench::measuring() {
            profile(&rt, &server, &sink, &mut feed, name, machines);
        }
        let sample = feed.next_batch();
        let json = sysmon_core::encode_json(&sample[0]).len();
        let bin = sysmon_core::codec::binary::encode(&sample[0]).len();
        eprintln!(
            "redis_sink/{name}: a snapshot is {json} B as JSON (latest), {bin} B binary (series)"
        );
    }
    group.finish();
}

/// CPU of this process so far (user + system), from `/proc/self/stat`.
fn own_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the
    // 12th, stime the 13th; in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `redis-cli INFO <section>` of the bench server, as `key:value` lines.
fn info(server: &RedisServer, section: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "INFO", section])
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn server_cpu(server: &RedisServer) -> Duration {
    let secs: f64 = info(server, "cpu")
        .iter()
        .filter(|(k, _)| k == "used_cpu_user" || k == "used_cpu_sys")
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum();
    Duration::from_secs_f64(secs)
}

/// Writes 300 batches and prints wall time, redis-server and own CPU per
/// batch and the commands Redis ran per machine.
fn profile(
    rt: &tokio::runtime::Runtime,
    server: &RedisServer,
    sink: &RedisSink,
    feed: &mut Feed,
    name: &str,
    machines: usize,
) {
    let n = bench::size(300, 20);
    let batches: Vec<Batch> = (0..n).map(|_| feed.next_batch()).collect();
    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "CONFIG", "RESETSTAT"])
        .output();
    let (s0, c0, t0) = (server_cpu(server), own_cpu(), Instant::now());
    for b in batches {
        rt.block_on(sink.write(b)).expect("redis write");
    }
    let (wall, s1, c1) = (t0.elapsed(), server_cpu(server), own_cpu());
    eprintln!(
        "redis_sink/{name} profile over {n} batches: wall {:.2} ms/batch ({:.0} snapshots/s), \
         redis-server CPU {:.2} ms/batch, sink process CPU {:.2} ms/batch",
        wall.as_secs_f64() * 1e3 / n as f64,
        n as f64 * BATCH as f64 / wall.as_secs_f64(),
        (s1.saturating_sub(s0)).as_secs_f64() * 1e3 / n as f64,
        (c1.saturating_sub(c0)).as_secs_f64() * 1e3 / n as f64,
    );
    // Each batch writes every machine once (with BATCH / machines samples).
    let per_machine = n as f64 * machines as f64;
    let mut total = 0.0;
    let mut lines = Vec::new();
    for (k, v) in info(server, "commandstats") {
        let Some(cmd) = k.strip_prefix("cmdstat_") else {
            continue;
        };
        let field = |name: &str| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let (calls, usec) = (field("calls"), field("usec"));
        if cmd == "info" || cmd == "config" {
            continue;
        }
        if cmd != "evalsha" {
            total += calls / per_machine;
        }
        lines.push(format!(
            "{cmd} {:.2}/machine {:.2} us/call",
            calls / per_machine,
            usec / calls.max(1.0)
        ));
    }
    eprintln!(
        "redis_sink/{name} commands per machine (incl. inside scripts, excl. EVALSHA): {total:.2}; {}",
        lines.join(", ")
    );
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
    if !bench::measuring() {
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
