//! [`RedisLiveFeed`]: the ingester's stored batches from its Redis pub/sub
//! channel (`<prefix>events`, one [`BatchEvent`] per stored batch) as a
//! [`LiveFeed`], reconnecting by itself.

use std::time::Instant;

use futures::StreamExt;
use sysmon_core::backoff::Backoff;
use sysmon_core::config::redact_url_password;
use sysmon_core::read::{BatchStream, LiveFeed};
use sysmon_core::{Batch, Snapshot};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{BatchEvent, RedisStore};

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
/// it starts and when it ends. The waits are [`Backoff::DEPENDENCY`] (capped at
/// a second), so Redis' return is noticed within about a second.
async fn follow(feed: RedisLiveFeed, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let RedisLiveFeed { target, store } = feed;
    let channel = store.keys().events();
    let mut backoff = Backoff::DEPENDENCY;
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
                backoff.reset();
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
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}
