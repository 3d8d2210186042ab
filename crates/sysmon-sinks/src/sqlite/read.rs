//! The read path: stored rows back into exact [`Snapshot`]s.

use rusqlite::{params, Connection, Row};
use sysmon_core::{
    DiskIo, IoRate, LoadAvg, MachineSummary, Memory, NetworkIo, NetworkRate, Snapshot,
};

use super::keys::{self, MACHINE_BITS, TS_BITS, TS_MASK};
use super::{codec, series};
use crate::error::SinksError;

/// The columns [`snapshot_from_row`] reads, in order, from `samples s`,
/// `machines m` and `processes p` joined by [`joins`]; `ts_ms` comes from the key.
const SNAPSHOT_COLUMNS: &str = "m.machine_id, s.key, s.ts, s.schema_version, s.hostname, \
    s.interval_secs, s.cpu, s.mem, s.disk_read_total, s.disk_write_total, s.net_sent_total, \
    s.net_recv_total, s.load1, s.load5, s.load15, s.mem_total, s.mem_used, s.mem_available, \
    s.swap_total, s.swap_used, s.disk_read_rate, s.disk_write_rate, s.net_sent_rate, \
    s.net_recv_rate, s.uptime_secs, s.cpu_per_core, s.filesystems, s.labels, \
    s.collector_errors, s.custom_metrics, p.top, s.host_details";

/// `JOIN machines m ... LEFT JOIN processes p ...` for a row of `samples s`.
fn joins() -> String {
    format!(
        "JOIN machines m ON m.id = (s.key >> {TS_BITS}) \
         LEFT JOIN processes p ON p.key = (((s.key & {TS_MASK}) << {MACHINE_BITS}) | (s.key >> {TS_BITS}))"
    )
}

pub(crate) fn i2u(v: i64) -> u64 {
    v as u64
}

pub(crate) fn corrupt(machine: &str, ts_ms: i64, msg: impl std::fmt::Display) -> SinksError {
    SinksError::Corrupt(format!("sample of {machine:?} at ts_ms {ts_ms}: {msg}"))
}

/// All of a group's columns set, or all NULL; anything else is damage.
pub(crate) fn group<T, const N: usize>(
    vals: [Option<T>; N],
    what: &str,
    machine: &str,
    ts_ms: i64,
) -> Result<Option<[T; N]>, SinksError> {
    let set = vals.iter().filter(|v| v.is_some()).count();
    if set == 0 {
        return Ok(None);
    }
    if set != N {
        return Err(corrupt(machine, ts_ms, format!("{what} is partly NULL")));
    }
    let mut out = Vec::with_capacity(N);
    for v in vals.into_iter().flatten() {
        out.push(v);
    }
    out.try_into()
        .map(Some)
        .map_err(|_| corrupt(machine, ts_ms, format!("{what} is partly NULL")))
}

pub(crate) fn json<T: serde::de::DeserializeOwned + Default>(
    text: Option<String>,
    what: &str,
    machine: &str,
    ts_ms: i64,
) -> Result<T, SinksError> {
    match text {
        None => Ok(T::default()),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| corrupt(machine, ts_ms, format!("{what} is not valid JSON: {e}"))),
    }
}

/// Rebuilds the snapshot stored in a row selected with [`SNAPSHOT_COLUMNS`].
///
/// The struct is built without `..Default::default()` on purpose: a field
/// added to [`Snapshot`] fails to compile here until the sink stores it.
fn snapshot_from_row(row: &Row<'_>) -> Result<Snapshot, SinksError> {
    let machine_id: String = row.get(0)?;
    let ts_ms: i64 = row.get::<_, i64>(1)? & TS_MASK;
    let m = machine_id.as_str();
    let load = group(
        [row.get(12)?, row.get(13)?, row.get(14)?],
        "load_avg",
        m,
        ts_ms,
    )?;
    let mem: Option<[i64; 5]> = group(
        [
            row.get(15)?,
            row.get(16)?,
            row.get(17)?,
            row.get(18)?,
            row.get(19)?,
        ],
        "memory",
        m,
        ts_ms,
    )?;
    let disk = group([row.get(20)?, row.get(21)?], "disk_rate", m, ts_ms)?;
    let net = group([row.get(22)?, row.get(23)?], "network_rate", m, ts_ms)?;
    let cores: Option<Vec<u8>> = row.get(25)?;
    let filesystems: Option<Vec<u8>> = row.get(26)?;
    let top: Option<Vec<u8>> = row.get(30)?;
    let (top_cpu_processes, top_mem_processes) = match top {
        Some(b) => codec::decode_processes(&b).map_err(|e| corrupt(m, ts_ms, e.0))?,
        None => (Vec::new(), Vec::new()),
    };
    let uptime: Option<i64> = row.get(24)?;
    let details: Option<Vec<u8>> = row.get(31)?;
    let mut s = Snapshot {
        timestamp: row.get(2)?,
        cpu_usage: row.get(6)?,
        memory_usage: row.get(7)?,
        disk_io: DiskIo {
            read: i2u(row.get(8)?),
            write: i2u(row.get(9)?),
        },
        network_io: NetworkIo {
            sent: i2u(row.get(10)?),
            recv: i2u(row.get(11)?),
        },
        top_cpu_processes,
        top_mem_processes,
        schema_version: row.get(3)?,
        hostname: row.get(4)?,
        interval_secs: row.get(5)?,
        cpu_per_core: match cores {
            Some(b) => codec::decode_cores(&b).map_err(|e| corrupt(m, ts_ms, e.0))?,
            None => Vec::new(),
        },
        load_avg: load.map(|[one, five, fifteen]| LoadAvg { one, five, fifteen }),
        memory: mem.map(|[t, u, a, st, su]| Memory {
            total_bytes: i2u(t),
            used_bytes: i2u(u),
            available_bytes: i2u(a),
            swap_total_bytes: i2u(st),
            swap_used_bytes: i2u(su),
        }),
        disk_rate: disk.map(|[read, write]| IoRate { read, write }),
        network_rate: net.map(|[sent, recv]| NetworkRate { sent, recv }),
        filesystems: match filesystems {
            Some(b) => codec::decode_filesystems(&b).map_err(|e| corrupt(m, ts_ms, e.0))?,
            None => Vec::new(),
        },
        uptime_secs: uptime.map(i2u),
        labels: json(row.get(27)?, "labels", m, ts_ms)?,
        collector_errors: json(row.get(28)?, "collector_errors", m, ts_ms)?,
        custom_metrics: json(row.get(29)?, "custom_metrics", m, ts_ms)?,
        ..Snapshot::default()
    };
    if let Some(b) = details {
        sysmon_core::codec::binary::decode_host_details(&b, &mut s)
            .map_err(|e| corrupt(m, ts_ms, format!("host_details: {e}")))?;
    }
    s.machine_id = machine_id;
    Ok(s)
}

fn collect(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Snapshot>, SinksError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(snapshot_from_row(row)?);
    }
    Ok(out)
}

/// Every known machine, by id.
pub(crate) fn machines(conn: &Connection) -> Result<Vec<MachineSummary>, SinksError> {
    let mut stmt = conn.prepare_cached(
        "SELECT machine_id, hostname, last_seen FROM machines ORDER BY machine_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(MachineSummary {
            machine_id: r.get(0)?,
            hostname: r.get(1)?,
            last_seen: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest snapshot of one machine.
pub(crate) fn latest(conn: &Connection, machine_id: &str) -> Result<Option<Snapshot>, SinksError> {
    let Some(machine) = series::machine_key(conn, machine_id)? else {
        return Ok(None);
    };
    let (lo, hi) = keys::sample_range(machine, 0, i64::MAX);
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM samples s {} \
         WHERE s.key >= ?1 AND s.key < ?2 ORDER BY s.key DESC LIMIT 1",
        joins()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(collect(&mut stmt, params![lo, hi])?.pop())
}

/// The newest snapshot of every machine that has raw samples, by machine id.
pub(crate) fn latest_all(conn: &Connection) -> Result<Vec<Snapshot>, SinksError> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM machines m0 \
         JOIN samples s ON s.key = (SELECT max(key) FROM samples \
             WHERE key >= (m0.id << {TS_BITS}) AND key <= ((m0.id << {TS_BITS}) | {TS_MASK})) \
         {} ORDER BY m0.machine_id",
        joins()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    collect(&mut stmt, [])
}

/// Converts `since <= timestamp < until` (seconds) into a millisecond range
/// wide enough for the key; the exact bounds are applied on `ts`.
fn ms_bounds(since: f64, until: f64) -> Result<(i64, i64), SinksError> {
    if since.is_nan() || until.is_nan() {
        return Err(SinksError::InvalidInput(
            "time range bounds must be numbers".into(),
        ));
    }
    // `as` saturates, so infinite bounds become the widest range.
    let lo = ((since * 1000.0).floor() as i64).saturating_sub(1);
    let hi = ((until * 1000.0).ceil() as i64).saturating_add(2);
    Ok((lo.clamp(0, TS_MASK + 1), hi.clamp(0, TS_MASK + 1)))
}

/// Snapshots with `since <= timestamp < until`, oldest first (ties by machine id).
pub(crate) fn range(
    conn: &Connection,
    machine_id: Option<&str>,
    since: f64,
    until: f64,
    limit: usize,
) -> Result<Vec<Snapshot>, SinksError> {
    let (lo, hi) = ms_bounds(since, until)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    if limit == 0 || since >= until {
        return Ok(Vec::new());
    }
    match machine_id {
        Some(id) => {
            let Some(machine) = series::machine_key(conn, id)? else {
                return Ok(Vec::new());
            };
            let (klo, khi) = keys::sample_range(machine, lo, hi);
            let sql = format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM samples s {} \
                 WHERE s.key >= ?1 AND s.key < ?2 AND s.ts >= ?3 AND s.ts < ?4 \
                 ORDER BY s.key LIMIT ?5",
                joins()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            collect(&mut stmt, params![klo, khi, since, until, limit])
        }
        None => {
            // One key range per machine; SQLite keeps only the first `limit`
            // rows in its sorter.
            let sql = format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM machines m0 \
                 JOIN samples s ON s.key >= ((m0.id << {TS_BITS}) + ?1) \
                     AND s.key < ((m0.id << {TS_BITS}) + ?2) \
                 {} WHERE s.ts >= ?3 AND s.ts < ?4 \
                 ORDER BY s.key & {TS_MASK}, m.machine_id LIMIT ?5",
                joins()
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            collect(&mut stmt, params![lo, hi, since, until, limit])
        }
    }
}
