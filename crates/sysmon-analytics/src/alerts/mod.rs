//! Alert rules and their state machine.
//!
//! A rule is a condition plus a name and a severity:
//! * a **threshold** on a metric (`cpu_usage > 80` for 30 s), per machine or on
//!   the fleet's average or maximum, with hysteresis: once firing, it resolves
//!   only when the value crosses `clear_threshold` (e.g. 75 %);
//! * **machine offline**: no snapshot for longer than `after`;
//! * **filesystem full within** `horizon`, from the least-squares growth of its
//!   used bytes (see [`super::forecast::time_until_full`]).
//!
//! Each (rule, machine[, mount point]) runs the state machine
//! `inactive → pending → firing → resolved` ([`AlertState`]). Pending becomes
//! firing once the condition has held for the rule's `for` duration (measured on
//! snapshot timestamps), and falls back to inactive if it stops holding earlier.
//! [`AlertEngine`] emits an [`AlertEvent`] only when an alert starts **firing**
//! or is **resolved**, never per sample: with `for` and hysteresis, a value
//! hovering around a threshold cannot produce a storm. Pending alerts (and the
//! firing ones) are listed by [`AlertEngine::active`] for dashboards.
//!
//! `[alerts]` in the configuration holds the rules and the webhook targets
//! ([`AlertsConfig`]); delivering notifications is not this module's job.
//!
//! The module is split along its seams:
//! * [`rule`]: what a rule is ([`AlertRule`], its [`Condition`]s) and its flat
//!   TOML form;
//! * [`config`]: `[alerts]` ([`AlertsConfig`], [`WebhookConfig`]);
//! * [`state`]: the per-alert state machine ([`AlertState`]) and what it emits
//!   ([`AlertEvent`], [`ActiveAlert`]);
//! * [`engine`]: [`AlertEngine`], the rules applied to the snapshot stream;
//! * [`pipeline`]: the pipeline's own health (`[alerts.pipeline]`): while the
//!   transport is down, the ingester lags or no machine sends anything, no
//!   machine goes offline and one fleet-scoped alert fires instead.

pub mod config;
pub mod engine;
pub mod pipeline;
pub mod rule;
pub mod state;

pub use config::{AlertsConfig, PipelineConfig, WebhookConfig};
pub use engine::{AlertEngine, FleetInput};
pub use pipeline::PipelineProblem;
pub use rule::{
    Aggregate, AlertRule, Comparison, Condition, Metric, Scope, Severity, ThresholdRule,
    DEFAULT_OFFLINE_MIN_SAMPLES,
};
pub use state::{ActiveAlert, AlertEvent, AlertState};
