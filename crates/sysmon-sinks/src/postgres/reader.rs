//! The read side's traits for the PostgreSQL history: [`HistoryReader`]
//! with downsampling in SQL (raw samples for short recent ranges, per-minute
//! rollups plus the minutes not rolled up yet beyond, as in SQLite), many
//! machines' sparklines in one statement, and [`AnalyticsReader`] over the
//! analytics tables.

use std::collections::HashMap;

use async_trait::async_trait;
use sysmon_core::alert::{ActiveAlert, AlertEvent, Anomaly, Episode};
use sysmon_core::read::{
    AnalyticsReader, Buckets, FleetAgg, HistoryReader, MachineGroup, Metric, SeriesQuery,
    SeriesTarget,
};
use sysmon_core::{Snapshot, StoreError};
use tokio_postgres::GenericClient;

use super::{maintain, read, to_store_error, PostgresSink, NAME};
use crate::error::SinksError;
use crate::sqlite::reader::FLEET_RAW_LIMIT_SECS;
use crate::sqlite::series::{bucket_width, raw_limit_ms, MetricColumns};

const MINUTE_MS: i64 = 60_000;

/// A validated window in milliseconds: the bucket width, and the rollup
/// minutes used (`rollup_lo..rollup_hi`, empty for a raw window).
#[derive(Debug, Clone, Copy)]
struct Window {
    since_ms: i64,
    until_ms: i64,
    width_ms: i64,
    rollup_lo: i64,
    rollup_hi: i64,
    horizon: i64,
}

impl Window {
    /// Whether rollup minutes serve part of the window (else it is raw only).
    fn uses_rollups(&self) -> bool {
        self.rollup_lo < self.rollup_hi
    }
}

fn window(
    since: f64,
    until: f64,
    max_points: usize,
    horizon: i64,
    raw_limit: i64,
) -> Result<Window, SinksError> {
    if !since.is_finite() || !until.is_finite() || since >= until {
        return Err(SinksError::InvalidInput(format!(
            "series range must be finite seconds since the epoch, since before until; \
             got {since}..{until}"
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
    let raw = range <= raw_limit && since_ms >= horizon;
    let width_ms = bucket_width(range, max_points, if raw { 1 } else { MINUTE_MS });
    let (rollup_lo, rollup_hi) = if raw {
        (0, 0)
    } else {
        (since_ms.div_euclid(MINUTE_MS) * MINUTE_MS, until_ms)
    };
    Ok(Window {
        since_ms,
        until_ms,
        width_ms,
        rollup_lo,
        rollup_hi,
        horizon,
    })
}

/// `WITH ... mb AS (...)`: one row per (machine, bucket) with sample count,
/// sum, min and max of `metric`, for the machines whose ids are in `$7`
/// (every machine when `$7` is NULL). Rollup minutes that are up to date
/// (not dirty, or before the raw horizon) serve their minute; raw samples
/// serve every other minute.
///
/// In a rollup window (`rollups`), raw samples are read only for the runs of
/// consecutive minutes no rollup serves (`gaps`: usually the newest minutes
/// and any dirty ones), each one index range scan, instead of reading every
/// sample of the window and discarding the covered ones (86,400 rows for a
/// machine's day, most of a 24 h series' time). `OFFSET 0` keeps the lateral
/// subquery a parameterised nested loop (partitions pruned per gap at run
/// time); flattened, the planner hash-joins every partition of the window.
/// Buckets are `date_bin` timestamps (integer arithmetic) until the
/// per-machine rows: `extract(epoch …)` is `numeric`, and computing the
/// bucket number with it for every row cost a fifth of a fleet query.
fn buckets_cte(metric: Metric, rollups: bool) -> Result<String, SinksError> {
    let col = metric.raw_column()?;
    let (n, p) = metric.rollup_columns()?;
    let raw = if rollups {
        format!(
            "gaps AS (
            SELECT machine, min(minute) AS lo, max(minute) + interval '1 minute' AS hi
            FROM (
                SELECT sel.id AS machine, m.minute,
                       m.minute - row_number() OVER (PARTITION BY sel.id ORDER BY m.minute)
                                  * interval '1 minute' AS run
                FROM sel CROSS JOIN generate_series(
                    timestamptz 'epoch' + $4::int8 * interval '1 millisecond',
                    timestamptz 'epoch' + ($5::int8 - 1) * interval '1 millisecond',
                    interval '1 minute') AS m(minute)
                WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.machine = sel.id AND r.minute = m.minute)
            ) uncovered
            GROUP BY machine, run
        ), raw AS (
            SELECT g.machine, s.time, s.v
            FROM gaps g CROSS JOIN LATERAL (
                SELECT s.time, s.{col}::float8 AS v FROM samples s
                WHERE s.machine = g.machine
                  AND s.time >= greatest(g.lo, timestamptz 'epoch' + $1::int8 * interval '1 millisecond')
                  AND s.time < least(g.hi, timestamptz 'epoch' + $2::int8 * interval '1 millisecond')
                  AND s.{col} IS NOT NULL
                OFFSET 0) s
        )"
        )
    } else {
        format!(
            "raw AS (
            SELECT s.machine, s.time, s.{col}::float8 AS v
            FROM samples s
            WHERE s.machine IN (SELECT id FROM sel)
              AND s.time >= timestamptz 'epoch' + $1::int8 * interval '1 millisecond'
              AND s.time < timestamptz 'epoch' + $2::int8 * interval '1 millisecond'
              AND s.{col} IS NOT NULL
        )"
        )
    };
    Ok(format!(
        "WITH sel AS (
            SELECT id FROM machines WHERE $7::text[] IS NULL OR machine_id = ANY($7::text[])
        ), r AS (
            SELECT r.machine, r.minute, r.{n}::int8 AS n, r.{p}_avg * r.{n} AS sum,
                   r.{p}_min AS mn, r.{p}_max AS mx
            FROM rollups r
            WHERE r.machine IN (SELECT id FROM sel)
              AND r.minute >= timestamptz 'epoch' + $4::int8 * interval '1 millisecond'
              AND r.minute < timestamptz 'epoch' + $5::int8 * interval '1 millisecond'
              AND (r.minute < timestamptz 'epoch' + $6::int8 * interval '1 millisecond'
                   OR NOT EXISTS (SELECT 1 FROM dirty_minutes d
                                  WHERE d.machine = r.machine AND d.minute = r.minute))
        ), {raw}, per AS (
            SELECT machine, date_bin($3::int8 * interval '1 millisecond', minute, timestamptz 'epoch') AS bt,
                   n, sum, mn, mx
            FROM r WHERE n > 0
            UNION ALL
            SELECT machine, date_bin($3::int8 * interval '1 millisecond', time, timestamptz 'epoch'),
                   1::int8, v, v, v
            FROM raw
        ), mb AS (
            SELECT machine, (extract(epoch FROM bt) * 1000)::int8 / $3::int8 AS b,
                   sum(n)::int8 AS n, sum(sum)::float8 AS sum,
                   min(mn)::float8 AS mn, max(mx)::float8 AS mx
            FROM per GROUP BY machine, bt
        )"
    ))
}

/// Appends one fleet-series row to `out`: from column `at` on, the bucket
/// number, mean of machine means, min, max, machines counted, p50 and p95
/// (the shape both fleet queries select).
fn push_fleet_row(
    out: &mut Buckets,
    r: &tokio_postgres::Row,
    at: usize,
    width_ms: i64,
) -> Result<(), SinksError> {
    let b: i64 = r.try_get(at)?;
    let machines: i64 = r.try_get(at + 4)?;
    out.push(
        (b * width_ms) as f64 / 1000.0,
        r.try_get(at + 2)?,
        r.try_get(at + 3)?,
        r.try_get(at + 1)?,
        machines.max(0) as u64,
    );
    out.push_spread(r.try_get(at + 5)?, r.try_get(at + 6)?);
    Ok(())
}

impl PostgresSink {
    /// The rows of `select` (run after [`buckets_cte`]) over `w` for `ids`.
    async fn bucket_rows(
        &self,
        metric: Metric,
        select: &str,
        w: &Window,
        ids: Option<Vec<String>>,
    ) -> Result<Vec<tokio_postgres::Row>, SinksError> {
        let sql = format!("{} {select}", buckets_cte(metric, w.uses_rollups())?);
        let client = self.client().await?;
        Ok(client
            .query(
                &sql,
                &[
                    &w.since_ms,
                    &w.until_ms,
                    &w.width_ms,
                    &w.rollup_lo,
                    &w.rollup_hi,
                    &w.horizon,
                    &ids,
                ],
            )
            .await?)
    }

    async fn horizon(&self) -> Result<i64, SinksError> {
        maintain::raw_horizon(&**self.client().await?).await
    }

    /// `machine_id`'s `metric` in at most `max_points` buckets (see [`HistoryReader::series`]).
    pub async fn machine_series(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Buckets, SinksError> {
        let ids = vec![machine_id.to_string()];
        let mut all = self
            .sparklines_of(ids, metric, since, until, max_points)
            .await?;
        Ok(all.remove(machine_id).unwrap_or_default())
    }

    /// The series of each of `ids` in one statement; machines without data are left out.
    pub async fn sparklines_of(
        &self,
        ids: Vec<String>,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<HashMap<String, Buckets>, SinksError> {
        let ids: Vec<String> = ids.into_iter().filter(|id| read::storable_id(id)).collect();
        let horizon = self.horizon().await?;
        let w = window(since, until, max_points, horizon, raw_limit_ms(1))?;
        let rows = self
            .bucket_rows(
                metric,
                "SELECT m.machine_id, mb.b, mb.n, mb.sum, mb.mn, mb.mx \
                 FROM mb JOIN machines m ON m.id = mb.machine WHERE mb.n > 0 \
                 ORDER BY m.machine_id, mb.b",
                &w,
                Some(ids),
            )
            .await?;
        let mut out: HashMap<String, Buckets> = HashMap::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let b: i64 = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let sum: f64 = r.try_get(3)?;
            out.entry(id).or_default().push(
                (b * w.width_ms) as f64 / 1000.0,
                r.try_get(4)?,
                r.try_get(5)?,
                sum / n as f64,
                n.max(0) as u64,
            );
        }
        Ok(out)
    }

    /// The window of a fleet series over `since..until`: raw or rollups by
    /// the number of machines seen since `since`, as for the whole fleet.
    async fn fleet_window(
        &self,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Window, SinksError> {
        let horizon = self.horizon().await?;
        let machines: i64 = self
            .client()
            .await?
            .query_one(
                "SELECT count(*) FROM machines WHERE last_seen >= $1",
                &[&since],
            )
            .await?
            .try_get(0)?;
        let limit = raw_limit_ms(usize::try_from(machines).unwrap_or(usize::MAX))
            .min((FLEET_RAW_LIMIT_SECS * 1000.0) as i64);
        window(since, until, max_points, horizon, limit)
    }

    /// The fleet series of each group of machine ids, in one statement (see
    /// [`HistoryReader::group_series`]); the window is the whole fleet's.
    pub async fn group_series_of(
        &self,
        metric: Metric,
        groups: &[Vec<String>],
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Buckets>, SinksError> {
        let w = self.fleet_window(since, until, max_points).await?;
        let mut ids: Vec<String> = Vec::new();
        let mut slots: Vec<i32> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let slot =
                i32::try_from(i).map_err(|_| SinksError::InvalidInput("too many groups".into()))?;
            for id in g.iter().filter(|id| read::storable_id(id)) {
                ids.push(id.clone());
                slots.push(slot);
            }
        }
        let sql = format!(
            "{} SELECT g.slot, mb.b, avg(mb.sum / mb.n), min(mb.mn), max(mb.mx), count(*)::int8, \
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY mb.sum / mb.n), \
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY mb.sum / mb.n) \
             FROM mb JOIN machines m ON m.id = mb.machine \
             JOIN unnest($7::text[], $8::int4[]) AS g(machine_id, slot) \
                  ON g.machine_id = m.machine_id \
             WHERE mb.n > 0 GROUP BY g.slot, mb.b ORDER BY g.slot, mb.b",
            buckets_cte(metric, w.uses_rollups())?
        );
        let client = self.client().await?;
        let rows = client
            .query(
                &sql,
                &[
                    &w.since_ms,
                    &w.until_ms,
                    &w.width_ms,
                    &w.rollup_lo,
                    &w.rollup_hi,
                    &w.horizon,
                    &ids,
                    &slots,
                ],
            )
            .await?;
        let mut out = vec![Buckets::default(); groups.len()];
        for r in rows {
            let slot: i32 = r.try_get(0)?;
            let Some(b) = usize::try_from(slot).ok().and_then(|i| out.get_mut(i)) else {
                continue;
            };
            push_fleet_row(b, &r, 1, w.width_ms)?;
        }
        Ok(out)
    }

    /// `metric` across the fleet: per bucket the mean of each machine's mean,
    /// the lowest and highest sample of any machine, and the machines counted.
    pub async fn fleet_series(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Buckets, SinksError> {
        let w = self.fleet_window(since, until, max_points).await?;
        let rows = self
            .bucket_rows(
                metric,
                "SELECT b, avg(sum / n), min(mn), max(mx), count(*)::int8, \
                        percentile_disc(0.5) WITHIN GROUP (ORDER BY sum / n), \
                        percentile_disc(0.95) WITHIN GROUP (ORDER BY sum / n) \
                 FROM mb WHERE n > 0 GROUP BY b ORDER BY b",
                &w,
                None,
            )
            .await?;
        let mut out = Buckets::default();
        for r in rows {
            push_fleet_row(&mut out, &r, 0, w.width_ms)?;
        }
        Ok(out)
    }
}

#[async_trait]
impl HistoryReader for PostgresSink {
    fn source_name(&self) -> &str {
        NAME
    }

    async fn latest_all(&self) -> Result<Vec<Snapshot>, StoreError> {
        PostgresSink::latest_all(self).await.map_err(to_store_error)
    }

    async fn series(&self, q: &SeriesQuery) -> Result<Buckets, StoreError> {
        let points = q.max_points.max(2);
        match &q.target {
            SeriesTarget::Machine(id) => self
                .machine_series(id, q.metric, q.since, q.until, points)
                .await
                .map_err(to_store_error),
            SeriesTarget::Fleet(FleetAgg::Avg | FleetAgg::Max) => self
                .fleet_series(q.metric, q.since, q.until, points)
                .await
                .map_err(to_store_error),
        }
    }

    async fn group_series(
        &self,
        metric: Metric,
        groups: &[MachineGroup],
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Buckets>, StoreError> {
        let ids: Vec<Vec<String>> = groups.iter().map(|g| g.machines.clone()).collect();
        self.group_series_of(metric, &ids, since, until, max_points.max(2))
            .await
            .map_err(to_store_error)
    }

    async fn sparklines(
        &self,
        machine_ids: &[String],
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<HashMap<String, Buckets>, StoreError> {
        self.sparklines_of(
            machine_ids.to_vec(),
            metric,
            since,
            until,
            max_points.max(2),
        )
        .await
        .map_err(to_store_error)
    }
}

/// A severity or state from its stored name.
fn parse_name<T: serde::de::DeserializeOwned>(what: &str, name: &str) -> Result<T, SinksError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| SinksError::Corrupt(format!("{what} {name:?}: {e}")))
}

async fn active_alerts(c: &impl GenericClient) -> Result<Vec<ActiveAlert>, SinksError> {
    let rows = c
        .query(
            "SELECT rule, severity, machine_id, subject, state, since, value, message
             FROM active_alerts ORDER BY state = 'firing' DESC, rule, machine_id, subject",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let machine: String = r.try_get(2)?;
            let subject: String = r.try_get(3)?;
            let value: Option<f64> = r.try_get(6)?;
            Ok(ActiveAlert {
                rule: r.try_get(0)?,
                severity: parse_name("active alert severity", r.try_get(1)?)?,
                machine_id: (!machine.is_empty()).then_some(machine),
                subject: (!subject.is_empty()).then_some(subject),
                state: parse_name("active alert state", r.try_get(4)?)?,
                since: r.try_get(5)?,
                value: value.unwrap_or(f64::NAN),
                message: r.try_get(7)?,
            })
        })
        .collect()
}

async fn alert_events(
    c: &impl GenericClient,
    since: f64,
    limit: usize,
) -> Result<Vec<AlertEvent>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT rule, severity, machine_id, subject, state, value, at, message
             FROM alert_events WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2",
            &[&since, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let value: Option<f64> = r.try_get(5)?;
            Ok(AlertEvent {
                rule: r.try_get(0)?,
                severity: parse_name("alert event severity", r.try_get(1)?)?,
                machine_id: r.try_get(2)?,
                subject: r.try_get(3)?,
                state: parse_name("alert event state", r.try_get(4)?)?,
                value: value.unwrap_or(f64::NAN),
                at: r.try_get(6)?,
                message: r.try_get(7)?,
            })
        })
        .collect()
}

async fn anomalies(
    c: &impl GenericClient,
    machine_id: Option<&str>,
    since: f64,
    limit: usize,
) -> Result<Vec<Anomaly>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT m.machine_id, a.ts, a.score, a.reasons, s.cpu, s.mem
             FROM anomaly_scores a
             JOIN machines m ON m.id = a.machine
             LEFT JOIN samples s ON s.machine = a.machine AND s.time = a.time
             WHERE a.anomaly AND a.ts >= $1 AND ($2::text IS NULL OR m.machine_id = $2)
             ORDER BY a.ts DESC LIMIT $3",
            &[&since, &machine_id, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let machine_id: String = r.try_get(0)?;
            let timestamp: f64 = r.try_get(1)?;
            let reasons: Option<String> = r.try_get(3)?;
            let reasons: Vec<String> = match reasons {
                Some(j) => serde_json::from_str(&j).map_err(|e| {
                    SinksError::Corrupt(format!(
                        "anomaly reasons of {machine_id:?} at {timestamp}: {e}"
                    ))
                })?,
                None => Vec::new(),
            };
            Ok(Anomaly {
                machine_id,
                timestamp,
                score: r.try_get(2)?,
                cpu: r.try_get(4)?,
                memory: r.try_get(5)?,
                message: reasons.join("; "),
            })
        })
        .collect()
}

/// Episodes that ended at or after `since`, newest start first.
async fn episodes(
    c: &impl GenericClient,
    machine_id: Option<&str>,
    since: f64,
    limit: usize,
) -> Result<Vec<Episode>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT machine_id, start, end_ts, peak_at, peak_score, samples, metrics, reasons, open
             FROM anomaly_episodes WHERE end_ts >= $1 AND ($2::text IS NULL OR machine_id = $2)
             ORDER BY start DESC LIMIT $3",
            &[&since, &machine_id, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let machine_id: String = r.try_get(0)?;
            let start: f64 = r.try_get(1)?;
            let list = |i: usize, what: &str| -> Result<Vec<String>, SinksError> {
                let j: String = r.try_get(i)?;
                serde_json::from_str(&j).map_err(|e| {
                    SinksError::Corrupt(format!(
                        "anomaly episode of {machine_id:?} at {start}: {what}: {e}"
                    ))
                })
            };
            Ok(Episode {
                metrics: list(6, "metrics")?,
                reasons: list(7, "reasons")?,
                end: r.try_get(2)?,
                peak_at: r.try_get(3)?,
                peak_score: r.try_get(4)?,
                samples: u32::try_from(r.try_get::<_, i32>(5)?).unwrap_or(0),
                open: r.try_get(8)?,
                machine_id,
                start,
            })
        })
        .collect()
}

#[async_trait]
impl AnalyticsReader for PostgresSink {
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, StoreError> {
        let c = self.client().await.map_err(to_store_error)?;
        active_alerts(&**c).await.map_err(to_store_error)
    }

    async fn alert_history(&self, since: f64, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        let c = self.client().await.map_err(to_store_error)?;
        alert_events(&**c, since, limit)
            .await
            .map_err(to_store_error)
    }

    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let c = self.client().await.map_err(to_store_error)?;
        anomalies(&**c, machine_id, since, limit)
            .await
            .map_err(to_store_error)
    }

    async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Episode>, StoreError> {
        let c = self.client().await.map_err(to_store_error)?;
        episodes(&**c, machine_id, since, limit)
            .await
            .map_err(to_store_error)
    }
}
