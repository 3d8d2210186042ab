//! Where the dashboard reads from: [`DashboardSource`], a [`SnapshotStore`]
//! plus downsampled series. Backends with server-side downsampling (the SQLite
//! sink's rollups) override [`DashboardSource::series`] and
//! [`DashboardSource::fleet`]; any other store gets the defaults here, which
//! bucket raw snapshots in memory and suit short windows (the Redis hot window).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use sysmon_core::{Snapshot, SnapshotStore, StoreError};

use crate::metric::{FleetAgg, Metric};

/// Most raw snapshots the in-memory fallbacks read for one answer.
pub const FALLBACK_SCAN_LIMIT: usize = 200_000;

/// A downsampled series in columns (`ts[i]` goes with `min[i]`, `max[i]`, ...),
/// the shape charting libraries want. Buckets without data are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Buckets {
    /// Bucket start, seconds since the epoch.
    pub ts: Vec<f64>,
    /// Lowest value in the bucket.
    pub min: Vec<f64>,
    /// Highest value in the bucket.
    pub max: Vec<f64>,
    /// Mean of the bucket.
    pub avg: Vec<f64>,
    /// Samples in the bucket (for fleet series: machines contributing).
    pub count: Vec<u64>,
}

impl Buckets {
    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when no bucket holds data.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends one bucket.
    pub fn push(&mut self, ts: f64, min: f64, max: f64, avg: f64, count: u64) {
        self.ts.push(ts);
        self.min.push(min);
        self.max.push(max);
        self.avg.push(avg);
        self.count.push(count);
    }
}

/// The bucket width for `max_points` buckets over `[since, until)`: at least
/// one second, rounded up to a whole number of seconds so that buckets line up
/// between requests.
pub fn bucket_width(since: f64, until: f64, max_points: usize) -> f64 {
    let span = (until - since).max(1.0);
    (span / max_points.max(1) as f64).ceil().max(1.0)
}

/// Accumulates values into fixed-width time buckets.
#[derive(Debug)]
pub struct Bucketer {
    since: f64,
    width: f64,
    acc: BTreeMap<i64, (f64, f64, f64, u64)>,
}

impl Bucketer {
    /// Buckets of `width` seconds aligned to multiples of `width` from the epoch.
    pub fn new(since: f64, width: f64) -> Self {
        Bucketer {
            since,
            width: width.max(1e-3),
            acc: BTreeMap::new(),
        }
    }

    /// Adds one sample.
    pub fn add(&mut self, ts: f64, v: f64) {
        if !v.is_finite() || ts < self.since {
            return;
        }
        let k = (ts / self.width).floor() as i64;
        let e = self
            .acc
            .entry(k)
            .or_insert((f64::INFINITY, f64::NEG_INFINITY, 0.0, 0));
        e.0 = e.0.min(v);
        e.1 = e.1.max(v);
        e.2 += v;
        e.3 += 1;
    }

    /// The buckets, oldest first.
    pub fn finish(self) -> Buckets {
        let mut out = Buckets::default();
        for (k, (min, max, sum, n)) in self.acc {
            out.push(k as f64 * self.width, min, max, sum / n as f64, n);
        }
        out
    }
}

/// Downsamples snapshots of one machine into at most `max_points` buckets.
pub fn bucket_snapshots(
    snapshots: &[Snapshot],
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
) -> Buckets {
    let mut b = Bucketer::new(since, bucket_width(since, until, max_points));
    for s in snapshots {
        if s.timestamp < until {
            if let Some(v) = metric.value(s) {
                b.add(s.timestamp, v);
            }
        }
    }
    b.finish()
}

/// Combines snapshots of many machines into one fleet series: per bucket, each
/// machine's average first, then across machines the mean (`avg`) or the
/// highest per-machine maximum (`max`). `min`/`max`/`avg` columns describe the
/// spread across machines; `count` is the number of machines in the bucket.
pub fn fleet_buckets(
    snapshots: &[Snapshot],
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
) -> Buckets {
    let width = bucket_width(since, until, max_points);
    // bucket -> machine -> (sum, n, max)
    let mut per: BTreeMap<i64, BTreeMap<&str, (f64, u64, f64)>> = BTreeMap::new();
    for s in snapshots {
        if s.timestamp < since || s.timestamp >= until {
            continue;
        }
        if let Some(v) = metric.value(s) {
            let k = (s.timestamp / width).floor() as i64;
            let e = per
                .entry(k)
                .or_default()
                .entry(s.machine_id.as_str())
                .or_insert((0.0, 0, f64::NEG_INFINITY));
            e.0 += v;
            e.1 += 1;
            e.2 = e.2.max(v);
        }
    }
    let mut out = Buckets::default();
    for (k, machines) in per {
        let n = machines.len() as u64;
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        let mut sum = 0.0;
        for (s, c, mx) in machines.values() {
            let avg = s / *c as f64;
            min = min.min(avg);
            max = max.max(*mx);
            sum += avg;
        }
        out.push(k as f64 * width, min, max, sum / n as f64, n);
    }
    out
}

/// The dashboard's read side. Every [`SnapshotStore`] can serve it through the
/// default methods; backends with rollups override `series` and `fleet`.
#[async_trait]
pub trait DashboardSource: SnapshotStore {
    /// A short name for logs and `/healthz` (`sqlite`, `redis+sqlite`).
    fn source_name(&self) -> &str {
        "store"
    }

    /// The newest snapshot of every machine.
    async fn latest_all(&self) -> Result<Vec<Snapshot>, StoreError> {
        let mut out = Vec::new();
        for m in self.machines().await? {
            if let Some(s) = self.latest(&m.machine_id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// One machine's `metric` over `[since, until)` in at most `max_points` buckets.
    async fn series(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Buckets, StoreError> {
        let rows = self
            .range(Some(machine_id), since, until, FALLBACK_SCAN_LIMIT)
            .await?;
        Ok(bucket_snapshots(&rows, metric, since, until, max_points))
    }

    /// `metric` across every machine over `[since, until)` (see [`fleet_buckets`]).
    async fn fleet(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        agg: FleetAgg,
    ) -> Result<Buckets, StoreError> {
        let _ = agg; // both aggregations are in the columns
        let rows = self.range(None, since, until, FALLBACK_SCAN_LIMIT).await?;
        Ok(fleet_buckets(&rows, metric, since, until, max_points))
    }

    /// Per-core CPU of one machine: one snapshot sampled per bucket (per-core
    /// values are not rolled up, so this reaches back as far as raw samples are
    /// kept). Returns `(timestamps, one column per core)`.
    async fn core_series(
        &self,
        machine_id: &str,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<(Vec<f64>, Vec<Vec<Option<f64>>>), StoreError> {
        let width = bucket_width(since, until, max_points);
        let mut ts = Vec::new();
        let mut cores: Vec<Vec<Option<f64>>> = Vec::new();
        let mut t = (since / width).floor() * width;
        while t < until {
            let rows = self
                .range(Some(machine_id), t.max(since), t + width, 1)
                .await?;
            if let Some(s) = rows.first() {
                if cores.len() < s.cpu_per_core.len() {
                    cores.resize(s.cpu_per_core.len(), vec![None; ts.len()]);
                }
                ts.push(s.timestamp);
                for (i, col) in cores.iter_mut().enumerate() {
                    col.push(s.cpu_per_core.get(i).copied());
                }
            }
            t += width;
        }
        Ok((ts, cores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::synth::SyntheticMachine;

    #[test]
    fn buckets_cover_the_range_and_keep_extremes() {
        let mut m = SyntheticMachine::new("a", 3);
        let t0 = 1_764_000_000.0;
        let rows: Vec<Snapshot> = (0..86_400)
            .map(|i| m.next_snapshot(t0 + i as f64, 0))
            .collect();
        let b = bucket_snapshots(&rows, Metric::Cpu, t0, t0 + 86_400.0, 1000);
        assert!(b.len() <= 1001 && b.len() >= 900, "{}", b.len());
        assert_eq!(b.count.iter().sum::<u64>(), 86_400);
        let true_max = rows.iter().map(|s| s.cpu_usage).fold(0.0, f64::max);
        let got_max = b.max.iter().copied().fold(0.0, f64::max);
        assert_eq!(true_max, got_max);
        for i in 0..b.len() {
            assert!(b.min[i] <= b.avg[i] && b.avg[i] <= b.max[i]);
        }
    }

    #[test]
    fn fleet_avg_and_max_across_machines() {
        let t0 = 1_764_000_000.0;
        let mut rows = Vec::new();
        for (id, cpu) in [("a", 10.0), ("b", 30.0), ("c", 80.0)] {
            for i in 0..10 {
                let mut s = Snapshot::new(id, t0 + i as f64);
                s.cpu_usage = cpu + i as f64 % 2.0;
                rows.push(s);
            }
        }
        let b = fleet_buckets(&rows, Metric::Cpu, t0, t0 + 10.0, 1);
        assert_eq!(b.len(), 1);
        assert_eq!(b.count[0], 3);
        assert!((b.avg[0] - 40.5).abs() < 1e-9, "{}", b.avg[0]);
        assert_eq!(b.max[0], 81.0);
        assert_eq!(b.min[0], 10.5);
    }
}
