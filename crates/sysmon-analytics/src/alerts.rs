//! Alert rules and their state machine.
//!
//! A rule is a condition plus a name and a severity:
//! * a **threshold** on a metric (`cpu_usage > 80` for 30 s), per machine or on
//!   the fleet's average or maximum, with hysteresis: once firing, it resolves
//!   only when the value crosses `clear_threshold` (e.g. 75 %);
//! * **machine offline**: no snapshot for longer than `after`;
//! * **filesystem full within** `horizon`, from the least-squares growth of its
//!   used bytes (see [`super::forecast::time_until_full`]).
//!
//! Each (rule, machine[, mount point]) runs the state machine
//! `inactive → pending → firing → resolved` ([`AlertState`]). Pending becomes
//! firing once the condition has held for the rule's `for` duration (measured on
//! snapshot timestamps), and falls back to inactive if it stops holding earlier.
//! [`AlertEngine`] emits an [`AlertEvent`] only when an alert starts **firing**
//! or is **resolved**, never per sample: with `for` and hysteresis, a value
//! hovering around a threshold cannot produce a storm. Pending alerts (and the
//! firing ones) are listed by [`AlertEngine::active`] for dashboards.
//!
//! `[alerts]` in the configuration holds the rules and the webhook targets
//! ([`AlertsConfig`]); delivering notifications is not this module's job.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::features::{FeatureExtractor, DISK_READ, DISK_WRITE, NET_RECV, NET_SENT};
use super::forecast::time_until_full;
use super::streaming::human_rate;
use sysmon_core::duration::{format as fmt_duration, serde_duration};
use sysmon_core::error::CoreError;
use sysmon_core::snapshot::Snapshot;

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look soon.
    #[default]
    Warning,
    /// Someone should look now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// A metric a threshold rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Whole-host CPU %.
    CpuUsage,
    /// Memory used %.
    MemoryUsage,
    /// Swap used % (machines without swap never match).
    SwapUsage,
    /// Disk reads, bytes/s (from the cumulative counters).
    DiskReadRate,
    /// Disk writes, bytes/s.
    DiskWriteRate,
    /// Network sent, bytes/s.
    NetSentRate,
    /// Network received, bytes/s.
    NetRecvRate,
    /// 1-minute load average.
    #[serde(rename = "load_1m")]
    Load1m,
    /// Used % of the machine's fullest filesystem.
    FilesystemUsage,
}

impl Metric {
    /// The configuration name, e.g. `cpu_usage`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::CpuUsage => "cpu_usage",
            Metric::MemoryUsage => "memory_usage",
            Metric::SwapUsage => "swap_usage",
            Metric::DiskReadRate => "disk_read_rate",
            Metric::DiskWriteRate => "disk_write_rate",
            Metric::NetSentRate => "net_sent_rate",
            Metric::NetRecvRate => "net_recv_rate",
            Metric::Load1m => "load_1m",
            Metric::FilesystemUsage => "filesystem_usage",
        }
    }

    fn format_value(self, v: f64) -> String {
        match self {
            Metric::CpuUsage
            | Metric::MemoryUsage
            | Metric::SwapUsage
            | Metric::FilesystemUsage => {
                format!("{v:.1} %")
            }
            Metric::Load1m => format!("{v:.2}"),
            _ => human_rate(v),
        }
    }

    const ALL: [Metric; 9] = [
        Metric::CpuUsage,
        Metric::MemoryUsage,
        Metric::SwapUsage,
        Metric::DiskReadRate,
        Metric::DiskWriteRate,
        Metric::NetSentRate,
        Metric::NetRecvRate,
        Metric::Load1m,
        Metric::FilesystemUsage,
    ];

    fn index(self) -> usize {
        Metric::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// The comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// Fires when the value is above the threshold.
    Gt,
    /// Fires when the value is below the threshold.
    Lt,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Lt => "<",
        }
    }
    fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Lt => value < threshold,
        }
    }
    /// Past the clear threshold, on the good side.
    fn cleared(self, value: f64, clear: f64) -> bool {
        match self {
            Comparison::Gt => value < clear,
            Comparison::Lt => value > clear,
        }
    }
}

impl Serialize for Comparison {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.symbol())
    }
}

impl<'de> Deserialize<'de> for Comparison {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            ">" | "gt" => Ok(Comparison::Gt),
            "<" | "lt" => Ok(Comparison::Lt),
            other => Err(serde::de::Error::custom(format!(
                "op `{other}` is not one of \">\", \"<\", \"gt\", \"lt\""
            ))),
        }
    }
}

/// How a fleet-scoped rule aggregates the machines' latest values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// The mean over the machines.
    Avg,
    /// The highest value.
    Max,
}

/// Where a threshold rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Each machine on its own.
    #[default]
    EachMachine,
    /// The aggregate over the machines seen in the last minute (evaluated by
    /// [`AlertEngine::tick`]).
    Fleet(Aggregate),
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::EachMachine => "each_machine",
            Scope::Fleet(Aggregate::Avg) => "fleet_avg",
            Scope::Fleet(Aggregate::Max) => "fleet_max",
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim() {
            "each_machine" => Ok(Scope::EachMachine),
            "fleet_avg" => Ok(Scope::Fleet(Aggregate::Avg)),
            "fleet_max" => Ok(Scope::Fleet(Aggregate::Max)),
            other => Err(serde::de::Error::custom(format!(
                "scope `{other}` is not one of \"each_machine\", \"fleet_avg\", \"fleet_max\""
            ))),
        }
    }
}

/// A threshold condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRule {
    /// The metric.
    pub metric: Metric,
    /// The comparison.
    pub op: Comparison,
    /// The value that makes the condition true.
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// Each machine, or the fleet aggregate.
    pub scope: Scope,
    /// Once firing, the alert resolves only past this value (hysteresis).
    pub clear_threshold: f64,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A metric against a threshold.
    Threshold(ThresholdRule),
    /// No snapshot from a machine for longer than `after`.
    MachineOffline {
        /// Silence that makes a machine offline.
        after: Duration,
    },
    /// A filesystem's projected time until full is within `horizon`.
    FilesystemFullWithin {
        /// How far ahead to look.
        horizon: Duration,
        /// How long the projection must stay within the horizon before firing.
        for_: Duration,
    },
}

/// A named alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleSpec", into = "RuleSpec")]
pub struct AlertRule {
    /// Unique name, e.g. `cpu_high`.
    pub name: String,
    /// How urgent it is.
    pub severity: Severity,
    /// What it watches.
    pub condition: Condition,
}

impl AlertRule {
    /// A threshold rule on each machine.
    pub fn threshold(
        name: impl Into<String>,
        metric: Metric,
        op: Comparison,
        threshold: f64,
        for_: Duration,
        clear_threshold: f64,
        severity: Severity,
    ) -> Self {
        AlertRule {
            name: name.into(),
            severity,
            condition: Condition::Threshold(ThresholdRule {
                metric,
                op,
                threshold,
                for_,
                scope: Scope::EachMachine,
                clear_threshold,
            }),
        }
    }

    /// The default rules: the legacy thresholds (CPU > 80 %, memory > 80 %) held
    /// for 30 s and cleared below 75 %; a filesystem full within 1 h (held 1 min);
    /// a machine silent for more than 60 s.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            AlertRule::threshold(
                "cpu_high",
                Metric::CpuUsage,
                Comparison::Gt,
                80.0,
                Duration::from_secs(30),
                75.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "memory_high",
                Metric::MemoryUsage,
                Comparison::Gt,
                80.0,
                Duration::from_secs(30),
                75.0,
                Severity::Warning,
            ),
            AlertRule {
                name: "filesystem_full_soon".into(),
                severity: Severity::Critical,
                condition: Condition::FilesystemFullWithin {
                    horizon: Duration::from_secs(3600),
                    for_: Duration::from_secs(60),
                },
            },
            AlertRule {
                name: "machine_offline".into(),
                severity: Severity::Critical,
                condition: Condition::MachineOffline {
                    after: Duration::from_secs(60),
                },
            },
        ]
    }
}

/// The flat TOML form of a rule (`[[alerts.rules]]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<RuleKind>,
    #[serde(default)]
    severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op: Option<Comparison>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(
        default,
        rename = "for",
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    for_: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clear_threshold: Option<f64>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    after: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    horizon: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RuleKind {
    Threshold,
    MachineOffline,
    FilesystemFullWithin,
}

mod opt_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serde_duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        serde_duration::deserialize(d).map(Some)
    }
}

impl TryFrom<RuleSpec> for AlertRule {
    type Error = String;

    fn try_from(s: RuleSpec) -> Result<Self, String> {
        let name = s.name.trim().to_string();
        if name.is_empty() {
            return Err("an alert rule needs a non-empty `name`".into());
        }
        let kind = s.kind.unwrap_or(RuleKind::Threshold);
        let only = |field: &str, present: bool, kinds: &str| {
            if present {
                Err(format!(
                    "alert rule `{name}`: `{field}` only applies to kind = {kinds}"
                ))
            } else {
                Ok(())
            }
        };
        let threshold_fields = [
            ("metric", s.metric.is_some()),
            ("op", s.op.is_some()),
            ("threshold", s.threshold.is_some()),
            ("scope", s.scope.is_some()),
            ("clear_threshold", s.clear_threshold.is_some()),
        ];
        let condition = match kind {
            RuleKind::Threshold => {
                only("after", s.after.is_some(), "\"machine_offline\"")?;
                only("horizon", s.horizon.is_some(), "\"filesystem_full_within\"")?;
                let metric = s.metric.ok_or_else(|| {
                    format!("alert rule `{name}`: a threshold rule needs `metric`")
                })?;
                let threshold = s.threshold.ok_or_else(|| {
                    format!("alert rule `{name}`: a threshold rule needs `threshold`")
                })?;
                if !threshold.is_finite() {
                    return Err(format!("alert rule `{name}`: `threshold` must be finite"));
                }
                let op = s.op.unwrap_or(Comparison::Gt);
                let clear = s.clear_threshold.unwrap_or(threshold);
                let consistent = match op {
                    Comparison::Gt => clear <= threshold,
                    Comparison::Lt => clear >= threshold,
                };
                if !clear.is_finite() || !consistent {
                    return Err(format!(
                        "alert rule `{name}`: clear_threshold {clear} must be on the good side of \
                         threshold {threshold} ({} for op \"{}\")",
                        if op == Comparison::Gt { "<=" } else { ">=" },
                        op.symbol()
                    ));
                }
                Condition::Threshold(ThresholdRule {
                    metric,
                    op,
                    threshold,
                    for_: s.for_.unwrap_or_default(),
                    scope: s.scope.unwrap_or_default(),
                    clear_threshold: clear,
                })
            }
            RuleKind::MachineOffline => {
                for (f, present) in threshold_fields {
                    only(f, present, "\"threshold\"")?;
                }
                only(
                    "for",
                    s.for_.is_some(),
                    "\"threshold\" or \"filesystem_full_within\"",
                )?;
                only("horizon", s.horizon.is_some(), "\"filesystem_full_within\"")?;
                let after = s.after.ok_or_else(|| {
                    format!("alert rule `{name}`: a machine_offline rule needs `after`")
                })?;
                if after.is_zero() {
                    return Err(format!("alert rule `{name}`: `after` must be positive"));
                }
                Condition::MachineOffline { after }
            }
            RuleKind::FilesystemFullWithin => {
                for (f, present) in threshold_fields {
                    only(f, present, "\"threshold\"")?;
                }
                only("after", s.after.is_some(), "\"machine_offline\"")?;
                let horizon = s.horizon.ok_or_else(|| {
                    format!("alert rule `{name}`: a filesystem_full_within rule needs `horizon`")
                })?;
                Condition::FilesystemFullWithin {
                    horizon,
                    for_: s.for_.unwrap_or_default(),
                }
            }
        };
        Ok(AlertRule {
            name,
            severity: s.severity,
            condition,
        })
    }
}

impl From<AlertRule> for RuleSpec {
    fn from(r: AlertRule) -> Self {
        let mut s = RuleSpec {
            name: r.name,
            severity: r.severity,
            ..RuleSpec::default()
        };
        match r.condition {
            Condition::Threshold(t) => {
                s.kind = Some(RuleKind::Threshold);
                s.metric = Some(t.metric);
                s.op = Some(t.op);
                s.threshold = Some(t.threshold);
                s.for_ = Some(t.for_);
                s.scope = Some(t.scope);
                s.clear_threshold = Some(t.clear_threshold);
            }
            Condition::MachineOffline { after } => {
                s.kind = Some(RuleKind::MachineOffline);
                s.after = Some(after);
            }
            Condition::FilesystemFullWithin { horizon, for_ } => {
                s.kind = Some(RuleKind::FilesystemFullWithin);
                s.horizon = Some(horizon);
                s.for_ = Some(for_);
            }
        }
        s
    }
}

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

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold (also: a pending alert whose condition
    /// stopped holding before `for` elapsed).
    Inactive,
    /// The condition holds, not yet for `for`.
    Pending,
    /// The condition held for `for`: the alert is on.
    Firing,
    /// A firing alert's value crossed its clear threshold.
    Resolved,
}

impl AlertState {
    /// The state's name in JSON, logs and storage (`firing`, ...).
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// An alert started firing or was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The machine, or `None` for a fleet-scoped rule.
    pub machine_id: Option<String>,
    /// What on the machine, e.g. the mount point for filesystem rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The state entered: [`AlertState::Firing`] or [`AlertState::Resolved`].
    pub state: AlertState,
    /// The value that caused it (metric value; seconds silent for offline rules;
    /// seconds until full for filesystem rules).
    pub value: f64,
    /// When, seconds since the epoch (the snapshot's timestamp or `tick`'s `now`).
    pub at: f64,
    /// A sentence for people.
    pub message: String,
}

/// An alert that is pending or firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// The machine (`None` for fleet rules).
    pub machine_id: Option<String>,
    /// The mount point for filesystem rules.
    pub subject: Option<String>,
    /// Pending or firing.
    pub state: AlertState,
    /// Since when it is in this state.
    pub since: f64,
    /// The latest value.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct RuleState {
    state: AlertState,
    /// When the current state was entered.
    since: f64,
    value: f64,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            state: AlertState::Inactive,
            since: 0.0,
            value: f64::NAN,
        }
    }
}

/// Advances one state machine; returns the new state when it started firing or
/// was resolved.
fn step(
    st: &mut RuleState,
    active: bool,
    cleared: bool,
    for_: Duration,
    value: f64,
    at: f64,
) -> Option<AlertState> {
    st.value = value;
    let next = match st.state {
        AlertState::Inactive | AlertState::Resolved if active => {
            if for_.is_zero() {
                AlertState::Firing
            } else {
                AlertState::Pending
            }
        }
        AlertState::Pending if !active => AlertState::Inactive,
        AlertState::Pending if at - st.since >= for_.as_secs_f64() => AlertState::Firing,
        AlertState::Firing if cleared => AlertState::Resolved,
        _ => return None,
    };
    st.state = next;
    st.since = at;
    matches!(next, AlertState::Firing | AlertState::Resolved).then_some(next)
}

#[derive(Debug, Clone, Default)]
struct FsTrack {
    points: VecDeque<(f64, f64)>,
    available: u64,
}

#[derive(Debug, Clone)]
struct MachineAlerts {
    extractor: FeatureExtractor,
    last_seen: f64,
    last_ts: f64,
    values: [Option<f64>; 9],
    /// Per rule index (threshold and offline rules).
    states: Vec<RuleState>,
    /// Per (rule index, mount point).
    fs_states: HashMap<(usize, String), RuleState>,
    fs: HashMap<String, FsTrack>,
}

/// Samples of used bytes per filesystem kept for the growth fit.
const FS_WINDOW: usize = 300;
/// Fewest samples before a filesystem's growth is judged.
const FS_MIN_POINTS: usize = 10;
/// Slope t-statistic needed to call a filesystem growing.
const FS_MIN_T: f64 = 3.0;
/// A firing filesystem alert resolves once the projection exceeds this many horizons.
const FS_CLEAR_FACTOR: f64 = 1.5;

/// Evaluates the rules on the snapshot stream of many machines.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    machines: HashMap<String, MachineAlerts>,
    fleet: Vec<RuleState>,
    fleet_window: f64,
}

impl AlertEngine {
    /// An engine for `rules`.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let n = rules.len();
        AlertEngine {
            rules,
            machines: HashMap::new(),
            fleet: vec![RuleState::default(); n],
            fleet_window: 60.0,
        }
    }

    /// An engine for the configured rules (empty when alerts are disabled).
    pub fn from_config(config: &AlertsConfig) -> Result<Self, CoreError> {
        config.check()?;
        Ok(AlertEngine::new(if config.enabled {
            config.rules.clone()
        } else {
            Vec::new()
        }))
    }

    /// Fleet rules aggregate the machines whose last snapshot is at most this
    /// old (default 60 s).
    pub fn set_fleet_window(&mut self, window: Duration) {
        self.fleet_window = window.as_secs_f64();
    }

    /// The rules.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Evaluates `snapshot`, taking its timestamp as the time it was received.
    pub fn observe(&mut self, snapshot: &Snapshot) -> Vec<AlertEvent> {
        self.observe_at(snapshot, snapshot.timestamp)
    }

    /// Evaluates `snapshot` received at `received_at` (the master's clock, used for
    /// offline detection so that a sender's clock skew cannot fake silence).
    /// Conditions are timed on the snapshot's own timestamps. Samples older than
    /// the machine's latest are ignored.
    pub fn observe_at(&mut self, snapshot: &Snapshot, received_at: f64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let ts = snapshot.timestamp;
        if !ts.is_finite() || !received_at.is_finite() {
            return events;
        }
        let n_rules = self.rules.len();
        let m = self
            .machines
            .entry(snapshot.machine_id.clone())
            .or_insert_with(|| MachineAlerts {
                extractor: FeatureExtractor::default(),
                last_seen: received_at,
                last_ts: f64::NEG_INFINITY,
                values: [None; 9],
                states: vec![RuleState::default(); n_rules],
                fs_states: HashMap::new(),
                fs: HashMap::new(),
            });
        if ts <= m.last_ts {
            return events;
        }
        m.last_ts = ts;
        m.last_seen = m.last_seen.max(received_at);
        let f = m.extractor.push(snapshot);
        let pct = |v: f64| (v.is_finite() && (0.0..=100.0).contains(&v)).then_some(v);
        m.values = [
            pct(snapshot.cpu_usage),
            pct(snapshot.memory_usage),
            snapshot
                .memory
                .filter(|mm| mm.swap_total_bytes > 0)
                .map(|mm| mm.swap_used_bytes as f64 * 100.0 / mm.swap_total_bytes as f64),
            f.values[DISK_READ],
            f.values[DISK_WRITE],
            f.values[NET_SENT],
            f.values[NET_RECV],
            snapshot.load_avg.map(|l| l.one).filter(|v| v.is_finite()),
            snapshot.fullest_filesystem_percent(),
        ];
        for fs in &snapshot.filesystems {
            if fs.total_bytes == 0 {
                continue;
            }
            let tr = m.fs.entry(fs.mount_point.clone()).or_default();
            if tr.points.len() == FS_WINDOW {
                tr.points.pop_front();
            }
            tr.points.push_back((ts, fs.used_bytes as f64));
            tr.available = fs.available_bytes;
        }
        m.fs.retain(|mp, _| snapshot.filesystems.iter().any(|f| &f.mount_point == mp));
        let id = &snapshot.machine_id;
        for (i, rule) in self.rules.iter().enumerate() {
            match &rule.condition {
                Condition::Threshold(t) if t.scope == Scope::EachMachine => {
                    let Some(v) = m.values[t.metric.index()] else {
                        continue;
                    };
                    let st = &mut m.states[i];
                    let breached = t.op.breached(v, t.threshold);
                    if let Some(state) = step(
                        st,
                        breached,
                        t.op.cleared(v, t.clear_threshold),
                        t.for_,
                        v,
                        ts,
                    ) {
                        events.push(threshold_event(rule, t, Some(id), state, v, ts));
                    }
                }
                Condition::Threshold(_) => {}
                Condition::MachineOffline { .. } => {
                    let st = &mut m.states[i];
                    st.value = 0.0;
                    if st.state == AlertState::Firing {
                        st.state = AlertState::Resolved;
                        st.since = ts;
                        events.push(AlertEvent {
                            rule: rule.name.clone(),
                            severity: rule.severity,
                            machine_id: Some(id.clone()),
                            subject: None,
                            state: AlertState::Resolved,
                            value: 0.0,
                            at: ts,
                            message: format!("{id} is reporting again"),
                        });
                    }
                }
                Condition::FilesystemFullWithin { horizon, for_ } => {
                    let h = horizon.as_secs_f64();
                    for (mp, tr) in &m.fs {
                        if tr.points.len() < FS_MIN_POINTS {
                            continue;
                        }
                        let Some(&(last_t, _)) = tr.points.back() else {
                            continue;
                        };
                        let pts: Vec<(f64, f64)> =
                            tr.points.iter().map(|(t, u)| (t - last_t, *u)).collect();
                        let Some((slope, secs)) =
                            time_until_full(&pts, tr.available, 0.0, FS_MIN_T)
                        else {
                            continue;
                        };
                        let value = secs.unwrap_or(f64::INFINITY);
                        let active = value <= h;
                        let cleared = value > h * FS_CLEAR_FACTOR;
                        let st = m.fs_states.entry((i, mp.clone())).or_default();
                        if let Some(state) = step(st, active, cleared, *for_, value, ts) {
                            let message = match state {
                                AlertState::Resolved => format!(
                                    "{mp} on {id} is no longer projected to fill within {}",
                                    fmt_duration(*horizon)
                                ),
                                _ => format!(
                                    "{mp} on {id} projected full in {} (growing {}, {} free)",
                                    fmt_duration(Duration::from_secs(value.max(0.0) as u64)),
                                    human_rate(slope),
                                    human_bytes(tr.available)
                                ),
                            };
                            events.push(AlertEvent {
                                rule: rule.name.clone(),
                                severity: rule.severity,
                                machine_id: Some(id.clone()),
                                subject: Some(mp.clone()),
                                state,
                                value,
                                at: ts,
                                message,
                            });
                        }
                    }
                }
            }
        }
        // An unmounted filesystem cannot stay alerting.
        let mut gone = Vec::new();
        m.fs_states.retain(|(i, mp), st| {
            let keep = m.fs.contains_key(mp);
            if !keep && st.state == AlertState::Firing {
                gone.push((*i, mp.clone()));
            }
            keep
        });
        for (i, mp) in gone {
            let rule = &self.rules[i];
            events.push(AlertEvent {
                rule: rule.name.clone(),
                severity: rule.severity,
                machine_id: Some(id.clone()),
                subject: Some(mp.clone()),
                state: AlertState::Resolved,
                value: f64::NAN,
                at: ts,
                message: format!("{mp} on {id} is no longer mounted"),
            });
        }
        events
    }

    /// Evaluates what depends on the passage of time at `now` (seconds since the
    /// epoch, the master's clock): machines going offline, and fleet-scoped rules.
    /// Call it periodically (every few seconds).
    pub fn tick(&mut self, now: f64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        if !now.is_finite() {
            return events;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            match &rule.condition {
                Condition::MachineOffline { after } => {
                    let after_s = after.as_secs_f64();
                    let mut ids: Vec<&String> = self.machines.keys().collect();
                    ids.sort();
                    let ids: Vec<String> = ids.into_iter().cloned().collect();
                    for id in ids {
                        let Some(m) = self.machines.get_mut(&id) else {
                            continue;
                        };
                        let silent = now - m.last_seen;
                        let st = &mut m.states[i];
                        if silent > after_s && st.state != AlertState::Firing {
                            st.state = AlertState::Firing;
                            st.since = now;
                            st.value = silent;
                            events.push(AlertEvent {
                                rule: rule.name.clone(),
                                severity: rule.severity,
                                machine_id: Some(id.clone()),
                                subject: None,
                                state: AlertState::Firing,
                                value: silent,
                                at: now,
                                message: format!(
                                    "{id} silent for {:.0}s (more than {})",
                                    silent,
                                    fmt_duration(*after)
                                ),
                            });
                        } else if st.state == AlertState::Firing {
                            st.value = silent;
                        }
                    }
                }
                Condition::Threshold(t) => {
                    let Scope::Fleet(agg) = t.scope else {
                        continue;
                    };
                    let idx = t.metric.index();
                    let recent = self
                        .machines
                        .values()
                        .filter(|m| now - m.last_seen <= self.fleet_window)
                        .filter_map(|m| m.values[idx]);
                    let (mut n, mut sum, mut max) = (0usize, 0.0, f64::NEG_INFINITY);
                    for v in recent {
                        n += 1;
                        sum += v;
                        max = max.max(v);
                    }
                    if n == 0 {
                        continue;
                    }
                    let v = match agg {
                        Aggregate::Avg => sum / n as f64,
                        Aggregate::Max => max,
                    };
                    let st = &mut self.fleet[i];
                    if let Some(state) = step(
                        st,
                        t.op.breached(v, t.threshold),
                        t.op.cleared(v, t.clear_threshold),
                        t.for_,
                        v,
                        now,
                    ) {
                        events.push(threshold_event(rule, t, None, state, v, now));
                    }
                }
                Condition::FilesystemFullWithin { .. } => {}
            }
        }
        events
    }

    /// Drops a retired machine; its firing alerts end with a `resolved` event so
    /// that nothing stays active forever.
    pub fn forget(&mut self, machine_id: &str, now: f64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let Some(m) = self.machines.remove(machine_id) else {
            return events;
        };
        let fs = m
            .fs_states
            .iter()
            .map(|((i, mp), st)| (*i, Some(mp.clone()), *st));
        let per_rule = m.states.iter().enumerate().map(|(i, st)| (i, None, *st));
        let mut all: Vec<(usize, Option<String>, RuleState)> = per_rule.chain(fs).collect();
        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (i, subject, st) in all {
            if st.state != AlertState::Firing {
                continue;
            }
            let state = AlertState::Resolved;
            events.push(AlertEvent {
                rule: self.rules[i].name.clone(),
                severity: self.rules[i].severity,
                machine_id: Some(machine_id.to_string()),
                subject,
                state,
                value: st.value,
                at: now,
                message: format!("{machine_id} was retired"),
            });
        }
        events
    }

    /// The machines this engine has seen (and so owns the alert state of), sorted.
    pub fn machine_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.machines.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// True when a rule is fleet-scoped.
    pub fn has_fleet_rules(&self) -> bool {
        self.rules.iter().any(|r| {
            matches!(&r.condition, Condition::Threshold(t) if matches!(t.scope, Scope::Fleet(_)))
        })
    }

    /// The alerts pending or firing now, by rule order then machine.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut out = Vec::new();
        let live = |s: AlertState| matches!(s, AlertState::Pending | AlertState::Firing);
        for (i, rule) in self.rules.iter().enumerate() {
            if live(self.fleet[i].state) {
                out.push(ActiveAlert {
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    machine_id: None,
                    subject: None,
                    state: self.fleet[i].state,
                    since: self.fleet[i].since,
                    value: self.fleet[i].value,
                });
            }
            let mut ids: Vec<&String> = self.machines.keys().collect();
            ids.sort();
            for id in ids {
                let m = &self.machines[id];
                let st = m.states[i];
                if live(st.state) {
                    out.push(ActiveAlert {
                        rule: rule.name.clone(),
                        severity: rule.severity,
                        machine_id: Some(id.clone()),
                        subject: None,
                        state: st.state,
                        since: st.since,
                        value: st.value,
                    });
                }
                let mut fs: Vec<(&(usize, String), &RuleState)> =
                    m.fs_states.iter().filter(|((r, _), _)| *r == i).collect();
                fs.sort_by(|a, b| a.0.cmp(b.0));
                for ((_, mp), st) in fs {
                    if live(st.state) {
                        out.push(ActiveAlert {
                            rule: rule.name.clone(),
                            severity: rule.severity,
                            machine_id: Some(id.clone()),
                            subject: Some(mp.clone()),
                            state: st.state,
                            since: st.since,
                            value: st.value,
                        });
                    }
                }
            }
        }
        out
    }
}

fn threshold_event(
    rule: &AlertRule,
    t: &ThresholdRule,
    machine: Option<&String>,
    state: AlertState,
    value: f64,
    at: f64,
) -> AlertEvent {
    let who = match (machine, t.scope) {
        (Some(id), _) => id.clone(),
        (None, Scope::Fleet(Aggregate::Avg)) => "the fleet (average)".into(),
        (None, _) => "the fleet (maximum)".into(),
    };
    let m = t.metric;
    let message = match state {
        AlertState::Firing => format!(
            "{} {} {} {} on {who} for at least {}",
            m.name(),
            m.format_value(value),
            t.op.symbol(),
            m.format_value(t.threshold),
            fmt_duration(t.for_)
        ),
        _ => format!(
            "{} back to {} on {who} (clear threshold {})",
            m.name(),
            m.format_value(value),
            m.format_value(t.clear_threshold)
        ),
    };
    AlertEvent {
        rule: rule.name.clone(),
        severity: rule.severity,
        machine_id: machine.cloned(),
        subject: None,
        state,
        value,
        at,
        message,
    }
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::snapshot::Filesystem;

    const T0: f64 = 1_764_086_400.0;

    fn snap(id: &str, t: f64, cpu: f64, mem: f64) -> Snapshot {
        let mut s = Snapshot::new(id, T0 + t);
        s.cpu_usage = cpu;
        s.memory_usage = mem;
        s
    }

    fn states(events: &[AlertEvent]) -> Vec<(String, AlertState)> {
        events.iter().map(|e| (e.rule.clone(), e.state)).collect()
    }

    #[test]
    fn one_spike_pages_nobody_and_a_sustained_breach_fires_once_then_resolves_with_hysteresis() {
        let mut e = AlertEngine::new(AlertRule::defaults());
        let mut all = Vec::new();
        // A 20 s spike: pending, never firing.
        for t in 0..20 {
            all.extend(e.observe(&snap("web-01", t as f64, 95.0, 40.0)));
        }
        assert_eq!(e.active()[0].state, AlertState::Pending);
        for t in 20..30 {
            all.extend(e.observe(&snap("web-01", t as f64, 20.0, 40.0)));
        }
        assert!(all.is_empty(), "{all:?}");
        assert!(e.active().is_empty());
        // 90 % from t=100: fires at t=130 (30 s after the first sample above).
        for t in 100..131 {
            let ev = e.observe(&snap("web-01", t as f64, 90.0, 40.0));
            if t < 130 {
                assert!(ev.is_empty(), "t={t} {ev:?}");
            } else {
                assert_eq!(
                    states(&ev),
                    vec![("cpu_high".to_string(), AlertState::Firing)]
                );
                assert_eq!(ev[0].machine_id.as_deref(), Some("web-01"));
                assert_eq!(ev[0].value, 90.0);
                assert_eq!(ev[0].at, T0 + 130.0);
                assert!(
                    ev[0].message.contains("cpu_usage 90.0 % > 80.0 %"),
                    "{}",
                    ev[0].message
                );
            }
        }
        // Hovering between the clear threshold and the threshold: still firing,
        // no events.
        for t in 131..400 {
            let cpu = if t % 2 == 0 { 79.0 } else { 81.0 };
            assert!(e.observe(&snap("web-01", t as f64, cpu, 40.0)).is_empty());
        }
        assert_eq!(e.active()[0].state, AlertState::Firing);
        let ev = e.observe(&snap("web-01", 400.0, 74.0, 40.0));
        assert_eq!(
            states(&ev),
            vec![("cpu_high".to_string(), AlertState::Resolved)]
        );
        assert!(
            ev[0].message.contains("back to 74.0 %"),
            "{}",
            ev[0].message
        );
        assert!(e.active().is_empty());
    }

    #[test]
    fn flapping_around_the_threshold_cannot_storm() {
        let mut e = AlertEngine::new(AlertRule::defaults());
        let mut n = 0;
        // 74 % / 81 % alternating for an hour: never 30 s in a row above 80.
        for t in 0..3600 {
            let mem = if t % 2 == 0 { 74.0 } else { 81.0 };
            n += e.observe(&snap("db", t as f64, 10.0, mem)).len();
        }
        assert_eq!(n, 0);
        // Above for 40 s, then flapping 74/81 every 10 s for an hour: one firing,
        // one resolved, then at most one pair per 30 s-plus episode.
        let mut events = Vec::new();
        for t in 3600..3640 {
            events.extend(e.observe(&snap("db", t as f64, 10.0, 85.0)));
        }
        for t in 3640..7240 {
            let mem = if (t / 10) % 2 == 0 { 74.0 } else { 81.0 };
            events.extend(e.observe(&snap("db", t as f64, 10.0, mem)));
        }
        assert_eq!(
            states(&events),
            vec![
                ("memory_high".to_string(), AlertState::Firing),
                ("memory_high".to_string(), AlertState::Resolved)
            ]
        );
    }

    #[test]
    fn machine_offline_fires_once_and_resolves_when_it_reports_again() {
        let mut e = AlertEngine::new(AlertRule::defaults());
        e.observe(&snap("a", 0.0, 10.0, 10.0));
        e.observe(&snap("b", 0.0, 10.0, 10.0));
        e.observe(&snap("b", 50.0, 10.0, 10.0));
        assert!(e.tick(T0 + 59.0).is_empty());
        let ev = e.tick(T0 + 61.0);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].rule, "machine_offline");
        assert_eq!(ev[0].machine_id.as_deref(), Some("a"));
        assert_eq!(ev[0].state, AlertState::Firing);
        assert_eq!(ev[0].severity, Severity::Critical);
        assert!(
            ev[0].message.contains("silent for 61s"),
            "{}",
            ev[0].message
        );
        assert!(
            e.tick(T0 + 70.0).is_empty(),
            "no repeat while still offline"
        );
        let back = e.observe(&snap("a", 80.0, 10.0, 10.0));
        assert_eq!(
            states(&back),
            vec![("machine_offline".to_string(), AlertState::Resolved)]
        );
        // b went silent at 50: offline at 111.
        let ev = e.tick(T0 + 111.0);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].machine_id.as_deref(), Some("b"));
        // Retiring b resolves its alert; retiring it again does nothing.
        let gone = e.forget("b", T0 + 120.0);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].state, AlertState::Resolved);
        assert!(e.forget("b", T0 + 121.0).is_empty());
        assert!(e
            .tick(T0 + 1000.0)
            .iter()
            .all(|x| x.machine_id.as_deref() == Some("a")));
    }

    #[test]
    fn offline_detection_uses_the_receive_time() {
        let mut e = AlertEngine::new(AlertRule::defaults());
        // The sender's clock is 10 minutes behind; it reports every second.
        for i in 0..100 {
            let s = snap("skewed", i as f64 - 600.0, 10.0, 10.0);
            e.observe_at(&s, T0 + i as f64);
        }
        assert!(e.tick(T0 + 100.0).is_empty());
    }

    #[test]
    fn fleet_rules_aggregate_recent_machines_on_tick() {
        let toml = r#"
            [[rules]]
            name = "fleet_cpu"
            metric = "cpu_usage"
            op = ">"
            threshold = 70
            scope = "fleet_avg"
            clear_threshold = 60
            severity = "critical"

            [[rules]]
            name = "hottest"
            metric = "cpu_usage"
            op = "gt"
            threshold = 95
            scope = "fleet_max"
        "#;
        let cfg: AlertsConfig = toml::from_str(toml).unwrap();
        let mut e = AlertEngine::from_config(&cfg).unwrap();
        e.observe(&snap("a", 0.0, 90.0, 10.0));
        e.observe(&snap("b", 0.0, 90.0, 10.0));
        e.observe(&snap("c", 0.0, 20.0, 10.0));
        assert!(e.tick(T0 + 1.0).is_empty(), "avg 66.7");
        e.observe(&snap("c", 2.0, 50.0, 10.0));
        let ev = e.tick(T0 + 3.0);
        assert_eq!(
            states(&ev),
            vec![("fleet_cpu".to_string(), AlertState::Firing)]
        );
        assert_eq!(ev[0].machine_id, None);
        assert!((ev[0].value - 230.0 / 3.0).abs() < 1e-9);
        assert!(ev[0].message.contains("the fleet (average)"));
        // a and b fall silent for over a minute: only c (50 %) counts now.
        e.observe(&snap("c", 100.0, 50.0, 10.0));
        let ev = e.tick(T0 + 100.0);
        assert_eq!(
            states(&ev),
            vec![("fleet_cpu".to_string(), AlertState::Resolved)]
        );
        e.observe(&snap("c", 101.0, 99.0, 10.0));
        let ev = e.tick(T0 + 101.0);
        assert_eq!(
            states(&ev),
            vec![
                ("fleet_cpu".to_string(), AlertState::Firing),
                ("hottest".to_string(), AlertState::Firing)
            ]
        );
        assert!(ev[1].message.contains("the fleet (maximum)"));
        assert_eq!(e.active().len(), 2);
    }

    #[test]
    fn below_threshold_rules_and_rates_from_counters() {
        let rule = AlertRule::threshold(
            "writes_stalled",
            Metric::DiskWriteRate,
            Comparison::Lt,
            1000.0,
            Duration::ZERO,
            5000.0,
            Severity::Info,
        );
        let mut e = AlertEngine::new(vec![rule]);
        let mut written = 0u64;
        let mut evs = Vec::new();
        for t in 0..30u64 {
            // 10 kB/s, stalled from 10 to 19 s, then 3 kB/s, then 10 kB/s.
            written += match t {
                10..=19 => 0,
                20..=24 => 3000,
                _ => 10_000,
            };
            let mut s = snap("db", t as f64, 10.0, 10.0);
            s.disk_io.write = written;
            evs.extend(e.observe(&s).into_iter().map(|x| (t, x.state)));
        }
        assert_eq!(
            evs,
            vec![(10, AlertState::Firing), (25, AlertState::Resolved)]
        );
    }

    fn fs_snap(t: f64, used: u64) -> Snapshot {
        let mut s = snap("files", t, 10.0, 10.0);
        let total = 10_000_000_000u64;
        s.filesystems = vec![Filesystem {
            mount_point: "/var".into(),
            fs_type: "xfs".into(),
            total_bytes: total,
            used_bytes: used,
            available_bytes: total - used,
        }];
        s
    }

    #[test]
    fn a_filling_filesystem_fires_and_a_flat_one_does_not() {
        let mut e = AlertEngine::new(AlertRule::defaults());
        let mut fired = None;
        // 9.9 GB used of 10 GB, growing 50 kB/s: full in ~2000 s < 1 h.
        for t in 0..200 {
            let ev = e.observe(&fs_snap(t as f64, 9_900_000_000 + 50_000 * t));
            if let Some(x) = ev.into_iter().find(|x| x.rule == "filesystem_full_soon") {
                fired.get_or_insert((t, x));
            }
        }
        let (t, ev) = fired.expect("fires");
        // 10 samples to judge growth, then `for = 1m`.
        assert!((69..=72).contains(&t), "{t}");
        assert_eq!(ev.subject.as_deref(), Some("/var"));
        assert!(ev.value > 1500.0 && ev.value < 2100.0, "{}", ev.value);
        assert!(
            ev.message.contains("/var on files projected full in"),
            "{}",
            ev.message
        );
        let active = e.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].subject.as_deref(), Some("/var"));
        // Someone cleans up: usage drops and stays flat, the alert resolves.
        let mut resolved = false;
        for t in 200..600 {
            for x in e.observe(&fs_snap(t as f64, 5_000_000_000)) {
                resolved |= x.state == AlertState::Resolved;
            }
        }
        assert!(resolved);
        // A flat filesystem with noise never fires.
        let mut e = AlertEngine::new(AlertRule::defaults());
        for t in 0..600u64 {
            let used = 9_990_000_000 + (t * 7919 % 1000) * 1000;
            assert!(e.observe(&fs_snap(t as f64, used)).is_empty());
        }
    }

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
                assert_eq!(t.metric, Metric::Load1m);
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
                after: Duration::from_secs(300)
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
            ("[[rules]]\nname = \"x\"\nmetric = \"cpu\"\nthreshold = 1", "cpu"),
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
    fn out_of_order_and_non_finite_samples_are_ignored() {
        let mut e = AlertEngine::new(vec![AlertRule::threshold(
            "cpu",
            Metric::CpuUsage,
            Comparison::Gt,
            50.0,
            Duration::ZERO,
            50.0,
            Severity::Warning,
        )]);
        assert_eq!(e.observe(&snap("m", 10.0, 90.0, 0.0)).len(), 1);
        assert!(
            e.observe(&snap("m", 5.0, 10.0, 0.0)).is_empty(),
            "older sample"
        );
        let mut nan = snap("m", 11.0, 10.0, 0.0);
        nan.timestamp = f64::NAN;
        assert!(e.observe(&nan).is_empty());
        assert!(e.tick(f64::NAN).is_empty());
        // A CPU value out of range is unknown, not a breach or a clearance.
        assert!(e.observe(&snap("m", 12.0, f64::INFINITY, 0.0)).is_empty());
        assert_eq!(e.observe(&snap("m", 13.0, 10.0, 0.0)).len(), 1);
    }
}
