//! The dashboard wiring of every command that serves it: `sysmon dashboard`
//! (its own process, reading what an ingester stored), and `sysmon standalone`
//! and `sysmon ingest --listen` (fed by the ingester in the same process).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sysmon_analytics::Config;
use sysmon_core::{Batch, IngestStats};
use sysmon_dashboard::Dashboard;
use sysmon_sinks::redis::{RedisLiveFeed, RedisStore};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::warn;

use crate::analytics::RunningAnalytics;
use crate::history::History;

/// Binds `[dashboard] listen` with a readable error (a taken port fails at
/// once, before anything else starts) and warns when the address is open to
/// the network without a token.
pub async fn listen(config: &Config) -> anyhow::Result<TcpListener> {
    let listen = &config.dashboard.listen;
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:7861"))?;
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another sysmon dashboard already running there?)")
    })?;
    if let Ok(a) = listener.local_addr() {
        if let Some(why) = open_warning(a, config.dashboard.auth_token.as_deref()) {
            warn!(addr = %a, "{why}");
        }
    }
    Ok(listener)
}

/// What [`listen`] warns about for a dashboard on `addr` with `token`, if
/// anything (an empty token is no token: the dashboard ignores it).
fn open_warning(addr: SocketAddr, token: Option<&str>) -> Option<&'static str> {
    if addr.ip().is_loopback() {
        return None;
    }
    match token {
        None => Some(
            "the dashboard is open to the network without --auth-token: anyone who can \
             reach it can read every machine's metrics",
        ),
        Some(t) if t.trim().is_empty() => Some(
            "--auth-token is empty, so authentication is off: the dashboard is open to the \
             network and anyone who can reach it can read every machine's metrics",
        ),
        Some(_) => None,
    }
}

/// The URL to print for a listen address (`0.0.0.0` is shown as this host's name).
pub fn dashboard_url(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) | Some(("[::]", port)) => {
            let host = sysmon_core::identity::hostname().unwrap_or_else(|| "localhost".into());
            format!("http://{host}:{port}/ (listening on all interfaces)")
        }
        _ => format!("http://{listen}/"),
    }
}

/// The dashboard of an ingester in this process: history from its SQLite or
/// PostgreSQL history, live updates from its stored-batch broadcast, its and
/// its analytics' counters on `/metrics`, alerts and anomalies as the
/// analytics stored them.
pub fn in_process(
    config: &Config,
    history: &History,
    events: broadcast::Sender<Batch>,
    ingest_stats: Arc<IngestStats>,
    analytics: &RunningAnalytics,
) -> Dashboard {
    Dashboard::new(history.reader())
        .with_live(events, "in-process")
        .with_ingest_stats(ingest_stats)
        .with_analytics_stats(analytics.stats.clone())
        .with_analytics(Arc::new(history.stored_analytics()))
        .with_auth_token(config.dashboard.auth_token.clone())
}

/// The dashboard of its own process: the history (SQLite or PostgreSQL), and
/// with `[redis] url` the latest values and recent window from Redis plus live
/// updates from the ingester's Redis channel (without it, from polling the
/// history).
pub async fn from_stores(config: &Config, history: &History) -> anyhow::Result<Dashboard> {
    let analytics = Arc::new(history.stored_analytics());
    let dashboard = match &config.redis.url {
        Some(url) => {
            let store = RedisStore::connect(&config.redis)
                .await
                .context("connecting to Redis")?;
            let feed = Arc::new(RedisLiveFeed::new(url, store.clone()));
            Dashboard::new(history.reader_with_redis(store)).with_live_feed(feed)
        }
        None => Dashboard::new(history.reader()),
    };
    Ok(dashboard
        .with_auth_token(config.dashboard.auth_token.clone())
        .with_analytics(analytics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_token_on_the_network_is_warned_about_like_none() {
        let lan: SocketAddr = "0.0.0.0:7861".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:7861".parse().unwrap();
        assert!(open_warning(lan, None)
            .unwrap()
            .contains("open to the network"));
        let empty = open_warning(lan, Some("")).unwrap();
        assert!(
            empty.contains("empty") && empty.contains("open to the network"),
            "{empty}"
        );
        assert!(open_warning(lan, Some("  ")).is_some());
        assert_eq!(open_warning(lan, Some("s3cret")), None);
        assert_eq!(open_warning(lo, Some("")), None);
    }
}
