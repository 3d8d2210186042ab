//! What the `cgroups` collector costs on a host with many groups: creates N
//! empty groups in this host's cgroup v1 `cpuacct`, `memory` and `pids`
//! hierarchies (as a container runtime does; needs root), times `collect`
//! and removes them.
//!
//! ```text
//! sudo cargo run --release -p sysmon-collectors --example cgroups_cost -- 500
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sysmon_collectors::{CgroupCollector, CgroupOptions};
use sysmon_core::{Collector, Snapshot};

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The groups created, removed on drop.
struct Groups(Vec<PathBuf>);

impl Drop for Groups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn main() {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 500,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: cgroups_cost [GROUPS (default 500)]");
            std::process::exit(2);
        }
    };
    let root = Path::new("/sys/fs/cgroup");
    let mut groups = Groups(Vec::new());
    for controller in ["cpuacct", "memory", "pids"] {
        let base = root.join(controller).join("sysmon-cost");
        if let Err(e) = std::fs::create_dir_all(&base) {
            eprintln!(
                "cannot create {} ({e}): run as root on a cgroup v1 host",
                base.display()
            );
            std::process::exit(1);
        }
        groups.0.push(base.clone());
        for i in 0..n {
            let dir = base.join(format!("docker-{i:064x}.scope"));
            std::fs::create_dir(&dir).expect("mkdir");
            groups.0.push(dir);
        }
    }
    let mut c = CgroupCollector::new(CgroupOptions::default()).expect("collector");
    let mut s = Snapshot::default();
    c.collect(&mut s).expect("collect");
    let runs = 20;
    let mut wall = Vec::with_capacity(runs);
    let cpu0 = cpu_time();
    for _ in 0..runs {
        let t = Instant::now();
        c.collect(&mut s).expect("collect");
        wall.push(t.elapsed());
    }
    let cpu = cpu_time() - cpu0;
    wall.sort();
    println!(
        "{n} groups: median {:.2} ms, cpu/collect {:.2} ms, listed {} + {}",
        wall[runs / 2].as_secs_f64() * 1000.0,
        cpu.as_secs_f64() * 1000.0 / runs as f64,
        s.top_cpu_cgroups.len(),
        s.top_mem_cgroups.len()
    );
}
