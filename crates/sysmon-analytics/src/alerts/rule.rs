//! What an alert rule is: a [`Condition`] with a name and a [`Severity`], and
//! its flat TOML form (`[[alerts.rules]]`, with errors that name the rule).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::streaming::human_rate;
use sysmon_core::duration::serde_duration;

pub use sysmon_core::alert::Severity;

/// The metric a threshold rule watches: core's one vocabulary
/// (`docs/metrics.md`). A rule's `metric = "..."` takes any spelling of a
/// metric usable in alert rules ([`Usage::Alert`]): `cpu_usage` or `cpu`,
/// `memory_usage`, `memory` or `mem`, `load_1m`, `load1` or `load`, ...
pub use sysmon_core::metric::Metric;
use sysmon_core::metric::{UnknownName, Usage};

/// What the alert engine needs of a [`Metric`] beyond the vocabulary.
pub(super) trait RuleMetric: Copy {
    /// The value formatted for a message (`93.5 %`, `1.20`, `12.0 MB/s`).
    fn format_value(self, v: f64) -> String;
    /// The metric's slot among the engine's per-machine values ([`ALERT_METRICS`]).
    fn index(self) -> usize;
}

/// The metrics alert rules can watch, in the engine's value order: the
/// legacy ones, then the host details read through [`Metric::value`].
pub(super) const ALERT_METRICS: [Metric; 26] = [
    Metric::Cpu,
    Metric::Memory,
    Metric::SwapUsage,
    Metric::DiskRead,
    Metric::DiskWrite,
    Metric::NetSent,
    Metric::NetRecv,
    Metric::Load1,
    Metric::FilesystemUsage,
    Metric::PressureCpuSome,
    Metric::PressureCpuFull,
    Metric::PressureMemorySome,
    Metric::PressureMemoryFull,
    Metric::PressureIoSome,
    Metric::PressureIoFull,
    Metric::DiskUtilization,
    Metric::DiskReadLatency,
    Metric::DiskWriteLatency,
    Metric::TcpEstablished,
    Metric::TcpTimeWait,
    Metric::TcpRetransmitRate,
    Metric::TcpRetransmitPercent,
    Metric::TemperatureMax,
    Metric::OpenFiles,
    Metric::ContainerMemoryOfLimit,
    Metric::ContainerCpu,
];

impl RuleMetric for Metric {
    fn format_value(self, v: f64) -> String {
        match self.unit() {
            "percent" => format!("{v:.1} %"),
            "load" => format!("{v:.2}"),
            "ms" => format!("{v:.1} ms"),
            "celsius" => format!("{v:.1} °C"),
            "segments/s" => format!("{v:.2}/s"),
            "sockets" | "files" => format!("{v:.0}"),
            _ => human_rate(v),
        }
    }

    fn index(self) -> usize {
        ALERT_METRICS.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// Parses a rule's `metric`: any spelling of a metric usable in alert rules;
/// the error lists their names.
pub fn parse_rule_metric(s: &str) -> Result<Metric, UnknownName> {
    Metric::from_name(s)
        .filter(|m| m.usable_in(Usage::Alert))
        .ok_or_else(|| {
            let names = ALERT_METRICS.iter().map(|m| m.name()).collect();
            UnknownName::new("alert rule metric", s, names)
        })
}

/// A rule's `metric` in TOML: written with its vocabulary name, read with
/// [`parse_rule_metric`].
mod rule_metric {
    use super::*;

    pub fn serialize<S: serde::Serializer>(m: &Option<Metric>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(m.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Metric>, D::Error> {
        let s = String::deserialize(d)?;
        parse_rule_metric(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
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
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Lt => "<",
        }
    }
    pub(super) fn breached(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Lt => value < threshold,
        }
    }
    /// Past the clear threshold, on the good side.
    pub(super) fn cleared(self, value: f64, clear: f64) -> bool {
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
        /// Snapshots a machine must have sent before its silence can fire
        /// (`min_samples`, default [`DEFAULT_OFFLINE_MIN_SAMPLES`]): a flood of
        /// made-up machine ids, each seen once or twice, then pages nobody and
        /// leaves the notification queues to real alerts.
        min_samples: u32,
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
    /// for 30 s and cleared below 75 %; CPU pressure stall > 20 % for 1 min
    /// (clear 15 %), memory pressure stall > 10 % for 1 min (clear 5 %); the
    /// busiest disk > 90 % utilised for 5 min (clear 80 %); a cgroup > 90 % of its
    /// memory limit for 2 min (clear 85 %); a filesystem full within 1 h (held 1
    /// min); a machine silent for more than 60 s. The host-detail rules never
    /// match a machine that does not send that detail.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            AlertRule::threshold(
                "cpu_high",
                Metric::Cpu,
                Comparison::Gt,
                80.0,
                Duration::from_secs(30),
                75.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "memory_high",
                Metric::Memory,
                Comparison::Gt,
                80.0,
                Duration::from_secs(30),
                75.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "cpu_pressure_high",
                Metric::PressureCpuSome,
                Comparison::Gt,
                20.0,
                Duration::from_secs(60),
                15.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "memory_pressure_high",
                Metric::PressureMemorySome,
                Comparison::Gt,
                10.0,
                Duration::from_secs(60),
                5.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "disk_busy",
                Metric::DiskUtilization,
                Comparison::Gt,
                90.0,
                Duration::from_secs(300),
                80.0,
                Severity::Warning,
            ),
            AlertRule::threshold(
                "container_memory_near_limit",
                Metric::ContainerMemoryOfLimit,
                Comparison::Gt,
                90.0,
                Duration::from_secs(120),
                85.0,
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
                    min_samples: DEFAULT_OFFLINE_MIN_SAMPLES,
                },
            },
        ]
    }
}

/// The default `min_samples` of a machine_offline rule: a machine that sent
/// fewer snapshots never established that it reports (see
/// [`Condition::MachineOffline`]).
pub const DEFAULT_OFFLINE_MIN_SAMPLES: u32 = 5;

/// The flat TOML form of a rule (`[[alerts.rules]]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<RuleKind>,
    #[serde(default)]
    severity: Severity,
    #[serde(default, with = "rule_metric", skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_samples: Option<u32>,
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
                only(
                    "min_samples",
                    s.min_samples.is_some(),
                    "\"machine_offline\"",
                )?;
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
                Condition::MachineOffline {
                    after,
                    min_samples: s.min_samples.unwrap_or(DEFAULT_OFFLINE_MIN_SAMPLES),
                }
            }
            RuleKind::FilesystemFullWithin => {
                for (f, present) in threshold_fields {
                    only(f, present, "\"threshold\"")?;
                }
                only("after", s.after.is_some(), "\"machine_offline\"")?;
                only(
                    "min_samples",
                    s.min_samples.is_some(),
                    "\"machine_offline\"",
                )?;
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
            Condition::MachineOffline { after, min_samples } => {
                s.kind = Some(RuleKind::MachineOffline);
                s.after = Some(after);
                s.min_samples = Some(min_samples);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_metric(spelling: &str) -> Result<Metric, String> {
        let text = format!("name = \"x\"\nmetric = \"{spelling}\"\nthreshold = 1");
        let rule: AlertRule = toml::from_str(&text).map_err(|e| e.to_string())?;
        match rule.condition {
            Condition::Threshold(t) => Ok(t.metric),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn every_vocabulary_spelling_names_the_same_metric_in_a_rule() {
        for m in Metric::ALL {
            for sp in m.spellings() {
                if m.usable_in(Usage::Alert) {
                    assert_eq!(rule_metric(sp), Ok(m), "{sp}");
                    assert_eq!(rule_metric(&sp.to_uppercase()), Ok(m), "{sp}");
                } else {
                    let e = rule_metric(sp).unwrap_err();
                    assert!(
                        e.contains("expected one of: cpu_usage, memory_usage"),
                        "{e}"
                    );
                }
            }
        }
        // The names rules were written with before the vocabulary keep working.
        for (old, m) in [
            ("cpu_usage", Metric::Cpu),
            ("memory_usage", Metric::Memory),
            ("swap_usage", Metric::SwapUsage),
            ("disk_read_rate", Metric::DiskRead),
            ("disk_write_rate", Metric::DiskWrite),
            ("net_sent_rate", Metric::NetSent),
            ("net_recv_rate", Metric::NetRecv),
            ("load_1m", Metric::Load1),
            ("filesystem_usage", Metric::FilesystemUsage),
        ] {
            assert_eq!(rule_metric(old), Ok(m), "{old}");
            assert_eq!(m.name(), old);
        }
        assert_eq!(ALERT_METRICS.to_vec(), {
            let mut v = Metric::usable(Usage::Alert);
            v.sort_by_key(|m| m.index());
            v
        });
        // A rule is written back with the vocabulary name.
        let r: AlertRule = toml::from_str("name = \"x\"\nmetric = \"cpu\"\nthreshold = 1").unwrap();
        assert!(toml::to_string(&r)
            .unwrap()
            .contains("metric = \"cpu_usage\""));
    }
}
