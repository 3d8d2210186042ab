//! Argument groups shared by several subcommands, and value parsers.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sysmon_analytics::Config;

/// Parses `1s`, `500ms`, `15m`, `24h`, `7d` (for clap).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    sysmon_core::duration::parse(s)
}

/// `--config` and `--log-level`, accepted by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML configuration file (`sysmon config --print-default` prints a commented one).
    #[arg(long, short = 'c', env = "SYSMON_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or per module (`sysmon_core=debug,info`).
    #[arg(long, env = "SYSMON_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

/// Identity and schedule of an agent.
#[derive(Debug, Clone, Args)]
pub struct AgentIdentityArgs {
    /// Machine id [default: <hostname>-<hash of /etc/machine-id>; never random].
    #[arg(long, env = "SYSMON_MACHINE_ID")]
    pub machine_id: Option<String>,
    /// Sampling interval, e.g. 1s, 500ms, 10s [default: 1s, or [agent] interval].
    #[arg(long, env = "SYSMON_INTERVAL", value_parser = parse_duration)]
    pub interval: Option<Duration>,
}

impl AgentIdentityArgs {
    /// Applies the flags over the config (flags and env win over the file).
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(id) = &self.machine_id {
            config.agent.machine_id = Some(id.clone());
        }
        if let Some(i) = self.interval {
            config.agent.interval = i;
        }
        config.check()?;
        Ok(())
    }
}

/// Where the history lives: a SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// SQLite database file, or a PostgreSQL URL
    /// (postgresql://user@host:5432/sysmon?sslmode=verify-full) shared by several
    /// ingesters [default: ./data/sysmon.db, or [sqlite] path].
    #[arg(long, env = "SYSMON_DB", hide_env_values = true)]
    pub db: Option<PathBuf>,
    /// File whose first line is the PostgreSQL password (when the URL has none;
    /// PGPASSWORD is read last).
    #[arg(long, env = "SYSMON_DB_PASSWORD_FILE")]
    pub db_password_file: Option<PathBuf>,
}

impl DbArgs {
    /// Applies the flag over the config.
    pub fn apply(&self, config: &mut Config) {
        if let Some(db) = &self.db {
            config.sqlite.path = db.clone();
        }
    }
}
