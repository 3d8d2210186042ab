//! The read path ([`sysmon_core::SnapshotStore`]): stored rows back into exact
//! [`Snapshot`]s, as the SQLite read path does.

use sysmon_core::{
    DiskIo, IoRate, LoadAvg, MachineSummary, Memory, NetworkIo, NetworkRate, Snapshot,
};
use tokio_postgres::{GenericClient, Row};

use crate::error::SinksError;
use crate::sqlite::codec;
use crate::sqlite::read::{corrupt, group, i2u, json};

/// The columns [`snapshot_from_row`] reads, from `samples s`, `machines m` and
/// `processes p` joined by [`JOINS`].
const SNAPSHOT_COLUMNS: &str = "m.machine_id, (extract(epoch FROM s.time) * 1000)::bigint, s.ts, \
    s.schema_version, s.hostname, s.interval_secs, s.cpu, s.mem, s.disk_read_total, \
    s.disk_write_total, s.net_sent_total, s.net_recv_total, s.load1, s.load5, s.load15, \
    s.mem_total, s.mem_used, s.mem_available, s.swap_total, s.swap_used, s.disk_read_rate, \
    s.disk_write_rate, s.net_sent_rate, s.net_recv_rate, s.uptime_secs, s.cpu_per_core, \
    s.filesystems, s.labels, s.collector_errors, s.custom_metrics, p.top, s.host_details";

const JOINS: &str = "JOIN machines m ON m.id = s.machine \
    LEFT JOIN processes p ON p.machine = s.machine AND p.time = s.time";

/// Rebuilds the snapshot stored in a row selected with [`SNAPSHOT_COLUMNS`]
/// (the host details come from one blob, as in SQLite's read path).
fn snapshot_from_row(row: &Row) -> Result<Snapshot, SinksError> {
    let machine_id: String = row.try_get(0)?;
    let ts_ms: i64 = row.try_get(1)?;
    let m = machine_id.as_str();
    let load = group(
        [row.try_get(12)?, row.try_get(13)?, row.try_get(14)?],
        "load_avg",
        m,
        ts_ms,
    )?;
    let mem: Option<[i64; 5]> = group(
        [
            row.try_get(15)?,
            row.try_get(16)?,
            row.try_get(17)?,
            row.try_get(18)?,
            row.try_get(19)?,
        ],
        "memory",
        m,
        ts_ms,
    )?;
    let disk = group([row.try_get(20)?, row.try_get(21)?], "disk_rate", m, ts_ms)?;
    let net = group(
        [row.try_get(22)?, row.try_get(23)?],
        "network_rate",
        m,
        ts_ms,
    )?;
    let cores: Option<&[u8]> = row.try_get(25)?;
    let filesystems: Option<&[u8]> = row.try_get(26)?;
    let top: Option<&[u8]> = row.try_get(30)?;
    let (top_cpu_processes, top_mem_processes) = match top {
        Some(b) => codec::decode_processes(b).map_err(|e| corrupt(m, ts_ms, e.0))?,
        None => (Vec::new(), Vec::new()),
    };
    let uptime: Option<i64> = row.try_get(24)?;
    let schema_version: i32 = row.try_get(3)?;
    let details: Option<&[u8]> = row.try_get(31)?;
    let mut s = Snapshot {
        timestamp: row.try_get(2)?,
        cpu_usage: row.try_get(6)?,
        memory_usage: row.try_get(7)?,
        disk_io: DiskIo {
            read: i2u(row.try_get(8)?),
            write: i2u(row.try_get(9)?),
        },
        network_io: NetworkIo {
            sent: i2u(row.try_get(10)?),
            recv: i2u(row.try_get(11)?),
        },
        top_cpu_processes,
        top_mem_processes,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt(m, ts_ms, format!("schema_version {schema_version}")))?,
        hostname: row.try_get(4)?,
        interval_secs: row.try_get(5)?,
        cpu_per_core: match cores {
            Some(b) => codec::decode_cores(b).map_err(|e| corrupt(m, ts_ms, e.0))?,
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
            Some(b) => codec::decode_filesystems(b).map_err(|e| corrupt(m, ts_ms, e.0))?,
            None => Vec::new(),
        },
        uptime_secs: uptime.map(i2u),
        labels: json(row.try_get(27)?, "labels", m, ts_ms)?,
        collector_errors: json(row.try_get(28)?, "collector_errors", m, ts_ms)?,
        custom_metrics: json(row.try_get(29)?, "custom_metrics", m, ts_ms)?,
        ..Snapshot::default()
    };
    if let Some(b) = details {
        sysmon_core::codec::binary::decode_host_details(b, &mut s)
            .map_err(|e| corrupt(m, ts_ms, format!("host_details: {e}")))?;
    }
    s.machine_id = machine_id;
    Ok(s)
}

fn snapshots(rows: Vec<Row>) -> Result<Vec<Snapshot>, SinksError> {
    rows.iter().map(snapshot_from_row).collect()
}

/// Whether PostgreSQL text can hold `machine_id` (no NUL byte): an id it
/// cannot hold belongs to no stored machine (the dashboard's health probe
/// asks for one), so reads answer "none" instead of failing.
pub(crate) fn storable_id(machine_id: &str) -> bool {
    !machine_id.contains('\0')
}

/// Every known machine, by id.
pub(crate) async fn machines(c: &impl GenericClient) -> Result<Vec<MachineSummary>, SinksError> {
    let rows = c
        .query(
            "SELECT machine_id, hostname, last_seen FROM machines ORDER BY machine_id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(MachineSummary {
                machine_id: r.try_get(0)?,
                hostname: r.try_get(1)?,
                last_seen: r.try_get(2)?,
            })
        })
        .collect()
}

/// The newest snapshot of one machine.
pub(crate) async fn latest(
    c: &impl GenericClient,
    machine_id: &str,
) -> Result<Option<Snapshot>, SinksError> {
    if !storable_id(machine_id) {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM samples s {JOINS} \
         WHERE s.machine = (SELECT id FROM machines WHERE machine_id = $1) \
         ORDER BY s.time DESC LIMIT 1"
    );
    Ok(snapshots(c.query(&sql, &[&machine_id]).await?)?.pop())
}

/// The newest raw snapshot of every machine that has one, by machine id.
pub(crate) async fn latest_all(c: &impl GenericClient) -> Result<Vec<Snapshot>, SinksError> {
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM machines m0 \
         CROSS JOIN LATERAL (SELECT * FROM samples WHERE machine = m0.id \
                             ORDER BY time DESC LIMIT 1) s \
         {JOINS} ORDER BY m0.machine_id"
    );
    snapshots(c.query(&sql, &[]).await?)
}

/// The newest snapshot of every machine that has one at or after `since`
/// (seconds), without top processes: what fleet-wide alert rules need. Reads
/// one row per recent machine (its `last_seen` names the row), whatever the
/// number of partitions.
pub(crate) async fn fleet_latest(
    c: &impl GenericClient,
    since: f64,
) -> Result<Vec<Snapshot>, SinksError> {
    if since.is_nan() {
        return Err(SinksError::InvalidInput("since must be a number".into()));
    }
    let columns = SNAPSHOT_COLUMNS.replace("p.top", "NULL::bytea");
    let sql = format!(
        "SELECT {columns} FROM machines m0 \
         CROSS JOIN LATERAL (SELECT * FROM samples WHERE machine = m0.id \
             AND time >= to_timestamp(m0.last_seen) - interval '1 millisecond' \
             ORDER BY time DESC LIMIT 1) s \
         JOIN machines m ON m.id = s.machine \
         WHERE m0.last_seen >= $1 ORDER BY m0.machine_id"
    );
    snapshots(c.query(&sql, &[&since]).await?)
}

/// Snapshots with `since <= timestamp < until`, oldest first (ties by machine id).
pub(crate) async fn range(
    c: &impl GenericClient,
    machine_id: Option<&str>,
    since: f64,
    until: f64,
    limit: usize,
) -> Result<Vec<Snapshot>, SinksError> {
    if since.is_nan() || until.is_nan() {
        return Err(SinksError::InvalidInput(
            "time range bounds must be numbers".into(),
        ));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    if limit == 0 || since >= until || !machine_id.is_none_or(storable_id) {
        return Ok(Vec::new());
    }
    // The key is the rounded millisecond: a millisecond of slack either side,
    // the exact bounds on `ts`.
    let sql = format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM samples s {JOINS} \
         WHERE s.time >= to_timestamp($1) - interval '1 millisecond' \
           AND s.time < to_timestamp($2) + interval '2 milliseconds' \
           AND s.ts >= $1 AND s.ts < $2 AND ($3::text IS NULL OR m.machine_id = $3) \
         ORDER BY s.time, m.machine_id LIMIT $4"
    );
    snapshots(
        c.query(&sql, &[&since, &until, &machine_id, &limit])
            .await?,
    )
}
