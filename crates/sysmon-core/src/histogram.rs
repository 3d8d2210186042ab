//! [`LatencyHistogram`]: a small, fixed, lock-free log-bucket histogram of
//! durations (microsecond resolution), for the ingester's end-to-end latency.
//!
//! Values are binned with 8 sub-buckets per power of two, so a reported
//! quantile is the upper bound of its bucket: at most 12.5 % above the true
//! value (exact below 16 µs). Recording is a few atomic adds; memory is fixed
//! (304 counters) whatever the number of samples. Values above ~12.7 days are
//! clamped into the last bucket; the exact maximum is kept separately.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (a power of two itself).
const SUB: u64 = 8;
const SUB_BITS: u32 = 3;
/// Largest value binned separately, in microseconds (2^40 - 1 µs ≈ 12.7 days).
const MAX_BINNED: u64 = (1 << 40) - 1;
/// Number of buckets: index of [`MAX_BINNED`] plus one.
const BUCKETS: usize = 304;

/// Bucket index of a value in microseconds (values above [`MAX_BINNED`] are clamped).
fn index(v: u64) -> usize {
    let v = v.min(MAX_BINNED);
    if v < 2 * SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) & (SUB - 1);
    ((u64::from(msb - SUB_BITS + 1)) * SUB + sub) as usize
}

/// Largest value (µs) that falls into bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let msb = i / SUB + u64::from(SUB_BITS) - 1;
    let sub = i % SUB;
    let shift = msb - u64::from(SUB_BITS);
    ((SUB + sub) << shift) + (1 << shift) - 1
}

/// A lock-free histogram of durations with log-spaced buckets.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

/// Quantiles of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median (bucket upper bound).
    pub p50: Duration,
    /// 90th percentile (bucket upper bound).
    pub p90: Duration,
    /// 99th percentile (bucket upper bound).
    pub p99: Duration,
    /// Largest value recorded (exact).
    pub max: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(us);
    }

    /// Records one duration given in seconds; negative values (a sample stamped
    /// in the future by a skewed clock) and NaN count as zero.
    pub fn record_secs(&self, secs: f64) {
        let us = if secs.is_finite() && secs > 0.0 {
            // `as` saturates for values beyond u64.
            (secs * 1e6) as u64
        } else if secs == f64::INFINITY {
            u64::MAX
        } else {
            0
        };
        self.record_micros(us);
    }

    fn record_micros(&self, us: u64) {
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us.min(MAX_BINNED), Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0.0..=1.0) as the upper bound of its bucket, capped at
    /// the exact maximum; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        Duration::from_micros(quantile_of(&counts, total, q, self.max_us()))
    }

    fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }

    /// p50, p90, p99, max and mean from one consistent read of the buckets.
    pub fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max = self.max_us();
        let sum = self.sum_us.load(Ordering::Relaxed);
        LatencySummary {
            count: total,
            p50: Duration::from_micros(quantile_of(&counts, total, 0.50, max)),
            p90: Duration::from_micros(quantile_of(&counts, total, 0.90, max)),
            p99: Duration::from_micros(quantile_of(&counts, total, 0.99, max)),
            max: Duration::from_micros(max),
            mean: Duration::from_micros(sum.checked_div(total).unwrap_or(0)),
        }
    }
}

fn quantile_of(counts: &[u64], total: u64, q: f64, max: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return upper_bound(i).min(max);
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        // Every value lands in a bucket whose bounds contain it, and buckets
        // tile the range with no gaps.
        let mut prev_upper: Option<u64> = None;
        for i in 0..BUCKETS {
            let up = upper_bound(i);
            let low = prev_upper.map_or(0, |p| p + 1);
            assert!(low <= up, "bucket {i}");
            assert_eq!(index(low), i, "lower bound of bucket {i}");
            assert_eq!(index(up), i, "upper bound of bucket {i}");
            prev_upper = Some(up);
        }
        assert_eq!(prev_upper, Some(MAX_BINNED));
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_at_most_one_eighth() {
        for v in [17u64, 100, 999, 12_345, 1_000_000, 987_654_321] {
            let up = upper_bound(index(v));
            assert!(up >= v);
            assert!((up - v) as f64 <= v as f64 / 8.0, "{v} -> {up}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let h = LatencyHistogram::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let within = |d: Duration, want_ms: f64| {
            let got = d.as_secs_f64() * 1e3;
            assert!(
                got >= want_ms && got <= want_ms * 1.125 + 0.001,
                "{got} ms vs {want_ms} ms"
            );
        };
        within(s.p50, 500.0);
        within(s.p90, 900.0);
        within(s.p99, 990.0);
        assert_eq!(s.max, Duration::from_millis(1000));
        assert!((s.mean.as_secs_f64() - 0.5005).abs() < 1e-3);
    }

    #[test]
    fn quantile_never_exceeds_max_and_empty_is_zero() {
        let h = LatencyHistogram::new();
        assert_eq!(h.summary(), LatencySummary::default());
        h.record(Duration::from_micros(1_000_001));
        assert_eq!(h.quantile(0.99), Duration::from_micros(1_000_001));
        assert_eq!(h.quantile(0.0), Duration::from_micros(1_000_001));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let h = LatencyHistogram::new();
        h.record_secs(-3.0);
        h.record_secs(f64::NAN);
        h.record_secs(f64::INFINITY);
        h.record_secs(1e300);
        h.record(Duration::MAX);
        assert_eq!(h.count(), 5);
        assert_eq!(h.quantile(0.4), Duration::ZERO);
        assert_eq!(
            h.quantile(f64::NAN),
            Duration::from_micros(upper_bound(BUCKETS - 1))
        );
    }

    #[test]
    fn concurrent_recording_counts_everything() {
        let h = std::sync::Arc::new(LatencyHistogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record(Duration::from_micros(i * 7 + t));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recording thread");
        }
        assert_eq!(h.count(), 40_000);
    }
}
