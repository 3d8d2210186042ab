//! What the dashboard shows of alerting, anomaly detection and forecasting.
//!
//! The dashboard does not compute these: an [`AnalyticsSource`] supplies them
//! in the API's own shapes ([`AlertView`], [`AnomalyView`], [`ForecastView`]).
//! Until the analytics engine is wired in, [`NoAnalytics`] answers with empty
//! lists and `available: false`, and the pages show their empty state.

use async_trait::async_trait;
use serde::Serialize;
pub use sysmon_analytics::forecast::FilesystemForecast;
use sysmon_core::StoreError;

/// One alert, active or recently resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// The machine, or `None` for a fleet-wide rule.
    pub machine_id: Option<String>,
    /// The rule's name, e.g. `cpu_high`.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// When it entered its current state (seconds since the epoch).
    pub since: f64,
    /// The value that triggered it, when there is one.
    pub value: Option<f64>,
    /// A human-readable description.
    pub message: String,
}

/// One anomalous sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyView {
    /// The machine.
    pub machine_id: String,
    /// The sample's timestamp.
    pub timestamp: f64,
    /// Anomaly score (higher is more anomalous).
    pub score: f64,
    /// CPU % of the sample, for the scatter.
    pub cpu: Option<f64>,
    /// Memory % of the sample, for the scatter.
    pub memory: Option<f64>,
    /// What was unusual, in words.
    pub message: String,
}

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
    async fn alerts(&self) -> Result<Vec<AlertView>, StoreError>;

    /// Anomalies since `since`, of one machine or all, newest first.
    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
    ) -> Result<Vec<AnomalyView>, StoreError>;

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
    async fn alerts(&self) -> Result<Vec<AlertView>, StoreError> {
        Ok(Vec::new())
    }
    async fn anomalies(&self, _: Option<&str>, _: f64) -> Result<Vec<AnomalyView>, StoreError> {
        Ok(Vec::new())
    }
    async fn forecast(&self, _: &str) -> Result<MachineForecast, StoreError> {
        Ok(MachineForecast::default())
    }
}
