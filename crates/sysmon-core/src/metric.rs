//! The one metric vocabulary: [`Metric`] (name, short name, aliases, unit,
//! description, source field, how it is read from a [`Snapshot`], and where it
//! can be used), and how machines are combined in a fleet series: [`FleetAgg`].
//! The dashboard's API and charts, the alert rules, the detector's features and
//! `/metrics` all name their quantities with it; the list is documented once in
//! `docs/metrics.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;

/// A per-machine quantity sysmon charts, alerts on, detects anomalies in or
/// exports.
///
/// Every metric has a [`name`](Metric::name) (the snapshot field it comes from
/// where there is one: `cpu_usage`, `memory_usage`, ...), a
/// [`short_name`](Metric::short_name) (what the dashboard's API answers with:
/// `cpu`, `memory`, ...) and may have [`aliases`](Metric::aliases); parsing
/// accepts all of them, case-insensitively and with `-` for `_`. In JSON a
/// metric is written with its short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Whole-host CPU utilisation, percent.
    Cpu,
    /// Memory used, percent.
    Memory,
    /// Disk reads, bytes per second.
    DiskRead,
    /// Disk writes, bytes per second.
    DiskWrite,
    /// Network bytes sent per second.
    NetSent,
    /// Network bytes received per second.
    NetRecv,
    /// 1-minute load average.
    Load1,
    /// Swap in use, bytes.
    Swap,
    /// Swap in use, percent of the swap space (none on a machine without swap).
    SwapUsage,
    /// Used percent of the machine's fullest filesystem.
    FilesystemUsage,
}

/// A place a [`Metric`] can be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// The dashboard's series and fleet charts (`/api/.../series`, `/api/fleet`,
    /// sparklines): the stores keep these as columns and rollups.
    Chart,
    /// An alert rule's `metric = "..."`.
    Alert,
    /// A feature of the anomaly detector (and of the forecasts).
    Detector,
    /// A gauge at `/metrics`.
    Prometheus,
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 10] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::DiskRead,
        Metric::DiskWrite,
        Metric::NetSent,
        Metric::NetRecv,
        Metric::Load1,
        Metric::Swap,
        Metric::SwapUsage,
        Metric::FilesystemUsage,
    ];

    /// The metrics the dashboard charts (every store keeps their series), in
    /// display order.
    pub const CHARTS: [Metric; 8] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::DiskRead,
        Metric::DiskWrite,
        Metric::NetSent,
        Metric::NetRecv,
        Metric::Load1,
        Metric::Swap,
    ];

    /// The vocabulary name, e.g. `cpu_usage`, `disk_read_rate`: the snapshot
    /// field where the value is a field of its own. Alert messages, anomaly
    /// reasons and forecasts name metrics with it.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu_usage",
            Metric::Memory => "memory_usage",
            Metric::DiskRead => "disk_read_rate",
            Metric::DiskWrite => "disk_write_rate",
            Metric::NetSent => "net_sent_rate",
            Metric::NetRecv => "net_recv_rate",
            Metric::Load1 => "load_1m",
            Metric::Swap => "swap_used_bytes",
            Metric::SwapUsage => "swap_usage",
            Metric::FilesystemUsage => "filesystem_usage",
        }
    }

    /// The short name the dashboard's API and charts use, e.g. `cpu`,
    /// `disk_read` (the [`name`](Metric::name) for a metric without one).
    pub const fn short_name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::DiskRead => "disk_read",
            Metric::DiskWrite => "disk_write",
            Metric::NetSent => "net_sent",
            Metric::NetRecv => "net_recv",
            Metric::Load1 => "load1",
            Metric::Swap => "swap",
            Metric::SwapUsage | Metric::FilesystemUsage => self.name(),
        }
    }

    /// Further spellings that parse to this metric.
    pub const fn aliases(self) -> &'static [&'static str] {
        match self {
            Metric::Memory => &["mem"],
            Metric::Load1 => &["load"],
            _ => &[],
        }
    }

    /// Every accepted spelling: the name, the short name (when it differs),
    /// then the aliases.
    pub fn spellings(self) -> Vec<&'static str> {
        let mut v = vec![self.name()];
        if self.short_name() != self.name() {
            v.push(self.short_name());
        }
        v.extend_from_slice(self.aliases());
        v
    }

    /// The short names of the charted metrics ([`Metric::CHARTS`]), in display order.
    pub fn names() -> Vec<&'static str> {
        Metric::CHARTS.iter().map(|m| m.short_name()).collect()
    }

    /// The unit of the metric's values: `percent`, `bytes/s`, `bytes` or `load`.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Memory | Metric::SwapUsage | Metric::FilesystemUsage => "percent",
            Metric::DiskRead | Metric::DiskWrite | Metric::NetSent | Metric::NetRecv => "bytes/s",
            Metric::Load1 => "load",
            Metric::Swap => "bytes",
        }
    }

    /// One sentence on what the value is (also the `/metrics` help text).
    pub const fn description(self) -> &'static str {
        match self {
            Metric::Cpu => "Whole-host CPU utilisation, percent.",
            Metric::Memory => "Memory used, percent.",
            Metric::DiskRead => "Disk read rate over the last interval.",
            Metric::DiskWrite => "Disk write rate over the last interval.",
            Metric::NetSent => "Network send rate over the last interval (loopback excluded).",
            Metric::NetRecv => "Network receive rate over the last interval (loopback excluded).",
            Metric::Load1 => "1-minute load average.",
            Metric::Swap => "Swap in use, bytes.",
            Metric::SwapUsage => "Swap in use, percent of the swap space.",
            Metric::FilesystemUsage => "Usage of the machine's fullest filesystem, percent.",
        }
    }

    /// The snapshot field(s) the value is read from (`docs/wire-format.md`).
    pub const fn source(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu_usage",
            Metric::Memory => "memory_usage",
            Metric::DiskRead => "disk_rate.read",
            Metric::DiskWrite => "disk_rate.write",
            Metric::NetSent => "network_rate.sent",
            Metric::NetRecv => "network_rate.recv",
            Metric::Load1 => "load_avg.one",
            Metric::Swap => "memory.swap_used_bytes",
            Metric::SwapUsage => "memory.swap_used_bytes / memory.swap_total_bytes",
            Metric::FilesystemUsage => "filesystems[].used_bytes / total_bytes (the fullest)",
        }
    }

    /// The gauge's name at `/metrics`, for the metrics exported there.
    pub const fn prometheus_name(self) -> Option<&'static str> {
        Some(match self {
            Metric::Cpu => "sysmon_cpu_usage_percent",
            Metric::Memory => "sysmon_memory_usage_percent",
            Metric::DiskRead => "sysmon_disk_read_bytes_per_second",
            Metric::DiskWrite => "sysmon_disk_write_bytes_per_second",
            Metric::NetSent => "sysmon_network_sent_bytes_per_second",
            Metric::NetRecv => "sysmon_network_received_bytes_per_second",
            Metric::Load1 => "sysmon_load1",
            Metric::Swap => "sysmon_swap_used_bytes",
            Metric::FilesystemUsage => "sysmon_filesystem_fullest_used_percent",
            Metric::SwapUsage => return None,
        })
    }

    /// Whether the metric can be named in `usage`.
    pub fn usable_in(self, usage: Usage) -> bool {
        match usage {
            Usage::Chart => Metric::CHARTS.contains(&self),
            Usage::Alert => self != Metric::Swap,
            Usage::Detector => matches!(
                self,
                Metric::Cpu
                    | Metric::Memory
                    | Metric::DiskRead
                    | Metric::DiskWrite
                    | Metric::NetSent
                    | Metric::NetRecv
            ),
            Usage::Prometheus => self.prometheus_name().is_some(),
        }
    }

    /// The metrics usable in `usage`, in display order.
    pub fn usable(usage: Usage) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| m.usable_in(usage))
            .collect()
    }

    /// The metric any of whose spellings is `s` (case and `-` versus `_` do
    /// not matter).
    pub fn from_name(s: &str) -> Option<Metric> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Metric::ALL
            .into_iter()
            .find(|m| m.spellings().contains(&norm.as_str()))
    }

    /// This metric's value in one snapshot, when the snapshot carries it
    /// (rates, never the cumulative counters).
    pub fn value(self, s: &Snapshot) -> Option<f64> {
        let v = match self {
            Metric::Cpu => Some(s.cpu_usage),
            Metric::Memory => Some(s.memory_usage),
            Metric::Swap => s.memory.map(|m| m.swap_used_bytes as f64),
            Metric::SwapUsage => s
                .memory
                .filter(|m| m.swap_total_bytes > 0)
                .map(|m| m.swap_used_bytes as f64 * 100.0 / m.swap_total_bytes as f64),
            Metric::DiskRead => s.disk_rate.map(|r| r.read),
            Metric::DiskWrite => s.disk_rate.map(|r| r.write),
            Metric::NetSent => s.network_rate.map(|r| r.sent),
            Metric::NetRecv => s.network_rate.map(|r| r.recv),
            Metric::Load1 => s.load_avg.map(|l| l.one),
            Metric::FilesystemUsage => s.fullest_filesystem_percent(),
        };
        v.filter(|x| x.is_finite())
    }
}

impl fmt::Display for Metric {
    /// The short name, as in the API.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short_name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    /// Any spelling (name, short name, alias).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An unknown metric or aggregation name, with the names that are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being parsed: `metric` or `aggregation`.
    pub what: &'static str,
    /// The name given (at most 64 characters of it).
    pub name: String,
    /// The names accepted.
    pub expected: Vec<&'static str>,
}

impl UnknownName {
    /// `name` (cut to 64 characters) was not one of `expected`.
    pub fn new(what: &'static str, name: &str, expected: Vec<&'static str>) -> Self {
        UnknownName {
            what,
            name: name.chars().take(64).collect(),
            expected,
        }
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}; expected one of: {}",
            self.what,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for Metric {
    type Err = UnknownName;

    /// Parses any spelling of a metric (`cpu`, `cpu_usage`, `memory`, `mem`,
    /// `disk_read`, `disk_read_rate`, ...; see [`Metric::spellings`]); case and
    /// `-` versus `_` do not matter. The error lists the charted metrics' short
    /// names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::from_name(s).ok_or_else(|| UnknownName::new("metric", s, Metric::names()))
    }
}

/// How machines are combined in a fleet series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetAgg {
    /// The fleet average: every machine weighs the same.
    Avg,
    /// The busiest machine: the highest sample of any machine.
    Max,
}

impl FleetAgg {
    /// The name in URLs and JSON: `avg` or `max`.
    pub fn name(self) -> &'static str {
        match self {
            FleetAgg::Avg => "avg",
            FleetAgg::Max => "max",
        }
    }
}

impl fmt::Display for FleetAgg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FleetAgg {
    type Err = UnknownName;

    /// Parses `avg` (or `mean`) and `max`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avg" | "mean" => Ok(FleetAgg::Avg),
            "max" => Ok(FleetAgg::Max),
            _ => Err(UnknownName::new("aggregation", s, vec!["avg", "max"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_say_what_is_accepted() {
        for m in Metric::CHARTS {
            assert_eq!(m.short_name().parse::<Metric>().unwrap(), m);
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.short_name())
            );
        }
        assert_eq!("Disk-Read".parse::<Metric>().unwrap(), Metric::DiskRead);
        assert_eq!("mem".parse::<Metric>().unwrap(), Metric::Memory);
        assert_eq!(
            "gpu".parse::<Metric>().unwrap_err().to_string(),
            "unknown metric \"gpu\"; expected one of: cpu, memory, disk_read, disk_write, \
             net_sent, net_recv, load1, swap"
        );
        assert!(
            "x".repeat(1000)
                .parse::<Metric>()
                .unwrap_err()
                .to_string()
                .len()
                < 300
        );
        assert_eq!("MAX".parse::<FleetAgg>().unwrap(), FleetAgg::Max);
        assert!("median"
            .parse::<FleetAgg>()
            .unwrap_err()
            .to_string()
            .contains("avg, max"));
    }

    #[test]
    fn values_come_from_rates_not_counters() {
        let mut s = crate::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        s.disk_io.read = 1 << 40;
        let r = Metric::DiskRead.value(&s).unwrap();
        assert!(r < 1e8, "{r}");
        assert_eq!(Metric::Cpu.value(&s), Some(s.cpu_usage));
        s.load_avg = None;
        assert_eq!(Metric::Load1.value(&s), None);
    }

    #[test]
    fn every_spelling_parses_to_its_metric_and_no_spelling_is_shared() {
        let mut seen = std::collections::HashMap::new();
        for m in Metric::ALL {
            for sp in m.spellings() {
                assert_eq!(sp.parse::<Metric>().unwrap(), m, "{sp}");
                assert_eq!(Metric::from_name(&sp.to_uppercase()), Some(m), "{sp}");
                let json = serde_json::to_string(sp).unwrap();
                assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m, "{sp}");
                assert_eq!(seen.insert(sp, m), None, "{sp} names two metrics");
            }
            assert_eq!(m.spellings()[0], m.name());
        }
        assert_eq!("cpu_usage".parse::<Metric>().unwrap(), Metric::Cpu);
        assert_eq!("memory_usage".parse::<Metric>().unwrap(), Metric::Memory);
        assert_eq!("load_1m".parse::<Metric>().unwrap(), Metric::Load1);
        assert_eq!("swap".parse::<Metric>().unwrap(), Metric::Swap);
        assert_eq!("swap_usage".parse::<Metric>().unwrap(), Metric::SwapUsage);
        assert_eq!(
            Metric::usable(Usage::Chart),
            Metric::CHARTS.to_vec(),
            "CHARTS is the chart usage"
        );
    }

    #[test]
    fn values_read_through_the_enum_equal_the_snapshot_fields() {
        let mut s = crate::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        let mem = s.memory.unwrap();
        let (dr, nr, la) = (
            s.disk_rate.unwrap(),
            s.network_rate.unwrap(),
            s.load_avg.unwrap(),
        );
        assert!(mem.swap_total_bytes > 0 && !s.filesystems.is_empty());
        let expect = |m: Metric| -> Option<f64> {
            Some(match m {
                Metric::Cpu => s.cpu_usage,
                Metric::Memory => s.memory_usage,
                Metric::DiskRead => dr.read,
                Metric::DiskWrite => dr.write,
                Metric::NetSent => nr.sent,
                Metric::NetRecv => nr.recv,
                Metric::Load1 => la.one,
                Metric::Swap => mem.swap_used_bytes as f64,
                Metric::SwapUsage => {
                    mem.swap_used_bytes as f64 * 100.0 / mem.swap_total_bytes as f64
                }
                Metric::FilesystemUsage => s
                    .filesystems
                    .iter()
                    .map(|f| f.used_bytes as f64 * 100.0 / f.total_bytes as f64)
                    .fold(f64::NEG_INFINITY, f64::max),
            })
        };
        for m in Metric::ALL {
            assert_eq!(m.value(&s), expect(m), "{}", m.name());
        }
        // Machines without swap have no swap percentage; absent sections read as none.
        s.memory.as_mut().unwrap().swap_total_bytes = 0;
        assert_eq!(Metric::SwapUsage.value(&s), None);
        s.filesystems.clear();
        s.memory = None;
        assert_eq!(Metric::FilesystemUsage.value(&s), None);
        assert_eq!(Metric::Swap.value(&s), None);
        s.cpu_usage = f64::NAN;
        assert_eq!(Metric::Cpu.value(&s), None);
    }

    /// The vocabulary table of `docs/metrics.md`, rendered from the enum.
    fn docs_table() -> String {
        let code = |v: &[&str]| {
            if v.is_empty() {
                "–".to_string()
            } else {
                v.iter()
                    .map(|x| format!("`{x}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut t = String::from(
            "| name | short name | aliases | unit | read from the snapshot | charts (API) | alert rules | detector | `/metrics` gauge |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        let yes = |b: bool| if b { "yes" } else { "–" };
        for m in Metric::ALL {
            let short = if m.short_name() == m.name() {
                vec![]
            } else {
                vec![m.short_name()]
            };
            t.push_str(&format!(
                "| `{}` | {} | {} | {} | `{}` | {} | {} | {} | {} |\n",
                m.name(),
                code(&short),
                code(m.aliases()),
                m.unit(),
                m.source(),
                yes(m.usable_in(Usage::Chart)),
                yes(m.usable_in(Usage::Alert)),
                yes(m.usable_in(Usage::Detector)),
                code(&m.prometheus_name().into_iter().collect::<Vec<_>>()),
            ));
        }
        t
    }

    #[test]
    fn docs_metrics_md_lists_the_vocabulary() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let table = docs_table();
        assert!(
            docs.contains(&table),
            "docs/metrics.md must contain:\n{table}"
        );
        for m in Metric::ALL {
            assert!(docs.contains(m.description()), "{}", m.description());
        }
    }
}
