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
        vec!["cpu", "disk", "load", "memory", "network", "uptime"]
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
    ] {
        let err = r
            .build(&cfg(bad))
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.to_string().contains(what), "{bad}: {err}");
    }
    let ok = r.build(&cfg("[processes]\ntop_n = 10\n[network]\nexclude_interfaces = [\"lo\", \"veth*\"]\n[cpu]\nper_core = false"));
    assert_eq!(ok.unwrap().len(), 8);
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
    let bytes = sysmon_core::encode_json(&s);
    let back = sysmon_core::decode(&bytes).unwrap();
    assert_eq!(back, s);
}
