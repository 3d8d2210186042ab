//! The repair after an outage: the latest state of the machines that failed,
//! then (with a cold store) the backfill of what Redis is missing.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use sysmon_core::Snapshot;
use tracing::{debug, info, warn};

use super::super::now_secs;
use super::super::scripts::LOWER_COMPLETE_SINCE_SCRIPT;
use super::outage::Pending;
use super::write::{next_up, Head};
use super::Inner;

/// Snapshots per pipeline when the sink writes on its own (repair, backfill).
const REPAIR_CHUNK: usize = 1000;

/// What a repair after a (re)connection has to do.
pub(super) struct RepairPlan {
    pub(super) generation: u64,
    pub(super) head: Head,
    pub(super) pending: HashMap<String, Pending>,
    pub(super) overflow: bool,
}

/// Restores the latest state of machines that failed during an outage, then
/// (with a cold store) backfills what Redis is missing and vouches for it by
/// lowering `complete_since`.
pub(super) async fn repair(inner: &Arc<Inner>, plan: RepairPlan) {
    let started = Instant::now();
    let lost = !plan.head.existed || plan.overflow;
    if lost && plan.head.existed {
        warn!(redis = %inner.target, "more machines failed during the outage than remembered; repairing as if redis lost its data");
    } else if !plan.head.existed {
        info!(redis = %inner.target, "redis holds no sysmon state (new or restarted empty)");
    }

    // 1. The newest failed snapshot per machine: the latest state is right
    //    again even without a cold store.
    let newest: Vec<Snapshot> = plan.pending.values().map(|p| p.newest.clone()).collect();
    for chunk in newest.chunks(REPAIR_CHUNK) {
        if let Err(e) = inner.write_batch(chunk, false, None, false).await {
            debug!(error = %e, "restoring the latest state failed; the next outage repair retries");
            return;
        }
        inner
            .stats
            .latest_restored
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }

    // 2. Backfill from the cold store.
    let Some(cold) = inner.backfill_store() else {
        inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
        if !newest.is_empty() {
            info!(machines = newest.len(), took = ?started.elapsed(), "redis latest state restored");
        }
        return;
    };
    let now = now_secs();
    let window_start = now - inner.window.as_secs_f64();
    let targets: Vec<(String, f64)> = if lost || plan.pending.is_empty() {
        let from = if lost {
            window_start
        } else {
            plan.head
                .prev_written_at
                .map_or(window_start, |w| {
                    w - inner.options.backfill_slack.as_secs_f64()
                })
                .max(window_start)
        };
        match cold.machines().await {
            Ok(ms) => ms
                .into_iter()
                .filter(|m| m.last_seen >= from)
                .map(|m| (m.machine_id, from))
                .collect(),
            Err(e) => {
                warn!(error = %e, "backfilling redis: listing machines in the cold store failed; readers use the cold store for the gap");
                return;
            }
        }
    } else {
        plan.pending
            .iter()
            .map(|(m, p)| (m.clone(), p.min_ts.max(window_start)))
            .collect()
    };
    let until = now + 86_400.0;
    let mut copied = 0u64;
    for (machine, from) in &targets {
        let mut since = *from;
        loop {
            let page = match cold.range(Some(machine), since, until, REPAIR_CHUNK).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, machine = %machine, "backfilling redis: reading the cold store failed; readers use the cold store for the gap");
                    return;
                }
            };
            let Some(last) = page.last() else { break };
            since = next_up(last.timestamp);
            if let Err(e) = inner.write_batch(&page, false, None, false).await {
                debug!(error = %e, "backfilling redis failed; the next outage repair retries");
                return;
            }
            copied += page.len() as u64;
            inner
                .stats
                .backfilled_snapshots
                .fetch_add(page.len() as u64, Ordering::Relaxed);
            if page.len() < REPAIR_CHUNK {
                break;
            }
        }
    }

    // 3. Vouch for the filled gap, unless a new outage began meanwhile.
    let lower_to = if lost {
        Some(window_start.to_string())
    } else if !plan.pending.is_empty() && !plan.head.before.is_empty() {
        Some(plan.head.before.clone())
    } else {
        None
    };
    if let Some(to) = lower_to {
        if inner.lock().generation == plan.generation && to != plan.head.after {
            let mut conn = inner.conn.clone();
            let cas = ::redis::pipe()
                .cmd("SCRIPT")
                .arg("LOAD")
                .arg(LOWER_COMPLETE_SINCE_SCRIPT.source)
                .ignore()
                .cmd("EVALSHA")
                .arg(&LOWER_COMPLETE_SINCE_SCRIPT.sha)
                .arg(1)
                .arg(inner.keys.meta())
                .arg(&plan.head.after)
                .arg(&to)
                .to_owned();
            let r = tokio::time::timeout(
                inner.options.timeout,
                cas.query_async::<Vec<i64>>(&mut conn),
            )
            .await;
            if !matches!(r, Ok(Ok(_))) {
                debug!("lowering complete_since after the backfill failed; readers keep using the cold store for the gap");
            }
        }
    }
    inner.stats.repairs.fetch_add(1, Ordering::Relaxed);
    info!(redis = %inner.target, machines = targets.len(), snapshots = copied,
          latest_restored = newest.len(), took = ?started.elapsed(), "redis backfilled from the cold store");
}
