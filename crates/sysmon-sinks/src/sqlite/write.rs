//! The write path: one transaction per batch, cached prepared statements,
//! idempotent on `(machine, ts_ms)`.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sysmon_core::Snapshot;

use super::{codec, keys};
use crate::error::SinksError;

/// One minute in milliseconds.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// The start of the minute holding `ts_ms`.
pub(crate) fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// SQLite integers are signed: a `u64` is stored as its bit pattern (exact).
pub(crate) fn u2i(v: u64) -> i64 {
    v as i64
}

fn json<T: serde::Serialize>(v: &T, what: &str) -> Result<String, SinksError> {
    serde_json::to_string(v).map_err(|e| SinksError::InvalidInput(format!("{what}: {e}")))
}

const UPSERT_MACHINE: &str = "
INSERT INTO machines (machine_id, hostname, last_seen) VALUES (?1, ?2, ?3)
ON CONFLICT (machine_id) DO UPDATE SET
    hostname = CASE WHEN excluded.last_seen >= machines.last_seen AND excluded.hostname IS NOT NULL
                    THEN excluded.hostname ELSE machines.hostname END,
    last_seen = max(machines.last_seen, excluded.last_seen)
RETURNING id";

const INSERT_SAMPLE: &str = "
INSERT OR REPLACE INTO samples (
    key, ts, schema_version, hostname, interval_secs, cpu, mem,
    disk_read_total, disk_write_total, net_sent_total, net_recv_total,
    load1, load5, load15, mem_total, mem_used, mem_available, swap_total, swap_used,
    disk_read_rate, disk_write_rate, net_sent_rate, net_recv_rate, uptime_secs,
    cpu_per_core, filesystems, labels, collector_errors, custom_metrics, host_details
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
          ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)";

const INSERT_PROCESSES: &str = "INSERT OR REPLACE INTO processes (key, top) VALUES (?1, ?2)";

const DELETE_PROCESSES: &str = "DELETE FROM processes WHERE key = ?1";

const MARK_DIRTY: &str = "INSERT OR IGNORE INTO dirty_minutes (machine, minute_ms) VALUES (?1, ?2)";

fn storable_f64(v: f64, field: &str) -> Result<(), String> {
    if v.is_nan() {
        Err(format!("{field} is NaN"))
    } else {
        Ok(())
    }
}

/// Rejects what SQLite could not store exactly: NaN in a numeric column
/// (SQLite turns it into NULL), a non-finite custom metric (JSON has no such
/// number), a timestamp outside the key range. Plausibility (CPU within
/// 0..=100 and so on) is the ingester's job, done by `sysmon_core::codec::validate`
/// before a batch reaches any sink; this check only guards exactness, without
/// allocating on the success path.
fn check_storable(s: &Snapshot) -> Result<(), String> {
    if !s.timestamp.is_finite() {
        return Err(format!("timestamp {} is not finite", s.timestamp));
    }
    keys::check_ts(s.timestamp_millis(), s.timestamp).map_err(|e| e.to_string())?;
    storable_f64(s.cpu_usage, "cpu_usage")?;
    storable_f64(s.memory_usage, "memory_usage")?;
    if let Some(v) = s.interval_secs {
        storable_f64(v, "interval_secs")?;
    }
    if let Some(l) = &s.load_avg {
        storable_f64(l.one, "load_avg.one")?;
        storable_f64(l.five, "load_avg.five")?;
        storable_f64(l.fifteen, "load_avg.fifteen")?;
    }
    if let Some(r) = &s.disk_rate {
        storable_f64(r.read, "disk_rate.read")?;
        storable_f64(r.write, "disk_rate.write")?;
    }
    if let Some(r) = &s.network_rate {
        storable_f64(r.sent, "network_rate.sent")?;
        storable_f64(r.recv, "network_rate.recv")?;
    }
    for (k, v) in &s.custom_metrics {
        if !v.is_finite() {
            return Err(format!("custom_metrics.{k} is {v}, not a finite number"));
        }
    }
    Ok(())
}

/// Checks every snapshot before anything is written, naming the first bad one.
pub(crate) fn validate_batch(batch: &[Snapshot]) -> Result<(), SinksError> {
    for (i, s) in batch.iter().enumerate() {
        check_storable(s).map_err(|e| {
            SinksError::InvalidInput(format!(
                "snapshot {i} of the batch (machine {:?}, timestamp {}): {e}",
                s.machine_id, s.timestamp
            ))
        })?;
    }
    Ok(())
}

/// Renumbers the machine just inserted as `id` (past [`keys::MAX_MACHINE`])
/// with the lowest number no machine uses (one forgotten by retention), and
/// clears anything still keyed by that number. Fails when every number is in
/// use: that many machines alive at once do not fit one database.
fn reuse_machine_number(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<i64, SinksError> {
    let free: Option<i64> = tx
        .prepare_cached(
            "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM machines WHERE id = 1)
             UNION ALL
             SELECT * FROM (SELECT m.id + 1 FROM machines m
                 WHERE m.id < ?1
                   AND NOT EXISTS (SELECT 1 FROM machines n WHERE n.id = m.id + 1)
                 ORDER BY m.id LIMIT 1)
             LIMIT 1",
        )?
        .query_row(params![keys::MAX_MACHINE], |r| r.get(0))
        .optional()?;
    let Some(free) = free else {
        // (The transaction, with the row just inserted, is rolled back.)
        return Err(SinksError::InvalidInput(format!(
            "all {} machine numbers of this database are in use by machines with stored data",
            keys::MAX_MACHINE
        )));
    };
    tx.prepare_cached("UPDATE machines SET id = ?1 WHERE id = ?2")?
        .execute(params![free, id])?;
    // Retention removed the old machine's samples with their scores; a score
    // written after that must not be shown as the new machine's.
    let (lo, hi) = keys::sample_range(free, 0, i64::MAX);
    tx.prepare_cached("DELETE FROM anomaly_scores WHERE key >= ?1 AND key < ?2")?
        .execute(params![lo, hi])?;
    Ok(free)
}

/// Writes `batch` in one transaction. Replaying a batch replaces the rows it
/// wrote before (same key), so it never duplicates.
pub(crate) fn write_batch(conn: &mut Connection, batch: &[Snapshot]) -> Result<(), SinksError> {
    if batch.is_empty() {
        return Ok(());
    }
    validate_batch(batch)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;

    // Intern machine ids: one upsert per distinct machine in the batch, which
    // also advances last_seen and hostname.
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
    let mut ids: HashMap<&str, i64> = HashMap::with_capacity(newest.len());
    {
        let mut upsert = tx.prepare_cached(UPSERT_MACHINE)?;
        for (machine_id, (last_seen, hostname)) in &newest {
            let mut id: i64 =
                upsert.query_row(params![machine_id, hostname, last_seen], |r| r.get(0))?;
            if id > keys::MAX_MACHINE {
                // SQLite numbers a new row max(id) + 1: churn reaches the
                // ceiling while the numbers of forgotten machines lie unused
                // below it. Give the new machine the lowest free one.
                id = reuse_machine_number(&tx, id)?;
            }
            keys::check_machine(id)?;
            ids.insert(machine_id, id);
        }
    }

    {
        let mut insert = tx.prepare_cached(INSERT_SAMPLE)?;
        let mut insert_procs = tx.prepare_cached(INSERT_PROCESSES)?;
        let mut delete_procs = tx.prepare_cached(DELETE_PROCESSES)?;
        let mut mark_dirty = tx.prepare_cached(MARK_DIRTY)?;
        let mut dirty: HashSet<(i64, i64)> = HashSet::new();
        let mut cores = Vec::with_capacity(256);
        let mut fs = Vec::with_capacity(256);
        let mut procs = Vec::with_capacity(1024);
        let mut scratch = Vec::with_capacity(32);

        for s in batch {
            let machine = ids.get(s.machine_id.as_str()).copied().ok_or_else(|| {
                SinksError::InvalidInput(format!("machine {:?} was not interned", s.machine_id))
            })?;
            let ts_ms = s.timestamp_millis();

            cores.clear();
            codec::encode_cores(&s.cpu_per_core, &mut cores);
            fs.clear();
            if !s.filesystems.is_empty() {
                codec::encode_filesystems(&s.filesystems, &mut fs);
            }
            let labels = if s.labels.is_empty() {
                None
            } else {
                Some(json(&s.labels, "labels")?)
            };
            let errors = if s.collector_errors.is_empty() {
                None
            } else {
                Some(json(&s.collector_errors, "collector_errors")?)
            };
            let custom = if s.custom_metrics.is_empty() {
                None
            } else {
                Some(json(&s.custom_metrics, "custom_metrics")?)
            };
            let details = sysmon_core::codec::binary::has_host_details(s)
                .then(|| sysmon_core::codec::binary::encode_host_details(s));
            let load = s.load_avg.as_ref();
            let mem = s.memory.as_ref();
            let disk = s.disk_rate.as_ref();
            let net = s.network_rate.as_ref();
            insert.execute(params![
                keys::sample_key(machine, ts_ms),
                s.timestamp,
                s.schema_version,
                s.hostname,
                s.interval_secs,
                s.cpu_usage,
                s.memory_usage,
                u2i(s.disk_io.read),
                u2i(s.disk_io.write),
                u2i(s.network_io.sent),
                u2i(s.network_io.recv),
                load.map(|l| l.one),
                load.map(|l| l.five),
                load.map(|l| l.fifteen),
                mem.map(|m| u2i(m.total_bytes)),
                mem.map(|m| u2i(m.used_bytes)),
                mem.map(|m| u2i(m.available_bytes)),
                mem.map(|m| u2i(m.swap_total_bytes)),
                mem.map(|m| u2i(m.swap_used_bytes)),
                disk.map(|d| d.read),
                disk.map(|d| d.write),
                net.map(|n| n.sent),
                net.map(|n| n.recv),
                s.uptime_secs.map(u2i),
                (!cores.is_empty()).then_some(cores.as_slice()),
                (!fs.is_empty()).then_some(fs.as_slice()),
                labels,
                errors,
                custom,
                details,
            ])?;

            if s.top_cpu_processes.is_empty() && s.top_mem_processes.is_empty() {
                delete_procs.execute(params![keys::process_key(machine, ts_ms)])?;
            } else {
                procs.clear();
                codec::encode_processes(
                    &s.top_cpu_processes,
                    &s.top_mem_processes,
                    &mut scratch,
                    &mut procs,
                );
                insert_procs
                    .execute(params![keys::process_key(machine, ts_ms), procs.as_slice()])?;
            }
            dirty.insert((machine, minute_of(ts_ms)));
        }
        for (machine, minute) in dirty {
            mark_dirty.execute(params![machine, minute])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c, ":memory:").unwrap();
        c
    }

    fn sample(machine: &str, ts: f64) -> Snapshot {
        Snapshot::new(machine, ts)
    }

    fn number_of(c: &Connection, machine: &str) -> i64 {
        c.query_row(
            "SELECT id FROM machines WHERE machine_id = ?1",
            [machine],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn new_machines_past_the_ceiling_reuse_forgotten_numbers() {
        let mut c = db();
        let t = 1_764_086_400.0;
        write_batch(&mut c, &[sample("a", t)]).unwrap();
        write_batch(&mut c, &[sample("b", t)]).unwrap();
        assert_eq!((number_of(&c, "a"), number_of(&c, "b")), (1, 2));
        // Churn has reached the ceiling: the newest machine holds the last
        // number, and `a`'s number was freed when retention forgot it.
        c.execute(
            "UPDATE machines SET id = ?1 WHERE machine_id = 'b'",
            [keys::MAX_MACHINE],
        )
        .unwrap();
        c.execute("DELETE FROM samples WHERE key >> 42 = 1", [])
            .unwrap();
        c.execute("DELETE FROM dirty_minutes", []).unwrap();
        c.execute("DELETE FROM machines WHERE machine_id = 'a'", [])
            .unwrap();
        // A stale score under the freed number must not become the new machine's.
        c.execute(
            "INSERT INTO anomaly_scores (key, ts, score, anomaly) VALUES (?1, ?2, 9, 1)",
            params![keys::sample_key(1, 1_764_086_400_000), t],
        )
        .unwrap();

        write_batch(&mut c, &[sample("b", t + 1.0)]).unwrap();
        write_batch(&mut c, &[sample("c", t + 1.0), sample("b", t + 2.0)]).unwrap();
        assert_eq!(number_of(&c, "c"), 1, "the lowest free number is reused");
        assert_eq!(number_of(&c, "b"), keys::MAX_MACHINE);
        let scores: i64 = c
            .query_row("SELECT count(*) FROM anomaly_scores", [], |r| r.get(0))
            .unwrap();
        assert_eq!(scores, 0);
        // The next one takes the next gap, and the samples are where they belong.
        write_batch(&mut c, &[sample("d", t + 2.0)]).unwrap();
        assert_eq!(number_of(&c, "d"), 2);
        let c_rows: i64 = c
            .query_row(
                "SELECT count(*) FROM samples_by_machine WHERE machine_id = 'c'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(c_rows, 1);
    }

    #[test]
    fn a_full_database_refuses_new_machines_only() {
        let mut c = db();
        let t = 1_764_086_400.0;
        write_batch(&mut c, &[sample("old", t)]).unwrap();
        // Every number below the ceiling in use (simulated by a run of rows).
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO machines (id, machine_id, last_seen) SELECT i, 'm' || i, 0 FROM n",
            [keys::MAX_MACHINE],
        )
        .unwrap();
        let e = write_batch(&mut c, &[sample("new", t)]).unwrap_err();
        assert!(matches!(e, SinksError::InvalidInput(_)), "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        // Known machines still write.
        write_batch(&mut c, &[sample("old", t + 1.0)]).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM machines WHERE machine_id = 'new'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }
}
