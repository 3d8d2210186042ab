//! Small per-feature memories that make the streaming detector's baseline
//! general: a daily profile (what level is usual at this hour) and a tail
//! calibration of the robust z-score (how far the series' own deviations reach).
//!
//! Both work from timestamps and counts of samples, never from an assumed
//! sampling interval, and both fit in a few dozen bytes per feature.

/// Hour-of-day bins of a [`DailyProfile`].
pub const DAY_BINS: usize = 24;

const BIN_SECS: f64 = 86_400.0 / DAY_BINS as f64;

/// The usual level of a series at each hour of the day: per hour, the mean of
/// the rolling baseline over that hour, blended half and half with the days
/// before. A value inside the range of the levels of its hour and the hours on
/// either side is not a deviation, whatever the recent samples were: the daily
/// rise of a traffic-driven series is expected once it has been seen.
#[derive(Debug, Clone)]
pub struct DailyProfile {
    /// Per hour of day, the usual level (NaN until seen).
    levels: [f32; DAY_BINS],
    /// The hour being accumulated (hours since the epoch), its sum and count.
    current: Option<(i64, f64, u32)>,
}

impl Default for DailyProfile {
    fn default() -> Self {
        DailyProfile {
            levels: [f32::NAN; DAY_BINS],
            current: None,
        }
    }
}

fn hour_of(ts: f64) -> i64 {
    (ts / BIN_SECS).floor() as i64
}

fn bin_of(hour: i64) -> usize {
    hour.rem_euclid(DAY_BINS as i64) as usize
}

impl DailyProfile {
    /// Adds the baseline `level` at time `ts` (seconds since the epoch).
    pub fn push(&mut self, ts: f64, level: f64) {
        if !(ts.is_finite() && level.is_finite()) {
            return;
        }
        let hour = hour_of(ts);
        match &mut self.current {
            Some((h, sum, n)) if *h == hour => {
                *sum += level;
                *n += 1;
            }
            current => {
                if let Some((h, sum, n)) = current.take() {
                    if n > 0 {
                        let mean = (sum / n as f64) as f32;
                        let old = &mut self.levels[bin_of(h)];
                        *old = if old.is_nan() {
                            mean
                        } else {
                            0.5 * *old + 0.5 * mean
                        };
                    }
                }
                *current = Some((hour, level, 1));
            }
        }
    }

    /// The range of the usual levels of the hour of `ts` and the hours either side.
    pub fn range(&self, ts: f64) -> Option<(f64, f64)> {
        if !ts.is_finite() {
            return None;
        }
        let hour = hour_of(ts);
        let mut out: Option<(f64, f64)> = None;
        for h in hour - 1..=hour + 1 {
            let v = self.levels[bin_of(h)];
            if v.is_nan() {
                continue;
            }
            let v = v as f64;
            out = Some(out.map_or((v, v), |(a, b)| (a.min(v), b.max(v))));
        }
        out
    }
}

/// The calibrated tail: a streaming estimate of the 99th percentile of the
/// series' own robust z-scores (a stochastic-approximation quantile tracker in
/// log space). [`TailQuantile::factor`] is how much heavier than Gaussian the
/// tail is (never below 1): the z limits are multiplied by it, so a series whose
/// normal deviations reach z = 20 every day is not flagged for each of them.
#[derive(Debug, Clone, Copy)]
pub struct TailQuantile {
    log_q: f32,
    n: u32,
}

/// The tracked quantile.
pub const TAIL_P: f64 = 0.99;
/// The Gaussian's one-sided 99th percentile.
const GAUSS_Q_ONE_SIDED: f64 = 2.326;
/// The Gaussian's 99th percentile of |z|.
const GAUSS_Q_TWO_SIDED: f64 = 2.576;
/// Step of the tracker in log space.
const TAIL_STEP: f64 = 0.05;
/// A tail up to this much heavier than a Gaussian's is taken as Gaussian
/// (short harmless bumps make most real series slightly heavy-tailed).
const TAIL_SLACK: f64 = 1.3;
/// Samples before the calibration counts.
const TAIL_MIN_SAMPLES: u32 = 200;

impl Default for TailQuantile {
    fn default() -> Self {
        TailQuantile {
            log_q: GAUSS_Q_ONE_SIDED.ln() as f32,
            n: 0,
        }
    }
}

impl TailQuantile {
    /// Adds one z-score (its positive part, or |z| when `two_sided`).
    pub fn push(&mut self, z: f64, two_sided: bool) {
        if !z.is_finite() {
            return;
        }
        if self.n == 0 && two_sided {
            self.log_q = GAUSS_Q_TWO_SIDED.ln() as f32;
        }
        let z = if two_sided { z.abs() } else { z.max(0.0) };
        let q = (self.log_q as f64).exp();
        let step = if z > q {
            TAIL_STEP * TAIL_P
        } else {
            -TAIL_STEP * (1.0 - TAIL_P)
        };
        self.log_q = (self.log_q as f64 + step).clamp(0.0, 12.0) as f32;
        self.n = self.n.saturating_add(1);
    }

    /// The tail's weight relative to a Gaussian's, at least 1: the ratio of the
    /// tracked quantile to the Gaussian's, to the power 0.75 (a full ratio
    /// missed moderate events on the labelled traces, see
    /// `docs/anomaly-detection.md`).
    pub fn factor(&self, two_sided: bool) -> f64 {
        if self.n < TAIL_MIN_SAMPLES {
            return 1.0;
        }
        let gauss = if two_sided {
            GAUSS_Q_TWO_SIDED
        } else {
            GAUSS_Q_ONE_SIDED
        };
        ((self.log_q as f64).exp() / gauss / TAIL_SLACK)
            .max(1.0)
            .powf(0.75)
    }
}

/// The range a series has reached recently: a high and a low envelope (in the
/// detector's transformed space) that decay towards the baseline with a time
/// constant, `horizon` seconds. A value beyond the envelope is a new extreme;
/// a level reached once is then part of the envelope (learned) until it decays.
#[derive(Debug, Clone, Copy)]
pub struct Envelope {
    lo: f64,
    hi: f64,
    last: f64,
    since: f64,
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope {
            lo: f64::NAN,
            hi: f64::NAN,
            last: f64::NAN,
            since: f64::NAN,
        }
    }
}

impl Envelope {
    /// Decays the envelope to time `ts` towards `baseline`, returns how far `y`
    /// lies beyond it as a share of its width (positive above, negative below,
    /// 0 inside), once it is `horizon` old, then widens it to include `y`.
    pub fn observe(&mut self, ts: f64, y: f64, baseline: f64, horizon: f64) -> Option<f64> {
        if !(ts.is_finite() && y.is_finite() && baseline.is_finite()) {
            return None;
        }
        if self.hi.is_nan() {
            *self = Envelope {
                lo: y,
                hi: y,
                last: ts,
                since: ts,
            };
            return None;
        }
        let dt = (ts - self.last).max(0.0);
        let k = (-dt / horizon.max(1.0)).exp();
        self.hi = baseline.max(baseline + (self.hi - baseline) * k);
        self.lo = baseline.min(baseline + (self.lo - baseline) * k);
        self.last = ts;
        let width = self.hi - self.lo;
        let beyond = (ts - self.since >= horizon && width > 0.0).then(|| {
            if y > self.hi {
                (y - self.hi) / width
            } else if y < self.lo {
                (y - self.lo) / width
            } else {
                0.0
            }
        });
        self.hi = self.hi.max(y);
        self.lo = self.lo.min(y);
        beyond
    }
}

/// Seconds in a day.
const DAY_SECS: f64 = 86_400.0;
/// [`Seasonal`]: the weight of each new day in an hour's level.
const SEASONAL_DAY_WEIGHT: f64 = 0.3;
/// [`Seasonal`]: the residual is smoothed over this time constant, seconds (or
/// three sampling intervals, when longer): a contextual deviation is a level
/// that persists, not one sample.
const SEASONAL_SMOOTH_SECS: f64 = 3_600.0;
/// [`Seasonal`]: the spread of the smoothed residual is a mean over about this
/// long, seconds.
const SEASONAL_SPREAD_SECS: f64 = 7.0 * DAY_SECS;
/// [`Seasonal`]: days of learning before it can flag.
const SEASONAL_WARMUP_DAYS: f64 = 2.0;

/// The usual level of a series at each hour of the day, learned from the
/// values themselves, and how unusual the recent level is for this hour: a
/// contextual-deviation test that works at any sampling interval (every rate is
/// a time constant in seconds, never a count of samples) in 24 × 4 bytes plus a
/// few numbers per feature.
///
/// * The level of each hour is an exponential mean over days (each day weighs
///   [`SEASONAL_DAY_WEIGHT`]); the expected value at `ts` interpolates between
///   the two nearest hour centres.
/// * The residual (value − expected) is smoothed over an hour
///   ([`SEASONAL_SMOOTH_SECS`]); its spread is the mean absolute smoothed
///   residual over about a week, updated only on samples that are not flagged.
/// * [`Seasonal::observe`] returns the smoothed residual and its ratio to the
///   spread; the caller decides how many spreads flag.
#[derive(Debug, Clone, Copy)]
pub struct Seasonal {
    levels: [f32; DAY_BINS],
    first: f64,
    last: f64,
    smooth: f64,
    spread: f64,
    n: u32,
    /// The step `dt` the three update weights below were computed for (the
    /// sampling interval is usually steady: no `exp`/`powf` per sample).
    rates: [f32; 4],
}

impl Default for Seasonal {
    fn default() -> Self {
        Seasonal {
            levels: [f32::NAN; DAY_BINS],
            first: f64::NAN,
            last: f64::NAN,
            smooth: 0.0,
            spread: 0.0,
            n: 0,
            rates: [f32::NAN; 4],
        }
    }
}

/// What [`Seasonal::observe`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalResidual {
    /// The usual level at this time of day.
    pub expected: f64,
    /// The residual smoothed over about an hour.
    pub smooth: f64,
    /// `smooth / spread`: how many usual spreads the recent level is off.
    pub ratio: f64,
}

impl Seasonal {
    /// The expected level at `ts`: interpolated between the two nearest hour
    /// centres (either alone when the other was never seen).
    pub fn expected(&self, ts: f64) -> Option<f64> {
        if !ts.is_finite() {
            return None;
        }
        let pos = (ts.rem_euclid(DAY_SECS) / BIN_SECS) - 0.5;
        let lo = pos.floor();
        let w = pos - lo;
        let a = self.levels[(lo as i64).rem_euclid(DAY_BINS as i64) as usize];
        let b = self.levels[(lo as i64 + 1).rem_euclid(DAY_BINS as i64) as usize];
        match (a.is_nan(), b.is_nan()) {
            (false, false) => Some(a as f64 * (1.0 - w) + b as f64 * w),
            (false, true) => Some(a as f64),
            (true, false) => Some(b as f64),
            (true, true) => None,
        }
    }

    /// Scores `y` at `ts` against the usual level of this time of day (once two
    /// days have been learned), then learns it. `flagged` tells whether the
    /// caller flags this sample from the returned residual: a flagged sample
    /// does not widen the spread.
    pub fn observe(
        &mut self,
        ts: f64,
        y: f64,
        flag: impl FnOnce(&SeasonalResidual) -> bool,
    ) -> Option<SeasonalResidual> {
        if !(ts.is_finite() && y.is_finite()) {
            return None;
        }
        if self.first.is_nan() {
            self.first = ts;
        }
        let dt = if self.last.is_finite() {
            (ts - self.last).max(0.0)
        } else {
            0.0
        };
        self.last = ts;
        if self.rates[0] != dt as f32 {
            let tau = SEASONAL_SMOOTH_SECS.max(3.0 * dt);
            self.rates = [
                dt as f32,
                (1.0 - (-dt / tau).exp()) as f32,
                (1.0 - (-dt / SEASONAL_SPREAD_SECS).exp()) as f32,
                (1.0 - (1.0 - SEASONAL_DAY_WEIGHT).powf(dt / BIN_SECS)) as f32,
            ];
        }
        let [_, a_smooth, a_spread, a_level] = self.rates.map(f64::from);
        let mut out = None;
        if let Some(e) = self.expected(ts) {
            let r = y - e;
            self.smooth += a_smooth * (r - self.smooth);
            let res = SeasonalResidual {
                expected: e,
                smooth: self.smooth,
                ratio: if self.spread > 0.0 {
                    self.smooth / self.spread
                } else {
                    0.0
                },
            };
            let ready = ts - self.first >= SEASONAL_WARMUP_DAYS * DAY_SECS && self.spread > 0.0;
            let flagged = ready && flag(&res);
            if !flagged {
                self.n = self.n.saturating_add(1);
                let a = (1.0 / self.n as f64).max(a_spread);
                self.spread += a * (self.smooth.abs() - self.spread);
            }
            if ready {
                out = Some(res);
            }
        }
        let bin = bin_of(hour_of(ts));
        let l = &mut self.levels[bin];
        if l.is_nan() {
            *l = y as f32;
        } else {
            *l += (a_level * (y - *l as f64)) as f32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::synth::Rng;

    #[test]
    fn the_profile_remembers_each_hour_and_its_neighbours() {
        let mut p = DailyProfile::default();
        // One day at 5-minute steps: 10 by night (hours 0-11), 80 by day.
        for i in 0..288 {
            let ts = i as f64 * 300.0;
            p.push(ts, if i < 144 { 10.0 } else { 80.0 });
        }
        // Next day at 11:30: hours 10, 11 and 12 have been seen (12 today at 80).
        let (lo, hi) = p.range(86_400.0 + 11.5 * 3600.0).unwrap();
        assert_eq!((lo, hi), (10.0, 80.0));
        let (lo, hi) = p.range(86_400.0 + 3.5 * 3600.0).unwrap();
        assert_eq!((lo, hi), (10.0, 10.0));
        assert!(DailyProfile::default().range(0.0).is_none());
    }

    #[test]
    fn the_tail_factor_is_one_for_gaussian_noise_and_large_for_heavy_tails() {
        let mut r = Rng::new(3);
        let mut g = TailQuantile::default();
        let mut h = TailQuantile::default();
        for _ in 0..5000 {
            g.push(r.normal(), false);
            // Cauchy-like: a normal over a small normal.
            h.push(r.normal() / (0.05 + r.normal().abs()), false);
        }
        assert!(g.factor(false) < 1.3, "{}", g.factor(false));
        assert!(h.factor(false) > 2.0, "{}", h.factor(false));
    }

    #[test]
    fn the_seasonal_level_is_learned_at_any_interval_and_scores_after_two_days() {
        for interval in [1.0, 60.0, 300.0] {
            let mut s = Seasonal::default();
            let level = |ts: f64| 50.0 + 30.0 * (std::f64::consts::TAU * ts / DAY_SECS).sin();
            let mut first_score = None;
            let steps = (3.0 * DAY_SECS / interval) as usize;
            for i in 0..steps {
                let ts = i as f64 * interval;
                if s.observe(ts, level(ts), |_| false).is_some() && first_score.is_none() {
                    first_score = Some(ts);
                }
            }
            let first = first_score.expect("scores once two days are learned");
            assert!(
                (2.0 * DAY_SECS..2.0 * DAY_SECS + 2.0 * interval).contains(&first),
                "interval {interval}: first score at {first}"
            );
            // The usual level at 06:00 (the peak) and at 18:00 (the trough),
            // within the interpolation error of hourly bins.
            let at = |h: f64| s.expected(3.0 * DAY_SECS + h * 3600.0).unwrap();
            assert!(
                (at(6.0) - 80.0).abs() < 1.5,
                "interval {interval}: {}",
                at(6.0)
            );
            assert!(
                (at(18.0) - 20.0).abs() < 1.5,
                "interval {interval}: {}",
                at(18.0)
            );
        }
    }

    #[test]
    fn the_seasonal_residual_is_smoothed_and_measured_in_usual_spreads() {
        let mut s = Seasonal::default();
        let mut r = Rng::new(9);
        let interval = 300.0;
        let mut last = None;
        for i in 0..(4.0 * DAY_SECS / interval) as usize {
            let ts = i as f64 * interval;
            let day = 50.0 + 30.0 * (std::f64::consts::TAU * ts / DAY_SECS).sin();
            last = s.observe(ts, day + r.normal(), |r| r.ratio.abs() >= 4.0);
            if let Some(res) = last {
                assert!(res.ratio.abs() < 4.0, "sample {i}: {res:?}");
            }
        }
        assert!(last.is_some());
        // One sample 20 points low moves the hour's smoothed level a little;
        // three hours of it move it by most of the 20 points.
        let t0 = 4.0 * DAY_SECS;
        let mut off = Vec::new();
        for k in 0..36 {
            let ts = t0 + k as f64 * interval;
            let day = 50.0 + 30.0 * (std::f64::consts::TAU * ts / DAY_SECS).sin();
            off.push(s.observe(ts, day - 20.0, |_| false).unwrap());
        }
        assert!(off[0].smooth > -3.0, "{:?}", off[0]);
        assert!(off[35].smooth < -12.0, "{:?}", off[35]);
        assert!(off[35].ratio < -4.0, "{:?}", off[35]);
        assert!(s.observe(f64::NAN, 1.0, |_| false).is_none());
    }
}
