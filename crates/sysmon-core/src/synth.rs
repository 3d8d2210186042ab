//! Realistic synthetic snapshots: for the load generator, benchmarks and tests.
//!
//! A [`SyntheticMachine`] keeps its own slowly drifting load, noise and
//! cumulative counters, so a stream of its snapshots looks like a real host.
//! It is deterministic for a given seed.

use crate::snapshot::*;

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Approximately standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..6).map(|_| self.unit()).sum::<f64>() - 3.0
    }
}

const PROCESS_NAMES: &[&str] = &[
    "postgres",
    "nginx",
    "java",
    "python3",
    "node",
    "redis-server",
    "sshd",
    "systemd",
    "containerd",
    "kubelet",
    "chrome",
    "rustc",
    "cargo",
    "bash",
    "journald",
    "dockerd",
];

/// One simulated host producing a plausible stream of snapshots.
#[derive(Debug, Clone)]
pub struct SyntheticMachine {
    machine_id: String,
    hostname: String,
    rng: Rng,
    cores: usize,
    base_cpu: f64,
    base_mem: f64,
    phase: f64,
    disk: DiskIo,
    net: NetworkIo,
    last_ts: Option<f64>,
    mem_total: u64,
}

impl SyntheticMachine {
    /// A machine named `machine_id` whose behaviour is fixed by `seed`.
    pub fn new(machine_id: impl Into<String>, seed: u64) -> Self {
        let machine_id = machine_id.into();
        let mut rng = Rng::new(seed);
        let cores = [2, 4, 8, 16][(rng.next_u64() % 4) as usize];
        SyntheticMachine {
            hostname: format!("{machine_id}.example"),
            machine_id,
            cores,
            base_cpu: 10.0 + rng.unit() * 40.0,
            base_mem: 30.0 + rng.unit() * 40.0,
            phase: rng.unit() * std::f64::consts::TAU,
            disk: DiskIo {
                read: rng.next_u64() % (1 << 36),
                write: rng.next_u64() % (1 << 36),
            },
            net: NetworkIo {
                sent: rng.next_u64() % (1 << 36),
                recv: rng.next_u64() % (1 << 36),
            },
            last_ts: None,
            mem_total: 16 << 30,
            rng,
        }
    }

    /// The machine's id.
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    /// The next snapshot at `timestamp`, with `processes` entries in each top list.
    pub fn next_snapshot(&mut self, timestamp: f64, processes: usize) -> Snapshot {
        let dt = self.last_ts.map_or(1.0, |t| (timestamp - t).max(0.001));
        self.last_ts = Some(timestamp);
        let r = &mut self.rng;
        let wave = (timestamp / 600.0 + self.phase).sin() * 10.0;
        let cpu = (self.base_cpu + wave + r.normal() * 3.0).clamp(0.0, 100.0);
        self.base_mem = (self.base_mem + r.normal() * 0.05).clamp(5.0, 95.0);
        let mem = (self.base_mem + r.normal() * 0.5).clamp(0.0, 100.0);
        let disk_read_rate = (2e6 + r.normal() * 5e5).max(0.0);
        let disk_write_rate = (4e6 + r.normal() * 1e6).max(0.0);
        let net_sent_rate = (1e6 + r.normal() * 2e5).max(0.0);
        let net_recv_rate = (3e6 + r.normal() * 5e5).max(0.0);
        self.disk.read += (disk_read_rate * dt) as u64;
        self.disk.write += (disk_write_rate * dt) as u64;
        self.net.sent += (net_sent_rate * dt) as u64;
        self.net.recv += (net_recv_rate * dt) as u64;
        let mut s = Snapshot::new(self.machine_id.clone(), timestamp);
        s.cpu_usage = cpu;
        s.memory_usage = mem;
        s.disk_io = self.disk;
        s.network_io = self.net;
        s.hostname = Some(self.hostname.clone());
        s.interval_secs = Some(dt);
        s.cpu_per_core = (0..self.cores)
            .map(|_| (cpu + r.normal() * 5.0).clamp(0.0, 100.0))
            .collect();
        s.load_avg = Some(LoadAvg {
            one: cpu / 100.0 * self.cores as f64,
            five: self.base_cpu / 100.0 * self.cores as f64,
            fifteen: self.base_cpu / 100.0 * self.cores as f64,
        });
        let used = (self.mem_total as f64 * mem / 100.0) as u64;
        s.memory = Some(Memory {
            total_bytes: self.mem_total,
            used_bytes: used,
            available_bytes: self.mem_total - used,
            swap_total_bytes: 2 << 30,
            swap_used_bytes: 1 << 26,
        });
        s.disk_rate = Some(IoRate {
            read: disk_read_rate,
            write: disk_write_rate,
        });
        s.network_rate = Some(NetworkRate {
            sent: net_sent_rate,
            recv: net_recv_rate,
        });
        s.filesystems = vec![Filesystem {
            mount_point: "/".into(),
            fs_type: "ext4".into(),
            total_bytes: 100 << 30,
            used_bytes: 40 << 30,
            available_bytes: 60 << 30,
        }];
        s.uptime_secs = Some(86_400 + timestamp as u64 % 100_000);
        let mut procs: Vec<ProcessInfo> = (0..processes)
            .map(|i| ProcessInfo {
                pid: 100 + i as u32 * 37,
                name: PROCESS_NAMES[i % PROCESS_NAMES.len()].to_string(),
                cpu_percent: (cpu / (i as f64 + 1.5) + r.unit()).max(0.0),
                memory_percent: Some(mem / (i as f64 + 2.0)),
                memory_bytes: Some((used as f64 / (i as f64 + 2.0)) as u64),
                ..ProcessInfo::default()
            })
            .collect();
        s.top_cpu_processes = procs.clone();
        procs.sort_by_key(|p| std::cmp::Reverse(p.memory_bytes));
        s.top_mem_processes = procs;
        // As a real agent publishes it.
        s.quantize();
        s
    }
}

/// Fills every host-detail field of `s` (pressure, disks, TCP, cgroups,
/// temperatures, open files, network errors, process details) with plausible
/// values derived from its CPU and memory figures: for tests and benches of
/// the storage and transport of those fields.
pub fn fill_host_details(s: &mut Snapshot) {
    let cpu = s.cpu_usage;
    let line = |avg: f64, total: u64| PressureLine {
        avg10: (avg * 100.0).round() / 100.0,
        avg60: (avg * 80.0).round() / 100.0,
        avg300: (avg * 50.0).round() / 100.0,
        total_us: total,
    };
    let stall = |avg: f64| PressureStall {
        some: line(avg, (avg * 1e6) as u64),
        full: Some(line(avg / 2.0, (avg * 5e5) as u64)),
    };
    s.pressure = Some(Pressure {
        cpu: Some(stall(cpu / 4.0)),
        memory: Some(stall(s.memory_usage / 50.0)),
        io: Some(stall(1.5)),
    });
    s.disks = vec![BlockDevice {
        name: "nvme0n1".into(),
        read_ops: s.disk_io.read / 4096,
        write_ops: s.disk_io.write / 4096,
        read_bytes: s.disk_io.read,
        write_bytes: s.disk_io.write,
        read_time_ms: s.disk_io.read / 400_000,
        write_time_ms: s.disk_io.write / 300_000,
        in_flight: 2,
        io_time_ms: s.disk_io.write / 500_000,
        read_iops: Some(120.0),
        write_iops: Some((cpu * 3.0).round()),
        read_latency_ms: Some(0.25),
        write_latency_ms: Some(1.5),
        utilization_percent: Some((cpu / 2.0).round()),
    }];
    s.tcp = Some(Tcp {
        v4: TcpStates {
            established: 120 + cpu as u64,
            time_wait: 35,
            close_wait: 2,
            listen: 12,
            ..TcpStates::default()
        },
        v6: TcpStates {
            established: 8,
            listen: 6,
            ..TcpStates::default()
        },
        out_segs: s.network_io.sent / 1400,
        retrans_segs: s.network_io.sent / 1_400_000,
        retransmits_per_sec: Some(0.5),
        retransmit_percent: Some(0.1),
    });
    let group = |path: &str, name: &str, kind: CgroupKind, cpu: f64, mem: u64| CgroupInfo {
        path: path.into(),
        name: name.into(),
        kind,
        cpu_percent: cpu,
        memory_bytes: mem,
        memory_limit_bytes: Some(2 << 30),
        pids: Some(17),
        io_read_bytes_per_sec: Some(0.0),
        io_write_bytes_per_sec: Some(4096.0),
        pressure: s.pressure,
    };
    s.top_cpu_cgroups = vec![
        group(
            "/system.slice/docker-3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a.scope",
            "3f1c2b9a8d7e",
            CgroupKind::Docker,
            (cpu * 1.5 * 100.0).round() / 100.0,
            900 << 20,
        ),
        group(
            "/system.slice/postgresql.service",
            "postgresql",
            CgroupKind::SystemdService,
            (cpu * 0.4 * 100.0).round() / 100.0,
            1536 << 20,
        ),
    ];
    let mut by_mem = s.top_cpu_cgroups.clone();
    by_mem.reverse();
    s.top_mem_cgroups = by_mem;
    s.temperatures = vec![Temperature {
        label: "coretemp Package id 0".into(),
        celsius: (40.0 + cpu / 4.0).round(),
        critical_celsius: Some(100.0),
    }];
    s.open_files = Some(OpenFiles {
        allocated: 3_000,
        max: 9_223_372_036_854_775_807,
    });
    s.network_errors = Some(NetworkErrors {
        rx_errors: 1,
        tx_errors: 0,
        rx_dropped: 42,
        tx_dropped: 0,
    });
    for p in s
        .top_cpu_processes
        .iter_mut()
        .chain(s.top_mem_processes.iter_mut())
    {
        p.threads = Some(1 + p.pid % 9);
        p.state = Some(if p.cpu_percent > 1.0 { "R" } else { "S" }.into());
        p.open_fds = Some(8 + p.pid % 100);
        p.user = Some(if p.pid % 2 == 0 { "root" } else { "www-data" }.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::validate;

    #[test]
    fn synthetic_snapshots_are_valid_and_counters_grow() {
        let mut m = SyntheticMachine::new("m1", 42);
        let mut prev = m.next_snapshot(1_764_086_400.0, 10);
        for i in 1..500 {
            let s = m.next_snapshot(1_764_086_400.0 + i as f64, 10);
            validate(&s).unwrap();
            assert!(s.disk_io.read >= prev.disk_io.read);
            assert!(s.network_io.recv >= prev.network_io.recv);
            prev = s;
        }
    }

    #[test]
    fn quantized_values_print_short() {
        let s = SyntheticMachine::new("m", 5).next_snapshot(1_764_086_400.0, 3);
        let json = String::from_utf8(crate::codec::encode_json(&s)).unwrap();
        let cpu = serde_json::to_string(&s.cpu_usage).unwrap();
        assert!(cpu.len() <= 6, "{cpu}");
        assert!(json.len() < 1500, "{} bytes", json.len());
    }

    #[test]
    fn same_seed_same_stream() {
        let a = SyntheticMachine::new("m", 9).next_snapshot(1_764_086_400.0, 3);
        let b = SyntheticMachine::new("m", 9).next_snapshot(1_764_086_400.0, 3);
        assert_eq!(a, b);
    }
}
