//! `sysmon dashboard`: the web dashboard and HTTP API in their own process,
//! reading the history (SQLite or PostgreSQL) (and Redis' hot window and live channel with
//! `--redis`). `sysmon standalone` and `sysmon ingest --listen` serve it
//! in-process; the wiring of all three is in [`crate::serve`].
use clap::Args;
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
    #[arg(long, env = "SYSMON_REDIS", hide_env_values = true)]
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
    let history =
        crate::history::History::open(&config, args.db.db_password_file.as_deref()).await?;
    let listener = crate::serve::listen(&config).await?;
    let stop = crate::shutdown_on_signal();
    let dashboard = crate::serve::from_stores(&config, &history).await?;

    println!(
        "sysmon dashboard: history in {}{}",
        history.describe(),
        if config.redis.url.is_some() {
            ", live updates from Redis"
        } else {
            ""
        }
    );
    println!(
        "dashboard: {}",
        crate::serve::dashboard_url(&config.dashboard.listen)
    );
    dashboard.serve(listener, stop).await?;
    info!("dashboard stopped");
    Ok(())
}
