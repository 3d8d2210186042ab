//! `[alerts]`: the rules and the webhook targets. Delivering notifications is
//! not this module's job (see `sysmon_sinks::webhook`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rule::{AlertRule, Severity};
use sysmon_core::duration::serde_duration;
use sysmon_core::error::CoreError;

/// One webhook target (`[[alerts.webhooks]]`). Delivery lives elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL receiving a JSON POST per notification.
    pub url: String,
    /// Per-attempt timeout.
    #[serde(default = "default_webhook_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Attempts after the first one fails.
    #[serde(default = "default_webhook_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_webhook_backoff", with = "serde_duration")]
    pub backoff: Duration,
    /// Send a Slack-compatible body (`{"text": ...}`) instead of the event JSON.
    #[serde(default)]
    pub slack: bool,
    /// Only notifications at least this severe are sent.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_webhook_retries() -> u32 {
    3
}
fn default_webhook_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_min_severity() -> Severity {
    Severity::Info
}

/// `[alerts]`: the rules and where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate alert rules in the ingester.
    pub enabled: bool,
    /// The rules; setting `rules` replaces the defaults ([`AlertRule::defaults`]),
    /// `rules = []` disables them all.
    pub rules: Vec<AlertRule>,
    /// Webhook targets (none by default; every notification is logged anyway).
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules: AlertRule::defaults(),
            webhooks: Vec::new(),
        }
    }
}

impl AlertsConfig {
    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::Config(format!("alerts: {m}")));
        let mut names = std::collections::HashSet::new();
        for r in &self.rules {
            if !names.insert(r.name.as_str()) {
                return bad(format!("two rules are named `{}`", r.name));
            }
        }
        for w in &self.webhooks {
            let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
            if !scheme_ok || w.url.len() <= "https://".len() {
                return bad(format!("webhook url `{}` is not an http(s) URL", w.url));
            }
            if w.timeout.is_zero() {
                return bad(format!("webhook {}: timeout must be positive", w.url));
            }
            if w.retries > 20 {
                return bad(format!("webhook {}: retries must be at most 20", w.url));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{Comparison, Condition, Metric, Scope};
    use crate::alerts::AlertEngine;

    #[test]
    fn rules_parse_from_toml_with_clear_errors() {
        let cfg: AlertsConfig = toml::from_str(
            r#"
            [[rules]]
            name = "load"
            metric = "load_1m"
            threshold = 8.0
            for = "2m"

            [[rules]]
            name = "gone"
            kind = "machine_offline"
            after = "5m"
            severity = "info"

            [[rules]]
            name = "disk"
            kind = "filesystem_full_within"
            horizon = "6h"

            [[webhooks]]
            url = "https://hooks.example.com/x"
            slack = true
            "#,
        )
        .unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.rules.len(), 3);
        match &cfg.rules[0].condition {
            Condition::Threshold(t) => {
                assert_eq!(t.metric, Metric::Load1);
                assert_eq!(t.op, Comparison::Gt);
                assert_eq!(t.for_, Duration::from_secs(120));
                assert_eq!(t.clear_threshold, 8.0);
                assert_eq!(t.scope, Scope::EachMachine);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cfg.rules[1].condition,
            Condition::MachineOffline {
                after: Duration::from_secs(300),
                min_samples: crate::alerts::rule::DEFAULT_OFFLINE_MIN_SAMPLES,
            }
        );
        assert_eq!(cfg.webhooks[0].timeout, Duration::from_secs(5));
        assert_eq!(cfg.webhooks[0].retries, 3);
        assert!(cfg.webhooks[0].slack);
        // Round trip through TOML.
        let text = toml::to_string(&cfg).unwrap();
        let back: AlertsConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        let defaults_text = toml::to_string(&AlertsConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<AlertsConfig>(&defaults_text).unwrap(),
            AlertsConfig::default()
        );

        for (text, want) in [
            ("[[rules]]\nname = \"x\"\nthreshold = 1", "needs `metric`"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"", "needs `threshold`"),
            // `cpu` is the short name of `cpu_usage` (docs/metrics.md); `gpu` is no metric,
            // and swap in bytes is charted but not alerted on (`swap_usage` is, in %).
            ("[[rules]]\nname = \"x\"\nmetric = \"gpu\"\nthreshold = 1", "gpu"),
            ("[[rules]]\nname = \"x\"\nmetric = \"swap\"\nthreshold = 1", "expected one of: cpu_usage"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 1\nop = \">=\"", "op `>=`"),
            ("[[rules]]\nname = \"x\"\nkind = \"machine_offline\"", "needs `after`"),
            ("[[rules]]\nname = \"x\"\nkind = \"machine_offline\"\nafter = \"1m\"\nthreshold = 3", "`threshold` only applies"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 80\nclear_threshold = 90", "clear_threshold 90"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 80\nfor = \"soon\"", "soon"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 80\nscope = \"world\"", "world"),
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 80\nthresh = 1", "thresh"),
            ("[[webhooks]]\nurl = \"x\"\ntimeout = \"1s\"\nretry = 2", "retry"),
        ] {
            let e = toml::from_str::<AlertsConfig>(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let dup: AlertsConfig = toml::from_str(
            "[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 1\n[[rules]]\nname = \"x\"\nkind = \"machine_offline\"\nafter = 1",
        )
        .unwrap();
        assert!(dup
            .check()
            .unwrap_err()
            .to_string()
            .contains("two rules are named `x`"));
        let bad_url: AlertsConfig = toml::from_str("[[webhooks]]\nurl = \"ftp://x\"").unwrap();
        assert!(bad_url.check().unwrap_err().to_string().contains("ftp://x"));
        let off: AlertsConfig = toml::from_str("enabled = false").unwrap();
        assert!(AlertEngine::from_config(&off).unwrap().rules().is_empty());
        let none: AlertsConfig = toml::from_str("rules = []").unwrap();
        assert!(none.rules.is_empty());
    }
}
