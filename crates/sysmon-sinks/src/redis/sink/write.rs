//! One batch written as a few pipelines sent back to back (one round trip),
//! and the memo that lets live writes leave out commands that cannot change anything.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use ::redis::{RedisError, Value};
use sysmon_core::Snapshot;

use super::super::scripts::{BATCH_HEAD_SCRIPT, COMMIT_MACHINES_SCRIPT};
use super::super::{now_secs, timeout_error, BatchEvent};
use super::request_builder::{newest_hostname, ScriptChunk, SCRIPT_BYTES, SCRIPT_MACHINES};
use super::Inner;

/// What this sink last wrote for one machine. It only ever lets the sink
/// leave out a command whose effect is already there, and it is forgotten
/// whenever a write fails (Redis may have lost data, or a write half-happened).
#[derive(Debug, Clone)]
pub(super) struct Memo {
    /// The newest sample's millisecond this sink wrote: a later sample cannot
    /// have a member of its millisecond in the series yet (from this writer).
    pub(super) newest_ms: i64,
    /// Samples added since the series was last trimmed by count.
    pub(super) since_trim: u32,
    /// The host name written to `hostnames`.
    pub(super) hostname: Option<String>,
}

/// Per machine of one write: which optional commands it needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct MachinePlan {
    /// Remove each sample's millisecond from the series before adding it (a
    /// sample replaces the one of the same millisecond). Left out for samples
    /// newer than anything this sink wrote for the machine.
    pub(super) replace: bool,
    /// Trim the series by count.
    pub(super) trim: bool,
    /// Write the host name (also written by the script when the machine is
    /// new to `last_seen`).
    pub(super) hostname: bool,
    /// Every sample is newer than anything this sink wrote for the machine:
    /// the newest one is `SET` as the latest state directly instead of being
    /// staged and renamed into place by the script (which repairs it from the
    /// series should another writer have stored a newer one meanwhile).
    pub(super) direct_latest: bool,
}

/// The reply of the batch head script.
#[derive(Debug, Clone, Default)]
pub(super) struct Head {
    /// `meta` existed before this batch (false: a new or emptied Redis).
    pub(super) existed: bool,
    /// The previous writer's last write (s), if any.
    pub(super) prev_written_at: Option<f64>,
    /// `complete_since` before this batch ('' when it did not exist).
    pub(super) before: String,
    /// `complete_since` after this batch.
    pub(super) after: String,
}

impl Inner {
    /// Writes `batch` in one pipelined round trip, bounded by the timeout.
    /// `live` batches (the ingest path) may leave out the per-millisecond
    /// replace for samples newer than this sink wrote before; repair writes
    /// (restores and backfills, which may race with live writes of the same
    /// samples) always replace.
    pub(super) async fn write_batch(
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

    pub(super) fn memo_lock(&self) -> MutexGuard<'_, HashMap<String, Memo>> {
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
        // Once per upkeep period: machines whose keys have expired (nothing
        // newer written for the TTL) are forgotten, so the memo follows the
        // machines that report rather than every id ever seen.
        let now_ms = (now_secs() * 1000.0) as i64;
        if now_ms - self.memo_pruned_ms.load(Ordering::Relaxed) >= self.upkeep_ms as i64 {
            self.memo_pruned_ms.store(now_ms, Ordering::Relaxed);
            let oldest = now_ms.saturating_sub(self.ttl_ms as i64);
            memo.retain(|_, m| m.newest_ms >= oldest);
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
pub(super) fn next_up(x: f64) -> f64 {
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
