//! `sysmon standalone`: agent + ingester (+ dashboard) in one process, over the
//! in-process channel transport, history in SQLite. No Kafka, no Redis.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sysmon_core::agent::AgentOptions;
use sysmon_core::ingest::SinkRole;
use sysmon_core::{channel_transport, Agent, Ingest};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{AgentIdentityArgs, CommonArgs, DbArgs};

/// Flags of `sysmon standalone`.
#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    identity: AgentIdentityArgs,
    #[command(flatten)]
    db: DbArgs,
    /// Dashboard address [default: 127.0.0.1:7861]; 0.0.0.0:7861 opens it to the LAN.
    #[arg(long, env = "SYSMON_LISTEN")]
    listen: Option<String>,
    /// Require this token on the dashboard (bearer header or login form); see `sysmon dashboard`.
    #[arg(long, env = "SYSMON_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

/// Runs until SIGINT/SIGTERM, then delivers and stores everything collected.
pub async fn run(args: StandaloneArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.identity.apply(&mut config)?;
    args.db.apply(&mut config);
    if let Some(l) = &args.listen {
        config.dashboard.listen = l.clone();
    }
    if let Some(t) = &args.auth_token {
        config.dashboard.auth_token = Some(t.clone());
    }
    let collectors = crate::build_collectors(&config)?;
    let options = AgentOptions::from_config(&config.agent)?;
    let history =
        crate::history::History::open(&config, args.db.db_password_file.as_deref()).await?;
    let listener = crate::serve::listen(&config).await?;

    let (transport, receiver) = channel_transport(64);
    let mut ingest = Ingest::new(Box::new(receiver), config.ingest_options());
    ingest.add_sink(history.sink(), SinkRole::Required);
    let stats = ingest.stats();
    let events = ingest.events();
    let analytics = crate::analytics::start(
        &config,
        &events,
        stats.clone(),
        history.analytics(),
        history.store(),
        history.shared_fleet(),
        None,
    )?;
    // The ingester ends by itself once the agent is gone and the channel is drained.
    let ingest_task = tokio::spawn(ingest.run(CancellationToken::new()));

    let machine_id = options.machine_id.clone();
    let interval = options.interval;
    let stop = crate::shutdown_on_signal();
    let dashboard_task = tokio::spawn(
        crate::serve::in_process(&config, &history, events, stats.clone(), &analytics)
            .serve(listener, stop.clone()),
    );
    let agent = Agent::new(options, Arc::new(transport))
        .with_collectors(collectors)
        .spawn();

    println!(
        "sysmon standalone: machine {machine_id}, sampling every {}, history in {}",
        sysmon_core::duration::format(interval),
        config.sqlite.path.display()
    );
    println!(
        "dashboard: {}",
        crate::serve::dashboard_url(&config.dashboard.listen)
    );
    println!("press Ctrl-C to stop");

    stop.cancelled().await;
    let report = agent.shutdown().await;
    ingest_task
        .await
        .context("ingest task failed")?
        .context("ingest failed")?;
    analytics.finish().await?;
    dashboard_task
        .await
        .context("dashboard task failed")?
        .context("dashboard failed")?;
    info!(
        collected = report.collected,
        stored = stats.stored.load(std::sync::atomic::Ordering::Relaxed),
        "standalone stopped; everything collected was stored"
    );
    Ok(())
}
