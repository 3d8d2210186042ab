//! The collectors on this Linux machine, checked against what `/proc` says.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sysmon_collectors::*;
use sysmon_core::{Collector, Snapshot};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// psutil's virtual_memory().percent from /proc/meminfo.
fn meminfo_percent() -> f64 {
    let text = read("/proc/meminfo");
    let kb = |key: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let total = kb("MemTotal:");
    (total - kb("MemAvailable:")) / total * 100.0
}

#[test]
fn memory_agrees_with_proc_meminfo() {
    let mut c = MemoryCollector::default();
    let mut s = Snapshot::default();
    let before = meminfo_percent();
    c.collect(&mut s).unwrap();
    let after = meminfo_percent();
    let lo = before.min(after) - 1.0;
    let hi = before.max(after) + 1.0;
    assert!(
        (lo..=hi).contains(&s.memory_usage),
        "{} vs {before}..{after}",
        s.memory_usage
    );
    let m = s.memory.unwrap();
    let total_kb: u64 = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(m.total_bytes, total_kb * 1024);
    assert_eq!(m.used_bytes + m.available_bytes, m.total_bytes);
    assert!(m.swap_used_bytes <= m.swap_total_bytes);
}

#[test]
fn cpu_total_and_one_figure_per_core() {
    let mut c = CpuCollector::default();
    // burn a little so the interval is not idle
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        std::hint::black_box(0u64);
    }
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    assert!((0.0..=100.0).contains(&s.cpu_usage), "{}", s.cpu_usage);
    assert!(s.cpu_usage > 0.0, "300 ms of busy loop must show");
    let cores = read("/proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    assert_eq!(s.cpu_per_core.len(), cores);
    assert!(
        s.cpu_per_core.iter().all(|v| (0.0..=100.0).contains(v)),
        "{:?}",
        s.cpu_per_core
    );

    let mut no_cores = CpuCollector::new(CpuOptions { per_core: false });
    std::thread::sleep(Duration::from_millis(50));
    no_cores.collect(&mut Snapshot::default()).unwrap();
    let mut s = Snapshot::default();
    no_cores.collect(&mut s).unwrap();
    assert!(s.cpu_per_core.is_empty());
}

fn lo_bytes() -> u64 {
    let text = read("/proc/net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap();
    let f: Vec<u64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    f[0] + f[8]
}

#[test]
fn loopback_traffic_is_not_counted() {
    const BYTES: usize = 64 << 20;
    let mut c = NetworkCollector::new(NetworkOptions::default()).unwrap();
    let mut before = Snapshot::default();
    c.collect(&mut before).unwrap();
    let lo_before = lo_bytes();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < BYTES {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
        }
    });
    let mut out = TcpStream::connect(addr).unwrap();
    let chunk = vec![7u8; 1 << 16];
    for _ in 0..BYTES / chunk.len() {
        out.write_all(&chunk).unwrap();
    }
    sink.join().unwrap();

    let mut after = Snapshot::default();
    c.collect(&mut after).unwrap();
    // The traffic did go over lo (so this test can fail)...
    assert!(lo_bytes() - lo_before >= 2 * BYTES as u64);
    // ...and none of it is in network_io (other traffic on this host is far less).
    let grown = (after.network_io.sent + after.network_io.recv)
        .saturating_sub(before.network_io.sent + before.network_io.recv);
    assert!(grown < BYTES as u64 / 2, "network_io grew by {grown} bytes");
    let rate = after.network_rate.unwrap();
    assert!(rate.sent >= 0.0 && rate.recv >= 0.0 && rate.sent.is_finite());

    // With loopback included, the same traffic shows.
    let mut with_lo = NetworkCollector::new(NetworkOptions {
        exclude_interfaces: vec![],
    })
    .unwrap();
    let mut s = Snapshot::default();
    with_lo.collect(&mut s).unwrap();
    assert!(s.network_io.sent >= after.network_io.sent + BYTES as u64);
}

#[test]
fn disk_writes_are_counted_once() {
    let mut c = DiskCollector::new(DiskOptions::default()).unwrap();
    let mut before = Snapshot::default();
    c.collect(&mut before).unwrap();
    // 16 MiB written and flushed to a file under target/ (a real disk, not tmpfs)
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("disk-{}.bin", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![1u8; 1 << 20];
        for _ in 0..16 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    std::fs::remove_file(&path).unwrap();
    let mut after = Snapshot::default();
    c.collect(&mut after).unwrap();
    let grown = after.disk_io.write - before.disk_io.write;
    assert!(grown >= 16 << 20, "disk_io.write grew by {grown}");
    assert!(after.disk_io.read >= before.disk_io.read);
    let rate = after.disk_rate.unwrap();
    assert!(
        rate.write > 0.0 && rate.write.is_finite() && rate.read >= 0.0,
        "{rate:?}"
    );

    // Cumulative counters never exceed the sum over all block devices listed
    // (partitions and virtual devices would be double counting).
    let all_sectors: u64 = read("/proc/diskstats")
        .lines()
        .map(|l| l.split_whitespace().nth(9).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(after.disk_io.write <= all_sectors * 512 + (64 << 20));
}

#[test]
fn load_and_uptime_match_proc() {
    let mut s = Snapshot::default();
    LoadCollector::default().collect(&mut s).unwrap();
    UptimeCollector::default().collect(&mut s).unwrap();
    let load: Vec<f64> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    let l = s.load_avg.unwrap();
    assert!(
        (l.one - load[0]).abs() < 0.5 && (l.fifteen - load[2]).abs() < 0.5,
        "{l:?} vs {load:?}"
    );
    let up: f64 = read("/proc/uptime")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let got = s.uptime_secs.unwrap() as f64;
    assert!((up - got).abs() < 3.0, "{got} vs {up}");
}

#[test]
fn filesystems_are_real_mounts_once_each() {
    let mut c = FilesystemCollector::new(FilesystemOptions::default()).unwrap();
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    let mounts = read("/proc/self/mounts");
    let entries: Vec<(&str, &str, &str)> = mounts
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1], f[2])
        })
        .collect();
    let root = entries.iter().rev().find(|e| e.1 == "/").unwrap();
    if !filesystems::DEFAULT_EXCLUDED_FS_TYPES.contains(&root.2) {
        assert!(
            s.filesystems.iter().any(|f| f.mount_point == "/"),
            "{:?}",
            s.filesystems
        );
    }
    let mut devices = Vec::new();
    for f in &s.filesystems {
        assert!(
            !filesystems::DEFAULT_EXCLUDED_FS_TYPES.contains(&f.fs_type.as_str()),
            "{f:?}"
        );
        assert!(f.total_bytes > 0 && f.used_bytes <= f.total_bytes, "{f:?}");
        assert_eq!(f.used_bytes + f.available_bytes, f.total_bytes);
        let e = entries
            .iter()
            .find(|e| e.1 == f.mount_point)
            .unwrap_or_else(|| panic!("{f:?} not mounted"));
        devices.push(e.0);
    }
    let n = devices.len();
    devices.sort();
    devices.dedup();
    assert_eq!(
        devices.len(),
        n,
        "a device reported twice: {:?}",
        s.filesystems
    );
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

#[test]
fn top_processes_find_a_busy_process_by_its_name() {
    let mut c = ProcessCollector::new(ProcessOptions { top_n: 20 }).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::black_box(0u64);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    burner.join().unwrap();

    for list in [&s.top_cpu_processes, &s.top_mem_processes] {
        assert!(!list.is_empty() && list.len() <= 20);
        for p in list.iter() {
            assert!(p.cpu_percent >= 0.0 && p.cpu_percent <= 100.0 * 4096.0);
            let m = p.memory_percent.unwrap();
            assert!((0.0..=100.0).contains(&m));
            // the kernel's comm, never a command line
            if let Some(name) = comm(p.pid) {
                assert_eq!(p.name, name, "pid {}", p.pid);
            }
            // user processes' comm is at most 15 bytes (kernel threads' may be longer)
            if p.memory_bytes.unwrap() > 0 {
                assert!(p.name.len() <= 15, "{:?}", p.name);
            }
        }
    }
    assert!(s
        .top_cpu_processes
        .windows(2)
        .all(|w| w[0].cpu_percent >= w[1].cpu_percent));
    assert!(s
        .top_mem_processes
        .windows(2)
        .all(|w| w[0].memory_bytes >= w[1].memory_bytes));
    let me = std::process::id();
    let mine = s
        .top_cpu_processes
        .iter()
        .find(|p| p.pid == me)
        .unwrap_or_else(|| {
            panic!(
                "this busy process ({me}) is not in {:?}",
                s.top_cpu_processes
            )
        });
    assert_eq!(mine.name, comm(me).unwrap());
    // one thread busy for the whole interval: about 100 % of one core, like top
    // (less when other builds share the 2 cores)
    assert!(
        mine.cpu_percent > 25.0 && mine.cpu_percent < 130.0,
        "{}",
        mine.cpu_percent
    );
    let rss_kb: u64 = read("/proc/self/status")
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    if let Some(mine) = s.top_mem_processes.iter().find(|p| p.pid == me) {
        let bytes = mine.memory_bytes.unwrap() as f64;
        assert!((bytes - rss_kb as f64 * 1024.0).abs() < 16.0 * 1024.0 * 1024.0);
    }
}

#[test]
fn registry_names_defaults_and_options() {
    let r = builtin_registry();
    let names: Vec<&str> = r.list().map(|(n, _, _)| n).collect();
    let mut expected = vec![
        "cpu",
        "memory",
        "disk",
        "network",
        "load",
        "uptime",
        "filesystems",
        "processes",
        "pressure",
        "disks",
        "tcp",
        "cgroups",
        "temperatures",
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(names, BUILTIN_NAMES.to_vec());
    assert!(r
        .list()
        .all(|(_, desc, enabled)| enabled && !desc.is_empty()));

    let built = r.build(&BTreeMap::new()).unwrap();
    assert_eq!(built.iter().map(|c| c.name()).collect::<Vec<_>>(), expected);

    let cfg = |s: &str| -> BTreeMap<String, toml::Table> { toml::from_str(s).unwrap() };
    let built = r
        .build(&cfg("[processes]\nenabled = false\n[filesystems]\nenabled = false\nexclude_mount_points = [\"/boot*\"]"))
        .unwrap();
    let got: Vec<&str> = built.iter().map(|c| c.name()).collect();
    assert_eq!(
        got,
        vec![
            "cgroups",
            "cpu",
            "disk",
            "disks",
            "load",
            "memory",
            "network",
            "pressure",
            "tcp",
            "temperatures",
            "uptime"
        ]
    );

    for (bad, what) in [
        ("[processes]\ntop = 3", "collector `processes`"),
        ("[processes]\ntop_n = 0", "top_n"),
        ("[processes]\ntop_n = \"five\"", "collector `processes`"),
        ("[memory]\nunit = \"kB\"", "collector `memory`"),
        (
            "[network]\nexclude_interfaces = \"lo\"",
            "collector `network`",
        ),
        (
            "[network]\nexclude_interfaces = [\"*lo\"]",
            "exclude_interfaces",
        ),
        ("[cpu]\nper_core = 1", "collector `cpu`"),
        ("[disk]\nexclude_device = []", "collector `disk`"),
        ("[load]\nx = 1", "collector `load`"),
        ("[uptime]\nx = 1", "collector `uptime`"),
        (
            "[filesystems]\nexclude_fs_type = []",
            "collector `filesystems`",
        ),
        ("[gpu]", "unknown collector `gpu`"),
        ("[pressure]\npaths = []", "collector `pressure`"),
        ("[disks]\npartition = true", "collector `disks`"),
        ("[tcp]\nmode = \"ss\"", "collector `tcp`"),
        ("[cgroups]\ntop_n = 0", "top_n"),
        ("[cgroups]\nroots = []", "collector `cgroups`"),
        ("[temperatures]\nunit = \"F\"", "collector `temperatures`"),
    ] {
        let err = r
            .build(&cfg(bad))
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.to_string().contains(what), "{bad}: {err}");
    }
    let ok = r.build(&cfg("[processes]\ntop_n = 10\n[network]\nexclude_interfaces = [\"lo\", \"veth*\"]\n[cpu]\nper_core = false"));
    assert_eq!(ok.unwrap().len(), BUILTIN_NAMES.len());
}

#[test]
fn a_full_snapshot_passes_the_wire_format_validation() {
    let mut collectors = builtin_registry().build(&BTreeMap::new()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut s = Snapshot::new("test-host", 1_763_000_000.0);
    for c in &mut collectors {
        c.collect(&mut s)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name()));
    }
    assert!(s.memory.is_some() && s.load_avg.is_some() && s.uptime_secs.is_some());
    assert!(s.disk_rate.is_some() && s.network_rate.is_some());
    assert!(!s.top_cpu_processes.is_empty() && s.top_cpu_processes.len() <= 5);
    assert!(!s.top_mem_processes.is_empty() && s.top_mem_processes.len() <= 5);
    assert!(s.pressure.is_some() && !s.disks.is_empty() && s.tcp.is_some());
    assert!(s.open_files.is_some() && s.network_errors.is_some());
    assert!(s.top_cpu_processes[0].threads.is_some() && s.top_cpu_processes[0].user.is_some());
    let bytes = sysmon_core::encode_json(&s);
    let back = sysmon_core::decode(&bytes).unwrap();
    assert_eq!(back, s);
    let bytes = sysmon_core::codec::encode(&s, sysmon_core::Format::Binary);
    assert_eq!(sysmon_core::decode(&bytes).unwrap(), s);
}

/// `(avg10, total)` of the `some` line of `/proc/pressure/<resource>`.
fn psi_some(resource: &str) -> (f64, u64) {
    let text = read(&format!("/proc/pressure/{resource}"));
    let line = text.lines().find(|l| l.starts_with("some")).unwrap();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    (
        field("avg10=").parse().unwrap(),
        field("total=").parse().unwrap(),
    )
}

#[test]
fn pressure_matches_proc_pressure() {
    if !std::path::Path::new("/proc/pressure/cpu").exists() {
        let mut s = Snapshot::default();
        PressureCollector::new(PressureOptions::default())
            .collect(&mut s)
            .unwrap();
        assert!(s.pressure.is_none(), "no PSI on this kernel: absent");
        return;
    }
    let mut c = PressureCollector::new(PressureOptions::default());
    for resource in ["cpu", "memory", "io"] {
        let before = psi_some(resource);
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        let after = psi_some(resource);
        let p = s.pressure.unwrap();
        let got = match resource {
            "cpu" => p.cpu,
            "memory" => p.memory,
            _ => p.io,
        }
        .unwrap();
        // the kernel recomputes averages every 2 s: the value read is one of the two
        assert!(
            got.some.avg10 == before.0 || got.some.avg10 == after.0,
            "{resource}: {} not in {before:?}..{after:?}",
            got.some.avg10
        );
        assert!(
            (before.1..=after.1).contains(&got.some.total_us),
            "{resource}: total {} not in {before:?}..{after:?}",
            got.some.total_us
        );
        assert!(
            got.full.is_some(),
            "{resource}: this kernel has `full` lines"
        );
    }
}

/// `/proc/diskstats` counters of `name`: reads, sectors read, writes, sectors written, io ms.
fn diskstats(name: &str) -> [u64; 5] {
    let text = read("/proc/diskstats");
    let f: Vec<u64> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[2] == name)
        .unwrap()[3..]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    [f[0], f[2], f[4], f[6], f[9]]
}

#[test]
fn disk_counters_follow_diskstats_while_writing_and_fsyncing() {
    let mut c = DisksCollector::new(DisksOptions::default()).unwrap();
    let mut first = Snapshot::default();
    c.collect(&mut first).unwrap();
    assert!(!first.disks.is_empty(), "this host has a disk");
    assert!(first.disks.iter().all(|d| !d.name.starts_with("loop")));
    let name = first.disks[0].name.clone();
    let before = diskstats(&name);

    // 16 MB written and fsynced next to the build, on the root disk
    let path = std::env::current_dir()
        .unwrap()
        .join(format!("sysmon-disk-test-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..16 {
            f.write_all(&chunk).unwrap();
            f.sync_data().unwrap();
        }
    }
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    let after = diskstats(&name);
    std::fs::remove_file(&path).unwrap();

    let d = s.disks.iter().find(|d| d.name == name).unwrap();
    let within = |got: u64, lo: u64, hi: u64, what: &str| {
        assert!(
            (lo..=hi).contains(&got),
            "{name} {what}: {got} not in {lo}..={hi}"
        )
    };
    within(d.read_ops, before[0], after[0], "read_ops");
    within(d.read_bytes, before[1] * 512, after[1] * 512, "read_bytes");
    within(d.write_ops, before[2], after[2], "write_ops");
    within(
        d.write_bytes,
        before[3] * 512,
        after[3] * 512,
        "write_bytes",
    );
    within(d.io_time_ms, before[4], after[4], "io_time_ms");
    let f = first.disks.iter().find(|d| d.name == name).unwrap();
    assert!(
        d.write_bytes - f.write_bytes >= 16 << 20,
        "16 MB fsynced: {} bytes",
        d.write_bytes - f.write_bytes
    );
    assert!(d.write_iops.unwrap() > 0.0, "{d:?}");
    // Utilisation is io_time's share of the interval: positive exactly when the
    // device's io_time moved (a fast virtual disk can finish 16 fsyncs within
    // the same millisecond tick, so io_time may legitimately stay put).
    let util = d.utilization_percent.unwrap();
    assert!((0.0..=100.0).contains(&util), "{util}");
    assert_eq!(util > 0.0, d.io_time_ms > f.io_time_ms, "{util} {d:?}");
    assert!(d.write_latency_ms.unwrap() >= 0.0);
}

#[test]
fn tcp_listener_and_connections_are_counted() {
    const N: usize = 40;
    let every = TcpOptions {
        states_every: 1,
        ..TcpOptions::default()
    };
    let mut netlink = TcpCollector::new(every.clone()).unwrap();
    let mut proc = TcpCollector::new(TcpOptions {
        mode: TcpSource::Proc,
        ..every
    })
    .unwrap();
    let mut base = Snapshot::default();
    netlink.collect(&mut base).unwrap();
    let base = base.tcp.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").ok();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let servers: Vec<TcpStream> = (0..N).map(|_| listener.accept().unwrap().0).collect();

    for c in [&mut netlink, &mut proc] {
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        let t = s.tcp.unwrap();
        assert!(t.v4.listen >= 1, "{t:?}");
        assert!(t.v4.established >= 2 * N as u64, "{t:?}");
        if v6.is_some() {
            assert!(t.v6.listen >= 1, "{t:?}");
        }
        assert!(t.out_segs >= base.out_segs && t.retrans_segs >= base.retrans_segs);
        assert!(t.retransmits_per_sec.is_some_and(|r| r >= 0.0));
    }
    // by default states are counted every 10th collection, the last counts repeated between
    let mut sparse = TcpCollector::new(TcpOptions::default()).unwrap();
    let mut first = Snapshot::default();
    sparse.collect(&mut first).unwrap();
    let mut again = Snapshot::default();
    sparse.collect(&mut again).unwrap();
    assert_eq!(first.tcp.unwrap().v4, again.tcp.unwrap().v4);
    assert!(TcpCollector::new(TcpOptions {
        states_every: 0,
        ..TcpOptions::default()
    })
    .is_err());
    drop(clients);
    drop(servers);
    let mut s = Snapshot::default();
    netlink.collect(&mut s).unwrap();
    let t = s.tcp.unwrap();
    assert!(
        t.v4.time_wait + t.v4.fin_wait2 + t.v4.close_wait + t.v4.last_ack + t.v4.fin_wait1
            >= N as u64,
        "closed connections pass through TIME_WAIT / FIN_WAIT: {t:?}"
    );
}

/// A v1 cpuacct cgroup holding one busy process; removed on drop.
struct BurnerGroup {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Drop for BurnerGroup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_cpu_burner_in_its_own_v1_cgroup_is_a_top_cgroup() {
    let root = std::path::Path::new("/sys/fs/cgroup/cpuacct");
    if !root.join("cpuacct.usage").exists() {
        eprintln!("skipped: no cgroup v1 cpuacct hierarchy on this host");
        return;
    }
    let name = format!("sysmon-test-burner-{}", std::process::id());
    let dir = root.join(&name);
    std::fs::create_dir(&dir).unwrap();
    let child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let group = BurnerGroup { dir, child };
    std::fs::write(group.dir.join("cgroup.procs"), group.child.id().to_string()).unwrap();

    let mut c = CgroupCollector::new(CgroupOptions::default()).unwrap();
    let usage = || -> u64 {
        read(&format!("{}/cpuacct.usage", group.dir.display()))
            .trim()
            .parse()
            .unwrap()
    };
    let (u0, t0) = (usage(), Instant::now());
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.collect(&mut s).unwrap();
    let expected = (usage() - u0) as f64 / 1e9 / t0.elapsed().as_secs_f64() * 100.0;

    let path = format!("/{name}");
    let g = s
        .top_cpu_cgroups
        .iter()
        .find(|g| g.path == path)
        .unwrap_or_else(|| panic!("{path} not in {:#?}", s.top_cpu_cgroups));
    assert_eq!(g.name, name);
    assert!(g.cpu_percent > 10.0, "a busy loop: {}", g.cpu_percent);
    assert!(
        (g.cpu_percent - expected).abs() < 25.0,
        "reported {} vs cpuacct {expected}",
        g.cpu_percent
    );
    assert!(s.top_cpu_cgroups.len() <= 10);
    drop(group);
}

#[test]
fn a_process_with_8_threads_reports_them() {
    let me = std::process::id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // busy for a while so this process tops the CPU list
                let until = Instant::now() + Duration::from_millis(400);
                while Instant::now() < until {
                    std::hint::black_box(0u64);
                }
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let mut c = ProcessCollector::new(ProcessOptions { top_n: 100 }).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mine = s
        .top_cpu_processes
        .iter()
        .find(|p| p.pid == me)
        .expect("this busy process is listed")
        .clone();
    for t in threads {
        t.join().unwrap();
    }
    assert!(mine.threads.unwrap() >= 9, "{mine:?}");
    assert!(matches!(mine.state.as_deref(), Some("R" | "S")), "{mine:?}");
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u32;
    let got = mine.open_fds.unwrap();
    assert!(got >= 3 && got.abs_diff(fds) < 32, "{got} vs {fds}");
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    if uid.unwrap() == 0 {
        assert_eq!(mine.user.as_deref(), Some("root"));
    }
    let nr: Vec<u64> = read("/proc/sys/fs/file-nr")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let files = s.open_files.unwrap();
    assert_eq!(files.max, nr[2]);
    assert!(
        files.allocated.abs_diff(nr[0]) < 4096,
        "{files:?} vs {nr:?}"
    );
}

#[test]
fn network_errors_are_the_sum_of_proc_net_dev() {
    let sum = || {
        let mut e = [0u64; 4];
        for line in read("/proc/net/dev").lines().skip(2) {
            let (name, rest) = line.split_once(':').unwrap();
            if name.trim() == "lo" {
                continue;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            for (slot, i) in e.iter_mut().zip([2, 10, 3, 11]) {
                *slot += f[i];
            }
        }
        e
    };
    let mut c = NetworkCollector::new(NetworkOptions::default()).unwrap();
    let before = sum();
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    let after = sum();
    let e = s.network_errors.unwrap();
    let got = [e.rx_errors, e.tx_errors, e.rx_dropped, e.tx_dropped];
    for i in 0..4 {
        assert!(
            (before[i]..=after[i]).contains(&got[i]),
            "{got:?} vs {before:?}..{after:?}"
        );
    }
}
