//! What the API can chart: [`Metric`] names, time [`Range`]s and fleet
//! aggregations ([`FleetAgg`]), each parsed from query strings with errors
//! that name the allowed values.

use serde::Serialize;
use sysmon_core::Snapshot;

/// A chartable metric, by its API name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Whole-host CPU utilisation, percent.
    Cpu,
    /// Memory used, percent.
    Memory,
    /// Disk read rate, bytes per second.
    DiskRead,
    /// Disk write rate, bytes per second.
    DiskWrite,
    /// Network sent rate, bytes per second.
    NetSent,
    /// Network received rate, bytes per second.
    NetRecv,
    /// 1-minute load average.
    Load1,
    /// Swap in use, bytes.
    Swap,
}

impl Metric {
    /// Every metric, in documentation order.
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

    /// The API name (`cpu`, `disk_read`, ...).
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

    /// The unit of its values: `percent`, `bytes/s`, `bytes` or `load`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Cpu | Metric::Memory => "percent",
            Metric::DiskRead | Metric::DiskWrite | Metric::NetSent | Metric::NetRecv => "bytes/s",
            Metric::Load1 => "load",
            Metric::Swap => "bytes",
        }
    }

    /// Parses an API name; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<Metric, String> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown metric {:?}; allowed: {}",
                    truncate(s),
                    Metric::names().join(", ")
                )
            })
    }

    /// Every API name.
    pub fn names() -> Vec<&'static str> {
        Metric::ALL.iter().map(|m| m.name()).collect()
    }

    /// This metric's value in one snapshot, when the snapshot carries it.
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

/// A time range ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Range {
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    M5,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    M15,
    /// The last hour.
    #[serde(rename = "1h")]
    H1,
    /// The last 6 hours.
    #[serde(rename = "6h")]
    H6,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    H24,
    /// The last 7 days.
    #[serde(rename = "7d")]
    D7,
}

impl Range {
    /// Every range, shortest first.
    pub const ALL: [Range; 6] = [
        Range::M5,
        Range::M15,
        Range::H1,
        Range::H6,
        Range::H24,
        Range::D7,
    ];

    /// The API name (`5m` ... `7d`).
    pub fn name(self) -> &'static str {
        match self {
            Range::M5 => "5m",
            Range::M15 => "15m",
            Range::H1 => "1h",
            Range::H6 => "6h",
            Range::H24 => "24h",
            Range::D7 => "7d",
        }
    }

    /// Its length in seconds.
    pub fn secs(self) -> f64 {
        match self {
            Range::M5 => 300.0,
            Range::M15 => 900.0,
            Range::H1 => 3600.0,
            Range::H6 => 6.0 * 3600.0,
            Range::H24 => 86_400.0,
            Range::D7 => 7.0 * 86_400.0,
        }
    }

    /// Parses an API name; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<Range, String> {
        Range::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown range {:?}; allowed: {}",
                    truncate(s),
                    Range::names().join(", ")
                )
            })
    }

    /// Every API name.
    pub fn names() -> Vec<&'static str> {
        Range::ALL.iter().map(|r| r.name()).collect()
    }
}

/// How `/api/fleet` combines machines in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetAgg {
    /// The mean over machines of each machine's bucket average.
    Avg,
    /// The highest value any machine reached in the bucket.
    Max,
}

impl FleetAgg {
    /// Parses `avg` or `max`; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<FleetAgg, String> {
        match s {
            "avg" => Ok(FleetAgg::Avg),
            "max" => Ok(FleetAgg::Max),
            other => Err(format!(
                "unknown agg {:?}; allowed: avg, max",
                truncate(other)
            )),
        }
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            FleetAgg::Avg => "avg",
            FleetAgg::Max => "max",
        }
    }
}

/// Cuts user input echoed in an error message to a sane length.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(64).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_allowed_values() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Ok(m));
        }
        for r in Range::ALL {
            assert_eq!(Range::parse(r.name()), Ok(r));
        }
        let e = Metric::parse("cpux").unwrap_err();
        assert!(e.contains("cpu, memory, disk_read"), "{e}");
        let e = Range::parse("2h").unwrap_err();
        assert!(e.contains("5m, 15m, 1h, 6h, 24h, 7d"), "{e}");
        assert!(FleetAgg::parse("sum").unwrap_err().contains("avg, max"));
        assert!(Metric::parse(&"x".repeat(1000)).unwrap_err().len() < 400);
    }

    #[test]
    fn values_come_from_rates_not_counters() {
        let mut s = sysmon_core::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        s.disk_io.read = 1 << 40;
        let r = Metric::DiskRead.value(&s).unwrap();
        assert!(r < 1e8, "{r}");
        s.disk_rate = None;
        assert_eq!(Metric::DiskRead.value(&s), None);
        assert!(Metric::Swap.value(&s).unwrap() > 0.0);
    }
}
