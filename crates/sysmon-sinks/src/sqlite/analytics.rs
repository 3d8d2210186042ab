//! Analytics in SQLite: anomaly scores, alert history and the active alerts
//! (schema version 4), written by the ingester's [`AnalyticsService`] and read
//! by the dashboard.
//!
//! [`AnalyticsService`]: sysmon_core::analytics::AnalyticsService

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sysmon_core::analytics::alerts::{ActiveAlert, AlertEvent, AlertState};
use sysmon_core::analytics::{AnalyticsRecord, AnalyticsSink, FLEET_SCOPE};
use sysmon_core::SinkError;

use super::keys::{self, TS_BITS};
use super::{to_sink_error, SqliteSink};
use crate::error::SinksError;

/// A flagged sample, with the sample's CPU and memory for the scatter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAnomaly {
    /// The machine.
    pub machine_id: String,
    /// The sample's timestamp, seconds since the epoch.
    pub timestamp: f64,
    /// The detector's score in [0, 1) (0.5 is the decision boundary).
    pub score: f64,
    /// Why it was flagged.
    pub reasons: Vec<String>,
    /// CPU % of the sample (when the sample is still stored).
    pub cpu: Option<f64>,
    /// Memory % of the sample (when the sample is still stored).
    pub memory: Option<f64>,
}

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

/// A pending or firing alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredActiveAlert {
    /// The rule's name.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The machine, `None` for fleet rules.
    pub machine_id: Option<String>,
    /// The mount point of filesystem rules.
    pub subject: Option<String>,
    /// `pending` or `firing`.
    pub state: String,
    /// Since when, seconds since the epoch.
    pub since: f64,
    /// The latest value.
    pub value: Option<f64>,
    /// The firing message, or a description while pending.
    pub message: String,
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

pub(crate) fn describe_pending(a: &ActiveAlert) -> String {
    let on = a.machine_id.as_deref().unwrap_or("the fleet");
    let what = a
        .subject
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    format!(
        "{} {} on {on}{what}: value {:.1}",
        a.rule,
        a.state.name(),
        a.value
    )
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
    if let Some(set) = &record.active {
        // Only the scopes this engine owns are replaced (another ingester of the
        // group owns the others).
        {
            let mut clear = tx.prepare_cached("DELETE FROM active_alerts WHERE machine_id = ?1")?;
            for scope in &set.scopes {
                let column = if scope == FLEET_SCOPE {
                    ""
                } else {
                    scope.as_str()
                };
                clear.execute(params![column])?;
            }
        }
        let mut firing_message = tx.prepare_cached(
            "SELECT message FROM alert_events
             WHERE rule = ?1 AND machine_id IS ?2 AND subject IS ?3 AND state = 'firing'
             ORDER BY id DESC LIMIT 1",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO active_alerts
             (rule, machine_id, subject, severity, state, since, value, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for a in &set.alerts {
            let message = if a.state == AlertState::Firing {
                firing_message
                    .query_row(params![a.rule, a.machine_id, a.subject], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()?
            } else {
                None
            }
            .unwrap_or_else(|| describe_pending(a));
            insert.execute(params![
                a.rule,
                a.machine_id.as_deref().unwrap_or(""),
                a.subject.as_deref().unwrap_or(""),
                a.severity.to_string(),
                a.state.name(),
                a.since,
                finite(a.value),
                message
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
) -> Result<Vec<StoredAnomaly>, SinksError> {
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
        let reasons = match reasons {
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                SinksError::Corrupt(format!(
                    "anomaly reasons of {machine_id:?} at {timestamp}: {e}"
                ))
            })?,
            None => Vec::new(),
        };
        out.push(StoredAnomaly {
            machine_id,
            timestamp,
            score,
            reasons,
            cpu,
            memory,
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
pub(crate) fn active_alerts(conn: &Connection) -> Result<Vec<StoredActiveAlert>, SinksError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rule, severity, machine_id, subject, state, since, value, message
         FROM active_alerts ORDER BY state = 'firing' DESC, rule, machine_id, subject",
    )?;
    let rows = stmt.query_map([], |r| {
        let machine: String = r.get(2)?;
        let subject: String = r.get(3)?;
        Ok(StoredActiveAlert {
            rule: r.get(0)?,
            severity: r.get(1)?,
            machine_id: (!machine.is_empty()).then_some(machine),
            subject: (!subject.is_empty()).then_some(subject),
            state: r.get(4)?,
            since: r.get(5)?,
            value: r.get(6)?,
            message: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
    ) -> Result<Vec<StoredAnomaly>, SinksError> {
        let machine_id = machine_id.map(str::to_string);
        self.blocking(move |inner| {
            inner.with_reader(|c| anomalies(c, machine_id.as_deref(), since, limit))
        })
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
        self.blocking(move |inner| inner.with_reader(|c| scores(c, &machine_id, since, until)))
            .await
    }

    /// Alert transitions since `since`, newest first, at most `limit`.
    pub async fn alert_history(
        &self,
        since: f64,
        limit: usize,
    ) -> Result<Vec<AlertEvent>, SinksError> {
        self.blocking(move |inner| inner.with_reader(|c| alert_events(c, since, limit)))
            .await
    }

    /// The pending and firing alerts as last stored.
    pub async fn active_alerts(&self) -> Result<Vec<StoredActiveAlert>, SinksError> {
        self.blocking(move |inner| inner.with_reader(active_alerts))
            .await
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
