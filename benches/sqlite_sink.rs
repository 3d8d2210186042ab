//! The SQLite sink: batch write throughput and chart-query latency.
//!
//! * `sqlite_sink/write/1000_snapshots`: batches of 1,000 realistic snapshots
//!   (100 machines x 10 consecutive seconds, 10 processes per top list, per-core
//!   CPU, a filesystem) through `Sink::write`, WAL on, file in a temp dir. The
//!   database grows during the run, as it does in production. Throughput is in
//!   snapshots/s.
//! * `sqlite_sink/series/*`: one machine with 24 h of 1 s samples (86,400 rows),
//!   rolled up; `series` over 24 h, 6 h and 1 h at 1,000 points, and over 24 h
//!   forced to raw samples (the worst case).
//! * `sqlite_sink/fleet/*`: 100 machines with 1 h of 1 s samples (360,000 rows);
//!   `fleet_series` over 1 h (rollups) and 15 min (raw), `latest_all`.
//!
//! Both query databases are maintained as of 90 s before their newest sample,
//! as in production (maintenance every minute), so the newest minutes come
//! from raw samples.
//!
//! After criterion, the query benchmarks are repeated 300 times each and their
//! p50/p99 printed, because the API's targets are p99.
//!
//! Run: `cargo bench --bench sqlite_sink` (`SQLITE_BENCH=write|series|fleet` runs
//! one part, setup included; criterion's own filter skips only the measurement).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sysmon::core::config::SqliteConfig;
use sysmon::core::synth::SyntheticMachine;
use sysmon::core::{Batch, Sink, Snapshot};
use sysmon::sinks::sqlite::{FleetAgg, Metric, SeriesSource, SqliteSink};
use sysmon_testkit::bench;
use tempfile::TempDir;
use tokio::runtime::Runtime;

const T0: f64 = 1_764_086_400.0;
const BATCH: usize = 1000;
const MACHINES: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn open(dir: &TempDir) -> SqliteSink {
    SqliteSink::open(&SqliteConfig {
        path: dir.path().join("bench.db"),
        ..SqliteConfig::default()
    })
    .expect("open the bench database")
}

/// A fleet of synthetic machines producing consecutive 1 s batches.
struct Fleet {
    machines: Vec<SyntheticMachine>,
    next_ts: f64,
}

impl Fleet {
    fn new(n: usize) -> Self {
        Fleet {
            machines: (0..n)
                .map(|i| SyntheticMachine::new(format!("worker-{i:03}"), i as u64))
                .collect(),
            next_ts: T0,
        }
    }

    /// `seconds` consecutive seconds of every machine.
    fn batch(&mut self, seconds: usize) -> Batch {
        let mut v: Vec<Snapshot> = Vec::with_capacity(seconds * self.machines.len());
        for _ in 0..seconds {
            for m in &mut self.machines {
                v.push(m.next_snapshot(self.next_ts, 10));
            }
            self.next_ts += 1.0;
        }
        Arc::from(v)
    }
}

fn fill(rt: &Runtime, sink: &SqliteSink, fleet: &mut Fleet, seconds: usize) {
    let per_batch = (BATCH / fleet.machines.len()).max(1);
    let mut done = 0;
    while done < seconds {
        let n = per_batch.min(seconds - done);
        rt.block_on(sink.write(fleet.batch(n))).expect("write");
        done += n;
    }
}

/// CPU time (user + system) of this whole process so far, in clock ticks
/// (1/100 s on Linux), from `/proc/self/stat`; 0 where unavailable.
fn cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start at `state`.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12) // utime, stime
}

fn percentiles(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..bench::size(300, 3))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// Whether the part `name` is selected by `SQLITE_BENCH` (unset: all).
fn selected(name: &str) -> bool {
    std::env::var("SQLITE_BENCH").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

fn bench_write(c: &mut Criterion) {
    if !selected("write") {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new().expect("temp dir");
    let sink = open(&dir);
    let mut fleet = Fleet::new(MACHINES);
    let mut g = c.benchmark_group("sqlite_sink/write");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(BATCH as u64));
    // CPU spent inside writes (the bench thread waits meanwhile), to tell the
    // sink's own cost from time lost to other processes on a shared machine.
    let mut write_ticks = 0u64;
    let mut written = 0u64;
    g.bench_function("1000_snapshots", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Building the batch is the producer's cost, not the sink's.
                let batch = fleet.batch(BATCH / MACHINES);
                let ticks = cpu_ticks();
                let t = Instant::now();
                rt.block_on(sink.write(batch)).expect("write");
                total += t.elapsed();
                write_ticks += cpu_ticks().saturating_sub(ticks);
                written += BATCH as u64;
            }
            total
        })
    });
    g.finish();
    if write_ticks > 0 {
        let cpu_us = write_ticks as f64 * 10_000.0 / written as f64;
        println!(
            "write: {cpu_us:.1} us of CPU (user+sys) per snapshot inside writes, \
             i.e. {:.0} snapshots/s per fully available core",
            1e6 / cpu_us
        );
    }
    let rows = (fleet.next_ts - T0) as usize * MACHINES;
    let size = std::fs::metadata(dir.path().join("bench.db")).map_or(0, |m| m.len());
    println!(
        "write: {rows} snapshots stored, database {:.0} MB ({:.0} bytes/snapshot incl. processes)",
        size as f64 / 1e6,
        size as f64 / rows.max(1) as f64
    );
    let t = Instant::now();
    let report = rt
        .block_on(sink.maintain_at(fleet.next_ts))
        .expect("maintain");
    println!(
        "maintain (first pass, rolls up every minute written): {:?} for {} machine-minutes",
        t.elapsed(),
        report.minutes_rolled_up
    );
}

fn bench_series(c: &mut Criterion) {
    if !selected("series") {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new().expect("temp dir");
    let sink = open(&dir);
    let mut one = Fleet::new(1);
    fill(&rt, &sink, &mut one, bench::size(86_400, 3600));
    let end = one.next_ts;
    // As in production, where maintenance runs every minute: the newest
    // 90 s are not rolled up yet and come from raw samples.
    rt.block_on(sink.maintain_at(end - 90.0)).expect("maintain");
    let id = "worker-000";

    let cases: [(&str, f64, SeriesSource); 4] = [
        ("24h_auto", 86_400.0, SeriesSource::Auto),
        ("24h_raw", 86_400.0, SeriesSource::Raw),
        ("6h_auto", 6.0 * 3600.0, SeriesSource::Auto),
        ("1h_auto", 3600.0, SeriesSource::Auto),
    ];
    let mut g = c.benchmark_group("sqlite_sink/series");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, range, source) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let s = rt
                    .block_on(sink.series_from(id, Metric::Cpu, end - range, end, 1000, source))
                    .expect("series");
                black_box(s)
            })
        });
    }
    g.finish();
    for (name, range, source) in cases {
        let points = rt
            .block_on(sink.series_from(id, Metric::Cpu, end - range, end, 1000, source))
            .expect("series")
            .len();
        let (p50, p99) = percentiles(|| {
            rt.block_on(sink.series_from(id, Metric::Cpu, end - range, end, 1000, source))
                .expect("series");
        });
        println!("series/{name}: {points} points, p50 {p50:?}, p99 {p99:?}");
    }
}

fn bench_fleet(c: &mut Criterion) {
    if !selected("fleet") {
        return;
    }
    let rt = runtime();
    let dir = TempDir::new().expect("temp dir");
    let sink = open(&dir);
    let mut fleet = Fleet::new(MACHINES);
    fill(&rt, &sink, &mut fleet, bench::size(3600, 60));
    let end = fleet.next_ts;
    rt.block_on(sink.maintain_at(end - 90.0)).expect("maintain");

    let mut g = c.benchmark_group("sqlite_sink/fleet");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, range) in [("1h_100_machines", 3600.0), ("15m_100_machines", 900.0)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    rt.block_on(sink.fleet_series(
                        Metric::Cpu,
                        end - range,
                        end,
                        1000,
                        FleetAgg::Avg,
                    ))
                    .expect("fleet"),
                )
            })
        });
    }
    g.bench_function("latest_all_100_machines", |b| {
        b.iter(|| black_box(rt.block_on(sink.latest_all()).expect("latest_all")))
    });
    g.finish();
    for (name, range) in [("1h_100_machines", 3600.0), ("15m_100_machines", 900.0)] {
        let points = rt
            .block_on(sink.fleet_series(Metric::Cpu, end - range, end, 1000, FleetAgg::Avg))
            .expect("fleet")
            .len();
        let (p50, p99) = percentiles(|| {
            rt.block_on(sink.fleet_series(Metric::Cpu, end - range, end, 1000, FleetAgg::Avg))
                .expect("fleet");
        });
        println!("fleet/{name}: {points} points, p50 {p50:?}, p99 {p99:?}");
    }
}

criterion_group!(benches, bench_write, bench_series, bench_fleet);
criterion_main!(benches);
