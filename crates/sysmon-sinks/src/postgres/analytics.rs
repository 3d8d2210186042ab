//! Analytics in PostgreSQL: anomaly scores, alert history and the active
//! alerts (scoped per ingester), written by the ingester's
//! [`AnalyticsService`](sysmon_analytics::AnalyticsService) through
//! [`AnalyticsSink`], as in SQLite.

use async_trait::async_trait;
use sysmon_analytics::{AnalyticsRecord, AnalyticsSink, SharedFleet, FLEET_SCOPE};
use sysmon_core::alert::ActiveAlert;
use sysmon_core::{AnalyticsReader, SinkError, Snapshot, StoreError};
use tokio_postgres::Client;

use super::maintain::{PartitionCache, ALERT_EVENTS, ANOMALY_SCORES};
use super::{to_sink_error, to_store_error, PostgresSink};
use crate::error::SinksError;

const INSERT_SCORES: &str = "
INSERT INTO anomaly_scores (machine, time, ts, score, anomaly, reasons)
SELECT DISTINCT ON (m.id, u.ms)
       m.id, timestamptz 'epoch' + u.ms * interval '1 millisecond', u.ts, u.score, u.anomaly, u.reasons
FROM unnest($1::text[], $2::int8[], $3::float8[], $4::float8[], $5::bool[], $6::text[])
     WITH ORDINALITY AS u(machine_id, ms, ts, score, anomaly, reasons, ord)
JOIN machines m ON m.machine_id = u.machine_id
ORDER BY m.id, u.ms, u.ord DESC
ON CONFLICT (machine, time) DO UPDATE SET
    ts = EXCLUDED.ts, score = EXCLUDED.score, anomaly = EXCLUDED.anomaly, reasons = EXCLUDED.reasons";

const INSERT_EVENT: &str = "
INSERT INTO alert_events (time, at, rule, severity, machine_id, subject, state, value, message)
VALUES (timestamptz 'epoch' + $1::int8 * interval '1 millisecond', $2, $3, $4, $5, $6, $7, $8, $9)";

const UPSERT_ACTIVE: &str = "
INSERT INTO active_alerts (rule, machine_id, subject, severity, state, since, value, message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (rule, machine_id, subject) DO UPDATE SET
    severity = EXCLUDED.severity, state = EXCLUDED.state, since = EXCLUDED.since,
    value = EXCLUDED.value, message = EXCLUDED.message";

const UPSERT_EPISODE: &str = "
INSERT INTO anomaly_episodes
    (machine_id, start, end_ts, peak_at, peak_score, samples, metrics, reasons, open)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (machine_id, start) DO UPDATE SET
    end_ts = EXCLUDED.end_ts, peak_at = EXCLUDED.peak_at, peak_score = EXCLUDED.peak_score,
    samples = EXCLUDED.samples, metrics = EXCLUDED.metrics, reasons = EXCLUDED.reasons,
    open = EXCLUDED.open";

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Milliseconds of a timestamp in seconds, when it is one PostgreSQL can store.
fn millis(t: f64) -> Option<i64> {
    // ±100,000 years, well inside timestamptz.
    (t.is_finite() && t.abs() < 3.0e12).then(|| (t * 1000.0).round() as i64)
}

/// Stores one record in one transaction.
pub(crate) async fn write_record(
    client: &mut Client,
    cache: &PartitionCache,
    record: &AnalyticsRecord,
) -> Result<(), SinksError> {
    let (mut ids, mut ms, mut ts, mut score, mut anomaly, mut reasons) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for s in &record.scores {
        let Some(m) = millis(s.timestamp).filter(|_| s.score.is_finite()) else {
            continue;
        };
        ids.push(s.machine_id.as_str());
        ms.push(m);
        ts.push(s.timestamp);
        score.push(s.score);
        anomaly.push(s.anomaly);
        reasons.push(if s.reasons.is_empty() {
            None
        } else {
            serde_json::to_string(&s.reasons).ok()
        });
    }
    let events: Vec<_> = record
        .events
        .iter()
        .filter_map(|e| millis(e.at).map(|m| (m, e)))
        .collect();
    cache
        .ensure(
            client,
            ANOMALY_SCORES,
            ms.iter().map(|m| ANOMALY_SCORES.start_of(*m)),
        )
        .await?;
    cache
        .ensure(
            client,
            ALERT_EVENTS,
            events.iter().map(|(m, _)| ALERT_EVENTS.start_of(*m)),
        )
        .await?;

    let tx = client.transaction().await?;
    if !ids.is_empty() {
        tx.execute(INSERT_SCORES, &[&ids, &ms, &ts, &score, &anomaly, &reasons])
            .await?;
    }
    for (m, e) in &events {
        tx.execute(
            INSERT_EVENT,
            &[
                m,
                &e.at,
                &e.rule,
                &e.severity.to_string(),
                &e.machine_id,
                &e.subject,
                &e.state.name(),
                &finite(e.value),
                &e.message,
            ],
        )
        .await?;
    }
    for e in &record.episodes {
        if ![e.start, e.end, e.peak_at, e.peak_score]
            .iter()
            .all(|v| v.is_finite())
        {
            continue;
        }
        let samples = i32::try_from(e.samples).unwrap_or(i32::MAX);
        // A list of strings always serializes.
        let metrics = serde_json::to_string(&e.metrics).unwrap_or_else(|_| "[]".into());
        let reasons = serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into());
        tx.execute(
            UPSERT_EPISODE,
            &[
                &e.machine_id,
                &e.start,
                &e.end,
                &e.peak_at,
                &e.peak_score,
                &samples,
                &metrics,
                &reasons,
                &e.open,
            ],
        )
        .await?;
    }
    if let Some(set) = &record.active {
        // Only the scopes this engine owns are replaced (another ingester of
        // the group owns the others).
        let scopes: Vec<&str> = set
            .scopes
            .iter()
            // FLEET_SCOPE is the empty string, the fleet's `machine_id` column.
            .map(String::as_str)
            .collect();
        tx.execute(
            "DELETE FROM active_alerts WHERE machine_id = ANY($1::text[])",
            &[&scopes],
        )
        .await?;
        for a in &set.alerts {
            tx.execute(
                UPSERT_ACTIVE,
                &[
                    &a.rule,
                    &a.machine_id.as_deref().unwrap_or(FLEET_SCOPE),
                    &a.subject.as_deref().unwrap_or(""),
                    &a.severity.to_string(),
                    &a.state.name(),
                    &a.since,
                    &finite(a.value),
                    &a.message,
                ],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl AnalyticsSink for PostgresSink {
    fn name(&self) -> &str {
        super::NAME
    }

    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError> {
        self.write_analytics(record).await.map_err(to_sink_error)
    }
}

/// Fleet-wide alert rules run in the ingester holding the maintenance lock
/// (`super::lock`), on the latest stored values of every machine.
#[async_trait]
impl SharedFleet for PostgresSink {
    async fn lead_fleet(&self) -> Result<bool, StoreError> {
        self.try_lead().await.map_err(to_store_error)
    }

    async fn fleet_latest(&self, since: f64) -> Result<Vec<Snapshot>, StoreError> {
        self.fleet_latest_snapshots(since)
            .await
            .map_err(to_store_error)
    }

    async fn fleet_active(&self) -> Result<Vec<ActiveAlert>, StoreError> {
        let all = self.active_alerts().await?;
        Ok(all.into_iter().filter(|a| a.machine_id.is_none()).collect())
    }
}
