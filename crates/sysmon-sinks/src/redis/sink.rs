//! [`RedisSink`]: one pipelined round trip per batch, outage handling, repair.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;
use ::redis::{RedisError, Value};
use async_trait::async_trait;
use serde::Serialize;
use sysmon_core::codec::binary;
use sysmon_core::config::RedisConfig;
use sysmon_core::{Batch, Sink, SinkError, Snapshot, SnapshotStore};
use tracing::{debug, info, warn};

use super::scripts::{BATCH_HEAD_SCRIPT, COMMIT_MACHINES_SCRIPT, LOWER_COMPLETE_SINCE_SCRIPT};
use super::store::RedisStore;
use super::{
    build_client, describe, fatal_hint, is_fatal, lazy_manager, now_secs, ping, timeout_error,
    BatchEvent, KeyLayout, RedisOptions,
};
use crate::error::SinksError;

/// Snapshots per pipeline when the sink writes on its own (repair, backfill).
const REPAIR_CHUNK: usize = 1000;

/// Live counters of a [`RedisSink`] (for `/metrics` and logs).
#[derive(Debug, Default)]
pub struct RedisSinkStats {
    /// Batches written completely.
    pub batches_written: AtomicU64,
    /// Snapshots written by live batches.
    pub snapshots_written: AtomicU64,
    /// Write attempts that failed (error or timeout).
    pub write_failures: AtomicU64,
    /// Batches not attempted because Redis was known to be down.
    pub batches_skipped: AtomicU64,
    /// Outages seen (each starts with a failure and ends with a successful probe).
    pub outages: AtomicU64,
    /// Repairs finished after a (re)connection.
    pub repairs: AtomicU64,
    /// Newest snapshots re-written after an outage (one per machine).
    pub latest_restored: AtomicU64,
    /// Snapshots copied from the cold store into Redis by backfills.
    pub backfilled_snapshots: AtomicU64,
    /// Batch events published.
    pub events_published: AtomicU64,
    connected: AtomicBool,
    repairs_running: AtomicUsize,
}

/// A copy of [`RedisSinkStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedisSinkCounters {
    /// Batches written completely.
    pub batches_written: u64,
    /// Snapshots written by live batches.
    pub snapshots_written: u64,
    /// Write attempts that failed.
    pub write_failures: u64,
    /// Batches skipped while Redis was down.
    pub batches_skipped: u64,
    /// Outages seen.
    pub outages: u64,
    /// Repairs finished.
    pub repairs: u64,
    /// Newest snapshots re-written after outages.
    pub latest_restored: u64,
    /// Snapshots backfilled from the cold store.
    pub backfilled_snapshots: u64,
    /// Batch events published.
    pub events_published: u64,
    /// Whether the sink currently believes Redis is reachable.
    pub connected: bool,
    /// Whether a repair (latest restore or backfill) is running.
    pub repairing: bool,
}

impl RedisSinkStats {
    /// The counters now.
    pub fn counters(&self) -> RedisSinkCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisSinkCounters {
            batches_written: get(&self.batches_written),
            snapshots_written: get(&self.snapshots_written),
            write_failures: get(&self.write_failures),
            batches_skipped: get(&self.batches_skipped),
            outages: get(&self.outages),
            repairs: get(&self.repairs),
            latest_restored: get(&self.latest_restored),
            backfilled_snapshots: get(&self.backfilled_snapshots),
            events_published: get(&self.events_published),
            connected: self.connected.load(Ordering::Relaxed),
            repairing: self.repairs_running.load(Ordering::Relaxed) > 0,
        }
    }
}

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
    /// The count trim runs once per this many samples a machine gets.
    trim_every: u32,
}

/// What this sink last wrote for one machine. It only ever lets the sink
/// leave out a command whose effect is already there, and it is forgotten
/// whenever a write fails (Redis may have lost data, or a write half-happened).
#[derive(Debug, Clone)]
struct Memo {
    /// The newest sample's millisecond this sink wrote: a later sample cannot
    /// have a member of its millisecond in the series yet (from this writer).
    newest_ms: i64,
    /// Samples added since the series was last trimmed by count.
    since_trim: u32,
    /// The host name written to `hostnames`.
    hostname: Option<String>,
}

/// Per machine of one write: which optional commands it needs.
#[derive(Debug, Clone, Copy)]
struct MachinePlan {
    /// Remove each sample's millisecond from the series before adding it (a
    /// sample replaces the one of the same millisecond). Left out for samples
    /// newer than anything this sink wrote for the machine.
    replace: bool,
    /// Trim the series by count.
    trim: bool,
    /// Write the host name (also written by the script when the machine is
    /// new to `last_seen`).
    hostname: bool,
    /// Every sample is newer than anything this sink wrote for the machine:
    /// the newest one is `SET` as the latest state directly instead of being
    /// staged and renamed into place by the script (which repairs it from the
    /// series should another writer have stored a newer one meanwhile).
    direct_latest: bool,
}

/// What the sink knows about Redis' reachability and what it owes it.
#[derive(Default)]
struct State {
    up: bool,
    outage_started: Option<Instant>,
    outage_misses: u64,
    probing: bool,
    /// The next successful write must check whether Redis lost data and repair.
    resync: bool,
    /// Per machine: the oldest failed sample's time and the newest failed snapshot.
    pending: HashMap<String, Pending>,
    /// More machines failed than `max_pending_machines`: repair as if Redis lost data.
    pending_overflow: bool,
    /// The newest failed sample's time.
    pending_max_ts: Option<f64>,
    /// Bumped when an outage starts; a repair only lowers `complete_since`
    /// when no outage happened while it ran.
    generation: u64,
}

struct Pending {
    min_ts: f64,
    newest: Snapshot,
}

impl State {
    fn remember(&mut self, batch: &[Snapshot], max_machines: usize) {
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

/// The reply of the batch head script.
#[derive(Debug, Clone, Default)]
struct Head {
    /// `meta` existed before this batch (false: a new or emptied Redis).
    existed: bool,
    /// The previous writer's last write (s), if any.
    prev_written_at: Option<f64>,
    /// `complete_since` before this batch ('' when it did not exist).
    before: String,
    /// `complete_since` after this batch.
    after: String,
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

    /// Whether the sink currently believes Redis is reachable.
    pub fn is_connected(&self) -> bool {
        self.inner.stats.connected.load(Ordering::Relaxed)
    }

    /// Replaces the active alerts of `scope` (a machine id, or `fleet`) at
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

    /// Marks Redis down and starts the background probe (once).
    fn start_outage(this: &Arc<Inner>, st: &mut State) {
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

    /// Writes `batch` in one pipelined round trip, bounded by the timeout.
    /// `live` batches (the ingest path) may leave out the per-millisecond
    /// replace for samples newer than this sink wrote before; repair writes
    /// (restores and backfills, which may race with live writes of the same
    /// samples) always replace.
    async fn write_batch(
        &self,
        batch: &[Snapshot],
        publish: bool,
        raise_to: Option<f64>,
        live: bool,
    ) -> Result<Head, RedisError> {
        let r = self.write_batch_inner(batch, publish, raise_to, live).await;
        if r.is_err() {
            // Redis may have lost data or kept half of this write: forget
            // what the sink believes it holds.
            self.memo_lock().clear();
        }
        r
    }

    fn memo_lock(&self) -> MutexGuard<'_, HashMap<String, Memo>> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides the optional commands of each machine of a write and records
    /// the write in the memo.
    fn plan(
        &self,
        order: &[&str],
        groups: &HashMap<&str, Vec<&Snapshot>>,
        live: bool,
    ) -> Vec<MachinePlan> {
        let may_skip = live && self.stats.repairs_running.load(Ordering::Relaxed) == 0;
        let mut memo = self.memo_lock();
        if memo.len() > 2 * self.options.max_pending_machines {
            // Machines come and go; a fresh memo only costs a few commands.
            memo.clear();
        }
        order
            .iter()
            .map(|machine| {
                let group = groups.get(machine).map(Vec::as_slice).unwrap_or(&[]);
                let oldest_ms = group.iter().map(|s| s.timestamp_millis()).min();
                let newest_ms = group.iter().map(|s| s.timestamp_millis()).max();
                let hostname = newest_hostname(group);
                let added = group.len() as u32;
                match memo.get_mut(*machine) {
                    Some(m) => {
                        let replace = !may_skip || oldest_ms.is_none_or(|o| o <= m.newest_ms);
                        let direct_latest = may_skip && oldest_ms.is_some_and(|o| o > m.newest_ms);
                        m.since_trim = m.since_trim.saturating_add(added);
                        let trim = m.since_trim >= self.trim_every;
                        if trim {
                            m.since_trim = 0;
                        }
                        let write_host = hostname.is_some() && m.hostname.as_deref() != hostname;
                        if write_host {
                            m.hostname = hostname.map(str::to_string);
                        }
                        m.newest_ms = m.newest_ms.max(newest_ms.unwrap_or(i64::MIN));
                        MachinePlan {
                            replace,
                            trim,
                            hostname: write_host,
                            direct_latest,
                        }
                    }
                    None => {
                        memo.insert(
                            machine.to_string(),
                            Memo {
                                newest_ms: newest_ms.unwrap_or(i64::MIN),
                                since_trim: 0,
                                hostname: hostname.map(str::to_string),
                            },
                        );
                        MachinePlan {
                            replace: true,
                            trim: true,
                            hostname: hostname.is_some(),
                            direct_latest: false,
                        }
                    }
                }
            })
            .collect()
    }

    async fn write_batch_inner(
        &self,
        batch: &[Snapshot],
        publish: bool,
        raise_to: Option<f64>,
        live: bool,
    ) -> Result<Head, RedisError> {
        let now = now_secs();
        let cutoff = now - self.window.as_secs_f64();
        let cutoff_ms = (cutoff * 1000.0).floor() as i64;
        let keys = &self.keys;
        let (last_seen, hostnames) = (keys.last_seen(), keys.hostnames());

        // The batch goes out as a few pipelines sent back to back without
        // waiting for replies (one round trip in all): each group of machines
        // is sent as soon as it is encoded, so Redis executes one group while
        // the next is encoded. The connection keeps them in order.
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let mut sent: Vec<InFlight> = Vec::new();
        let mut pipe = ::redis::pipe();
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(BATCH_HEAD_SCRIPT.source)
            .ignore();
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(COMMIT_MACHINES_SCRIPT.source)
            .ignore();
        pipe.cmd("EVALSHA")
            .arg(&BATCH_HEAD_SCRIPT.sha)
            .arg(3)
            .arg(keys.meta())
            .arg(&last_seen)
            .arg(&hostnames)
            .arg(now)
            .arg(self.ttl_ms)
            .arg(raise_to.map(|t| next_up(t).to_string()).unwrap_or_default())
            .arg(cutoff);

        // Group by machine, keeping batch order inside each group.
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<&Snapshot>> = HashMap::new();
        for s in batch {
            groups
                .entry(s.machine_id.as_str())
                .or_insert_with(|| {
                    order.push(s.machine_id.as_str());
                    Vec::new()
                })
                .push(s);
        }
        let plans = self.plan(&order, &groups, live);
        // One script call per group of machines: few calls, yet Redis is never
        // blocked for long by one call.
        let mut chunk = ScriptChunk::new(&last_seen, &hostnames, cutoff_ms, self);
        for (machine, plan) in order.into_iter().zip(plans) {
            let Some(group) = groups.get(machine) else {
                continue;
            };
            chunk.add_machine(&mut pipe, keys, &self.writer, machine, group, plan);
            if chunk.machines >= SCRIPT_MACHINES || chunk.bytes >= SCRIPT_BYTES {
                chunk.flush(&mut pipe);
                chunk = ScriptChunk::new(&last_seen, &hostnames, cutoff_ms, self);
                sent.push(
                    self.send(std::mem::replace(&mut pipe, ::redis::pipe()))
                        .await,
                );
            }
        }
        chunk.flush(&mut pipe);
        pipe.cmd("PEXPIRE")
            .arg(&last_seen)
            .arg(self.ttl_ms)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&hostnames)
            .arg(self.ttl_ms)
            .ignore();
        if publish {
            let event = serde_json::to_vec(&BatchEvent::for_batch(batch, now))
                .unwrap_or_else(|_| b"{}".to_vec());
            pipe.cmd("PUBLISH").arg(keys.events()).arg(event).ignore();
        }

        sent.push(self.send(pipe).await);

        let mut head = None;
        for in_flight in sent {
            let reply = match tokio::time::timeout_at(deadline, in_flight).await {
                Ok(r) => r?,
                Err(_) => return Err(timeout_error(self.options.timeout)),
            };
            head.get_or_insert(reply);
        }
        let reply = head.unwrap_or_default();
        Ok(parse_head(reply.first()))
    }

    /// Starts sending `pipe` (it is queued on the connection before this
    /// returns, so pipelines go out in call order) without waiting for the reply.
    async fn send(&self, pipe: ::redis::Pipeline) -> InFlight {
        let mut conn = self.conn.clone();
        let mut fut: InFlight =
            Box::pin(async move { pipe.query_async::<Vec<Value>>(&mut conn).await });
        // One poll packs the commands and hands them to the connection's writer.
        if let std::task::Poll::Ready(r) = futures::poll!(&mut fut) {
            return Box::pin(std::future::ready(r));
        }
        fut
    }
}

/// A pipeline on its way: resolves to its replies.
type InFlight =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Value>, RedisError>> + Send>>;

/// Machines per call of the write script.
const SCRIPT_MACHINES: usize = 100;
/// Staged bytes after which the machines so far are committed.
const SCRIPT_BYTES: usize = 1 << 20;

/// How many samples a machine gets between two count trims of its series:
/// a sixteenth of the bound (so a series holds at most 1/16 more than the
/// bound between trims), at least every sample for small bounds.
fn trim_every(series_len: usize) -> u32 {
    (series_len / 16).clamp(1, u32::MAX as usize) as u32
}

/// The newest sample by millisecond (the later one on ties, as the series and
/// SQLite keep the last write of a millisecond).
fn newest<'a>(group: &[&'a Snapshot]) -> Option<&'a Snapshot> {
    let mut newest = *group.first()?;
    for s in &group[1..] {
        if s.timestamp_millis() >= newest.timestamp_millis() {
            newest = s;
        }
    }
    Some(newest)
}

/// The host name the way SQLite picks it: the newest sample's, else one from
/// earlier in the batch (the latest one that has one).
fn newest_hostname<'a>(group: &[&'a Snapshot]) -> Option<&'a str> {
    let mut newest = *group.first()?;
    let mut hostname = newest.hostname.as_deref();
    for s in &group[1..] {
        if s.timestamp_millis() >= newest.timestamp_millis() {
            newest = s;
            hostname = s.hostname.as_deref().or(hostname);
        } else if hostname.is_none() {
            hostname = s.hostname.as_deref();
        }
    }
    hostname
}

/// One call of [`COMMIT_MACHINES_SCRIPT`], and the plain commands that stage
/// its machines' data before it.
struct ScriptChunk {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    machines: usize,
    bytes: usize,
}

impl ScriptChunk {
    fn new(last_seen: &str, hostnames: &str, cutoff_ms: i64, inner: &Inner) -> Self {
        ScriptChunk {
            keys: vec![last_seen.to_string(), hostnames.to_string()],
            args: vec![
                cutoff_ms.to_string().into_bytes(),
                inner.series_len.to_string().into_bytes(),
                inner.ttl_ms.to_string().into_bytes(),
                inner.upkeep_ms.to_string().into_bytes(),
            ],
            machines: 0,
            bytes: 0,
        }
    }

    /// Adds `group`'s samples to its series and stages its newest snapshot
    /// (plain commands in `pipe`), and queues the machine for the script.
    fn add_machine(
        &mut self,
        pipe: &mut ::redis::Pipeline,
        keys: &KeyLayout,
        writer: &str,
        machine: &str,
        group: &[&Snapshot],
        plan: MachinePlan,
    ) {
        let Some(newest) = newest(group) else {
            return;
        };
        let hostname = newest_hostname(group);
        let series = keys.series(machine);
        // A sample replaces the one of the same millisecond (SQLite's key).
        if plan.replace {
            for s in group {
                let ms = s.timestamp_millis();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&series)
                    .arg(ms)
                    .arg(ms)
                    .ignore();
            }
        }
        // Each sample is encoded once: the newest one's bytes are also the
        // staged latest state.
        let mut latest: Option<Vec<u8>> = None;
        let zadd = pipe.cmd("ZADD").arg(&series);
        for s in group {
            let member = binary::encode(s);
            self.bytes += member.len();
            zadd.arg(s.timestamp_millis()).arg(member.as_slice());
            if std::ptr::eq(*s, newest) {
                latest = Some(member);
            }
        }
        zadd.ignore();
        let latest = latest.unwrap_or_else(|| binary::encode(newest));
        self.bytes += latest.len();
        let staged = keys.staged(writer, "latest", machine);
        let target = if plan.direct_latest {
            keys.latest(machine)
        } else {
            staged.clone()
        };
        pipe.cmd("SET")
            .arg(&target)
            .arg(latest)
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();

        self.keys.push(series);
        self.keys.push(keys.latest(machine));
        self.keys.push(staged);
        self.args.push(machine.as_bytes().to_vec());
        self.args.push(newest.timestamp.to_string().into_bytes());
        self.args
            .push(newest.timestamp_millis().to_string().into_bytes());
        self.args.push(hostname.unwrap_or("").as_bytes().to_vec());
        let flag = |b: bool| if b { b'1' } else { b'0' };
        self.args.push(vec![
            flag(hostname.is_some()),
            flag(plan.hostname),
            flag(plan.trim),
            flag(plan.direct_latest),
        ]);
        self.machines += 1;
    }

    /// The TTL in ms (the script's third argument).
    fn ttl_ms(&self) -> &[u8] {
        &self.args[2]
    }

    fn flush(self, pipe: &mut ::redis::Pipeline) {
        if self.machines == 0 {
            return;
        }
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(&COMMIT_MACHINES_SCRIPT.sha)
            .arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k);
        }
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd.ignore();
    }
}

/// Waits with backoff until Redis answers `PING`, then ends the outage.
async fn probe(weak: Weak<Inner>, min: Duration, max: Duration) {
    let mut delay = min;
    loop {
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
                    debug!(redis = %inner.target, error = %e, retry_in = ?delay, "redis still unreachable");
                }
                delay = (delay * 2).min(max);
            }
        }
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
    }
}

/// What a repair after a (re)connection has to do.
struct RepairPlan {
    generation: u64,
    head: Head,
    pending: HashMap<String, Pending>,
    overflow: bool,
}

/// Restores the latest state of machines that failed during an outage, then
/// (with a cold store) backfills what Redis is missing and vouches for it by
/// lowering `complete_since`.
async fn repair(inner: &Arc<Inner>, plan: RepairPlan) {
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

fn parse_head(v: Option<&Value>) -> Head {
    let Some(Value::Array(items)) = v else {
        return Head::default();
    };
    let text = |i: usize| -> String {
        match items.get(i) {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            Some(Value::Int(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    Head {
        existed: matches!(items.first(), Some(Value::Int(1))),
        prev_written_at: text(1).parse().ok(),
        before: text(2),
        after: text(3),
    }
}

/// The smallest f64 greater than `x` (for positive finite `x`).
pub(crate) fn next_up(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else if x.is_finite() && x < 0.0 {
        f64::from_bits(x.to_bits() - 1)
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_up_is_the_next_float() {
        let x = 1_764_086_400.123;
        assert!(next_up(x) > x);
        assert_eq!(next_up(x) - x, f64::EPSILON * 2f64.powi(30));
        assert!(next_up(-1.0) > -1.0);
    }

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

    #[test]
    fn head_replies_parse() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"100.5".to_vec()),
            Value::BulkString(b"90".to_vec()),
            Value::BulkString(b"95".to_vec()),
        ]);
        let h = parse_head(Some(&v));
        assert!(h.existed);
        assert_eq!(h.prev_written_at, Some(100.5));
        assert_eq!((h.before.as_str(), h.after.as_str()), ("90", "95"));
        let v = Value::Array(vec![
            Value::Int(0),
            Value::BulkString(vec![]),
            Value::BulkString(vec![]),
            Value::BulkString(b"95".to_vec()),
        ]);
        let h = parse_head(Some(&v));
        assert!(!h.existed);
        assert_eq!(h.prev_written_at, None);
    }
}
