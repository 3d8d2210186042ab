//! The write path: one transaction per batch, two ways.
//!
//! * New samples (the normal case): binary COPY straight into the partitioned
//!   tables, under a savepoint. The primary key `(machine, time)` refuses a
//!   key stored before, so a batch that is not entirely new fails there and
//!   takes the other way.
//! * A replay (some key already stored): the savepoint is rolled back, the
//!   batch goes to temporary tables by binary COPY, then into the tables with
//!   `INSERT ... ON CONFLICT DO UPDATE`, so that it overwrites what it wrote
//!   before and never duplicates.
//!
//! Either way the batch's minutes are marked for the rollups in the same
//! transaction. The direct COPY spares the staging copy and the conflict
//! checks of the merge (see BENCHMARKS.md, issue 13).

use std::collections::HashMap;
use std::sync::LazyLock;

use futures::SinkExt;
use sysmon_core::Snapshot;
use tokio_postgres::{Client, Transaction};

use super::copy::CopyBuf;
use super::maintain::{PartitionCache, PROCESSES, SAMPLES};
use crate::error::SinksError;
use crate::sqlite::codec;
use crate::sqlite::write::{u2i, validate_batch};

/// The columns of `samples`, in table order.
pub(crate) const SAMPLE_COLUMNS: [&str; 31] = [
    "machine",
    "time",
    "ts",
    "schema_version",
    "hostname",
    "interval_secs",
    "cpu",
    "mem",
    "disk_read_total",
    "disk_write_total",
    "net_sent_total",
    "net_recv_total",
    "load1",
    "load5",
    "load15",
    "mem_total",
    "mem_used",
    "mem_available",
    "swap_total",
    "swap_used",
    "disk_read_rate",
    "disk_write_rate",
    "net_sent_rate",
    "net_recv_rate",
    "uptime_secs",
    "cpu_per_core",
    "filesystems",
    "labels",
    "collector_errors",
    "custom_metrics",
    "host_details",
];

/// Per-connection staging tables, emptied at every commit (created once per
/// connection; the notice that they exist is not worth a log line per batch).
const TEMP_TABLES: &str = "
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS samples_in (LIKE samples) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS processes_in (LIKE processes) ON COMMIT DELETE ROWS;";

static COPY_SAMPLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "COPY samples_in ({}) FROM STDIN (FORMAT binary)",
        SAMPLE_COLUMNS.join(", ")
    )
});

static MERGE_SAMPLES: LazyLock<String> = LazyLock::new(|| {
    let cols = SAMPLE_COLUMNS.join(", ");
    let rest = &SAMPLE_COLUMNS[2..];
    format!(
        "INSERT INTO samples ({cols}) SELECT {cols} FROM samples_in
         ON CONFLICT (machine, time) DO UPDATE SET ({}) = ({})",
        rest.join(", "),
        rest.iter()
            .map(|c| format!("EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});

const COPY_PROCESSES: &str = "COPY processes_in (machine, time, top) FROM STDIN (FORMAT binary)";

static COPY_SAMPLES_DIRECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "COPY samples ({}) FROM STDIN (FORMAT binary)",
        SAMPLE_COLUMNS.join(", ")
    )
});

const COPY_PROCESSES_DIRECT: &str =
    "COPY processes (machine, time, top) FROM STDIN (FORMAT binary)";

const MERGE_PROCESSES: &str = "INSERT INTO processes (machine, time, top)
    SELECT machine, time, top FROM processes_in
    ON CONFLICT (machine, time) DO UPDATE SET top = EXCLUDED.top";

/// A replayed snapshot that no longer lists processes drops the old list.
const DELETE_PROCESSES: &str = "DELETE FROM processes p
    USING unnest($1::int4[], $2::int8[]) AS k(machine, ms)
    WHERE p.machine = k.machine AND p.time = timestamptz 'epoch' + k.ms * interval '1 millisecond'";

/// The batch's (machine, minute) pairs, minutes in epoch milliseconds.
const MARK_DIRTY: &str = "INSERT INTO dirty_minutes (machine, minute)
    SELECT m, timestamptz 'epoch' + ms * interval '1 millisecond'
    FROM unnest($1::int4[], $2::int8[]) AS k(m, ms)
    ON CONFLICT DO NOTHING";

/// The distinct (machine, minute) pairs of `rows` (minutes as epoch milliseconds).
fn dirty_minutes(rows: &[&Snapshot], ids: &HashMap<String, i32>) -> (Vec<i32>, Vec<i64>) {
    let mut seen: std::collections::HashSet<(i32, i64)> = std::collections::HashSet::new();
    for s in rows {
        if let Some(&m) = ids.get(&s.machine_id) {
            seen.insert((m, s.timestamp_millis().div_euclid(60_000) * 60_000));
        }
    }
    let mut pairs: Vec<(i32, i64)> = seen.into_iter().collect();
    pairs.sort_unstable();
    pairs.into_iter().unzip()
}

/// Whether `e` is a duplicate key: the batch holds a sample stored before.
fn duplicate_key(e: &SinksError) -> bool {
    matches!(e, SinksError::Postgres(err)
        if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}

const SELECT_MACHINES: &str =
    "SELECT id, machine_id FROM machines WHERE machine_id = ANY($1::text[])";

const INSERT_MACHINES: &str = "INSERT INTO machines (machine_id, hostname, last_seen)
    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) ORDER BY 1
    ON CONFLICT (machine_id) DO UPDATE SET machine_id = EXCLUDED.machine_id
    RETURNING id, machine_id";

const TOUCH_MACHINES: &str = "UPDATE machines m SET
        hostname = coalesce(i.hostname, m.hostname),
        last_seen = i.last_seen
    FROM unnest($1::text[], $2::text[], $3::float8[]) AS i(machine_id, hostname, last_seen)
    WHERE m.machine_id = i.machine_id AND i.last_seen >= m.last_seen
      AND (i.last_seen > m.last_seen OR i.hostname IS DISTINCT FROM m.hostname)";

/// Interns the batch's machines (creating new ones) and advances their
/// `last_seen` and host name. Returns machine id -> integer id.
async fn intern(
    tx: &Transaction<'_>,
    batch: &[&Snapshot],
) -> Result<HashMap<String, i32>, SinksError> {
    let mut newest: HashMap<&str, (f64, Option<&str>)> = HashMap::new();
    for s in batch {
        let e = newest
            .entry(s.machine_id.as_str())
            .or_insert((f64::NEG_INFINITY, None));
        if s.timestamp >= e.0 {
            *e = (s.timestamp, s.hostname.as_deref().or(e.1));
        } else if e.1.is_none() {
            e.1 = s.hostname.as_deref();
        }
    }
    let mut names: Vec<&str> = newest.keys().copied().collect();
    names.sort_unstable();
    let hosts: Vec<Option<&str>> = names.iter().map(|n| newest[n].1).collect();
    let seen: Vec<f64> = names.iter().map(|n| newest[n].0).collect();

    let mut ids: HashMap<String, i32> = HashMap::with_capacity(names.len());
    for row in tx.query(SELECT_MACHINES, &[&names]).await? {
        ids.insert(row.get(1), row.get(0));
    }
    if ids.len() < names.len() {
        let (mut n, mut h, mut t) = (Vec::new(), Vec::new(), Vec::new());
        for (i, name) in names.iter().enumerate() {
            if !ids.contains_key(*name) {
                n.push(*name);
                h.push(hosts[i]);
                t.push(seen[i]);
            }
        }
        for row in tx.query(INSERT_MACHINES, &[&n, &h, &t]).await? {
            ids.insert(row.get(1), row.get(0));
        }
    }
    tx.execute(TOUCH_MACHINES, &[&names, &hosts, &seen]).await?;
    Ok(ids)
}

/// A JSON text field, NULL when `empty`.
fn json_field<T: serde::Serialize>(
    buf: &mut CopyBuf,
    v: &T,
    empty: bool,
    what: &str,
    scratch: &mut Vec<u8>,
) -> Result<(), SinksError> {
    if empty {
        buf.null();
        return Ok(());
    }
    scratch.clear();
    serde_json::to_writer(&mut *scratch, v)
        .map_err(|e| SinksError::InvalidInput(format!("{what}: {e}")))?;
    buf.bytes(scratch).map_err(too_big)
}

fn too_big(e: String) -> SinksError {
    SinksError::InvalidInput(format!("snapshot too large for PostgreSQL: {e}"))
}

/// Encodes the samples and process lists of `rows` as two COPY payloads, and
/// lists the keys of snapshots without processes.
fn encode(
    rows: &[&Snapshot],
    ids: &HashMap<String, i32>,
) -> Result<(CopyBuf, CopyBuf, Vec<i32>, Vec<i64>), SinksError> {
    let mut samples = CopyBuf::with_capacity(rows.len() * 320);
    let mut procs = CopyBuf::with_capacity(rows.len() * 400);
    let (mut no_procs_machine, mut no_procs_ms) = (Vec::new(), Vec::new());
    let mut scratch = Vec::with_capacity(1024);
    let mut scratch2 = Vec::with_capacity(64);
    for s in rows {
        let machine = *ids.get(&s.machine_id).ok_or_else(|| {
            SinksError::InvalidInput(format!("machine {:?} was not interned", s.machine_id))
        })?;
        let ts_ms = s.timestamp_millis();
        samples.row(SAMPLE_COLUMNS.len() as i16);
        samples.int4(machine);
        samples.timestamptz_ms(ts_ms);
        samples.float8(s.timestamp);
        samples.int4(i32::try_from(s.schema_version).unwrap_or(i32::MAX));
        match &s.hostname {
            Some(h) => samples.bytes(h.as_bytes()).map_err(too_big)?,
            None => samples.null(),
        }
        samples.opt(s.interval_secs, CopyBuf::float8);
        samples.float8(s.cpu_usage);
        samples.float8(s.memory_usage);
        samples.int8(u2i(s.disk_io.read));
        samples.int8(u2i(s.disk_io.write));
        samples.int8(u2i(s.network_io.sent));
        samples.int8(u2i(s.network_io.recv));
        let load = s.load_avg.as_ref();
        samples.opt(load.map(|l| l.one), CopyBuf::float8);
        samples.opt(load.map(|l| l.five), CopyBuf::float8);
        samples.opt(load.map(|l| l.fifteen), CopyBuf::float8);
        let mem = s.memory.as_ref();
        samples.opt(mem.map(|m| u2i(m.total_bytes)), CopyBuf::int8);
        samples.opt(mem.map(|m| u2i(m.used_bytes)), CopyBuf::int8);
        samples.opt(mem.map(|m| u2i(m.available_bytes)), CopyBuf::int8);
        samples.opt(mem.map(|m| u2i(m.swap_total_bytes)), CopyBuf::int8);
        samples.opt(mem.map(|m| u2i(m.swap_used_bytes)), CopyBuf::int8);
        samples.opt(s.disk_rate.map(|d| d.read), CopyBuf::float8);
        samples.opt(s.disk_rate.map(|d| d.write), CopyBuf::float8);
        samples.opt(s.network_rate.map(|n| n.sent), CopyBuf::float8);
        samples.opt(s.network_rate.map(|n| n.recv), CopyBuf::float8);
        samples.opt(s.uptime_secs.map(u2i), CopyBuf::int8);
        scratch.clear();
        codec::encode_cores(&s.cpu_per_core, &mut scratch);
        samples.bytes_or_null(&scratch).map_err(too_big)?;
        scratch.clear();
        if !s.filesystems.is_empty() {
            codec::encode_filesystems(&s.filesystems, &mut scratch);
        }
        samples.bytes_or_null(&scratch).map_err(too_big)?;
        json_field(
            &mut samples,
            &s.labels,
            s.labels.is_empty(),
            "labels",
            &mut scratch,
        )?;
        json_field(
            &mut samples,
            &s.collector_errors,
            s.collector_errors.is_empty(),
            "collector_errors",
            &mut scratch,
        )?;
        json_field(
            &mut samples,
            &s.custom_metrics,
            s.custom_metrics.is_empty(),
            "custom_metrics",
            &mut scratch,
        )?;
        if sysmon_core::codec::binary::has_host_details(s) {
            samples
                .bytes(&sysmon_core::codec::binary::encode_host_details(s))
                .map_err(too_big)?;
        } else {
            samples.null();
        }

        if s.top_cpu_processes.is_empty() && s.top_mem_processes.is_empty() {
            no_procs_machine.push(machine);
            no_procs_ms.push(ts_ms);
        } else {
            scratch.clear();
            codec::encode_processes(
                &s.top_cpu_processes,
                &s.top_mem_processes,
                &mut scratch2,
                &mut scratch,
            );
            procs.row(3);
            procs.int4(machine);
            procs.timestamptz_ms(ts_ms);
            procs.bytes(&scratch).map_err(too_big)?;
        }
    }
    Ok((samples, procs, no_procs_machine, no_procs_ms))
}

async fn copy_in(
    tx: &Transaction<'_>,
    sql: &str,
    payload: bytes::Bytes,
) -> Result<u64, SinksError> {
    let sink = tx.copy_in(sql).await?;
    futures::pin_mut!(sink);
    sink.send(payload).await?;
    Ok(sink.finish().await?)
}

/// The snapshots of `batch` to store: the last one of each `(machine, ms)` key
/// (PostgreSQL refuses to update one row twice in a statement).
fn last_per_key(batch: &[Snapshot]) -> Vec<&Snapshot> {
    let mut last: HashMap<(&str, i64), usize> = HashMap::with_capacity(batch.len());
    for (i, s) in batch.iter().enumerate() {
        last.insert((s.machine_id.as_str(), s.timestamp_millis()), i);
    }
    if last.len() == batch.len() {
        return batch.iter().collect();
    }
    batch
        .iter()
        .enumerate()
        .filter(|(i, s)| last.get(&(s.machine_id.as_str(), s.timestamp_millis())) == Some(i))
        .map(|(_, s)| s)
        .collect()
}

/// Writes `batch` in one transaction; see the [module docs](self).
///
/// `merge_only` takes the replay way for every batch (the benchmark's
/// "before": what every batch did before the direct COPY).
pub(crate) async fn write_batch(
    client: &mut Client,
    cache: &PartitionCache,
    batch: &[Snapshot],
    merge_only: bool,
) -> Result<(), SinksError> {
    if batch.is_empty() {
        return Ok(());
    }
    validate_batch(batch)?;
    let rows = last_per_key(batch);
    for t in [SAMPLES, PROCESSES] {
        cache
            .ensure(
                client,
                t,
                rows.iter().map(|s| t.start_of(s.timestamp_millis())),
            )
            .await?;
    }
    let tx = client.transaction().await?;
    let ids = intern(&tx, &rows).await?;
    let (samples, procs, no_procs_machine, no_procs_ms) = encode(&rows, &ids)?;
    let (samples, procs) = (samples.finish(), procs.finish());
    let with_procs = no_procs_machine.len() < rows.len();
    // New samples go straight into the tables; a stored key sends the batch
    // the replay way.
    let stored = !merge_only && {
        tx.batch_execute("SAVEPOINT fresh").await?;
        let fresh = async {
            copy_in(&tx, &COPY_SAMPLES_DIRECT, samples.clone()).await?;
            if with_procs {
                copy_in(&tx, COPY_PROCESSES_DIRECT, procs.clone()).await?;
            }
            Ok::<(), SinksError>(())
        }
        .await;
        match fresh {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT fresh").await?;
                true
            }
            Err(e) if duplicate_key(&e) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT fresh").await?;
                false
            }
            Err(e) => return Err(e),
        }
    };
    if !stored {
        tx.batch_execute(TEMP_TABLES).await?;
        copy_in(&tx, &COPY_SAMPLES, samples).await?;
        tx.execute(MERGE_SAMPLES.as_str(), &[]).await?;
        if with_procs {
            copy_in(&tx, COPY_PROCESSES, procs).await?;
            tx.execute(MERGE_PROCESSES, &[]).await?;
        }
        if !no_procs_machine.is_empty() {
            tx.execute(DELETE_PROCESSES, &[&no_procs_machine, &no_procs_ms])
                .await?;
        }
    }
    let (dirty_machine, dirty_minute) = dirty_minutes(&rows, &ids);
    tx.execute(MARK_DIRTY, &[&dirty_machine, &dirty_minute])
        .await?;
    tx.commit().await?;
    Ok(())
}
