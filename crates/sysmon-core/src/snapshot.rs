//! The data model: one [`Snapshot`] per machine per interval.
//!
//! The JSON form is a strict superset of the legacy Python producer's message:
//! the legacy fields keep their names, types and meaning, and every new field is
//! optional on input, so a legacy message decodes unchanged and a sysmon message
//! stays readable by the legacy consumer (which ignores keys it does not know).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The current version of the native wire format. A message without
/// `schema_version` is a legacy message (version 0).
pub const SCHEMA_VERSION: u32 = 1;

/// One machine's metrics for one sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    // ----- legacy fields (same names, types and meaning as the Python producer) -----
    /// Stable machine identity, e.g. `web-01` (legacy: `machine_46`).
    pub machine_id: String,
    /// Seconds since the Unix epoch on the sender's clock.
    pub timestamp: f64,
    /// Whole-host CPU utilisation in percent, 0..=100.
    pub cpu_usage: f64,
    /// Memory used in percent, 0..=100 (psutil's `virtual_memory().percent`).
    pub memory_usage: f64,
    /// Cumulative disk bytes since boot.
    pub disk_io: DiskIo,
    /// Cumulative network bytes since boot (loopback excluded by sysmon's collector).
    pub network_io: NetworkIo,
    /// Top processes by CPU, highest first.
    #[serde(default)]
    pub top_cpu_processes: Vec<ProcessInfo>,
    /// Top processes by resident memory, highest first.
    #[serde(default)]
    pub top_mem_processes: Vec<ProcessInfo>,

    // ----- sysmon fields (all optional on input) -----
    /// Wire format version; absent (0) for legacy messages.
    #[serde(default)]
    pub schema_version: u32,
    /// The host name as the machine reports it.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The sampling interval in seconds.
    #[serde(default)]
    pub interval_secs: Option<f64>,
    /// CPU utilisation per logical core in percent, 0..=100 each.
    #[serde(default)]
    pub cpu_per_core: Vec<f64>,
    /// Load averages over 1, 5 and 15 minutes.
    #[serde(default)]
    pub load_avg: Option<LoadAvg>,
    /// Memory and swap in bytes.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Disk throughput over the last interval, bytes per second.
    #[serde(default)]
    pub disk_rate: Option<IoRate>,
    /// Network throughput over the last interval, bytes per second.
    #[serde(default)]
    pub network_rate: Option<NetworkRate>,
    /// Mounted filesystems and their usage.
    #[serde(default)]
    pub filesystems: Vec<Filesystem>,
    /// Seconds since boot.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// Free-form labels from the agent's configuration (`role = "db"`, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Collectors that failed while building this snapshot: the snapshot is
    /// partial, not lost.
    #[serde(default)]
    pub collector_errors: Vec<CollectorFailure>,
    /// Numeric metrics from user-defined collectors, by name (`app.queue_depth`).
    #[serde(default)]
    pub custom_metrics: BTreeMap<String, f64>,
}

/// Cumulative disk I/O counters (legacy `disk_io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DiskIo {
    /// Bytes read since boot.
    pub read: u64,
    /// Bytes written since boot.
    pub write: u64,
}

/// Cumulative network counters (legacy `network_io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkIo {
    /// Bytes sent since boot.
    pub sent: u64,
    /// Bytes received since boot.
    pub recv: u64,
}

/// One process in a top-N list (legacy shape plus `memory_bytes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Executable name only, never the command line (it often carries secrets).
    pub name: String,
    /// CPU in percent of one core, comparable to `top` (may exceed 100 on multi-core hosts).
    pub cpu_percent: f64,
    /// Resident memory in percent of total memory; `null` when it could not be read.
    pub memory_percent: Option<f64>,
    /// Resident memory in bytes, when known.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

/// Load averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f64,
    /// 5-minute load average.
    pub five: f64,
    /// 15-minute load average.
    pub fifteen: f64,
}

/// Memory and swap, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Memory {
    /// Physical memory installed.
    pub total_bytes: u64,
    /// Memory in use (total minus available).
    pub used_bytes: u64,
    /// Memory available to new work without swapping.
    pub available_bytes: u64,
    /// Swap configured.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
}

/// Disk throughput, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct IoRate {
    /// Bytes read per second.
    pub read: f64,
    /// Bytes written per second.
    pub write: f64,
}

/// Network throughput, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct NetworkRate {
    /// Bytes sent per second.
    pub sent: f64,
    /// Bytes received per second.
    pub recv: f64,
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Filesystem {
    /// Where it is mounted, e.g. `/`.
    pub mount_point: String,
    /// The filesystem type, e.g. `ext4`.
    #[serde(default)]
    pub fs_type: String,
    /// Size in bytes.
    pub total_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

/// A collector that failed while this snapshot was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CollectorFailure {
    /// The collector's registered name, e.g. `disk`.
    pub collector: String,
    /// What went wrong.
    pub message: String,
}

impl Snapshot {
    /// An empty snapshot for `machine_id` at `timestamp`, stamped with the
    /// current [`SCHEMA_VERSION`]; collectors fill in the rest.
    pub fn new(machine_id: impl Into<String>, timestamp: f64) -> Self {
        Snapshot {
            machine_id: machine_id.into(),
            timestamp,
            schema_version: SCHEMA_VERSION,
            ..Snapshot::default()
        }
    }

    /// Rounds measured values to the precision they carry: percentages and load
    /// averages to 0.01, rates to 0.1 B/s, the interval to 1 ms. Called by the agent
    /// before publishing: 17-digit floats carry only sampling noise, make messages
    /// larger and parse several times slower (exact float parsing takes its slow path).
    /// Custom metrics and counters are left alone.
    pub fn quantize(&mut self) {
        fn q(v: &mut f64, scale: f64) {
            if v.is_finite() {
                *v = (*v * scale).round() / scale;
            }
        }
        q(&mut self.cpu_usage, 100.0);
        q(&mut self.memory_usage, 100.0);
        self.cpu_per_core.iter_mut().for_each(|c| q(c, 100.0));
        for p in self
            .top_cpu_processes
            .iter_mut()
            .chain(self.top_mem_processes.iter_mut())
        {
            q(&mut p.cpu_percent, 100.0);
            if let Some(m) = p.memory_percent.as_mut() {
                q(m, 100.0);
            }
        }
        if let Some(i) = self.interval_secs.as_mut() {
            q(i, 1000.0);
        }
        if let Some(l) = self.load_avg.as_mut() {
            q(&mut l.one, 100.0);
            q(&mut l.five, 100.0);
            q(&mut l.fifteen, 100.0);
        }
        if let Some(r) = self.disk_rate.as_mut() {
            q(&mut r.read, 10.0);
            q(&mut r.write, 10.0);
        }
        if let Some(r) = self.network_rate.as_mut() {
            q(&mut r.sent, 10.0);
            q(&mut r.recv, 10.0);
        }
    }

    /// True when this snapshot came from the legacy Python producer (no schema version).
    pub fn is_legacy(&self) -> bool {
        self.schema_version == 0
    }

    /// The timestamp as whole milliseconds since the epoch: the storage key.
    pub fn timestamp_millis(&self) -> i64 {
        (self.timestamp * 1000.0).round() as i64
    }

    /// Total filesystem usage as percent of the fullest filesystem, if any.
    pub fn fullest_filesystem_percent(&self) -> Option<f64> {
        self.filesystems
            .iter()
            .filter(|f| f.total_bytes > 0)
            .map(|f| f.used_bytes as f64 * 100.0 / f.total_bytes as f64)
            .fold(None, |acc: Option<f64>, p| {
                Some(acc.map_or(p, |a| a.max(p)))
            })
    }
}
