//! The top control groups by CPU and by memory: systemd services, Docker,
//! containerd and CRI-O containers, Kubernetes pods (`top_cpu_cgroups`,
//! `top_mem_cgroups`).
//!
//! Both layouts are read:
//! * **cgroup v2** (unified; `<root>/cgroup.controllers` exists): `cpu.stat`
//!   (`usage_usec`), `memory.current`, `memory.max`, `memory.stat`
//!   (`inactive_file`), `pids.current`, `io.stat` and the group's own
//!   `{cpu,memory,io}.pressure`;
//! * **cgroup v1** (one hierarchy per controller, as on these machines):
//!   `cpuacct/…/cpuacct.usage`, `memory/…/memory.usage_in_bytes`,
//!   `memory.limit_in_bytes` and `memory.stat` (`total_inactive_file`),
//!   `pids/…/pids.current` and `blkio/…/blkio.throttle.io_service_bytes`; the
//!   group's pressure is read from the v2 hierarchy mounted at
//!   `<root>/unified` where the same path exists there.
//!
//! Each interval walks the tree (the v2 root, or the v1 `cpuacct` hierarchy)
//! up to `max_groups` directories and reads two small files per group (CPU
//! usage, memory in use); only the groups that make a top-N list get their
//! limit, pids, I/O and pressure read. A group is a candidate when it is a
//! leaf or when its kind is known (a pod holds its containers): intermediate
//! slices only repeat the sum of their children. Memory is the working set,
//! in use minus inactive page cache (what `docker stats` and the kubelet
//! show), so a container full of clean cache is not reported as near its
//! limit. CPU is in percent of one core, like processes'.
//!
//! The root is configurable (`root`) so tests read fixture trees of the
//! layouts this host does not have. Cost: see `BENCHMARKS.md`.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;
use sysmon_core::{CgroupInfo, CgroupKind, Collector, CollectorError, Snapshot};

use crate::pressure::read_pressure;
use crate::util::ReadBuf;

/// Most groups in each top list.
pub const MAX_TOP_N: usize = 100;

/// Options of the `cgroups` collector (`[collectors.cgroups]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupOptions {
    /// Groups in each list (by CPU, by memory), 1..=100. Default 10.
    pub top_n: usize,
    /// Where the cgroup filesystems are mounted. Default `/sys/fs/cgroup`.
    pub root: PathBuf,
    /// Most groups visited per interval (a bound for hosts with thousands of
    /// containers; the walk stops there and the rest is not ranked). Default 2000.
    pub max_groups: usize,
}

impl Default for CgroupOptions {
    fn default() -> Self {
        CgroupOptions {
            top_n: 10,
            root: PathBuf::from("/sys/fs/cgroup"),
            max_groups: 2000,
        }
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The kind and readable name of the group at `path` (`/system.slice/nginx.service`,
/// `/docker/<id>`, `/kubepods.slice/…/kubepods-burstable-pod<uid>.slice`, …).
pub fn classify(path: &str) -> (CgroupKind, String) {
    let mut components = path.rsplit('/').filter(|c| !c.is_empty());
    let Some(last) = components.next() else {
        return (CgroupKind::Other, "/".to_string());
    };
    let parent = components.next().unwrap_or("");
    let short = |id: &str| id[..12].to_string();
    let scoped = |prefix: &str| {
        last.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".scope").or(Some(r)))
            .filter(|id| is_container_id(id))
    };
    if let Some(id) = scoped("docker-") {
        return (CgroupKind::Docker, short(id));
    }
    if let Some(id) = scoped("cri-containerd-") {
        return (CgroupKind::Containerd, short(id));
    }
    if let Some(id) = scoped("crio-") {
        return (CgroupKind::CriO, short(id));
    }
    if is_container_id(last) {
        // cgroupfs layouts: /docker/<id>; under a pod, the kubelet's runtime
        // (containerd by default) names the container by its bare id.
        let kind = if parent == "docker" {
            CgroupKind::Docker
        } else if parent.starts_with("pod") || parent.contains("-pod") {
            CgroupKind::Containerd
        } else {
            CgroupKind::Other
        };
        return (kind, short(last));
    }
    // Pods: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
    let pod = last
        .strip_suffix(".slice")
        .and_then(|s| s.rsplit_once("-pod").map(|(_, uid)| uid))
        .or_else(|| last.strip_prefix("pod"));
    if let Some(uid) = pod.filter(|u| {
        u.len() >= 32
            && u.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
    }) {
        return (CgroupKind::KubernetesPod, uid.replace('_', "-"));
    }
    if let Some(service) = last.strip_suffix(".service") {
        return (CgroupKind::SystemdService, service.to_string());
    }
    (CgroupKind::Other, last.to_string())
}

/// The first value of a single-number cgroup file; `max` (v2) or the v1
/// "unlimited" sentinel (≥ 2^62) gives `None`.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|v| *v < 1 << 62)
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.stat`).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Bytes read and written summed over devices: v2 `io.stat`
/// (`8:0 rbytes=1 wbytes=2 …`) or v1 `blkio.throttle.io_service_bytes`
/// (`8:0 Read 1`, `8:0 Write 2`, `Total 3`).
pub fn parse_io_bytes(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace().skip(1);
        let Some(second) = f.next() else { continue };
        let add = |slot: &mut u64, v: &str| *slot = slot.saturating_add(v.parse().unwrap_or(0));
        match second {
            "Read" => add(&mut read, f.next().unwrap_or("0")),
            "Write" => add(&mut write, f.next().unwrap_or("0")),
            _ => {
                for kv in std::iter::once(second).chain(f) {
                    match kv.split_once('=') {
                        Some(("rbytes", v)) => add(&mut read, v),
                        Some(("wbytes", v)) => add(&mut write, v),
                        _ => {}
                    }
                }
            }
        }
    }
    (read, write)
}

/// Which layout the root holds, and where each controller's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Unified: every file under one tree.
    V2(PathBuf),
    /// One hierarchy per controller; `unified` is the v2 tree for pressure.
    V1 {
        cpuacct: PathBuf,
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        blkio: Option<PathBuf>,
        unified: Option<PathBuf>,
    },
}

fn detect(root: &Path) -> Option<Layout> {
    if root.join("cgroup.controllers").exists() {
        return Some(Layout::V2(root.to_path_buf()));
    }
    let first = |names: &[&str]| names.iter().map(|n| root.join(n)).find(|p| p.is_dir());
    let cpuacct = first(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"])?;
    Some(Layout::V1 {
        cpuacct,
        memory: first(&["memory"]),
        pids: first(&["pids"]),
        blkio: first(&["blkio"]),
        unified: first(&["unified"]).filter(|p| p.join("cgroup.controllers").exists()),
    })
}

/// What the walk measures of every group.
#[derive(Debug, Clone)]
struct Candidate {
    path: String,
    kind: CgroupKind,
    name: String,
    cpu_percent: f64,
    memory_bytes: u64,
}

#[derive(Debug)]
struct Previous {
    cpu_ns: u64,
    /// Bytes read and written, and the walk they were read in (only groups
    /// that were listed have them).
    io: Option<(u64, u64, u64)>,
    seen: u64,
}

/// Fills `top_cpu_cgroups` and `top_mem_cgroups`. Primed at construction.
#[derive(Debug)]
pub struct CgroupCollector {
    options: CgroupOptions,
    layout: Option<Layout>,
    buf: ReadBuf,
    previous: HashMap<String, Previous>,
    generation: u64,
    last: Option<Instant>,
    candidates: Vec<Candidate>,
}

impl CgroupCollector {
    /// The registered name.
    pub const NAME: &'static str = "cgroups";

    /// A collector with `options`, primed with a first walk.
    pub fn new(options: CgroupOptions) -> Result<Self, CollectorError> {
        if !(1..=MAX_TOP_N).contains(&options.top_n) || options.max_groups == 0 {
            return Err(CollectorError::Config {
                name: Self::NAME.into(),
                message: format!(
                    "`top_n` must be between 1 and {MAX_TOP_N} and `max_groups` positive (got {} and {})",
                    options.top_n, options.max_groups
                ),
            });
        }
        let mut c = CgroupCollector {
            layout: detect(&options.root),
            options,
            buf: ReadBuf::with_capacity(1024),
            previous: HashMap::new(),
            generation: 0,
            last: None,
            candidates: Vec::new(),
        };
        let _ = c.walk(); // priming; a failure shows at the first interval
        Ok(c)
    }

    fn read_u64(&mut self, path: &Path) -> Option<u64> {
        self.buf.read_path(path).ok()?;
        self.buf.text().trim().parse().ok()
    }

    fn read_keyed(&mut self, path: &Path, key: &str) -> Option<u64> {
        self.buf.read_path(path).ok()?;
        keyed_value(&self.buf.text(), key)
    }

    /// CPU nanoseconds and memory in use of the group at `rel` (`/a/b`).
    fn usage(&mut self, layout: &Layout, rel: &str) -> Option<(u64, u64)> {
        match layout {
            Layout::V2(root) => {
                let dir = root.join(rel.trim_start_matches('/'));
                let cpu = self.read_keyed(&dir.join("cpu.stat"), "usage_usec")?;
                let mem = self.read_u64(&dir.join("memory.current")).unwrap_or(0);
                Some((cpu.saturating_mul(1000), mem))
            }
            Layout::V1 {
                cpuacct, memory, ..
            } => {
                let cpu = self.read_u64(
                    &cpuacct
                        .join(rel.trim_start_matches('/'))
                        .join("cpuacct.usage"),
                )?;
                let mem = memory
                    .as_ref()
                    .and_then(|m| {
                        self.read_u64(
                            &m.join(rel.trim_start_matches('/'))
                                .join("memory.usage_in_bytes"),
                        )
                    })
                    .unwrap_or(0);
                Some((cpu, mem))
            }
        }
    }

    /// Walks the tree and measures every candidate group.
    fn walk(&mut self) -> Result<(), CollectorError> {
        let Some(layout) = self.layout.clone() else {
            return Err(CollectorError::Failed(format!(
                "no cgroup v2 or v1 cpuacct hierarchy under {}",
                self.options.root.display()
            )));
        };
        let base = match &layout {
            Layout::V2(root) => root.clone(),
            Layout::V1 { cpuacct, .. } => cpuacct.clone(),
        };
        let now = Instant::now();
        let secs = self
            .last
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        self.candidates.clear();
        let mut stack = vec![String::new()];
        let mut visited = 0usize;
        while let Some(rel) = stack.pop() {
            let dir = base.join(rel.trim_start_matches('/'));
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if rel.is_empty() => {
                    return Err(CollectorError::Io {
                        what: dir.display().to_string(),
                        source: e,
                    })
                }
                Err(_) => continue, // removed since it was listed
            };
            let mut children = 0usize;
            for entry in entries.flatten() {
                if visited >= self.options.max_groups {
                    break;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if let Some(name) = entry.file_name().to_str() {
                        stack.push(format!("{rel}/{name}"));
                        visited += 1;
                        children += 1;
                    }
                }
            }
            if rel.is_empty() {
                continue; // the root: the whole host, reported elsewhere
            }
            let (kind, name) = classify(&rel);
            if children > 0 && kind == CgroupKind::Other {
                continue; // a slice: the sum of its children
            }
            let Some((cpu_ns, memory_bytes)) = self.usage(&layout, &rel) else {
                continue;
            };
            let cpu_percent = match (self.previous.get_mut(&rel), secs) {
                (Some(p), Some(secs)) => {
                    let delta = cpu_ns.saturating_sub(p.cpu_ns);
                    p.cpu_ns = cpu_ns;
                    p.seen = generation;
                    delta as f64 / 1e9 / secs * 100.0
                }
                (Some(p), None) => {
                    p.cpu_ns = cpu_ns;
                    p.seen = generation;
                    0.0
                }
                (None, _) => {
                    self.previous.insert(
                        rel.clone(),
                        Previous {
                            cpu_ns,
                            io: None,
                            seen: generation,
                        },
                    );
                    0.0
                }
            };
            self.candidates.push(Candidate {
                path: rel,
                kind,
                name,
                cpu_percent,
                memory_bytes,
            });
        }
        self.previous.retain(|_, p| p.seen == generation);
        self.last = Some(now);
        Ok(())
    }

    /// The full entry of a listed group: limit, working set, pids, I/O, pressure.
    fn details(&mut self, c: &Candidate, secs: Option<f64>) -> CgroupInfo {
        let layout = self.layout.clone();
        let rel = c.path.trim_start_matches('/');
        let mut info = CgroupInfo {
            path: c.path.clone(),
            name: c.name.clone(),
            kind: c.kind,
            cpu_percent: (c.cpu_percent * 100.0).round() / 100.0,
            memory_bytes: c.memory_bytes,
            ..CgroupInfo::default()
        };
        let (mem_dir, inactive_key, limit_file, pids_file, io_file, psi_dir) = match &layout {
            Some(Layout::V2(root)) => {
                let d = root.join(rel);
                (
                    Some(d.clone()),
                    "inactive_file",
                    d.join("memory.max"),
                    Some(d.join("pids.current")),
                    Some(d.join("io.stat")),
                    Some(d),
                )
            }
            Some(Layout::V1 {
                memory,
                pids,
                blkio,
                unified,
                ..
            }) => {
                let m = memory.as_ref().map(|m| m.join(rel));
                (
                    m.clone(),
                    "total_inactive_file",
                    m.map(|m| m.join("memory.limit_in_bytes"))
                        .unwrap_or_default(),
                    pids.as_ref().map(|p| p.join(rel).join("pids.current")),
                    blkio
                        .as_ref()
                        .map(|b| b.join(rel).join("blkio.throttle.io_service_bytes")),
                    unified.as_ref().map(|u| u.join(rel)),
                )
            }
            None => return info,
        };
        if let Some(dir) = &mem_dir {
            if let Some(inactive) = self.read_keyed(&dir.join("memory.stat"), inactive_key) {
                info.memory_bytes = info.memory_bytes.saturating_sub(inactive);
            }
            if self.buf.read_path(&limit_file).is_ok() {
                info.memory_limit_bytes = parse_limit(&self.buf.text());
            }
        }
        info.pids = pids_file.and_then(|p| self.read_u64(&p));
        let io = io_file.and_then(|p| {
            self.buf.read_path(p).ok()?;
            Some(parse_io_bytes(&self.buf.text()))
        });
        let generation = self.generation;
        if let (Some(p), Some((r, w))) = (self.previous.get_mut(&c.path), io) {
            if let (Some((pr, pw, at)), Some(secs)) = (p.io, secs) {
                if at.wrapping_add(1) == generation {
                    info.io_read_bytes_per_sec = Some(r.saturating_sub(pr) as f64 / secs);
                    info.io_write_bytes_per_sec = Some(w.saturating_sub(pw) as f64 / secs);
                }
            }
            p.io = Some((r, w, generation));
        }
        if let Some(dir) = psi_dir.filter(|d| d.is_dir()) {
            match read_pressure(&mut self.buf, &dir, ".pressure") {
                Ok(p) => info.pressure = p,
                Err(CollectorError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(_) => {} // a group removed mid-read, or PSI disabled per group
            }
        }
        info
    }

    /// Indices of the candidates ranked by CPU or by memory in use, the
    /// first `n`.
    fn ranked(&self, by_cpu: bool, n: usize) -> Vec<usize> {
        let key = |c: &Candidate| {
            if by_cpu {
                c.cpu_percent
            } else {
                c.memory_bytes as f64
            }
        };
        let c = &self.candidates;
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by(|&a, &b| {
            key(&c[b])
                .total_cmp(&key(&c[a]))
                .then_with(|| c[a].path.cmp(&c[b].path))
        });
        order.truncate(n);
        order
    }
}

impl Collector for CgroupCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let before = self.last;
        self.walk()?;
        let secs = before
            .zip(self.last)
            .map(|(a, b)| b.duration_since(a).as_secs_f64())
            .filter(|s| *s > 0.0);
        let n = self.options.top_n;
        let by_cpu = self.ranked(true, n);
        // Memory is re-ranked by working set, so a few more are read than listed.
        let by_mem = self.ranked(false, n * 2);
        let mut details: HashMap<usize, CgroupInfo> = HashMap::new();
        for &i in by_cpu.iter().chain(&by_mem) {
            if let std::collections::hash_map::Entry::Vacant(e) = details.entry(i) {
                let c = self.candidates[i].clone();
                e.insert(self.details(&c, secs));
            }
        }
        snapshot.top_cpu_cgroups = by_cpu.iter().map(|i| details[i].clone()).collect();
        let mut mem: Vec<CgroupInfo> = by_mem.iter().map(|i| details[i].clone()).collect();
        mem.sort_by(|a, b| {
            b.memory_bytes
                .cmp(&a.memory_bytes)
                .then(a.path.cmp(&b.path))
        });
        mem.truncate(n);
        snapshot.top_mem_cgroups = mem;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";

    #[test]
    fn kinds_and_names_from_paths() {
        let k = |p: &str| classify(p);
        assert_eq!(
            k("/system.slice/nginx.service"),
            (CgroupKind::SystemdService, "nginx".into())
        );
        assert_eq!(
            k(&format!("/docker/{ID}")),
            (CgroupKind::Docker, ID[..12].into())
        );
        assert_eq!(
            k(&format!("/system.slice/docker-{ID}.scope")),
            (CgroupKind::Docker, ID[..12].into())
        );
        assert_eq!(
            k(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-{ID}.scope")),
            (CgroupKind::Containerd, ID[..12].into())
        );
        assert_eq!(
            k("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice"),
            (CgroupKind::KubernetesPod, "0a1b2c3d-4e5f-6789-abcd-ef0123456789".into())
        );
        assert_eq!(
            k("/kubepods/besteffort/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
            (
                CgroupKind::KubernetesPod,
                "0a1b2c3d-4e5f-6789-abcd-ef0123456789".into()
            )
        );
        assert_eq!(
            k(&format!(
                "/kubepods/besteffort/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/{ID}"
            )),
            (CgroupKind::Containerd, ID[..12].into())
        );
        assert_eq!(
            k(&format!("/machine.slice/crio-{ID}.scope")),
            (CgroupKind::CriO, ID[..12].into())
        );
        assert_eq!(
            k("/user.slice/user-1000.slice"),
            (CgroupKind::Other, "user-1000.slice".into())
        );
        assert_eq!(k("/"), (CgroupKind::Other, "/".into()));
    }

    #[test]
    fn small_files() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(512 << 20));
        let stat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(keyed_value(stat, "usage_usec"), Some(123_456));
        assert_eq!(keyed_value(stat, "nr_periods"), None);
        assert_eq!(
            parse_io_bytes("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2\n"),
            (4097, 8194)
        );
        assert_eq!(
            parse_io_bytes(
                "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n"
            ),
            (4096, 512)
        );
    }
}
