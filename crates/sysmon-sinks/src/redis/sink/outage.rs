//! What a [`RedisSink`](super::RedisSink) owes Redis while it is unreachable,
//! and the background probe that ends an outage.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sysmon_core::backoff::Backoff;
use sysmon_core::Snapshot;
use tracing::{debug, info, warn};

use super::super::{is_fatal, ping};
use super::Inner;

/// What the sink knows about Redis' reachability and what it owes it.
#[derive(Default)]
pub(super) struct State {
    pub(super) up: bool,
    pub(super) outage_started: Option<Instant>,
    pub(super) outage_misses: u64,
    pub(super) probing: bool,
    /// The next successful write must check whether Redis lost data and repair.
    pub(super) resync: bool,
    /// Per machine: the oldest failed sample's time and the newest failed snapshot.
    pub(super) pending: HashMap<String, Pending>,
    /// More machines failed than `max_pending_machines`: repair as if Redis lost data.
    pub(super) pending_overflow: bool,
    /// The newest failed sample's time.
    pub(super) pending_max_ts: Option<f64>,
    /// Bumped when an outage starts; a repair only lowers `complete_since`
    /// when no outage happened while it ran.
    pub(super) generation: u64,
}

pub(super) struct Pending {
    pub(super) min_ts: f64,
    pub(super) newest: Snapshot,
}

impl State {
    pub(super) fn remember(&mut self, batch: &[Snapshot], max_machines: usize) {
        for s in batch {
            self.pending_max_ts = Some(
                self.pending_max_ts
                    .map_or(s.timestamp, |m| m.max(s.timestamp)),
            );
            if let Some(p) = self.pending.get_mut(&s.machine_id) {
                p.min_ts = p.min_ts.min(s.timestamp);
                if s.timestamp >= p.newest.timestamp {
                    p.newest = s.clone();
                }
            } else if self.pending.len() < max_machines {
                self.pending.insert(
                    s.machine_id.clone(),
                    Pending {
                        min_ts: s.timestamp,
                        newest: s.clone(),
                    },
                );
            } else {
                self.pending_overflow = true;
            }
        }
    }
}

impl Inner {
    /// Marks Redis down and starts the background probe (once).
    pub(super) fn start_outage(this: &Arc<Inner>, st: &mut State) {
        st.up = false;
        st.resync = true;
        st.generation += 1;
        st.outage_started.get_or_insert_with(Instant::now);
        this.stats.connected.store(false, Ordering::Relaxed);
        this.stats.outages.fetch_add(1, Ordering::Relaxed);
        if !st.probing {
            st.probing = true;
            let weak = Arc::downgrade(this);
            let (min, max) = (this.options.reconnect_min, this.options.reconnect_max);
            tokio::spawn(probe(weak, min, max));
        }
    }
}

/// Waits with backoff until Redis answers `PING`, then ends the outage.
async fn probe(weak: Weak<Inner>, min: Duration, max: Duration) {
    let mut backoff = Backoff::new(min, max);
    loop {
        let delay = backoff.next_delay();
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match ping(
            &inner.conn,
            inner.options.connect_timeout + inner.options.timeout,
        )
        .await
        {
            Ok(()) => {
                let mut st = inner.lock();
                st.up = true;
                st.probing = false;
                let outage = st.outage_started.take().map(|t| t.elapsed());
                let missed = std::mem::take(&mut st.outage_misses);
                inner.stats.connected.store(true, Ordering::Relaxed);
                info!(redis = %inner.target, outage = ?outage.unwrap_or_default(),
                      batches_not_written = missed,
                      "redis is reachable again; the latest state is repopulated with the next batch");
                return;
            }
            Err(e) => {
                if is_fatal(&e) {
                    warn!(redis = %inner.target, error = %e,
                          "redis refuses the credentials; still retrying");
                } else {
                    debug!(redis = %inner.target, error = %e, "redis still unreachable");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_keeps_the_newest_and_oldest_per_machine_and_overflows() {
        let mut st = State::default();
        let b: Vec<Snapshot> = vec![
            Snapshot::new("a", 10.0),
            Snapshot::new("a", 12.0),
            Snapshot::new("a", 11.0),
            Snapshot::new("b", 5.0),
            Snapshot::new("c", 7.0),
        ];
        st.remember(&b, 2);
        assert_eq!(st.pending["a"].min_ts, 10.0);
        assert_eq!(st.pending["a"].newest.timestamp, 12.0);
        assert_eq!(st.pending.len(), 2);
        assert!(st.pending_overflow);
        assert_eq!(st.pending_max_ts, Some(12.0));
    }
}
