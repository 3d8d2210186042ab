//! The state machine every (rule, machine[, mount point]) runs:
//! `inactive -> pending -> firing -> resolved` ([`AlertState`]), and what it
//! emits: an [`AlertEvent`] per transition to firing or resolved, an
//! [`ActiveAlert`] per alert pending or firing now (those shapes are core's,
//! [`sysmon_core::alert`], shared with the stores and the dashboard).

use std::time::Duration;

pub use sysmon_core::alert::{ActiveAlert, AlertEvent, AlertState};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct RuleState {
    pub(super) state: AlertState,
    /// When the current state was entered.
    pub(super) since: f64,
    pub(super) value: f64,
    /// The message of the event that made it fire (while firing).
    pub(super) message: String,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            state: AlertState::Inactive,
            since: 0.0,
            value: f64::NAN,
            message: String::new(),
        }
    }
}

impl RuleState {
    /// This alert as listed among the active ones: a firing alert carries its
    /// firing message, a pending one a description.
    pub(super) fn to_active(
        &self,
        rule: &super::AlertRule,
        machine_id: Option<&str>,
        subject: Option<&str>,
    ) -> ActiveAlert {
        let mut a = ActiveAlert {
            rule: rule.name.clone(),
            severity: rule.severity,
            machine_id: machine_id.map(str::to_string),
            subject: subject.map(str::to_string),
            state: self.state,
            since: self.since,
            value: self.value,
            message: String::new(),
        };
        a.message = if self.state == AlertState::Firing && !self.message.is_empty() {
            self.message.clone()
        } else {
            a.describe()
        };
        a
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
