//! The fast streaming detector: a robust z-score per feature over a rolling
//! window (median and MAD), plus a trend test for slow ramps (memory leaks).
//!
//! * **Robust z.** For each feature the last `window` values are kept sorted; a
//!   new value `y` scores `z = (y - median) / max(1.4826·MAD, min_scale)` against
//!   the window *before* it is added. Median and MAD ignore up to half the window
//!   being anomalous, so a long event does not hide its own start and a level
//!   shift is absorbed after `window / 2` samples. Byte rates are compared in log
//!   space, `ln(rate + rate_offset)`: their noise is multiplicative, and the
//!   offset makes changes on an idle device (10 KB/s → 300 KB/s) count for little.
//! * **Minimum change.** A deviation also needs an absolute change from the median
//!   of at least `min_change` in the feature's own unit (percentage points, bytes
//!   per second), so a near-constant idle series (CPU 0.5 % → 1.5 %) never alarms.
//! * **Ratio.** Each test yields a ratio `min(z / z_threshold, change / min_change)`:
//!   ≥ 1 means anomalous, and the ratio grades how far past both limits it is.
//! * **Trend.** Over the last `trend_window` values of memory %, the least-squares
//!   slope of each half-window must be positive and large enough that the slower
//!   of the two, over the whole window, rises by `trend_min_rise` points. Requiring
//!   both halves to climb tells a ramp from a one-off step.
//! * **Time of day.** Per feature, the last hour's level against the usual level
//!   at this hour of the day ([`Seasonal`]), in usual spreads and with the minimum
//!   change: flagged once per excursion (see `StreamingParams::seasonal_limit`).

use std::collections::VecDeque;

use super::baseline::{DailyProfile, Envelope, Seasonal, TailQuantile};
use super::features::{is_rate, Features, CORE_FEATURES, FEATURE_COUNT, FEATURE_NAMES, MEMORY};

/// In the sustained-shift test each sample counts for at most this many times
/// the test's limits.
pub const SUSTAINED_CLIP: f64 = 1.5;

/// Median-absolute-deviation to standard-deviation factor for normal data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// The capacity `reserve_one_*` grows a buffer of `len` elements to: double,
/// at least 4, never beyond `limit`.
fn grown(len: usize, limit: usize) -> usize {
    len.saturating_mul(2).max(4).min(limit.max(len + 1))
}

/// Makes room for one more element in a buffer that never holds more than
/// `limit`: the capacity doubles as elements arrive but stops at `limit`
/// (a plain push would round a 300-sample window up to 512). Per-machine
/// state is sized by what the machine sent, so a flood of machines seen once
/// or twice costs little (issue 11).
pub(crate) fn reserve_one_deque<T>(v: &mut VecDeque<T>, limit: usize) {
    if v.len() == v.capacity() {
        v.reserve_exact(grown(v.len(), limit) - v.len());
    }
}

/// [`reserve_one_deque`] for a `Vec`.
pub(crate) fn reserve_one_vec<T>(v: &mut Vec<T>, limit: usize) {
    if v.len() == v.capacity() {
        v.reserve_exact(grown(v.len(), limit) - v.len());
    }
}

/// The rolling median/MAD of one series.
#[derive(Debug, Clone)]
pub struct RollingMedian {
    capacity: usize,
    ring: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl RollingMedian {
    /// A window of the last `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        RollingMedian {
            capacity,
            // Grown as values arrive (see `reserve_one`): a machine seen twice
            // costs a few bytes, not the whole window.
            ring: VecDeque::new(),
            sorted: Vec::new(),
        }
    }

    /// The heap the window holds, bytes.
    pub fn heap_bytes(&self) -> usize {
        (self.ring.capacity() + self.sorted.capacity()) * std::mem::size_of::<f64>()
    }

    /// How many values the window holds.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Adds `value` (non-finite values are ignored), evicting the oldest beyond capacity.
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.ring.len() == self.capacity {
            if let Some(old) = self.ring.pop_front() {
                let at = self.sorted.partition_point(|v| *v < old);
                if at < self.sorted.len() {
                    self.sorted.remove(at);
                }
            }
        }
        reserve_one_deque(&mut self.ring, self.capacity);
        self.ring.push_back(value);
        reserve_one_vec(&mut self.sorted, self.capacity);
        let at = self.sorted.partition_point(|v| *v < value);
        self.sorted.insert(at, value);
    }

    /// Adds `delta` to every value in the window (order, and so the spread, kept).
    pub fn shift(&mut self, delta: f64) {
        if !delta.is_finite() {
            return;
        }
        for v in self.ring.iter_mut().chain(self.sorted.iter_mut()) {
            *v += delta;
        }
    }

    /// The median of the window.
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        Some(if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2.0
        })
    }

    /// The median absolute deviation from the median.
    pub fn mad(&self) -> Option<f64> {
        let med = self.median()?;
        let s = &self.sorted;
        let n = s.len();
        // Deviations below the median grow leftwards from `l`, above it rightwards
        // from `r`: merge the two sorted runs up to the middle element(s).
        let mut r = s.partition_point(|v| *v < med);
        let mut l = r as isize - 1;
        let (k_lo, k_hi) = ((n - 1) / 2, n / 2);
        let mut lo_val = 0.0;
        for k in 0..=k_hi {
            let dl = (l >= 0).then(|| med - s[l as usize]);
            let dr = (r < n).then(|| s[r] - med);
            let d = match (dl, dr) {
                (Some(a), Some(b)) if a <= b => {
                    l -= 1;
                    a
                }
                (_, Some(b)) => {
                    r += 1;
                    b
                }
                (Some(a), None) => {
                    l -= 1;
                    a
                }
                (None, None) => break,
            };
            if k == k_lo {
                lo_val = d;
            }
            if k == k_hi {
                return Some((lo_val + d) / 2.0);
            }
        }
        Some(lo_val)
    }
}

/// Parameters of the [`StreamingDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamingParams {
    /// Samples in the rolling median/MAD window.
    pub window: usize,
    /// Samples a feature's window must hold before it can flag.
    pub warmup: usize,
    /// |z| needed to flag.
    pub z_threshold: f64,
    /// Minimum change from the median, per feature, in the feature's unit.
    pub min_change: [f64; FEATURE_COUNT],
    /// Smallest scale for percentages, in points (guards against a zero MAD).
    pub min_scale_percent: f64,
    /// Smallest scale for rates, in natural-log units.
    pub min_scale_log: f64,
    /// Offset of the log transform of rates, bytes/s.
    pub rate_offset: f64,
    /// Also flag drops (default: only rises).
    pub two_sided: bool,
    /// Sustained-shift test: over this many consecutive samples (0 disables it)...
    pub sustained_samples: usize,
    /// ...the mean robust z must reach this (and the mean change `min_change`).
    pub sustained_z: f64,
    /// Samples in the memory trend window (0 disables the trend test).
    pub trend_window: usize,
    /// Rise over the trend window, in points, that flags a ramp.
    pub trend_min_rise: f64,
    /// Level-shift re-learning: after this many consecutive flagged samples of a
    /// feature (0 disables it), its baseline moves to the new level (the window
    /// is shifted by the run's mean deviation, keeping its spread), so a new normal
    /// is flagged at its onset and then learned instead of flagged until half the
    /// window has turned over.
    pub relearn_after: usize,
    /// Keep a daily profile per feature: a level usual at this hour of the day
    /// is not a deviation.
    pub daily_profile: bool,
    /// Scale the z limits by how heavy the series' own tail of robust z-scores
    /// is (see [`TailQuantile`]).
    pub calibrate_tails: bool,
    /// New-extreme test: time constant of the envelope, seconds (0 disables it).
    pub extreme_horizon: f64,
    /// New-extreme test: how far beyond the envelope, as a share of its width.
    pub extreme_margin: f64,
    /// Time-of-day test (0 disables it): the level of the last hour, against
    /// the usual level at this hour of the day ([`Seasonal`]), flags at this
    /// many usual spreads (with the minimum change), once per excursion.
    pub seasonal_limit: f64,
}

impl Default for StreamingParams {
    fn default() -> Self {
        StreamingParams {
            window: 64,
            warmup: 16,
            z_threshold: 5.0,
            min_change: [
                10.0, 5.0, 4.0e6, 4.0e6, 4.0e6, 4.0e6, // core
                10.0, 10.0, 10.0, // pressure stall: cpu, memory, io (points)
                20.0, // busiest disk utilisation (points)
            ],
            min_scale_percent: 0.5,
            min_scale_log: 0.05,
            rate_offset: 1.0e6,
            two_sided: false,
            sustained_samples: 3,
            sustained_z: 3.0,
            trend_window: 120,
            trend_min_rise: 3.0,
            relearn_after: 1,
            daily_profile: true,
            calibrate_tails: true,
            extreme_horizon: 86_400.0,
            extreme_margin: 0.1,
            seasonal_limit: 4.0,
        }
    }
}

/// One feature's deviation from its rolling baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deviation {
    /// The feature index (see [`FEATURE_NAMES`]).
    pub feature: usize,
    /// The observed value, in the feature's unit.
    pub value: f64,
    /// The rolling median, in the feature's unit.
    pub baseline: f64,
    /// The robust z-score (in log space for rates).
    pub z: f64,
    /// The larger of the spike ratio `min(|z| / z_threshold, |change| / min_change)`
    /// and the sustained ratio `min(mean |z| / sustained_z, mean |change| / min_change)`
    /// over the last `sustained_samples` (each clipped at [`SUSTAINED_CLIP`] times
    /// its limit): ≥ 1 is anomalous.
    pub ratio: f64,
    /// True when the sustained-shift test gave the ratio.
    pub sustained: bool,
    /// The usual level at this time of day and the last hour's smoothed
    /// deviation from it, when the time-of-day test alone flagged the sample.
    pub seasonal: Option<(f64, f64)>,
    /// The expected range, in the feature's unit: values between these two are
    /// not anomalous (the baseline ± the spike test's limits, the larger of
    /// `z_threshold` robust scales and `min_change`).
    pub expected: (f64, f64),
}

impl Deviation {
    /// A human-readable reason naming the metric, the observed value, the
    /// expected range and the deviation, e.g.
    /// `cpu_usage 95.0 % vs median 31.2 %, expected 11.2..51.2 % (+63.8 points, robust z = 14.1)`.
    pub fn describe(&self) -> String {
        let name = FEATURE_NAMES[self.feature];
        let how = if self.sustained { ", sustained" } else { "" };
        let (lo, hi) = self.expected;
        if let Some((usual, off)) = self.seasonal {
            return if is_rate(self.feature) {
                format!(
                    "{name} {} vs usual {} at this time of day, expected {}..{} (last hour {:+.1}x the usual level)",
                    human_rate(self.value),
                    human_rate(usual),
                    human_rate(lo),
                    human_rate(hi),
                    off
                )
            } else {
                format!(
                    "{name} {:.1} % vs usual {:.1} % at this time of day, expected {:.1}..{:.1} % (last hour {:+.1} points off the usual level)",
                    self.value, usual, lo, hi, off
                )
            };
        }
        if is_rate(self.feature) {
            format!(
                "{name} {} vs median {}, expected {}..{} ({:+.1}x, robust z = {:.1}{how})",
                human_rate(self.value),
                human_rate(self.baseline),
                human_rate(lo),
                human_rate(hi),
                (self.value + 1.0) / (self.baseline + 1.0),
                self.z
            )
        } else {
            format!(
                "{name} {:.1} % vs median {:.1} %, expected {:.1}..{:.1} % ({:+.1} points, robust z = {:.1}{how})",
                self.value,
                self.baseline,
                lo,
                hi,
                self.value - self.baseline,
                self.z
            )
        }
    }
}

/// A slow ramp of memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Points per sample, the slower of the two half-window slopes.
    pub slope: f64,
    /// `slope × (trend_window - 1)`: the rise over the window, in points.
    pub rise: f64,
    /// `rise / trend_min_rise`: ≥ 1 is anomalous.
    pub ratio: f64,
}

impl Trend {
    /// A human-readable reason.
    pub fn describe(&self, window: usize) -> String {
        format!(
            "memory_usage climbing {:.3} points/sample (+{:.1} points over {window} samples)",
            self.slope, self.rise
        )
    }
}

/// What the streaming detector saw in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamingOutcome {
    /// Per feature, the deviation when the feature is known and warmed up.
    pub deviations: [Option<Deviation>; FEATURE_COUNT],
    /// The memory trend, once the trend window is full.
    pub trend: Option<Trend>,
}

impl StreamingOutcome {
    /// The largest ratio over the features and the trend (0 when nothing is known).
    pub fn max_ratio(&self) -> f64 {
        self.deviations
            .iter()
            .flatten()
            .map(|d| d.ratio)
            .chain(self.trend.map(|t| t.ratio))
            .fold(0.0, f64::max)
    }

    /// True when any test reached its limits.
    pub fn is_anomaly(&self) -> bool {
        self.max_ratio() >= 1.0
    }

    /// The deviations that reached their limits.
    pub fn flagged(&self) -> impl Iterator<Item = &Deviation> {
        self.deviations.iter().flatten().filter(|d| d.ratio >= 1.0)
    }
}

/// The per-machine streaming detector over the features.
///
/// Each feature's state is held per feature (`windows[f]`, `runs[f]`, ...):
/// for the [`CORE_FEATURES`] from the start, for the host-detail features
/// only once the machine sends one (a machine without them costs nothing more).
#[derive(Debug, Clone)]
pub struct StreamingDetector {
    params: StreamingParams,
    windows: Vec<RollingMedian>,
    /// Per feature, (z, change) of the last samples, newest last, clipped at 0
    /// unless two-sided.
    recent: Vec<VecDeque<(f64, f64)>>,
    /// Per feature, the consecutive flagged samples and the sum of their
    /// deviations from the baseline (transformed space), for re-learning.
    runs: Vec<(u32, f64)>,
    /// Per feature, the baseline before the last re-learning (NaN: none).
    previous: Vec<f64>,
    /// Per feature, the usual level by hour of day (empty without `daily_profile`).
    profiles: Vec<DailyProfile>,
    /// Per feature, the calibration of the robust z's tail.
    tails: Vec<TailQuantile>,
    /// Per feature, the recent range.
    envelopes: Vec<Envelope>,
    /// Per feature, the usual level by time of day, and whether the
    /// time-of-day test is armed (it flags once per excursion).
    seasonal: Vec<(Seasonal, bool)>,
    trend: VecDeque<f64>,
}

impl StreamingDetector {
    /// A detector with `params`.
    pub fn new(params: StreamingParams) -> Self {
        let mut d = StreamingDetector {
            windows: Vec::new(),
            recent: Vec::new(),
            runs: Vec::new(),
            previous: Vec::new(),
            profiles: Vec::new(),
            tails: Vec::new(),
            envelopes: Vec::new(),
            seasonal: Vec::new(),
            trend: VecDeque::new(),
            params,
        };
        d.track(CORE_FEATURES);
        d
    }

    /// Keeps state for the first `n` features (a host-detail feature's state
    /// is added the first time the machine sends it).
    fn track(&mut self, n: usize) {
        let n = n.min(FEATURE_COUNT);
        let have = self.windows.len();
        if n <= have {
            return;
        }
        let window = self.params.window;
        let more = n - have;
        // Exact sizes: a plain resize would round the capacity up.
        self.windows.reserve_exact(more);
        self.windows.resize_with(n, || RollingMedian::new(window));
        self.recent.reserve_exact(more);
        self.recent.resize_with(n, VecDeque::new);
        self.runs.reserve_exact(more);
        self.runs.resize(n, (0, 0.0));
        self.previous.reserve_exact(more);
        self.previous.resize(n, f64::NAN);
        self.tails.reserve_exact(more);
        self.tails.resize(n, TailQuantile::default());
        self.envelopes.reserve_exact(more);
        self.envelopes.resize(n, Envelope::default());
        self.seasonal.reserve_exact(more);
        self.seasonal.resize(n, (Seasonal::default(), true));
        if self.params.daily_profile {
            self.profiles.reserve_exact(n - self.profiles.len());
            self.profiles.resize(n, DailyProfile::default());
        }
    }

    /// Roughly the heap this detector holds, bytes: the windows, the daily
    /// profiles and the trend (the per-feature scalars are left out, as when
    /// they were held inline).
    pub fn heap_bytes(&self) -> usize {
        self.windows
            .iter()
            .map(RollingMedian::heap_bytes)
            .sum::<usize>()
            + self
                .recent
                .iter()
                .map(|r| r.capacity() * std::mem::size_of::<(f64, f64)>())
                .sum::<usize>()
            + self.profiles.capacity() * std::mem::size_of::<DailyProfile>()
            + self.trend.capacity() * std::mem::size_of::<f64>()
    }

    /// The number of features this detector keeps state for.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }

    /// The parameters.
    pub fn params(&self) -> &StreamingParams {
        &self.params
    }

    fn transform(&self, feature: usize, x: f64) -> f64 {
        if is_rate(feature) {
            (x.max(0.0) + self.params.rate_offset).ln()
        } else {
            x
        }
    }

    fn inverse(&self, feature: usize, y: f64) -> f64 {
        inverse(feature, y, self.params.rate_offset)
    }

    /// Scores `features` against the rolling baselines, then adds them.
    pub fn observe(&mut self, features: &Features) -> StreamingOutcome {
        let mut out = StreamingOutcome::default();
        let p = self.params;
        let ts = features.timestamp;
        for (f, value) in features.values.iter().enumerate() {
            let Some(x) = *value else { continue };
            if f >= self.windows.len() {
                self.track(FEATURE_COUNT);
            }
            let y = self.transform(f, x);
            let w = &self.windows[f];
            if w.len() >= p.warmup.max(1) {
                if let (Some(med), Some(mad)) = (w.median(), w.mad()) {
                    let d = self.deviation(f, x, y, med, mad, ts);
                    out.deviations[f] = Some(d);
                    let run = &mut self.runs[f];
                    // A time-of-day flag alone does not move the rolling baseline.
                    if d.ratio >= 1.0 && d.seasonal.is_none() {
                        run.0 += 1;
                        run.1 += y - med;
                        if p.relearn_after > 0 && run.0 as usize >= p.relearn_after {
                            // A new normal: move the baseline to the run's level,
                            // remembering the old one (a return to it is no anomaly).
                            let delta = run.1 / run.0 as f64;
                            self.previous[f] = med;
                            self.windows[f].shift(delta);
                            self.recent[f].clear();
                            *run = (0, 0.0);
                        }
                    } else {
                        *run = (0, 0.0);
                    }
                }
            } else {
                self.recent[f].clear();
                self.runs[f] = (0, 0.0);
            }
            self.windows[f].push(y);
            if p.daily_profile {
                if let Some(m) = self.windows[f].median() {
                    self.profiles[f].push(ts, m);
                }
            }
        }
        if p.trend_window >= 4 {
            if let Some(m) = features.values[MEMORY] {
                if self.trend.len() == p.trend_window {
                    self.trend.pop_front();
                }
                reserve_one_deque(&mut self.trend, p.trend_window);
                self.trend.push_back(m);
                if self.trend.len() == p.trend_window {
                    out.trend = Some(self.trend_of_window());
                }
            }
        }
        out
    }

    /// The deviation of `x` (`y` transformed) from the references: the rolling
    /// median, the daily profile's range for this hour, the level before the
    /// last re-learning. The nearest one counts.
    fn deviation(&mut self, f: usize, x: f64, y: f64, med: f64, mad: f64, ts: f64) -> Deviation {
        let p = self.params;
        let min_scale = if is_rate(f) {
            p.min_scale_log
        } else {
            p.min_scale_percent
        };
        let scale = (MAD_TO_SIGMA * mad).max(min_scale).max(f64::MIN_POSITIVE);
        let (mut lo_ref, mut hi_ref) = (med, med);
        let mut dev = y - med;
        let mut consider = |a: f64, b: f64, lo_ref: &mut f64, hi_ref: &mut f64| {
            let d = if y > b {
                y - b
            } else if y < a {
                y - a
            } else {
                0.0
            };
            if d.abs() < dev.abs() {
                dev = d;
            }
            *lo_ref = lo_ref.min(a);
            *hi_ref = hi_ref.max(b);
        };
        if p.daily_profile {
            if let Some((a, b)) = self.profiles[f].range(ts) {
                consider(a, b, &mut lo_ref, &mut hi_ref);
            }
        }
        let prev = self.previous[f];
        if prev.is_finite() {
            consider(prev, prev, &mut lo_ref, &mut hi_ref);
        }
        let raw_z = (y - med) / scale;
        let z = dev / scale;
        let anchor = self.inverse(f, y - dev);
        let change = x - anchor;
        let k = if p.calibrate_tails {
            self.tails[f].factor(p.two_sided)
        } else {
            1.0
        };
        let (z_limit, sustained_limit) = (p.z_threshold * k, p.sustained_z * k);
        let (z_eff, change_eff) = if p.two_sided {
            (z.abs(), change.abs())
        } else {
            (z.max(0.0), change.max(0.0))
        };
        let change_ratio = change_eff / p.min_change[f].max(f64::MIN_POSITIVE);
        let spike = (z_eff / z_limit).min(change_ratio);
        let mut sustained: f64 = 0.0;
        if p.sustained_samples > 0 {
            let recent = &mut self.recent[f];
            if recent.len() == p.sustained_samples {
                recent.pop_front();
            }
            reserve_one_deque(recent, p.sustained_samples);
            // Clipped, so that one huge spike cannot carry the mean over the
            // next samples on its own.
            recent.push_back((
                (z_eff / k).min(SUSTAINED_CLIP * p.sustained_z),
                change_eff.min(SUSTAINED_CLIP * p.min_change[f]),
            ));
            if recent.len() == p.sustained_samples {
                let n = recent.len() as f64;
                let (sz, sc) = recent
                    .iter()
                    .fold((0.0, 0.0), |(a, b), (z, c)| (a + z, b + c));
                // The sample itself must also pass the sustained limits: a shift
                // is flagged on samples that show it, never on one back at the
                // baseline.
                sustained = (sz / n / p.sustained_z)
                    .min(sc / n / p.min_change[f].max(f64::MIN_POSITIVE))
                    .min(z_eff / sustained_limit)
                    .min(change_ratio);
            }
        }
        let mut extreme = 0.0;
        if p.extreme_horizon > 0.0 {
            if let Some(e) = self.envelopes[f].observe(ts, y, med, p.extreme_horizon) {
                let e = if p.two_sided { e.abs() } else { e.max(0.0) };
                // Beyond the recent range, and off every reference by the
                // sustained test's z and the minimum change.
                extreme = (e / p.extreme_margin.max(f64::MIN_POSITIVE))
                    .min(z_eff / sustained_limit)
                    .min(change_ratio);
            }
        }
        let mut seasonal = 0.0;
        let mut seasonal_ref = (med, 0.0);
        if p.seasonal_limit > 0.0 {
            let (off, two) = (p.rate_offset, p.two_sided);
            let inv = |y: f64| inverse(f, y, off);
            let min_change = p.min_change[f].max(f64::MIN_POSITIVE);
            let (state, armed) = &mut self.seasonal[f];
            let mut r_now = 0.0;
            let res = state.observe(ts, y, |r| {
                let z = if two { r.ratio.abs() } else { r.ratio.max(0.0) };
                let chg = (inv(r.expected + r.smooth) - inv(r.expected)).abs();
                r_now = (z / p.seasonal_limit).min(chg / min_change);
                // Samples beyond the limits (flagged or within an excursion
                // already flagged) do not widen the usual spread.
                r_now >= 1.0
            });
            if let Some(r) = res {
                if r_now >= 1.0 && *armed {
                    seasonal = r_now;
                    seasonal_ref = (
                        inv(r.expected),
                        if is_rate(f) {
                            (inv(r.expected + r.smooth) + 1.0) / (inv(r.expected) + 1.0)
                        } else {
                            r.smooth
                        },
                    );
                    *armed = false;
                } else if r_now < 0.5 {
                    *armed = true;
                }
            }
        }
        // The tail is calibrated on the samples the spike test does not flag:
        // anomalies do not raise the limits that should catch the next ones.
        if spike < 1.0 {
            self.tails[f].push(raw_z, p.two_sided);
        }
        let reach = z_limit * scale;
        let lo = self
            .inverse(f, lo_ref - reach)
            .min(self.inverse(f, lo_ref) - p.min_change[f]);
        let hi = self
            .inverse(f, hi_ref + reach)
            .max(self.inverse(f, hi_ref) + p.min_change[f]);
        let local = spike.max(sustained).max(extreme);
        Deviation {
            feature: f,
            value: x,
            baseline: self.inverse(f, med),
            z,
            ratio: local.max(seasonal),
            sustained: sustained > spike.max(extreme),
            seasonal: (seasonal >= 1.0 && local < 1.0).then_some(seasonal_ref),
            expected: (lo.max(0.0), if is_rate(f) { hi } else { hi.min(100.0) }),
        }
    }

    fn trend_of_window(&self) -> Trend {
        let n = self.trend.len();
        let half = n / 2;
        let (a, b) = self.trend.as_slices();
        let at = |i: usize| if i < a.len() { a[i] } else { b[i - a.len()] };
        let slope = |from: usize, to: usize| {
            let m = (to - from) as f64;
            let xm = (m - 1.0) / 2.0;
            let ym = (from..to).map(at).sum::<f64>() / m;
            let (mut sxy, mut sxx) = (0.0, 0.0);
            for (k, i) in (from..to).enumerate() {
                let dx = k as f64 - xm;
                sxy += dx * (at(i) - ym);
                sxx += dx * dx;
            }
            if sxx > 0.0 {
                sxy / sxx
            } else {
                0.0
            }
        };
        let s = slope(0, half).min(slope(half, n));
        let rise = s * (n - 1) as f64;
        Trend {
            slope: s,
            rise,
            ratio: (rise / self.params.trend_min_rise.max(f64::MIN_POSITIVE)).max(0.0),
        }
    }
}

/// The feature's unit from the detector's space (rates are `ln(rate + offset)`).
fn inverse(feature: usize, y: f64, rate_offset: f64) -> f64 {
    if is_rate(feature) {
        (y.exp() - rate_offset).max(0.0)
    } else {
        y
    }
}

/// `1.5 MB/s`-style formatting of a byte rate.
pub fn human_rate(bytes_per_sec: f64) -> String {
    let units = ["B/s", "KB/s", "MB/s", "GB/s", "TB/s"];
    let mut v = bytes_per_sec;
    let mut u = 0;
    while v.abs() >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{CPU, DISK_READ};
    use sysmon_core::synth::Rng;

    fn naive_median(v: &[f64]) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        }
    }

    #[test]
    fn rolling_median_and_mad_match_a_naive_computation() {
        let mut r = Rng::new(1);
        for cap in [1, 2, 5, 64] {
            let mut w = RollingMedian::new(cap);
            let mut all = Vec::new();
            for i in 0..300 {
                // Ties and outliers included.
                let v = if i % 7 == 0 {
                    3.0
                } else {
                    (r.normal() * 10.0).round()
                };
                w.push(v);
                all.push(v);
                let tail = &all[all.len().saturating_sub(cap)..];
                let med = naive_median(tail);
                let devs: Vec<f64> = tail.iter().map(|x| (x - med).abs()).collect();
                assert_eq!(w.median(), Some(med), "cap {cap} step {i}");
                assert_eq!(w.mad(), Some(naive_median(&devs)), "cap {cap} step {i}");
            }
        }
        let mut w = RollingMedian::new(3);
        assert_eq!(w.median(), None);
        w.push(f64::NAN);
        assert!(w.is_empty());
    }

    fn feats(cpu: f64, disk: f64) -> Features {
        let mut v = [None; FEATURE_COUNT];
        v[CPU] = Some(cpu);
        v[DISK_READ] = Some(disk);
        Features {
            timestamp: 0.0,
            values: v,
        }
    }

    #[test]
    fn a_spike_is_flagged_on_its_first_sample() {
        let mut d = StreamingDetector::new(StreamingParams::default());
        let mut r = Rng::new(2);
        for _ in 0..100 {
            let o = d.observe(&feats(
                30.0 + r.normal() * 3.0,
                5e6 * (1.0 + 0.2 * r.normal()),
            ));
            assert!(!o.is_anomaly(), "{o:?}");
        }
        let o = d.observe(&feats(95.0, 5e6));
        assert!(o.is_anomaly());
        let flagged: Vec<usize> = o.flagged().map(|d| d.feature).collect();
        assert_eq!(flagged, vec![CPU]);
        assert!(o.deviations[CPU]
            .unwrap()
            .describe()
            .contains("cpu_usage 95.0 %"));
        let o = d.observe(&feats(30.0, 80e6));
        assert_eq!(
            o.flagged().map(|d| d.feature).collect::<Vec<_>>(),
            vec![DISK_READ]
        );
        assert!(o.deviations[DISK_READ]
            .unwrap()
            .describe()
            .contains("80.0 MB/s"));
    }

    #[test]
    fn a_moderate_sustained_shift_is_flagged_and_a_single_spike_does_not_linger() {
        let mut d = StreamingDetector::new(StreamingParams::default());
        let mut r = Rng::new(5);
        for _ in 0..100 {
            d.observe(&feats(30.0, 20e6 * (0.5 * r.normal()).exp()));
        }
        // x3.5 on a series with 35 % noise: z about 3.5 each sample, below the
        // spike limit of 5, but three in a row are a sustained shift.
        let mut flagged_at = None;
        for i in 0..5 {
            let o = d.observe(&feats(30.0, 70e6));
            let dev = o.deviations[DISK_READ].unwrap();
            assert!(dev.z < 5.0, "{dev:?}");
            if o.is_anomaly() && flagged_at.is_none() {
                flagged_at = Some(i);
                assert!(dev.sustained);
                assert!(dev.describe().contains("sustained"));
            }
        }
        assert_eq!(flagged_at, Some(2));
        // One huge CPU spike, then normal samples: only the spike is flagged.
        for _ in 0..100 {
            d.observe(&feats(30.0 + r.normal(), 20e6));
        }
        assert!(d.observe(&feats(100.0, 20e6)).is_anomaly());
        for _ in 0..5 {
            assert!(!d.observe(&feats(30.0 + r.normal(), 20e6)).is_anomaly());
        }
    }

    #[test]
    fn tiny_changes_on_a_flat_idle_series_are_not_anomalies() {
        let mut d = StreamingDetector::new(StreamingParams::default());
        for i in 0..200 {
            // CPU 0.5 % with a step to 1.5 %: z is huge (MAD is ~0), change is not.
            let cpu = if i % 50 == 49 { 1.5 } else { 0.5 };
            let disk = if i % 30 == 29 { 300e3 } else { 10e3 };
            let o = d.observe(&feats(cpu, disk));
            assert!(!o.is_anomaly(), "step {i}: {o:?}");
        }
    }

    #[test]
    fn nothing_is_flagged_during_warm_up() {
        let mut d = StreamingDetector::new(StreamingParams::default());
        for i in 0..15 {
            let o = d.observe(&feats(if i == 10 { 100.0 } else { 10.0 }, 1e6));
            assert!(!o.is_anomaly());
        }
    }

    #[test]
    fn drops_only_count_when_two_sided() {
        let mut one = StreamingDetector::new(StreamingParams::default());
        let mut two = StreamingDetector::new(StreamingParams {
            two_sided: true,
            ..StreamingParams::default()
        });
        let mut r = Rng::new(3);
        for _ in 0..64 {
            let f = feats(70.0 + r.normal(), 1e6);
            one.observe(&f);
            two.observe(&f);
        }
        assert!(!one.observe(&feats(5.0, 1e6)).is_anomaly());
        assert!(two.observe(&feats(5.0, 1e6)).is_anomaly());
    }

    fn mem(m: f64) -> Features {
        let mut v = [None; FEATURE_COUNT];
        v[MEMORY] = Some(m);
        Features {
            timestamp: 0.0,
            values: v,
        }
    }

    #[test]
    fn a_ramp_is_a_trend_and_a_step_is_not() {
        let p = StreamingParams::default();
        let mut r = Rng::new(4);
        // A leak of 0.1 points per sample after 200 flat samples.
        let mut d = StreamingDetector::new(p);
        let mut first = None;
        for i in 0..400 {
            let m = 40.0
                + r.normal() * 0.4
                + if i >= 200 {
                    (i - 200) as f64 * 0.1
                } else {
                    0.0
                };
            let o = d.observe(&mem(m));
            if o.trend.is_some_and(|t| t.ratio >= 1.0) && first.is_none() {
                first = Some(i);
            }
            if i < 200 {
                assert!(!o.is_anomaly(), "flat sample {i}: {o:?}");
            }
        }
        let first = first.expect("the ramp is detected");
        assert!((200..330).contains(&first), "{first}");
        // A step of +4 points is neither a spike (< 5 points) nor a ramp.
        let mut d = StreamingDetector::new(p);
        for i in 0..400 {
            let m = 40.0 + r.normal() * 0.4 + if i >= 200 { 4.0 } else { 0.0 };
            assert!(!d.observe(&mem(m)).is_anomaly(), "step sample {i}");
        }
    }

    #[test]
    fn human_rates() {
        assert_eq!(human_rate(999.0), "999.0 B/s");
        assert_eq!(human_rate(1.5e6), "1.5 MB/s");
    }

    #[test]
    fn an_unusual_day_is_flagged_by_the_time_of_day_test_once_at_any_interval() {
        for interval in [60.0, 300.0, 900.0] {
            let mut d = StreamingDetector::new(StreamingParams {
                two_sided: true,
                ..StreamingParams::default()
            });
            let mut r = Rng::new(6);
            let per_day = (86_400.0 / interval) as usize;
            let mut seasonal_days = Vec::new();
            for i in 0..per_day * 7 {
                let ts = i as f64 * interval;
                let day = i / per_day;
                let usual = 50.0 + 30.0 * (std::f64::consts::TAU * ts / 86_400.0).sin();
                // Day 4 runs at half the usual level: a holiday.
                let v = if day == 4 { usual * 0.5 } else { usual } + r.normal();
                let mut f = feats(v, 1e6);
                f.timestamp = ts;
                let o = d.observe(&f);
                if let Some(dev) = o.deviations[CPU].filter(|d| d.ratio >= 1.0) {
                    if dev.seasonal.is_some() {
                        assert!(dev.describe().contains("at this time of day"), "{dev:?}");
                        seasonal_days.push(day);
                    }
                }
            }
            assert!(
                seasonal_days.first() == Some(&4),
                "interval {interval}: {seasonal_days:?}"
            );
            // Once per excursion: the day itself, and at most the day after
            // (back up from a level half-learned the day before).
            assert!(
                seasonal_days.len() <= 2 && seasonal_days.iter().all(|d| (4..=5).contains(d)),
                "interval {interval}: {seasonal_days:?}"
            );
        }
    }
}
