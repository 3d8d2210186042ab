//! [`AlertEngine`]: the rules applied to the snapshot stream of many machines.
//! [`AlertEngine::observe_at`] evaluates a snapshot (per-machine thresholds,
//! a machine reporting again, filesystems filling up), [`AlertEngine::tick`]
//! what depends on time passing (machines going offline, fleet rules).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::config::{AlertsConfig, PipelineConfig};
use super::pipeline::{PipelineHealth, PipelineProblem};
use super::rule::{
    Aggregate, AlertRule, Condition, Metric, RuleMetric as _, Scope, ThresholdRule, ALERT_METRICS,
};
use super::state::{step, ActiveAlert, AlertEvent, AlertState, RuleState};
use crate::features::{FeatureExtractor, DISK_READ, DISK_WRITE, NET_RECV, NET_SENT};
use crate::forecast::time_until_full;
use crate::streaming::human_rate;
use sysmon_core::duration::format as fmt_duration;
use sysmon_core::error::CoreError;
use sysmon_core::snapshot::Snapshot;

#[derive(Debug, Clone, Default)]
struct FsTrack {
    points: VecDeque<(f64, f64)>,
    available: u64,
}

#[derive(Debug, Clone)]
struct MachineAlerts {
    extractor: FeatureExtractor,
    last_seen: f64,
    last_ts: f64,
    /// Snapshots taken in (saturating): a machine_offline rule ignores
    /// machines that sent fewer than its `min_samples`.
    samples: u32,
    /// The latest value of each metric rules can watch, by [`ALERT_METRICS`] slot.
    values: [Option<f64>; ALERT_METRICS.len()],
    /// Per rule index (threshold and offline rules).
    states: Vec<RuleState>,
    /// Per (rule index, mount point).
    fs_states: HashMap<(usize, String), RuleState>,
    fs: HashMap<String, FsTrack>,
}

impl MachineAlerts {
    fn new(received_at: f64, n_rules: usize) -> Self {
        MachineAlerts {
            extractor: FeatureExtractor::default(),
            last_seen: received_at,
            last_ts: f64::NEG_INFINITY,
            samples: 0,
            values: [None; ALERT_METRICS.len()],
            states: if n_rules == 0 {
                Vec::new()
            } else {
                vec![RuleState::default(); n_rules]
            },
            fs_states: HashMap::new(),
            fs: HashMap::new(),
        }
    }

    /// Takes in a snapshot: the metric values and (when `track_fs`, some rule
    /// watches filesystems) the filesystems' used bytes. False (and nothing
    /// changes) for a sample older than the latest one.
    fn update(&mut self, snapshot: &Snapshot, received_at: f64, track_fs: bool) -> bool {
        let ts = snapshot.timestamp;
        if ts <= self.last_ts {
            return false;
        }
        self.last_ts = ts;
        self.samples = self.samples.saturating_add(1);
        self.last_seen = self.last_seen.max(received_at);
        let f = self.extractor.push(snapshot);
        let pct = |v: f64| (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(v);
        for (slot, m) in self.values.iter_mut().zip(ALERT_METRICS) {
            *slot = match m {
                Metric::Cpu => pct(snapshot.cpu_usage),
                Metric::Memory => pct(snapshot.memory_usage),
                // Rates from the counters of consecutive snapshots (the legacy
                // producer sends no rates).
                Metric::DiskRead => f.values[DISK_READ],
                Metric::DiskWrite => f.values[DISK_WRITE],
                Metric::NetSent => f.values[NET_SENT],
                Metric::NetRecv => f.values[NET_RECV],
                // A cgroup may briefly sit above its limit, and a group's CPU
                // is in percent of one core: these percentages are not capped
                // at 100.
                Metric::ContainerMemoryOfLimit | Metric::ContainerCpu => m.value(snapshot),
                // Host details: absent (no PSI, no disks, ...) stays none.
                _ if m.is_host_detail() && m.unit() == "percent" => m.value(snapshot).and_then(pct),
                _ => m.value(snapshot),
            };
        }
        if !track_fs {
            return true;
        }
        for fs in &snapshot.filesystems {
            if fs.total_bytes == 0 {
                continue;
            }
            let tr = self.fs.entry(fs.mount_point.clone()).or_default();
            if tr.points.len() == FS_WINDOW {
                tr.points.pop_front();
            }
            crate::streaming::reserve_one_deque(&mut tr.points, FS_WINDOW);
            tr.points.push_back((ts, fs.used_bytes as f64));
            tr.available = fs.available_bytes;
        }
        self.fs
            .retain(|mp, _| snapshot.filesystems.iter().any(|f| &f.mount_point == mp));
        true
    }

    /// Rule `i`, a per-machine threshold, on the values just taken in.
    fn threshold(
        &mut self,
        i: usize,
        rule: &AlertRule,
        t: &ThresholdRule,
        id: &str,
        ts: f64,
    ) -> Option<AlertEvent> {
        let v = self.values[t.metric.index()]?;
        let breached = t.op.breached(v, t.threshold);
        let cleared = t.op.cleared(v, t.clear_threshold);
        let st = &mut self.states[i];
        let state = step(st, breached, cleared, t.for_, v, ts)?;
        let event = threshold_event(rule, t, Some(id), state, v, ts);
        st.message.clone_from(&event.message);
        Some(event)
    }

    /// Rule `i`, machine offline: a snapshot resolves it when firing.
    fn reporting_again(
        &mut self,
        i: usize,
        rule: &AlertRule,
        id: &str,
        ts: f64,
    ) -> Option<AlertEvent> {
        let st = &mut self.states[i];
        st.value = 0.0;
        if st.state != AlertState::Firing {
            return None;
        }
        st.state = AlertState::Resolved;
        st.since = ts;
        Some(AlertEvent {
            rule: rule.name.clone(),
            severity: rule.severity,
            machine_id: Some(id.to_string()),
            subject: None,
            state: AlertState::Resolved,
            value: 0.0,
            at: ts,
            message: format!("{id} is reporting again"),
        })
    }

    /// Rule `i`, filesystem full within `horizon` (held for `for_`), on every
    /// filesystem with enough samples.
    fn filesystems(
        &mut self,
        i: usize,
        rule: &AlertRule,
        (horizon, for_): (Duration, Duration),
        id: &str,
        ts: f64,
        events: &mut Vec<AlertEvent>,
    ) {
        let h = horizon.as_secs_f64();
        for (mp, tr) in &self.fs {
            if tr.points.len() < FS_MIN_POINTS {
                continue;
            }
            let Some(&(last_t, _)) = tr.points.back() else {
                continue;
            };
            let pts: Vec<(f64, f64)> = tr.points.iter().map(|(t, u)| (t - last_t, *u)).collect();
            let Some((slope, secs)) = time_until_full(&pts, tr.available, 0.0, FS_MIN_T) else {
                continue;
            };
            let value = secs.unwrap_or(f64::INFINITY);
            let active = value <= h;
            let cleared = value > h * FS_CLEAR_FACTOR;
            let st = self.fs_states.entry((i, mp.clone())).or_default();
            let Some(state) = step(st, active, cleared, for_, value, ts) else {
                continue;
            };
            let message = match state {
                AlertState::Resolved => format!(
                    "{mp} on {id} is no longer projected to fill within {}",
                    fmt_duration(horizon)
                ),
                _ => format!(
                    "{mp} on {id} projected full in {} (growing {}, {} free)",
                    fmt_duration(Duration::from_secs(value.max(0.0) as u64)),
                    human_rate(slope),
                    human_bytes(tr.available)
                ),
            };
            st.message.clone_from(&message);
            events.push(AlertEvent {
                rule: rule.name.clone(),
                severity: rule.severity,
                machine_id: Some(id.to_string()),
                subject: Some(mp.clone()),
                state,
                value,
                at: ts,
                message,
            });
        }
    }

    /// An unmounted filesystem cannot stay alerting: its firing alerts resolve.
    fn resolve_unmounted(
        &mut self,
        rules: &[AlertRule],
        id: &str,
        ts: f64,
        events: &mut Vec<AlertEvent>,
    ) {
        let mut gone = Vec::new();
        let fs = &self.fs;
        self.fs_states.retain(|(i, mp), st| {
            let keep = fs.contains_key(mp);
            if !keep && st.state == AlertState::Firing {
                gone.push((*i, mp.clone()));
            }
            keep
        });
        for (i, mp) in gone {
            let rule = &rules[i];
            events.push(AlertEvent {
                rule: rule.name.clone(),
                severity: rule.severity,
                machine_id: Some(id.to_string()),
                subject: Some(mp.clone()),
                state: AlertState::Resolved,
                value: f64::NAN,
                at: ts,
                message: format!("{mp} on {id} is no longer mounted"),
            });
        }
    }
}

/// Samples of used bytes per filesystem kept for the growth fit.
const FS_WINDOW: usize = 300;
/// Fewest samples before a filesystem's growth is judged.
const FS_MIN_POINTS: usize = 10;
/// Slope t-statistic needed to call a filesystem growing.
const FS_MIN_T: f64 = 3.0;
/// A firing filesystem alert resolves once the projection exceeds this many horizons.
const FS_CLEAR_FACTOR: f64 = 1.5;

/// Evaluates the rules on the snapshot stream of many machines.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    machines: HashMap<String, MachineAlerts>,
    fleet: Vec<RuleState>,
    fleet_window: f64,
    pipeline: PipelineHealth,
    /// Where fleet rules get their machines; see [`FleetInput`].
    shared: Option<SharedFleet>,
}

/// Fleet rules over a store several ingesters share (set by
/// [`AlertEngine::set_fleet_input`]).
#[derive(Debug, Clone, Default)]
struct SharedFleet {
    /// This engine evaluates the fleet rules (it holds the store's lead).
    lead: bool,
    /// The latest values of every machine of the store, fed from its
    /// snapshots while leading.
    machines: HashMap<String, MachineAlerts>,
}

/// What fleet-scoped rules (`fleet_avg`, `fleet_max`) evaluate.
///
/// By default ([`AlertEngine::new`]) they aggregate the machines this engine
/// sees. With several ingesters on one shared store each sees only the
/// machines of its Kafka partitions, so exactly one of them (the holder of
/// the store's lead) evaluates fleet rules on the store's latest value of
/// every machine, and the others skip them.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetInput {
    /// Another ingester evaluates the fleet rules: this engine drops its fleet
    /// state (without events: the leader carries the alerts on) and does not
    /// claim the fleet's alerts.
    Follow,
    /// This engine evaluates the fleet rules on `latest`, the store's newest
    /// snapshot of every machine (machines whose newest snapshot is older than
    /// the fleet window do not count). `active` are the fleet alerts the store
    /// holds as pending or firing: an engine that just took the lead carries
    /// them on (same state, same `since`) instead of raising them again.
    Lead {
        /// The newest stored snapshot of each machine.
        latest: Vec<Snapshot>,
        /// The store's active fleet-scoped alerts.
        active: Vec<ActiveAlert>,
    },
}

impl AlertEngine {
    /// An engine for `rules`, with the default `[alerts.pipeline]`.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let n = rules.len();
        AlertEngine {
            rules,
            machines: HashMap::new(),
            fleet: vec![RuleState::default(); n],
            fleet_window: 60.0,
            pipeline: PipelineHealth::new(PipelineConfig::default()),
            shared: None,
        }
    }

    /// True when a rule is fleet-scoped (`fleet_avg`, `fleet_max`).
    pub fn has_fleet_threshold_rules(&self) -> bool {
        self.rules.iter().any(
            |r| matches!(&r.condition, Condition::Threshold(t) if matches!(t.scope, Scope::Fleet(_))),
        )
    }

    /// Fleet rules over a shared store: this engine leads (evaluates them on
    /// the store's machines) or follows (skips them); see [`FleetInput`].
    /// Without a call, fleet rules aggregate the machines this engine sees.
    pub fn set_fleet_input(&mut self, input: FleetInput) {
        let shared = self.shared.get_or_insert_with(SharedFleet::default);
        match input {
            FleetInput::Follow => {
                if shared.lead {
                    tracing::info!("another ingester now evaluates the fleet-wide alert rules");
                }
                shared.lead = false;
                shared.machines.clear();
                for st in &mut self.fleet {
                    *st = RuleState::default();
                }
            }
            FleetInput::Lead { latest, active } => {
                if !shared.lead {
                    tracing::info!(
                        machines = latest.len(),
                        "this ingester now evaluates the fleet-wide alert rules on the shared store"
                    );
                    // Carry on what the previous leader left active.
                    for (i, rule) in self.rules.iter().enumerate() {
                        let Some(a) = active.iter().find(|a| {
                            a.machine_id.is_none() && a.subject.is_none() && a.rule == rule.name
                        }) else {
                            continue;
                        };
                        if matches!(a.state, AlertState::Pending | AlertState::Firing)
                            && a.since.is_finite()
                        {
                            self.fleet[i] = RuleState {
                                state: a.state,
                                since: a.since,
                                value: a.value,
                                message: a.message.clone(),
                            };
                        }
                    }
                }
                shared.lead = true;
                for s in &latest {
                    if !s.timestamp.is_finite() {
                        continue;
                    }
                    let m = match shared.machines.get_mut(s.machine_id.as_str()) {
                        Some(m) => m,
                        None => shared
                            .machines
                            .entry(s.machine_id.clone())
                            .or_insert_with(|| MachineAlerts::new(s.timestamp, 0)),
                    };
                    // The store's clock for a machine is its samples' timestamps.
                    m.update(s, s.timestamp, false);
                }
                // Bounded: machines gone from the window are dropped.
                let newest = latest
                    .iter()
                    .map(|s| s.timestamp)
                    .filter(|t| t.is_finite())
                    .fold(f64::NEG_INFINITY, f64::max);
                let window = self.fleet_window;
                shared
                    .machines
                    .retain(|_, m| newest - m.last_seen <= window.max(1.0) * 2.0);
            }
        }
    }

    /// Whether this engine evaluates fleet rules (always, unless
    /// [`set_fleet_input`](Self::set_fleet_input) said another ingester does).
    pub fn leads_fleet(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.lead)
    }

    /// An engine for the configured rules (empty when alerts are disabled,
    /// the pipeline alert too).
    pub fn from_config(config: &AlertsConfig) -> Result<Self, CoreError> {
        config.check()?;
        let mut e = AlertEngine::new(if config.enabled {
            config.rules.clone()
        } else {
            Vec::new()
        });
        let mut pipeline = config.pipeline.clone();
        pipeline.enabled &= config.enabled;
        e.pipeline = PipelineHealth::new(pipeline);
        Ok(e)
    }

    /// Replaces the `[alerts.pipeline]` settings (and the pipeline's state).
    pub fn set_pipeline(&mut self, config: PipelineConfig) {
        self.pipeline = PipelineHealth::new(config);
    }

    /// The ingester's transport is unreachable since `since` (epoch seconds,
    /// see [`sysmon_core::ingest::IngestStats::transport_down_since`]), or
    /// reachable (`None`). Taken into account at the next [`tick`](Self::tick).
    pub fn set_transport_down(&mut self, since: Option<f64>) {
        self.pipeline.set_transport_down(since);
    }

    /// What is wrong with the pipeline as of the last [`tick`](Self::tick).
    pub fn pipeline_problem(&self) -> Option<PipelineProblem> {
        self.pipeline.problem()
    }

    /// Fleet rules aggregate the machines whose last snapshot is at most this
    /// old (default 60 s).
    pub fn set_fleet_window(&mut self, window: Duration) {
        self.fleet_window = window.as_secs_f64();
    }

    /// How recent a machine's last snapshot must be to count in fleet rules, seconds.
    pub fn fleet_window(&self) -> f64 {
        self.fleet_window
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Evaluates `snapshot`, taking its timestamp as the time it was received.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Vec<AlertEvent> {
        self.observe_at(snapshot, snapshot.timestamp)
    }

    /// Evaluates `snapshot` received at `received_at` (the master's clock, used for
    /// offline detection so that a sender's clock skew cannot fake silence).
    /// Conditions are timed on the snapshot's own timestamps. Samples older than
    /// the machine's latest are ignored.
    pub fn observe_at(&mut self, snapshot: &Snapshot, received_at: f64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let ts = snapshot.timestamp;
        if !ts.is_finite() || !received_at.is_finite() {
            return events;
        }
        self.pipeline.note_sample(ts, received_at);
        let n_rules = self.rules.len();
        let track_fs = self
            .rules
            .iter()
            .any(|r| matches!(r.condition, Condition::FilesystemFullWithin { .. }));
        let m = match self.machines.get_mut(snapshot.machine_id.as_str()) {
            Some(m) => m,
            None => self
                .machines
                .entry(snapshot.machine_id.clone())
                .or_insert_with(|| MachineAlerts::new(received_at, n_rules)),
        };
        if !m.update(snapshot, received_at, track_fs) {
            return events;
        }
        let id = &snapshot.machine_id;
        for (i, rule) in self.rules.iter().enumerate() {
            match &rule.condition {
                Condition::Threshold(t) if t.scope == Scope::EachMachine => {
                    events.extend(m.threshold(i, rule, t, id, ts));
                }
                Condition::Threshold(_) => {}
                Condition::MachineOffline { .. } => {
                    events.extend(m.reporting_again(i, rule, id, ts));
                }
                Condition::FilesystemFullWithin { horizon, for_ } => {
                    m.filesystems(i, rule, (*horizon, *for_), id, ts, &mut events);
                }
            }
        }
        m.resolve_unmounted(&self.rules, id, ts, &mut events);
        events
    }

    /// Evaluates what depends on the passage of time at `now` (seconds since the
    /// epoch, the master's clock): the pipeline's health, machines going
    /// offline, and fleet-scoped rules. Call it periodically (every few seconds).
    ///
    /// A machine is offline when the pipeline delivered other machines'
    /// samples for longer than `after` since its last one (counted from the
    /// pipeline's recovery at the earliest) while the pipeline is healthy;
    /// see [`super::pipeline`].
    pub fn tick(&mut self, now: f64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        if !now.is_finite() {
            return events;
        }
        events.extend(self.pipeline.tick(now, self.machines.len()));
        let held = self.pipeline.problem().is_some();
        let reference = self.pipeline.last_any();
        let healthy_since = self.pipeline.healthy_since();
        for (i, rule) in self.rules.iter().enumerate() {
            match &rule.condition {
                Condition::MachineOffline { after, min_samples } => {
                    let after_s = after.as_secs_f64();
                    let mut ids: Vec<&String> = self.machines.keys().collect();
                    ids.sort();
                    let ids: Vec<String> = ids.into_iter().cloned().collect();
                    for id in ids {
                        let Some(m) = self.machines.get_mut(&id) else {
                            continue;
                        };
                        let silent = now - m.last_seen;
                        // Silence the pipeline can vouch for: others' samples
                        // kept arriving after this machine's last one (and
                        // after the pipeline's last recovery).
                        let judged = reference - m.last_seen.max(healthy_since);
                        // A machine seen only briefly (a flood of made-up ids,
                        // a test run) never established that it reports: its
                        // silence is no news and pages nobody.
                        let established = m.samples >= *min_samples;
                        let st = &mut m.states[i];
                        if !held
                            && judged > after_s
                            && st.state != AlertState::Firing
                            && established
                        {
                            st.state = AlertState::Firing;
                            st.since = now;
                            st.value = silent;
                            st.message = format!(
                                "{id} silent for {:.0}s (more than {}) while other machines \
                                 kept reporting",
                                silent,
                                fmt_duration(*after)
                            );
                            events.push(AlertEvent {
                                rule: rule.name.clone(),
                                severity: rule.severity,
                                machine_id: Some(id.clone()),
                                subject: None,
                                state: AlertState::Firing,
                                value: silent,
                                at: now,
                                message: st.message.clone(),
                            });
                        } else if st.state == AlertState::Firing {
                            st.value = silent;
                        }
                    }
                }
                Condition::Threshold(t) => {
                    let Scope::Fleet(agg) = t.scope else {
                        continue;
                    };
                    let machines = match &self.shared {
                        None => &self.machines,
                        Some(s) if s.lead => &s.machines,
                        // Another ingester evaluates the fleet rules.
                        Some(_) => continue,
                    };
                    let idx = t.metric.index();
                    let recent = machines
                        .values()
                        .filter(|m| now - m.last_seen <= self.fleet_window)
                        .filter_map(|m| m.values[idx]);
                    let (mut n, mut sum, mut max) = (0usize, 0.0, f64::NEG_INFINITY);
                    for v in recent {
                        n += 1;
                        sum += v;
                        max = max.max(v);
                    }
                    if n == 0 {
                        continue;
                    }
                    let v = match agg {
                        Aggregate::Avg => sum / n as f64,
                        Aggregate::Max => max,
                    };
                    let st = &mut self.fleet[i];
                    if let Some(state) = step(
                        st,
                        t.op.breached(v, t.threshold),
                        t.op.cleared(v, t.clear_threshold),
                        t.for_,
                        v,
                        now,
                    ) {
                        let event = threshold_event(rule, t, None, state, v, now);
                        st.message.clone_from(&event.message);
                        events.push(event);
                    }
                }
                Condition::FilesystemFullWithin { .. } => {}
            }
        }
        events
    }

    /// Drops a retired machine; its firing alerts end with a `resolved` event so
    /// that nothing stays active forever.
    pub fn forget(&mut self, machine_id: &str, now: f64) -> Vec<AlertEvent> {
        self.forget_because(machine_id, now, "was retired")
    }

    /// Drops a machine; its firing alerts end with a `resolved` event whose
    /// message is `<machine> <why>`.
    pub fn forget_because(&mut self, machine_id: &str, now: f64, why: &str) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let Some(m) = self.machines.remove(machine_id) else {
            return events;
        };
        let fs = m
            .fs_states
            .iter()
            .map(|((i, mp), st)| (*i, Some(mp.clone()), st.clone()));
        let per_rule = m
            .states
            .iter()
            .enumerate()
            .map(|(i, st)| (i, None, st.clone()));
        let mut all: Vec<(usize, Option<String>, RuleState)> = per_rule.chain(fs).collect();
        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (i, subject, st) in all {
            if st.state != AlertState::Firing {
                continue;
            }
            let state = AlertState::Resolved;
            events.push(AlertEvent {
                rule: self.rules[i].name.clone(),
                severity: self.rules[i].severity,
                machine_id: Some(machine_id.to_string()),
                subject,
                state,
                value: st.value,
                at: now,
                message: format!("{machine_id} {why}"),
            });
        }
        events
    }

    /// The number of machines with state.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// True when the engine has state for `machine_id`.
    pub fn knows(&self, machine_id: &str) -> bool {
        self.machines.contains_key(machine_id)
    }

    /// The machines no snapshot was received from for longer than `silence`
    /// at `now` (the master's clock), sorted.
    pub fn silent_longer_than(&self, now: f64, silence: Duration) -> Vec<String> {
        let s = silence.as_secs_f64();
        let mut ids: Vec<String> = self
            .machines
            .iter()
            .filter(|(_, m)| now - m.last_seen > s)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The longest `after` of the machine_offline rules, if any.
    pub fn longest_offline_after(&self) -> Option<Duration> {
        self.rules
            .iter()
            .filter_map(|r| match r.condition {
                Condition::MachineOffline { after, .. } => Some(after),
                _ => None,
            })
            .max()
    }

    /// Roughly the heap one machine's state holds, bytes (for tests of lazy sizing).
    pub fn machine_heap_bytes(&self, machine_id: &str) -> Option<usize> {
        self.machines.get(machine_id).map(|m| {
            m.states.capacity() * std::mem::size_of::<RuleState>()
                + m.fs
                    .values()
                    .map(|t| t.points.capacity() * std::mem::size_of::<(f64, f64)>())
                    .sum::<usize>()
        })
    }

    /// The machines this engine has seen (and so owns the alert state of), sorted.
    pub fn machine_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.machines.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// True when a rule is fleet-scoped, or the (fleet-scoped) pipeline
    /// alert has been pending or firing.
    ///
    /// An engine that follows another's lead on a shared store
    /// ([`FleetInput::Follow`]) does not own the fleet rules' alerts.
    pub fn has_fleet_rules(&self) -> bool {
        self.pipeline.ever_active() || (self.leads_fleet() && self.has_fleet_threshold_rules())
    }

    /// The alerts pending or firing now, by rule order then machine.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut out = Vec::new();
        let live = |s: AlertState| matches!(s, AlertState::Pending | AlertState::Firing);
        out.extend(self.pipeline.active());
        for (i, rule) in self.rules.iter().enumerate() {
            if live(self.fleet[i].state) {
                out.push(self.fleet[i].to_active(rule, None, None));
            }
            let mut ids: Vec<&String> = self.machines.keys().collect();
            ids.sort();
            for id in ids {
                let m = &self.machines[id];
                let st = &m.states[i];
                if live(st.state) {
                    out.push(st.to_active(rule, Some(id), None));
                }
                let mut fs: Vec<(&(usize, String), &RuleState)> =
                    m.fs_states.iter().filter(|((r, _), _)| *r == i).collect();
                fs.sort_by(|a, b| a.0.cmp(b.0));
                for ((_, mp), st) in fs {
                    if live(st.state) {
                        out.push(st.to_active(rule, Some(id), Some(mp)));
                    }
                }
            }
        }
        out
    }
}

fn threshold_event(
    rule: &AlertRule,
    t: &ThresholdRule,
    machine: Option<&str>,
    state: AlertState,
    value: f64,
    at: f64,
) -> AlertEvent {
    let who = match (machine, t.scope) {
        (Some(id), _) => id.to_string(),
        (None, Scope::Fleet(Aggregate::Avg)) => "the fleet (average)".into(),
        (None, _) => "the fleet (maximum)".into(),
    };
    let m = t.metric;
    let message = match state {
        AlertState::Firing => format!(
            "{} {} {} {} on {who} for at least {}",
            m.name(),
            m.format_value(value),
            t.op.symbol(),
            m.format_value(t.threshold),
            fmt_duration(t.for_)
        ),
        _ => format!(
            "{} back to {} on {who} (clear threshold {})",
            m.name(),
            m.format_value(value),
            m.format_value(t.clear_threshold)
        ),
    };
    AlertEvent {
        rule: rule.name.clone(),
        severity: rule.severity,
        machine_id: machine.map(str::to_string),
        subject: None,
        state,
        value,
        at,
        message,
    }
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests;
