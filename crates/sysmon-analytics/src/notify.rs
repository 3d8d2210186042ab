//! Alert notifications: the [`AlertNotifier`] trait and [`LogNotifier`].
//!
//! The alert engine emits an [`AlertEvent`] when an alert starts firing or is
//! resolved. Whoever runs the engine hands each event to every notifier. A
//! notifier must return at once: delivery over the network (webhooks, see
//! `sysmon_sinks::webhook`) is queued and done by its own tasks, so a slow or
//! failing target never blocks ingestion.
//!
//! [`AlertGrouper`] collects events into [`AlertGroup`]s, one per rule, state
//! and severity, so that an alert storm (`cpu_high` on 340 machines) is one
//! notification listing the machines rather than 340; the webhook notifier
//! sends one request per group.

use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use super::alerts::{AlertEvent, AlertState, Severity};

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

/// The events of one rule in one state (and severity), collected for one
/// notification: how many, and the first few in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertGroup {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub state: AlertState,
    /// How many events the group holds.
    pub count: usize,
    /// The first events (at most the grouper's `max_listed`), in arrival order.
    pub events: Vec<AlertEvent>,
}

impl AlertGroup {
    /// Events counted but not listed.
    pub fn more(&self) -> usize {
        self.count.saturating_sub(self.events.len())
    }

    /// What each listed event is about: `web-01`, `web-01 (/data)`, `the fleet`.
    pub fn targets(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| {
                let who = e.machine_id.as_deref().unwrap_or("the fleet");
                match &e.subject {
                    Some(s) => format!("{who} ({s})"),
                    None => who.to_string(),
                }
            })
            .collect()
    }

    /// One line: `cpu_high firing on 340 machines: web-001, web-002, … and 320 more`
    /// (a group of one: the event's own message).
    pub fn summary(&self) -> String {
        if self.count == 1 {
            if let Some(e) = self.events.first() {
                return e.message.clone();
            }
        }
        let per_machine = self
            .events
            .iter()
            .all(|e| e.machine_id.is_some() && e.subject.is_none());
        let what = if per_machine { "machines" } else { "alerts" };
        let mut s = format!(
            "{} {} on {} {what}: {}",
            self.rule,
            self.state.name(),
            self.count,
            self.targets().join(", ")
        );
        if self.more() > 0 {
            s.push_str(&format!(" … and {} more", self.more()));
        }
        s
    }
}

/// Collects events into [`AlertGroup`]s by (rule, state, severity), oldest
/// group first. Bounded: each group lists at most `max_listed` events (the
/// rest are counted), and at most `max_groups` groups wait at once
/// ([`push`](Self::push) refuses an event that would open one more).
#[derive(Debug)]
pub struct AlertGrouper {
    max_listed: usize,
    max_groups: usize,
    /// Each group with the time its first event arrived.
    groups: Vec<(AlertGroup, Instant)>,
}

impl AlertGrouper {
    /// A grouper listing at most `max_listed` events per group and holding at
    /// most `max_groups` groups (both at least 1).
    pub fn new(max_listed: usize, max_groups: usize) -> Self {
        AlertGrouper {
            max_listed: max_listed.max(1),
            max_groups: max_groups.max(1),
            groups: Vec::new(),
        }
    }

    /// Adds `event`, arrived at `now`, to its group; gives it back when it
    /// would open a group beyond `max_groups`.
    pub fn push(&mut self, event: AlertEvent, now: Instant) -> Result<(), AlertEvent> {
        let at = self.groups.iter().position(|(g, _)| {
            g.rule == event.rule && g.state == event.state && g.severity == event.severity
        });
        if let Some((g, _)) = at.and_then(|i| self.groups.get_mut(i)) {
            g.count += 1;
            if g.events.len() < self.max_listed {
                g.events.push(event);
            }
            return Ok(());
        }
        if self.groups.len() >= self.max_groups {
            return Err(event);
        }
        self.groups.push((
            AlertGroup {
                rule: event.rule.clone(),
                severity: event.severity,
                state: event.state,
                count: 1,
                events: vec![event],
            },
            now,
        ));
        Ok(())
    }

    /// True when no further group can open.
    pub fn is_full(&self) -> bool {
        self.groups.len() >= self.max_groups
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Events waiting, over every group.
    pub fn pending(&self) -> usize {
        self.groups.iter().map(|(g, _)| g.count).sum()
    }

    /// When the oldest group is due: its first event's arrival plus `wait`.
    pub fn next_due(&self, wait: Duration) -> Option<Instant> {
        self.groups.first().map(|(_, at)| *at + wait)
    }

    /// The oldest group, if its first event arrived at least `wait` before `now`.
    pub fn take_due(&mut self, now: Instant, wait: Duration) -> Option<AlertGroup> {
        let due = self.next_due(wait)?;
        if due > now {
            return None;
        }
        Some(self.groups.remove(0).0)
    }

    /// The oldest group, due or not (shutdown).
    pub fn take_oldest(&mut self) -> Option<AlertGroup> {
        (!self.groups.is_empty()).then(|| self.groups.remove(0).0)
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
    fn a_storm_is_one_group_per_rule_and_state_listing_a_bounded_few() {
        let t0 = Instant::now();
        let mut g = AlertGrouper::new(3, 2);
        for i in 0..340 {
            let mut e = event(AlertState::Firing);
            e.machine_id = Some(format!("web-{i:03}"));
            g.push(e, t0 + Duration::from_millis(i)).unwrap();
        }
        g.push(event(AlertState::Resolved), t0 + Duration::from_secs(1))
            .unwrap();
        // A third group does not fit: the event comes back.
        let mut other = event(AlertState::Firing);
        other.rule = "memory_high".into();
        assert_eq!(g.push(other.clone(), t0), Err(other));
        assert!(g.is_full());
        assert_eq!(g.pending(), 341);
        let wait = Duration::from_secs(10);
        assert_eq!(g.next_due(wait), Some(t0 + wait));
        assert!(g.take_due(t0 + Duration::from_secs(9), wait).is_none());
        let first = g.take_due(t0 + wait, wait).unwrap();
        assert_eq!(
            (first.count, first.events.len(), first.more()),
            (340, 3, 337)
        );
        assert_eq!(first.state, AlertState::Firing);
        assert_eq!(
            first.summary(),
            "cpu_high firing on 340 machines: web-000, web-001, web-002 … and 337 more"
        );
        // The resolved one is due a second later; a group of one keeps its message.
        assert!(g.take_due(t0 + wait, wait).is_none());
        let second = g.take_oldest().unwrap();
        assert_eq!(second.count, 1);
        assert_eq!(second.summary(), "cpu_usage 93.5 % > 80 % for 30s");
        assert!(g.is_empty() && !g.is_full());
        // Subjects and fleet events are named as such.
        let mut fs = event(AlertState::Firing);
        fs.subject = Some("/data".into());
        let mut fleet = event(AlertState::Firing);
        fleet.machine_id = None;
        g.push(fs, t0).unwrap();
        g.push(fleet, t0).unwrap();
        let g = g.take_oldest().unwrap();
        assert_eq!(g.targets(), vec!["web-01 (/data)", "the fleet"]);
        assert!(g.summary().contains("on 2 alerts"), "{}", g.summary());
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
