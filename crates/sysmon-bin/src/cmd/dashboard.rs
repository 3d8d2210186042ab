//! `sysmon dashboard`: the web dashboard and HTTP API in their own process,
//! reading the SQLite history (and Redis' hot window and live channel with
//! `--redis`). `sysmon standalone` serves the same dashboard in-process.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sysmon_core::config::Config;
use sysmon_dashboard::redis::{redis_feed, RedisSource};
use sysmon_dashboard::{Dashboard, DashboardSource};
use sysmon_sinks::redis::RedisStore;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::cli::{CommonArgs, DbArgs};

/// Flags of `sysmon dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Redis URL (redis://[user:pass@]host:port/db or rediss://): latest values and
    /// the recent window from Redis, and live updates from the ingester's Redis
    /// channel. Without it, live updates come from polling SQLite once a second.
    #[arg(long, env = "SYSMON_REDIS")]
    redis: Option<String>,
    /// Address to listen on [default: 127.0.0.1:7861]; 0.0.0.0:7861 opens it to the LAN
    /// (then set --auth-token).
    #[arg(long, env = "SYSMON_LISTEN")]
    listen: Option<String>,
    /// Require this token on every route but /healthz: as `Authorization: Bearer TOKEN`,
    /// or through the login form (which sets an HttpOnly cookie).
    #[arg(long, env = "SYSMON_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

/// Binds the dashboard's listen address with a readable error.
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:7861"))?;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another sysmon dashboard already running there?)")
    })
}

/// Warns when the dashboard is reachable from the network without a token.
pub fn warn_if_open(listener: &TcpListener, config: &Config) {
    if let Ok(a) = listener.local_addr() {
        if !a.ip().is_loopback() && config.dashboard.auth_token.is_none() {
            warn!(addr = %a, "the dashboard is open to the network without --auth-token: anyone who can reach it can read every machine's metrics");
        }
    }
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: DashboardArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.db.apply(&mut config);
    if let Some(l) = &args.listen {
        config.dashboard.listen = l.clone();
    }
    if let Some(t) = &args.auth_token {
        config.dashboard.auth_token = Some(t.clone());
    }
    if let Some(u) = &args.redis {
        config.redis.url = Some(u.clone());
    }
    let path = &config.sqlite.path;
    if crate::history::postgres_url(&config).is_none() && !path.exists() {
        warn!(db = %path.display(), "no database yet: it is created now and fills once `sysmon ingest` writes to it");
    }
    let sqlite = crate::history::History::open(&config, args.db.db_password_file.as_deref())
        .await?
        .for_dashboard()?;
    let listener = bind(&config.dashboard.listen).await?;
    warn_if_open(&listener, &config);
    let stop = crate::shutdown_on_signal();

    // Alerts, anomalies and forecasts as the ingester's analytics stored them.
    let analytics = Arc::new(sysmon_dashboard::StoredAnalytics::new((*sqlite).clone()));
    let dashboard = match &config.redis.url {
        Some(url) => {
            let store = RedisStore::connect(&config.redis)
                .await
                .context("connecting to Redis")?;
            let (tx, _) = broadcast::channel(256);
            tokio::spawn(redis_feed(
                url.clone(),
                store.clone(),
                tx.clone(),
                stop.clone(),
            ));
            let source: Arc<dyn DashboardSource> = Arc::new(RedisSource::new(sqlite, store));
            Dashboard::new(source).with_live(tx, "redis")
        }
        None => Dashboard::new(sqlite as Arc<dyn DashboardSource>),
    }
    .with_auth_token(config.dashboard.auth_token.clone())
    .with_analytics(analytics);

    println!(
        "sysmon dashboard: history in {}{}",
        config.sqlite.path.display(),
        if config.redis.url.is_some() {
            ", live updates from Redis"
        } else {
            ""
        }
    );
    println!(
        "dashboard: {}",
        crate::cmd::standalone::dashboard_url(&config.dashboard.listen)
    );
    dashboard.serve(listener, stop).await?;
    info!("dashboard stopped");
    Ok(())
}
