//! The collectors of the legacy message's fields outside Linux (Windows,
//! macOS), on sysinfo and the OS's own APIs where sysinfo falls short.
//!
//! On Linux the `/proc` collectors of the other modules run (they are faster
//! and fill more); [`register_builtins`](crate::register_builtins) picks these
//! under the same names and with the same options elsewhere, so one
//! configuration file serves every OS.
//!
//! | name        | Windows source                                   | macOS source |
//! |-------------|--------------------------------------------------|--------------|
//! | `cpu`       | `GetSystemTimes` (host), `NtQuerySystemInformation` (per core) | sysinfo |
//! | `disk`      | sysinfo (`IOCTL_DISK_PERFORMANCE` per volume)    | sysinfo (IOKit) |
//! | `network`   | sysinfo (`GetIfTable2`)                          | sysinfo |
//! | `uptime`    | sysinfo (`GetTickCount64`)                       | sysinfo |
//! | `processes` | sysinfo (process snapshot, `GetProcessTimes`)    | sysinfo |
//!
//! sysinfo's own CPU usage is not used on Windows: it goes through PDH
//! (`PdhEnumObjectsA`), which is slow to open and which Wine does not implement
//! (the call aborts the process there). Fields an OS cannot provide stay absent
//! (`None`, empty), never zero: see docs/wire-format.md.

use std::collections::HashMap;
use std::time::Instant;

use sysinfo::{
    DiskRefreshKind, Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System,
    UpdateKind,
};
use sysmon_core::{Collector, CollectorError, IoRate, NetworkRate, ProcessInfo, Snapshot};

use crate::processes::{select_top, ProcessSample, TopBy, MAX_TOP_N};
use crate::util::{check_patterns, matches_any, PairCounters};
use crate::{CpuOptions, DiskOptions, NetworkOptions, ProcessOptions, UptimeOptions};

/// Busy and total time of one CPU (or of all), in any unit, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusyTotal {
    /// Time not idle.
    pub busy: u64,
    /// All time accounted.
    pub total: u64,
}

impl BusyTotal {
    /// Percent busy between `earlier` and `self`, 0..=100; 0 when no time passed.
    pub fn usage_since(&self, earlier: &BusyTotal) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy).min(total);
        busy as f64 * 100.0 / total as f64
    }

    /// From Windows' idle, kernel and user times (kernel time includes idle time).
    pub fn from_windows_times(idle: u64, kernel: u64, user: u64) -> BusyTotal {
        let total = kernel.saturating_add(user);
        BusyTotal {
            busy: total.saturating_sub(idle),
            total,
        }
    }
}

/// Whole-host and per-core CPU times from the OS.
#[cfg(windows)]
mod os_cpu {
    use super::BusyTotal;
    use sysmon_core::CollectorError;
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::GetSystemTimes;

    /// `SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION` (100 ns units).
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct ProcessorTimes {
        idle: i64,
        kernel: i64,
        user: i64,
        dpc: i64,
        interrupt: i64,
        interrupt_count: u32,
    }

    const SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION: u32 = 8;

    #[link(name = "ntdll")]
    extern "system" {
        fn NtQuerySystemInformation(
            class: u32,
            info: *mut core::ffi::c_void,
            len: u32,
            ret_len: *mut u32,
        ) -> i32;
    }

    fn ft(t: FILETIME) -> u64 {
        (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
    }

    /// Whole host, from `GetSystemTimes`.
    pub fn host() -> Result<BusyTotal, CollectorError> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut idle, mut kernel, mut user) = (zero, zero, zero);
        // SAFETY: three valid out-pointers to FILETIMEs.
        let ok = unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) };
        if ok == 0 {
            return Err(CollectorError::Io {
                what: "GetSystemTimes".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(BusyTotal::from_windows_times(
            ft(idle),
            ft(kernel),
            ft(user),
        ))
    }

    /// Per logical core, from `NtQuerySystemInformation`, into `out`.
    pub fn cores(out: &mut Vec<BusyTotal>) -> Result<(), CollectorError> {
        // At most 64 cores per processor group are reported to a process.
        let mut buf = [ProcessorTimes::default(); 64];
        let mut len = 0u32;
        // SAFETY: `buf` is valid for writes of the length passed.
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION,
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf) as u32,
                &mut len,
            )
        };
        if status < 0 {
            return Err(CollectorError::Failed(format!(
                "NtQuerySystemInformation(SystemProcessorPerformanceInformation) failed: NTSTATUS {status:#x}"
            )));
        }
        let n = (len as usize / std::mem::size_of::<ProcessorTimes>()).min(buf.len());
        out.clear();
        out.extend(buf[..n].iter().map(|p| {
            BusyTotal::from_windows_times(
                u64::try_from(p.idle).unwrap_or(0),
                u64::try_from(p.kernel).unwrap_or(0),
                u64::try_from(p.user).unwrap_or(0),
            )
        }));
        Ok(())
    }
}

/// Fills `cpu_usage` and `cpu_per_core` outside Linux.
pub struct PortableCpuCollector {
    per_core: bool,
    #[cfg(windows)]
    last: Option<(BusyTotal, Vec<BusyTotal>)>,
    #[cfg(windows)]
    scratch: Vec<BusyTotal>,
    #[cfg(not(windows))]
    system: System,
}

impl PortableCpuCollector {
    /// A collector with `options`, primed so the first interval has a baseline.
    pub fn new(options: CpuOptions) -> Self {
        #[cfg(windows)]
        {
            let mut c = PortableCpuCollector {
                per_core: options.per_core,
                last: None,
                scratch: Vec::new(),
            };
            let _ = c.read();
            c
        }
        #[cfg(not(windows))]
        {
            let mut system = System::new();
            system.refresh_cpu_usage();
            PortableCpuCollector {
                per_core: options.per_core,
                system,
            }
        }
    }

    #[cfg(windows)]
    fn read(&mut self) -> Result<Option<(f64, Vec<f64>)>, CollectorError> {
        let host = os_cpu::host()?;
        let mut cores = Vec::new();
        if self.per_core {
            os_cpu::cores(&mut self.scratch)?;
            cores.clone_from(&self.scratch);
        }
        let result = self.last.as_ref().map(|(h, c)| {
            let per_core = if c.len() == cores.len() {
                cores
                    .iter()
                    .zip(c)
                    .map(|(now, then)| now.usage_since(then))
                    .collect()
            } else {
                Vec::new()
            };
            (host.usage_since(h), per_core)
        });
        self.last = Some((host, cores));
        Ok(result)
    }
}

impl Collector for PortableCpuCollector {
    fn name(&self) -> &str {
        crate::CpuCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        #[cfg(windows)]
        {
            match self.read()? {
                Some((host, cores)) => {
                    snapshot.cpu_usage = host;
                    snapshot.cpu_per_core = cores;
                    Ok(())
                }
                None => Err(CollectorError::Failed(
                    "no earlier CPU reading yet (the first one failed)".into(),
                )),
            }
        }
        #[cfg(not(windows))]
        {
            self.system.refresh_cpu_usage();
            snapshot.cpu_usage = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
            if self.per_core {
                snapshot.cpu_per_core = self
                    .system
                    .cpus()
                    .iter()
                    .map(|c| f64::from(c.cpu_usage()).clamp(0.0, 100.0))
                    .collect();
            }
            Ok(())
        }
    }
}

/// Fills `disk_io` and `disk_rate` outside Linux: read and written bytes
/// summed over the volumes sysinfo lists (Windows: `IOCTL_DISK_PERFORMANCE`).
pub struct PortableDiskCollector {
    options: DiskOptions,
    disks: Disks,
    counters: PairCounters,
}

impl PortableDiskCollector {
    /// A collector with `options` (`exclude_devices` matches volume names and
    /// mount points, e.g. `"D:\\"`).
    pub fn new(options: DiskOptions) -> Result<Self, CollectorError> {
        check_patterns(
            crate::DiskCollector::NAME,
            "exclude_devices",
            &options.exclude_devices,
        )?;
        let mut c = PortableDiskCollector {
            options,
            disks: Disks::new(),
            counters: PairCounters::default(),
        };
        let _ = c.sample();
        Ok(c)
    }

    fn sample(&mut self) -> Result<crate::util::PairSample, CollectorError> {
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_io_usage());
        let excluded = &self.options.exclude_devices;
        let volumes: Vec<(String, [u64; 2])> = self
            .disks
            .list()
            .iter()
            .filter(|d| {
                let name = d.name().to_string_lossy();
                let mount = d.mount_point().to_string_lossy();
                !matches_any(excluded, &name) && !matches_any(excluded, &mount)
            })
            .map(|d| {
                let u = d.usage();
                (
                    d.mount_point().to_string_lossy().into_owned(),
                    [u.total_read_bytes, u.total_written_bytes],
                )
            })
            .collect();
        if volumes.is_empty() {
            return Err(CollectorError::Failed("no disk volume listed".into()));
        }
        if volumes.iter().all(|(_, v)| *v == [0, 0]) {
            // A volume in use has read something since boot: all zeros means the
            // counters are not available (diskperf off, or Wine).
            return Err(CollectorError::Failed(format!(
                "no I/O counters for any of {} disk volumes (IOCTL_DISK_PERFORMANCE unavailable)",
                volumes.len()
            )));
        }
        self.counters.sample(
            volumes
                .iter()
                .map(|(n, v)| Ok::<_, CollectorError>((n.as_str(), *v))),
        )
    }
}

impl Collector for PortableDiskCollector {
    fn name(&self) -> &str {
        crate::DiskCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let ([read, write], rate) = self.sample()?;
        snapshot.disk_io = sysmon_core::DiskIo { read, write };
        snapshot.disk_rate = rate.map(|([r, w], secs)| IoRate {
            read: r as f64 / secs,
            write: w as f64 / secs,
        });
        Ok(())
    }
}

/// Whether an interface is the loopback one by its name on Windows
/// (`Loopback Pseudo-Interface 1`) or macOS (`lo0`).
pub fn is_loopback_name(name: &str) -> bool {
    name.starts_with("Loopback") || name == "lo0" || name == "lo"
}

/// Fills `network_io` and `network_rate` outside Linux (loopback excluded).
/// `network_errors` stays absent: sysinfo has no drop counters.
pub struct PortableNetworkCollector {
    options: NetworkOptions,
    networks: Networks,
    counters: PairCounters,
}

impl PortableNetworkCollector {
    /// A collector with `options`.
    pub fn new(options: NetworkOptions) -> Result<Self, CollectorError> {
        check_patterns(
            crate::NetworkCollector::NAME,
            "exclude_interfaces",
            &options.exclude_interfaces,
        )?;
        let mut c = PortableNetworkCollector {
            options,
            networks: Networks::new(),
            counters: PairCounters::default(),
        };
        let _ = c.sample();
        Ok(c)
    }

    fn sample(&mut self) -> Result<crate::util::PairSample, CollectorError> {
        self.networks.refresh(true);
        if self.networks.list().is_empty() {
            // Zero traffic would be a lie: say that nothing could be read.
            return Err(CollectorError::Failed(
                "the OS lists no network interface (sysinfo keeps the connected hardware ones)"
                    .into(),
            ));
        }
        let excluded = &self.options.exclude_interfaces;
        let interfaces = self
            .networks
            .iter()
            .filter(|(name, _)| !is_loopback_name(name) && !matches_any(excluded, name))
            .map(|(name, data)| {
                Ok::<_, CollectorError>((
                    name.as_str(),
                    [data.total_transmitted(), data.total_received()],
                ))
            });
        self.counters.sample(interfaces)
    }
}

impl Collector for PortableNetworkCollector {
    fn name(&self) -> &str {
        crate::NetworkCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let ([sent, recv], rate) = self.sample()?;
        snapshot.network_io = sysmon_core::NetworkIo { sent, recv };
        snapshot.network_rate = rate.map(|([s, r], secs)| NetworkRate {
            sent: s as f64 / secs,
            recv: r as f64 / secs,
        });
        Ok(())
    }
}

/// Fills `uptime_secs` outside Linux.
#[derive(Debug, Default)]
pub struct PortableUptimeCollector;

impl PortableUptimeCollector {
    /// A collector with `options`.
    pub fn new(_options: UptimeOptions) -> Self {
        PortableUptimeCollector
    }
}

impl Collector for PortableUptimeCollector {
    fn name(&self) -> &str {
        crate::UptimeCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        match System::uptime() {
            0 => Err(CollectorError::Failed("the OS reports no uptime".into())),
            s => {
                snapshot.uptime_secs = Some(s);
                Ok(())
            }
        }
    }
}

/// Fills `load_avg` on Unix systems other than Linux (macOS, the BSDs), from
/// `getloadavg` through sysinfo. Windows has no load average: there the `load`
/// collector is not available and `load_avg` stays absent.
#[derive(Debug, Default)]
pub struct PortableLoadCollector;

impl Collector for PortableLoadCollector {
    fn name(&self) -> &str {
        crate::LoadCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let l = System::load_average();
        snapshot.load_avg = Some(sysmon_core::LoadAvg {
            one: l.one,
            five: l.five,
            fifteen: l.fifteen,
        });
        Ok(())
    }
}

/// Fills `top_cpu_processes` and `top_mem_processes` outside Linux: pid,
/// name (the executable's, never the command line), CPU in percent of one core
/// over the interval (like `top`), resident memory in bytes and percent.
/// Threads, state, open descriptors, user and `open_files` stay absent.
pub struct PortableProcessCollector {
    top_n: usize,
    system: System,
    /// Accumulated CPU milliseconds per pid at the previous scan.
    cpu_ms: HashMap<u32, u64>,
    last_scan: Option<Instant>,
    samples: Vec<ProcessSample>,
}

impl PortableProcessCollector {
    /// A collector with `options`, primed with a first scan.
    pub fn new(options: ProcessOptions) -> Result<Self, CollectorError> {
        if !(1..=MAX_TOP_N).contains(&options.top_n) {
            return Err(CollectorError::Config {
                name: crate::ProcessCollector::NAME.to_string(),
                message: format!(
                    "`top_n` must be between 1 and {MAX_TOP_N}, not {} (to collect no processes, set `enabled = false`)",
                    options.top_n
                ),
            });
        }
        let mut c = PortableProcessCollector {
            top_n: options.top_n,
            system: System::new(),
            cpu_ms: HashMap::new(),
            last_scan: None,
            samples: Vec::new(),
        };
        c.scan();
        Ok(c)
    }

    /// Refreshes the processes and rebuilds the samples; returns how many.
    fn scan(&mut self) -> usize {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_exe(UpdateKind::Never),
        );
        let now = Instant::now();
        let elapsed_ms = self
            .last_scan
            .replace(now)
            .map(|t| now.duration_since(t).as_secs_f64() * 1000.0)
            .filter(|ms| *ms > 0.0);
        self.samples.clear();
        let mut seen = HashMap::with_capacity(self.cpu_ms.len());
        for (pid, p) in self.system.processes() {
            let pid = pid.as_u32();
            let cpu = p.accumulated_cpu_time();
            let cpu_percent = match (self.cpu_ms.get(&pid), elapsed_ms) {
                (Some(before), Some(ms)) => cpu.saturating_sub(*before) as f64 * 100.0 / ms,
                _ => 0.0,
            };
            seen.insert(pid, cpu);
            self.samples.push(ProcessSample {
                pid,
                cpu_percent,
                memory_bytes: p.memory(),
            });
        }
        self.cpu_ms = seen;
        self.samples.len()
    }

    fn list(&self, n: usize, total_memory: Option<u64>) -> Vec<ProcessInfo> {
        self.samples[..n]
            .iter()
            .map(|s| ProcessInfo {
                pid: s.pid,
                name: self
                    .system
                    .process(Pid::from_u32(s.pid))
                    .map(|p| p.name().to_string_lossy().into_owned())
                    .unwrap_or_default(),
                cpu_percent: s.cpu_percent,
                memory_percent: total_memory
                    .map(|t| (s.memory_bytes as f64 * 100.0 / t as f64).clamp(0.0, 100.0)),
                memory_bytes: Some(s.memory_bytes),
                threads: None,
                state: None,
                open_fds: None,
                user: None,
            })
            .collect()
    }
}

impl Collector for PortableProcessCollector {
    fn name(&self) -> &str {
        crate::ProcessCollector::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        if self.scan() == 0 {
            return Err(CollectorError::Failed("no process listed by the OS".into()));
        }
        let total_memory = snapshot
            .memory
            .map(|m| m.total_bytes)
            .filter(|t| *t > 0)
            .or_else(|| {
                self.system.refresh_memory();
                Some(self.system.total_memory()).filter(|t| *t > 0)
            });
        let n = select_top(&mut self.samples, self.top_n, TopBy::Cpu).len();
        snapshot.top_cpu_processes = self.list(n, total_memory);
        let n = select_top(&mut self.samples, self.top_n, TopBy::Memory).len();
        snapshot.top_mem_processes = self.list(n, total_memory);
        Ok(())
    }
}

/// The builder of a collector this OS cannot run: a clear configuration
/// error naming the OS when it is enabled.
pub fn unsupported(name: &str, source: &str) -> CollectorError {
    CollectorError::Config {
        name: name.to_string(),
        message: format!(
            "not available on {}: it reads {source}, which only Linux has (set `enabled = false`)",
            std::env::consts::OS
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_times_count_kernel_minus_idle_as_busy() {
        // kernel 600 (of which idle 500), user 400: busy 500 of 1000.
        let a = BusyTotal::from_windows_times(0, 0, 0);
        let b = BusyTotal::from_windows_times(500, 600, 400);
        assert_eq!(b.usage_since(&a), 50.0);
        assert_eq!(b.usage_since(&b), 0.0);
        // Counters going backwards never give a negative or >100 figure.
        assert_eq!(a.usage_since(&b), 0.0);
        let odd = BusyTotal {
            busy: 900,
            total: 100,
        };
        assert_eq!(odd.usage_since(&a), 100.0);
    }

    #[test]
    fn loopback_names_of_each_os() {
        assert!(is_loopback_name("Loopback Pseudo-Interface 1"));
        assert!(is_loopback_name("lo0"));
        assert!(!is_loopback_name("Ethernet"));
        assert!(!is_loopback_name("local-bridge"));
    }

    #[test]
    fn portable_collectors_fill_the_legacy_fields_on_this_host() {
        // sysinfo works on Linux too: run the portable collectors here, so
        // their code is exercised by the Linux suite as well as under Wine.
        let mut snapshot = Snapshot::default();
        let mut cpu = PortableCpuCollector::new(CpuOptions::default());
        let mut procs = PortableProcessCollector::new(ProcessOptions { top_n: 3 }).unwrap();
        let mut net = PortableNetworkCollector::new(NetworkOptions::default()).unwrap();
        let mut up = PortableUptimeCollector::new(UptimeOptions::default());
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        // Burn some CPU in this process so the top list has a busy entry.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert_ne!(x, 1);
        cpu.collect(&mut snapshot).unwrap();
        procs.collect(&mut snapshot).unwrap();
        net.collect(&mut snapshot).unwrap();
        up.collect(&mut snapshot).unwrap();
        assert!((0.0..=100.0).contains(&snapshot.cpu_usage));
        assert!(!snapshot.cpu_per_core.is_empty());
        assert_eq!(snapshot.top_cpu_processes.len(), 3);
        assert_eq!(snapshot.top_mem_processes.len(), 3);
        let mem = &snapshot.top_mem_processes;
        assert!(mem
            .windows(2)
            .all(|w| w[0].memory_bytes >= w[1].memory_bytes));
        let cpu_list = &snapshot.top_cpu_processes;
        assert!(cpu_list
            .windows(2)
            .all(|w| w[0].cpu_percent >= w[1].cpu_percent));
        assert!(cpu_list.iter().chain(mem).all(|p| !p.name.is_empty()
            && p.threads.is_none()
            && p.user.is_none()
            && p.memory_percent.is_some()));
        // A busy kernel thread can be among the top by CPU with no memory of
        // its own; the top by memory all hold some.
        assert!(mem.iter().all(|p| p.memory_bytes.unwrap_or(0) > 0));
        assert!(snapshot.network_rate.is_some());
        assert!(snapshot.uptime_secs.unwrap_or(0) > 0);
    }
}
