//! Analytics in the ingester: every stored batch goes through the anomaly
//! detector and the alert rules, and the results go to storage and to people.
//!
//! * [`AnalyticsEngine`] is the synchronous part: [`AnomalyDetector`] and
//!   [`AlertEngine`] over batches of snapshots, plus a periodic
//!   [`tick`](AnalyticsEngine::tick) for what depends on time passing
//!   (machines going offline, fleet rules). It returns an [`AnalyticsRecord`].
//! * [`AnalyticsService`] is the runtime around it: it subscribes to the
//!   ingester's stored-batch broadcast ([`sysmon_core::Ingest::subscribe`]), runs the
//!   engine on the blocking pool, hands each record to the [`AnalyticsSink`]s
//!   (alert history and anomaly scores in SQLite, active alerts in Redis) and
//!   each alert transition to the [`AlertNotifier`]s (a log line, webhooks).
//!
//! Per-machine state is bounded (issue 11): it grows with what a machine sent
//! rather than being allocated in full, it is forgotten once the machine has
//! been silent for `[ingest] forget_silent_machines_after`, and at most
//! `[ingest] max_tracked_machines` machines are tracked at once (samples of
//! further machines are stored but not analysed, and counted).
//!
//! Analytics never holds ingestion back: it reads the broadcast after the
//! batch is stored and committed. If it falls behind by more than the
//! broadcast's capacity (a large backlog replayed at full speed), the batches
//! it missed are counted and logged (`analytics_skipped_batches`), and it goes
//! on with the newest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::alerts::{ActiveAlert, AlertEngine, AlertEvent, FleetInput};
use super::detector::{AnomalyDetector, AnomalyScore};
use super::episodes::{Episode, EpisodeTracker};
use super::notify::AlertNotifier;
use crate::config::Config;
use sysmon_core::error::CoreError;
use sysmon_core::ingest::IngestStats;
use sysmon_core::sink::{Batch, SinkError};
use sysmon_core::snapshot::Snapshot;
use sysmon_core::{SnapshotStore, StoreError};

/// What one step of the engine produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalyticsRecord {
    /// The anomaly score of every snapshot that could be scored.
    pub scores: Vec<AnomalyScore>,
    /// Anomaly episodes that opened (`open`: their first flagged sample) or
    /// closed in this step; a store keys them by machine and start.
    pub episodes: Vec<Episode>,
    /// Alerts that started firing or were resolved.
    pub events: Vec<AlertEvent>,
    /// The pending and firing alerts, when they changed since the last record or
    /// are due to be re-sent (so that a store that lost them, such as a restarted
    /// Redis, gets them back); `None` when unchanged.
    pub active: Option<ActiveSet>,
}

/// The scope of fleet-wide alerts in [`ActiveSet::scopes`]: the empty string,
/// which no machine id can be (the decoder rejects empty and blank ids), so a
/// machine named `fleet` keeps alerts of its own. Stores map it to their own
/// spelling: the empty `machine_id` column in SQLite and PostgreSQL, the
/// `<prefix>fleet_alerts` key in Redis.
pub const FLEET_SCOPE: &str = "";

/// The active alerts of the scopes one engine owns.
///
/// An engine owns the machines it has seen (and [`FLEET_SCOPE`] when a rule is
/// fleet-scoped): with several ingesters in one consumer group each owns the
/// machines of its partitions, so a store replaces the alerts of `scopes` only
/// and leaves the others' alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveSet {
    /// Every scope (machine id, or [`FLEET_SCOPE`]) whose alerts `alerts` lists completely.
    pub scopes: Vec<String>,
    /// The pending and firing alerts of those scopes.
    pub alerts: Vec<ActiveAlert>,
    /// A periodic re-send of an unchanged set (stores that keep a memo of
    /// what they wrote should write everything again).
    pub full: bool,
}

impl ActiveSet {
    /// The scope of an alert: its machine, or [`FLEET_SCOPE`].
    pub fn scope_of(alert: &ActiveAlert) -> &str {
        alert.machine_id.as_deref().unwrap_or(FLEET_SCOPE)
    }
}

impl AnalyticsRecord {
    /// True when there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
            && self.episodes.is_empty()
            && self.events.is_empty()
            && self.active.is_none()
    }
}

/// How many machines each part of an [`AnalyticsEngine`] holds state for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackedMachines {
    /// Machines with anomaly-detector state.
    pub detector: usize,
    /// Machines with alert-rule state (every tracked machine).
    pub alerts: usize,
    /// Machines with an open anomaly episode.
    pub episodes: usize,
}

/// A machine the detector holds no state for yet (see
/// [`AnalyticsEngine::cold_machines`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ColdMachine {
    /// Its id.
    pub machine_id: String,
    /// Its oldest timestamp in the batch: warm-up history is older.
    pub first: f64,
    /// Its sampling interval in seconds, when its snapshots carry it.
    pub interval_secs: Option<f64>,
}

/// Anomaly detection and alert rules over the snapshot stream (no I/O).
#[derive(Debug)]
pub struct AnalyticsEngine {
    detector: Option<AnomalyDetector>,
    episodes: EpisodeTracker,
    alerts: AlertEngine,
    last_active: Option<(usize, Vec<ActiveAlert>)>,
    last_full_send: f64,
    resend_every: f64,
    /// Silence after which a machine's state is dropped.
    forget_after: Duration,
    /// Most machines tracked at once.
    max_machines: usize,
    /// Samples not analysed because `max_machines` were tracked.
    cap_hits: u64,
    /// Machines forgotten after their silence.
    forgotten: u64,
    /// Forgotten scopes not yet sent in an active set (their stored alerts
    /// must be cleared).
    forgotten_scopes: Vec<String>,
}

impl AnalyticsEngine {
    /// The engine `[anomaly]` and `[alerts]` describe (a disabled part does nothing).
    pub fn from_config(config: &Config) -> Result<AnalyticsEngine, CoreError> {
        let detector = if config.anomaly.enabled {
            Some(AnomalyDetector::new(config.anomaly.clone())?)
        } else {
            None
        };
        let alerts = AlertEngine::from_config(&config.alerts)?;
        let forget_after = config.ingest.forget_silent_machines_after;
        if let Some(after) = alerts.longest_offline_after() {
            if forget_after <= after {
                return Err(CoreError::Config(format!(
                    "ingest.forget_silent_machines_after ({}) must be longer than the longest                      machine_offline rule's `after` ({}): an offline machine is alerted before                      it is forgotten",
                    sysmon_core::duration::format(forget_after),
                    sysmon_core::duration::format(after)
                )));
            }
        }
        Ok(AnalyticsEngine {
            detector,
            episodes: EpisodeTracker::default(),
            alerts,
            last_active: None,
            last_full_send: f64::NEG_INFINITY,
            resend_every: 30.0,
            forget_after,
            max_machines: config.ingest.max_tracked_machines.max(1),
            cap_hits: 0,
            forgotten: 0,
            forgotten_scopes: Vec::new(),
        })
    }

    /// Bounds the state: machines silent for `forget_after` are forgotten, at
    /// most `max_machines` are tracked (defaults: `[ingest]`'s, 1 h and 10,000).
    pub fn set_state_bounds(&mut self, forget_after: Duration, max_machines: usize) {
        self.forget_after = forget_after;
        self.max_machines = max_machines.max(1);
    }

    /// How many machines each part holds state for.
    pub fn tracked(&self) -> TrackedMachines {
        TrackedMachines {
            detector: self.detector.as_ref().map_or(0, |d| d.machine_count()),
            alerts: self.alerts.machine_count(),
            episodes: self.episodes.open_count(),
        }
    }

    /// Samples not analysed so far because `max_machines` were tracked.
    pub fn cap_hits(&self) -> u64 {
        self.cap_hits
    }

    /// Machines forgotten so far after their silence.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// True when neither detection nor any alert rule is enabled.
    pub fn is_idle(&self) -> bool {
        self.detector.is_none() && self.alerts.rules().is_empty()
    }

    /// Every so often the active set is sent again even when unchanged (default 30 s).
    pub fn set_resend_every(&mut self, every: Duration) {
        self.resend_every = every.as_secs_f64();
    }

    /// Machines of `batch` the detector holds no state for (after a restart, or
    /// when a Kafka partition moved to this ingester), each with the oldest
    /// timestamp it has in the batch and its sampling interval when it says.
    pub fn cold_machines(&self, batch: &[Snapshot]) -> Vec<ColdMachine> {
        let Some(d) = self.detector.as_ref() else {
            return Vec::new();
        };
        let mut cold: Vec<ColdMachine> = Vec::new();
        // Position in `cold` by id: a restart makes every machine of a batch cold.
        let mut at: std::collections::HashMap<&str, usize> = Default::default();
        // Only machines the engine will track: warming one beyond the cap
        // would give it detector state nothing ever forgets.
        let mut room = self
            .max_machines
            .saturating_sub(self.alerts.machine_count());
        for s in batch {
            if d.machine(&s.machine_id).is_some() || !s.timestamp.is_finite() {
                continue;
            }
            match at.get(s.machine_id.as_str()) {
                Some(&i) => cold[i].first = cold[i].first.min(s.timestamp),
                None if !self.alerts.knows(&s.machine_id) && room == 0 => {}
                None => {
                    if !self.alerts.knows(&s.machine_id) {
                        room -= 1;
                    }
                    at.insert(&s.machine_id, cold.len());
                    cold.push(ColdMachine {
                        machine_id: s.machine_id.clone(),
                        first: s.timestamp,
                        interval_secs: s.interval_secs.filter(|i| i.is_finite() && *i > 0.0),
                    });
                }
            }
        }
        cold
    }

    /// How many past samples of a machine make its detector state whole (its
    /// training window); 0 when detection is off.
    pub fn warm_samples(&self) -> usize {
        self.detector.as_ref().map_or(0, |d| d.config().window)
    }

    /// Feeds one machine's stored `history` (oldest first, every sample older
    /// than its live ones) through the detector before its live samples: the
    /// state learns it, nothing is scored, reported or alerted. Does nothing
    /// once the detector knows the machine. Returns the samples fed.
    pub fn warm(&mut self, history: &[Snapshot]) -> usize {
        let Some(d) = self.detector.as_mut() else {
            return 0;
        };
        let Some(first) = history.first() else {
            return 0;
        };
        if d.machine(&first.machine_id).is_some() {
            return 0;
        }
        let mut fed = 0;
        for s in history.iter().filter(|s| s.machine_id == first.machine_id) {
            let _ = d.observe(s);
            fed += 1;
        }
        fed
    }

    /// Scores and evaluates the snapshots of one stored batch, received at `now`
    /// (seconds since the epoch, this host's clock).
    pub fn observe_batch(&mut self, batch: &[Snapshot], now: f64) -> AnalyticsRecord {
        let mut record = AnalyticsRecord::default();
        for s in batch {
            // The alert engine holds state for every tracked machine (the
            // detector for a subset): a new machine beyond the cap is not tracked.
            if self.alerts.machine_count() >= self.max_machines && !self.alerts.knows(&s.machine_id)
            {
                self.cap_hits += 1;
                continue;
            }
            if let Some(d) = self.detector.as_mut() {
                if let Some((score, verdict)) = d.observe_detailed(s) {
                    record
                        .episodes
                        .extend(self.episodes.observe(&score, &verdict));
                    if let Some(e) = self
                        .episodes
                        .current(&score.machine_id)
                        .filter(|e| score.anomaly && e.samples == 1)
                    {
                        record.episodes.push(e.clone());
                    }
                    record.scores.push(score);
                }
            }
            record.events.extend(self.alerts.observe_at(s, now));
        }
        record.active = self.active_if_changed(now);
        record
    }

    /// Evaluates what depends on time passing at `now`: machines gone silent,
    /// fleet-scoped rules; then forgets the machines silent for longer than
    /// the bound (their firing alerts resolve, their open episodes close).
    pub fn tick(&mut self, now: f64) -> AnalyticsRecord {
        let mut events = self.alerts.tick(now);
        let mut episodes = Vec::new();
        let why = format!(
            "silent for more than {}: no longer tracked",
            sysmon_core::duration::format(self.forget_after)
        );
        for id in self.alerts.silent_longer_than(now, self.forget_after) {
            events.extend(self.alerts.forget_because(&id, now, &why));
            if let Some(d) = self.detector.as_mut() {
                d.forget(&id);
            }
            episodes.extend(self.episodes.close(&id));
            self.forgotten += 1;
            self.forgotten_scopes.push(id);
        }
        AnalyticsRecord {
            scores: Vec::new(),
            episodes,
            events,
            active: self.active_if_changed(now),
        }
    }

    /// The ingester's transport is unreachable since `since` (epoch seconds),
    /// or reachable (`None`): the pipeline's health (see
    /// [`crate::alerts::pipeline`]), judged at the next tick.
    pub fn set_transport_down(&mut self, since: Option<f64>) {
        self.alerts.set_transport_down(since);
    }

    /// True when an alert rule is fleet-scoped (`fleet_avg`, `fleet_max`).
    pub fn has_fleet_rules(&self) -> bool {
        self.alerts.has_fleet_threshold_rules()
    }

    /// Fleet rules over a store several ingesters share; see [`FleetInput`].
    pub fn set_fleet_input(&mut self, input: FleetInput) {
        self.alerts.set_fleet_input(input);
    }

    /// The alerts pending or firing now.
    pub fn active_alerts(&self) -> Vec<ActiveAlert> {
        self.alerts.active()
    }

    fn active_if_changed(&mut self, now: f64) -> Option<ActiveSet> {
        let active = self.alerts.active();
        let machines = self.alerts.machine_ids();
        let due = now - self.last_full_send >= self.resend_every;
        let changed = self
            .last_active
            .as_ref()
            .is_none_or(|(n, a)| *n != machines.len() || a != &active)
            || !self.forgotten_scopes.is_empty();
        if !due && !changed {
            return None;
        }
        self.last_active = Some((machines.len(), active.clone()));
        if due {
            self.last_full_send = now;
        }
        let mut scopes = machines;
        // Forgotten machines are listed once more, with no alerts, so that
        // stores clear what they hold for them.
        scopes.append(&mut self.forgotten_scopes);
        if self.alerts.has_fleet_rules() {
            scopes.push(FLEET_SCOPE.to_string());
        }
        Some(ActiveSet {
            scopes,
            alerts: active,
            full: due,
        })
    }
}

/// Where analytics results are kept: alert history and anomaly scores
/// (SQLite), the active alerts (Redis).
#[async_trait]
pub trait AnalyticsSink: Send + Sync {
    /// A short name for logs, e.g. `sqlite`.
    fn name(&self) -> &str;

    /// Stores one record. Must be idempotent for scores (same machine and
    /// timestamp overwrite) and replace the active set when `active` is `Some`.
    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError>;
}

/// A history several ingesters share (PostgreSQL): fleet-wide alert rules
/// run in exactly one ingester at a time, on every machine's latest stored
/// values (each ingester sees only the machines of its Kafka partitions).
#[async_trait]
pub trait SharedFleet: Send + Sync {
    /// Keeps or takes the lead of the fleet-wide work (the store's
    /// maintenance lock); true when this process holds it. A lead whose
    /// holder died passes to the next ingester that asks.
    async fn lead_fleet(&self) -> Result<bool, StoreError>;

    /// The newest stored snapshot of every machine with one at or after
    /// `since` (seconds since the epoch); top processes may be left out.
    async fn fleet_latest(&self, since: f64) -> Result<Vec<Snapshot>, StoreError>;

    /// The fleet-scoped alerts (no machine) stored as pending or firing.
    async fn fleet_active(&self) -> Result<Vec<ActiveAlert>, StoreError>;
}

/// How often an ingester on a [`SharedFleet`] asks for the lead and, while
/// leading, reads the fleet's latest values (default).
pub const SHARED_FLEET_EVERY: Duration = Duration::from_secs(5);

/// Counters of a running [`AnalyticsService`].
#[derive(Debug, Default)]
pub struct AnalyticsStats {
    /// Batches analysed.
    pub batches: AtomicU64,
    /// Snapshots scored.
    pub scored: AtomicU64,
    /// Snapshots flagged as anomalous.
    pub anomalies: AtomicU64,
    /// Alert transitions (firing or resolved).
    pub alert_events: AtomicU64,
    /// Batches missed because analytics fell behind the broadcast.
    pub skipped_batches: AtomicU64,
    /// Failed writes to analytics sinks.
    pub sink_errors: AtomicU64,
    /// Samples not analysed because `max_tracked_machines` were tracked.
    pub machine_cap_hits: AtomicU64,
    /// Machines forgotten after `forget_silent_machines_after` of silence.
    pub forgotten_machines: AtomicU64,
    /// Gauge: machines with anomaly-detector state.
    pub tracked_detector: AtomicU64,
    /// Gauge: machines with alert-rule state.
    pub tracked_alerts: AtomicU64,
    /// Gauge: machines with an open anomaly episode.
    pub tracked_episodes: AtomicU64,
    /// Machines whose detector state was warmed from stored history.
    pub warmed_machines: AtomicU64,
    /// Machines that started cold because warming hit its time budget or the
    /// store failed.
    pub cold_starts: AtomicU64,
}

/// Runs an [`AnalyticsEngine`] on the ingester's stored batches.
pub struct AnalyticsService {
    /// Shared with the blocking-pool task that runs each step.
    engine: Arc<Mutex<AnalyticsEngine>>,
    sinks: Vec<Arc<dyn AnalyticsSink>>,
    notifiers: Vec<Arc<dyn AlertNotifier>>,
    tick_every: Duration,
    stats: Arc<AnalyticsStats>,
    /// The cap on tracked machines bit and was logged (again once below it).
    warned_cap: bool,
    /// Where a machine's detector state is warmed from when it arrives cold.
    warm_from: Option<Arc<dyn SnapshotStore>>,
    /// The ingester whose transport state is the pipeline's (if any).
    ingest: Option<Arc<IngestStats>>,
    /// The shared store fleet rules run on, how often it is read, and when
    /// it was last.
    shared: Option<(Arc<dyn SharedFleet>, Duration, Option<tokio::time::Instant>)>,
    /// Whether this service led the fleet rules at its last look.
    leading: Option<bool>,
}

impl AnalyticsService {
    /// A service around `engine`, with no sinks or notifiers yet.
    pub fn new(engine: AnalyticsEngine) -> AnalyticsService {
        AnalyticsService {
            engine: Arc::new(Mutex::new(engine)),
            sinks: Vec::new(),
            notifiers: Vec::new(),
            tick_every: Duration::from_secs(1),
            stats: Arc::new(AnalyticsStats::default()),
            warned_cap: false,
            warm_from: None,
            ingest: None,
            shared: None,
            leading: None,
        }
    }

    /// Fleet-wide rules on a store several ingesters share: every `every`
    /// this service asks `store` for the lead; while it leads, its fleet
    /// rules aggregate the store's latest value of every machine, otherwise
    /// it skips them (see [`FleetInput`]). Nothing changes without fleet
    /// rules.
    pub fn share_fleet(&mut self, store: Arc<dyn SharedFleet>, every: Duration) -> &mut Self {
        self.shared = Some((store, every.max(Duration::from_millis(10)), None));
        // Until the store says this ingester leads, it does not.
        lock(&self.engine).set_fleet_input(FleetInput::Follow);
        self
    }

    /// Warms the detector from `store` (the ingester's history): a machine the
    /// detector holds no state for — after a restart, or when its Kafka
    /// partition moved here — first learns its recent stored samples, within
    /// a time budget per batch (module `service/warm.rs`).
    pub fn warm_from(&mut self, store: Arc<dyn SnapshotStore>) -> &mut Self {
        self.warm_from = Some(store);
        self
    }

    /// Follows the transport state of the ingester whose batches this service
    /// analyses ([`IngestStats::transport_down_since`]): while it cannot
    /// receive, machine offline alerts are held back and the pipeline alert
    /// fires instead.
    pub fn watch_ingest(&mut self, stats: Arc<IngestStats>) -> &mut Self {
        self.ingest = Some(stats);
        self
    }

    /// Adds a place to store results.
    pub fn add_sink(&mut self, sink: Arc<dyn AnalyticsSink>) -> &mut Self {
        self.sinks.push(sink);
        self
    }

    /// Adds a receiver of alert transitions.
    pub fn add_notifier(&mut self, notifier: Arc<dyn AlertNotifier>) -> &mut Self {
        self.notifiers.push(notifier);
        self
    }

    /// How often time-dependent rules are evaluated (default 1 s).
    pub fn set_tick_every(&mut self, every: Duration) -> &mut Self {
        self.tick_every = every.max(Duration::from_millis(10));
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<AnalyticsStats> {
        self.stats.clone()
    }

    /// Analyses every batch from `batches` until the broadcast closes or `stop`
    /// fires; after `stop` it still analyses what was already broadcast.
    pub async fn run(
        mut self,
        mut batches: broadcast::Receiver<Batch>,
        stop: CancellationToken,
    ) -> Result<(), CoreError> {
        if lock(&self.engine).is_idle() {
            info!("analytics: anomaly detection and alert rules are disabled");
        }
        let mut tick = tokio::time::interval(self.tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned_lag = false;
        loop {
            tokio::select! {
                biased;
                got = batches.recv() => match got {
                    Ok(batch) => {
                        self.analyse(Some(batch)).await?;
                        warned_lag = false;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.stats.skipped_batches.fetch_add(n, Ordering::Relaxed);
                        if !warned_lag {
                            warn!(skipped_batches = n,
                                  "analytics fell behind the ingester; skipped batches are stored \
                                   but not scored (analytics_skipped_batches counts them)");
                            warned_lag = true;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.analyse(None).await?,
                _ = stop.cancelled() => {
                    // What was stored before the stop is still analysed.
                    while let Ok(batch) = batches.try_recv() {
                        self.analyse(Some(batch)).await?;
                    }
                    break;
                }
            }
        }
        debug!("analytics stopped");
        Ok(())
    }

    /// On a shared store, every so often: whether this ingester leads the
    /// fleet rules and, if it does, the fleet's latest values. `None` when
    /// not due (or no fleet rule, or no shared store).
    async fn fleet_input(&mut self, now: f64) -> Option<FleetInput> {
        let (store, every, last) = self.shared.as_mut()?;
        let due = last.is_none_or(|l| l.elapsed() >= *every);
        if !due || !lock(&self.engine).has_fleet_rules() {
            return None;
        }
        *last = Some(tokio::time::Instant::now());
        let store = store.clone();
        let window = lock(&self.engine).alerts.fleet_window();
        let input = match store.lead_fleet().await {
            Ok(true) => {
                let latest = store.fleet_latest(now - window).await;
                let active = if self.leading == Some(true) {
                    Ok(Vec::new())
                } else {
                    store.fleet_active().await
                };
                match (latest, active) {
                    (Ok(latest), Ok(active)) => FleetInput::Lead { latest, active },
                    (Err(e), _) | (_, Err(e)) => {
                        // Judging the fleet on nothing would resolve its
                        // alerts: wait for the next look instead.
                        warn!(error = %e, "reading the fleet's latest values failed; fleet rules wait");
                        return None;
                    }
                }
            }
            Ok(false) => FleetInput::Follow,
            Err(e) => {
                if self.leading != Some(false) {
                    warn!(error = %e, "cannot tell whether this ingester leads the fleet rules;                                        it leaves them to another");
                }
                FleetInput::Follow
            }
        };
        self.leading = Some(matches!(input, FleetInput::Lead { .. }));
        Some(input)
    }

    /// One step: a batch, or a tick when `batch` is `None`.
    async fn analyse(&mut self, batch: Option<Batch>) -> Result<(), CoreError> {
        if let (Some(store), Some(b)) = (&self.warm_from, &batch) {
            warm::warm_cold_machines(&self.engine, store, b, &self.stats).await;
        }
        let now = now_secs();
        let fleet = if batch.is_none() {
            self.fleet_input(now).await
        } else {
            None
        };
        let engine = self.engine.clone();
        let transport_down = self.ingest.as_ref().map(|i| i.transport_down_since());
        // Scoring 1,000 snapshots takes ~15 ms: off the async runtime.
        let (record, tracked, cap_hits, forgotten, max) = tokio::task::spawn_blocking(move || {
            let mut engine = lock(&engine);
            if let Some(down) = transport_down {
                engine.set_transport_down(down);
            }
            if let Some(input) = fleet {
                engine.set_fleet_input(input);
            }
            let record = match &batch {
                Some(b) => engine.observe_batch(b, now),
                None => engine.tick(now),
            };
            let tracked = engine.tracked();
            (
                record,
                tracked,
                engine.cap_hits(),
                engine.forgotten(),
                engine.max_machines,
            )
        })
        .await
        .map_err(|e| CoreError::Config(format!("analytics task failed: {e}")))?;
        let st = &self.stats;
        st.tracked_detector
            .store(tracked.detector as u64, Ordering::Relaxed);
        st.tracked_alerts
            .store(tracked.alerts as u64, Ordering::Relaxed);
        st.tracked_episodes
            .store(tracked.episodes as u64, Ordering::Relaxed);
        st.forgotten_machines.store(forgotten, Ordering::Relaxed);
        let before = st.machine_cap_hits.swap(cap_hits, Ordering::Relaxed);
        if cap_hits > before && !self.warned_cap {
            warn!(
                max_tracked_machines = max,
                "analytics tracks its maximum of machines; samples of further machines are \
                   stored but not analysed until silent ones are forgotten \
                   (sysmon_analytics_machine_cap_hits_total counts them)"
            );
            self.warned_cap = true;
        } else if tracked.alerts < max {
            self.warned_cap = false;
        }
        self.deliver(record).await;
        Ok(())
    }

    async fn deliver(&self, record: AnalyticsRecord) {
        if !record.scores.is_empty() {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
        }
        let flagged = record.scores.iter().filter(|s| s.anomaly).count() as u64;
        self.stats
            .scored
            .fetch_add(record.scores.len() as u64, Ordering::Relaxed);
        self.stats.anomalies.fetch_add(flagged, Ordering::Relaxed);
        self.stats
            .alert_events
            .fetch_add(record.events.len() as u64, Ordering::Relaxed);
        for s in record.scores.iter().filter(|s| s.anomaly) {
            debug!(machine_id = %s.machine_id, timestamp = s.timestamp, score = s.score,
                   reasons = ?s.reasons, "anomaly");
        }
        for event in &record.events {
            for n in &self.notifiers {
                n.notify(event);
            }
        }
        if record.is_empty() {
            return;
        }
        for sink in &self.sinks {
            if let Err(e) = sink.record(&record).await {
                let n = self.stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                // Logged on the first failure and then every 100th, not per batch.
                if n % 100 == 0 {
                    warn!(sink = sink.name(), error = %e, failures = n + 1,
                          "storing analytics failed (ingestion goes on)");
                }
            }
        }
    }
}

/// The engine's state stays consistent across a panic in a step (each step
/// only adds to it), so a poisoned lock is taken over.
fn lock(engine: &Mutex<AnalyticsEngine>) -> MutexGuard<'_, AnalyticsEngine> {
    engine.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
mod warm;
