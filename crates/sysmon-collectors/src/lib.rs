//! # sysmon-collectors
//!
//! sysmon's built-in host collectors, one file per metric family (the layout of
//! Vector's `host_metrics` source), each a [`Collector`] writing its part of the
//! shared [`Snapshot`](sysmon_core::Snapshot):
//!
//! | name          | collector               | fills                                          | source |
//! |---------------|-------------------------|------------------------------------------------|--------|
//! | `cpu`         | [`CpuCollector`]        | `cpu_usage`, `cpu_per_core`                    | `/proc/stat` |
//! | `memory`      | [`MemoryCollector`]     | `memory_usage`, `memory` (incl. swap)          | sysinfo (`/proc/meminfo`) |
//! | `disk`        | [`DiskCollector`]       | `disk_io`, `disk_rate` (whole disks)           | `/proc/diskstats`, `/sys/block` |
//! | `network`     | [`NetworkCollector`]    | `network_io`, `network_rate`, `network_errors` (no loopback) | `/proc/net/dev` |
//! | `load`        | [`LoadCollector`]       | `load_avg`                                     | `/proc/loadavg` |
//! | `uptime`      | [`UptimeCollector`]     | `uptime_secs`                                  | `/proc/uptime` |
//! | `filesystems` | [`FilesystemCollector`] | `filesystems` (real ones, once per device)     | sysinfo (`/proc/mounts`, `statvfs`) |
//! | `processes`   | [`ProcessCollector`]    | `top_cpu_processes`, `top_mem_processes` (with threads, state, open fds, user), `open_files` | `/proc/<pid>/stat`, `/proc/sys/fs/file-nr` |
//! | `pressure`    | [`PressureCollector`]   | `pressure` (absent without PSI)                | `/proc/pressure/{cpu,memory,io}` |
//! | `disks`       | [`DisksCollector`]      | `disks` (per device: ops, bytes, latency, utilisation) | `/proc/diskstats`, `/sys/block` |
//! | `tcp`         | [`TcpCollector`]        | `tcp` (sockets per state, retransmits)         | `sock_diag` netlink, `/proc/net/snmp` |
//! | `cgroups`     | [`CgroupCollector`]     | `top_cpu_cgroups`, `top_mem_cgroups`           | `/sys/fs/cgroup` (v2 or v1) |
//! | `temperatures`| [`TemperatureCollector`]| `temperatures` (empty without sensors)         | `/sys/class/hwmon` |
//!
//! [`builtin_registry`] registers them all (enabled by default) so that the
//! `[collectors.<name>]` tables of the config file enable and configure them;
//! each takes a typed options struct that rejects unknown keys.
//!
//! Collectors are built once and prime themselves, so the first `collect` one
//! interval later already reports CPU and rates over a real interval. Each keeps
//! its own buffers (and sysinfo state) and refreshes only what it reports.
//! Reads of `/proc` are blocking: the agent calls collectors on a blocking
//! thread. Where sysinfo is costly or wrong for a family, the collector reads
//! `/proc` itself (each module says why); the pure parsers are public and
//! unit-tested on literal samples.
//!
//! The `/proc` and `/sys` sources are Linux's. On other systems (Windows,
//! macOS) [`register_builtins`] registers the [`portable`] collectors under the
//! names `cpu`, `disk`, `network`, `uptime` and `processes` (same options), so
//! every field of the legacy message is filled there too; `memory` is
//! sysinfo's on every OS, `filesystems` too except on Windows (drive letters). The Linux-only families
//! (`pressure`, `disks`, `tcp`, `cgroups`, `temperatures`, and `load` on
//! Windows, which has no load average) are registered disabled there, and
//! enabling one is a configuration error naming the OS.

#![warn(missing_docs)]

pub mod cgroups;
pub mod cpu;
pub mod disk;
pub mod disks;
pub mod error;
pub mod filesystems;
pub mod load;
pub mod memory;
pub mod network;
pub mod portable;
pub mod pressure;
pub mod processes;
pub mod tcp;
pub mod temperatures;
pub mod uptime;
mod util;

use serde::de::DeserializeOwned;
use sysmon_core::collector::parse_options;
use sysmon_core::{Collector, CollectorError, CollectorRegistry};

pub use cgroups::{CgroupCollector, CgroupOptions};
pub use cpu::{CpuCollector, CpuOptions};
pub use disk::{DiskCollector, DiskOptions};
pub use disks::{DisksCollector, DisksOptions};
pub use error::ParseError;
pub use filesystems::{FilesystemCollector, FilesystemOptions};
pub use load::{LoadCollector, LoadOptions};
pub use memory::{MemoryCollector, MemoryOptions};
pub use network::{NetworkCollector, NetworkOptions};
pub use pressure::{PressureCollector, PressureOptions};
pub use processes::{ProcessCollector, ProcessOptions};
pub use tcp::{TcpCollector, TcpOptions, TcpSource};
pub use temperatures::{TemperatureCollector, TemperatureOptions};
pub use uptime::{UptimeCollector, UptimeOptions};

/// The registered names of the built-in collectors, in registry order.
pub const BUILTIN_NAMES: [&str; 13] = [
    CgroupCollector::NAME,
    CpuCollector::NAME,
    DiskCollector::NAME,
    DisksCollector::NAME,
    FilesystemCollector::NAME,
    LoadCollector::NAME,
    MemoryCollector::NAME,
    NetworkCollector::NAME,
    PressureCollector::NAME,
    ProcessCollector::NAME,
    TcpCollector::NAME,
    TemperatureCollector::NAME,
    UptimeCollector::NAME,
];

fn add<O, C, F>(registry: &mut CollectorRegistry, name: &'static str, description: &str, build: F)
where
    O: DeserializeOwned + 'static,
    C: Collector + 'static,
    F: Fn(O) -> Result<C, CollectorError> + Send + Sync + 'static,
{
    registry.register(
        name,
        description,
        true,
        Box::new(move |table| {
            let options: O = parse_options(name, table)?;
            Ok(Box::new(build(options)?) as Box<dyn Collector>)
        }),
    );
}

/// Registers the built-in collectors into `registry` (all enabled by default),
/// replacing earlier registrations of the same names. Register your own
/// collectors after this call to override a built-in.
pub fn register_builtins(registry: &mut CollectorRegistry) {
    register_common(registry);
    #[cfg(target_os = "linux")]
    register_linux(registry);
    #[cfg(not(target_os = "linux"))]
    register_portable(registry);
}

/// The collectors that are the same on every OS (sysinfo's).
fn register_common(registry: &mut CollectorRegistry) {
    add(registry, MemoryCollector::NAME, "memory and swap", |o| {
        Ok(MemoryCollector::new(o))
    });
    add(
        registry,
        FilesystemCollector::NAME,
        "mounted real filesystems and their usage",
        FilesystemCollector::new,
    );
}

#[cfg(target_os = "linux")]
fn register_linux(registry: &mut CollectorRegistry) {
    add(
        registry,
        CpuCollector::NAME,
        "CPU utilisation, whole host and per core",
        |o| Ok(CpuCollector::new(o)),
    );
    add(
        registry,
        DiskCollector::NAME,
        "disk I/O of whole disks, cumulative and per second",
        DiskCollector::new,
    );
    add(
        registry,
        NetworkCollector::NAME,
        "network I/O, cumulative and per second, loopback excluded",
        NetworkCollector::new,
    );
    add(
        registry,
        LoadCollector::NAME,
        "load averages (1, 5, 15 minutes)",
        |o| Ok(LoadCollector::new(o)),
    );
    add(registry, UptimeCollector::NAME, "seconds since boot", |o| {
        Ok(UptimeCollector::new(o))
    });
    add(
        registry,
        ProcessCollector::NAME,
        "top processes by CPU and by memory (names only, never command lines)",
        ProcessCollector::new,
    );
    add(
        registry,
        PressureCollector::NAME,
        "pressure stall information (PSI)",
        |o| Ok(PressureCollector::new(o)),
    );
    add(
        registry,
        DisksCollector::NAME,
        "per block device I/O: IOPS, latency, utilisation",
        DisksCollector::new,
    );
    add(
        registry,
        TcpCollector::NAME,
        "TCP sockets per state and retransmits",
        TcpCollector::new,
    );
    add(
        registry,
        CgroupCollector::NAME,
        "top cgroups (services, containers, pods) by CPU and memory",
        CgroupCollector::new,
    );
    add(
        registry,
        TemperatureCollector::NAME,
        "temperature sensors (hwmon)",
        |o| Ok(TemperatureCollector::new(o)),
    );
}

#[cfg(not(target_os = "linux"))]
fn register_portable(registry: &mut CollectorRegistry) {
    use portable::*;
    add(
        registry,
        CpuCollector::NAME,
        "CPU utilisation, whole host and per core",
        |o| Ok(PortableCpuCollector::new(o)),
    );
    add(
        registry,
        DiskCollector::NAME,
        "disk I/O summed over volumes, cumulative and per second",
        PortableDiskCollector::new,
    );
    add(
        registry,
        NetworkCollector::NAME,
        "network I/O, cumulative and per second, loopback excluded",
        PortableNetworkCollector::new,
    );
    add(registry, UptimeCollector::NAME, "seconds since boot", |o| {
        Ok(PortableUptimeCollector::new(o))
    });
    add(
        registry,
        ProcessCollector::NAME,
        "top processes by CPU and by memory (names only, never command lines)",
        PortableProcessCollector::new,
    );
    #[cfg(not(windows))]
    add(
        registry,
        LoadCollector::NAME,
        "load averages (1, 5, 15 minutes)",
        |_: LoadOptions| Ok(PortableLoadCollector),
    );
    let linux_only: [(&'static str, &'static str, &'static str); 6] = [
        (
            PressureCollector::NAME,
            "pressure stall information (PSI)",
            "/proc/pressure",
        ),
        (
            DisksCollector::NAME,
            "per block device I/O (Linux only)",
            "/proc/diskstats",
        ),
        (
            TcpCollector::NAME,
            "TCP sockets per state (Linux only)",
            "sock_diag netlink",
        ),
        (
            CgroupCollector::NAME,
            "top cgroups (Linux only)",
            "/sys/fs/cgroup",
        ),
        (
            TemperatureCollector::NAME,
            "temperature sensors (Linux only)",
            "/sys/class/hwmon",
        ),
        (
            LoadCollector::NAME,
            "load averages (not on Windows)",
            "/proc/loadavg",
        ),
    ];
    for (name, description, source) in linux_only {
        if cfg!(not(windows)) && name == LoadCollector::NAME {
            continue;
        }
        registry.register(
            name,
            description,
            false,
            Box::new(move |_| Err(unsupported(name, source))),
        );
    }
}

/// A registry holding the built-in collectors under the names `cpu`, `memory`,
/// `disk`, `network`, `load`, `uptime`, `filesystems`, `processes`,
/// `pressure`, `disks`, `tcp`, `cgroups` and `temperatures`, all enabled by
/// default.
///
/// ```no_run
/// let collectors = sysmon_collectors::builtin_registry()
///     .build(&toml::from_str("[processes]\ntop_n = 10\n[filesystems]\nenabled = false").unwrap())
///     .unwrap();
/// assert_eq!(collectors.len(), 12);
/// ```
pub fn builtin_registry() -> CollectorRegistry {
    let mut registry = CollectorRegistry::new();
    register_builtins(&mut registry);
    registry
}
