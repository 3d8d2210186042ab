//! Server-side downsampled time series for charts: per machine and across the fleet.
//!
//! A series is cut into at most about `max_points` buckets of equal width,
//! aligned to multiples of the width since the epoch (so buckets stay put
//! while a live chart's window slides). Each bucket carries min, max, avg and
//! the number of samples; empty buckets are left out.
//!
//! Short ranges (up to [`RAW_RANGE_LIMIT_SECS`] for one machine; for the fleet,
//! up to [`FLEET_RAW_BUDGET_MACHINE_SECS`] divided by the number of machines)
//! within the raw retention are computed from raw samples; longer or older
//! ranges from the per-minute
//! rollups (buckets are then whole minutes), with the minutes not yet rolled
//! up (since the last maintenance) taken from raw samples, so the newest data
//! is always there.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::keys::{self, TS_MASK};
use super::write::MINUTE_MS;
use crate::error::SinksError;

/// Ranges up to this long are charted from raw samples (when still retained).
pub const RAW_RANGE_LIMIT_SECS: f64 = 6.0 * 3600.0;

/// A fleet series is computed from raw samples while `range (s) x machines`
/// stays within this budget (100 machines: ranges up to 1,000 s), so that a
/// fleet chart never scans more than about 100,000 raw rows.
pub const FLEET_RAW_BUDGET_MACHINE_SECS: f64 = 100_000.0;

pub(crate) fn raw_limit_ms(machines: usize) -> i64 {
    let fleet = FLEET_RAW_BUDGET_MACHINE_SECS / machines.max(1) as f64;
    (RAW_RANGE_LIMIT_SECS.min(fleet) * 1000.0) as i64
}

pub use sysmon_core::metric::{FleetAgg, Metric, UnknownName as ParseNameError};
use sysmon_core::read::nearest_rank;

/// Where each charted [`Metric`] ([`Metric::CHARTS`]) lives in this sink's
/// tables; the other metrics have no series (an `InvalidInput` error).
pub(crate) trait MetricColumns {
    /// The raw `samples` column.
    fn raw_column(self) -> Result<&'static str, SinksError>;
    /// The `rollups` columns: (sample count, prefix of `_avg`/`_min`/`_max`).
    fn rollup_columns(self) -> Result<(&'static str, &'static str), SinksError>;
}

fn not_charted(m: Metric) -> SinksError {
    SinksError::InvalidInput(format!(
        "metric {} has no stored series; charted: {}",
        m.name(),
        Metric::names().join(", ")
    ))
}

impl MetricColumns for Metric {
    fn raw_column(self) -> Result<&'static str, SinksError> {
        Ok(match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "mem",
            Metric::DiskRead => "disk_read_rate",
            Metric::DiskWrite => "disk_write_rate",
            Metric::NetSent => "net_sent_rate",
            Metric::NetRecv => "net_recv_rate",
            Metric::Load1 => "load1",
            Metric::Swap => "swap_used",
            _ => return Err(not_charted(self)),
        })
    }

    fn rollup_columns(self) -> Result<(&'static str, &'static str), SinksError> {
        Ok(match self {
            Metric::Cpu => ("n", "cpu"),
            Metric::Memory => ("n", "mem"),
            Metric::DiskRead => ("n_disk", "disk_read"),
            Metric::DiskWrite => ("n_disk", "disk_write"),
            Metric::NetSent => ("n_net", "net_sent"),
            Metric::NetRecv => ("n_net", "net_recv"),
            Metric::Load1 => ("n_load", "load1"),
            Metric::Swap => ("n_swap", "swap"),
            _ => return Err(not_charted(self)),
        })
    }
}

/// Where a series is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeriesSource {
    /// Raw samples for short recent ranges, rollups otherwise (see the module docs).
    #[default]
    Auto,
    /// Raw samples only (finest resolution; slower over long ranges, empty past raw retention).
    Raw,
    /// Per-minute rollups (plus raw samples for the minutes not rolled up yet).
    Rollups,
}

/// One bucket of a machine's series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket, seconds since the epoch.
    pub ts: f64,
    /// Lowest sample in the bucket.
    pub min: f64,
    /// Highest sample in the bucket.
    pub max: f64,
    /// Mean of the samples in the bucket.
    pub avg: f64,
    /// Number of samples in the bucket.
    pub count: u64,
}

/// One bucket of a fleet series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FleetBucket {
    /// Start of the bucket, seconds since the epoch.
    pub ts: f64,
    /// The aggregate asked for: [`FleetBucket::avg`] for [`FleetAgg::Avg`],
    /// [`FleetBucket::max`] for [`FleetAgg::Max`].
    pub value: f64,
    /// Mean over machines of each machine's mean in the bucket (machines weigh equally).
    pub avg: f64,
    /// Lowest sample of any machine in the bucket.
    pub min: f64,
    /// Highest sample of any machine in the bucket.
    pub max: f64,
    /// Machines with samples in the bucket.
    pub machines: u32,
    /// Samples in the bucket, all machines together.
    pub count: u64,
    /// Median of the machines' means in the bucket (nearest rank).
    pub p50: f64,
    /// 95th percentile of the machines' means in the bucket (nearest rank).
    pub p95: f64,
}

/// Running aggregate of one bucket of one machine.
#[derive(Debug, Clone, Copy)]
struct Acc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    fn merge(&mut self, o: Acc) {
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

type Buckets = BTreeMap<i64, Acc>;

/// A validated query window in milliseconds, with its bucket width.
#[derive(Debug, Clone, Copy)]
struct Window {
    since_ms: i64,
    until_ms: i64,
    width_ms: i64,
    raw: bool,
}

/// The bucket width for `range_ms` split into at most `max_points` epoch-aligned
/// buckets, rounded up to a multiple of `granularity_ms`.
pub(crate) fn bucket_width(range_ms: i64, max_points: usize, granularity_ms: i64) -> i64 {
    // Epoch-aligned buckets can straddle both ends: n - 1 widths leave room for n buckets.
    let n = i64::try_from(max_points.saturating_sub(1).max(1)).unwrap_or(i64::MAX);
    let w = (range_ms.max(1) + n - 1) / n;
    let g = granularity_ms.max(1);
    ((w.max(1) + g - 1) / g).saturating_mul(g)
}

fn window(
    since: f64,
    until: f64,
    max_points: usize,
    source: SeriesSource,
    raw_horizon_ms: i64,
    raw_limit_ms: i64,
) -> Result<Window, SinksError> {
    if !since.is_finite() || !until.is_finite() {
        return Err(SinksError::InvalidInput(format!(
            "series range must be finite seconds since the epoch, got {since}..{until}"
        )));
    }
    if since >= until {
        return Err(SinksError::InvalidInput(format!(
            "series range is empty or reversed: since {since} >= until {until}"
        )));
    }
    if max_points == 0 {
        return Err(SinksError::InvalidInput(
            "max_points must be at least 1".into(),
        ));
    }
    let since_ms = (since * 1000.0).floor() as i64;
    let until_ms = (until * 1000.0).ceil() as i64;
    let range = until_ms.saturating_sub(since_ms);
    let raw = match source {
        SeriesSource::Raw => true,
        SeriesSource::Rollups => false,
        SeriesSource::Auto => range <= raw_limit_ms && since_ms >= raw_horizon_ms,
    };
    let width_ms = bucket_width(range, max_points, if raw { 1 } else { MINUTE_MS });
    Ok(Window {
        since_ms,
        until_ms,
        width_ms,
        raw,
    })
}

/// `meta.raw_horizon_ms`: raw samples before it were deleted by retention.
pub(crate) fn raw_horizon(conn: &Connection) -> Result<i64, SinksError> {
    let v: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'raw_horizon_ms'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(i64::MIN))
}

pub(crate) fn machine_key(conn: &Connection, machine_id: &str) -> Result<Option<i64>, SinksError> {
    Ok(conn
        .prepare_cached("SELECT id FROM machines WHERE machine_id = ?1")?
        .query_row(params![machine_id], |r| r.get(0))
        .optional()?)
}

fn merge_into(out: &mut Buckets, b: i64, acc: Acc) {
    out.entry(b).and_modify(|a| a.merge(acc)).or_insert(acc);
}

/// Aggregates raw samples with `lo <= ts_ms < hi` into `out`. The rows come in
/// time order from one key range, so buckets are filled one after the other
/// in Rust (cheaper than SQLite's GROUP BY, which would sort).
fn raw_part(
    conn: &Connection,
    machine: i64,
    metric: Metric,
    lo: i64,
    hi: i64,
    width: i64,
    out: &mut Buckets,
) -> Result<(), SinksError> {
    if lo >= hi {
        return Ok(());
    }
    let col = metric.raw_column()?;
    let (klo, khi) = keys::sample_range(machine, lo, hi);
    let sql = format!(
        "SELECT key & {TS_MASK}, {col} FROM samples \
         WHERE key >= ?1 AND key < ?2 AND {col} IS NOT NULL"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![klo, khi])?;
    let mut current: Option<(i64, Acc)> = None;
    while let Some(r) = rows.next()? {
        let ts: i64 = r.get(0)?;
        let v: f64 = r.get(1)?;
        let b = ts.div_euclid(width);
        match &mut current {
            Some((cb, acc)) if *cb == b => {
                acc.n += 1;
                acc.sum += v;
                acc.min = acc.min.min(v);
                acc.max = acc.max.max(v);
            }
            _ => {
                if let Some((cb, acc)) = current.take() {
                    merge_into(out, cb, acc);
                }
                current = Some((
                    b,
                    Acc {
                        n: 1,
                        sum: v,
                        min: v,
                        max: v,
                    },
                ));
            }
        }
    }
    if let Some((cb, acc)) = current {
        merge_into(out, cb, acc);
    }
    Ok(())
}

/// Aggregates rollup minutes with `lo <= minute_ms < hi` into `out`
/// (`width` is a multiple of a minute, so a minute never spans two buckets).
fn rollup_part(
    conn: &Connection,
    machine: i64,
    metric: Metric,
    lo: i64,
    hi: i64,
    width: i64,
    out: &mut Buckets,
) -> Result<(), SinksError> {
    if lo >= hi {
        return Ok(());
    }
    let (n, p) = metric.rollup_columns()?;
    let sql = format!(
        "SELECT minute_ms / ?4 AS b, sum({n}), total({p}_avg * {n}), min({p}_min), max({p}_max) \
         FROM rollups WHERE machine = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 AND {n} > 0 \
         GROUP BY b"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![machine, lo, hi, width])?;
    while let Some(r) = rows.next()? {
        let acc = Acc {
            n: r.get::<_, i64>(1)?.max(0) as u64,
            sum: r.get(2)?,
            min: r.get(3)?,
            max: r.get(4)?,
        };
        merge_into(out, r.get(0)?, acc);
    }
    Ok(())
}

/// The first millisecond of `machine`'s history not covered by up-to-date
/// rollups: after its newest rollup, or at its oldest minute written since the
/// last maintenance, but never before the raw horizon (raw is incomplete there).
fn rollup_tail_start(conn: &Connection, machine: i64, horizon: i64) -> Result<i64, SinksError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT max(minute_ms) FROM rollups WHERE machine = ?1")?
        .query_row(params![machine], |r| r.get(0))?;
    let dirty: Option<i64> = conn
        .prepare_cached(
            "SELECT min(minute_ms) FROM dirty_minutes WHERE machine = ?1 AND minute_ms >= ?2",
        )?
        .query_row(params![machine, horizon], |r| r.get(0))?;
    let mut tail = last.map_or(i64::MIN, |m| m.saturating_add(MINUTE_MS));
    if let Some(d) = dirty {
        tail = tail.min(d);
    }
    Ok(tail.max(horizon))
}

/// One machine's buckets over `w`.
fn machine_buckets(
    conn: &Connection,
    machine: i64,
    metric: Metric,
    w: &Window,
    horizon: i64,
) -> Result<Buckets, SinksError> {
    let mut out = Buckets::new();
    if w.raw {
        raw_part(
            conn, machine, metric, w.since_ms, w.until_ms, w.width_ms, &mut out,
        )?;
    } else {
        let tail = rollup_tail_start(conn, machine, horizon)?;
        let first_minute = w.since_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        rollup_part(
            conn,
            machine,
            metric,
            first_minute,
            w.until_ms.min(tail),
            w.width_ms,
            &mut out,
        )?;
        raw_part(
            conn,
            machine,
            metric,
            w.since_ms.max(tail),
            w.until_ms,
            w.width_ms,
            &mut out,
        )?;
    }
    Ok(out)
}

/// A machine's series; an unknown machine has an empty series.
pub(crate) fn series(
    conn: &Connection,
    machine_id: &str,
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
    source: SeriesSource,
) -> Result<Vec<Bucket>, SinksError> {
    let horizon = raw_horizon(conn)?;
    let w = window(since, until, max_points, source, horizon, raw_limit_ms(1))?;
    let Some(machine) = machine_key(conn, machine_id)? else {
        return Ok(Vec::new());
    };
    let buckets = machine_buckets(conn, machine, metric, &w, horizon)?;
    Ok(buckets
        .into_iter()
        .filter(|(_, a)| a.n > 0)
        .map(|(b, a)| Bucket {
            ts: (b * w.width_ms) as f64 / 1000.0,
            min: a.min,
            max: a.max,
            avg: a.sum / a.n as f64,
            count: a.n,
        })
        .collect())
}

/// The fleet's series: every machine's buckets combined.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fleet_series(
    conn: &Connection,
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
    agg: FleetAgg,
    source: SeriesSource,
) -> Result<Vec<FleetBucket>, SinksError> {
    let mut all = combined(conn, metric, since, until, max_points, agg, source, None)?;
    Ok(all.pop().unwrap_or_default())
}

/// The fleet series of each group of machines (`groups`: machine ids), in
/// the order given; the window and bucket width are those of
/// [`fleet_series`] over the same range, so the groups' lines align with it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_series(
    conn: &Connection,
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
    source: SeriesSource,
    groups: &[Vec<String>],
) -> Result<Vec<Vec<FleetBucket>>, SinksError> {
    combined(
        conn,
        metric,
        since,
        until,
        max_points,
        FleetAgg::Avg,
        source,
        Some(groups),
    )
}

/// Every machine's buckets combined, into one series (`groups` `None`) or
/// one per group of machine ids (a machine in no group is left out).
#[allow(clippy::too_many_arguments)]
fn combined(
    conn: &Connection,
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
    agg: FleetAgg,
    source: SeriesSource,
    groups: Option<&[Vec<String>]>,
) -> Result<Vec<Vec<FleetBucket>>, SinksError> {
    let horizon = raw_horizon(conn)?;
    // Machines not seen since `since` have nothing in the range.
    let machines: Vec<(i64, String)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, machine_id FROM machines WHERE last_seen >= ?1 ORDER BY id",
        )?;
        let ids = stmt.query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        ids.collect::<Result<_, _>>()?
    };
    // The window depends on the whole fleet, grouped or not.
    let w = window(
        since,
        until,
        max_points,
        source,
        horizon,
        raw_limit_ms(machines.len()),
    )?;
    let group_of: Option<std::collections::HashMap<&str, usize>> = groups.map(|g| {
        g.iter()
            .enumerate()
            .flat_map(|(i, ids)| ids.iter().map(move |id| (id.as_str(), i)))
            .collect()
    });
    struct Fleet {
        mean_sum: f64,
        machines: u32,
        n: u64,
        min: f64,
        max: f64,
        means: Vec<f64>,
    }
    let n_out = groups.map_or(1, <[Vec<String>]>::len);
    let mut out: Vec<BTreeMap<i64, Fleet>> = (0..n_out).map(|_| BTreeMap::new()).collect();
    for (machine, machine_id) in machines {
        let slot = match &group_of {
            None => 0,
            Some(g) => match g.get(machine_id.as_str()) {
                Some(&i) => i,
                None => continue,
            },
        };
        let fleet = &mut out[slot];
        for (b, a) in machine_buckets(conn, machine, metric, &w, horizon)? {
            if a.n == 0 {
                continue;
            }
            let mean = a.sum / a.n as f64;
            let f = fleet.entry(b).or_insert(Fleet {
                mean_sum: 0.0,
                machines: 0,
                n: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                means: Vec::new(),
            });
            f.means.push(mean);
            f.mean_sum += mean;
            f.machines += 1;
            f.n += a.n;
            f.min = f.min.min(a.min);
            f.max = f.max.max(a.max);
        }
    }
    Ok(out
        .into_iter()
        .map(|fleet| {
            fleet
                .into_iter()
                .map(|(b, mut f)| {
                    let avg = f.mean_sum / f64::from(f.machines);
                    f.means.sort_by(f64::total_cmp);
                    FleetBucket {
                        p50: nearest_rank(&f.means, 0.5),
                        p95: nearest_rank(&f.means, 0.95),
                        ts: (b * w.width_ms) as f64 / 1000.0,
                        value: match agg {
                            FleetAgg::Avg => avg,
                            FleetAgg::Max => f.max,
                        },
                        avg,
                        min: f.min,
                        max: f.max,
                        machines: f.machines,
                        count: f.n,
                    }
                })
                .collect()
        })
        .collect())
}

/// The series of each of `machine_ids` over one window (the dashboard's
/// sparklines), by machine id; machines without data are left out. Raw
/// windows (the overview's ranges up to [`RAW_RANGE_LIMIT_SECS`]) are one
/// statement over every machine's key range; rollup windows go machine by
/// machine (rollups plus the raw tail), on the same connection.
pub(crate) fn sparklines(
    conn: &Connection,
    machine_ids: &[String],
    metric: Metric,
    since: f64,
    until: f64,
    max_points: usize,
) -> Result<Vec<(String, Vec<Bucket>)>, SinksError> {
    let horizon = raw_horizon(conn)?;
    let w = window(
        since,
        until,
        max_points,
        SeriesSource::Auto,
        horizon,
        raw_limit_ms(1),
    )?;
    let bucket = |b: i64, a: Acc| Bucket {
        ts: (b * w.width_ms) as f64 / 1000.0,
        min: a.min,
        max: a.max,
        avg: a.sum / a.n as f64,
        count: a.n,
    };
    let mut out: Vec<(String, Vec<Bucket>)> = Vec::new();
    if w.raw {
        let col = metric.raw_column()?;
        let clamp = |t: i64| t.clamp(0, TS_MASK + 1);
        let ids = serde_json::to_string(machine_ids)
            .map_err(|e| SinksError::InvalidInput(format!("machine ids: {e}")))?;
        let sql = format!(
            "SELECT m0.machine_id, (s.key & {TS_MASK}) / ?3 AS b, count(s.{col}), \
                    total(s.{col}), min(s.{col}), max(s.{col}) \
             FROM machines m0 \
             JOIN samples s ON s.key >= ((m0.id << {TS_BITS}) + ?1) \
                 AND s.key < ((m0.id << {TS_BITS}) + ?2) \
             WHERE m0.machine_id IN (SELECT value FROM json_each(?4)) \
               AND s.{col} IS NOT NULL \
             GROUP BY m0.id, b ORDER BY m0.machine_id, b",
            TS_BITS = keys::TS_BITS
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![
            clamp(w.since_ms),
            clamp(w.until_ms),
            w.width_ms,
            ids
        ])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let acc = Acc {
                n: r.get::<_, i64>(2)?.max(0) as u64,
                sum: r.get(3)?,
                min: r.get(4)?,
                max: r.get(5)?,
            };
            if acc.n == 0 {
                continue;
            }
            let b = bucket(r.get(1)?, acc);
            match out.last_mut() {
                Some((last, list)) if *last == id => list.push(b),
                _ => out.push((id, vec![b])),
            }
        }
    } else {
        for id in machine_ids {
            let Some(machine) = machine_key(conn, id)? else {
                continue;
            };
            let list: Vec<Bucket> = machine_buckets(conn, machine, metric, &w, horizon)?
                .into_iter()
                .filter(|(_, a)| a.n > 0)
                .map(|(b, a)| bucket(b, a))
                .collect();
            if !list.is_empty() {
                out.push((id.clone(), list));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_widths_keep_the_count_within_max_points() {
        // 24 h in 1,000 points.
        let day = 86_400_000;
        let w = bucket_width(day, 1000, 1);
        assert_eq!(w, 86_487);
        // Epoch-aligned buckets spanned by any window of that length.
        for start in [0i64, 1, 86_486, 1_764_086_400_123] {
            let first = start.div_euclid(w);
            let last = (start + day - 1).div_euclid(w);
            assert!(last - first < 1000, "{}", last - first + 1);
        }
        // Rollup widths are whole minutes.
        assert_eq!(bucket_width(7 * day, 1000, MINUTE_MS) % MINUTE_MS, 0);
        assert_eq!(bucket_width(10, 1000, MINUTE_MS), MINUTE_MS);
        assert_eq!(bucket_width(10, 1000, 1), 1);
    }

    #[test]
    fn bad_windows_are_errors() {
        let w = |s, u, n| window(s, u, n, SeriesSource::Auto, 0, 1);
        assert!(w(10.0, 10.0, 10).is_err());
        assert!(w(11.0, 10.0, 10).is_err());
        assert!(w(f64::NAN, 10.0, 10).is_err());
        assert!(w(0.0, f64::INFINITY, 10).is_err());
        assert!(w(0.0, 10.0, 0).is_err());
        assert!(w(0.0, 10.0, 1).is_ok());
    }
}
