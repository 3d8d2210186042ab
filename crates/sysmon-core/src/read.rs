//! The read side as traits: what `sysmon query`, the dashboard and anything
//! else that reads history may ask a store, independent of the backend.
//!
//! * [`HistoryReader`]: a [`SnapshotStore`] plus downsampled series
//!   ([`SeriesQuery`] in, [`Buckets`] out), many machines' sparklines in one
//!   call, per-core CPU and top processes. Every method but those of
//!   [`SnapshotStore`] has a default that works from raw snapshots in memory
//!   (fine for short windows); backends with server-side downsampling
//!   (SQLite, PostgreSQL) override them.
//! * [`AnalyticsReader`]: what the analytics stored: active alerts, alert
//!   history, anomalies, in core's shared shapes ([`crate::alert`]).
//! * [`LiveFeed`]: stored batches as they arrive, as a stream (Redis pub/sub
//!   in `sysmon-sinks`; in-process the ingester's broadcast is used directly).
//!
//! The backends implement these in their own modules of `sysmon-sinks`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alert::{ActiveAlert, AlertEvent, Anomaly, Episode};
pub use crate::metric::{FleetAgg, Metric};
use crate::sink::Batch;
use crate::snapshot::{ProcessInfo, Snapshot};
use crate::store::{SnapshotStore, StoreError};

/// Whose series: one machine's, or the fleet's combined with an aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesTarget {
    /// One machine, by id.
    Machine(String),
    /// Every machine, combined per bucket (see [`fleet_buckets`]); the
    /// aggregation chooses which column the caller shows as the value.
    Fleet(FleetAgg),
}

/// A request for a downsampled series: whose, which metric, over
/// `[since, until)` (seconds since the epoch), in at most about `max_points`
/// buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// One machine or the fleet.
    pub target: SeriesTarget,
    /// What is charted.
    pub metric: Metric,
    /// Start of the range, inclusive.
    pub since: f64,
    /// End of the range, exclusive.
    pub until: f64,
    /// Most buckets wanted.
    pub max_points: usize,
}

impl SeriesQuery {
    /// One machine's `metric`.
    pub fn machine(
        machine_id: impl Into<String>,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Self {
        SeriesQuery {
            target: SeriesTarget::Machine(machine_id.into()),
            metric,
            since,
            until,
            max_points,
        }
    }

    /// The fleet's `metric`, aggregated with `agg`.
    pub fn fleet(metric: Metric, agg: FleetAgg, since: f64, until: f64, max_points: usize) -> Self {
        SeriesQuery {
            target: SeriesTarget::Fleet(agg),
            metric,
            since,
            until,
            max_points,
        }
    }

    /// The machine asked for, if the query is for one.
    pub fn machine_id(&self) -> Option<&str> {
        match &self.target {
            SeriesTarget::Machine(id) => Some(id),
            SeriesTarget::Fleet(_) => None,
        }
    }
}

/// A named set of machines whose series are combined into one (a grouped
/// fleet chart: one line per value of a label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineGroup {
    /// The group's name (a label value, `""` for machines without it, or
    /// the caller's name for what is left over).
    pub name: String,
    /// The machines in it, by id.
    pub machines: Vec<String>,
}

/// Per-core CPU of one machine: one sample per bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreSeries {
    /// The sampled snapshots' timestamps.
    pub ts: Vec<f64>,
    /// One column per core (`None` where a snapshot had fewer cores).
    pub cores: Vec<Vec<Option<f64>>>,
}

/// A machine's top processes, from its newest snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopProcesses {
    /// The machine.
    pub machine_id: String,
    /// The snapshot's timestamp.
    pub timestamp: f64,
    /// Top processes by CPU, highest first.
    pub top_cpu: Vec<ProcessInfo>,
    /// Top processes by memory, highest first.
    pub top_mem: Vec<ProcessInfo>,
}

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
    /// Fleet series only (empty otherwise): the median of the machines'
    /// means in the bucket (nearest rank).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub p50: Vec<f64>,
    /// Fleet series only (empty otherwise): the 95th percentile of the
    /// machines' means in the bucket (nearest rank: the `ceil(0.95 n)`-th).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub p95: Vec<f64>,
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

    /// Adds the spread across machines of the bucket pushed last (fleet series).
    pub fn push_spread(&mut self, p50: f64, p95: f64) {
        self.p50.push(p50);
        self.p95.push(p95);
    }
}

/// The nearest-rank `p` quantile (`0 < p <= 1`) of `sorted` (ascending, not
/// empty): the `ceil(p n)`-th value, as PostgreSQL's `percentile_disc`.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
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
        let mut means = Vec::with_capacity(machines.len());
        for (s, c, mx) in machines.values() {
            let avg = s / *c as f64;
            min = min.min(avg);
            max = max.max(*mx);
            sum += avg;
            means.push(avg);
        }
        means.sort_by(f64::total_cmp);
        out.push(k as f64 * width, min, max, sum / n as f64, n);
        out.push_spread(nearest_rank(&means, 0.5), nearest_rank(&means, 0.95));
    }
    out
}

/// Read access to stored history, as the dashboard and `sysmon query` need it.
#[async_trait]
pub trait HistoryReader: SnapshotStore {
    /// A short name for logs and `/healthz` (`sqlite`, `postgres`, `redis+sqlite`).
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

    /// A downsampled series (one machine's, or the fleet's: see [`fleet_buckets`]).
    async fn series(&self, q: &SeriesQuery) -> Result<Buckets, StoreError> {
        match &q.target {
            SeriesTarget::Machine(id) => {
                let rows = self
                    .range(Some(id), q.since, q.until, FALLBACK_SCAN_LIMIT)
                    .await?;
                Ok(bucket_snapshots(
                    &rows,
                    q.metric,
                    q.since,
                    q.until,
                    q.max_points,
                ))
            }
            SeriesTarget::Fleet(_) => {
                // Both aggregations are in the columns.
                let rows = self
                    .range(None, q.since, q.until, FALLBACK_SCAN_LIMIT)
                    .await?;
                Ok(fleet_buckets(
                    &rows,
                    q.metric,
                    q.since,
                    q.until,
                    q.max_points,
                ))
            }
        }
    }

    /// The fleet series ([`SeriesTarget::Fleet`]: per bucket avg, min, max,
    /// machines counted, p50 and p95 of the machines' means) of each group of
    /// machines over one window, one [`Buckets`] per group in the order of
    /// `groups` (empty for a group without data). Buckets have the width the
    /// ungrouped fleet series of the same window has, so the lines of a
    /// grouped chart line up with it. Backends answer it in one read; the
    /// default buckets raw snapshots in memory.
    async fn group_series(
        &self,
        metric: Metric,
        groups: &[MachineGroup],
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Buckets>, StoreError> {
        let of: HashMap<&str, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.machines.iter().map(move |m| (m.as_str(), i)))
            .collect();
        let mut rows: Vec<Vec<Snapshot>> = vec![Vec::new(); groups.len()];
        for s in self.range(None, since, until, FALLBACK_SCAN_LIMIT).await? {
            if let Some(&i) = of.get(s.machine_id.as_str()) {
                rows[i].push(s);
            }
        }
        Ok(rows
            .iter()
            .map(|r| fleet_buckets(r, metric, since, until, max_points))
            .collect())
    }

    /// The series of each of `machine_ids` over the same window (the
    /// overview's sparklines), in one call: machines without data are absent
    /// from the map. Backends answer it with one query; the default asks
    /// [`HistoryReader::series`] once per machine.
    async fn sparklines(
        &self,
        machine_ids: &[String],
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<HashMap<String, Buckets>, StoreError> {
        let mut out = HashMap::new();
        for id in machine_ids {
            let b = self
                .series(&SeriesQuery::machine(
                    id.clone(),
                    metric,
                    since,
                    until,
                    max_points,
                ))
                .await?;
            if !b.is_empty() {
                out.insert(id.clone(), b);
            }
        }
        Ok(out)
    }

    /// Per-core CPU of one machine: one snapshot sampled per bucket (per-core
    /// values are not rolled up, so this reaches back as far as raw samples are
    /// kept).
    async fn core_series(
        &self,
        machine_id: &str,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<CoreSeries, StoreError> {
        let width = bucket_width(since, until, max_points);
        let mut out = CoreSeries::default();
        let mut t = (since / width).floor() * width;
        while t < until {
            let rows = self
                .range(Some(machine_id), t.max(since), t + width, 1)
                .await?;
            if let Some(s) = rows.first() {
                if out.cores.len() < s.cpu_per_core.len() {
                    out.cores
                        .resize(s.cpu_per_core.len(), vec![None; out.ts.len()]);
                }
                out.ts.push(s.timestamp);
                for (i, col) in out.cores.iter_mut().enumerate() {
                    col.push(s.cpu_per_core.get(i).copied());
                }
            }
            t += width;
        }
        Ok(out)
    }

    /// The top processes of a machine's newest snapshot (`None` for an unknown machine).
    async fn processes(&self, machine_id: &str) -> Result<Option<TopProcesses>, StoreError> {
        Ok(self.latest(machine_id).await?.map(|s| TopProcesses {
            machine_id: s.machine_id,
            timestamp: s.timestamp,
            top_cpu: s.top_cpu_processes,
            top_mem: s.top_mem_processes,
        }))
    }
}

/// What the ingester's analytics stored: alerts and anomalies.
#[async_trait]
pub trait AnalyticsReader: Send + Sync {
    /// The pending and firing alerts, firing first.
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, StoreError>;

    /// Alert transitions since `since`, newest first, at most `limit`.
    async fn alert_history(&self, since: f64, limit: usize) -> Result<Vec<AlertEvent>, StoreError>;

    /// Flagged samples since `since`, of one machine or all, newest first,
    /// at most `limit`.
    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Anomaly>, StoreError>;

    /// Anomaly episodes that ended at or after `since` (open ones included),
    /// of one machine or all, newest start first, at most `limit`.
    async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Episode>, StoreError>;
}

/// A stream of stored batches.
pub type BatchStream = Pin<Box<dyn Stream<Item = Batch> + Send + 'static>>;

/// Stored batches as they arrive, from another process (the ingester's Redis
/// channel). The stream reconnects by itself after an outage and ends only
/// when `shutdown` fires.
pub trait LiveFeed: Send + Sync {
    /// The feed's name in `/healthz` and the UI (`redis`).
    fn kind(&self) -> &'static str;

    /// Starts following the feed.
    fn subscribe(&self, shutdown: CancellationToken) -> BatchStream;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::SyntheticMachine;

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
        // Machine means 10.5, 30.5, 80.5: median the 2nd, p95 the 3rd.
        assert_eq!((b.p50[0], b.p95[0]), (30.5, 80.5));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(
            nearest_rank(&(1..=20).map(f64::from).collect::<Vec<_>>(), 0.95),
            19.0
        );
    }
}
