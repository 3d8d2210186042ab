//! [`RedisLiveFeed`]: the ingester's stored batches from its Redis pub/sub
//! channel (`<prefix>events`, one [`BatchEvent`] per stored batch) as a
//! [`LiveFeed`], reconnecting by itself.

use std::time::{Duration, Instant};

use futures::StreamExt;
use sysmon_core::config::redact_url_password;
use sysmon_core::read::{BatchStream, LiveFeed};
use sysmon_core::{Batch, Snapshot};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{BatchEvent, RedisStore};

/// First wait before subscribing again after a failure or a lost connection.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a restarted Redis is noticed within it.
pub const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// The next wait after `d`: doubled, at most [`BACKOFF_CAP`].
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_CAP)
}

/// Stored batches announced on `<prefix>events`: for every [`BatchEvent`],
/// the newest full snapshot of each machine in it (one `MGET`). The
/// subscription uses the store's client, so the URL, the credentials and the
/// TLS settings of its `RedisConfig` apply.
#[derive(Debug, Clone)]
pub struct RedisLiveFeed {
    target: String,
    store: RedisStore,
}

impl RedisLiveFeed {
    /// Follows `store`'s channel; `url` only names the server in log lines
    /// (with its password redacted).
    pub fn new(url: &str, store: RedisStore) -> Self {
        RedisLiveFeed {
            target: redact_url_password(url),
            store,
        }
    }
}

impl LiveFeed for RedisLiveFeed {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn subscribe(&self, shutdown: CancellationToken) -> BatchStream {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(follow(self.clone(), tx, shutdown));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
            .boxed()
    }
}

/// Subscribes, forwards, and on failure subscribes again with backoff, until
/// `shutdown` fires or the stream's reader is gone. An outage is logged when
/// it starts and when it ends.
async fn follow(feed: RedisLiveFeed, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let RedisLiveFeed { target, store } = feed;
    let channel = store.keys().events();
    let mut backoff = BACKOFF_START;
    let mut down_since: Option<Instant> = None;
    loop {
        let ps = tokio::select! {
            r = store.subscribe_events() => r,
            _ = shutdown.cancelled() => return,
        };
        match ps {
            Ok(mut ps) => {
                match down_since.take() {
                    Some(t) => {
                        info!(redis = %target, outage = ?t.elapsed(), "live feed: Redis reachable again")
                    }
                    None => info!(redis = %target, %channel, "live feed: subscribed to Redis"),
                }
                backoff = BACKOFF_START;
                let mut messages = ps.on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.cancelled() => return,
                    };
                    let Some(msg) = msg else { break };
                    let event = match BatchEvent::parse(msg.get_payload_bytes()) {
                        Ok(e) => e,
                        Err(e) => {
                            debug!(error = %e, "live feed: ignoring a message that is not a batch event");
                            continue;
                        }
                    };
                    let mut ids: Vec<String> =
                        event.snapshots.into_iter().map(|e| e.machine_id).collect();
                    ids.sort();
                    ids.dedup();
                    match store.latest_many(&ids).await {
                        Ok(list) => {
                            let batch: Vec<Snapshot> = list.into_iter().flatten().collect();
                            if !batch.is_empty() && tx.send(batch.into()).await.is_err() {
                                return; // nobody reads the feed any more
                            }
                        }
                        Err(e) => {
                            debug!(error = %e, "live feed: reading the latest snapshots failed")
                        }
                    }
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    warn!(redis = %target, error = %e, "live feed: cannot subscribe to Redis; retrying");
                }
            }
        }
        if down_since.is_none() {
            down_since = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
        backoff = next_backoff(backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut d = BACKOFF_START;
        let mut seen = vec![d];
        for _ in 0..6 {
            d = next_backoff(d);
            seen.push(d);
        }
        assert_eq!(seen[1], Duration::from_secs(1));
        assert_eq!(seen[2], Duration::from_secs(2));
        assert!(seen.iter().all(|d| *d <= Duration::from_secs(2)));
        assert_eq!(*seen.last().unwrap(), BACKOFF_CAP);
    }
}
