//! The one metric vocabulary: [`Metric`] (name, short name, aliases, unit,
//! description, source field, how it is read from a [`Snapshot`], and where it
//! can be used), and how machines are combined in a fleet series: [`FleetAgg`].
//! The dashboard's API and charts, the alert rules, the detector's features and
//! `/metrics` all name their quantities with it; the list is documented once in
//! `docs/metrics.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Pressure, PressureStall, Snapshot};

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
    /// CPU pressure stall, `some` line, 10-second average, percent.
    PressureCpuSome,
    /// CPU pressure stall, `full` line, 10-second average, percent.
    PressureCpuFull,
    /// Memory pressure stall, `some` line, 10-second average, percent.
    PressureMemorySome,
    /// Memory pressure stall, `full` line, 10-second average, percent.
    PressureMemoryFull,
    /// I/O pressure stall, `some` line, 10-second average, percent.
    PressureIoSome,
    /// I/O pressure stall, `full` line, 10-second average, percent.
    PressureIoFull,
    /// Utilisation of the busiest block device, percent.
    DiskUtilization,
    /// Average read latency of the slowest block device, milliseconds.
    DiskReadLatency,
    /// Average write latency of the slowest block device, milliseconds.
    DiskWriteLatency,
    /// Established TCP sockets (IPv4 and IPv6).
    TcpEstablished,
    /// TCP sockets in `TIME_WAIT` (IPv4 and IPv6).
    TcpTimeWait,
    /// TCP segments retransmitted per second.
    TcpRetransmitRate,
    /// TCP segments retransmitted, percent of the segments sent.
    TcpRetransmitPercent,
    /// The hottest temperature sensor, degrees Celsius.
    TemperatureMax,
    /// System-wide open file handles.
    OpenFiles,
    /// Memory in use of the fullest top cgroup with a limit, percent of its limit.
    ContainerMemoryOfLimit,
    /// CPU of the busiest top cgroup (container, pod, service), percent of one core.
    ContainerCpu,
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
    pub const ALL: [Metric; 27] = [
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

    /// The metrics read from a snapshot's host details (pressure, disks, TCP,
    /// temperatures, open files, cgroups): none on a machine or agent that
    /// does not collect them.
    pub const HOST_DETAILS: [Metric; 17] = [
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
            Metric::PressureCpuSome => "pressure_cpu_some_avg10",
            Metric::PressureCpuFull => "pressure_cpu_full_avg10",
            Metric::PressureMemorySome => "pressure_memory_some_avg10",
            Metric::PressureMemoryFull => "pressure_memory_full_avg10",
            Metric::PressureIoSome => "pressure_io_some_avg10",
            Metric::PressureIoFull => "pressure_io_full_avg10",
            Metric::DiskUtilization => "disk_utilization_percent",
            Metric::DiskReadLatency => "disk_read_latency_ms",
            Metric::DiskWriteLatency => "disk_write_latency_ms",
            Metric::TcpEstablished => "tcp_established",
            Metric::TcpTimeWait => "tcp_time_wait",
            Metric::TcpRetransmitRate => "tcp_retransmit_rate",
            Metric::TcpRetransmitPercent => "tcp_retransmit_percent",
            Metric::TemperatureMax => "temperature_max_celsius",
            Metric::OpenFiles => "open_files",
            Metric::ContainerMemoryOfLimit => "container_memory_percent_of_limit",
            Metric::ContainerCpu => "container_cpu_percent",
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
            _ => self.name(),
        }
    }

    /// Further spellings that parse to this metric.
    pub const fn aliases(self) -> &'static [&'static str] {
        match self {
            Metric::Memory => &["mem"],
            Metric::Load1 => &["load"],
            Metric::ContainerCpu => &["busiest_container"],
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

    /// The unit of the metric's values: `percent`, `bytes/s`, `bytes`, `load`,
    /// `ms`, `sockets`, `segments/s`, `celsius` or `files`.
    pub const fn unit(self) -> &'static str {
        match self {
            Metric::Cpu
            | Metric::Memory
            | Metric::SwapUsage
            | Metric::FilesystemUsage
            | Metric::PressureCpuSome
            | Metric::PressureCpuFull
            | Metric::PressureMemorySome
            | Metric::PressureMemoryFull
            | Metric::PressureIoSome
            | Metric::PressureIoFull
            | Metric::DiskUtilization
            | Metric::TcpRetransmitPercent
            | Metric::ContainerMemoryOfLimit
            | Metric::ContainerCpu => "percent",
            Metric::DiskRead | Metric::DiskWrite | Metric::NetSent | Metric::NetRecv => "bytes/s",
            Metric::Load1 => "load",
            Metric::Swap => "bytes",
            Metric::DiskReadLatency | Metric::DiskWriteLatency => "ms",
            Metric::TcpEstablished | Metric::TcpTimeWait => "sockets",
            Metric::TcpRetransmitRate => "segments/s",
            Metric::TemperatureMax => "celsius",
            Metric::OpenFiles => "files",
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
            Metric::PressureCpuSome => {
                "Share of the last 10 s some task waited for CPU (pressure stall), percent."
            }
            Metric::PressureCpuFull => {
                "Share of the last 10 s all non-idle tasks waited for CPU (pressure stall), percent."
            }
            Metric::PressureMemorySome => {
                "Share of the last 10 s some task waited for memory (pressure stall), percent."
            }
            Metric::PressureMemoryFull => {
                "Share of the last 10 s all non-idle tasks waited for memory (pressure stall), percent."
            }
            Metric::PressureIoSome => {
                "Share of the last 10 s some task waited for block I/O (pressure stall), percent."
            }
            Metric::PressureIoFull => {
                "Share of the last 10 s all non-idle tasks waited for block I/O (pressure stall), percent."
            }
            Metric::DiskUtilization => {
                "Share of the last interval the busiest block device was busy, percent."
            }
            Metric::DiskReadLatency => {
                "Average read latency over the last interval of the slowest block device, milliseconds."
            }
            Metric::DiskWriteLatency => {
                "Average write latency over the last interval of the slowest block device, milliseconds."
            }
            Metric::TcpEstablished => "Established TCP sockets, IPv4 and IPv6.",
            Metric::TcpTimeWait => "TCP sockets in TIME_WAIT, IPv4 and IPv6.",
            Metric::TcpRetransmitRate => {
                "TCP segments retransmitted per second over the last interval."
            }
            Metric::TcpRetransmitPercent => {
                "TCP segments retransmitted over the last interval, percent of the segments sent."
            }
            Metric::TemperatureMax => "Temperature of the hottest sensor, degrees Celsius.",
            Metric::OpenFiles => "File handles allocated system-wide.",
            Metric::ContainerMemoryOfLimit => {
                "Memory in use of the top cgroup (container, pod, service) closest to its memory limit, percent of that limit."
            }
            Metric::ContainerCpu => {
                "CPU of the busiest top cgroup (container, pod, service) over the last interval, percent of one core."
            }
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
            Metric::PressureCpuSome => "pressure.cpu.some.avg10",
            Metric::PressureCpuFull => "pressure.cpu.full.avg10",
            Metric::PressureMemorySome => "pressure.memory.some.avg10",
            Metric::PressureMemoryFull => "pressure.memory.full.avg10",
            Metric::PressureIoSome => "pressure.io.some.avg10",
            Metric::PressureIoFull => "pressure.io.full.avg10",
            Metric::DiskUtilization => "disks[].utilization_percent (the highest)",
            Metric::DiskReadLatency => "disks[].read_latency_ms (the highest)",
            Metric::DiskWriteLatency => "disks[].write_latency_ms (the highest)",
            Metric::TcpEstablished => "tcp.v4.established + tcp.v6.established",
            Metric::TcpTimeWait => "tcp.v4.time_wait + tcp.v6.time_wait",
            Metric::TcpRetransmitRate => "tcp.retransmits_per_sec",
            Metric::TcpRetransmitPercent => "tcp.retransmit_percent",
            Metric::TemperatureMax => "temperatures[].celsius (the highest)",
            Metric::OpenFiles => "open_files.allocated",
            Metric::ContainerMemoryOfLimit => {
                "top_*_cgroups[].memory_bytes / memory_limit_bytes (the highest, limited groups only)"
            }
            Metric::ContainerCpu => "top_cpu_cgroups[].cpu_percent (the highest)",
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
            Metric::PressureCpuSome => "sysmon_pressure_cpu_some_avg10_percent",
            Metric::PressureCpuFull => "sysmon_pressure_cpu_full_avg10_percent",
            Metric::PressureMemorySome => "sysmon_pressure_memory_some_avg10_percent",
            Metric::PressureMemoryFull => "sysmon_pressure_memory_full_avg10_percent",
            Metric::PressureIoSome => "sysmon_pressure_io_some_avg10_percent",
            Metric::PressureIoFull => "sysmon_pressure_io_full_avg10_percent",
            Metric::DiskUtilization => "sysmon_disk_busiest_utilization_percent",
            Metric::DiskReadLatency => "sysmon_disk_slowest_read_latency_milliseconds",
            Metric::DiskWriteLatency => "sysmon_disk_slowest_write_latency_milliseconds",
            Metric::TcpEstablished => "sysmon_tcp_established_sockets",
            Metric::TcpTimeWait => "sysmon_tcp_time_wait_sockets",
            Metric::TcpRetransmitRate => "sysmon_tcp_retransmits_per_second",
            Metric::TcpRetransmitPercent => "sysmon_tcp_retransmit_percent",
            Metric::TemperatureMax => "sysmon_temperature_max_celsius",
            Metric::OpenFiles => "sysmon_open_files",
            Metric::ContainerMemoryOfLimit => "sysmon_cgroup_memory_max_percent_of_limit",
            Metric::ContainerCpu => "sysmon_cgroup_cpu_max_percent",
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
                    | Metric::PressureCpuSome
                    | Metric::PressureMemorySome
                    | Metric::PressureIoSome
                    | Metric::DiskUtilization
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
            Metric::PressureCpuSome => pressure(s, |p| p.cpu, false),
            Metric::PressureCpuFull => pressure(s, |p| p.cpu, true),
            Metric::PressureMemorySome => pressure(s, |p| p.memory, false),
            Metric::PressureMemoryFull => pressure(s, |p| p.memory, true),
            Metric::PressureIoSome => pressure(s, |p| p.io, false),
            Metric::PressureIoFull => pressure(s, |p| p.io, true),
            Metric::DiskUtilization => {
                highest(s.disks.iter().filter_map(|d| d.utilization_percent))
            }
            Metric::DiskReadLatency => highest(s.disks.iter().filter_map(|d| d.read_latency_ms)),
            Metric::DiskWriteLatency => highest(s.disks.iter().filter_map(|d| d.write_latency_ms)),
            Metric::TcpEstablished => s
                .tcp
                .map(|t| t.v4.established.saturating_add(t.v6.established) as f64),
            Metric::TcpTimeWait => s
                .tcp
                .map(|t| t.v4.time_wait.saturating_add(t.v6.time_wait) as f64),
            Metric::TcpRetransmitRate => s.tcp.and_then(|t| t.retransmits_per_sec),
            Metric::TcpRetransmitPercent => s.tcp.and_then(|t| t.retransmit_percent),
            Metric::TemperatureMax => highest(s.temperatures.iter().map(|t| t.celsius)),
            Metric::OpenFiles => s.open_files.map(|o| o.allocated as f64),
            Metric::ContainerMemoryOfLimit => highest(
                s.top_cpu_cgroups
                    .iter()
                    .chain(&s.top_mem_cgroups)
                    .filter_map(|g| match g.memory_limit_bytes {
                        Some(l) if l > 0 => Some(g.memory_bytes as f64 * 100.0 / l as f64),
                        _ => None,
                    }),
            ),
            Metric::ContainerCpu => s.busiest_cgroup().map(|g| g.cpu_percent),
        };
        v.filter(|x| x.is_finite())
    }

    /// True for a metric read from the snapshot's host details
    /// ([`Metric::HOST_DETAILS`]).
    pub fn is_host_detail(self) -> bool {
        Metric::HOST_DETAILS.contains(&self)
    }
}

/// The `avg10` of one pressure file's `some` (or `full`) line, when collected.
fn pressure(
    s: &Snapshot,
    which: fn(&Pressure) -> Option<PressureStall>,
    full: bool,
) -> Option<f64> {
    let stall = s.pressure.as_ref().and_then(which)?;
    if full {
        stall.full.map(|l| l.avg10)
    } else {
        Some(stall.some.avg10)
    }
}

/// The highest finite value, none when there is none.
fn highest(values: impl Iterator<Item = f64>) -> Option<f64> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        })
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
            if m.is_host_detail() {
                // A plain synthetic snapshot carries no host details: none, not 0.
                return None;
            }
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
                _ => unreachable!("host details are handled above"),
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

    #[test]
    fn host_detail_metrics_read_the_worst_device_sensor_and_group_and_absent_is_none() {
        use crate::snapshot::{BlockDevice, CgroupInfo, Temperature};
        let mut s = crate::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        for m in Metric::HOST_DETAILS {
            assert_eq!(m.value(&s), None, "{}", m.name());
        }
        crate::synth::fill_host_details(&mut s);
        let p = s.pressure.unwrap();
        let tcp = s.tcp.unwrap();
        assert_eq!(
            Metric::PressureCpuSome.value(&s),
            Some(p.cpu.unwrap().some.avg10)
        );
        assert_eq!(
            Metric::PressureIoFull.value(&s),
            Some(p.io.unwrap().full.unwrap().avg10)
        );
        assert_eq!(
            Metric::TcpEstablished.value(&s),
            Some((tcp.v4.established + tcp.v6.established) as f64)
        );
        assert_eq!(Metric::TcpTimeWait.value(&s), Some(35.0));
        assert_eq!(Metric::TcpRetransmitRate.value(&s), Some(0.5));
        assert_eq!(Metric::TcpRetransmitPercent.value(&s), Some(0.1));
        assert_eq!(Metric::OpenFiles.value(&s), Some(3000.0));
        for m in Metric::HOST_DETAILS {
            assert!(m.value(&s).is_some(), "{}", m.name());
        }
        // The busiest / slowest disk, the hottest sensor, the fullest limited group.
        let disk = |name: &str, util: Option<f64>, r: f64, w: f64| BlockDevice {
            name: name.into(),
            utilization_percent: util,
            read_latency_ms: Some(r),
            write_latency_ms: Some(w),
            ..BlockDevice::default()
        };
        s.disks = vec![
            disk("sda", Some(12.0), 9.0, 1.0),
            disk("sdb", Some(97.5), 2.0, 30.0),
            disk("sdc", None, 1.0, 1.0),
        ];
        assert_eq!(Metric::DiskUtilization.value(&s), Some(97.5));
        assert_eq!(Metric::DiskReadLatency.value(&s), Some(9.0));
        assert_eq!(Metric::DiskWriteLatency.value(&s), Some(30.0));
        s.temperatures = vec![
            Temperature {
                label: "a".into(),
                celsius: 41.0,
                critical_celsius: None,
            },
            Temperature {
                label: "b".into(),
                celsius: 77.5,
                critical_celsius: Some(100.0),
            },
        ];
        assert_eq!(Metric::TemperatureMax.value(&s), Some(77.5));
        let group = |mem: u64, limit: Option<u64>| CgroupInfo {
            memory_bytes: mem,
            memory_limit_bytes: limit,
            ..CgroupInfo::default()
        };
        s.top_cpu_cgroups = vec![group(900, Some(1000)), group(5000, None)];
        s.top_mem_cgroups = vec![group(5000, None), group(100, Some(400))];
        assert_eq!(Metric::ContainerMemoryOfLimit.value(&s), Some(90.0));
        // The busiest group by CPU, whatever the list's order; above 100 % is
        // several cores, not an error.
        s.top_cpu_cgroups[0].cpu_percent = 35.0;
        s.top_cpu_cgroups[1].cpu_percent = 180.5;
        s.top_cpu_cgroups[1].name = "db".into();
        assert_eq!(Metric::ContainerCpu.value(&s), Some(180.5));
        assert_eq!(s.busiest_cgroup().map(|g| g.name.as_str()), Some("db"));
        assert_eq!(
            "busiest_container".parse::<Metric>().ok(),
            Some(Metric::ContainerCpu)
        );
        // Absent parts read as none: no limits, no rates, no full line, no sensors.
        s.top_cpu_cgroups = vec![group(5000, None), group(1, Some(0))];
        s.top_mem_cgroups.clear();
        assert_eq!(Metric::ContainerMemoryOfLimit.value(&s), None);
        s.top_cpu_cgroups.clear();
        assert_eq!(Metric::ContainerCpu.value(&s), None);
        s.disks = vec![BlockDevice::default()];
        assert_eq!(Metric::DiskUtilization.value(&s), None);
        assert_eq!(Metric::DiskReadLatency.value(&s), None);
        s.pressure.as_mut().unwrap().cpu.as_mut().unwrap().full = None;
        assert_eq!(Metric::PressureCpuFull.value(&s), None);
        assert!(Metric::PressureCpuSome.value(&s).is_some());
        s.pressure = None;
        assert_eq!(Metric::PressureMemorySome.value(&s), None);
        s.temperatures.clear();
        assert_eq!(Metric::TemperatureMax.value(&s), None);
        s.tcp.as_mut().unwrap().retransmits_per_sec = None;
        assert_eq!(Metric::TcpRetransmitRate.value(&s), None);
        assert_eq!(
            Metric::TcpEstablished.value(&s),
            Some(128.0 + s.cpu_usage.trunc())
        );
        // Usable in alert rules and at /metrics, not charted (no stored
        // series); the some-avg10 pressures and the busiest disk's
        // utilisation are detector features.
        for m in Metric::HOST_DETAILS {
            assert!(m.usable_in(Usage::Alert), "{}", m.name());
            assert!(m.usable_in(Usage::Prometheus), "{}", m.name());
            assert!(!m.usable_in(Usage::Chart), "{}", m.name());
            let feature = matches!(
                m,
                Metric::PressureCpuSome
                    | Metric::PressureMemorySome
                    | Metric::PressureIoSome
                    | Metric::DiskUtilization
            );
            assert_eq!(m.usable_in(Usage::Detector), feature, "{}", m.name());
        }
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
