//! Reading a whole history out, for `sysmon import` (SQLite to PostgreSQL):
//! the sample count and the per-minute rollups page by page.

use rusqlite::{params, Connection};

use super::SqliteSink;
use crate::error::SinksError;

/// The value columns of a rollup row, in both engines' `rollups` tables; the
/// ones named `n` and `n_*` are counts, the rest averages, minima and maxima.
pub const ROLLUP_COLUMNS: [&str; 29] = [
    "n",
    "cpu_avg",
    "cpu_min",
    "cpu_max",
    "mem_avg",
    "mem_min",
    "mem_max",
    "n_disk",
    "disk_read_avg",
    "disk_read_min",
    "disk_read_max",
    "disk_write_avg",
    "disk_write_min",
    "disk_write_max",
    "n_net",
    "net_sent_avg",
    "net_sent_min",
    "net_sent_max",
    "net_recv_avg",
    "net_recv_min",
    "net_recv_max",
    "n_load",
    "load1_avg",
    "load1_min",
    "load1_max",
    "n_swap",
    "swap_avg",
    "swap_min",
    "swap_max",
];

/// One machine-minute of rollups.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    /// The machine.
    pub machine_id: String,
    /// The minute's start, milliseconds since the epoch.
    pub minute_ms: i64,
    /// The values of [`ROLLUP_COLUMNS`], in order.
    pub values: Vec<Option<f64>>,
}

/// Where the next page of rollups starts (an opaque cursor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupCursor {
    machine: i64,
    minute_ms: i64,
}

fn count_samples(conn: &Connection) -> Result<u64, SinksError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

fn rollups_page(
    conn: &Connection,
    after: RollupCursor,
    limit: usize,
) -> Result<(Vec<RollupRow>, RollupCursor), SinksError> {
    let sql = format!(
        "SELECT m.machine_id, r.machine, r.minute_ms, {} FROM rollups r \
         JOIN machines m ON m.id = r.machine \
         WHERE (r.machine, r.minute_ms) > (?1, ?2) ORDER BY r.machine, r.minute_ms LIMIT ?3",
        ROLLUP_COLUMNS.map(|c| format!("r.{c}")).join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt.query(params![after.machine, after.minute_ms, limit])?;
    let mut out = Vec::new();
    let mut cursor = after;
    while let Some(r) = rows.next()? {
        cursor = RollupCursor {
            machine: r.get(1)?,
            minute_ms: r.get(2)?,
        };
        let mut values = Vec::with_capacity(ROLLUP_COLUMNS.len());
        for i in 0..ROLLUP_COLUMNS.len() {
            values.push(r.get::<_, Option<f64>>(3 + i)?);
        }
        out.push(RollupRow {
            machine_id: r.get(0)?,
            minute_ms: cursor.minute_ms,
            values,
        });
    }
    Ok((out, cursor))
}

impl SqliteSink {
    /// How many raw samples the file holds.
    pub async fn sample_count(&self) -> Result<u64, SinksError> {
        self.read(count_samples).await
    }

    /// Up to `limit` rollup rows after `after` (start from
    /// `RollupCursor::default()`), with the cursor of the next page; an empty
    /// page is the end.
    pub async fn rollups_after(
        &self,
        after: RollupCursor,
        limit: usize,
    ) -> Result<(Vec<RollupRow>, RollupCursor), SinksError> {
        self.read(move |c| rollups_page(c, after, limit)).await
    }
}
