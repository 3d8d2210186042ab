//! Forecasts: each metric's value a few minutes ahead with a prediction band
//! (the legacy dashboard's "in 5 minutes" guess, made honest), and for each
//! filesystem the time until it is full.
//!
//! Both fit an ordinary least-squares line to the machine's recent samples.
//! The band is the classical prediction interval
//! `ŷ ± t(1-α/2, n-2) · s · sqrt(1 + 1/n + (x₀ - x̄)² / Sxx)`, with `s` the
//! residual standard error; percentages are clamped to 0..=100 and rates to ≥ 0.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::features::{FeatureExtractor, CORE_FEATURES, FEATURE_NAMES};
use sysmon_core::snapshot::Snapshot;

/// A least-squares line `y = intercept + slope · (x - x_mean)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    /// Points used.
    pub n: usize,
    /// Mean of x.
    pub x_mean: f64,
    /// Mean of y (the fitted value at `x_mean`).
    pub y_mean: f64,
    /// Slope, y units per x unit.
    pub slope: f64,
    /// Residual standard error `sqrt(SSE / (n - 2))` (0 for n = 2).
    pub residual_se: f64,
    /// `Σ (x - x̄)²`.
    pub sxx: f64,
}

impl LinearFit {
    /// Fits `points` (x, y); `None` with fewer than 2 finite points or when every
    /// x is the same.
    pub fn fit(points: impl IntoIterator<Item = (f64, f64)> + Clone) -> Option<LinearFit> {
        let (mut n, mut sx, mut sy) = (0usize, 0.0, 0.0);
        for (x, y) in points.clone() {
            if x.is_finite() && y.is_finite() {
                n += 1;
                sx += x;
                sy += y;
            }
        }
        if n < 2 {
            return None;
        }
        let (xm, ym) = (sx / n as f64, sy / n as f64);
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in points.clone() {
            if x.is_finite() && y.is_finite() {
                let (dx, dy) = (x - xm, y - ym);
                sxx += dx * dx;
                sxy += dx * dy;
                syy += dy * dy;
            }
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let sse = (syy - slope * sxy).max(0.0);
        let residual_se = if n > 2 {
            (sse / (n - 2) as f64).sqrt()
        } else {
            0.0
        };
        Some(LinearFit {
            n,
            x_mean: xm,
            y_mean: ym,
            slope,
            residual_se,
            sxx,
        })
    }

    /// The fitted value at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.y_mean + self.slope * (x - self.x_mean)
    }

    /// Half-width of the prediction interval for a new observation at `x`.
    pub fn prediction_half_width(&self, x: f64, confidence: f64) -> f64 {
        if self.n <= 2 {
            return f64::INFINITY;
        }
        let t = student_t_quantile(0.5 + confidence / 2.0, (self.n - 2) as f64);
        let n = self.n as f64;
        t * self.residual_se * (1.0 + 1.0 / n + (x - self.x_mean).powi(2) / self.sxx).sqrt()
    }

    /// Standard error of the slope.
    pub fn slope_se(&self) -> f64 {
        self.residual_se / self.sxx.sqrt()
    }
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Student's t quantile with `df` degrees of freedom: exact for 1 and 2, the
/// Cornish–Fisher expansion beyond (error below 0.3 % for df ≥ 3 at 95 %).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let valid = p > 0.0 && p < 1.0 && df > 0.0;
    if !valid {
        return f64::NAN;
    }
    if df < 1.5 {
        return (std::f64::consts::PI * (p - 0.5)).tan();
    }
    if df < 2.5 {
        let a = 4.0 * p * (1.0 - p);
        return 2.0 * (p - 0.5) * (2.0 / a).sqrt();
    }
    let z = normal_quantile(p);
    let (z2, z3) = (z * z, z * z * z);
    let z5 = z3 * z2;
    let z7 = z5 * z2;
    let z9 = z7 * z2;
    z + (z3 + z) / (4.0 * df)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92_160.0 * df.powi(4))
}

/// A metric's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The metric (a name from [`FEATURE_NAMES`]).
    pub metric: String,
    /// The forecast's target time, seconds since the epoch.
    pub at: f64,
    /// The predicted value.
    pub value: f64,
    /// Lower end of the prediction band.
    pub lower: f64,
    /// Upper end of the prediction band.
    pub upper: f64,
    /// The band's confidence, e.g. 0.95.
    pub confidence: f64,
    /// The fitted trend, metric units per second.
    pub slope_per_sec: f64,
    /// Samples the fit used.
    pub samples: usize,
}

/// A filesystem's projected time until full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesystemForecast {
    /// Where it is mounted.
    pub mount_point: String,
    /// Its size in bytes.
    pub total_bytes: u64,
    /// Bytes still available at the last sample.
    pub available_bytes: u64,
    /// Fitted growth of used bytes per second (may be negative).
    pub growth_bytes_per_sec: f64,
    /// Seconds from the last sample until `available_bytes` reaches 0; `None`
    /// when usage is not growing significantly.
    pub seconds_until_full: Option<f64>,
    /// Samples the fit used.
    pub samples: usize,
}

/// Forecast from `points` (t, y): the value at `at` with a `confidence` band,
/// clamped to `bounds`. `None` with fewer than 3 points.
pub fn linear_forecast(
    metric: &str,
    points: &[(f64, f64)],
    at: f64,
    confidence: f64,
    bounds: (f64, f64),
) -> Option<Forecast> {
    let fit = LinearFit::fit(points.iter().copied())?;
    if fit.n < 3 {
        return None;
    }
    let value = fit.predict(at);
    let half = fit.prediction_half_width(at, confidence);
    let clamp = |v: f64| v.clamp(bounds.0, bounds.1);
    Some(Forecast {
        metric: metric.to_string(),
        at,
        value: clamp(value),
        lower: clamp(value - half),
        upper: clamp(value + half),
        confidence,
        slope_per_sec: fit.slope,
        samples: fit.n,
    })
}

/// Time until full from `points` (t, used bytes), the last sample's available
/// bytes and time. `None` in `seconds_until_full` unless usage grows with a
/// slope at least `min_t` standard errors above zero.
pub fn time_until_full(
    points: &[(f64, f64)],
    available_bytes: u64,
    last_t: f64,
    min_t: f64,
) -> Option<(f64, Option<f64>)> {
    let fit = LinearFit::fit(points.iter().copied())?;
    if fit.n < 3 {
        return None;
    }
    let se = fit.slope_se();
    let growing = fit.slope > 0.0 && (se == 0.0 || fit.slope / se >= min_t);
    let secs = if available_bytes == 0 {
        Some(0.0)
    } else if growing {
        // Project from the fitted line's value now, not the noisy last sample.
        let used_now_fit = fit.predict(last_t);
        let last_used = points.last().map_or(used_now_fit, |p| p.1);
        let remaining = available_bytes as f64 - (used_now_fit - last_used).max(0.0);
        Some((remaining.max(0.0)) / fit.slope)
    } else {
        None
    };
    Some((fit.slope, secs))
}

/// Parameters of a [`Forecaster`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastParams {
    /// Recent samples per machine used in the fits.
    pub window: usize,
    /// How far ahead metrics are forecast, seconds (legacy: 300).
    pub horizon_secs: f64,
    /// Confidence of the band.
    pub confidence: f64,
    /// Slope t-statistic needed to call a filesystem "growing".
    pub growth_min_t: f64,
}

impl Default for ForecastParams {
    fn default() -> Self {
        ForecastParams {
            window: 300,
            horizon_secs: 300.0,
            confidence: 0.95,
            growth_min_t: 3.0,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct MachineSeries {
    extractor: FeatureExtractor,
    times: VecDeque<f64>,
    /// The core features only (CPU, memory, disk and network rates).
    metrics: [VecDeque<Option<f64>>; CORE_FEATURES],
    filesystems: HashMap<String, FsSeries>,
    last_ts: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct FsSeries {
    points: VecDeque<(f64, f64)>,
    total: u64,
    available: u64,
}

/// Keeps each machine's recent window and answers forecasts.
#[derive(Debug, Clone, Default)]
pub struct Forecaster {
    params: ForecastParams,
    machines: HashMap<String, MachineSeries>,
}

impl Forecaster {
    /// A forecaster with `params` (window at least 3).
    pub fn new(mut params: ForecastParams) -> Self {
        params.window = params.window.max(3);
        Forecaster {
            params,
            machines: HashMap::new(),
        }
    }

    /// Adds a snapshot (older or duplicate timestamps of a machine are ignored).
    pub fn observe(&mut self, s: &Snapshot) {
        if !s.timestamp.is_finite() {
            return;
        }
        let w = self.params.window;
        let m = self.machines.entry(s.machine_id.clone()).or_default();
        if m.last_ts.is_some_and(|t| s.timestamp <= t) {
            return;
        }
        m.last_ts = Some(s.timestamp);
        let f = m.extractor.push(s);
        if m.times.len() == w {
            m.times.pop_front();
            for q in m.metrics.iter_mut() {
                q.pop_front();
            }
        }
        m.times.push_back(s.timestamp);
        for (q, v) in m.metrics.iter_mut().zip(f.values) {
            q.push_back(v);
        }
        for fs in &s.filesystems {
            if fs.total_bytes == 0 {
                continue;
            }
            let e = m.filesystems.entry(fs.mount_point.clone()).or_default();
            if e.points.len() == w {
                e.points.pop_front();
            }
            e.points.push_back((s.timestamp, fs.used_bytes as f64));
            e.total = fs.total_bytes;
            e.available = fs.available_bytes;
        }
        // A filesystem that disappeared (unmounted) is forgotten.
        m.filesystems
            .retain(|mp, _| s.filesystems.iter().any(|f| &f.mount_point == mp));
    }

    /// Drops a retired machine.
    pub fn forget(&mut self, machine_id: &str) -> bool {
        self.machines.remove(machine_id).is_some()
    }

    /// The forecast of every metric of `machine_id` `horizon_secs` after its last
    /// sample (metrics with fewer than 3 known values are left out).
    pub fn forecast(&self, machine_id: &str) -> Vec<Forecast> {
        self.forecast_ahead(machine_id, self.params.horizon_secs)
    }

    /// Like [`Self::forecast`], `ahead_secs` after the machine's last sample
    /// (a chart draws the path to the horizon from a few of these).
    pub fn forecast_ahead(&self, machine_id: &str, ahead_secs: f64) -> Vec<Forecast> {
        let Some(m) = self.machines.get(machine_id) else {
            return Vec::new();
        };
        let Some(&last) = m.times.back() else {
            return Vec::new();
        };
        if !ahead_secs.is_finite() || ahead_secs < 0.0 {
            return Vec::new();
        }
        let at = last + ahead_secs;
        let mut out = Vec::new();
        for (f, q) in m.metrics.iter().enumerate() {
            let points: Vec<(f64, f64)> = m
                .times
                .iter()
                .zip(q)
                .filter_map(|(t, v)| v.map(|v| (t - last, v)))
                .collect();
            let bounds = if super::features::is_rate(f) {
                (0.0, f64::INFINITY)
            } else {
                (0.0, 100.0)
            };
            if let Some(mut fc) = linear_forecast(
                FEATURE_NAMES[f],
                &points,
                at - last,
                self.params.confidence,
                bounds,
            ) {
                fc.at = at;
                out.push(fc);
            }
        }
        out
    }

    /// Time until full of each filesystem of `machine_id`, by mount point.
    pub fn filesystems(&self, machine_id: &str) -> Vec<FilesystemForecast> {
        let Some(m) = self.machines.get(machine_id) else {
            return Vec::new();
        };
        let mut out: Vec<FilesystemForecast> = m
            .filesystems
            .iter()
            .filter_map(|(mp, fs)| {
                let last_t = fs.points.back()?.0;
                let pts: Vec<(f64, f64)> =
                    fs.points.iter().map(|(t, u)| (t - last_t, *u)).collect();
                let (slope, secs) =
                    time_until_full(&pts, fs.available, 0.0, self.params.growth_min_t)?;
                Some(FilesystemForecast {
                    mount_point: mp.clone(),
                    total_bytes: fs.total,
                    available_bytes: fs.available,
                    growth_bytes_per_sec: slope,
                    seconds_until_full: secs,
                    samples: pts.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::synth::Rng;

    #[test]
    fn quantiles_match_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
        for (df, want) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (5.0, 2.571),
            (10.0, 2.228),
            (30.0, 2.042),
            (1000.0, 1.962),
        ] {
            let got = student_t_quantile(0.975, df);
            assert!(
                (got - want).abs() / want < 0.003,
                "df {df}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn ols_recovers_a_line_exactly() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        let f = LinearFit::fit(pts.iter().copied()).unwrap();
        assert!((f.slope - 0.5).abs() < 1e-12);
        assert!((f.predict(20.0) - 13.0).abs() < 1e-9);
        assert!(f.residual_se < 1e-9);
        assert!(LinearFit::fit([(1.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(LinearFit::fit([(1.0, 1.0)]).is_none());
    }

    #[test]
    fn the_band_covers_about_95_percent_of_outcomes() {
        // y = 20 + 0.01 t + N(0, 2): forecast 300 s ahead from 120 samples.
        let mut r = Rng::new(11);
        let gauss = |r: &mut Rng| {
            let u1 = r.unit().max(1e-300);
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * r.unit()).cos()
        };
        let (mut covered, trials) = (0, 400);
        for _ in 0..trials {
            let pts: Vec<(f64, f64)> = (0..120)
                .map(|i| (i as f64, 20.0 + 0.01 * i as f64 + 2.0 * gauss(&mut r)))
                .collect();
            let fc = linear_forecast("cpu_usage", &pts, 419.0, 0.95, (0.0, 100.0)).unwrap();
            let truth = 20.0 + 0.01 * 419.0 + 2.0 * gauss(&mut r);
            if fc.lower <= truth && truth <= fc.upper {
                covered += 1;
            }
            assert!(fc.lower <= fc.value && fc.value <= fc.upper);
        }
        let share = covered as f64 / trials as f64;
        assert!((0.92..=0.98).contains(&share), "{share}");
    }

    #[test]
    fn percentages_are_clamped() {
        let pts: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, 90.0 + i as f64)).collect();
        let fc = linear_forecast("cpu_usage", &pts, 300.0, 0.95, (0.0, 100.0)).unwrap();
        assert_eq!(fc.value, 100.0);
        assert_eq!(fc.upper, 100.0);
    }

    fn snap(t: f64, cpu: f64, fs_used: u64) -> Snapshot {
        let mut s = Snapshot::new("m", t);
        s.cpu_usage = cpu;
        s.memory_usage = 40.0;
        s.filesystems = vec![sysmon_core::snapshot::Filesystem {
            mount_point: "/data".into(),
            fs_type: "ext4".into(),
            total_bytes: 1_000_000,
            used_bytes: fs_used,
            available_bytes: 1_000_000 - fs_used,
        }];
        s
    }

    #[test]
    fn forecaster_forecasts_every_metric_and_time_until_full() {
        let mut fc = Forecaster::new(ForecastParams::default());
        // CPU rising 0.01 points/s; the filesystem filling at 100 bytes/s.
        for i in 0..200 {
            let t = 1000.0 + i as f64;
            fc.observe(&snap(t, 10.0 + 0.01 * i as f64, 500_000 + 100 * i));
        }
        let all = fc.forecast("m");
        let cpu = all.iter().find(|f| f.metric == "cpu_usage").unwrap();
        assert!((cpu.value - (10.0 + 0.01 * 499.0)).abs() < 1e-6, "{cpu:?}");
        assert_eq!(cpu.at, 1199.0 + 300.0);
        assert!(all.iter().any(|f| f.metric == "disk_read_rate"));
        let fs = &fc.filesystems("m")[0];
        assert_eq!(fs.mount_point, "/data");
        assert!((fs.growth_bytes_per_sec - 100.0).abs() < 1e-6);
        // 1e6 - (500_000 + 19_900) = 480_100 bytes left at 100 B/s.
        let secs = fs.seconds_until_full.unwrap();
        assert!((secs - 4801.0).abs() < 1.0, "{secs}");
        assert!(fc.forecast("unknown").is_empty());
    }

    #[test]
    fn a_flat_or_shrinking_filesystem_never_fills() {
        let mut fc = Forecaster::new(ForecastParams::default());
        let mut r = Rng::new(3);
        for i in 0..100 {
            let noise = (r.unit() * 1000.0) as u64;
            fc.observe(&snap(i as f64, 10.0, 600_000 + noise));
        }
        assert_eq!(fc.filesystems("m")[0].seconds_until_full, None);
        let mut fc = Forecaster::new(ForecastParams::default());
        for i in 0..100 {
            fc.observe(&snap(i as f64, 10.0, 600_000 - 100 * i));
        }
        assert_eq!(fc.filesystems("m")[0].seconds_until_full, None);
        // Already full: zero seconds.
        let mut fc = Forecaster::new(ForecastParams::default());
        for i in 0..5 {
            fc.observe(&snap(i as f64, 10.0, 1_000_000));
        }
        assert_eq!(fc.filesystems("m")[0].seconds_until_full, Some(0.0));
    }
}
