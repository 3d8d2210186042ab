//! [`QueryLayer`]: the one read path of the dashboard and `sysmon query`.
//!
//! It answers from a **cold** store (SQLite: everything, durable) and, when
//! configured, a **hot** store (Redis: the recent window, fast):
//!
//! * `machines`: the cold store (it knows every machine, also those silent for
//!   longer than the hot window); the hot store only if the cold one fails.
//! * `latest`: the hot store; the cold store when the hot one fails or does not
//!   know the machine.
//! * `range`: a range entirely within the last `hot_window` comes from the hot
//!   store, one entirely older from the cold store, and one that straddles the
//!   boundary is split there: the cold store answers the old part, the hot store
//!   the rest, merged oldest first. Whenever the hot store errors (down, or it
//!   refuses a range it does not hold completely, see
//!   [`crate::redis::RedisStore`]) the cold store answers that part instead.
//!
//! Results are the same with and without the hot store: the same snapshots in
//! the same order (oldest first by millisecond, ties by machine id, which is
//! the cold store's order).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use sysmon_core::{MachineSummary, Snapshot, SnapshotStore, StoreError};
use tracing::{debug, info, warn};

use crate::redis::RedisStore;

/// Counters of a [`QueryLayer`].
#[derive(Debug, Default)]
pub struct QueryStats {
    /// Answers (or answer parts) served by the hot store.
    pub hot_answers: AtomicU64,
    /// Answers (or answer parts) served by the cold store.
    pub cold_answers: AtomicU64,
    /// Times the hot store failed or refused and the cold store answered instead.
    pub hot_fallbacks: AtomicU64,
}

/// Reads from Redis where it can and SQLite where it must. See the module docs.
pub struct QueryLayer {
    cold: Arc<dyn SnapshotStore>,
    hot: Option<Arc<dyn SnapshotStore>>,
    /// The same hot store when it is Redis: `latest_many` becomes one `MGET`.
    hot_redis: Option<RedisStore>,
    hot_window: Duration,
    stats: Arc<QueryStats>,
    hot_failing: AtomicBool,
}

impl std::fmt::Debug for QueryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLayer")
            .field("hot", &self.hot.is_some())
            .field("hot_window", &self.hot_window)
            .finish()
    }
}

impl QueryLayer {
    /// Reads `latest` and the last `hot_window` from `hot` when given, and
    /// everything else from `cold`. `hot_window` must not exceed what the hot
    /// store keeps; for Redis use [`QueryLayer::hot_window_for`]`(redis.window)`.
    pub fn new(
        cold: Arc<dyn SnapshotStore>,
        hot: Option<Arc<dyn SnapshotStore>>,
        hot_window: Duration,
    ) -> Self {
        QueryLayer {
            cold,
            hot,
            hot_redis: None,
            hot_window,
            stats: Arc::new(QueryStats::default()),
            hot_failing: AtomicBool::new(false),
        }
    }

    /// A layer over `cold` with `redis` as the hot store, with the hot window
    /// derived from the Redis window ([`QueryLayer::hot_window_for`]).
    pub fn with_redis(cold: Arc<dyn SnapshotStore>, redis: RedisStore) -> Self {
        let hot_window = QueryLayer::hot_window_for(redis.window());
        let mut layer = QueryLayer::new(cold, Some(Arc::new(redis.clone())), hot_window);
        layer.hot_redis = Some(redis);
        layer
    }

    /// A layer that only reads `cold` (no Redis configured).
    pub fn cold_only(cold: Arc<dyn SnapshotStore>) -> Self {
        QueryLayer::new(cold, None, Duration::ZERO)
    }

    /// The hot window to use with a Redis that keeps `redis_window`: slightly
    /// less (by a tenth, at most a minute), so that a query never asks Redis for
    /// samples it trimmed a moment ago.
    pub fn hot_window_for(redis_window: Duration) -> Duration {
        redis_window.saturating_sub((redis_window / 10).min(Duration::from_secs(60)))
    }

    /// Whether a hot store is configured.
    pub fn has_hot(&self) -> bool {
        self.hot.is_some()
    }

    /// The hot window.
    pub fn hot_window(&self) -> Duration {
        self.hot_window
    }

    /// The counters.
    pub fn stats(&self) -> Arc<QueryStats> {
        self.stats.clone()
    }

    /// The newest snapshot of each of `machine_ids`, in order: one `MGET` when
    /// the hot store is Redis, concurrent lookups otherwise; machines the hot
    /// store cannot answer come from the cold store.
    pub async fn latest_many<S: AsRef<str> + Sync>(
        &self,
        machine_ids: &[S],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        let mut out: Vec<Option<Snapshot>> = vec![None; machine_ids.len()];
        if let Some(redis) = &self.hot_redis {
            match redis.latest_many(machine_ids).await {
                Ok(v) => {
                    self.hot_ok();
                    out = v;
                }
                Err(e) => self.hot_failed("latest", &e),
            }
        } else if let Some(hot) = &self.hot {
            let answers = join_all(machine_ids.iter().map(|id| hot.latest(id.as_ref()))).await;
            for (slot, a) in out.iter_mut().zip(answers) {
                match a {
                    Ok(v) => {
                        self.hot_ok();
                        *slot = v;
                    }
                    Err(e) => self.hot_failed("latest", &e),
                }
            }
        }
        let missing: Vec<usize> = (0..machine_ids.len())
            .filter(|&i| out[i].is_none())
            .collect();
        let hot_served = machine_ids.len() - missing.len();
        if hot_served > 0 {
            self.stats.hot_answers.fetch_add(1, Ordering::Relaxed);
        }
        if !missing.is_empty() {
            self.stats.cold_answers.fetch_add(1, Ordering::Relaxed);
            let cold = join_all(
                missing
                    .iter()
                    .map(|&i| self.cold.latest(machine_ids[i].as_ref())),
            )
            .await;
            for (&i, a) in missing.iter().zip(cold) {
                out[i] = a?;
            }
        }
        Ok(out)
    }

    fn hot_ok(&self) {
        if self.hot_failing.swap(false, Ordering::Relaxed) {
            info!("the hot store (redis) answers again");
        }
    }

    fn hot_failed(&self, what: &str, e: &StoreError) {
        self.stats.hot_fallbacks.fetch_add(1, Ordering::Relaxed);
        if !self.hot_failing.swap(true, Ordering::Relaxed) {
            warn!(error = %e, "the hot store (redis) failed a `{what}` query; answering from the cold store until it is back");
        } else {
            debug!(error = %e, "hot store failed; cold store answers");
        }
    }

    async fn cold_range(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.stats.cold_answers.fetch_add(1, Ordering::Relaxed);
        self.cold.range(machine_id, since, until, limit).await
    }

    /// The hot part `[since, until)`, or the cold store's answer when the hot
    /// store refuses it.
    async fn hot_range(
        &self,
        hot: &Arc<dyn SnapshotStore>,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        match hot.range(machine_id, since, until, limit).await {
            Ok(v) => {
                self.stats.hot_answers.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                // A refusal of an incomplete range is routine (Redis just
                // started, or repairs an outage): not worth a warning.
                self.stats.hot_fallbacks.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "hot store did not answer a range; cold store answers");
                self.cold_range(machine_id, since, until, limit).await
            }
        }
    }
}

/// Sorts oldest first by millisecond, ties by machine id, and drops repeats of
/// the same (machine, millisecond).
fn canonical(mut v: Vec<Snapshot>) -> Vec<Snapshot> {
    crate::redis::sort_canonical(&mut v);
    v.dedup_by(|b, a| a.machine_id == b.machine_id && a.timestamp_millis() == b.timestamp_millis());
    v
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[async_trait]
impl SnapshotStore for QueryLayer {
    async fn machines(&self) -> Result<Vec<MachineSummary>, StoreError> {
        match self.cold.machines().await {
            Ok(v) => {
                self.stats.cold_answers.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Err(cold_err) => match &self.hot {
                Some(hot) => {
                    warn!(error = %cold_err, "the cold store failed to list machines; answering from redis");
                    hot.machines().await.map_err(|_| cold_err)
                }
                None => Err(cold_err),
            },
        }
    }

    async fn latest(&self, machine_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.latest_many(&[machine_id]).await?.pop().flatten())
    }

    async fn range(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        if limit == 0 || since.is_nan() || until.is_nan() || since >= until {
            return Ok(Vec::new());
        }
        let Some(hot) = &self.hot else {
            return Ok(canonical(
                self.cold_range(machine_id, since, until, limit).await?,
            ));
        };
        let boundary = now_secs() - self.hot_window.as_secs_f64();
        if until <= boundary {
            return Ok(canonical(
                self.cold_range(machine_id, since, until, limit).await?,
            ));
        }
        if since >= boundary {
            return Ok(canonical(
                self.hot_range(hot, machine_id, since, until, limit).await?,
            ));
        }
        // Straddles the boundary: cold for [since, boundary), hot for the rest.
        let old = canonical(self.cold_range(machine_id, since, boundary, limit).await?);
        if old.len() >= limit {
            return Ok(old);
        }
        let rest = self
            .hot_range(hot, machine_id, boundary, until, limit - old.len())
            .await?;
        let mut all = old;
        all.extend(rest);
        let mut all = canonical(all);
        all.truncate(limit);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_window_leaves_a_margin() {
        assert_eq!(
            QueryLayer::hot_window_for(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            QueryLayer::hot_window_for(Duration::from_secs(100)),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn canonical_order_and_no_repeats() {
        let v = vec![
            Snapshot::new("b", 2.0),
            Snapshot::new("a", 2.0),
            Snapshot::new("a", 1.0),
            Snapshot::new("a", 2.0),
        ];
        let c = canonical(v);
        let keys: Vec<(String, f64)> = c
            .iter()
            .map(|s| (s.machine_id.clone(), s.timestamp))
            .collect();
        assert_eq!(
            keys,
            vec![("a".into(), 1.0), ("a".into(), 2.0), ("b".into(), 2.0)]
        );
    }
}
