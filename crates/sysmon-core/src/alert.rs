//! The shapes of alerting and anomaly detection shared by every part that
//! stores, serves or reads them: the analytics engine produces them, the
//! SQLite and Redis stores write and read them, the dashboard's API returns
//! them unchanged. One serde shape each:
//!
//! * [`AlertEvent`]: an alert started firing or was resolved (alert history,
//!   webhooks);
//! * [`ActiveAlert`]: an alert pending or firing now (or, in the dashboard's
//!   list, recently resolved);
//! * [`Anomaly`]: a sample the detector flagged.
//!
//! They live in core (not in `sysmon-analytics`) because the read side that
//! returns them is part of core's storage traits.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look soon.
    #[default]
    Warning,
    /// Someone should look now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold (also: a pending alert whose condition
    /// stopped holding before `for` elapsed).
    Inactive,
    /// The condition holds, not yet for `for`.
    Pending,
    /// The condition held for `for`: the alert is on.
    Firing,
    /// A firing alert's value crossed its clear threshold.
    Resolved,
}

impl AlertState {
    /// The state's name in JSON, logs and storage (`firing`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// A value that is JSON `null` when it is not finite (serde_json writes NaN
/// as `null`); reads `null` back as NaN.
fn nan_from_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// An alert started firing or was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The machine, or `None` for a fleet-scoped rule.
    pub machine_id: Option<String>,
    /// What on the machine, e.g. the mount point for filesystem rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The state entered: [`AlertState::Firing`] or [`AlertState::Resolved`].
    pub state: AlertState,
    /// The value that caused it (metric value; seconds silent for offline rules;
    /// seconds until full for filesystem rules); `null` in JSON when there is none.
    #[serde(deserialize_with = "nan_from_null")]
    pub value: f64,
    /// When, seconds since the epoch (the snapshot's timestamp or `tick`'s `now`).
    pub at: f64,
    /// A sentence for people.
    pub message: String,
}

/// An alert that is pending or firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The machine (`None` for fleet rules).
    pub machine_id: Option<String>,
    /// The mount point for filesystem rules.
    pub subject: Option<String>,
    /// Pending or firing (`resolved` in the dashboard's list of recently
    /// resolved alerts).
    pub state: AlertState,
    /// Since when it is in this state.
    pub since: f64,
    /// The latest value; `null` in JSON when there is none.
    #[serde(deserialize_with = "nan_from_null")]
    pub value: f64,
    /// The firing message, or a description while pending.
    #[serde(default)]
    pub message: String,
}

impl ActiveAlert {
    /// The description of an alert that is not firing: rule, state, where, value.
    pub fn describe(&self) -> String {
        let on = self.machine_id.as_deref().unwrap_or("the fleet");
        let what = self
            .subject
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        format!(
            "{} {} on {on}{what}: value {:.1}",
            self.rule,
            self.state.name(),
            self.value
        )
    }

    /// `event` (a resolution, typically) as an entry of an alert list: its
    /// state since the event's time.
    pub fn from_event(event: AlertEvent) -> Self {
        ActiveAlert {
            rule: event.rule,
            severity: event.severity,
            machine_id: event.machine_id,
            subject: event.subject,
            state: event.state,
            since: event.at,
            value: event.value,
            message: event.message,
        }
    }
}

/// A sample the anomaly detector flagged, with the sample's CPU and memory
/// (for the dashboard's scatter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The machine.
    pub machine_id: String,
    /// The sample's timestamp, seconds since the epoch.
    pub timestamp: f64,
    /// The detector's score in [0, 1) (0.5 is the decision boundary).
    pub score: f64,
    /// CPU % of the sample (when the sample is still stored).
    pub cpu: Option<f64>,
    /// Memory % of the sample (when the sample is still stored).
    pub memory: Option<f64>,
    /// Why it was flagged, in words (the detector's reasons joined by `; `).
    pub message: String,
}

/// One anomaly episode of one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The machine.
    pub machine_id: String,
    /// Timestamp of the first flagged sample, seconds since the epoch.
    pub start: f64,
    /// Timestamp of the last flagged sample so far.
    pub end: f64,
    /// Timestamp of the highest-scoring sample.
    pub peak_at: f64,
    /// The highest score (the detector's score in [0, 1)).
    pub peak_score: f64,
    /// The flagged samples.
    pub samples: u32,
    /// The metrics that flagged at some point (feature names, or
    /// `isolation_forest`), in first-seen order.
    pub metrics: Vec<String>,
    /// The reasons of the peak sample.
    pub reasons: Vec<String>,
    /// True while the episode may still grow.
    pub open: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_are_null_in_json_and_read_back() {
        let a = ActiveAlert {
            rule: "r".into(),
            severity: Severity::Critical,
            machine_id: None,
            subject: Some("/data".into()),
            state: AlertState::Firing,
            since: 1.0,
            value: f64::NAN,
            message: "m".into(),
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["value"], serde_json::Value::Null);
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["state"], "firing");
        let back: ActiveAlert = serde_json::from_value(json).unwrap();
        assert!(back.value.is_nan());
        assert_eq!(back.subject.as_deref(), Some("/data"));
    }
}
