//! The configuration sections analytics owns, `[alerts]` and `[anomaly]`, and
//! [`Config`]: core's configuration file with those sections typed and checked.
//!
//! Core parses the file ([`sysmon_core::config::Config`]) and leaves these two
//! sections to their owner through its type parameters, so one file still
//! configures every binary, unknown keys are still errors in every section,
//! and [`default_config_toml`] is still one commented file.

use sysmon_core::config::{ConfigSection, DEFAULT_CONFIG_TOML as CORE_DEFAULT_TOML};
use sysmon_core::error::CoreError;

pub use crate::alerts::AlertsConfig;
pub use crate::detector::DetectorConfig;

/// The whole configuration file, with `[alerts]` and `[anomaly]` typed.
pub type Config = sysmon_core::config::Config<AlertsConfig, DetectorConfig>;

/// The commented defaults of `[alerts]` and `[anomaly]`.
pub const DEFAULT_ANALYTICS_TOML: &str = include_str!("default_config.toml");

/// The commented default configuration printed by `sysmon config --print-default`:
/// core's sections, then analytics'.
pub fn default_config_toml() -> String {
    format!("{CORE_DEFAULT_TOML}{DEFAULT_ANALYTICS_TOML}")
}

impl ConfigSection for AlertsConfig {
    fn check(&self) -> Result<(), CoreError> {
        AlertsConfig::check(self)
    }
}

impl ConfigSection for DetectorConfig {
    fn check(&self) -> Result<(), CoreError> {
        DetectorConfig::check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_the_defaults() {
        let parsed = Config::from_toml(&default_config_toml()).unwrap();
        let expected = Config {
            collectors: parsed.collectors.clone(),
            ..Config::default()
        };
        assert_eq!(parsed, expected);
        assert!(parsed.collectors.contains_key("processes"));
    }

    #[test]
    fn alerts_and_anomaly_sections_parse_and_are_checked() {
        let c = Config::from_toml(
            "[anomaly]\ntrees = 150\ncontamination = \"auto\"\n\
             [[alerts.rules]]\nname = \"swap\"\nmetric = \"swap_usage\"\nthreshold = 50\nfor = \"1m\"",
        )
        .unwrap();
        assert_eq!(c.anomaly.trees, 150);
        assert_eq!(c.alerts.rules.len(), 1, "rules replace the defaults");
        assert_eq!(c.alerts.rules[0].name, "swap");
        let e = Config::from_toml("[anomaly]\ntrees = 0").unwrap_err();
        assert!(e.to_string().contains("anomaly.trees"), "{e}");
        let e = Config::from_toml("[[alerts.webhooks]]\nurl = \"nope\"").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(Config::default().alerts.rules.len(), 8);
    }

    #[test]
    fn unknown_keys_in_analytics_sections_are_errors() {
        let e = Config::from_toml("[anomaly]\ntreees = 150").unwrap_err();
        assert!(e.to_string().contains("treees"), "{e}");
    }
}
