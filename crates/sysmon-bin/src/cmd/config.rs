//! `sysmon config`: print the commented default configuration, or check a file.

use anyhow::bail;
use clap::Args;
use sysmon_analytics::config::default_config_toml;

use crate::cli::CommonArgs;

/// Flags of `sysmon config`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Print the commented default configuration file.
    #[arg(long)]
    print_default: bool,
    /// Check the file given with --config: parse it, validate values, build the collectors.
    #[arg(long)]
    check: bool,
}

/// Runs `sysmon config`.
pub fn run(args: ConfigArgs, common: &CommonArgs) -> anyhow::Result<()> {
    if args.print_default {
        print!("{}", default_config_toml());
        return Ok(());
    }
    if args.check {
        let Some(path) = common.config.as_deref() else {
            bail!("--check needs a file: sysmon config --check --config FILE");
        };
        let config = crate::load_config(Some(path))?;
        let collectors = crate::build_collectors(&config)?;
        println!(
            "{}: OK ({} collectors enabled: {})",
            path.display(),
            collectors.len(),
            collectors
                .iter()
                .map(|c| c.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    bail!("nothing to do: pass --print-default, or --check --config FILE")
}
