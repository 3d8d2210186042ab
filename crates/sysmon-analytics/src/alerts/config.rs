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
    /// How long events are collected before one request per (rule, state)
    /// goes out: an alert storm (`cpu_high` on 340 machines) is one request
    /// listing the machines, not 340. Zero sends what is queued at once
    /// (still grouped).
    #[serde(default = "default_group_wait", with = "serde_duration")]
    pub group_wait: Duration,
    /// Machines (events) listed by name in one grouped request; the rest are
    /// counted (`"more": 320`).
    #[serde(default = "default_max_listed")]
    pub max_listed: usize,
    /// At most this many requests per `rate_period` to this target (0: no
    /// limit). While the limit holds, further events are merged into the
    /// waiting groups (nothing is dropped for the limit); at shutdown what
    /// waits is sent regardless.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// The period of `rate_limit`.
    #[serde(default = "default_rate_period", with = "serde_duration")]
    pub rate_period: Duration,
}

impl WebhookConfig {
    /// A target at `url` with the defaults of every other setting.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            timeout: default_webhook_timeout(),
            retries: default_webhook_retries(),
            backoff: default_webhook_backoff(),
            slack: false,
            min_severity: default_min_severity(),
            group_wait: default_group_wait(),
            max_listed: default_max_listed(),
            rate_limit: default_rate_limit(),
            rate_period: default_rate_period(),
        }
    }
}

fn default_group_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_max_listed() -> usize {
    20
}
fn default_rate_limit() -> u32 {
    20
}
fn default_rate_period() -> Duration {
    Duration::from_secs(60)
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
    /// `[alerts.pipeline]`: the pipeline's own health (broker unreachable,
    /// ingester lagging, no data from any machine), which holds machine
    /// alerts back and raises one alert of its own.
    pub pipeline: PipelineConfig,
}

/// `[alerts.pipeline]`: when the pipeline itself is unhealthy, no machine goes
/// offline (their silence is the pipeline's) and one fleet-scoped alert fires
/// instead. The hold-back always applies; `enabled` only switches the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Raise the pipeline alert (machine alerts are held back either way).
    pub enabled: bool,
    /// The alert's rule name (must differ from every rule's).
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// How long the pipeline must be unhealthy before the alert fires
    /// (pending until then; a shorter blip pages nobody).
    #[serde(rename = "for", with = "serde_duration")]
    pub for_: Duration,
    /// No sample from any machine for this long, while machines are tracked
    /// and the transport is up: the pipeline is stalled (agents cannot reach
    /// the broker, a sink blocks the ingester, ...).
    #[serde(with = "serde_duration")]
    pub stalled_after: Duration,
    /// Data keeps arriving but no sample younger than this has for 5 s: the
    /// ingester lags (catching up a backlog, too slow for the fleet).
    #[serde(with = "serde_duration")]
    pub max_delay: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            enabled: true,
            name: "pipeline_down".into(),
            severity: Severity::Critical,
            for_: Duration::from_secs(30),
            stalled_after: Duration::from_secs(60),
            max_delay: Duration::from_secs(120),
        }
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            rules: AlertRule::defaults(),
            webhooks: Vec::new(),
            pipeline: PipelineConfig::default(),
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
            if w.max_listed == 0 || w.max_listed > 1000 {
                return bad(format!("webhook {}: max_listed must be 1 to 1000", w.url));
            }
            if w.rate_limit > 0 && w.rate_period.is_zero() {
                return bad(format!(
                    "webhook {}: rate_period must be positive when rate_limit is set",
                    w.url
                ));
            }
        }
        let p = &self.pipeline;
        if p.name.trim().is_empty() {
            return bad("pipeline: `name` must not be empty".into());
        }
        if self.rules.iter().any(|r| r.name == p.name) {
            return bad(format!(
                "pipeline: `name` `{}` is also a rule's name; give the pipeline alert its own",
                p.name
            ));
        }
        if p.stalled_after.is_zero() || p.max_delay.is_zero() {
            return bad("pipeline: `stalled_after` and `max_delay` must be positive".into());
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

    #[test]
    fn grouping_rate_limit_and_pipeline_settings_parse_with_defaults() {
        let cfg: AlertsConfig = toml::from_str(
            "[[webhooks]]\nurl = \"https://hooks.example.com/x\"\n\
             [[webhooks]]\nurl = \"https://hooks.example.com/y\"\ngroup_wait = \"30s\"\n\
             max_listed = 5\nrate_limit = 3\nrate_period = \"10m\"\n\
             [pipeline]\nfor = \"1m\"\nmax_delay = \"5m\"",
        )
        .unwrap();
        cfg.check().unwrap();
        let (d, y) = (&cfg.webhooks[0], &cfg.webhooks[1]);
        assert_eq!(
            (d.group_wait, d.max_listed, d.rate_limit, d.rate_period),
            (Duration::from_secs(10), 20, 20, Duration::from_secs(60))
        );
        assert_eq!(
            (y.group_wait, y.max_listed, y.rate_limit, y.rate_period),
            (Duration::from_secs(30), 5, 3, Duration::from_secs(600))
        );
        assert_eq!(cfg.pipeline.for_, Duration::from_secs(60));
        assert_eq!(cfg.pipeline.max_delay, Duration::from_secs(300));
        assert_eq!(cfg.pipeline.stalled_after, Duration::from_secs(60));
        assert_eq!(cfg.pipeline.name, "pipeline_down");
        for (text, want) in [
            (
                "[[webhooks]]\nurl = \"https://h.example.com/x\"\nmax_listed = 0",
                "max_listed",
            ),
            (
                "[[webhooks]]\nurl = \"https://h.example.com/x\"\nrate_limit = 2\nrate_period = 0",
                "rate_period",
            ),
            (
                "[pipeline]\nname = \"machine_offline\"",
                "also a rule's name",
            ),
            ("[pipeline]\nstalled_after = 0", "stalled_after"),
        ] {
            let c: AlertsConfig = toml::from_str(text).unwrap();
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        for (text, want) in [
            (
                "[[webhooks]]\nurl = \"https://h.example.com/x\"\nrate = 3",
                "rate",
            ),
            ("[pipeline]\nstall = \"1m\"", "stall"),
        ] {
            let e = toml::from_str::<AlertsConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
