//! [`AnalyticsSource`] over what the ingester's analytics stored (SQLite or
//! PostgreSQL, read through core's [`AnalyticsReader`] and [`SnapshotStore`]):
//! the active alerts and the alert history, the anomaly scores, and forecasts
//! fitted on demand to a machine's recent samples (exactly the
//! [`Forecaster`] the engine uses). It works in any process that can read the
//! database: `sysmon standalone`, `sysmon ingest --listen`, or a separate
//! `sysmon dashboard`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use sysmon_analytics::alerts::AlertState;
use sysmon_analytics::forecast::ForecastParams;
use sysmon_analytics::{Forecaster, CORE_FEATURES, FEATURE_METRICS};
use sysmon_core::metric::Metric;
use sysmon_core::{AnalyticsReader, SnapshotStore, StoreError};

use crate::analytics::{
    ActiveAlert, AnalyticsSource, Anomaly, Episode, ForecastView, MachineForecast,
};

/// How far back resolved alerts are listed.
const RESOLVED_LOOKBACK_SECS: f64 = 24.0 * 3600.0;
/// Most resolved alerts listed.
const RESOLVED_LIMIT: usize = 200;
/// Most anomalies returned by one request.
const ANOMALY_LIMIT: usize = 2_000;
/// Most anomaly episodes returned by one request.
const EPISODE_LIMIT: usize = 1_000;
/// Recent history a forecast is fitted on.
const FORECAST_WINDOW_SECS: f64 = 300.0;
/// Points of the drawn forecast path (every 30 s up to 5 minutes).
const FORECAST_STEPS: usize = 10;

/// The dashboard's (short) name of a forecast's metric (`cpu_usage` -> `cpu`);
/// forecasts name their metric with its vocabulary name.
fn api_metric(name: &str) -> &str {
    match Metric::from_name(name) {
        Some(m) => m.short_name(),
        None => name,
    }
}

/// Alerts, anomalies and forecasts from a history the ingester's analytics
/// writes to.
#[derive(Clone)]
pub struct StoredAnalytics {
    db: Arc<dyn AnalyticsReader>,
    samples: Arc<dyn SnapshotStore>,
    forecast: ForecastParams,
}

impl StoredAnalytics {
    /// Reads alerts and anomalies, and the samples forecasts are fitted on, from `db`.
    pub fn new<S: AnalyticsReader + SnapshotStore + 'static>(db: Arc<S>) -> Self {
        StoredAnalytics {
            db: db.clone(),
            samples: db,
            forecast: ForecastParams::default(),
        }
    }
}

#[async_trait]
impl AnalyticsSource for StoredAnalytics {
    fn available(&self) -> bool {
        true
    }

    async fn alerts(&self) -> Result<Vec<ActiveAlert>, StoreError> {
        let active = self.db.active_alerts().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let history = self
            .db
            .alert_history(now - RESOLVED_LOOKBACK_SECS, RESOLVED_LIMIT)
            .await?;
        let live: HashSet<(String, Option<String>, Option<String>)> = active
            .iter()
            .map(|a| (a.rule.clone(), a.machine_id.clone(), a.subject.clone()))
            .collect();
        let mut out: Vec<ActiveAlert> = active;
        // Recently resolved, newest first, unless the same alert is active again.
        let mut seen = HashSet::new();
        for e in history {
            let key = (e.rule.clone(), e.machine_id.clone(), e.subject.clone());
            if e.state != AlertState::Resolved || live.contains(&key) || !seen.insert(key) {
                continue;
            }
            out.push(ActiveAlert::from_event(e));
        }
        Ok(out)
    }

    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
    ) -> Result<Vec<Anomaly>, StoreError> {
        self.db.anomalies(machine_id, since, ANOMALY_LIMIT).await
    }

    async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
    ) -> Result<Vec<Episode>, StoreError> {
        self.db.episodes(machine_id, since, EPISODE_LIMIT).await
    }

    async fn forecast(&self, machine_id: &str) -> Result<MachineForecast, StoreError> {
        // One read of the recent samples serves both the metrics and the filesystems.
        let Some(forecaster) = self.fitted(machine_id).await? else {
            return Ok(MachineForecast::default());
        };
        // Forecasts are of the core features (the host details are detector features only).
        let mut views: Vec<ForecastView> = FEATURE_METRICS[..CORE_FEATURES]
            .iter()
            .map(|m| ForecastView {
                metric: m.short_name().to_string(),
                ts: Vec::new(),
                value: Vec::new(),
                lower: Vec::new(),
                upper: Vec::new(),
            })
            .collect();
        let step = self.forecast.horizon_secs / FORECAST_STEPS as f64;
        for k in 1..=FORECAST_STEPS {
            for fc in forecaster.forecast_ahead(machine_id, step * k as f64) {
                if let Some(v) = views
                    .iter_mut()
                    .find(|v| v.metric == api_metric(&fc.metric))
                {
                    v.ts.push(fc.at);
                    v.value.push(fc.value);
                    v.lower.push(fc.lower);
                    v.upper.push(fc.upper);
                }
            }
        }
        views.retain(|v| !v.ts.is_empty());
        Ok(MachineForecast {
            metrics: views,
            filesystems: forecaster.filesystems(machine_id),
        })
    }
}

impl StoredAnalytics {
    /// A [`Forecaster`] fed with the machine's last five minutes of samples
    /// (`None` for a machine without samples).
    async fn fitted(&self, machine_id: &str) -> Result<Option<Forecaster>, StoreError> {
        let Some(latest) = self.samples.latest(machine_id).await? else {
            return Ok(None);
        };
        let last = latest.timestamp;
        let recent = self
            .samples
            .range(
                Some(machine_id),
                last - FORECAST_WINDOW_SECS,
                last + 0.001,
                self.forecast.window.max(3) * 2,
            )
            .await?;
        let mut forecaster = Forecaster::new(self.forecast);
        for s in &recent {
            forecaster.observe(s);
        }
        Ok(Some(forecaster))
    }
}
