//! # sysmon-analytics
//!
//! Analytics on the snapshot stream: anomaly detection, forecasts and alert rules.
//! The ingester runs them on every stored batch; the agent never needs them, so
//! they live outside `sysmon-core`.
//!
//! Everything here is pure logic without I/O, deterministic for a given seed, and
//! cheap enough to run in the ingester for every sample of every machine:
//!
//! * [`features`]: the six per-machine features (CPU %, memory %, disk and network
//!   rates from the cumulative counters, robust to resets and gaps);
//! * [`isolation_forest`]: an Isolation Forest (Liu et al. 2008);
//! * [`streaming`]: rolling median/MAD robust z-scores and a memory ramp test;
//! * [`detector`]: [`AnomalyDetector`], combining both per machine;
//! * [`episodes`]: [`EpisodeTracker`], a persisting flag as one anomaly episode;
//! * [`score_windows`]: flags scored against labelled windows (NAB's scoring);
//! * [`forecast`]: values in 5 minutes with a prediction band, time until a
//!   filesystem is full;
//! * [`alerts`]: alert rules and their pending → firing → resolved state machine;
//! * [`notify`]: [`AlertNotifier`], the receiver of alert transitions, and [`LogNotifier`];
//! * [`service`]: the engine run on the ingester's stored batches, with its
//!   sinks (alert history, scores, active alerts) and notifiers;
//! * [`config`]: the `[alerts]` and `[anomaly]` sections, and [`Config`], the
//!   whole file with those sections typed;
//! * `tracegen` and `eval` (feature `tracegen`, for tests, benches and
//!   evaluation tools): labelled synthetic traces and detection quality.
//!
//! The method and its measured quality are described in `docs/anomaly-detection.md`.

pub mod alerts;
pub mod baseline;
pub mod config;
pub mod detector;
pub mod episodes;
#[cfg(feature = "tracegen")]
pub mod eval;
pub mod features;
pub mod forecast;
pub mod isolation_forest;
pub mod notify;
pub mod score_windows;
pub mod service;
pub mod streaming;
#[cfg(feature = "tracegen")]
pub mod tracegen;

pub use alerts::{
    AlertEngine, AlertEvent, AlertRule, AlertState, AlertsConfig, FleetInput, Severity,
};
pub use config::Config;
pub use detector::{AnomalyDetector, AnomalyScore, DetectorConfig, Sensitivity};
pub use episodes::{Episode, EpisodeTracker};
pub use features::{FeatureExtractor, Features, CORE_FEATURES, FEATURE_METRICS, FEATURE_NAMES};
pub use forecast::{Forecast, Forecaster};
pub use isolation_forest::{Contamination, ForestParams, IsolationForest};
pub use notify::{AlertNotifier, LogNotifier};
pub use service::{
    ActiveSet, AnalyticsEngine, AnalyticsRecord, AnalyticsService, AnalyticsSink, AnalyticsStats,
    ColdMachine, SharedFleet, TrackedMachines, FLEET_SCOPE, SHARED_FLEET_EVERY,
};
pub use streaming::{StreamingDetector, StreamingParams};
