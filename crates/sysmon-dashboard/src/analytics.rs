//! What the dashboard shows of alerting, anomaly detection and forecasting.
//!
//! The dashboard does not compute these: an [`AnalyticsSource`] supplies them
//! in core's shared shapes ([`ActiveAlert`], [`Anomaly`]), the same the stores
//! write, and forecasts as [`ForecastView`]s.
//! Until the analytics engine is wired in, [`NoAnalytics`] answers with empty
//! lists and `available: false`, and the pages show their empty state.

use async_trait::async_trait;
use serde::Serialize;
pub use sysmon_analytics::forecast::FilesystemForecast;
pub use sysmon_core::alert::{ActiveAlert, Anomaly, Episode};
use sysmon_core::StoreError;

/// A forecast of one metric of one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastView {
    /// The metric's API name (`cpu`, `memory`, ...).
    pub metric: String,
    /// Future timestamps.
    pub ts: Vec<f64>,
    /// Predicted values.
    pub value: Vec<f64>,
    /// Lower edge of the confidence band.
    pub lower: Vec<f64>,
    /// Upper edge of the confidence band.
    pub upper: Vec<f64>,
}

/// A machine's forecasts: its metrics over the next five minutes and the time
/// until each filesystem is full.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MachineForecast {
    /// One entry per metric with enough recent samples.
    pub metrics: Vec<ForecastView>,
    /// One entry per filesystem.
    pub filesystems: Vec<FilesystemForecast>,
}

/// The analytics the dashboard can show.
#[async_trait]
pub trait AnalyticsSource: Send + Sync {
    /// False while no analytics engine runs (the API says so, the UI shows an empty state).
    fn available(&self) -> bool;

    /// Active and recently resolved alerts, newest first.
    async fn alerts(&self) -> Result<Vec<ActiveAlert>, StoreError>;

    /// Anomalies since `since`, of one machine or all, newest first.
    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
    ) -> Result<Vec<Anomaly>, StoreError>;

    /// Anomaly episodes that ended since `since` (open ones included), of one
    /// machine or all, newest first.
    async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
    ) -> Result<Vec<Episode>, StoreError>;

    /// Forecasts of a machine's metrics over the next five minutes, and of
    /// its filesystems' time until full.
    async fn forecast(&self, machine_id: &str) -> Result<MachineForecast, StoreError>;
}

/// No analytics engine: every list is empty and `available` is false.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAnalytics;

#[async_trait]
impl AnalyticsSource for NoAnalytics {
    fn available(&self) -> bool {
        false
    }
    async fn alerts(&self) -> Result<Vec<ActiveAlert>, StoreError> {
        Ok(Vec::new())
    }
    async fn anomalies(&self, _: Option<&str>, _: f64) -> Result<Vec<Anomaly>, StoreError> {
        Ok(Vec::new())
    }
    async fn episodes(&self, _: Option<&str>, _: f64) -> Result<Vec<Episode>, StoreError> {
        Ok(Vec::new())
    }
    async fn forecast(&self, _: &str) -> Result<MachineForecast, StoreError> {
        Ok(MachineForecast::default())
    }
}
