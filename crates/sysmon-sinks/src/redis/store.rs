//! [`RedisStore`]: reads the keys [`super::RedisSink`] writes.

use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{Client, RedisError};
use async_trait::async_trait;
use sysmon_core::codec::{binary, encode_json};
use sysmon_core::config::RedisConfig;
use sysmon_core::{MachineSummary, Snapshot, SnapshotStore, StoreError};
use tracing::warn;

use super::{
    build_client, describe, fatal_hint, is_fatal, lazy_manager, now_secs, ping, timeout_error,
    KeyLayout, RedisOptions, TopProcesses,
};
use crate::error::SinksError;

/// Keys per `MGET` of [`RedisStore::latest_many`]: large enough that a
/// 1,000-machine fleet needs only a few, small enough that decoding the first
/// chunk overlaps Redis answering the next.
pub(crate) const LATEST_CHUNK: usize = 100;

/// Read access to the hot window in Redis.
///
/// * `machines`: the `last_seen` index (machines seen within the window) with
///   their host names.
/// * `latest`: `GET <p>latest:<id>` (binary); [`RedisStore::latest_many`]
///   answers any number of machines with one `MGET`.
/// * `range`: the recent series. A range Redis cannot answer completely is an
///   **error**, never a partial answer: one that starts before the window, or
///   before `complete_since` (Redis was new, emptied or missed writes during an
///   outage and nobody backfilled it yet). A [`crate::query::QueryLayer`] then
///   asks the cold store instead.
///
/// Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    keys: KeyLayout,
    window: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("window", &self.window)
            .finish()
    }
}

impl RedisStore {
    /// Connects with the default [`RedisOptions`]. See [`RedisStore::connect_with`].
    pub async fn connect(config: &RedisConfig) -> Result<RedisStore, SinksError> {
        RedisStore::connect_with(config, &RedisOptions::default()).await
    }

    /// Checks the configuration and connects. A bad URL or refused credentials
    /// are errors; an unreachable Redis is logged and every query fails until it
    /// is back (the connection reconnects by itself).
    pub async fn connect_with(
        config: &RedisConfig,
        options: &RedisOptions,
    ) -> Result<RedisStore, SinksError> {
        let client = build_client(config, options)?;
        let target = describe(&client);
        let conn = lazy_manager(client.clone(), options)?;
        match ping(&conn, options.connect_timeout + options.timeout).await {
            Ok(()) => {}
            Err(e) if is_fatal(&e) => {
                return Err(SinksError::Config(format!(
                    "redis at {target} refused the connection: {e} ({})",
                    fatal_hint(&e)
                )))
            }
            Err(e) => {
                warn!(redis = %target, error = %e, "redis is unreachable; queries use the cold store until it is back");
            }
        }
        Ok(RedisStore::from_parts(
            client,
            conn,
            KeyLayout::new(config.prefix.clone()),
            config.window,
            options.timeout,
        ))
    }

    pub(crate) fn from_parts(
        client: Client,
        conn: ConnectionManager,
        keys: KeyLayout,
        window: Duration,
        timeout: Duration,
    ) -> RedisStore {
        RedisStore {
            client,
            conn,
            keys,
            window,
            timeout,
        }
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// A new pub/sub connection subscribed to `<prefix>events` (the
    /// [`super::BatchEvent`] channel), with the store's URL, credentials and
    /// TLS settings; bounded by the command timeout.
    pub async fn subscribe_events(&self) -> Result<::redis::aio::PubSub, StoreError> {
        let channel = self.keys.events();
        let sub = async {
            let mut ps = self.client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, RedisError>(ps)
        };
        self.run(sub).await
    }

    /// How much history Redis keeps per machine.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The newest snapshot of each of `machine_ids`, in order: `MGET`s of up
    /// to 100 keys sent back to back (one round trip), each
    /// chunk decoded as soon as it arrives while Redis still answers the next.
    pub async fn latest_many<S: AsRef<str>>(
        &self,
        machine_ids: &[S],
    ) -> Result<Vec<Option<Snapshot>>, StoreError> {
        self.latest_chunks(machine_ids, |b| decode_latest(&b)).await
    }

    /// Like [`RedisStore::latest_many`], as each snapshot's native JSON (the
    /// wire format, `docs/wire-format.md`), for an HTTP API that passes it on.
    pub async fn latest_many_json<S: AsRef<str>>(
        &self,
        machine_ids: &[S],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.latest_chunks(machine_ids, |b| {
            if is_json(&b) {
                Ok(b)
            } else {
                decode_latest(&b).map(|s| encode_json(&s))
            }
        })
        .await
    }

    /// `MGET`s `<p>latest:<id>` in chunks sent back to back and converts each
    /// value with `f` as its chunk arrives, bounded by the timeout.
    async fn latest_chunks<S: AsRef<str>, T>(
        &self,
        machine_ids: &[S],
        f: impl Fn(Vec<u8>) -> Result<T, StoreError>,
    ) -> Result<Vec<Option<T>>, StoreError> {
        use futures::stream::{FuturesOrdered, StreamExt};
        if machine_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut chunks = FuturesOrdered::new();
        for ids in machine_ids.chunks(LATEST_CHUNK) {
            let mut cmd = ::redis::cmd("MGET");
            for id in ids {
                cmd.arg(self.keys.latest(id.as_ref()));
            }
            let mut conn = self.conn.clone();
            chunks
                .push_back(async move { cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await });
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut out = Vec::with_capacity(machine_ids.len());
        loop {
            let next = match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(r)) => r.map_err(|e| StoreError::backend("redis", e))?,
                Ok(None) => break,
                Err(_) => return Err(backend(timeout_error(self.timeout).to_string())),
            };
            for v in next {
                out.push(v.map(&f).transpose()?);
            }
        }
        Ok(out)
    }

    /// The newest top-process lists of `machine_id` (from its latest snapshot).
    pub async fn top_processes(
        &self,
        machine_id: &str,
    ) -> Result<Option<TopProcesses>, StoreError> {
        Ok(self.latest(machine_id).await?.map(|s| TopProcesses {
            machine_id: s.machine_id,
            timestamp: s.timestamp,
            top_cpu_processes: s.top_cpu_processes,
            top_mem_processes: s.top_mem_processes,
        }))
    }

    /// The active alerts of `scope` (a machine id, or the empty `FLEET_SCOPE` for the fleet) as written by the
    /// alerting engine (see [`super::RedisSink::put_active_alerts`]).
    pub async fn active_alerts(
        &self,
        scope: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(self.keys.alerts(scope));
        let v: Option<Vec<u8>> = self.run(cmd.query_async(&mut self.conn.clone())).await?;
        v.map(|b| {
            serde_json::from_slice(&b).map_err(|e| backend(format!("damaged alerts JSON: {e}")))
        })
        .transpose()
    }

    /// The time from which Redis holds every sample (within the window), or
    /// `None` when it holds nothing a writer vouched for.
    pub async fn complete_since(&self) -> Result<Option<f64>, StoreError> {
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(self.keys.meta()).arg("complete_since");
        let v: Option<String> = self.run(cmd.query_async(&mut self.conn.clone())).await?;
        Ok(v.and_then(|s| s.parse().ok()))
    }

    async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::backend("redis", e)),
            Err(_) => Err(backend(timeout_error(self.timeout).to_string())),
        }
    }

    /// Checks that Redis can answer `[since, ..)` completely.
    fn check_complete(&self, since: f64, complete_since: Option<String>) -> Result<(), StoreError> {
        let Some(c) = complete_since.and_then(|s| s.parse::<f64>().ok()) else {
            return Err(backend(
                "redis holds no vouched-for window (new or emptied Redis, or no writer yet)".into(),
            ));
        };
        if since < c {
            return Err(backend(format!(
                "redis holds every sample only from {c:.3}; asked from {since:.3}"
            )));
        }
        Ok(())
    }
}

fn backend(message: String) -> StoreError {
    StoreError::message("redis", message)
}

/// Native JSON, as sysmon versions before the binary latest state wrote it.
fn is_json(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

/// A `<p>latest:<id>` value: binary (`SMB1`), or native JSON left by an older
/// sysmon (read until the machine's next write replaces it).
fn decode_latest(bytes: &[u8]) -> Result<Snapshot, StoreError> {
    if is_json(bytes) {
        serde_json::from_slice(bytes)
            .map_err(|e| backend(format!("damaged latest snapshot JSON: {e}")))
    } else {
        binary::decode(bytes).map_err(|e| backend(format!("damaged latest snapshot: {e}")))
    }
}

fn decode_members(values: Vec<Vec<u8>>, out: &mut Vec<Snapshot>) -> Result<(), StoreError> {
    for b in values {
        out.push(binary::decode(&b).map_err(|e| backend(format!("damaged series member: {e}")))?);
    }
    Ok(())
}

/// Score bounds (ms) that surely contain every timestamp in `[since, until)`.
fn score_bounds(since: f64, until: f64) -> (String, String) {
    let lo = ((since * 1000.0).floor() as i64)
        .saturating_sub(1)
        .to_string();
    let hi = if until.is_finite() {
        ((until * 1000.0).ceil() as i64)
            .saturating_add(1)
            .to_string()
    } else {
        "+inf".to_string()
    };
    (lo, hi)
}

#[async_trait]
impl SnapshotStore for RedisStore {
    async fn machines(&self) -> Result<Vec<MachineSummary>, StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.keys.last_seen())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        pipe.cmd("HGETALL").arg(self.keys.hostnames());
        let (seen, hosts): (
            Vec<(String, f64)>,
            std::collections::HashMap<String, String>,
        ) = self.run(pipe.query_async(&mut self.conn.clone())).await?;
        let mut out: Vec<MachineSummary> = seen
            .into_iter()
            .map(|(machine_id, last_seen)| MachineSummary {
                hostname: hosts.get(&machine_id).cloned(),
                machine_id,
                last_seen,
            })
            .collect();
        out.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        Ok(out)
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
        let window_start = now_secs() - self.window.as_secs_f64();
        if since < window_start {
            return Err(backend(format!(
                "redis keeps only the last {:?}; asked from {since:.3}, the window starts at {window_start:.3}",
                self.window
            )));
        }
        let (lo, hi) = score_bounds(since, until);
        // Up to two extra members sit in the 1 ms slack on each side.
        let fetch = limit.saturating_add(4);
        let mut out = Vec::new();
        match machine_id {
            Some(m) => {
                let mut pipe = ::redis::pipe();
                pipe.cmd("HGET").arg(self.keys.meta()).arg("complete_since");
                pipe.cmd("ZRANGEBYSCORE")
                    .arg(self.keys.series(m))
                    .arg(&lo)
                    .arg(&hi)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(fetch);
                let (complete, members): (Option<String>, Vec<Vec<u8>>) =
                    self.run(pipe.query_async(&mut self.conn.clone())).await?;
                self.check_complete(since, complete)?;
                decode_members(members, &mut out)?;
            }
            None => {
                let mut pipe = ::redis::pipe();
                pipe.cmd("HGET").arg(self.keys.meta()).arg("complete_since");
                pipe.cmd("ZRANGE").arg(self.keys.last_seen()).arg(0).arg(-1);
                let (complete, ids): (Option<String>, Vec<String>) =
                    self.run(pipe.query_async(&mut self.conn.clone())).await?;
                self.check_complete(since, complete)?;
                if !ids.is_empty() {
                    let mut pipe = ::redis::pipe();
                    for id in &ids {
                        pipe.cmd("ZRANGEBYSCORE")
                            .arg(self.keys.series(id))
                            .arg(&lo)
                            .arg(&hi)
                            .arg("LIMIT")
                            .arg(0)
                            .arg(fetch);
                    }
                    let per_machine: Vec<Vec<Vec<u8>>> =
                        self.run(pipe.query_async(&mut self.conn.clone())).await?;
                    for members in per_machine {
                        decode_members(members, &mut out)?;
                    }
                }
            }
        }
        out.retain(|s| s.timestamp >= since && s.timestamp < until);
        sort_canonical(&mut out);
        out.truncate(limit);
        Ok(out)
    }
}

/// Oldest first by millisecond, ties by machine id: the cold store's order.
pub(crate) fn sort_canonical(v: &mut [Snapshot]) {
    v.sort_by(|a, b| {
        a.timestamp_millis()
            .cmp(&b.timestamp_millis())
            .then_with(|| a.machine_id.cmp(&b.machine_id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_cover_the_range_with_slack() {
        assert_eq!(
            score_bounds(100.0005, 200.0),
            ("99999".to_string(), "200001".to_string())
        );
        assert_eq!(score_bounds(1.0, f64::INFINITY).1, "+inf");
    }
}
