//! What can be charted over time: [`Metric`], and how machines are combined in
//! a fleet series: [`FleetAgg`]. Shared by the SQLite sink (its series queries),
//! the dashboard (its API names) and anything else that reads history.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;

/// A metric that can be charted over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 8] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::DiskRead,
        Metric::DiskWrite,
        Metric::NetSent,
        Metric::NetRecv,
        Metric::Load1,
        Metric::Swap,
    ];

    /// The metric's name in URLs and JSON, e.g. `disk_read`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::DiskRead => "disk_read",
            Metric::DiskWrite => "disk_write",
            Metric::NetSent => "net_sent",
            Metric::NetRecv => "net_recv",
            Metric::Load1 => "load1",
            Metric::Swap => "swap",
        }
    }

    /// Every name, in display order.
    pub fn names() -> Vec<&'static str> {
        Metric::ALL.iter().map(|m| m.name()).collect()
    }

    /// The unit of the metric's values: `percent`, `bytes/s`, `bytes` or `load`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Memory => "percent",
            Metric::DiskRead | Metric::DiskWrite | Metric::NetSent | Metric::NetRecv => "bytes/s",
            Metric::Load1 => "load",
            Metric::Swap => "bytes",
        }
    }

    /// This metric's value in one snapshot, when the snapshot carries it
    /// (rates, never the cumulative counters).
    pub fn value(self, s: &Snapshot) -> Option<f64> {
        let v = match self {
            Metric::Cpu => Some(s.cpu_usage),
            Metric::Memory => Some(s.memory_usage),
            Metric::Swap => s.memory.map(|m| m.swap_used_bytes as f64),
            Metric::DiskRead => s.disk_rate.map(|r| r.read),
            Metric::DiskWrite => s.disk_rate.map(|r| r.write),
            Metric::NetSent => s.network_rate.map(|r| r.sent),
            Metric::NetRecv => s.network_rate.map(|r| r.recv),
            Metric::Load1 => s.load_avg.map(|l| l.one),
        };
        v.filter(|x| x.is_finite())
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    fn new(what: &'static str, name: &str, expected: Vec<&'static str>) -> Self {
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

    /// Parses a metric name (`cpu`, `memory`, `disk_read`, ...); case and `-`
    /// versus `_` do not matter, and `mem` and `load` are accepted as aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let alias = match norm.as_str() {
            "mem" => Some(Metric::Memory),
            "load" => Some(Metric::Load1),
            _ => None,
        };
        alias
            .or_else(|| Metric::ALL.into_iter().find(|m| m.name() == norm))
            .ok_or_else(|| UnknownName::new("metric", s, Metric::names()))
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
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>().unwrap(), m);
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
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
}
