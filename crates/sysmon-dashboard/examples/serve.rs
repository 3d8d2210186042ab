//! Embeds the dashboard in another program: serves a SQLite history on an
//! address, with live updates from polling the store.
//!
//! ```text
//! cargo run -p sysmon-dashboard --example serve -- /tmp/demo.db 127.0.0.1:7862
//! ```

use std::sync::Arc;

use sysmon_core::config::SqliteConfig;
use sysmon_dashboard::{Dashboard, HistoryReader};
use sysmon_sinks::sqlite::SqliteSink;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let db = args.next().unwrap_or_else(|| "data/sysmon.db".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7862".into());
    let sink: Arc<dyn HistoryReader> = Arc::new(SqliteSink::open(&SqliteConfig {
        path: db.into(),
        ..SqliteConfig::default()
    })?);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("dashboard: http://{listen}/");
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    Dashboard::new(sink).serve(listener, stop).await?;
    Ok(())
}
