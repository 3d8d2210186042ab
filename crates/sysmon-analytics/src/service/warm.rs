//! Warming the detector from the store: when a machine's samples arrive at an
//! ingester whose detector has no state for it — the ingester restarted, or a
//! Kafka partition moved here from another ingester of the group — its recent
//! stored history is fed through the detector first, so that it is scored at
//! once with the baseline it had, instead of going through a new warm-up
//! (during which nothing is flagged) and a new training window.
//!
//! Bounded: at most the detector's training window of samples per machine,
//! history no older than [`MAX_LOOKBACK_SECS`], and at most [`BUDGET`] of reads
//! per batch; machines beyond the budget start cold (counted, logged once per
//! batch). A store that fails makes the batch's machines start cold; it never
//! holds analytics back for longer than the budget.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sysmon_core::snapshot::Snapshot;
use sysmon_core::SnapshotStore;
use tracing::{info, warn};

use super::{lock, AnalyticsEngine, AnalyticsStats, ColdMachine};
use std::sync::atomic::Ordering;

/// Most time spent reading history for one batch.
pub(super) const BUDGET: Duration = Duration::from_secs(2);

/// History older than this is not read (6 h).
pub(super) const MAX_LOOKBACK_SECS: f64 = 6.0 * 3600.0;

/// Sampling interval assumed for a machine whose snapshots do not say (the
/// legacy agent's and sysmon's default).
const DEFAULT_INTERVAL_SECS: f64 = 1.0;

/// The time range to read for `cold`, wanting `samples` samples before its
/// first live one: `(since, until)`, `until` exclusive.
pub(super) fn lookback(cold: &ColdMachine, samples: usize) -> (f64, f64) {
    let interval = cold.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
    // A little more than the window, for jitter and gaps.
    let span = (samples as f64 * interval * 1.25).min(MAX_LOOKBACK_SECS);
    (cold.first - span, cold.first)
}

/// Feeds the stored history of the cold machines of `batch` through the
/// detector of `engine`. Returns `(machines warmed, samples fed, machines
/// left cold)`.
pub(super) async fn warm_cold_machines(
    engine: &Arc<Mutex<AnalyticsEngine>>,
    store: &Arc<dyn SnapshotStore>,
    batch: &[Snapshot],
    stats: &AnalyticsStats,
) -> (usize, usize, usize) {
    let (cold, samples) = {
        let e = lock(engine);
        (e.cold_machines(batch), e.warm_samples())
    };
    if cold.is_empty() || samples == 0 {
        return (0, 0, 0);
    }
    let started = Instant::now();
    let (mut warmed, mut fed, mut left_cold) = (0, 0, 0);
    for (i, c) in cold.iter().enumerate() {
        if started.elapsed() >= BUDGET {
            left_cold = cold.len() - i;
            break;
        }
        let (since, until) = lookback(c, samples);
        // The oldest come first: read up to twice the window and keep the newest.
        let limit = samples.saturating_mul(2);
        let history = match store.range(Some(&c.machine_id), since, until, limit).await {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, machine = %c.machine_id,
                      "reading history to warm the detector failed; this batch's new machines start cold");
                left_cold = cold.len() - i;
                break;
            }
        };
        if history.is_empty() {
            continue;
        }
        let newest = &history[history.len().saturating_sub(samples)..];
        let engine = engine.clone();
        let newest = newest.to_vec();
        // Scoring is CPU work: off the async runtime.
        let n = tokio::task::spawn_blocking(move || lock(&engine).warm(&newest))
            .await
            .unwrap_or(0);
        if n > 0 {
            warmed += 1;
            fed += n;
        }
    }
    stats
        .warmed_machines
        .fetch_add(warmed as u64, Ordering::Relaxed);
    stats
        .cold_starts
        .fetch_add(left_cold as u64, Ordering::Relaxed);
    if warmed > 0 || left_cold > 0 {
        info!(
            machines = warmed,
            samples = fed,
            left_cold,
            took = ?started.elapsed(),
            "warmed the detector from stored history"
        );
    }
    (warmed, fed, left_cold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cold(interval: Option<f64>) -> ColdMachine {
        ColdMachine {
            machine_id: "m".into(),
            first: 10_000.0,
            interval_secs: interval,
        }
    }

    #[test]
    fn the_lookback_follows_the_machines_interval_and_is_capped() {
        assert_eq!(lookback(&cold(None), 1000), (10_000.0 - 1250.0, 10_000.0));
        assert_eq!(
            lookback(&cold(Some(10.0)), 1000),
            (10_000.0 - 12_500.0, 10_000.0)
        );
        // 1,000 samples at 5 min would be 3.5 days: capped at 6 h.
        assert_eq!(
            lookback(&cold(Some(300.0)), 1000),
            (10_000.0 - MAX_LOOKBACK_SECS, 10_000.0)
        );
    }
}
