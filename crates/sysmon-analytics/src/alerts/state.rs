//! The state machine every (rule, machine[, mount point]) runs:
//! `inactive -> pending -> firing -> resolved` ([`AlertState`]), and what it
//! emits: an [`AlertEvent`] per transition to firing or resolved, an
//! [`ActiveAlert`] per alert pending or firing now.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rule::Severity;

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
    /// seconds until full for filesystem rules).
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
    /// Pending or firing.
    pub state: AlertState,
    /// Since when it is in this state.
    pub since: f64,
    /// The latest value.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RuleState {
    pub(super) state: AlertState,
    /// When the current state was entered.
    pub(super) since: f64,
    pub(super) value: f64,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            state: AlertState::Inactive,
            since: 0.0,
            value: f64::NAN,
        }
    }
}

/// Advances one state machine; returns the new state when it started firing or
/// was resolved.
pub(super) fn step(
    st: &mut RuleState,
    active: bool,
    cleared: bool,
    for_: Duration,
    value: f64,
    at: f64,
) -> Option<AlertState> {
    st.value = value;
    let next = match st.state {
        AlertState::Inactive | AlertState::Resolved if active => {
            if for_.is_zero() {
                AlertState::Firing
            } else {
                AlertState::Pending
            }
        }
        AlertState::Pending if !active => AlertState::Inactive,
        AlertState::Pending if at - st.since >= for_.as_secs_f64() => AlertState::Firing,
        AlertState::Firing if cleared => AlertState::Resolved,
        _ => return None,
    };
    st.state = next;
    st.since = at;
    matches!(next, AlertState::Firing | AlertState::Resolved).then_some(next)
}
