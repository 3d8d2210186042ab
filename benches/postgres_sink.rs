//! The PostgreSQL sink: batch write throughput and size on disk.
//!
//! * `postgres_sink/write/1000_snapshots`: batches of 1,000 realistic snapshots
//!   (100 machines x 10 consecutive seconds, 10 processes per top list, per-core
//!   CPU, a filesystem) through `Sink::write` into a fresh database on the
//!   machine's PostgreSQL server (`SYSMON_TEST_POSTGRES`, default
//!   `postgresql://postgres@127.0.0.1:5432`), created for the run and dropped
//!   after it. The tables grow during the run, as in production. Throughput is
//!   in snapshots/s.
//! * After criterion: the stored size per snapshot (samples and processes
//!   partitions with their indexes, machines, the rollup queue), from
//!   `pg_total_relation_size` after a `VACUUM`.
//!
//! The server's own CPU is not this process's: the figure printed is the time
//! per batch on the shared two cores, client and server together.
//!
//! Run: `cargo bench --bench postgres_sink`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sysmon::core::synth::SyntheticMachine;
use sysmon::core::{Batch, Sink, Snapshot};
use sysmon::sinks::postgres::{PostgresConfig, PostgresSink};
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

fn bench_write(c: &mut Criterion) {
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
    g.bench_function("1000_snapshots", |b| {
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

criterion_group!(benches, bench_write);
criterion_main!(benches);
