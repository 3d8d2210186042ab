//! The pipeline's own health (`[alerts.pipeline]`, [`PipelineConfig`]).
//!
//! A machine is offline when the pipeline goes on delivering the others'
//! samples while none come from it. When the pipeline itself fails — the
//! ingester's transport is unreachable (broker down), the ingester lags
//! behind (only old samples arrive), or no sample arrives from any machine —
//! every machine falls silent at once, and that silence is the pipeline's,
//! not theirs. [`PipelineHealth`] tells the two apart:
//!
//! * it knows a [`PipelineProblem`] at each tick, from the transport state
//!   the ingester reports ([`PipelineHealth::set_transport_down`]) and from
//!   what arrives ([`PipelineHealth::note_sample`]);
//! * while there is a problem, no `machine_offline` alert fires, and one
//!   fleet-scoped alert (`pipeline_down` by default) does, once the problem
//!   held for `for`; it resolves when the pipeline is healthy again;
//! * a machine's silence is measured from the later of its last sample and
//!   the moment the pipeline was last healthy again, and only against the
//!   newest sample the pipeline delivered from any machine (never against the
//!   wall clock alone): after an outage every machine has its `after` to send
//!   its backlog before it can be offline, and an ingester that sees nothing
//!   at all cannot page for every machine.
//!
//! With several ingesters in one consumer group each judges its own
//! pipeline (its connection, its partitions' machines) and raises its own
//! pipeline alert.

use std::time::Duration;

use super::config::PipelineConfig;
use super::state::{step, ActiveAlert, AlertEvent, AlertState, RuleState};
use sysmon_core::duration::format as fmt_duration;

/// Data arrives but nothing fresh has for this long: the pipeline lags.
const LAG_CONFIRM: f64 = 5.0;

/// What is wrong with the pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PipelineProblem {
    /// The ingester's transport is unreachable since `since` (epoch seconds).
    TransportDown {
        /// When the ingester first failed to receive.
        since: f64,
    },
    /// No sample from any machine since `since` (epoch seconds, receive time).
    Stalled {
        /// When the last sample arrived.
        since: f64,
    },
    /// Samples arrive, but the newest is `delay` seconds old.
    Lagging {
        /// The age of the newest sample received, seconds.
        delay: f64,
    },
}

impl PipelineProblem {
    /// What is wrong, in words, at `now`.
    pub fn describe(&self, now: f64) -> String {
        let ago = |t: f64| fmt_duration(Duration::from_secs((now - t).max(0.0) as u64));
        match *self {
            PipelineProblem::TransportDown { since } => {
                format!("the ingester's transport is unreachable for {}", ago(since))
            }
            PipelineProblem::Stalled { since } => {
                format!("no sample from any machine for {}", ago(since))
            }
            PipelineProblem::Lagging { delay } => format!(
                "the ingester lags: the newest samples arriving are {} old",
                fmt_duration(Duration::from_secs(delay.max(0.0) as u64))
            ),
        }
    }

    /// The alert's value: seconds the problem lasted (or the lag).
    fn value(&self, now: f64) -> f64 {
        match *self {
            PipelineProblem::TransportDown { since } | PipelineProblem::Stalled { since } => {
                (now - since).max(0.0)
            }
            PipelineProblem::Lagging { delay } => delay,
        }
    }
}

/// The pipeline's health as one ingester sees it; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PipelineHealth {
    config: PipelineConfig,
    transport_down_since: Option<f64>,
    /// Receive time of the latest sample from any machine.
    last_any: f64,
    /// The newest sample timestamp received.
    newest_ts: f64,
    /// Receive time of the latest sample at most `max_delay` old.
    fresh_at: f64,
    /// The problem at the last tick.
    problem: Option<PipelineProblem>,
    /// When the pipeline last turned healthy after a problem.
    healthy_since: f64,
    /// When the current problem began (its first tick).
    problem_since: f64,
    state: RuleState,
    /// The alert was pending or firing at some point (its fleet scope is
    /// then listed in every active set, so that stores clear it).
    ever_active: bool,
}

impl PipelineHealth {
    /// Health tracking per `config`.
    pub fn new(config: PipelineConfig) -> Self {
        PipelineHealth {
            config,
            transport_down_since: None,
            last_any: f64::NEG_INFINITY,
            newest_ts: f64::NEG_INFINITY,
            fresh_at: f64::NEG_INFINITY,
            problem: None,
            healthy_since: f64::NEG_INFINITY,
            problem_since: f64::NEG_INFINITY,
            state: RuleState::default(),
            ever_active: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The ingester's transport is unreachable since `since` (epoch seconds),
    /// or reachable (`None`).
    pub fn set_transport_down(&mut self, since: Option<f64>) {
        self.transport_down_since = since.filter(|s| s.is_finite());
    }

    /// A sample dated `ts` arrived at `received_at`.
    pub fn note_sample(&mut self, ts: f64, received_at: f64) {
        if !ts.is_finite() || !received_at.is_finite() {
            return;
        }
        self.last_any = self.last_any.max(received_at);
        self.newest_ts = self.newest_ts.max(ts);
        if received_at - ts <= self.config.max_delay.as_secs_f64() {
            self.fresh_at = self.fresh_at.max(received_at);
        }
    }

    /// Receive time of the latest sample from any machine (`-inf` before the first).
    pub fn last_any(&self) -> f64 {
        self.last_any
    }

    /// When the pipeline last became healthy after a problem (`-inf` if it never had one).
    pub fn healthy_since(&self) -> f64 {
        self.healthy_since
    }

    /// The problem found at the last [`tick`](Self::tick), if any.
    pub fn problem(&self) -> Option<PipelineProblem> {
        self.problem
    }

    /// What is wrong at `now`, given that `tracked` machines have alert state.
    pub fn diagnose(&self, now: f64, tracked: usize) -> Option<PipelineProblem> {
        if let Some(since) = self.transport_down_since {
            return Some(PipelineProblem::TransportDown { since });
        }
        if tracked > 0
            && self.last_any.is_finite()
            && now - self.last_any > self.config.stalled_after.as_secs_f64()
        {
            return Some(PipelineProblem::Stalled {
                since: self.last_any,
            });
        }
        // Lagging only while data flows: once it stops, the stale figures
        // say nothing (a stall, if machines are still expected).
        let flowing = now - self.last_any <= self.config.stalled_after.as_secs_f64();
        if self.last_any.is_finite() && flowing && self.last_any - self.fresh_at > LAG_CONFIRM {
            return Some(PipelineProblem::Lagging {
                delay: self.last_any - self.newest_ts,
            });
        }
        None
    }

    /// Re-evaluates the health at `now`; returns the pipeline alert's
    /// transition (firing or resolved), if any and if the alert is enabled.
    pub fn tick(&mut self, now: f64, tracked: usize) -> Option<AlertEvent> {
        let problem = self.diagnose(now, tracked);
        match (self.problem, problem) {
            (None, Some(_)) => self.problem_since = now,
            (Some(_), None) => self.healthy_since = now,
            _ => {}
        }
        self.problem = problem;
        if !self.config.enabled {
            return None;
        }
        let value = problem.map_or(0.0, |p| p.value(now));
        let transition = step(
            &mut self.state,
            problem.is_some(),
            problem.is_none(),
            self.config.for_,
            value,
            now,
        );
        self.ever_active |= matches!(self.state.state, AlertState::Pending | AlertState::Firing);
        let state = transition?;
        let message = match (state, problem) {
            (AlertState::Firing, Some(p)) => format!(
                "pipeline down: {}; machine offline alerts are held back until it recovers",
                p.describe(now)
            ),
            _ => format!(
                "pipeline healthy again after {}; machines have their offline `after` to send \
                 their backlog before they count as offline",
                fmt_duration(Duration::from_secs(
                    (now - self.problem_since).max(0.0) as u64
                ))
            ),
        };
        self.state.message.clone_from(&message);
        Some(AlertEvent {
            rule: self.config.name.clone(),
            severity: self.config.severity,
            machine_id: None,
            subject: None,
            state,
            value,
            at: now,
            message,
        })
    }

    /// True once the pipeline alert was pending or firing (its scope, the
    /// fleet's, belongs in the active sets from then on).
    pub fn ever_active(&self) -> bool {
        self.ever_active
    }

    /// The pipeline alert, when pending or firing.
    pub fn active(&self) -> Option<ActiveAlert> {
        if !matches!(self.state.state, AlertState::Pending | AlertState::Firing) {
            return None;
        }
        let mut a = ActiveAlert {
            rule: self.config.name.clone(),
            severity: self.config.severity,
            machine_id: None,
            subject: None,
            state: self.state.state,
            since: self.state.since,
            value: self.state.value,
            message: String::new(),
        };
        a.message = match (&self.problem, self.state.state) {
            (_, AlertState::Firing) if !self.state.message.is_empty() => self.state.message.clone(),
            (Some(p), _) => format!("pipeline: {}", p.describe(self.state.since)),
            (None, _) => a.describe(),
        };
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_764_000_000.0;

    fn health() -> PipelineHealth {
        PipelineHealth::new(PipelineConfig {
            for_: Duration::from_secs(10),
            stalled_after: Duration::from_secs(20),
            max_delay: Duration::from_secs(30),
            ..PipelineConfig::default()
        })
    }

    #[test]
    fn a_transport_outage_is_one_firing_and_one_resolved() {
        let mut h = health();
        for t in 0..10 {
            h.note_sample(T0 + t as f64, T0 + t as f64 + 0.5);
            assert!(h.tick(T0 + t as f64 + 0.5, 3).is_none());
        }
        h.set_transport_down(Some(T0 + 10.0));
        let mut events = Vec::new();
        for t in 10..300 {
            events.extend(h.tick(T0 + t as f64, 3));
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].state, AlertState::Firing);
        assert_eq!(events[0].rule, "pipeline_down");
        assert_eq!(events[0].machine_id, None);
        assert!(
            events[0]
                .message
                .contains("transport is unreachable for 10s"),
            "{}",
            events[0].message
        );
        assert!(h.active().is_some());
        // Back: the backlog arrives (old samples first), then fresh ones.
        h.set_transport_down(None);
        let mut events = Vec::new();
        for (i, t) in (10..300).step_by(10).enumerate() {
            let now = T0 + 300.0 + i as f64;
            h.note_sample(T0 + t as f64, now);
            events.extend(h.tick(now, 3));
            if i > 8 {
                assert!(
                    matches!(h.problem(), Some(PipelineProblem::Lagging { .. })),
                    "{:?}",
                    h.problem()
                );
            }
        }
        assert!(events.is_empty(), "still catching up: {events:?}");
        let now = T0 + 330.0;
        h.note_sample(now - 1.0, now);
        let ev = h.tick(now, 3).expect("resolved once caught up");
        assert_eq!(ev.state, AlertState::Resolved);
        assert_eq!(h.healthy_since(), now);
        assert!(h.active().is_none());
        assert!(h.tick(now + 1.0, 3).is_none());
    }

    #[test]
    fn a_lag_ends_when_data_stops_and_nothing_is_expected_any_more() {
        let mut h = health();
        // Only old samples arrive: lagging, then firing.
        for t in 0..20 {
            h.note_sample(T0 + t as f64 - 100.0, T0 + t as f64);
            h.tick(T0 + t as f64, 1);
        }
        assert!(matches!(h.problem(), Some(PipelineProblem::Lagging { .. })));
        assert_eq!(h.active().map(|a| a.state), Some(AlertState::Firing));
        // Data stops and every machine is forgotten: no stale lag forever.
        let ev = h.tick(T0 + 100.0, 0).expect("resolved");
        assert_eq!(ev.state, AlertState::Resolved);
        assert!(h.problem().is_none());
    }

    #[test]
    fn a_blip_shorter_than_for_pages_nobody_and_silence_without_machines_is_no_stall() {
        let mut h = health();
        h.note_sample(T0, T0);
        h.set_transport_down(Some(T0 + 1.0));
        assert!(h.tick(T0 + 2.0, 1).is_none());
        assert_eq!(h.active().map(|a| a.state), Some(AlertState::Pending));
        h.set_transport_down(None);
        h.note_sample(T0 + 5.0, T0 + 5.0);
        assert!(h.tick(T0 + 5.0, 1).is_none());
        assert!(h.active().is_none());
        assert_eq!(h.healthy_since(), T0 + 5.0);
        // Silence: stalled after 20 s, firing 10 s later.
        assert!(h.tick(T0 + 25.0, 1).is_none());
        assert!(h.problem().is_none());
        assert!(h.tick(T0 + 26.0, 1).is_none());
        assert!(matches!(h.problem(), Some(PipelineProblem::Stalled { .. })));
        let ev = h.tick(T0 + 36.0, 1).unwrap();
        assert!(
            ev.message.contains("no sample from any machine for 31s"),
            "{}",
            ev.message
        );
        // Every machine forgotten: nothing is expected any more.
        let ev = h.tick(T0 + 37.0, 0).unwrap();
        assert_eq!(ev.state, AlertState::Resolved);
        // Disabled: the problem is still known (machines are held back), no alert.
        let mut off = PipelineHealth::new(PipelineConfig {
            enabled: false,
            ..PipelineConfig::default()
        });
        off.set_transport_down(Some(T0));
        assert!((0..1000).all(|t| off.tick(T0 + t as f64, 1).is_none()));
        assert!(off.problem().is_some() && off.active().is_none());
    }
}
