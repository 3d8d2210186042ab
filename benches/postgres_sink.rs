//! The PostgreSQL sink: batch write throughput and size on disk.
//!
//! * `postgres_sink/write/1000_snapshots`: batches of 1,000 realistic snapshots
//!   (100 machines x 10 consecutive seconds, 10 processes per top list, per-core
//!   CPU, a filesystem) through `Sink::write` into a fresh database on the
//!   machine's PostgreSQL server (`SYSMON_TEST_POSTGRES`, default
//!   `postgresql://postgres@127.0.0.1:5432`), created for the run and dropped
//!   after it. The tables grow during the run, as in production. Throughput is
//!   in snapshots/s.
//!   `.../1000_snapshots_merge_only` is the same with every batch taking the
//!   replay way (staging tables, `INSERT ... ON CONFLICT`): what every batch
//!   did before new samples were COPied straight into the tables.
//! * `postgres_sink/series/*`: one machine with 24 h of 1 s samples (86,400
//!   rows) written through the sink and rolled up (the newest 90 s not yet, as
//!   between two maintenance passes); `series` over 24 h, 6 h and 1 h at 1,000
//!   points; p50/p99 of 300 queries printed after criterion.
//! * `postgres_sink/fleet/*`: 1,000 machines with 1 h of 1 s samples (3.6
//!   million rows, no processes) written through the sink and rolled up;
//!   the fleet's average over 1 h (rollups) and 15 min (raw), `latest_all`.
//! * After criterion: the stored size per snapshot (samples and processes
//!   partitions with their indexes, machines, the rollup queue), from
//!   `pg_total_relation_size` after a `VACUUM`.
//!
//! The server's own CPU is not this process's: the figure printed is the time
//! per batch on the shared two cores, client and server together.
//!
//! Run: `cargo bench --bench postgres_sink` (`PG_BENCH=write|series|fleet`
//! runs a part).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::black_box;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sysmon::core::read::{FleetAgg, HistoryReader, Metric, SeriesQuery};
use sysmon::core::synth::SyntheticMachine;
use sysmon::core::{Batch, Sink, Snapshot};
use sysmon::sinks::postgres::{PostgresConfig, PostgresSink};
use sysmon_testkit::bench;
use sysmon_testkit::postgres::TestDatabase;
use tokio::runtime::Runtime;

const BATCH: usize = 1000;
const MACHINES: usize = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fleet of synthetic machines producing consecutive 1 s batches.
struct Fleet {
    machines: Vec<SyntheticMachine>,
    next_ts: f64,
}

impl Fleet {
    fn new(n: usize, t0: f64) -> Self {
        Fleet {
            machines: (0..n)
                .map(|i| SyntheticMachine::new(format!("worker-{i:03}"), i as u64))
                .collect(),
            next_ts: t0,
        }
    }

    /// `seconds` consecutive seconds of every machine.
    fn batch(&mut self, seconds: usize) -> Batch {
        self.batch_with(seconds, 10)
    }

    /// `seconds` consecutive seconds of every machine, `processes` per top list.
    fn batch_with(&mut self, seconds: usize, processes: usize) -> Batch {
        let mut v: Vec<Snapshot> = Vec::with_capacity(seconds * self.machines.len());
        for _ in 0..seconds {
            for m in &mut self.machines {
                v.push(m.next_snapshot(self.next_ts, processes));
            }
            self.next_ts += 1.0;
        }
        Arc::from(v)
    }
}

/// Whether the part `name` is selected by `PG_BENCH` (unset: all).
fn selected(name: &str) -> bool {
    std::env::var("PG_BENCH").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

/// The median and 99th percentile of 300 runs of `f`.
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

fn open(rt: &Runtime, db: &TestDatabase) -> PostgresSink {
    rt.block_on(PostgresSink::open(&PostgresConfig {
        url: db.url(),
        ..PostgresConfig::default()
    }))
    .expect("open the bench database")
}

/// `seconds` of 1 s samples of `fleet` (ending now), `processes` per top
/// list, in batches of about 1,000; then maintenance as of 90 s before the end
/// (the newest minutes stay raw, as between two passes). Returns the end.
fn fill(
    rt: &Runtime,
    sink: &PostgresSink,
    fleet: &mut Fleet,
    seconds: usize,
    processes: usize,
) -> f64 {
    let per_batch = (BATCH / fleet.machines.len()).max(1);
    let started = Instant::now();
    let mut done = 0;
    while done < seconds {
        let n = per_batch.min(seconds - done);
        rt.block_on(sink.write(fleet.batch_with(n, processes)))
            .expect("write");
        done += n;
    }
    let end = fleet.next_ts;
    rt.block_on(sink.maintain_at(end - 90.0)).expect("maintain");
    println!(
        "filled {} snapshots in {:.1} s (rolled up)",
        seconds * fleet.machines.len(),
        started.elapsed().as_secs_f64()
    );
    end
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        .floor()
}

fn bench_series(c: &mut Criterion) {
    if !selected("series") {
        return;
    }
    let rt = runtime();
    let db = TestDatabase::create();
    let sink = open(&rt, &db);
    let mut one = Fleet::new(1, now() - 86_400.0);
    let end = fill(&rt, &sink, &mut one, bench::size(86_400, 3600), 10);
    // Statistics, as autovacuum gathers them within a minute or so: without
    // them the planner takes the freshly written partitions for empty and
    // anti-joins raw samples against the rollups in a nested loop (seconds).
    db.sql("ANALYZE");
    let id = "worker-000";
    let cases: [(&str, f64); 3] = [("24h", 86_400.0), ("6h", 6.0 * 3600.0), ("1h", 3600.0)];
    let query = |range: f64| SeriesQuery::machine(id, Metric::Cpu, end - range, end, 1000);
    let mut g = c.benchmark_group("postgres_sink/series");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, range) in cases {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(sink.series(&query(range))).expect("series")))
        });
    }
    g.finish();
    for (name, range) in cases {
        let points = rt
            .block_on(sink.series(&query(range)))
            .expect("series")
            .len();
        let (p50, p99) = percentiles(|| {
            rt.block_on(sink.series(&query(range))).expect("series");
        });
        println!("series/{name}: {points} points, p50 {p50:?}, p99 {p99:?}");
    }
    drop(sink);
    drop(db);
}

fn bench_fleet(c: &mut Criterion) {
    if !selected("fleet") {
        return;
    }
    const FLEET: usize = 1000;
    let rt = runtime();
    let db = TestDatabase::create();
    let sink = open(&rt, &db);
    let mut fleet = Fleet::new(FLEET, now() - 3600.0);
    let end = fill(&rt, &sink, &mut fleet, bench::size(3600, 60), 0);
    db.sql("ANALYZE");
    let query = |range: f64| SeriesQuery::fleet(Metric::Cpu, FleetAgg::Avg, end - range, end, 1000);
    let mut g = c.benchmark_group("postgres_sink/fleet");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (name, range) in [("1h_1000_machines", 3600.0), ("15m_1000_machines", 900.0)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(rt.block_on(sink.series(&query(range))).expect("fleet")))
        });
    }
    g.bench_function("latest_all_1000_machines", |b| {
        b.iter(|| black_box(rt.block_on(sink.latest_all()).expect("latest_all")))
    });
    g.finish();
    for (name, range) in [("1h_1000_machines", 3600.0), ("15m_1000_machines", 900.0)] {
        let points = rt
            .block_on(sink.series(&query(range)))
            .expect("fleet")
            .len();
        let (p50, p99) = percentiles(|| {
            rt.block_on(sink.series(&query(range))).expect("fleet");
        });
        println!("fleet/{name}: {points} points, p50 {p50:?}, p99 {p99:?}");
    }
    drop(sink);
    drop(db);
}

fn bench_write(c: &mut Criterion) {
    if !selected("write") {
        return;
    }
    let rt = runtime();
    let db = TestDatabase::create();
    let sink = rt
        .block_on(PostgresSink::open(&PostgresConfig {
            url: db.url(),
            ..PostgresConfig::default()
        }))
        .expect("open the bench database");
    // Start a day back: the run writes hours of 1 s samples.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let t0 = (now / 3600.0).floor() * 3600.0 - 86_400.0;
    let mut fleet = Fleet::new(MACHINES, t0);
    let mut g = c.benchmark_group("postgres_sink/write");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(BATCH as u64));
    // Before (every batch merged through staging tables) and after (new
    // samples COPied straight in), alternating in one run.
    for (name, merge_only) in [
        ("1000_snapshots_merge_only", true),
        ("1000_snapshots", false),
    ] {
        sink.set_merge_only(merge_only);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Building the batch is the producer's cost, not the sink's.
                    let batch = fleet.batch(BATCH / MACHINES);
                    let t = Instant::now();
                    rt.block_on(sink.write(batch)).expect("write");
                    total += t.elapsed();
                }
                total
            })
        });
    }
    sink.set_merge_only(false);
    g.finish();

    let rows: i64 = db.sql("SELECT count(*) FROM samples").parse().unwrap_or(0);
    db.sql("VACUUM");
    let bytes: i64 = db
        .sql(
            "SELECT (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('samples'))
                  + (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('processes'))
                  + pg_total_relation_size('machines') + pg_total_relation_size('dirty_minutes')",
        )
        .parse()
        .unwrap_or(0);
    println!(
        "write: {rows} snapshots stored, {:.0} MB ({:.0} bytes/snapshot incl. processes and indexes)",
        bytes as f64 / 1e6,
        bytes as f64 / rows.max(1) as f64
    );
    drop(sink);
    drop(db);
}

criterion_group!(benches, bench_write, bench_series, bench_fleet);
criterion_main!(benches);
