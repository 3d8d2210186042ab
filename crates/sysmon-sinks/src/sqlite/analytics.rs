//! Analytics in SQLite: anomaly scores, alert history and the active alerts
//! (schema version 4), written by the ingester's [`AnalyticsService`] and read
//! by the dashboard.
//!
//! [`AnalyticsService`]: sysmon_analytics::AnalyticsService

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sysmon_analytics::alerts::AlertEvent;
use sysmon_analytics::{AnalyticsRecord, AnalyticsSink, FLEET_SCOPE};
use sysmon_core::alert::{ActiveAlert, Anomaly, Episode};
use sysmon_core::SinkError;

use super::keys::{self, TS_BITS};
use super::{to_sink_error, SqliteSink};
use crate::error::SinksError;

/// One point of a machine's anomaly-score series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScorePoint {
    /// The sample's timestamp.
    pub timestamp: f64,
    /// The score.
    pub score: f64,
    /// Whether it was flagged.
    pub anomaly: bool,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn machine_key_id(conn: &Connection, machine_id: &str) -> Result<Option<i64>, SinksError> {
    Ok(conn
        .prepare_cached("SELECT id FROM machines WHERE machine_id = ?1")?
        .query_row(params![machine_id], |r| r.get(0))
        .optional()?)
}

/// Stores one record in one transaction.
pub(crate) fn write_record(
    conn: &mut Connection,
    record: &AnalyticsRecord,
) -> Result<(), SinksError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut ids: std::collections::HashMap<&str, Option<i64>> = Default::default();
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO anomaly_scores (key, ts, score, anomaly, reasons)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for s in &record.scores {
            let id = match ids.get(s.machine_id.as_str()) {
                Some(id) => *id,
                None => {
                    let id = machine_key_id(&tx, &s.machine_id)?;
                    ids.insert(s.machine_id.as_str(), id);
                    id
                }
            };
            // A score of a machine SQLite does not know (its samples were never
            // stored here) has nothing to attach to.
            let Some(id) = id else { continue };
            if !s.timestamp.is_finite() || !s.score.is_finite() {
                continue;
            }
            let ts_ms = (s.timestamp * 1000.0).round() as i64;
            if keys::check_ts(ts_ms, s.timestamp).is_err() {
                continue;
            }
            let reasons = if s.reasons.is_empty() {
                None
            } else {
                serde_json::to_string(&s.reasons).ok()
            };
            insert.execute(params![
                keys::sample_key(id, ts_ms),
                s.timestamp,
                s.score,
                s.anomaly,
                reasons
            ])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO alert_events (at, rule, severity, machine_id, subject, state, value, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for e in &record.events {
            insert.execute(params![
                e.at,
                e.rule,
                e.severity.to_string(),
                e.machine_id,
                e.subject,
                e.state.name(),
                finite(e.value),
                e.message
            ])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO anomaly_episodes
             (machine_id, start, end_ts, peak_at, peak_score, samples, metrics, reasons, open)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in &record.episodes {
            if ![e.start, e.end, e.peak_at, e.peak_score]
                .iter()
                .all(|v| v.is_finite())
            {
                continue;
            }
            insert.execute(params![
                e.machine_id,
                e.start,
                e.end,
                e.peak_at,
                e.peak_score,
                e.samples,
                // A list of strings always serializes.
                serde_json::to_string(&e.metrics).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into()),
                e.open
            ])?;
        }
    }
    if let Some(set) = &record.active {
        // Only the scopes this engine owns are replaced (another ingester of the
        // group owns the others).
        {
            let mut clear = tx.prepare_cached("DELETE FROM active_alerts WHERE machine_id = ?1")?;
            for scope in &set.scopes {
                // FLEET_SCOPE is the empty string, the fleet's `machine_id` column.
                clear.execute(params![scope.as_str()])?;
            }
        }
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO active_alerts
             (rule, machine_id, subject, severity, state, since, value, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for a in &set.alerts {
            insert.execute(params![
                a.rule,
                a.machine_id.as_deref().unwrap_or(FLEET_SCOPE),
                a.subject.as_deref().unwrap_or(""),
                a.severity.to_string(),
                a.state.name(),
                a.since,
                finite(a.value),
                a.message
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Flagged samples since `since`, newest first.
pub(crate) fn anomalies(
    conn: &Connection,
    machine_id: Option<&str>,
    since: f64,
    limit: usize,
) -> Result<Vec<Anomaly>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT m.machine_id, a.ts, a.score, a.reasons, s.cpu, s.mem
         FROM anomaly_scores a
         JOIN machines m ON m.id = (a.key >> {TS_BITS})
         LEFT JOIN samples s ON s.key = a.key
         WHERE a.anomaly = 1 AND a.ts >= ?1 AND (?2 IS NULL OR m.machine_id = ?2)
         ORDER BY a.ts DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![since, machine_id, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<f64>>(4)?,
            r.get::<_, Option<f64>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (machine_id, timestamp, score, reasons, cpu, memory) = row?;
        let reasons: Vec<String> = match reasons {
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                SinksError::Corrupt(format!(
                    "anomaly reasons of {machine_id:?} at {timestamp}: {e}"
                ))
            })?,
            None => Vec::new(),
        };
        out.push(Anomaly {
            machine_id,
            timestamp,
            score,
            cpu,
            memory,
            message: reasons.join("; "),
        });
    }
    Ok(out)
}

/// Episodes that ended at or after `since`, of one machine or all, newest
/// start first.
pub(crate) fn episodes(
    conn: &Connection,
    machine_id: Option<&str>,
    since: f64,
    limit: usize,
) -> Result<Vec<Episode>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT machine_id, start, end_ts, peak_at, peak_score, samples, metrics, reasons, open
         FROM anomaly_episodes WHERE end_ts >= ?1 AND (?2 IS NULL OR machine_id = ?2)
         ORDER BY start DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![since, machine_id, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, u32>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, bool>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (machine_id, start, end, peak_at, peak_score, samples, metrics, reasons, open) = row?;
        let list = |what: &str, j: &str| {
            serde_json::from_str::<Vec<String>>(j).map_err(|e| {
                SinksError::Corrupt(format!(
                    "anomaly episode of {machine_id:?} at {start}: {what}: {e}"
                ))
            })
        };
        out.push(Episode {
            metrics: list("metrics", &metrics)?,
            reasons: list("reasons", &reasons)?,
            machine_id,
            start,
            end,
            peak_at,
            peak_score,
            samples,
            open,
        });
    }
    Ok(out)
}

/// A machine's scores with `since <= ts < until`, oldest first.
pub(crate) fn scores(
    conn: &Connection,
    machine_id: &str,
    since: f64,
    until: f64,
) -> Result<Vec<ScorePoint>, SinksError> {
    let Some(id) = machine_key_id(conn, machine_id)? else {
        return Ok(Vec::new());
    };
    let to_ms = |t: f64| (t * 1000.0).floor().clamp(0.0, keys::TS_MASK as f64) as i64;
    let (lo, hi) = keys::sample_range(id, to_ms(since), to_ms(until));
    let mut stmt = conn.prepare_cached(
        "SELECT ts, score, anomaly FROM anomaly_scores WHERE key >= ?1 AND key < ?2 ORDER BY key",
    )?;
    let rows = stmt.query_map(params![lo, hi], |r| {
        Ok(ScorePoint {
            timestamp: r.get(0)?,
            score: r.get(1)?,
            anomaly: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Alert transitions since `since`, newest first.
pub(crate) fn alert_events(
    conn: &Connection,
    since: f64,
    limit: usize,
) -> Result<Vec<AlertEvent>, SinksError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT rule, severity, machine_id, subject, state, value, at, message
         FROM alert_events WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<f64>>(5)?,
            r.get::<_, f64>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rule, severity, machine_id, subject, state, value, at, message) = row?;
        let corrupt = |what: &str, v: &str, e: serde_json::Error| {
            SinksError::Corrupt(format!("alert event {rule:?} at {at}: {what} {v:?}: {e}"))
        };
        let severity = serde_json::from_value(serde_json::Value::String(severity.clone()))
            .map_err(|e| corrupt("severity", &severity, e))?;
        let state = serde_json::from_value(serde_json::Value::String(state.clone()))
            .map_err(|e| corrupt("state", &state, e))?;
        out.push(AlertEvent {
            severity,
            state,
            rule,
            machine_id,
            subject,
            value: value.unwrap_or(f64::NAN),
            at,
            message,
        });
    }
    Ok(out)
}

/// The pending and firing alerts, firing first, then by rule and machine.
pub(crate) fn active_alerts(conn: &Connection) -> Result<Vec<ActiveAlert>, SinksError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rule, severity, machine_id, subject, state, since, value, message
         FROM active_alerts ORDER BY state = 'firing' DESC, rule, machine_id, subject",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, f64>(5)?,
            r.get::<_, Option<f64>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rule, severity, machine, subject, state, since, value, message) = row?;
        out.push(ActiveAlert {
            severity: parse_name(&severity).map_err(|e| corrupt_alert(&rule, "severity", e))?,
            state: parse_name(&state).map_err(|e| corrupt_alert(&rule, "state", e))?,
            rule,
            machine_id: (!machine.is_empty()).then_some(machine),
            subject: (!subject.is_empty()).then_some(subject),
            since,
            value: value.unwrap_or(f64::NAN),
            message,
        });
    }
    Ok(out)
}

/// A severity or state from its stored name.
fn parse_name<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| format!("{name:?}: {e}"))
}

fn corrupt_alert(rule: &str, what: &str, e: String) -> SinksError {
    SinksError::Corrupt(format!("active alert {rule:?}: {what} {e}"))
}

impl SqliteSink {
    /// Stores an analytics record in one transaction (what
    /// [`AnalyticsSink::record`] does).
    pub async fn write_analytics(&self, record: AnalyticsRecord) -> Result<(), SinksError> {
        self.blocking(move |inner| inner.with_writer(|c| write_record(c, &record)))
            .await
    }

    /// Flagged samples since `since` (seconds since the epoch), of one machine or
    /// all, newest first, at most `limit`.
    pub async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Anomaly>, SinksError> {
        let machine_id = machine_id.map(str::to_string);
        self.read(move |c| anomalies(c, machine_id.as_deref(), since, limit))
            .await
    }

    /// Anomaly episodes that ended at or after `since`, of one machine or all,
    /// newest first, at most `limit`.
    pub async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Episode>, SinksError> {
        let machine_id = machine_id.map(str::to_string);
        self.read(move |c| episodes(c, machine_id.as_deref(), since, limit))
            .await
    }

    /// `machine_id`'s anomaly scores with `since <= t < until`, oldest first.
    pub async fn anomaly_scores(
        &self,
        machine_id: &str,
        since: f64,
        until: f64,
    ) -> Result<Vec<ScorePoint>, SinksError> {
        let machine_id = machine_id.to_string();
        self.read(move |c| scores(c, &machine_id, since, until))
            .await
    }

    /// Alert transitions since `since`, newest first, at most `limit`.
    pub async fn alert_history(
        &self,
        since: f64,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, SinksError> {
        self.read(move |c| alert_events(c, since, limit)).await
    }

    /// The pending and firing alerts as last stored.
    pub async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, SinksError> {
        self.read(active_alerts).await
    }
}

#[async_trait]
impl AnalyticsSink for SqliteSink {
    fn name(&self) -> &str {
        super::NAME
    }

    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError> {
        self.write_analytics(record.clone())
            .await
            .map_err(to_sink_error)
    }
}
