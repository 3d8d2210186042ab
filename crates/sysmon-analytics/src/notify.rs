//! Alert notifications: the [`AlertNotifier`] trait and [`LogNotifier`].
//!
//! The alert engine emits an [`AlertEvent`] when an alert starts firing or is
//! resolved. Whoever runs the engine hands each event to every notifier. A
//! notifier must return at once: delivery over the network (webhooks, see
//! `sysmon_sinks::webhook`) is queued and done by its own tasks, so a slow or
//! failing target never blocks ingestion.

use tracing::{info, warn};

use super::alerts::{AlertEvent, AlertState};

/// Receives alert transitions (firing / resolved). Must return at once: an implementation
/// queues and delivers elsewhere, so a slow target never blocks ingestion.
pub trait AlertNotifier: Send + Sync {
    /// Hands one event over for delivery.
    fn notify(&self, event: &AlertEvent);
}

/// Writes one log line per event: `warn` when an alert fires, `info` when it is
/// resolved (and for any other state), with the rule, machine, subject, value
/// and message as fields. Always on: every notification is logged whether or
/// not webhooks are configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

impl LogNotifier {
    /// A log notifier.
    pub fn new() -> Self {
        LogNotifier
    }
}

impl AlertNotifier for LogNotifier {
    fn notify(&self, event: &AlertEvent) {
        let machine = event.machine_id.as_deref().unwrap_or("fleet");
        let subject = event.subject.as_deref().unwrap_or("-");
        match event.state {
            AlertState::Firing => warn!(
                rule = %event.rule,
                severity = %event.severity,
                machine = %machine,
                subject = %subject,
                value = event.value,
                at = event.at,
                "alert firing: {}",
                event.message
            ),
            state => info!(
                rule = %event.rule,
                severity = %event.severity,
                machine = %machine,
                subject = %subject,
                value = event.value,
                at = event.at,
                "alert {}: {}",
                state.name(),
                event.message
            ),
        }
    }
}

impl<T: AlertNotifier + ?Sized> AlertNotifier for std::sync::Arc<T> {
    fn notify(&self, event: &AlertEvent) {
        (**self).notify(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Severity;
    use std::sync::{Arc, Mutex};

    /// Collects events, to check the trait is object-safe and usable behind `Arc<dyn _>`.
    #[derive(Default)]
    struct Collect(Mutex<Vec<AlertEvent>>);

    impl AlertNotifier for Collect {
        fn notify(&self, event: &AlertEvent) {
            if let Ok(mut v) = self.0.lock() {
                v.push(event.clone());
            }
        }
    }

    fn event(state: AlertState) -> AlertEvent {
        AlertEvent {
            rule: "cpu_high".into(),
            severity: Severity::Warning,
            machine_id: Some("web-01".into()),
            subject: None,
            state,
            value: 93.5,
            at: 1_764_086_400.0,
            message: "cpu_usage 93.5 % > 80 % for 30s".into(),
        }
    }

    #[test]
    fn notifiers_work_as_trait_objects() {
        let collect = Arc::new(Collect::default());
        let notifiers: Vec<Arc<dyn AlertNotifier>> = vec![Arc::new(LogNotifier), collect.clone()];
        for n in &notifiers {
            n.notify(&event(AlertState::Firing));
            n.notify(&event(AlertState::Resolved));
        }
        let got = collect.0.lock().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].state, AlertState::Firing);
        assert_eq!(got[1].state, AlertState::Resolved);
    }
}
