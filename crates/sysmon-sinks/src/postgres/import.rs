//! Taking in another history (`sysmon import` from SQLite): machines, rollups
//! and alert history, each idempotent so that an interrupted import can simply
//! run again. (Raw samples go through the ordinary write path.)

use std::collections::HashMap;

use futures::SinkExt;
use sysmon_analytics::alerts::AlertEvent;
use sysmon_core::MachineSummary;

use super::copy::CopyBuf;
use super::maintain::{ALERT_EVENTS, ROLLUPS};
use super::PostgresSink;
use crate::error::SinksError;
use crate::sqlite::{RollupRow, ROLLUP_COLUMNS};

const UPSERT_MACHINES: &str = "
INSERT INTO machines (machine_id, hostname, last_seen)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) ORDER BY 1
ON CONFLICT (machine_id) DO UPDATE SET
    hostname = CASE WHEN EXCLUDED.last_seen >= machines.last_seen
                    THEN coalesce(EXCLUDED.hostname, machines.hostname)
                    ELSE machines.hostname END,
    last_seen = greatest(machines.last_seen, EXCLUDED.last_seen)";

const INSERT_EVENT: &str = "
INSERT INTO alert_events (time, at, rule, severity, machine_id, subject, state, value, message)
SELECT timestamptz 'epoch' + $1::int8 * interval '1 millisecond', $2, $3, $4, $5, $6, $7, $8, $9
WHERE NOT EXISTS (
    SELECT 1 FROM alert_events
    WHERE time = timestamptz 'epoch' + $1::int8 * interval '1 millisecond' AND at = $2
      AND rule = $3 AND machine_id IS NOT DISTINCT FROM $5
      AND subject IS NOT DISTINCT FROM $6 AND state = $7)";

impl PostgresSink {
    /// Creates the machines that are missing and advances `last_seen` and the
    /// host name of the others.
    pub async fn import_machines(&self, machines: &[MachineSummary]) -> Result<(), SinksError> {
        let ids: Vec<&str> = machines.iter().map(|m| m.machine_id.as_str()).collect();
        let hosts: Vec<Option<&str>> = machines.iter().map(|m| m.hostname.as_deref()).collect();
        let seen: Vec<f64> = machines.iter().map(|m| m.last_seen).collect();
        let client = self.client().await?;
        client
            .execute(UPSERT_MACHINES, &[&ids, &hosts, &seen])
            .await?;
        Ok(())
    }

    /// Stores rollup rows of known machines, keeping any row already present
    /// (one computed here from raw samples wins). Returns the rows added.
    pub async fn import_rollups(&self, rows: &[RollupRow]) -> Result<u64, SinksError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        self.inner
            .partitions
            .ensure(
                &mut client,
                ROLLUPS,
                rows.iter().map(|r| ROLLUPS.start_of(r.minute_ms)),
            )
            .await?;
        let names: Vec<&str> = rows.iter().map(|r| r.machine_id.as_str()).collect();
        let tx = client.transaction().await?;
        let ids: HashMap<String, i32> = tx
            .query(
                "SELECT machine_id, id FROM machines WHERE machine_id = ANY($1::text[])",
                &[&names],
            )
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.batch_execute(
            "SET LOCAL client_min_messages = warning;
             CREATE TEMP TABLE IF NOT EXISTS rollups_in (LIKE rollups) ON COMMIT DELETE ROWS",
        )
        .await?;
        let mut buf = CopyBuf::with_capacity(rows.len() * 300);
        for r in rows {
            let Some(&machine) = ids.get(&r.machine_id) else {
                continue;
            };
            if r.values.len() != ROLLUP_COLUMNS.len() {
                return Err(SinksError::InvalidInput(format!(
                    "a rollup row of {} has {} values, not {}",
                    r.machine_id,
                    r.values.len(),
                    ROLLUP_COLUMNS.len()
                )));
            }
            buf.row(2 + ROLLUP_COLUMNS.len() as i16);
            buf.int4(machine);
            buf.timestamptz_ms(r.minute_ms);
            for (col, v) in ROLLUP_COLUMNS.iter().zip(&r.values) {
                match v {
                    None => buf.null(),
                    Some(v) if *col == "n" || col.starts_with("n_") => buf.int4(*v as i32),
                    Some(v) => buf.float8(*v),
                }
            }
        }
        let cols = ROLLUP_COLUMNS.join(", ");
        let sink = tx
            .copy_in(&format!(
                "COPY rollups_in (machine, minute, {cols}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        futures::pin_mut!(sink);
        sink.send(buf.finish()).await?;
        sink.finish().await?;
        let added = tx
            .execute(
                &format!(
                    "INSERT INTO rollups (machine, minute, {cols}) \
                     SELECT machine, minute, {cols} FROM rollups_in ON CONFLICT DO NOTHING"
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Stores alert transitions not stored yet (same time, rule, machine,
    /// subject and state). Returns the events added.
    pub async fn import_alert_events(&self, events: &[AlertEvent]) -> Result<u64, SinksError> {
        let events: Vec<(i64, &AlertEvent)> = events
            .iter()
            .filter(|e| e.at.is_finite())
            .map(|e| ((e.at * 1000.0).round() as i64, e))
            .collect();
        let mut client = self.client().await?;
        self.inner
            .partitions
            .ensure(
                &mut client,
                ALERT_EVENTS,
                events.iter().map(|(m, _)| ALERT_EVENTS.start_of(*m)),
            )
            .await?;
        let tx = client.transaction().await?;
        let mut added = 0;
        for (ms, e) in &events {
            added += tx
                .execute(
                    INSERT_EVENT,
                    &[
                        ms,
                        &e.at,
                        &e.rule,
                        &e.severity.to_string(),
                        &e.machine_id,
                        &e.subject,
                        &e.state.name(),
                        &e.value.is_finite().then_some(e.value),
                        &e.message,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(added)
    }
}
