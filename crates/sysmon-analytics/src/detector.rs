//! [`AnomalyDetector`]: per-machine anomaly detection combining the fast
//! streaming detector with an Isolation Forest retrained on a rolling window.
//!
//! For every snapshot of a machine:
//! 1. [`FeatureExtractor`] turns it into the six legacy features (CPU %, memory %,
//!    disk read/write and network sent/received rates from the cumulative counters)
//!    and, where the machine sends host details, CPU, memory and I/O pressure
//!    stall and the busiest disk's utilisation.
//! 2. [`StreamingDetector`] scores each feature against its rolling median/MAD and
//!    memory against a ramp test: this catches spikes on their first sample.
//! 3. Once `min_history` complete vectors of the six legacy features exist, an
//!    [`IsolationForest`] trained on the last `window` of them scores the vector
//!    (rates in log space; the host details are not its inputs, so that machines
//!    with and without them get the same forest);
//!    it is retrained every `retrain_every` samples. It catches combinations that
//!    no single feature shows.
//!
//! The sample is an anomaly when either says so. The combined `score` is
//! `1 - 2^(-r)` where `r` is the largest of the tests' ratios to their limits
//! (see [`StreamingOutcome`] and [`AnomalyScore::score`]): 0.5 is the decision
//! boundary of every test, and the score grows with how far past it a sample is.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::features::{is_rate, FeatureExtractor, CORE_FEATURES, FEATURE_NAMES};
use super::isolation_forest::{quantile, Contamination, ForestParams, IsolationForest};
use super::streaming::{Deviation, StreamingDetector, StreamingOutcome, StreamingParams};
use sysmon_core::error::CoreError;
use sysmon_core::snapshot::Snapshot;

/// Robust z-scores fed to the forest are clipped to ±this.
const Z_CLIP: f64 = 12.0;

/// What the Isolation Forest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForestInput {
    /// The features themselves (the legacy method; rates as `ln(rate + offset)`).
    Levels,
    /// Each feature's robust z-score against its rolling baseline (clipped to ±12):
    /// insensitive to slow drift, so the forest judges how the features deviate together.
    #[default]
    Deviations,
}

/// How readily the detector flags: scales every test's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Only clear anomalies: every limit × 1.4.
    Low,
    /// The calibrated default.
    #[default]
    Normal,
    /// Smaller anomalies too, with more false alarms: every limit × 0.75.
    High,
}

impl Sensitivity {
    /// The factor applied to the tests' limits (z thresholds, minimum changes,
    /// the ramp's rise).
    pub fn factor(self) -> f64 {
        match self {
            Sensitivity::Low => 1.4,
            Sensitivity::Normal => 1.0,
            Sensitivity::High => 0.75,
        }
    }
}

/// `[anomaly]`: the anomaly detector's parameters. Windows are counted in samples
/// of one machine (at the default 1 s interval, 1024 samples ≈ 17 minutes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Run anomaly detection in the ingester.
    pub enabled: bool,
    /// Isolation Forest: complete feature vectors in the rolling training window.
    pub window: usize,
    /// Isolation Forest: retrain after this many new samples.
    pub retrain_every: usize,
    /// Isolation Forest: vectors needed before the first forest is trained.
    pub min_history: usize,
    /// Isolation Forest: number of trees.
    pub trees: usize,
    /// Isolation Forest: rows per tree (ψ).
    pub sample_size: usize,
    /// Isolation Forest: `"auto"` (threshold 0.5) or the expected anomaly share
    /// of the training window, whose quantile sets the threshold.
    pub contamination: Contamination,
    /// Isolation Forest: the threshold never goes below this score.
    pub forest_min_score: f64,
    /// Isolation Forest: `"deviations"` (robust z-scores, default) or `"levels"`
    /// (the raw features, as the legacy did).
    pub forest_input: ForestInput,
    /// Streaming: samples in each feature's rolling median/MAD window.
    pub z_window: usize,
    /// Streaming: samples a feature needs before it can flag.
    pub z_warmup: usize,
    /// Streaming: robust z-score needed to flag.
    pub z_threshold: f64,
    /// Streaming: smallest CPU change from the median that can flag, in points.
    pub min_change_cpu: f64,
    /// Streaming: smallest memory change from the median that can flag, in points.
    pub min_change_memory: f64,
    /// Streaming: smallest disk read or write rate change that can flag, bytes/s.
    pub min_change_disk: f64,
    /// Streaming: smallest network send or receive rate change that can flag, bytes/s.
    pub min_change_network: f64,
    /// Streaming: smallest change of a pressure stall feature (CPU, memory or
    /// I/O `some` avg10) that can flag, in points. Only machines that send PSI.
    pub min_change_pressure: f64,
    /// Streaming: smallest change of the busiest disk's utilisation that can
    /// flag, in points. Only machines that send per-disk details.
    pub min_change_disk_utilization: f64,
    /// Rates are compared as `ln(rate + rate_log_offset)`, bytes/s.
    pub rate_log_offset: f64,
    /// Streaming: consecutive samples of the sustained-shift test (0 disables it).
    pub sustained_samples: usize,
    /// Streaming: robust z each of those samples needs (with the minimum change).
    pub sustained_z: f64,
    /// Streaming: flag drops as well as rises (default; `false`: only rises).
    pub two_sided: bool,
    /// Memory ramp test: samples in the window (0 disables it).
    pub trend_window: usize,
    /// Memory ramp test: rise over the window that flags, in points.
    pub trend_min_rise: f64,
    /// A step longer than this many usual intervals is a gap (no rates for it).
    pub max_gap_factor: f64,
    /// Seed of the forests (mixed with each machine id): same input, same output.
    pub seed: u64,
    /// `"low"`, `"normal"` (the calibrated default) or `"high"`: multiplies every
    /// test's limits (z thresholds, minimum changes, the ramp's rise) by 1.4, 1
    /// or 0.75.
    pub sensitivity: Sensitivity,
    /// Streaming: after this many consecutive flagged samples of a feature its
    /// baseline moves to the new level (0 disables it): a level shift is flagged
    /// at its onset, then learned.
    pub relearn_after: usize,
    /// Isolation Forest: it flags only when at least two features also deviate
    /// from their baselines by this robust z (or more) in the anomalous direction;
    /// its score alone is never evidence enough.
    pub forest_corroboration_z: f64,
    /// Streaming: keep a daily profile per feature (24 hourly levels); a value
    /// usual at this hour of the day is not a deviation.
    pub daily_profile: bool,
    /// Streaming: raise the z limits by how heavy the series' own tail of robust
    /// z-scores is compared with a Gaussian's (a streaming 99th percentile).
    pub calibrate_tails: bool,
    /// Streaming: the new-extreme test's memory, a time constant in seconds
    /// (0 disables the test): a value beyond the range the feature reached
    /// recently (the range decays towards the baseline at this pace) is flagged.
    pub extreme_horizon_secs: f64,
    /// Streaming: how far beyond that range, as a share of its width, flags
    /// (with the minimum change from the baseline).
    pub extreme_margin: f64,
    /// Streaming: the time-of-day test (0 disables it) flags when the level of
    /// the last hour is this many usual spreads away from the usual level at
    /// this hour of the day (learned over days; with the minimum change), once
    /// per excursion: a busy hour that is usually quiet, a quiet day that is
    /// usually busy.
    pub seasonal_limit: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let s = StreamingParams::default();
        DetectorConfig {
            enabled: true,
            window: 1024,
            retrain_every: 256,
            min_history: 256,
            trees: 100,
            sample_size: 256,
            contamination: Contamination::Fraction(0.002),
            forest_min_score: 0.6,
            forest_input: ForestInput::default(),
            z_window: s.window,
            z_warmup: s.warmup,
            z_threshold: s.z_threshold,
            min_change_cpu: s.min_change[0],
            min_change_memory: s.min_change[1],
            min_change_disk: s.min_change[2],
            min_change_network: s.min_change[4],
            min_change_pressure: s.min_change[super::features::PRESSURE_CPU],
            min_change_disk_utilization: s.min_change[super::features::DISK_UTILIZATION],
            rate_log_offset: s.rate_offset,
            two_sided: true,
            sustained_samples: s.sustained_samples,
            sustained_z: s.sustained_z,
            trend_window: s.trend_window,
            trend_min_rise: s.trend_min_rise,
            max_gap_factor: super::features::DEFAULT_MAX_GAP_FACTOR,
            seed: 0,
            sensitivity: Sensitivity::Normal,
            relearn_after: s.relearn_after,
            forest_corroboration_z: 3.0,
            daily_profile: s.daily_profile,
            calibrate_tails: s.calibrate_tails,
            extreme_horizon_secs: s.extreme_horizon,
            extreme_margin: s.extreme_margin,
            seasonal_limit: s.seasonal_limit,
        }
    }
}

impl DetectorConfig {
    /// The streaming detector's parameters (limits scaled by the sensitivity).
    pub fn streaming_params(&self) -> StreamingParams {
        let k = self.sensitivity.factor();
        StreamingParams {
            window: self.z_window,
            warmup: self.z_warmup,
            z_threshold: self.z_threshold * k,
            min_change: [
                self.min_change_cpu * k,
                self.min_change_memory * k,
                self.min_change_disk * k,
                self.min_change_disk * k,
                self.min_change_network * k,
                self.min_change_network * k,
                self.min_change_pressure * k,
                self.min_change_pressure * k,
                self.min_change_pressure * k,
                self.min_change_disk_utilization * k,
            ],
            rate_offset: self.rate_log_offset,
            two_sided: self.two_sided,
            sustained_samples: self.sustained_samples,
            sustained_z: self.sustained_z * k,
            trend_window: self.trend_window,
            trend_min_rise: self.trend_min_rise * k,
            relearn_after: self.relearn_after,
            daily_profile: self.daily_profile,
            calibrate_tails: self.calibrate_tails,
            extreme_horizon: self.extreme_horizon_secs,
            extreme_margin: self.extreme_margin * k,
            seasonal_limit: self.seasonal_limit * k,
            ..StreamingParams::default()
        }
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::Config(format!("anomaly.{m}")));
        if !(1..=1000).contains(&self.trees) {
            return bad(format!("trees must be in 1..=1000, not {}", self.trees));
        }
        if !(2..=super::isolation_forest::MAX_SAMPLE_SIZE).contains(&self.sample_size) {
            return bad(format!(
                "sample_size must be in 2..={}, not {}",
                super::isolation_forest::MAX_SAMPLE_SIZE,
                self.sample_size
            ));
        }
        if self.window < 2 || self.window > 1 << 20 {
            return bad(format!(
                "window must be in 2..=1048576, not {}",
                self.window
            ));
        }
        if self.min_history < 2 || self.min_history > self.window {
            return bad(format!(
                "min_history must be in 2..=window ({}), not {}",
                self.window, self.min_history
            ));
        }
        if self.retrain_every == 0 {
            return bad("retrain_every must be at least 1".into());
        }
        if self.z_window < 3 || self.z_window > 100_000 {
            return bad(format!(
                "z_window must be in 3..=100000, not {}",
                self.z_window
            ));
        }
        if self.z_warmup < 3 || self.z_warmup > self.z_window {
            return bad(format!(
                "z_warmup must be in 3..=z_window ({}), not {}",
                self.z_window, self.z_warmup
            ));
        }
        if self.sustained_samples > 1000 {
            return bad(format!(
                "sustained_samples must be in 0..=1000, not {}",
                self.sustained_samples
            ));
        }
        if self.trend_window != 0 && !(4..=100_000).contains(&self.trend_window) {
            return bad(format!(
                "trend_window must be 0 (off) or in 4..=100000, not {}",
                self.trend_window
            ));
        }
        for (name, v) in [
            ("z_threshold", self.z_threshold),
            ("sustained_z", self.sustained_z),
            ("min_change_cpu", self.min_change_cpu),
            ("min_change_memory", self.min_change_memory),
            ("min_change_disk", self.min_change_disk),
            ("min_change_network", self.min_change_network),
            ("min_change_pressure", self.min_change_pressure),
            (
                "min_change_disk_utilization",
                self.min_change_disk_utilization,
            ),
            ("rate_log_offset", self.rate_log_offset),
            ("trend_min_rise", self.trend_min_rise),
            ("forest_corroboration_z", self.forest_corroboration_z),
            ("extreme_margin", self.extreme_margin),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} must be a positive number, not {v}"));
            }
        }
        if !(self.forest_min_score.is_finite() && (0.0..1.0).contains(&self.forest_min_score)) {
            return bad(format!(
                "forest_min_score must be in [0, 1), not {}",
                self.forest_min_score
            ));
        }
        if !(self.extreme_horizon_secs.is_finite() && self.extreme_horizon_secs >= 0.0) {
            return bad(format!(
                "extreme_horizon_secs must be 0 (off) or a positive number of seconds, not {}",
                self.extreme_horizon_secs
            ));
        }
        if !(self.seasonal_limit.is_finite() && self.seasonal_limit >= 0.0) {
            return bad(format!(
                "seasonal_limit must be 0 (off) or a positive number, not {}",
                self.seasonal_limit
            ));
        }
        if self.relearn_after > 1000 {
            return bad(format!(
                "relearn_after must be in 0..=1000, not {}",
                self.relearn_after
            ));
        }
        if !(self.max_gap_factor.is_finite() && self.max_gap_factor >= 1.5) {
            return bad(format!(
                "max_gap_factor must be at least 1.5, not {}",
                self.max_gap_factor
            ));
        }
        Ok(())
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyScore {
    /// The machine.
    pub machine_id: String,
    /// The snapshot's timestamp, seconds since the epoch.
    pub timestamp: f64,
    /// Combined score in [0, 1): `1 - 2^(-r)`, `r` the largest ratio of a test to
    /// its limit. 0.5 is the decision boundary; higher is more anomalous.
    pub score: f64,
    /// True when any test flagged the sample (`score >= 0.5`).
    pub anomaly: bool,
    /// Why, one line per test that flagged (empty for a normal sample).
    pub reasons: Vec<String>,
    /// The raw Isolation Forest score `2^(-E[h]/c(ψ))`, when the forest was
    /// consulted: a forest exists, the sample has all six features, and (with
    /// `forest_input = "deviations"`) two features deviate by the corroboration z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forest_score: Option<f64>,
}

/// Which test flagged a sample, for [`AnomalyDetector::observe_detailed`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Verdict {
    /// The streaming detector's outcome.
    pub streaming: StreamingOutcome,
    /// The forest's score and threshold, when it scored the sample.
    pub forest: Option<(f64, f64)>,
    /// True when the forest's score was at or above its threshold and
    /// corroborated by deviating features (so the forest flagged).
    pub forest_agreed: bool,
}

impl Verdict {
    /// True when the streaming detector (spike or ramp) flagged.
    pub fn streaming_flagged(&self) -> bool {
        self.streaming.is_anomaly()
    }

    /// True when the forest flagged.
    pub fn forest_flagged(&self) -> bool {
        self.forest_agreed
    }
}

/// One machine's detector state.
#[derive(Debug, Clone)]
pub struct MachineState {
    extractor: FeatureExtractor,
    streaming: StreamingDetector,
    /// Rolling window of forest inputs (a ring once full).
    history: Vec<[f32; CORE_FEATURES]>,
    next_slot: usize,
    forest: Option<IsolationForest>,
    since_train: usize,
    trains: u64,
    seed: u64,
    last_ts: Option<f64>,
}

impl MachineState {
    fn new(cfg: &DetectorConfig, machine_id: &str) -> Self {
        let seed = cfg.seed ^ fnv1a(machine_id.as_bytes());
        MachineState {
            extractor: FeatureExtractor::new(cfg.max_gap_factor),
            streaming: StreamingDetector::new(cfg.streaming_params()),
            // Grown as rows arrive, up to `window` (issue 11: preallocating it
            // cost 24 KiB for every machine id ever seen).
            history: Vec::new(),
            next_slot: 0,
            forest: None,
            since_train: 0,
            trains: 0,
            seed,
            last_ts: None,
        }
    }

    /// The number of forests trained so far.
    pub fn trains(&self) -> u64 {
        self.trains
    }

    /// The current forest, if one has been trained.
    pub fn forest(&self) -> Option<&IsolationForest> {
        self.forest.as_ref()
    }

    /// The feature extractor (its skipped-step counters).
    pub fn extractor(&self) -> &FeatureExtractor {
        &self.extractor
    }

    /// Roughly the heap this state holds, bytes (the forest excluded): what
    /// lazy sizing keeps small for machines seen only a few times.
    pub fn heap_bytes(&self) -> usize {
        self.history.capacity() * std::mem::size_of::<[f32; CORE_FEATURES]>()
            + self.streaming.heap_bytes()
    }
}

/// Anomaly detection for many machines, interleaved in any order.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    config: DetectorConfig,
    machines: HashMap<String, MachineState>,
}

impl AnomalyDetector {
    /// A detector with `config` (checked with [`DetectorConfig::check`]).
    pub fn new(config: DetectorConfig) -> Result<Self, CoreError> {
        config.check()?;
        Ok(AnomalyDetector {
            config,
            machines: HashMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The number of machines with state.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    /// One machine's state, if it has been seen.
    pub fn machine(&self, machine_id: &str) -> Option<&MachineState> {
        self.machines.get(machine_id)
    }

    /// Drops a retired machine's state; true if it existed.
    pub fn forget(&mut self, machine_id: &str) -> bool {
        self.machines.remove(machine_id).is_some()
    }

    /// Scores `snapshot`. `None` when the sample cannot be scored and was ignored:
    /// its timestamp is not finite or not later than the machine's previous one
    /// (a duplicate or out-of-order delivery).
    pub fn observe(&mut self, snapshot: &Snapshot) -> Option<AnomalyScore> {
        self.observe_detailed(snapshot).map(|(score, _)| score)
    }

    /// [`Self::observe`] plus which test said what.
    pub fn observe_detailed(&mut self, snapshot: &Snapshot) -> Option<(AnomalyScore, Verdict)> {
        let ts = snapshot.timestamp;
        if !ts.is_finite() {
            return None;
        }
        let cfg = &self.config;
        let state = match self.machines.get_mut(snapshot.machine_id.as_str()) {
            Some(s) => s,
            None => self
                .machines
                .entry(snapshot.machine_id.clone())
                .or_insert_with(|| MachineState::new(cfg, &snapshot.machine_id)),
        };
        if state.last_ts.is_some_and(|last| ts <= last) {
            return None;
        }
        state.last_ts = Some(ts);
        let features = state.extractor.push(snapshot);
        let streaming = state.streaming.observe(&features);
        let mut verdict = Verdict {
            streaming,
            forest: None,
            forest_agreed: false,
        };
        let row = match cfg.forest_input {
            ForestInput::Levels => features.complete().map(|values| {
                let mut row = [0f32; CORE_FEATURES];
                for (f, (r, v)) in row.iter_mut().zip(values).enumerate() {
                    *r = if is_rate(f) {
                        (v.max(0.0) + cfg.rate_log_offset).ln() as f32
                    } else {
                        v as f32
                    };
                }
                row
            }),
            ForestInput::Deviations => {
                let mut row = [0f32; CORE_FEATURES];
                let mut complete = true;
                for (r, d) in row
                    .iter_mut()
                    .zip(&verdict.streaming.deviations[..CORE_FEATURES])
                {
                    match d {
                        Some(d) => *r = d.z.clamp(-Z_CLIP, Z_CLIP) as f32,
                        None => complete = false,
                    }
                }
                complete.then_some(row)
            }
        };
        // On deviations the forest can only flag with two features off by the
        // corroboration z (below): without them it is not consulted at all,
        // which saves scoring a cold forest on almost every sample.
        let limit = cfg.forest_corroboration_z * cfg.sensitivity.factor();
        let corroborated = cfg.forest_input == ForestInput::Levels
            || verdict.streaming.deviations[..CORE_FEATURES]
                .iter()
                .flatten()
                .filter(|d| {
                    let z = if cfg.two_sided { d.z.abs() } else { d.z };
                    z >= limit
                })
                .count()
                >= 2;
        if let Some(row) = row {
            if let Some(forest) = state.forest.as_ref().filter(|_| corroborated) {
                verdict.forest = Some((forest.score_f32(&row), forest.threshold()));
            }
            if state.history.len() < cfg.window {
                crate::streaming::reserve_one_vec(&mut state.history, cfg.window);
                state.history.push(row);
            } else {
                state.history[state.next_slot] = row;
                state.next_slot = (state.next_slot + 1) % cfg.window;
            }
            state.since_train += 1;
            if state.history.len() >= cfg.min_history
                && (state.forest.is_none() || state.since_train >= cfg.retrain_every)
            {
                state.forest = Some(train(cfg, state));
                // After the first forest, start the retrain clock at a
                // machine-specific offset: machines that start together then do
                // not all retrain on the same sample.
                state.since_train = if state.trains == 0 {
                    (state.seed % cfg.retrain_every.max(1) as u64) as usize
                } else {
                    0
                };
                state.trains += 1;
            }
        }
        let mut ratio = verdict.streaming.max_ratio();
        let mut reasons = Vec::new();
        for d in verdict.streaming.flagged() {
            reasons.push(d.describe());
        }
        if let Some(t) = verdict.streaming.trend.filter(|t| t.ratio >= 1.0) {
            reasons.push(t.describe(cfg.trend_window));
        }
        if let Some((s, t)) = verdict.forest {
            // The forest's score is evidence only with deviations to show for it:
            // at least two features off their baselines by the corroboration z.
            let limit = cfg.forest_corroboration_z * cfg.sensitivity.factor();
            let mut off: Vec<&Deviation> = verdict.streaming.deviations[..CORE_FEATURES]
                .iter()
                .flatten()
                .filter(|d| {
                    let z = if cfg.two_sided { d.z.abs() } else { d.z };
                    z >= limit
                })
                .collect();
            if s >= t && off.len() >= 2 {
                ratio = ratio.max(s / t.max(f64::MIN_POSITIVE));
                off.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
                let what: Vec<String> = off
                    .iter()
                    .take(3)
                    .map(|d| format!("{} robust z = {:.1}", FEATURE_NAMES[d.feature], d.z))
                    .collect();
                reasons.push(format!(
                    "isolation forest score {s:.3} at or above its threshold {t:.3}: {} features deviate together ({})",
                    off.len(),
                    what.join(", ")
                ));
                verdict.forest_agreed = true;
            } else {
                ratio = ratio.max((s / t.max(f64::MIN_POSITIVE)).min(0.999));
            }
        }
        let anomaly = !reasons.is_empty();
        let score = if anomaly {
            (1.0 - (-ratio).exp2()).max(0.5)
        } else {
            (1.0 - (-ratio).exp2()).min(0.499_999)
        };
        Some((
            AnomalyScore {
                machine_id: snapshot.machine_id.clone(),
                timestamp: ts,
                score,
                anomaly,
                reasons,
                forest_score: verdict.forest.map(|(s, _)| s),
            },
            verdict,
        ))
    }
}

fn train(cfg: &DetectorConfig, state: &MachineState) -> IsolationForest {
    let data = state.history.as_flattened();
    let params = ForestParams {
        trees: cfg.trees,
        sample_size: cfg.sample_size,
        contamination: Contamination::Auto,
        seed: splitmix(state.seed.wrapping_add(state.trains)),
    };
    let mut forest = IsolationForest::fit_f32(data, CORE_FEATURES, &params);
    let mut threshold = cfg.forest_min_score.max(0.5);
    if let Contamination::Fraction(f) = cfg.contamination {
        // The quantile of the window's scores, on at most 256 rows spread over
        // the window: scoring all of them would cost more than the fit.
        let stride = state.history.len().div_ceil(256).max(1);
        let mut scores: Vec<f64> = state
            .history
            .iter()
            .step_by(stride)
            .map(|r| forest.score_f32(r))
            .collect();
        threshold = threshold.max(quantile(&mut scores, 1.0 - f));
    }
    forest.set_threshold(threshold);
    forest
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn splitmix(x: u64) -> u64 {
    sysmon_core::synth::Rng::new(x).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::snapshot::{DiskIo, NetworkIo};
    use sysmon_core::synth::{Rng, SyntheticMachine};

    const T0: f64 = 1_764_086_400.0;

    fn gauss(r: &mut Rng) -> f64 {
        let u1 = r.unit().max(1e-300);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * r.unit()).cos()
    }

    /// A simple machine with independent Gaussian features; `bump` (in standard
    /// deviations, per feature) is added to sample `at`.
    struct Sim {
        rng: Rng,
        counters: [u64; 4],
        t: f64,
    }

    impl Sim {
        fn new(seed: u64) -> Self {
            Sim {
                rng: Rng::new(seed),
                counters: [1 << 30; 4],
                t: T0,
            }
        }
        fn next(&mut self, id: &str, bump: [f64; 6]) -> Snapshot {
            self.t += 1.0;
            let r = &mut self.rng;
            let mut s = Snapshot::new(id, self.t);
            s.cpu_usage = (40.0 + 3.0 * (gauss(r) + bump[0])).clamp(0.0, 100.0);
            s.memory_usage = (50.0 + 1.0 * (gauss(r) + bump[1])).clamp(0.0, 100.0);
            for i in 0..4 {
                // 20 MB/s, 10 % multiplicative noise.
                let rate = 20e6 * (0.1 * (gauss(r) + bump[2 + i])).exp();
                self.counters[i] += rate as u64;
            }
            s.disk_io = DiskIo {
                read: self.counters[0],
                write: self.counters[1],
            };
            s.network_io = NetworkIo {
                sent: self.counters[2],
                recv: self.counters[3],
            };
            s
        }
    }

    #[test]
    fn state_grows_with_the_samples_a_machine_sent_and_stops_at_its_windows() {
        let cfg = DetectorConfig::default();
        let mut d = AnomalyDetector::new(cfg.clone()).unwrap();
        let mut m = SyntheticMachine::new("brief", 7);
        for i in 0..2 {
            d.observe(&m.next_snapshot(T0 + i as f64, 0));
        }
        let brief = d.machine("brief").unwrap().heap_bytes();
        // Two samples: a few small buffers and the daily profiles, not the
        // windows (a 1024-row forest window alone is 24 KiB).
        assert!(brief < 2048, "{brief} bytes for a machine seen twice");
        let mut m = SyntheticMachine::new("steady", 8);
        let mut sizes = Vec::new();
        for i in 0..3000 {
            d.observe(&m.next_snapshot(T0 + i as f64, 0));
            if i == 1499 || i == 2999 {
                sizes.push(d.machine("steady").unwrap().heap_bytes());
            }
        }
        // Full windows: the forest's 1024 rows, six 64-value median windows
        // (ring and sorted copy), the 120-sample trend, the sustained test.
        let full = cfg.window * 24 + 6 * 2 * cfg.z_window * 8 + cfg.trend_window * 8;
        assert!(sizes[0] >= full, "{sizes:?} < {full}");
        assert!(
            sizes[0] <= full + 2048,
            "no round-up beyond the windows: {sizes:?}"
        );
        assert_eq!(sizes[0], sizes[1], "no growth once the windows are full");
        assert!(d.forget("brief"));
        assert_eq!(d.machine_count(), 1);
    }

    #[test]
    fn a_cpu_spike_is_flagged_on_its_first_sample_with_a_reason() {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut m = SyntheticMachine::new("web-01", 7);
        let mut flags = 0;
        for i in 0..600 {
            let s = m.next_snapshot(T0 + i as f64, 0);
            let a = d.observe(&s).unwrap();
            assert!((0.0..1.0).contains(&a.score));
            assert_eq!(a.anomaly, a.score >= 0.5, "{a:?}");
            flags += a.anomaly as usize;
        }
        assert!(flags <= 6, "{flags} flags on 600 normal samples");
        let mut s = m.next_snapshot(T0 + 600.0, 0);
        s.cpu_usage = 99.0;
        let a = d.observe(&s).unwrap();
        assert!(a.anomaly, "{a:?}");
        assert!(a.score >= 0.5);
        assert!(
            a.reasons.iter().any(|r| r.starts_with("cpu_usage 99.0 %")),
            "{a:?}"
        );
        assert_eq!(a.machine_id, "web-01");
        assert_eq!(a.timestamp, T0 + 600.0);
    }

    /// A quiet machine (`Sim`) that sends host details: CPU pressure around
    /// `psi`, the other pressures and the busiest disk quiet.
    fn with_pressure(mut s: Snapshot, psi: f64, r: &mut Rng) -> Snapshot {
        sysmon_core::synth::fill_host_details(&mut s);
        let p = s.pressure.as_mut().unwrap();
        p.cpu.as_mut().unwrap().some.avg10 = (psi + 0.2 * r.unit()).max(0.0);
        p.memory.as_mut().unwrap().some.avg10 = 0.1 * r.unit();
        p.io.as_mut().unwrap().some.avg10 = 0.3 + 0.1 * r.unit();
        s.disks[0].utilization_percent = Some(3.0 + r.unit());
        s
    }

    #[test]
    fn a_pressure_spike_on_a_quiet_machine_is_flagged_naming_the_metric() {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut sim = Sim::new(21);
        let mut r = Rng::new(22);
        let mut flags = 0;
        for _ in 0..600 {
            let s = with_pressure(sim.next("db-01", [0.0; 6]), 0.0, &mut r);
            flags += d.observe(&s).unwrap().anomaly as usize;
        }
        assert!(flags <= 6, "{flags} flags on 600 quiet samples");
        assert_eq!(
            d.machine("db-01").unwrap().streaming.tracked(),
            crate::features::FEATURE_COUNT,
            "host-detail state once the machine sends them"
        );
        // CPU, memory, disk and network stay where they were; tasks now wait
        // for a CPU 60 % of the time.
        let s = with_pressure(sim.next("db-01", [0.0; 6]), 60.0, &mut r);
        let (a, v) = d.observe_detailed(&s).unwrap();
        assert!(a.anomaly, "{a:?}");
        let flagged: Vec<usize> = v.streaming.flagged().map(|d| d.feature).collect();
        assert_eq!(flagged, vec![crate::features::PRESSURE_CPU], "{a:?}");
        assert!(
            a.reasons
                .iter()
                .any(|r| r.starts_with("pressure_cpu_some_avg10 60.") && r.contains("%")),
            "{a:?}"
        );
        assert!(!v.forest_flagged(), "the forest does not see host details");
    }

    #[test]
    fn a_machine_without_host_details_keeps_no_state_for_them_and_scores_the_same() {
        // The same samples with and without host details that never move:
        // identical verdicts, and no state for features never sent.
        let cfg = DetectorConfig {
            min_history: 100,
            retrain_every: 50,
            ..DetectorConfig::default()
        };
        let mut sim = Sim::new(31);
        let plain: Vec<Snapshot> = (0..400).map(|_| sim.next("m", [0.0; 6])).collect();
        let mut a = AnomalyDetector::new(cfg.clone()).unwrap();
        let got: Vec<AnomalyScore> = plain.iter().map(|s| a.observe(s).unwrap()).collect();
        assert_eq!(
            a.machine("m").unwrap().streaming.tracked(),
            crate::features::CORE_FEATURES
        );
        let mut b = AnomalyDetector::new(cfg).unwrap();
        let mut r = Rng::new(1);
        let with: Vec<AnomalyScore> = plain
            .iter()
            .map(|s| {
                let mut s = with_pressure(s.clone(), 0.0, &mut r);
                // Constant host details: never a deviation.
                let p = s.pressure.as_mut().unwrap();
                p.cpu.as_mut().unwrap().some.avg10 = 0.0;
                p.memory.as_mut().unwrap().some.avg10 = 0.0;
                p.io.as_mut().unwrap().some.avg10 = 0.0;
                s.disks[0].utilization_percent = Some(3.0);
                b.observe(&s).unwrap()
            })
            .collect();
        assert_eq!(got, with);
    }

    #[test]
    fn the_forest_flags_what_no_single_feature_shows() {
        // Every feature 3.5 standard deviations up at once: below the spike test
        // (z >= 5) on each feature, far out for the forest in six dimensions.
        let cfg = DetectorConfig::default();
        let mut d = AnomalyDetector::new(cfg.clone()).unwrap();
        let mut sim = Sim::new(3);
        for _ in 0..1500 {
            d.observe(&sim.next("m", [0.0; 6])).unwrap();
        }
        let (a, v) = d.observe_detailed(&sim.next("m", [3.5; 6])).unwrap();
        assert!(!v.streaming_flagged(), "{v:?}");
        assert!(v.forest_flagged(), "{v:?}");
        assert!(a.anomaly);
        assert!(
            a.reasons.iter().any(|r| r.contains("isolation forest")),
            "{a:?}"
        );
        // The same machine a sample later, back to normal, is not flagged.
        let (a, _) = d.observe_detailed(&sim.next("m", [0.0; 6])).unwrap();
        assert!(!a.anomaly, "{a:?}");
    }

    #[test]
    fn the_forest_is_trained_after_min_history_and_retrained_every_k() {
        let cfg = DetectorConfig {
            window: 512,
            min_history: 200,
            retrain_every: 100,
            trees: 20,
            ..DetectorConfig::default()
        };
        let mut d = AnomalyDetector::new(cfg.clone()).unwrap();
        let mut sim = Sim::new(4);
        // The first sample has no rates and the streaming windows need their
        // warm-up before deviations (the forest's input) exist.
        let mut first_forest = None;
        for i in 0..1000 {
            let a = d.observe(&sim.next("m", [0.0; 6])).unwrap();
            let _ = a;
            if d.machine("m").is_some_and(|m| m.trains() > 0) && first_forest.is_none() {
                first_forest = Some(i);
            }
        }
        let first = first_forest.unwrap();
        assert!((200..=200 + cfg.z_warmup + 2).contains(&first), "{first}");
        let st = d.machine("m").unwrap();
        let f = st.forest().unwrap();
        assert_eq!(f.trees(), 20);
        assert_eq!(f.sample_size(), 256);
        // Vectors from about sample 17 on: first forest at ~217, then every 100
        // (the first retrain comes up to 100 samples early: the stagger).
        assert!((8..=10).contains(&st.trains()), "{}", st.trains());
    }

    #[test]
    fn machines_that_start_together_do_not_retrain_together() {
        let cfg = DetectorConfig {
            min_history: 100,
            retrain_every: 100,
            trees: 10,
            ..DetectorConfig::default()
        };
        let mut d = AnomalyDetector::new(cfg).unwrap();
        let mut sims: Vec<Sim> = (0..20).map(|i| Sim::new(100 + i)).collect();
        let mut retrain_steps = std::collections::BTreeSet::new();
        for step in 0..400 {
            for (i, sim) in sims.iter_mut().enumerate() {
                let id = format!("m{i}");
                let before = d.machine(&id).map_or(0, |m| m.trains());
                d.observe(&sim.next(&id, [0.0; 6])).unwrap();
                if d.machine(&id).unwrap().trains() > before && before >= 1 {
                    retrain_steps.insert(step);
                }
            }
        }
        // Twenty machines retrain on many different steps, not on one.
        assert!(retrain_steps.len() > 20, "{retrain_steps:?}");
    }

    #[test]
    fn deterministic_and_machines_do_not_interfere() {
        let cfg = DetectorConfig {
            min_history: 100,
            retrain_every: 50,
            ..DetectorConfig::default()
        };
        let (mut a, mut b) = (Sim::new(5), Sim::new(6));
        let sa: Vec<Snapshot> = (0..400).map(|_| a.next("a", [0.0; 6])).collect();
        let sb: Vec<Snapshot> = (0..400).map(|_| b.next("b", [0.0; 6])).collect();
        let mut alone = AnomalyDetector::new(cfg.clone()).unwrap();
        let only_a: Vec<AnomalyScore> = sa.iter().map(|s| alone.observe(s).unwrap()).collect();
        let mut mixed = AnomalyDetector::new(cfg.clone()).unwrap();
        let mut interleaved_a = Vec::new();
        for (x, y) in sa.iter().zip(&sb) {
            interleaved_a.push(mixed.observe(x).unwrap());
            mixed.observe(y).unwrap();
        }
        assert_eq!(only_a, interleaved_a);
        assert_eq!(mixed.machine_count(), 2);
        // Same seed, same scores; another seed, other forests.
        let mut again = AnomalyDetector::new(cfg.clone()).unwrap();
        let replay: Vec<AnomalyScore> = sa.iter().map(|s| again.observe(s).unwrap()).collect();
        assert_eq!(only_a, replay);
        let mut other = AnomalyDetector::new(DetectorConfig { seed: 99, ..cfg }).unwrap();
        for s in &sa {
            other.observe(s);
        }
        let probe = [1.0f32, -1.0, 0.5, 2.0, 0.0, -0.5];
        let score =
            |d: &AnomalyDetector| d.machine("a").unwrap().forest().unwrap().score_f32(&probe);
        assert_ne!(score(&alone), score(&other));
        assert_eq!(score(&alone), score(&again));
        assert!(mixed.forget("a"));
        assert!(!mixed.forget("a"));
        assert_eq!(mixed.machine_count(), 1);
    }

    #[test]
    fn duplicates_and_out_of_order_samples_are_refused() {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut sim = Sim::new(7);
        let s1 = sim.next("m", [0.0; 6]);
        let s2 = sim.next("m", [0.0; 6]);
        assert!(d.observe(&s1).is_some());
        assert!(d.observe(&s2).is_some());
        assert!(d.observe(&s2).is_none(), "a redelivered duplicate");
        assert!(d.observe(&s1).is_none(), "an older sample");
        let mut nan = s2.clone();
        nan.timestamp = f64::NAN;
        assert!(d.observe(&nan).is_none());
    }

    #[test]
    fn a_reboot_is_not_an_anomaly() {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut sim = Sim::new(8);
        for _ in 0..400 {
            d.observe(&sim.next("m", [0.0; 6])).unwrap();
        }
        // Counters restart from zero after a 40 s outage.
        sim.counters = [0; 4];
        sim.t += 40.0;
        for i in 0..20 {
            let a = d.observe(&sim.next("m", [0.0; 6])).unwrap();
            assert!(!a.anomaly, "sample {i} after the reboot: {a:?}");
        }
        let skipped = d.machine("m").unwrap().extractor().skipped();
        assert_eq!(skipped.gaps + skipped.counter_resets, 1, "{skipped:?}");
    }

    #[test]
    fn config_checks_and_parses() {
        assert!(DetectorConfig::default().check().is_ok());
        let bad = [
            DetectorConfig {
                trees: 0,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                sample_size: 1,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                min_history: 5000,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                retrain_every: 0,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                z_threshold: f64::NAN,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                forest_min_score: 1.5,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                z_warmup: 1000,
                ..DetectorConfig::default()
            },
        ];
        for c in bad {
            let e = AnomalyDetector::new(c).unwrap_err();
            assert!(e.to_string().contains("anomaly."), "{e}");
        }
        let c: DetectorConfig =
            toml::from_str("contamination = \"auto\"\nforest_input = \"levels\"\ntrees = 150")
                .unwrap();
        assert_eq!(c.contamination, Contamination::Auto);
        assert_eq!(c.forest_input, ForestInput::Levels);
        assert_eq!(c.trees, 150);
        assert_eq!(c.window, 1024);
        let c: DetectorConfig = toml::from_str("contamination = 0.01").unwrap();
        assert_eq!(c.contamination, Contamination::Fraction(0.01));
        assert!(toml::from_str::<DetectorConfig>("contamination = 0.9").is_err());
        assert!(toml::from_str::<DetectorConfig>("tress = 10").is_err());
    }

    /// Flags of a CPU-only series sampled every `interval` seconds.
    fn cpu_flags(
        interval: f64,
        cpu: impl Fn(usize, &mut Rng) -> f64,
        n: usize,
    ) -> Vec<AnomalyScore> {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut r = Rng::new(11);
        (0..n)
            .map(|i| {
                let mut s = Snapshot::new("m", T0 + i as f64 * interval);
                s.cpu_usage = cpu(i, &mut r).clamp(0.0, 100.0);
                s.memory_usage = 50.0;
                d.observe(&s).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_level_shift_is_flagged_at_its_onset_then_learned_at_any_interval() {
        for interval in [1.0, 10.0, 60.0, 300.0] {
            let a = cpu_flags(
                interval,
                |i, r| if i < 800 { 30.0 } else { 75.0 } + 2.0 * r.normal(),
                1600,
            );
            let before = a[..800].iter().filter(|a| a.anomaly).count();
            let flagged: Vec<usize> = (800..1600).filter(|i| a[*i].anomaly).collect();
            assert!(
                before <= 2,
                "interval {interval}: {before} flags before the shift"
            );
            assert_eq!(
                flagged.first(),
                Some(&800),
                "interval {interval}: {flagged:?}"
            );
            assert!(flagged.len() <= 3, "interval {interval}: {flagged:?}");
            let r = &a[800].reasons[0];
            assert!(
                r.starts_with("cpu_usage") && r.contains("expected") && r.contains("points"),
                "{r}"
            );
        }
    }

    #[test]
    fn a_flat_series_is_not_flagged_on_tiny_wiggles() {
        for interval in [1.0, 300.0] {
            let a = cpu_flags(interval, |i, _| if i % 97 == 0 { 2.3 } else { 2.0 }, 3000);
            assert!(a.iter().all(|a| !a.anomaly), "interval {interval}");
        }
    }

    #[test]
    fn heavy_tailed_noise_is_calibrated_and_every_flag_shows_a_deviation() {
        // Cauchy-like noise around 30 %: big excursions are normal for this series.
        let a = cpu_flags(
            60.0,
            |_, r| 30.0 + 2.0 * r.normal() / (0.1 + r.normal().abs()),
            5000,
        );
        let flags: Vec<&AnomalyScore> = a[500..].iter().filter(|a| a.anomaly).collect();
        assert!(flags.len() <= 25, "{} flags in 4500 samples", flags.len());
        for f in flags {
            assert!(
                !f.reasons
                    .iter()
                    .any(|r| r.contains("robust z = 0.0") || r.contains("robust z = -0.0")),
                "{f:?}"
            );
        }
    }

    #[test]
    fn sensitivity_scales_the_limits() {
        let low = DetectorConfig {
            sensitivity: Sensitivity::Low,
            ..DetectorConfig::default()
        };
        let high = DetectorConfig {
            sensitivity: Sensitivity::High,
            ..DetectorConfig::default()
        };
        let normal = DetectorConfig::default().streaming_params();
        assert!(low.streaming_params().z_threshold > normal.z_threshold);
        assert!(high.streaming_params().min_change[0] < normal.min_change[0]);
        let c: DetectorConfig = toml::from_str("sensitivity = \"high\"").unwrap();
        assert_eq!(c.sensitivity, Sensitivity::High);
        assert!(toml::from_str::<DetectorConfig>("sensitivity = \"max\"").is_err());
    }

    #[test]
    fn levels_mode_scores_the_raw_features() {
        let cfg = DetectorConfig {
            forest_input: ForestInput::Levels,
            ..DetectorConfig::default()
        };
        let mut d = AnomalyDetector::new(cfg).unwrap();
        let mut sim = Sim::new(9);
        let mut normal_max: f64 = 0.0;
        for i in 0..600 {
            let a = d.observe(&sim.next("m", [0.0; 6])).unwrap();
            if i > 400 {
                normal_max = normal_max.max(a.forest_score.unwrap());
            }
        }
        let a = d
            .observe(&sim.next("m", [8.0, 8.0, 8.0, 0.0, 0.0, 0.0]))
            .unwrap();
        assert!(
            a.forest_score.unwrap() > normal_max,
            "{a:?} vs {normal_max}"
        );
        assert!(a.anomaly);
    }
}
