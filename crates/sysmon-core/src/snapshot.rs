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

    // ----- host details (wire format 2; each absent when not collected) -----
    /// Pressure stall information of the whole host (`/proc/pressure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<Pressure>,
    /// Per block device I/O: counters since boot and rates over the last interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<BlockDevice>,
    /// TCP sockets per state and retransmissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
    /// Top control groups (services, containers, pods) by CPU, highest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_cpu_cgroups: Vec<CgroupInfo>,
    /// Top control groups by memory in use, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_mem_cgroups: Vec<CgroupInfo>,
    /// Temperature sensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub temperatures: Vec<Temperature>,
    /// System-wide open file handles (`/proc/sys/fs/file-nr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<OpenFiles>,
    /// Network errors and drops since boot, summed over the counted interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_errors: Option<NetworkErrors>,
}

/// Pressure stall information: how much time tasks waited for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Pressure {
    /// Waiting for CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<PressureStall>,
    /// Waiting for memory (reclaim, swap-in, thrashing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<PressureStall>,
    /// Waiting for block I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<PressureStall>,
}

/// The `some` and `full` lines of one pressure file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct PressureStall {
    /// Some task waited.
    pub some: PressureLine,
    /// Every non-idle task waited at once (absent for CPU on kernels before 5.13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<PressureLine>,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct PressureLine {
    /// Percent of the last 10 seconds spent stalled, 0..=100.
    pub avg10: f64,
    /// Percent of the last 60 seconds.
    pub avg60: f64,
    /// Percent of the last 300 seconds.
    pub avg300: f64,
    /// Microseconds stalled since boot.
    pub total_us: u64,
}

/// One block device's I/O.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BlockDevice {
    /// The kernel's name, e.g. `sda`, `nvme0n1`, `dm-0`.
    pub name: String,
    /// Reads completed since boot.
    pub read_ops: u64,
    /// Writes completed since boot.
    pub write_ops: u64,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub write_bytes: u64,
    /// Milliseconds spent reading since boot (summed over requests).
    pub read_time_ms: u64,
    /// Milliseconds spent writing since boot.
    pub write_time_ms: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Milliseconds the device was busy since boot.
    pub io_time_ms: u64,
    /// Reads per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<f64>,
    /// Writes per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<f64>,
    /// Average milliseconds per read completed in the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_latency_ms: Option<f64>,
    /// Average milliseconds per write completed in the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_latency_ms: Option<f64>,
    /// Percent of the last interval the device was busy, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<f64>,
}

/// TCP sockets and retransmissions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Tcp {
    /// IPv4 sockets per state.
    pub v4: TcpStates,
    /// IPv6 sockets per state.
    pub v6: TcpStates,
    /// Segments sent since boot (`Tcp: OutSegs`).
    pub out_segs: u64,
    /// Segments retransmitted since boot (`Tcp: RetransSegs`).
    pub retrans_segs: u64,
    /// Segments retransmitted per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmits_per_sec: Option<f64>,
    /// Retransmitted segments in percent of segments sent over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmit_percent: Option<f64>,
}

/// Number of sockets in each TCP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TcpStates {
    /// `ESTABLISHED`
    pub established: u64,
    /// `SYN_SENT`
    pub syn_sent: u64,
    /// `SYN_RECV` (including request sockets)
    pub syn_recv: u64,
    /// `FIN_WAIT1`
    pub fin_wait1: u64,
    /// `FIN_WAIT2`
    pub fin_wait2: u64,
    /// `TIME_WAIT`
    pub time_wait: u64,
    /// `CLOSE`
    pub close: u64,
    /// `CLOSE_WAIT`
    pub close_wait: u64,
    /// `LAST_ACK`
    pub last_ack: u64,
    /// `LISTEN`
    pub listen: u64,
    /// `CLOSING`
    pub closing: u64,
}

/// What a control group holds, read from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CgroupKind {
    /// A systemd service (`*.service`).
    SystemdService,
    /// A Docker container (name: its 12-character id).
    Docker,
    /// A containerd container.
    Containerd,
    /// A CRI-O container.
    CriO,
    /// A Kubernetes pod (name: its uid).
    KubernetesPod,
    /// Anything else (slices, scopes, hand-made groups); also kinds this
    /// version does not know.
    #[default]
    #[serde(other)]
    Other,
}

/// One control group in a top-N list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CgroupInfo {
    /// Path below the cgroup root, e.g. `/system.slice/nginx.service`.
    pub path: String,
    /// A readable name: the service, a container's short id, a pod's uid.
    pub name: String,
    /// What the group holds.
    pub kind: CgroupKind,
    /// CPU in percent of one core over the last interval.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// Processes and threads in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Bytes read per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bytes_per_sec: Option<f64>,
    /// Bytes written per second over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_bytes_per_sec: Option<f64>,
    /// The group's own pressure (cgroup v2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<Pressure>,
}

/// One temperature sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Temperature {
    /// The sensor's chip and label, e.g. `coretemp Package id 0`.
    pub label: String,
    /// Degrees Celsius.
    pub celsius: f64,
    /// The critical threshold in degrees Celsius, when the sensor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_celsius: Option<f64>,
}

/// System-wide file handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OpenFiles {
    /// File handles allocated.
    pub allocated: u64,
    /// The system-wide maximum (`fs.file-max`).
    pub max: u64,
}

/// Network errors and drops since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkErrors {
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
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
    /// Threads in the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// The kernel's one-letter state: `R` running, `S` sleeping, `D` in
    /// uninterruptible wait, `Z` zombie, `T` stopped, `I` idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Open file descriptors, where readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u32>,
    /// The owner's user name (the numeric uid when it has no name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
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
    /// before publishing (disk IOPS, latency and utilisation, TCP and cgroup CPU to
    /// 0.01, cgroup I/O rates to 0.1 B/s): 17-digit floats carry only sampling noise, make messages
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
        for d in &mut self.disks {
            for v in [
                &mut d.read_iops,
                &mut d.write_iops,
                &mut d.read_latency_ms,
                &mut d.write_latency_ms,
                &mut d.utilization_percent,
            ]
            .into_iter()
            .flatten()
            {
                q(v, 100.0);
            }
        }
        if let Some(t) = self.tcp.as_mut() {
            for v in [&mut t.retransmits_per_sec, &mut t.retransmit_percent]
                .into_iter()
                .flatten()
            {
                q(v, 100.0);
            }
        }
        for g in self
            .top_cpu_cgroups
            .iter_mut()
            .chain(self.top_mem_cgroups.iter_mut())
        {
            q(&mut g.cpu_percent, 100.0);
            for v in [&mut g.io_read_bytes_per_sec, &mut g.io_write_bytes_per_sec]
                .into_iter()
                .flatten()
            {
                q(v, 10.0);
            }
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

    /// The busiest of the top cgroups by CPU (`top_cpu_cgroups`), if any: the
    /// one with the highest finite `cpu_percent`.
    pub fn busiest_cgroup(&self) -> Option<&CgroupInfo> {
        self.top_cpu_cgroups
            .iter()
            .filter(|g| g.cpu_percent.is_finite())
            .max_by(|a, b| a.cpu_percent.total_cmp(&b.cpu_percent))
    }
}
