//! Anomaly detection cost: `AnomalyDetector::observe` amortised per sample for
//! 1,000 machines interleaved (their forests do not fit in cache), including
//! the periodic Isolation Forest retrains; plus the forest on its own.
//!
//! Run: `cargo bench --bench detector`
//!
//! The target: at most 20 µs per sample per machine, amortised.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sysmon::analytics::isolation_forest::{ForestParams, IsolationForest};
use sysmon::analytics::{AnomalyDetector, DetectorConfig};
use sysmon::core::synth::{Rng, SyntheticMachine};
use sysmon::core::Snapshot;
use sysmon_testkit::bench;

const MACHINES: usize = 1000;
/// Distinct steps generated per machine, replayed in a loop.
const STEPS: usize = 512;
const T0: f64 = 1_764_086_400.0;

/// One machine's replayable stream: per step CPU %, memory % and counter deltas.
struct Stream {
    snapshot: Snapshot,
    steps: Vec<(f64, f64, [u64; 4])>,
    counters: [u64; 4],
}

struct Fleet {
    detector: AnomalyDetector,
    streams: Vec<Stream>,
    machine: usize,
    step: usize,
}

impl Fleet {
    fn new(machines: usize, config: DetectorConfig) -> Fleet {
        let streams = (0..machines)
            .map(|m| {
                let mut sm = SyntheticMachine::new(format!("bench-{m:04}"), m as u64);
                let mut prev = sm.next_snapshot(T0, 0);
                let first = prev.clone();
                let steps = (1..=STEPS)
                    .map(|i| {
                        let s = sm.next_snapshot(T0 + i as f64, 0);
                        let d = [
                            s.disk_io.read - prev.disk_io.read,
                            s.disk_io.write - prev.disk_io.write,
                            s.network_io.sent - prev.network_io.sent,
                            s.network_io.recv - prev.network_io.recv,
                        ];
                        let out = (s.cpu_usage, s.memory_usage, d);
                        prev = s;
                        out
                    })
                    .collect();
                Stream {
                    counters: [
                        first.disk_io.read,
                        first.disk_io.write,
                        first.network_io.sent,
                        first.network_io.recv,
                    ],
                    snapshot: first,
                    steps,
                }
            })
            .collect();
        Fleet {
            detector: AnomalyDetector::new(config).expect("valid config"),
            streams,
            machine: 0,
            step: 0,
        }
    }

    /// Observes the next sample (machines round-robin, one step per round).
    fn observe_next(&mut self) -> bool {
        let s = &mut self.streams[self.machine];
        let (cpu, mem, d) = s.steps[self.step % STEPS];
        for (c, d) in s.counters.iter_mut().zip(d) {
            *c += d;
        }
        let snap = &mut s.snapshot;
        snap.timestamp = T0 + 1.0 + self.step as f64 + self.machine as f64 * 1e-4;
        snap.cpu_usage = cpu;
        snap.memory_usage = mem;
        snap.disk_io.read = s.counters[0];
        snap.disk_io.write = s.counters[1];
        snap.network_io.sent = s.counters[2];
        snap.network_io.recv = s.counters[3];
        let flagged = self
            .detector
            .observe(snap)
            .map(|a| a.anomaly)
            .unwrap_or(false);
        self.machine += 1;
        if self.machine == self.streams.len() {
            self.machine = 0;
            self.step += 1;
        }
        flagged
    }
}

fn observe(c: &mut Criterion) {
    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(20));
    g.sample_size(50);
    // `cargo test --benches` runs each benchmark once as a smoke test, in an
    // unoptimised build: keep its set-up small there (still with forests and
    // retrains). The figures come from `cargo bench`.
    let smoke = !bench::measuring();
    let (fleet_size, config) = if smoke {
        let small = DetectorConfig {
            window: 300,
            min_history: 100,
            retrain_every: 50,
            trees: 20,
            ..DetectorConfig::default()
        };
        (20, small)
    } else {
        (MACHINES, DetectorConfig::default())
    };
    for machines in [fleet_size, 1] {
        let mut fleet = Fleet::new(machines, config.clone());
        // Fill every machine's training window so that forests exist and retrain.
        let cfg = fleet.detector.config().clone();
        for _ in 0..(cfg.window + 100) * machines {
            fleet.observe_next();
        }
        let (nodes, bytes) = (0..machines)
            .filter_map(|m| fleet.detector.machine(&format!("bench-{m:04}")))
            .filter_map(|st| st.forest().map(|f| (f.node_count(), f.memory_bytes())))
            .fold((0, 0), |(n, b), (fnodes, fbytes)| (n + fnodes, b + fbytes));
        eprintln!(
            "{machines} machines: a forest holds {:.0} nodes ({:.0} KB) per machine",
            nodes as f64 / machines as f64,
            bytes as f64 / 1024.0 / machines as f64
        );
        g.bench_function(format!("observe_per_sample/{machines}_machines"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(fleet.observe_next());
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn forest(c: &mut Criterion) {
    let mut r = Rng::new(1);
    let rows: Vec<Vec<f64>> = (0..1024)
        .map(|_| (0..6).map(|_| r.normal()).collect())
        .collect();
    let params = ForestParams::default();
    let mut g = c.benchmark_group("isolation_forest");
    g.bench_function("fit/100_trees_psi_256_of_1024_rows", |b| {
        b.iter(|| IsolationForest::fit(black_box(&rows), &params))
    });
    let f = IsolationForest::fit(&rows, &params).expect("fits");
    g.throughput(Throughput::Elements(1));
    g.bench_function("score/100_trees_hot_cache", |b| {
        b.iter(|| f.score(black_box(&rows[7])))
    });
    g.finish();
}

criterion_group!(benches, observe, forest);
criterion_main!(benches);
