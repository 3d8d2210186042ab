//! Detection quality on labelled traces: true-positive rate per event kind,
//! false-positive rate per normal sample, and detection latency.
//!
//! * An event is **detected** when the detector flags any sample of its machine
//!   from its first sample to `grace` samples after its last.
//! * **Latency** is counted in samples of that machine, the event's first sample
//!   being 1: a spike flagged on its very first sample has latency 1.
//! * A **false positive** is a flag on a [`SampleLabel::Normal`] sample that is
//!   not within `grace` samples after an event. Warm-up samples (before the
//!   first forest exists) are neither normal nor events, and are not counted.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::detector::{AnomalyDetector, DetectorConfig};
use super::tracegen::{generate, EventKind, LabelledTrace, SampleLabel, TraceConfig};
use sysmon_core::error::CoreError;

/// Samples after an event's end during which a flag still counts for it (and is
/// not a false positive).
pub const DEFAULT_GRACE: usize = 2;

/// Results for one kind of event.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindReport {
    /// Events of this kind.
    pub events: usize,
    /// Events detected.
    pub detected: usize,
    /// Latency of each detected event, in samples (1 = on the first sample).
    pub latencies: Vec<usize>,
    /// Detected events whose first flag came from the streaming detector (spike or ramp).
    pub first_by_streaming: usize,
    /// Detected events whose first flag came from the forest alone.
    pub first_by_forest_only: usize,
}

impl KindReport {
    /// Detected share, 0..=1 (1 when there were no events).
    pub fn tpr(&self) -> f64 {
        if self.events == 0 {
            1.0
        } else {
            self.detected as f64 / self.events as f64
        }
    }

    /// Median latency in samples, if anything was detected.
    pub fn median_latency(&self) -> Option<f64> {
        median_usize(&self.latencies)
    }

    /// The 90th-percentile latency in samples.
    pub fn p90_latency(&self) -> Option<usize> {
        let mut v = self.latencies.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        Some(v[((v.len() - 1) as f64 * 0.9).round() as usize])
    }
}

fn median_usize(v: &[usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    })
}

/// The evaluation of a detector over one or more traces.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalReport {
    /// Per event kind.
    pub kinds: BTreeMap<EventKind, KindReport>,
    /// Normal samples scored.
    pub normal_samples: usize,
    /// Normal samples flagged.
    pub false_positives: usize,
    /// False positives raised by the streaming detector (possibly with the forest).
    pub false_positives_streaming: usize,
    /// False positives raised by the forest alone.
    pub false_positives_forest_only: usize,
    /// Snapshots the detector refused (`observe` returned `None`).
    pub unscored: usize,
}

impl EvalReport {
    /// All events.
    pub fn events(&self) -> usize {
        self.kinds.values().map(|k| k.events).sum()
    }

    /// All detected events.
    pub fn detected(&self) -> usize {
        self.kinds.values().map(|k| k.detected).sum()
    }

    /// Detected share of all events.
    pub fn tpr(&self) -> f64 {
        let e = self.events();
        if e == 0 {
            1.0
        } else {
            self.detected() as f64 / e as f64
        }
    }

    /// Flagged share of normal samples.
    pub fn fpr(&self) -> f64 {
        if self.normal_samples == 0 {
            0.0
        } else {
            self.false_positives as f64 / self.normal_samples as f64
        }
    }

    /// Adds `other`'s counts to this report.
    pub fn merge(&mut self, other: &EvalReport) {
        for (k, r) in &other.kinds {
            let e = self.kinds.entry(*k).or_default();
            e.events += r.events;
            e.detected += r.detected;
            e.latencies.extend_from_slice(&r.latencies);
            e.first_by_streaming += r.first_by_streaming;
            e.first_by_forest_only += r.first_by_forest_only;
        }
        self.normal_samples += other.normal_samples;
        self.false_positives += other.false_positives;
        self.false_positives_streaming += other.false_positives_streaming;
        self.false_positives_forest_only += other.false_positives_forest_only;
        self.unscored += other.unscored;
    }

    /// A plain-text table of the figures.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "event kind      events  detected    TPR   median latency  p90 latency  first flag (stream/forest)\n",
        );
        for (k, r) in &self.kinds {
            out.push_str(&format!(
                "{:<15} {:>6}  {:>8}  {:>5.1}%  {:>14}  {:>11}  {}/{}\n",
                k.name(),
                r.events,
                r.detected,
                r.tpr() * 100.0,
                r.median_latency().map_or("-".into(), |m| format!("{m:.1}")),
                r.p90_latency().map_or("-".into(), |m| m.to_string()),
                r.first_by_streaming,
                r.first_by_forest_only,
            ));
        }
        out.push_str(&format!(
            "all             {:>6}  {:>8}  {:>5.1}%\n",
            self.events(),
            self.detected(),
            self.tpr() * 100.0
        ));
        out.push_str(&format!(
            "false positives: {} of {} normal samples = {:.3}% (streaming {}, forest only {})\n",
            self.false_positives,
            self.normal_samples,
            self.fpr() * 100.0,
            self.false_positives_streaming,
            self.false_positives_forest_only
        ));
        out
    }
}

/// Runs a fresh [`AnomalyDetector`] with `config` over `trace`.
pub fn evaluate(
    trace: &LabelledTrace,
    config: &DetectorConfig,
    grace: usize,
) -> Result<EvalReport, CoreError> {
    let mut detector = AnomalyDetector::new(config.clone())?;
    let mut report = EvalReport::default();
    for e in &trace.events {
        report.kinds.entry(e.kind).or_default().events += 1;
    }
    // Per event: index of its first sample in the machine's stream, and the first flag.
    let mut first_sample: HashMap<usize, usize> = HashMap::new();
    let mut first_flag: HashMap<usize, (usize, bool)> = HashMap::new();
    // Per machine: samples seen, and the last event with its last sample index.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut last_event: HashMap<&str, (usize, usize)> = HashMap::new();
    for (snap, label) in trace.snapshots.iter().zip(&trace.labels) {
        let idx = {
            let c = seen.entry(snap.machine_id.as_str()).or_insert(0);
            *c += 1;
            *c
        };
        let Some((score, verdict)) = detector.observe_detailed(snap) else {
            report.unscored += 1;
            continue;
        };
        let by_streaming = verdict.streaming_flagged();
        match *label {
            SampleLabel::WarmUp => {}
            SampleLabel::Event(e) => {
                first_sample.entry(e).or_insert(idx);
                last_event.insert(snap.machine_id.as_str(), (e, idx));
                if score.anomaly {
                    first_flag.entry(e).or_insert((idx, by_streaming));
                }
            }
            SampleLabel::Normal => {
                let in_grace = last_event
                    .get(snap.machine_id.as_str())
                    .filter(|(_, end)| idx <= end + grace);
                if let Some((e, _)) = in_grace {
                    if score.anomaly {
                        first_flag.entry(*e).or_insert((idx, by_streaming));
                    }
                } else {
                    report.normal_samples += 1;
                    if score.anomaly {
                        report.false_positives += 1;
                        if by_streaming {
                            report.false_positives_streaming += 1;
                        } else {
                            report.false_positives_forest_only += 1;
                        }
                    }
                }
            }
        }
    }
    for (e, (flag_idx, by_streaming)) in first_flag {
        let kind = trace.events[e].kind;
        let start = first_sample.get(&e).copied().unwrap_or(flag_idx);
        let r = report.kinds.entry(kind).or_default();
        r.detected += 1;
        r.latencies.push(flag_idx + 1 - start);
        if by_streaming {
            r.first_by_streaming += 1;
        } else {
            r.first_by_forest_only += 1;
        }
    }
    for r in report.kinds.values_mut() {
        r.latencies.sort_unstable();
    }
    Ok(report)
}

/// Generates a trace per seed (other parameters from `trace`) and merges the
/// evaluations.
pub fn evaluate_seeds(
    seeds: &[u64],
    trace: &TraceConfig,
    config: &DetectorConfig,
    grace: usize,
) -> Result<EvalReport, CoreError> {
    let mut total = EvalReport::default();
    for &seed in seeds {
        let t = generate(&TraceConfig {
            seed,
            ..trace.clone()
        });
        total.merge(&evaluate(&t, config, grace)?);
    }
    for k in EventKind::ALL {
        total.kinds.entry(k).or_default();
    }
    for r in total.kinds.values_mut() {
        r.latencies.sort_unstable();
    }
    Ok(total)
}

/// The seeds the detector's defaults were tuned on.
pub const TUNING_SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// Seeds never used for tuning: the figures reported for the defaults. (A first
/// held-out set, 1001–1006, exposed a weakness on moderate network surges and was
/// then looked at; see `docs/anomaly-detection.md`. These were used once, at the end.)
pub const HELD_OUT_SEEDS: [u64; 6] = [2001, 2002, 2003, 2004, 2005, 2006];

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_targets(name: &str, r: &EvalReport) {
        println!("{name}:\n{}", r.table());
        assert!(r.events() >= 150, "{name}: too few events to judge");
        assert!(r.tpr() >= 0.95, "{name}: TPR {:.3} < 0.95", r.tpr());
        assert!(r.fpr() <= 0.01, "{name}: FPR {:.4} > 0.01", r.fpr());
        for k in [
            EventKind::CpuSpike,
            EventKind::DiskBurst,
            EventKind::NetworkSurge,
        ] {
            let kr = &r.kinds[&k];
            assert!(kr.tpr() >= 0.95, "{name}: {k:?} TPR {:.3}", kr.tpr());
            let m = kr.median_latency().unwrap_or(f64::INFINITY);
            assert!(m <= 2.0, "{name}: {k:?} median latency {m}");
        }
        let leak = &r.kinds[&EventKind::MemoryLeak];
        assert!(
            leak.tpr() >= 0.9,
            "{name}: memory leak TPR {:.3}",
            leak.tpr()
        );
        assert_eq!(r.unscored, 0);
    }

    /// Quality (not timing): the defaults meet the targets on traces
    /// whose seeds were never used for tuning.
    #[test]
    fn default_detector_meets_the_targets_on_held_out_traces() {
        let cfg = DetectorConfig::default();
        let t = TraceConfig::default();
        let held_out = evaluate_seeds(&HELD_OUT_SEEDS, &t, &cfg, DEFAULT_GRACE).unwrap();
        assert_targets("held-out seeds", &held_out);
    }

    #[test]
    fn a_detector_that_never_flags_fails_the_evaluation() {
        // The evaluation can fail: with impossible thresholds nothing is detected.
        let cfg = DetectorConfig {
            z_threshold: 1e9,
            sustained_samples: 0,
            trend_window: 0,
            forest_min_score: 0.999,
            ..DetectorConfig::default()
        };
        let t = TraceConfig {
            machines: 3,
            samples: 1500,
            ..TraceConfig::default()
        };
        let r = evaluate_seeds(&[9], &t, &cfg, DEFAULT_GRACE).unwrap();
        assert!(r.events() > 0);
        assert_eq!(r.detected(), 0);
        assert_eq!(r.tpr(), 0.0);
        assert_eq!(r.false_positives, 0);
    }

    #[test]
    fn a_detector_that_always_flags_has_full_fpr() {
        let cfg = DetectorConfig {
            z_threshold: 1e-9,
            min_change_cpu: 1e-9,
            min_change_memory: 1e-9,
            min_change_disk: 1e-9,
            min_change_network: 1e-9,
            two_sided: true,
            ..DetectorConfig::default()
        };
        let t = TraceConfig {
            machines: 2,
            samples: 1200,
            ..TraceConfig::default()
        };
        let r = evaluate_seeds(&[9], &t, &cfg, DEFAULT_GRACE).unwrap();
        assert!(r.fpr() > 0.95, "{}", r.fpr());
        assert_eq!(r.tpr(), 1.0);
        for k in r.kinds.values().filter(|k| k.events > 0) {
            assert_eq!(k.median_latency(), Some(1.0));
        }
    }

    /// The full report on tuning and held-out seeds:
    /// `cargo test -p sysmon-core --release eval_report -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn eval_report() {
        let cfg = DetectorConfig::default();
        let t = TraceConfig::default();
        let first_held_out = [1001, 1002, 1003, 1004, 1005, 1006];
        for (name, seeds) in [
            ("tuning", &TUNING_SEEDS[..]),
            ("first held-out (looked at)", &first_held_out[..]),
            ("held-out", &HELD_OUT_SEEDS[..]),
        ] {
            let r = evaluate_seeds(seeds, &t, &cfg, DEFAULT_GRACE).unwrap();
            println!("{name} seeds {seeds:?}\n{}", r.table());
            for (k, v) in &r.kinds {
                println!("  {} latencies {:?}", k.name(), v.latencies);
            }
        }
        // Stress: the same held-out traces with every event made smaller.
        for scale in [0.75, 0.5, 0.35] {
            let t = TraceConfig {
                magnitude_scale: scale,
                ..TraceConfig::default()
            };
            let r = evaluate_seeds(&HELD_OUT_SEEDS, &t, &cfg, DEFAULT_GRACE).unwrap();
            println!("held-out seeds, events x{scale}\n{}", r.table());
        }
    }
}
