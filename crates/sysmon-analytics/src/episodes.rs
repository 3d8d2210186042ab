//! Anomaly *episodes*: a flag that persists is one anomaly with a start, an end
//! and a peak, not a flag per sample.
//!
//! [`EpisodeTracker`] follows the per-sample verdicts of [`AnomalyDetector`]
//! (through [`AnomalyDetector::observe_detailed`]) for any number of machines.
//! An episode opens on a machine's first flagged sample and stays open while
//! flags keep coming; it closes (hysteresis) once `quiet_samples` consecutive
//! samples of that machine are not flagged, and then its end is the last flagged
//! sample. It records the peak (highest score, its time and reasons) and every
//! metric that took part.
//!
//! [`AnomalyDetector`]: super::AnomalyDetector
//! [`AnomalyDetector::observe_detailed`]: super::AnomalyDetector::observe_detailed

use std::collections::HashMap;

use super::detector::{AnomalyScore, Verdict};
use super::features::{FEATURE_COUNT, FEATURE_NAMES, MEMORY};

/// The default hysteresis: an episode closes after this many unflagged samples.
pub const DEFAULT_QUIET_SAMPLES: u32 = 3;

/// The name used in [`Episode::metrics`] for the Isolation Forest.
pub const FOREST_METRIC: &str = "isolation_forest";

/// One anomaly episode of one machine (core's shape, stored and served as is).
pub use sysmon_core::alert::Episode;

#[derive(Debug, Clone)]
struct Open {
    episode: Episode,
    quiet: u32,
}

/// Episodes of many machines (see the module documentation).
#[derive(Debug, Clone)]
pub struct EpisodeTracker {
    quiet_samples: u32,
    open: HashMap<String, Open>,
}

impl Default for EpisodeTracker {
    fn default() -> Self {
        EpisodeTracker::new(DEFAULT_QUIET_SAMPLES)
    }
}

fn metrics_of(verdict: &Verdict) -> impl Iterator<Item = &'static str> + '_ {
    let flagged = verdict.streaming.flagged().map(|d| d.feature);
    let trend = verdict
        .streaming
        .trend
        .filter(|t| t.ratio >= 1.0)
        .map(|_| MEMORY);
    flagged
        .chain(trend)
        .filter(|f| *f < FEATURE_COUNT)
        .map(|f| FEATURE_NAMES[f])
        .chain(verdict.forest_agreed.then_some(FOREST_METRIC))
}

impl EpisodeTracker {
    /// A tracker closing an episode after `quiet_samples` (at least 1) unflagged samples.
    pub fn new(quiet_samples: u32) -> Self {
        EpisodeTracker {
            quiet_samples: quiet_samples.max(1),
            open: HashMap::new(),
        }
    }

    /// Follows one verdict. Returns the episode this sample closed, if any.
    pub fn observe(&mut self, score: &AnomalyScore, verdict: &Verdict) -> Option<Episode> {
        if score.anomaly {
            let open = self
                .open
                .entry(score.machine_id.clone())
                .or_insert_with(|| Open {
                    episode: Episode {
                        machine_id: score.machine_id.clone(),
                        start: score.timestamp,
                        end: score.timestamp,
                        peak_at: score.timestamp,
                        peak_score: f64::NEG_INFINITY,
                        samples: 0,
                        metrics: Vec::new(),
                        reasons: Vec::new(),
                        open: true,
                    },
                    quiet: 0,
                });
            open.quiet = 0;
            let e = &mut open.episode;
            e.end = score.timestamp;
            e.samples = e.samples.saturating_add(1);
            if score.score > e.peak_score {
                e.peak_score = score.score;
                e.peak_at = score.timestamp;
                e.reasons.clone_from(&score.reasons);
            }
            for m in metrics_of(verdict) {
                if !e.metrics.iter().any(|x| x == m) {
                    e.metrics.push(m.to_owned());
                }
            }
            return None;
        }
        let open = self.open.get_mut(score.machine_id.as_str())?;
        open.quiet += 1;
        if open.quiet < self.quiet_samples {
            return None;
        }
        self.open
            .remove(score.machine_id.as_str())
            .map(|o| Episode {
                open: false,
                ..o.episode
            })
    }

    /// The open episode of `machine_id`, if any.
    pub fn current(&self, machine_id: &str) -> Option<&Episode> {
        self.open.get(machine_id).map(|o| &o.episode)
    }

    /// Closes and returns every open episode (end of input), oldest start first.
    pub fn finish(&mut self) -> Vec<Episode> {
        let mut v: Vec<Episode> = self
            .open
            .drain()
            .map(|(_, o)| Episode {
                open: false,
                ..o.episode
            })
            .collect();
        v.sort_by(|a, b| a.start.total_cmp(&b.start));
        v
    }

    /// Forgets a machine's open episode.
    pub fn forget(&mut self, machine_id: &str) -> bool {
        self.open.remove(machine_id).is_some()
    }

    /// Closes a machine's open episode where it stands (the machine is no
    /// longer tracked) and returns it.
    pub fn close(&mut self, machine_id: &str) -> Option<Episode> {
        self.open.remove(machine_id).map(|o| Episode {
            open: false,
            ..o.episode
        })
    }

    /// The machines with an open episode.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AnomalyDetector, DetectorConfig};
    use sysmon_core::synth::SyntheticMachine;

    #[test]
    fn a_persisting_flag_is_one_episode_with_its_peak() {
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let mut m = SyntheticMachine::new("web-01", 7);
        let mut t = EpisodeTracker::default();
        let t0 = 1_764_086_400.0;
        let mut closed = Vec::new();
        for i in 0..700 {
            let mut s = m.next_snapshot(t0 + i as f64, 0);
            if (600..606).contains(&i) {
                s.cpu_usage = if i == 602 { 100.0 } else { 97.0 };
            }
            let (a, v) = d.observe_detailed(&s).unwrap();
            closed.extend(t.observe(&a, &v));
        }
        closed.extend(t.finish());
        let ours: Vec<&Episode> = closed.iter().filter(|e| e.start >= t0 + 600.0).collect();
        assert_eq!(ours.len(), 1, "{closed:#?}");
        let e = ours[0];
        assert_eq!(e.start, t0 + 600.0);
        assert!(e.end <= t0 + 605.0 && e.end >= e.start, "{e:?}");
        assert!(e.metrics.iter().any(|m| m == "cpu_usage"), "{e:?}");
        assert!(!e.reasons.is_empty() && !e.open);
        assert!(e.peak_score >= 0.5);
    }

    #[test]
    fn flags_apart_by_more_than_the_hysteresis_are_two_episodes() {
        let mut t = EpisodeTracker::new(2);
        let v = Verdict::default();
        let s = |ts: f64, anomaly: bool| AnomalyScore {
            machine_id: "m".into(),
            timestamp: ts,
            score: if anomaly { 0.7 } else { 0.1 },
            anomaly,
            reasons: if anomaly { vec!["x".into()] } else { vec![] },
            forest_score: None,
        };
        let flags = [true, false, true, false, false, true, true];
        let mut closed = Vec::new();
        for (i, f) in flags.iter().enumerate() {
            closed.extend(t.observe(&s(i as f64, *f), &v));
        }
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (closed[0].start, closed[0].end, closed[0].samples),
            (0.0, 2.0, 2)
        );
        assert_eq!(t.current("m").map(|e| e.start), Some(5.0));
        let rest = t.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].end, 6.0);
    }
}
