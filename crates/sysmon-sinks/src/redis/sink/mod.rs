//! [`RedisSink`]: one pipelined round trip per batch, outage handling, repair.
//!
//! * `stats.rs`: the live counters.
//! * `write.rs`: one batch as a few pipelines sent back to back, and the memo
//!   that leaves out commands whose effect is already there.
//! * `request_builder.rs`: the per-machine commands and the write script's calls.
//! * `outage.rs`: what the sink owes Redis while it is down, and the reconnect probe.
//! * `repair.rs`: restoring the latest state and backfilling after an outage.

mod outage;
mod repair;
mod request_builder;
mod stats;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use async_trait::async_trait;
use sysmon_core::config::RedisConfig;
use sysmon_core::{Batch, Sink, SinkError, SnapshotStore};
use tracing::{info, warn};

use super::store::RedisStore;
use super::{
    build_client, describe, fatal_hint, is_fatal, lazy_manager, ping, timeout_error, KeyLayout,
    RedisOptions,
};
use crate::error::SinksError;
use outage::State;
use repair::{repair, RepairPlan};
use request_builder::trim_every;
pub use stats::{RedisSinkCounters, RedisSinkStats};
use write::Memo;

/// The hot window, latest state and live fan-out in Redis. See the module docs
/// and `docs/redis-layout.md`.
///
/// Cheap to clone (all clones share one connection and one state).
#[derive(Clone)]
pub struct RedisSink {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    conn: ConnectionManager,
    keys: KeyLayout,
    window: Duration,
    options: RedisOptions,
    series_len: usize,
    ttl_ms: u64,
    /// A series' upkeep (trims, TTL) runs when its newest sample enters a new
    /// period of this length: an eighth of the window, at most a quarter of the TTL.
    upkeep_ms: u64,
    target: String,
    /// Unique per sink instance: names its staged keys.
    writer: String,
    stats: Arc<RedisSinkStats>,
    state: Mutex<State>,
    backfill: Mutex<Option<Arc<dyn SnapshotStore>>>,
    /// What this sink wrote per machine, to leave out commands that cannot
    /// change anything (see [`Memo`]).
    memo: Mutex<HashMap<String, Memo>>,
    /// When the memo was last pruned of machines whose keys have expired (ms).
    memo_pruned_ms: AtomicI64,
    /// The count trim runs once per this many samples a machine gets.
    trim_every: u32,
}

impl RedisSink {
    /// Connects with the default [`RedisOptions`]. See [`RedisSink::connect_with`].
    pub async fn connect(config: &RedisConfig) -> Result<RedisSink, SinksError> {
        RedisSink::connect_with(config, RedisOptions::default()).await
    }

    /// Checks the configuration and connects. A bad URL, a TLS setup error or
    /// credentials Redis refuses are errors; an unreachable Redis is not (the
    /// sink starts in an outage, logs it once and reconnects in the background,
    /// so that the ingester can start before Redis).
    pub async fn connect_with(
        config: &RedisConfig,
        options: RedisOptions,
    ) -> Result<RedisSink, SinksError> {
        let client = build_client(config, &options)?;
        let target = describe(&client);
        let conn = lazy_manager(client.clone(), &options)?;
        let options_series_len = options.series_len_for(config.window);
        let inner = Arc::new(Inner {
            client,
            conn,
            keys: KeyLayout::new(config.prefix.clone()),
            window: config.window,
            series_len: options.series_len_for(config.window),
            ttl_ms: options.ttl_for(config.window).as_millis().max(1) as u64,
            upkeep_ms: ((config.window / 8).min(options.ttl_for(config.window) / 4))
                .as_millis()
                .max(1) as u64,
            options,
            target,
            writer: writer_id(),
            stats: Arc::new(RedisSinkStats::default()),
            state: Mutex::new(State {
                resync: true,
                ..State::default()
            }),
            backfill: Mutex::new(None),
            memo: Mutex::new(HashMap::new()),
            memo_pruned_ms: AtomicI64::new(0),
            trim_every: trim_every(options_series_len),
        });
        let first = ping(
            &inner.conn,
            inner.options.connect_timeout + inner.options.timeout,
        )
        .await;
        match first {
            Ok(()) => {
                inner.lock().up = true;
                inner.stats.connected.store(true, Ordering::Relaxed);
                info!(redis = %inner.target, prefix = %inner.keys.prefix(), window = ?inner.window,
                      "redis sink connected");
            }
            Err(e) if is_fatal(&e) => {
                return Err(SinksError::Config(format!(
                    "redis at {} refused the connection: {e} ({})",
                    inner.target,
                    fatal_hint(&e)
                )));
            }
            Err(e) => {
                warn!(redis = %inner.target, error = %e,
                      "redis is unreachable; ingestion goes on without it and the sink reconnects in the background");
                Inner::start_outage(&inner, &mut inner.lock());
            }
        }
        Ok(RedisSink { inner })
    }

    /// Gives the sink the cold store (SQLite) to copy the recent window from
    /// when Redis comes back empty, or to fill the gap an outage left. Without
    /// it the sink still restores the latest state of every machine that
    /// reported during the outage, and [`RedisStore`] refuses ranges it does not
    /// hold completely (so readers fall back to the cold store).
    ///
    /// Set it before the first write: a backfill owed from `connect` starts with
    /// the first successful batch.
    pub fn with_backfill(self, cold: Arc<dyn SnapshotStore>) -> Self {
        if let Ok(mut b) = self.inner.backfill.lock() {
            *b = Some(cold);
        }
        self
    }

    /// A reader over the same keys and connection.
    pub fn store(&self) -> RedisStore {
        RedisStore::from_parts(
            self.inner.client.clone(),
            self.inner.conn.clone(),
            self.inner.keys.clone(),
            self.inner.window,
            self.inner.options.timeout,
        )
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.inner.keys
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<RedisSinkStats> {
        self.inner.stats.clone()
    }

    /// The counters now.
    pub fn counters(&self) -> RedisSinkCounters {
        self.inner.stats.counters()
    }

    /// Machines the write memo remembers (pruned of machines whose keys
    /// expired, at most twice `max_pending_machines`).
    pub fn memo_machines(&self) -> usize {
        self.inner.memo_lock().len()
    }

    /// Machines whose newest snapshot is remembered for an outage's repair
    /// (at most `max_pending_machines`; empty while Redis is up).
    pub fn pending_machines(&self) -> usize {
        self.inner.lock().pending.len()
    }

    /// Whether the sink currently believes Redis is reachable.
    pub fn is_connected(&self) -> bool {
        self.inner.stats.connected.load(Ordering::Relaxed)
    }

    /// Replaces the active alerts of `scope` (a machine id, or the empty `FLEET_SCOPE` for the fleet) at
    /// `<prefix>alerts:<scope>` with `alerts` (a JSON array; an empty array
    /// deletes the key). The key expires after the TTL unless written again, so
    /// the alerting engine rewrites it on every evaluation.
    pub async fn put_active_alerts(
        &self,
        scope: &str,
        alerts: &serde_json::Value,
    ) -> Result<(), SinkError> {
        let key = self.inner.keys.alerts(scope);
        let cmd = if alerts.as_array().is_some_and(|a| a.is_empty()) {
            ::redis::cmd("DEL").arg(&key).to_owned()
        } else {
            ::redis::cmd("SET")
                .arg(&key)
                .arg(alerts.to_string())
                .arg("PX")
                .arg(self.inner.ttl_ms)
                .to_owned()
        };
        let mut conn = self.inner.conn.clone();
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, cmd.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(format!("writing active alerts to redis: {e}"))),
            Err(_) => Err(unavailable(format!(
                "writing active alerts to redis: {}",
                timeout_error(timeout)
            ))),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a
        // way that matters more than losing Redis writes: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn backfill_store(&self) -> Option<Arc<dyn SnapshotStore>> {
        self.backfill.lock().ok().and_then(|b| b.clone())
    }
}

#[async_trait]
impl Sink for RedisSink {
    fn name(&self) -> &str {
        "redis"
    }

    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let (resync, raise_to) = {
            let mut st = inner.lock();
            if !st.up {
                st.remember(&batch, inner.options.max_pending_machines);
                st.outage_misses += 1;
                inner.stats.batches_skipped.fetch_add(1, Ordering::Relaxed);
                return Err(unavailable(format!(
                    "redis at {} is unreachable (for {:?}); batch skipped, reconnecting in the background",
                    inner.target,
                    st.outage_started.map(|t| t.elapsed()).unwrap_or_default()
                )));
            }
            (st.resync, st.pending_max_ts)
        };
        match inner
            .write_batch(&batch, inner.options.publish, raise_to, true)
            .await
        {
            Ok(head) => {
                inner.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                inner
                    .stats
                    .snapshots_written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if inner.options.publish {
                    inner.stats.events_published.fetch_add(1, Ordering::Relaxed);
                }
                if resync {
                    let plan = {
                        let mut st = inner.lock();
                        st.resync = false;
                        st.pending_max_ts = None;
                        RepairPlan {
                            generation: st.generation,
                            head,
                            pending: std::mem::take(&mut st.pending),
                            overflow: std::mem::take(&mut st.pending_overflow),
                        }
                    };
                    let inner = inner.clone();
                    inner.stats.repairs_running.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        repair(&inner, plan).await;
                        inner.stats.repairs_running.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Ok(())
            }
            Err(e) => {
                inner.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                let mut st = inner.lock();
                st.remember(&batch, inner.options.max_pending_machines);
                if st.up {
                    warn!(redis = %inner.target, error = %e,
                          "redis write failed; the outage is logged once, batches are skipped (SQLite ingestion goes on) and the sink reconnects with backoff");
                    Inner::start_outage(inner, &mut st);
                }
                st.outage_misses += 1;
                Err(unavailable(format!("redis write failed: {e}")))
            }
        }
    }
}

/// A writer id unique enough to keep concurrent sinks' staged keys apart.
fn writer_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

fn unavailable(message: String) -> SinkError {
    SinkError::Unavailable {
        sink: "redis".into(),
        message,
        source: None,
    }
}
