//! Housekeeping: per-minute rollups and retention.
//!
//! Rollups are exact and idempotent: the write path records every
//! `(machine, minute)` it touches in `dirty_minutes`; maintenance recomputes
//! those minutes from the raw samples (which are deduplicated by key, so a
//! replayed batch changes nothing) and clears the marks. Rollups are computed
//! before raw samples are deleted, in the same transaction.
//!
//! Raw retention deletes whole minutes: everything before the *raw horizon*,
//! the start of the minute `raw_retention` ago. A minute at or after the
//! horizon still has all its raw samples, so its rollup may be recomputed at
//! any time. A sample arriving for a minute before the horizon (a very late
//! replay) is stored, but that minute's existing rollup, computed when the
//! minute was complete, is kept rather than replaced by one computed from the
//! late sample alone.

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use super::keys::{self, TS_BITS, TS_MASK};
use super::write::{minute_of, MINUTE_MS};
use crate::error::SinksError;

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReport {
    /// Machine-minutes whose rollups were recomputed.
    pub minutes_rolled_up: u64,
    /// Raw samples deleted by retention.
    pub raw_deleted: u64,
    /// Rollup rows deleted by retention.
    pub rollups_deleted: u64,
    /// Machines forgotten because no data of theirs is left.
    pub machines_forgotten: u64,
}

/// Recomputes the dirty minutes. `{verb}` is `INSERT OR REPLACE` for minutes
/// with complete raw data, `INSERT OR IGNORE` for minutes before the horizon;
/// `{cmp}` selects which.
fn rollup_sql(verb: &str, cmp: &str) -> String {
    format!(
        "{verb} INTO rollups (
            machine, minute_ms, n,
            cpu_avg, cpu_min, cpu_max, mem_avg, mem_min, mem_max,
            n_disk, disk_read_avg, disk_read_min, disk_read_max,
            disk_write_avg, disk_write_min, disk_write_max,
            n_net, net_sent_avg, net_sent_min, net_sent_max,
            net_recv_avg, net_recv_min, net_recv_max,
            n_load, load1_avg, load1_min, load1_max,
            n_swap, swap_avg, swap_min, swap_max)
        SELECT d.machine, d.minute_ms, count(*),
            avg(s.cpu), min(s.cpu), max(s.cpu), avg(s.mem), min(s.mem), max(s.mem),
            count(s.disk_read_rate), avg(s.disk_read_rate), min(s.disk_read_rate), max(s.disk_read_rate),
            avg(s.disk_write_rate), min(s.disk_write_rate), max(s.disk_write_rate),
            count(s.net_sent_rate), avg(s.net_sent_rate), min(s.net_sent_rate), max(s.net_sent_rate),
            avg(s.net_recv_rate), min(s.net_recv_rate), max(s.net_recv_rate),
            count(s.load1), avg(s.load1), min(s.load1), max(s.load1),
            count(s.swap_used), avg(s.swap_used), min(s.swap_used), max(s.swap_used)
        FROM dirty_minutes d
        JOIN samples s ON s.key >= (d.machine << {TS_BITS}) + d.minute_ms
            AND s.key < (d.machine << {TS_BITS}) + d.minute_ms + {MINUTE_MS}
        WHERE d.minute_ms {cmp} ?1
        GROUP BY d.machine, d.minute_ms"
    )
}

/// Machines whose dirty minutes one [`rollup_chunk`] recomputes.
pub(crate) const ROLLUP_CHUNK_MACHINES: i64 = 100;

/// Recomputes the dirty minutes of the next `max_machines` machines (by id) in
/// one short transaction, so that writes interleave with a large rollup
/// instead of waiting for all of it. Returns the machine-minutes rolled up and
/// whether no dirty minute is left.
pub(crate) fn rollup_chunk(
    conn: &mut Connection,
    max_machines: i64,
) -> Result<(u64, bool), SinksError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT machine FROM dirty_minutes ORDER BY machine LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![max_machines], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) else {
        return Ok((0, true));
    };
    let horizon = super::series::raw_horizon(&tx)?;
    let only = " AND d.machine BETWEEN ?2 AND ?3 GROUP BY";
    tx.prepare_cached(&rollup_sql("INSERT OR REPLACE", ">=").replace(" GROUP BY", only))?
        .execute(params![horizon, lo, hi])?;
    tx.prepare_cached(&rollup_sql("INSERT OR IGNORE", "<").replace(" GROUP BY", only))?
        .execute(params![horizon, lo, hi])?;
    let n = tx
        .prepare_cached("DELETE FROM dirty_minutes WHERE machine BETWEEN ?1 AND ?2")?
        .execute(params![lo, hi])? as u64;
    tx.commit()?;
    Ok((n, (ids.len() as i64) < max_machines))
}

fn machine_ids(conn: &Connection) -> Result<Vec<i64>, SinksError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM machines ORDER BY id")?;
    let ids = stmt.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// Rolls up, then enforces retention, as of `now_ms`, in one transaction.
pub(crate) fn maintain(
    conn: &mut Connection,
    now_ms: i64,
    raw_retention_ms: i64,
    rollup_retention_ms: i64,
) -> Result<MaintenanceReport, SinksError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut report = MaintenanceReport::default();
    let horizon = super::series::raw_horizon(&tx)?;

    tx.prepare_cached(&rollup_sql("INSERT OR REPLACE", ">="))?
        .execute(params![horizon])?;
    tx.prepare_cached(&rollup_sql("INSERT OR IGNORE", "<"))?
        .execute(params![horizon])?;
    report.minutes_rolled_up = tx.execute("DELETE FROM dirty_minutes", [])? as u64;

    let machines = machine_ids(&tx)?;
    // The horizon never moves back (a clock stepping backwards keeps what is
    // gone gone); late samples before it are purged on every pass.
    let new_horizon = minute_of(now_ms.saturating_sub(raw_retention_ms)).max(horizon);
    {
        let mut del_samples =
            tx.prepare_cached("DELETE FROM samples WHERE key >= ?1 AND key < ?2")?;
        let mut del_scores =
            tx.prepare_cached("DELETE FROM anomaly_scores WHERE key >= ?1 AND key < ?2")?;
        for &m in &machines {
            let (lo, hi) = keys::sample_range(m, 0, new_horizon);
            report.raw_deleted += del_samples.execute(params![lo, hi])? as u64;
            // Anomaly scores live exactly as long as the samples they score.
            del_scores.execute(params![lo, hi])?;
        }
        // Process lists are keyed time-major: one range holds every machine's old ones.
        tx.prepare_cached("DELETE FROM processes WHERE key < ?1")?
            .execute(params![keys::process_key(0, new_horizon.max(0))])?;
    }
    if new_horizon > horizon {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('raw_horizon_ms', ?1)",
        )?
        .execute(params![new_horizon])?;
    }

    let rollup_cutoff = minute_of(now_ms.saturating_sub(rollup_retention_ms));
    // Alert history is kept as long as the rollups it can be read against.
    tx.prepare_cached("DELETE FROM alert_events WHERE at < ?1")?
        .execute(params![rollup_cutoff as f64 / 1000.0])?;
    // Episodes too: they are the summary of the anomalies of that time.
    tx.prepare_cached("DELETE FROM anomaly_episodes WHERE end_ts < ?1")?
        .execute(params![rollup_cutoff as f64 / 1000.0])?;
    {
        let mut del =
            tx.prepare_cached("DELETE FROM rollups WHERE machine = ?1 AND minute_ms < ?2")?;
        for &m in &machines {
            report.rollups_deleted += del.execute(params![m, rollup_cutoff])? as u64;
        }
    }
    report.machines_forgotten = tx.execute(
        &format!(
            "DELETE FROM machines WHERE
                NOT EXISTS (SELECT 1 FROM samples WHERE key >= (machines.id << {TS_BITS})
                            AND key <= ((machines.id << {TS_BITS}) | {TS_MASK}))
                AND NOT EXISTS (SELECT 1 FROM rollups WHERE machine = machines.id)
                AND NOT EXISTS (SELECT 1 FROM dirty_minutes WHERE machine = machines.id)"
        ),
        [],
    )? as u64;
    tx.commit()?;
    if report != MaintenanceReport::default() {
        tracing::debug!(?report, "sqlite maintenance");
    }
    Ok(report)
}
