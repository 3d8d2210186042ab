//! Layouts this host does not have, as fixture trees built in a temporary
//! directory: cgroup v2 with systemd services, Docker and a Kubernetes pod;
//! cgroup v1 (cgroupfs) with Docker and Kubernetes; hwmon sensors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sysmon_collectors::*;
use sysmon_core::{CgroupKind, Collector, Snapshot};

const DOCKER_ID: &str = "3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
const CTR_ID: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";
const POD_UID: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

/// A temporary directory removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sysmon-fixture-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }
    fn file(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PSI: &str = "some avg10=12.50 avg60=3.00 avg300=1.00 total=1000\nfull avg10=2.00 avg60=1.00 avg300=0.50 total=400\n";

/// A cgroup v2 group with `usage_usec`, memory in use and inactive cache.
fn v2_group(t: &Tree, rel: &str, usage_usec: u64, current: u64, inactive: u64, max: &str) {
    t.file(
        &format!("{rel}/cpu.stat"),
        &format!("usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 1\n"),
    );
    t.file(&format!("{rel}/memory.current"), &format!("{current}\n"));
    t.file(&format!("{rel}/memory.max"), &format!("{max}\n"));
    t.file(
        &format!("{rel}/memory.stat"),
        &format!("anon 1\nfile 2\ninactive_file {inactive}\nactive_file 3\n"),
    );
    t.file(&format!("{rel}/pids.current"), "7\n");
    t.file(
        &format!("{rel}/io.stat"),
        &format!("8:0 rbytes={} wbytes=0 rios=1 wios=0\n", usage_usec),
    );
    for r in ["cpu", "memory", "io"] {
        t.file(&format!("{rel}/{r}.pressure"), PSI);
    }
}

fn collector(root: &Path) -> CgroupCollector {
    CgroupCollector::new(CgroupOptions {
        root: root.to_path_buf(),
        ..CgroupOptions::default()
    })
    .unwrap()
}

#[test]
fn cgroup_v2_systemd_docker_and_kubernetes() {
    let t = Tree::new("v2");
    t.file("cgroup.controllers", "cpuset cpu io memory pids\n");
    t.file("system.slice/cpu.stat", "usage_usec 999999999\n");
    let nginx = "system.slice/nginx.service";
    let docker = format!("system.slice/docker-{DOCKER_ID}.scope");
    let pod = format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        POD_UID.replace('-', "_")
    );
    let ctr = format!("{pod}/cri-containerd-{CTR_ID}.scope");
    v2_group(&t, nginx, 1_000_000, 300 << 20, 0, "max");
    v2_group(
        &t,
        &docker,
        5_000_000,
        600 << 20,
        100 << 20,
        &(1u64 << 30).to_string(),
    );
    v2_group(
        &t,
        &pod,
        2_000_000,
        200 << 20,
        0,
        &(256u64 << 20).to_string(),
    );
    v2_group(
        &t,
        &ctr,
        2_000_000,
        190 << 20,
        0,
        &(256u64 << 20).to_string(),
    );

    let mut c = collector(&t.0);
    std::thread::sleep(Duration::from_millis(100));
    // The container burns 0.5 s of CPU and reads 1 MB in the interval.
    v2_group(
        &t,
        &docker,
        5_500_000,
        600 << 20,
        100 << 20,
        &(1u64 << 30).to_string(),
    );
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();

    let top = &s.top_cpu_cgroups;
    assert_eq!(top.len(), 4, "slices are not listed: {top:#?}");
    let d = &top[0];
    assert_eq!(
        (d.kind, d.name.as_str()),
        (CgroupKind::Docker, &DOCKER_ID[..12])
    );
    assert_eq!(d.path, format!("/{docker}"));
    // 0.5 s of CPU over 0.1..5 s of wall time
    assert!((10.0..=500.0).contains(&d.cpu_percent), "{}", d.cpu_percent);
    assert!(top[1..].iter().all(|g| g.cpu_percent == 0.0));
    assert_eq!(
        d.memory_bytes,
        500 << 20,
        "working set: current minus inactive file"
    );
    assert_eq!(d.memory_limit_bytes, Some(1 << 30));
    assert_eq!(d.pids, Some(7));
    let psi = d.pressure.unwrap();
    assert_eq!(psi.memory.unwrap().some.avg10, 12.5);
    assert_eq!(psi.io.unwrap().full.unwrap().avg10, 2.0);

    let kinds: Vec<(CgroupKind, String)> = s
        .top_mem_cgroups
        .iter()
        .map(|g| (g.kind, g.name.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (CgroupKind::Docker, DOCKER_ID[..12].to_string()),
            (CgroupKind::SystemdService, "nginx".to_string()),
            (CgroupKind::KubernetesPod, POD_UID.to_string()),
            (CgroupKind::Containerd, CTR_ID[..12].to_string()),
        ]
    );
    let n = s
        .top_mem_cgroups
        .iter()
        .find(|g| g.name == "nginx")
        .unwrap();
    assert_eq!(n.memory_limit_bytes, None, "`max` is no limit");

    // I/O rate from the second listed interval on
    std::thread::sleep(Duration::from_millis(50));
    v2_group(
        &t,
        &docker,
        6_500_000,
        600 << 20,
        100 << 20,
        &(1u64 << 30).to_string(),
    );
    c.collect(&mut s).unwrap();
    let d = &s.top_cpu_cgroups[0];
    assert!(d.io_read_bytes_per_sec.unwrap() > 0.0, "{d:?}");

    // top_n bounds both lists
    let mut c = CgroupCollector::new(CgroupOptions {
        root: t.0.clone(),
        top_n: 2,
        ..CgroupOptions::default()
    })
    .unwrap();
    c.collect(&mut s).unwrap();
    assert_eq!((s.top_cpu_cgroups.len(), s.top_mem_cgroups.len()), (2, 2));
}

#[test]
fn cgroup_v1_cgroupfs_docker_and_kubernetes() {
    let t = Tree::new("v1");
    let pod = format!("kubepods/besteffort/pod{POD_UID}");
    let groups = [
        (
            format!("docker/{DOCKER_ID}"),
            3_000_000_000u64,
            400u64 << 20,
        ),
        (format!("{pod}/{CTR_ID}"), 1_000_000_000, 100 << 20),
        (pod.clone(), 1_000_000_000, 110 << 20),
    ];
    for (rel, cpu_ns, mem) in &groups {
        t.file(
            &format!("cpuacct/{rel}/cpuacct.usage"),
            &format!("{cpu_ns}\n"),
        );
        t.file(
            &format!("memory/{rel}/memory.usage_in_bytes"),
            &format!("{mem}\n"),
        );
        t.file(
            &format!("memory/{rel}/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        t.file(
            &format!("memory/{rel}/memory.stat"),
            "cache 5\ntotal_inactive_file 0\n",
        );
        t.file(&format!("pids/{rel}/pids.current"), "3\n");
        t.file(
            &format!("blkio/{rel}/blkio.throttle.io_service_bytes"),
            "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        );
    }
    t.file(
        &format!("memory/{pod}/{CTR_ID}/memory.limit_in_bytes"),
        "268435456\n",
    );
    t.file("cpuacct/cpuacct.usage", "99999999999\n");

    let mut c = collector(&t.0);
    std::thread::sleep(Duration::from_millis(50));
    t.file(
        &format!("cpuacct/{pod}/{CTR_ID}/cpuacct.usage"),
        "1250000000\n",
    );
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    let top = &s.top_cpu_cgroups;
    assert_eq!(top.len(), 3, "{top:#?}");
    assert_eq!(
        (top[0].kind, top[0].name.as_str()),
        (CgroupKind::Containerd, &CTR_ID[..12])
    );
    assert!(top[0].cpu_percent > 0.0);
    assert_eq!(top[0].memory_limit_bytes, Some(256 << 20));
    assert_eq!(top[0].pids, Some(3));
    assert!(
        top[0].pressure.is_none(),
        "v1 without a unified tree has no PSI"
    );
    let mem = &s.top_mem_cgroups;
    assert_eq!(
        (mem[0].kind, mem[0].name.as_str()),
        (CgroupKind::Docker, &DOCKER_ID[..12])
    );
    assert_eq!(
        mem[0].memory_limit_bytes, None,
        "the v1 sentinel is no limit"
    );
    assert_eq!(mem[1].kind, CgroupKind::KubernetesPod);
    assert_eq!(mem[1].name, POD_UID);
}

#[test]
fn no_cgroup_tree_is_a_reported_error() {
    let t = Tree::new("none");
    let mut c = collector(&t.0);
    let err = c.collect(&mut Snapshot::default()).unwrap_err();
    assert!(err.to_string().contains("no cgroup"), "{err}");
}

#[test]
fn hwmon_sensors_from_a_fixture_tree() {
    let t = Tree::new("hwmon");
    t.file("hwmon0/name", "coretemp\n");
    t.file("hwmon0/temp1_input", "45000\n");
    t.file("hwmon0/temp1_label", "Package id 0\n");
    t.file("hwmon0/temp1_crit", "100000\n");
    t.file("hwmon0/temp2_input", "43500\n");
    t.file("hwmon0/temp2_label", "Core 0\n");
    t.file("hwmon0/temp10_input", "41000\n");
    t.file("hwmon1/name", "nvme\n");
    t.file("hwmon1/temp1_input", "38850\n");
    t.file("hwmon1/temp2_input", "garbage\n");
    t.file("hwmon2/name", "acpi_fan\n"); // no temperature inputs
    let mut c = TemperatureCollector::new(TemperatureOptions { path: t.0.clone() });
    let mut s = Snapshot::default();
    c.collect(&mut s).unwrap();
    let got: Vec<(&str, f64, Option<f64>)> = s
        .temperatures
        .iter()
        .map(|t| (t.label.as_str(), t.celsius, t.critical_celsius))
        .collect();
    assert_eq!(
        got,
        vec![
            ("coretemp Package id 0", 45.0, Some(100.0)),
            ("coretemp Core 0", 43.5, None),
            ("coretemp temp10", 41.0, None),
            ("nvme temp1", 38.85, None),
        ]
    );
}
