//! Housekeeping: time partitions, retention, per-minute rollups.
//!
//! * Partitions: `samples`, `processes` and `anomaly_scores` have one partition
//!   per hour, `rollups` and `alert_events` one per day, named after their
//!   start (`samples_p2026120705`, `rollups_p20261207`). Maintenance creates
//!   them [`PostgresConfig::partitions_ahead`](super::PostgresConfig) ahead; a
//!   writer creates a missing one on demand (a late or early sample) before
//!   its batch, under an advisory lock so that two never race.
//! * Retention drops whole partitions once their end is older than the
//!   retention: never a mass `DELETE`. Raw data is therefore kept up to one
//!   hour longer than `raw_retention`, rollups up to a day longer.
//! * Rollups are exact and idempotent, as in SQLite: every batch marks the
//!   `(machine, minute)`s it touched in `dirty_minutes` in its transaction;
//!   maintenance takes marks off in chunks and recomputes those minutes from
//!   the raw samples (deduplicated by key, so a replay changes nothing). A
//!   minute before the *raw horizon* (the end of the newest dropped samples
//!   partition) keeps the rollup it had when its raw data was complete.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::error::SinksError;

/// One hour in milliseconds.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The advisory lock partition creation serialises on ("sysmon" "part").
const PARTITION_LOCK: i64 = 0x7379_736d_7061_7274;

/// Dirty minutes recomputed per statement.
const ROLLUP_CHUNK: i64 = 20_000;

/// A partitioned table and the width of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Partitioned {
    /// The parent table.
    pub(crate) table: &'static str,
    /// Partition width in milliseconds ([`HOUR_MS`] or [`DAY_MS`]).
    pub(crate) width_ms: i64,
}

/// Raw samples.
pub(crate) const SAMPLES: Partitioned = Partitioned {
    table: "samples",
    width_ms: HOUR_MS,
};
/// Top processes.
pub(crate) const PROCESSES: Partitioned = Partitioned {
    table: "processes",
    width_ms: HOUR_MS,
};
/// Anomaly scores.
pub(crate) const ANOMALY_SCORES: Partitioned = Partitioned {
    table: "anomaly_scores",
    width_ms: HOUR_MS,
};
/// Per-minute rollups.
pub(crate) const ROLLUPS: Partitioned = Partitioned {
    table: "rollups",
    width_ms: DAY_MS,
};
/// Alert transitions.
pub(crate) const ALERT_EVENTS: Partitioned = Partitioned {
    table: "alert_events",
    width_ms: DAY_MS,
};

/// Tables kept for the raw retention.
const RAW_TABLES: [Partitioned; 3] = [SAMPLES, PROCESSES, ANOMALY_SCORES];
/// Tables kept for the rollup retention.
const LONG_TABLES: [Partitioned; 2] = [ROLLUPS, ALERT_EVENTS];

/// (year, month, day) of a day number since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day number since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Partitioned {
    /// The start of the partition holding `ms`.
    pub(crate) fn start_of(&self, ms: i64) -> i64 {
        ms.div_euclid(self.width_ms) * self.width_ms
    }

    /// The partition's name for a start.
    pub(crate) fn name(&self, start_ms: i64) -> String {
        let (y, m, d) = civil_from_days(start_ms.div_euclid(DAY_MS));
        if self.width_ms == HOUR_MS {
            let h = start_ms.rem_euclid(DAY_MS) / HOUR_MS;
            format!("{}_p{y:04}{m:02}{d:02}{h:02}", self.table)
        } else {
            format!("{}_p{y:04}{m:02}{d:02}", self.table)
        }
    }

    /// The start of a partition named by [`Partitioned::name`], if it is one.
    pub(crate) fn parse(&self, name: &str) -> Option<i64> {
        let digits = name.strip_prefix(self.table)?.strip_prefix("_p")?;
        let want = if self.width_ms == HOUR_MS { 10 } else { 8 };
        if digits.len() != want || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let y: i64 = digits[0..4].parse().ok()?;
        let m: u32 = digits[4..6].parse().ok()?;
        let d: u32 = digits[6..8].parse().ok()?;
        let h: i64 = if want == 10 {
            digits[8..10].parse().ok()?
        } else {
            0
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 {
            return None;
        }
        Some(days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS)
    }
}

/// A timestamp literal PostgreSQL reads the same in every time zone.
fn literal(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The partitions this process knows exist (saves a round trip per batch).
#[derive(Debug, Default)]
pub(crate) struct PartitionCache {
    known: Mutex<HashSet<(&'static str, i64)>>,
}

impl PartitionCache {
    fn missing(&self, t: Partitioned, starts: impl Iterator<Item = i64>) -> Vec<i64> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<i64> = starts.filter(|s| !known.contains(&(t.table, *s))).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn insert(&self, t: Partitioned, starts: &[i64]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(starts.iter().map(|s| (t.table, *s)));
    }

    /// Forgets everything (after a write found a partition missing: another
    /// ingester's retention dropped it).
    pub(crate) fn clear(&self) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Makes sure the partitions of `t` starting at `starts` exist. Returns how
    /// many were created.
    pub(crate) async fn ensure(
        &self,
        client: &mut Client,
        t: Partitioned,
        starts: impl Iterator<Item = i64> + Send,
    ) -> Result<u64, SinksError> {
        let missing = self.missing(t, starts);
        if missing.is_empty() {
            return Ok(0);
        }
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await?;
        let mut created = 0;
        for &start in &missing {
            let name = t.name(start);
            let exists: bool = tx
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await?
                .get(0);
            if !exists {
                tx.batch_execute(&format!(
                    "CREATE TABLE {name} PARTITION OF {} FOR VALUES FROM ('{}') TO ('{}')",
                    t.table,
                    literal(start),
                    literal(start + t.width_ms)
                ))
                .await?;
                created += 1;
            }
        }
        tx.commit().await?;
        self.insert(t, &missing);
        if created > 0 {
            tracing::debug!(table = t.table, created, "postgres partitions created");
        }
        Ok(created)
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PostgresMaintenance {
    /// Partitions created ahead.
    pub partitions_created: u64,
    /// Partitions dropped by retention.
    pub partitions_dropped: u64,
    /// Machine-minutes whose rollups were recomputed.
    pub minutes_rolled_up: u64,
    /// Machines forgotten because no data of theirs is left.
    pub machines_forgotten: u64,
}

/// The existing partitions of `t`, by start.
async fn partitions(
    client: &impl GenericClient,
    t: Partitioned,
) -> Result<Vec<(i64, String)>, SinksError> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::text::regclass",
            &[&t.table],
        )
        .await?;
    let mut out: Vec<(i64, String)> = rows
        .into_iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            t.parse(&name).map(|s| (s, name))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The raw horizon (ms): minutes before it have lost raw samples to retention.
pub(crate) async fn raw_horizon(client: &impl GenericClient) -> Result<i64, SinksError> {
    let v: Option<String> = client
        .query_opt(
            "SELECT value FROM sysmon_meta WHERE key = 'raw_horizon_ms'",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    // Sample timestamps start at the epoch (see `crate::sqlite::keys`).
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Drops the partitions of `tables` that end at or before `cutoff_ms`; returns
/// how many and the end of the newest dropped.
async fn drop_expired(
    client: &mut Client,
    tables: &[Partitioned],
    cutoff_ms: i64,
) -> Result<(u64, Option<i64>), SinksError> {
    let mut dropped = 0;
    let mut newest_end = None;
    for &t in tables {
        for (start, name) in partitions(client, t).await? {
            let end = start + t.width_ms;
            if end > cutoff_ms {
                continue;
            }
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await?;
            tracing::info!(partition = %name, "postgres retention dropped a partition");
            dropped += 1;
            newest_end = newest_end.max(Some(end));
        }
    }
    Ok((dropped, newest_end))
}

/// The statement recomputing one chunk of dirty minutes: `$1` the chunk size,
/// `$2` the raw horizon, `$3` the rollup cutoff (older minutes are skipped).
/// The averages sum in time order, so that a recomputed minute is bit for bit
/// the same whatever the rows' physical order (updates move rows).
const ROLLUP_CHUNK_SQL: &str = "
WITH d AS (
    DELETE FROM dirty_minutes
    WHERE (machine, minute) IN (
        SELECT machine, minute FROM dirty_minutes ORDER BY machine, minute
        LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING machine, minute
), up AS (
    INSERT INTO rollups (
        machine, minute, n,
        cpu_avg, cpu_min, cpu_max, mem_avg, mem_min, mem_max,
        n_disk, disk_read_avg, disk_read_min, disk_read_max,
        disk_write_avg, disk_write_min, disk_write_max,
        n_net, net_sent_avg, net_sent_min, net_sent_max,
        net_recv_avg, net_recv_min, net_recv_max,
        n_load, load1_avg, load1_min, load1_max,
        n_swap, swap_avg, swap_min, swap_max)
    SELECT d.machine, d.minute, count(*),
        avg(s.cpu ORDER BY s.time), min(s.cpu), max(s.cpu), avg(s.mem ORDER BY s.time), min(s.mem), max(s.mem),
        count(s.disk_read_rate), avg(s.disk_read_rate ORDER BY s.time), min(s.disk_read_rate), max(s.disk_read_rate),
        avg(s.disk_write_rate ORDER BY s.time), min(s.disk_write_rate), max(s.disk_write_rate),
        count(s.net_sent_rate), avg(s.net_sent_rate ORDER BY s.time), min(s.net_sent_rate), max(s.net_sent_rate),
        avg(s.net_recv_rate ORDER BY s.time), min(s.net_recv_rate), max(s.net_recv_rate),
        count(s.load1), avg(s.load1 ORDER BY s.time), min(s.load1), max(s.load1),
        count(s.swap_used), avg(s.swap_used ORDER BY s.time), min(s.swap_used), max(s.swap_used)
    FROM d JOIN samples s ON s.machine = d.machine
        AND s.time >= d.minute AND s.time < d.minute + interval '1 minute'
    WHERE d.minute >= timestamptz 'epoch' + $3::int8 * interval '1 millisecond'
    GROUP BY d.machine, d.minute
    ON CONFLICT (machine, minute) DO UPDATE SET
        (n, cpu_avg, cpu_min, cpu_max, mem_avg, mem_min, mem_max,
         n_disk, disk_read_avg, disk_read_min, disk_read_max,
         disk_write_avg, disk_write_min, disk_write_max,
         n_net, net_sent_avg, net_sent_min, net_sent_max,
         net_recv_avg, net_recv_min, net_recv_max,
         n_load, load1_avg, load1_min, load1_max,
         n_swap, swap_avg, swap_min, swap_max)
      = (EXCLUDED.n, EXCLUDED.cpu_avg, EXCLUDED.cpu_min, EXCLUDED.cpu_max,
         EXCLUDED.mem_avg, EXCLUDED.mem_min, EXCLUDED.mem_max,
         EXCLUDED.n_disk, EXCLUDED.disk_read_avg, EXCLUDED.disk_read_min, EXCLUDED.disk_read_max,
         EXCLUDED.disk_write_avg, EXCLUDED.disk_write_min, EXCLUDED.disk_write_max,
         EXCLUDED.n_net, EXCLUDED.net_sent_avg, EXCLUDED.net_sent_min, EXCLUDED.net_sent_max,
         EXCLUDED.net_recv_avg, EXCLUDED.net_recv_min, EXCLUDED.net_recv_max,
         EXCLUDED.n_load, EXCLUDED.load1_avg, EXCLUDED.load1_min, EXCLUDED.load1_max,
         EXCLUDED.n_swap, EXCLUDED.swap_avg, EXCLUDED.swap_min, EXCLUDED.swap_max)
    WHERE rollups.minute >= timestamptz 'epoch' + $2::int8 * interval '1 millisecond'
    RETURNING 1
)
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM up)";

/// Recomputes every dirty minute, a chunk per transaction. Returns the
/// machine-minutes taken off the queue.
pub(crate) async fn roll_up(
    client: &mut Client,
    cache: &PartitionCache,
    rollup_cutoff_ms: i64,
) -> Result<u64, SinksError> {
    let range = client
        .query_one(
            "SELECT (extract(epoch FROM min(minute)) * 1000)::bigint,
                    (extract(epoch FROM max(minute)) * 1000)::bigint FROM dirty_minutes",
            &[],
        )
        .await?;
    let (Some(lo), Some(hi)) = (
        range.get::<_, Option<i64>>(0),
        range.get::<_, Option<i64>>(1),
    ) else {
        return Ok(0);
    };
    let lo = ROLLUPS.start_of(lo.max(rollup_cutoff_ms));
    if lo <= hi {
        cache
            .ensure(client, ROLLUPS, (lo..=hi).step_by(DAY_MS as usize))
            .await?;
    }
    let horizon = raw_horizon(client).await?;
    let mut total = 0;
    loop {
        let row = client
            .query_one(
                ROLLUP_CHUNK_SQL,
                &[&ROLLUP_CHUNK, &horizon, &rollup_cutoff_ms],
            )
            .await?;
        let taken: i64 = row.get(0);
        total += taken as u64;
        if taken < ROLLUP_CHUNK {
            return Ok(total);
        }
    }
}

/// One pass as of `now_ms`: partitions ahead, rollups, then retention.
pub(crate) async fn maintain(
    client: &mut Client,
    cache: &PartitionCache,
    now_ms: i64,
    raw_retention: Duration,
    rollup_retention: Duration,
    ahead: Duration,
) -> Result<PostgresMaintenance, SinksError> {
    let mut report = PostgresMaintenance::default();
    let ahead_ms = ms(ahead);
    for t in RAW_TABLES {
        let lo = t.start_of(now_ms - HOUR_MS);
        let hi = now_ms.saturating_add(ahead_ms);
        report.partitions_created += cache
            .ensure(client, t, (lo..=hi).step_by(t.width_ms as usize))
            .await?;
    }
    for t in LONG_TABLES {
        let lo = t.start_of(now_ms);
        let hi = now_ms.saturating_add(ahead_ms.max(DAY_MS));
        report.partitions_created += cache
            .ensure(client, t, (lo..=hi).step_by(t.width_ms as usize))
            .await?;
    }
    let rollup_cutoff = now_ms.saturating_sub(ms(rollup_retention));
    report.minutes_rolled_up = roll_up(client, cache, rollup_cutoff).await?;

    let raw_cutoff = now_ms.saturating_sub(ms(raw_retention));
    let (n, newest_end) = drop_expired(client, &RAW_TABLES, raw_cutoff).await?;
    report.partitions_dropped += n;
    if let Some(end) = newest_end {
        client
            .execute(
                "INSERT INTO sysmon_meta (key, value) VALUES ('raw_horizon_ms', $1)
                 ON CONFLICT (key) DO UPDATE SET value =
                     greatest(sysmon_meta.value::bigint, EXCLUDED.value::bigint)::text",
                &[&end.to_string()],
            )
            .await?;
    }
    let (n, _) = drop_expired(client, &LONG_TABLES, rollup_cutoff).await?;
    report.partitions_dropped += n;
    // Episodes are few (one per anomaly, not per sample): a small table,
    // trimmed like the alert history it sits beside.
    client
        .execute(
            "DELETE FROM anomaly_episodes WHERE end_ts < $1",
            &[&(rollup_cutoff as f64 / 1000.0)],
        )
        .await?;
    if report.partitions_dropped > 0 {
        cache.clear();
    }
    report.machines_forgotten = client
        .execute(
            "DELETE FROM machines m WHERE m.last_seen < $1::float8 / 1000
               AND NOT EXISTS (SELECT 1 FROM samples s WHERE s.machine = m.id)
               AND NOT EXISTS (SELECT 1 FROM rollups r WHERE r.machine = m.id)",
            &[&(rollup_cutoff as f64)],
        )
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        // 2026-12-07 05:30:00 UTC
        let t = 1_796_621_400_000;
        let s = SAMPLES.start_of(t);
        assert_eq!(SAMPLES.name(s), "samples_p2026120705");
        assert_eq!(SAMPLES.parse("samples_p2026120705"), Some(s));
        assert_eq!(literal(s), "2026-12-07 05:00:00+00");
        let d = ROLLUPS.start_of(t);
        assert_eq!(ROLLUPS.name(d), "rollups_p20261207");
        assert_eq!(ROLLUPS.parse("rollups_p20261207"), Some(d));
        assert_eq!(SAMPLES.parse("samples_p20261207"), None);
        assert_eq!(SAMPLES.parse("processes_p2026120705"), None);
        assert_eq!(SAMPLES.parse("samples_p2026129905"), None);
        for days in [-1000, 0, 59, 365, 10_957, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
