//! Per-machine feature extraction: the legacy Isolation Forest's inputs, and
//! the host details the streaming detector also watches.
//!
//! From a stream of [`Snapshot`]s of one machine, [`FeatureExtractor`] produces a
//! [`Features`] per sample: CPU %, memory %, and the per-interval rates (bytes per
//! second) of disk read/write and network sent/received, computed from the
//! **cumulative counters** so that legacy messages (which carry no rates) work.
//! These six are the *core* features ([`CORE_FEATURES`]): the Isolation Forest's
//! inputs and the forecasts'. Then four host details, read as core's metrics read
//! them: CPU, memory and I/O pressure stall (`some` avg10, percent) and the
//! busiest disk's utilisation (percent). They are `None` on a machine that sends
//! none (no PSI in its kernel, an older agent, the legacy producer, a NAB
//! series), so the detector behaves there exactly as with the six alone.
//!
//! A rate is only produced when it can be trusted. A counter that goes down
//! (reboot, driver reset, wrap), a step whose time goes backwards or stands still,
//! a gap much longer than the machine's usual interval, or a rate beyond any
//! plausible hardware yields *no* rate for that step (`None`), never a negative
//! value or a huge spike. The next step after such an event rates normally again.

use sysmon_core::metric::Metric;
use sysmon_core::snapshot::Snapshot;

/// The number of features.
pub const FEATURE_COUNT: usize = 10;

/// The core features (the first ones): CPU, memory, disk and network rates,
/// which every machine sends. The Isolation Forest and the forecasts use these.
pub const CORE_FEATURES: usize = 6;

/// The features, in [`Features::values`] order: the same quantities as core's
/// metrics of these names (`docs/metrics.md`), except that the rates are derived
/// here from the cumulative counters.
pub const FEATURE_METRICS: [Metric; FEATURE_COUNT] = [
    Metric::Cpu,
    Metric::Memory,
    Metric::DiskRead,
    Metric::DiskWrite,
    Metric::NetSent,
    Metric::NetRecv,
    Metric::PressureCpuSome,
    Metric::PressureMemorySome,
    Metric::PressureIoSome,
    Metric::DiskUtilization,
];

/// The features' names, in [`Features::values`] order: their metrics'
/// vocabulary names (`cpu_usage`, `memory_usage`, `disk_read_rate`, ...).
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    FEATURE_METRICS[CPU].name(),
    FEATURE_METRICS[MEMORY].name(),
    FEATURE_METRICS[DISK_READ].name(),
    FEATURE_METRICS[DISK_WRITE].name(),
    FEATURE_METRICS[NET_SENT].name(),
    FEATURE_METRICS[NET_RECV].name(),
    FEATURE_METRICS[PRESSURE_CPU].name(),
    FEATURE_METRICS[PRESSURE_MEMORY].name(),
    FEATURE_METRICS[PRESSURE_IO].name(),
    FEATURE_METRICS[DISK_UTILIZATION].name(),
];

/// Index of CPU % in [`Features::values`].
pub const CPU: usize = 0;
/// Index of memory % in [`Features::values`].
pub const MEMORY: usize = 1;
/// Index of the disk read rate (bytes/s) in [`Features::values`].
pub const DISK_READ: usize = 2;
/// Index of the disk write rate (bytes/s) in [`Features::values`].
pub const DISK_WRITE: usize = 3;
/// Index of the network send rate (bytes/s) in [`Features::values`].
pub const NET_SENT: usize = 4;
/// Index of the network receive rate (bytes/s) in [`Features::values`].
pub const NET_RECV: usize = 5;
/// Index of the CPU pressure stall (`some` avg10, %) in [`Features::values`].
pub const PRESSURE_CPU: usize = 6;
/// Index of the memory pressure stall (`some` avg10, %) in [`Features::values`].
pub const PRESSURE_MEMORY: usize = 7;
/// Index of the I/O pressure stall (`some` avg10, %) in [`Features::values`].
pub const PRESSURE_IO: usize = 8;
/// Index of the busiest disk's utilisation (%) in [`Features::values`].
pub const DISK_UTILIZATION: usize = 9;

/// True for the features that are byte rates (as opposed to percentages).
pub fn is_rate(feature: usize) -> bool {
    (DISK_READ..=NET_RECV).contains(&feature)
}

/// A short unit suffix for a feature's raw value, for messages.
pub fn unit(feature: usize) -> &'static str {
    if is_rate(feature) {
        "B/s"
    } else {
        "%"
    }
}

/// One sample's features. A value is `None` when it could not be computed
/// (first sample, counter reset, gap, out-of-range input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// The snapshot's timestamp, seconds since the epoch.
    pub timestamp: f64,
    /// The values, in [`FEATURE_NAMES`] order: percentages 0..=100, rates in bytes/s.
    pub values: [Option<f64>; FEATURE_COUNT],
}

impl Features {
    /// The six core values ([`CORE_FEATURES`]) when every one is known.
    pub fn complete(&self) -> Option<[f64; CORE_FEATURES]> {
        let mut out = [0.0; CORE_FEATURES];
        for (o, v) in out.iter_mut().zip(self.values) {
            *o = v?;
        }
        Some(out)
    }
}

/// Why a step produced no rates; counted by [`FeatureExtractor::skipped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkippedSteps {
    /// Steps where a cumulative counter went down (reboot or reset).
    pub counter_resets: u64,
    /// Steps whose time gap exceeded the allowed maximum.
    pub gaps: u64,
    /// Steps whose timestamp did not advance.
    pub non_increasing_time: u64,
    /// Rates above [`FeatureExtractor::MAX_PLAUSIBLE_RATE`].
    pub implausible: u64,
}

/// Turns one machine's snapshots into [`Features`].
#[derive(Debug, Clone)]
pub struct FeatureExtractor {
    prev: Option<Prev>,
    typical_interval: Option<f64>,
    max_gap_factor: f64,
    skipped: SkippedSteps,
}

#[derive(Debug, Clone, Copy)]
struct Prev {
    timestamp: f64,
    counters: [u64; 4],
    uptime: Option<u64>,
}

impl Default for FeatureExtractor {
    fn default() -> Self {
        FeatureExtractor::new(DEFAULT_MAX_GAP_FACTOR)
    }
}

/// The default for [`FeatureExtractor::new`]: a step longer than 5 usual intervals is a gap.
pub const DEFAULT_MAX_GAP_FACTOR: f64 = 5.0;

impl FeatureExtractor {
    /// Rates above this (1 TB/s) are physically implausible for one host and
    /// are treated like a counter glitch.
    pub const MAX_PLAUSIBLE_RATE: f64 = 1e12;

    /// An extractor that treats a step longer than `max_gap_factor` times the
    /// machine's usual interval as a gap (no rate). The usual interval is the
    /// snapshot's `interval_secs` when present, otherwise a running estimate
    /// from the steps seen so far. A factor below 1.5 is raised to 1.5.
    pub fn new(max_gap_factor: f64) -> Self {
        let max_gap_factor = if max_gap_factor.is_finite() {
            max_gap_factor.max(1.5)
        } else {
            DEFAULT_MAX_GAP_FACTOR
        };
        FeatureExtractor {
            prev: None,
            typical_interval: None,
            max_gap_factor,
            skipped: SkippedSteps::default(),
        }
    }

    /// How many steps produced no rates, and why.
    pub fn skipped(&self) -> SkippedSteps {
        self.skipped
    }

    /// The usual sampling interval in seconds, once known.
    pub fn typical_interval(&self) -> Option<f64> {
        self.typical_interval
    }

    /// The timestamp of the last snapshot pushed, if any.
    pub fn last_timestamp(&self) -> Option<f64> {
        self.prev.map(|p| p.timestamp)
    }

    /// Features of `snapshot`, the next sample of this machine.
    pub fn push(&mut self, snapshot: &Snapshot) -> Features {
        let ts = snapshot.timestamp;
        let pct = |v: f64| (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(v);
        let mut values = [None; FEATURE_COUNT];
        values[CPU] = pct(snapshot.cpu_usage);
        values[MEMORY] = pct(snapshot.memory_usage);
        // Host details: none where the machine sends none.
        for f in CORE_FEATURES..FEATURE_COUNT {
            values[f] = FEATURE_METRICS[f].value(snapshot).and_then(pct);
        }
        let counters = [
            snapshot.disk_io.read,
            snapshot.disk_io.write,
            snapshot.network_io.sent,
            snapshot.network_io.recv,
        ];
        let uptime = snapshot.uptime_secs;
        if !ts.is_finite() {
            self.skipped.non_increasing_time += 1;
            return Features {
                timestamp: ts,
                values,
            };
        }
        if let Some(prev) = self.prev {
            let dt = ts - prev.timestamp;
            if dt <= 0.0 {
                self.skipped.non_increasing_time += 1;
            } else {
                let declared = snapshot.interval_secs.filter(|i| i.is_finite() && *i > 0.0);
                let usual = declared.or(self.typical_interval);
                let is_gap = usual.is_some_and(|u| dt > self.max_gap_factor * u);
                let rebooted = matches!((prev.uptime, uptime), (Some(a), Some(b)) if b < a);
                if is_gap {
                    self.skipped.gaps += 1;
                } else if rebooted {
                    self.skipped.counter_resets += 1;
                } else {
                    let mut any_reset = false;
                    for (i, (&now, &before)) in counters.iter().zip(&prev.counters).enumerate() {
                        if now < before {
                            any_reset = true;
                            continue;
                        }
                        let rate = (now - before) as f64 / dt;
                        if rate > Self::MAX_PLAUSIBLE_RATE {
                            self.skipped.implausible += 1;
                        } else {
                            values[DISK_READ + i] = Some(rate);
                        }
                    }
                    if any_reset {
                        self.skipped.counter_resets += 1;
                    }
                    // Learn the usual interval from accepted steps only.
                    self.typical_interval = Some(match self.typical_interval {
                        None => dt,
                        Some(t) => t + 0.1 * (dt - t),
                    });
                }
                if self.typical_interval.is_none() && declared.is_none() {
                    // The very first step of a legacy stream: take it as the usual interval.
                    self.typical_interval = Some(dt);
                }
            }
        }
        // Re-baseline on every sample whose time advanced (or on the first one):
        // after a reset or a gap the next step rates from here.
        if self.prev.is_none_or(|p| ts > p.timestamp) {
            self.prev = Some(Prev {
                timestamp: ts,
                counters,
                uptime,
            });
        }
        Features {
            timestamp: ts,
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::snapshot::{DiskIo, NetworkIo};

    fn snap(ts: f64, cpu: f64, disk: (u64, u64), net: (u64, u64)) -> Snapshot {
        let mut s = Snapshot::new("m", ts);
        s.cpu_usage = cpu;
        s.memory_usage = 50.0;
        s.disk_io = DiskIo {
            read: disk.0,
            write: disk.1,
        };
        s.network_io = NetworkIo {
            sent: net.0,
            recv: net.1,
        };
        s
    }

    #[test]
    fn rates_come_from_cumulative_counters() {
        let mut fx = FeatureExtractor::default();
        let f0 = fx.push(&snap(100.0, 10.0, (1000, 2000), (0, 0)));
        assert_eq!(f0.values[CPU], Some(10.0));
        assert_eq!(f0.values[DISK_READ], None, "no rate on the first sample");
        let f1 = fx.push(&snap(102.0, 20.0, (3000, 2000), (500, 100)));
        assert_eq!(f1.values[DISK_READ], Some(1000.0));
        assert_eq!(f1.values[DISK_WRITE], Some(0.0));
        assert_eq!(f1.values[NET_SENT], Some(250.0));
        assert_eq!(f1.values[NET_RECV], Some(50.0));
        assert_eq!(f1.complete(), Some([20.0, 50.0, 1000.0, 0.0, 250.0, 50.0]));
    }

    #[test]
    fn a_counter_reset_yields_no_rate_and_the_next_step_rates_again() {
        let mut fx = FeatureExtractor::default();
        fx.push(&snap(0.0, 1.0, (10_000, 10_000), (10_000, 10_000)));
        fx.push(&snap(1.0, 1.0, (11_000, 11_000), (11_000, 11_000)));
        // Reboot: every counter restarts from a small value.
        let r = fx.push(&snap(2.0, 1.0, (100, 50), (10, 20)));
        assert!(r.values[DISK_READ..].iter().all(Option::is_none), "{r:?}");
        assert_eq!(r.values[CPU], Some(1.0), "CPU and memory are still known");
        assert_eq!(fx.skipped().counter_resets, 1);
        let n = fx.push(&snap(3.0, 1.0, (1100, 1050), (1010, 1020)));
        assert_eq!(n.values[DISK_READ], Some(1000.0));
        assert_eq!(n.values[NET_RECV], Some(1000.0));
    }

    #[test]
    fn only_the_counter_that_went_down_loses_its_rate() {
        let mut fx = FeatureExtractor::default();
        fx.push(&snap(0.0, 1.0, (5000, 5000), (5000, 5000)));
        let f = fx.push(&snap(1.0, 1.0, (6000, 10), (7000, 8000)));
        assert_eq!(f.values[DISK_READ], Some(1000.0));
        assert_eq!(f.values[DISK_WRITE], None);
        assert_eq!(f.values[NET_SENT], Some(2000.0));
    }

    #[test]
    fn uptime_going_down_is_a_reboot_even_if_counters_grew() {
        let mut fx = FeatureExtractor::default();
        let mut a = snap(0.0, 1.0, (0, 0), (0, 0));
        a.uptime_secs = Some(5000);
        fx.push(&a);
        let mut b = snap(1.0, 1.0, (1 << 40, 1 << 40), (1 << 40, 1 << 40));
        b.uptime_secs = Some(3);
        let f = fx.push(&b);
        assert!(f.values[DISK_READ..].iter().all(Option::is_none));
    }

    #[test]
    fn a_long_gap_yields_no_rate() {
        let mut fx = FeatureExtractor::default();
        for i in 0..10 {
            let f = fx.push(&snap(i as f64, 1.0, (i * 100, 0), (0, 0)));
            if i > 0 {
                assert_eq!(f.values[DISK_READ], Some(100.0));
            }
        }
        assert!((fx.typical_interval().unwrap() - 1.0).abs() < 1e-9);
        // 60 s of silence, then the counter has grown by a lot.
        let f = fx.push(&snap(69.0, 1.0, (1_000_000, 0), (0, 0)));
        assert_eq!(f.values[DISK_READ], None);
        assert_eq!(fx.skipped().gaps, 1);
        let f = fx.push(&snap(70.0, 1.0, (1_000_100, 0), (0, 0)));
        assert_eq!(f.values[DISK_READ], Some(100.0));
        // A step of 3 intervals (one or two lost samples) still rates.
        let f = fx.push(&snap(73.0, 1.0, (1_000_400, 0), (0, 0)));
        assert_eq!(f.values[DISK_READ], Some(100.0));
    }

    #[test]
    fn declared_interval_defines_the_gap() {
        let mut fx = FeatureExtractor::default();
        let mut a = snap(0.0, 1.0, (0, 0), (0, 0));
        a.interval_secs = Some(10.0);
        fx.push(&a);
        let mut b = snap(30.0, 1.0, (3000, 0), (0, 0));
        b.interval_secs = Some(10.0);
        assert_eq!(fx.push(&b).values[DISK_READ], Some(100.0));
        let mut c = snap(100.0, 1.0, (10_000, 0), (0, 0));
        c.interval_secs = Some(10.0);
        assert_eq!(fx.push(&c).values[DISK_READ], None, "70 s > 5 x 10 s");
    }

    #[test]
    fn time_going_backwards_or_standing_still_yields_no_rate_and_no_garbage() {
        let mut fx = FeatureExtractor::default();
        fx.push(&snap(10.0, 1.0, (1000, 0), (0, 0)));
        let dup = fx.push(&snap(10.0, 1.0, (2000, 0), (0, 0)));
        assert_eq!(dup.values[DISK_READ], None);
        let back = fx.push(&snap(5.0, 1.0, (3000, 0), (0, 0)));
        assert_eq!(back.values[DISK_READ], None);
        // The baseline is still the sample at t=10.
        let f = fx.push(&snap(11.0, 1.0, (1500, 0), (0, 0)));
        assert_eq!(f.values[DISK_READ], Some(500.0));
        assert_eq!(fx.skipped().non_increasing_time, 2);
    }

    #[test]
    fn implausible_rates_and_bad_percentages_are_dropped() {
        let mut fx = FeatureExtractor::default();
        fx.push(&snap(0.0, 1.0, (0, 0), (0, 0)));
        let f = fx.push(&snap(1.0, f64::NAN, (u64::MAX / 2, 0), (0, 0)));
        assert_eq!(f.values[DISK_READ], None);
        assert_eq!(f.values[CPU], None);
        assert_eq!(fx.skipped().implausible, 1);
        let g = fx.push(&snap(2.0, 150.0, (u64::MAX / 2, 0), (0, 0)));
        assert_eq!(g.values[CPU], None);
        assert_eq!(g.values[DISK_READ], Some(0.0));
    }

    #[test]
    fn features_are_named_by_the_metric_vocabulary() {
        use sysmon_core::metric::Usage;
        assert_eq!(FEATURE_METRICS.to_vec(), Metric::usable(Usage::Detector));
        for (f, m) in FEATURE_METRICS.iter().enumerate() {
            assert_eq!(FEATURE_NAMES[f].parse::<Metric>().unwrap(), *m);
            assert_eq!(is_rate(f), m.unit() == "bytes/s", "{}", m.name());
        }
        assert_eq!(FEATURE_NAMES[CPU], "cpu_usage");
        assert_eq!(FEATURE_NAMES[NET_RECV], "net_recv_rate");
        assert_eq!(FEATURE_NAMES[PRESSURE_CPU], "pressure_cpu_some_avg10");
        assert_eq!(FEATURE_NAMES[DISK_UTILIZATION], "disk_utilization_percent");
        assert!((CORE_FEATURES..FEATURE_COUNT).all(|f| FEATURE_METRICS[f].is_host_detail()));
    }

    #[test]
    fn host_details_are_features_when_sent_and_none_otherwise() {
        let mut fx = FeatureExtractor::default();
        let plain = fx.push(&snap(100.0, 10.0, (0, 0), (0, 0)));
        assert!(plain.values[CORE_FEATURES..].iter().all(Option::is_none));
        let mut s = snap(101.0, 10.0, (0, 0), (0, 0));
        sysmon_core::synth::fill_host_details(&mut s);
        let f = fx.push(&s);
        assert_eq!(f.values[PRESSURE_CPU], Metric::PressureCpuSome.value(&s));
        assert_eq!(f.values[PRESSURE_IO], Some(1.5));
        assert_eq!(
            f.values[DISK_UTILIZATION],
            Metric::DiskUtilization.value(&s)
        );
        assert!(f.values[PRESSURE_MEMORY].is_some());
        // The core vector is the same with or without them.
        assert_eq!(f.complete().map(|c| c[CPU]), Some(10.0));
        // Out-of-range percentages are dropped like CPU's.
        s.timestamp = 102.0;
        s.disks[0].utilization_percent = Some(250.0);
        assert_eq!(fx.push(&s).values[DISK_UTILIZATION], None);
    }
}
