//! Top processes by CPU and by resident memory, from `/proc/<pid>/stat`.
//!
//! Each interval lists `/proc` and reads one file per process, `stat`, into a
//! reused buffer: it holds the name, the CPU times, the start time and the
//! resident set size, the state and the thread count. The `stat` files stay open between intervals and are
//! re-read with `pread` (a third of the cost of open, read, close), up to half
//! the soft open-files limit and never more than
//! [`MAX_HELD_FILES`]; processes beyond that are opened each time. No command line, executable path, environment or working
//! directory is ever read, and threads are not listed as processes. For the
//! listed processes only, the open file descriptors are counted (`/proc/<pid>/fd`,
//! where readable) and the owner's uid (of `/proc/<pid>`) is named from
//! `/etc/passwd` (read once, again only for an unknown uid, at most once an
//! interval). The system-wide file handles (`/proc/sys/fs/file-nr`) are
//! reported beside the lists (`open_files`).
//! The name is the kernel's `comm` (at most 15 bytes for user processes), the
//! executable's name without arguments: command lines often carry secrets.
//!
//! CPU is in percent of one core over the last interval, like `top`: CPU
//! ticks used since the previous scan divided by the wall time between scans
//! (a process busy on two cores shows 200). Memory is the resident set size, in
//! bytes and in percent of total memory.
//!
//! sysinfo is not used for this family: it records a process's name only when
//! it first sees the pid, so a process that `exec`s after a fork keeps its
//! parent's name (`bash` for a `python` job), and it reads `statm` besides
//! `stat` for every process.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, OpenFiles, ProcessInfo, Snapshot};
use tracing::debug;

use crate::error::ParseError;
use crate::memory::parse_mem_total;
use crate::util::ReadBuf;

/// Most processes per list: the wire format accepts up to 100.
pub const MAX_TOP_N: usize = 100;

/// Most `/proc/<pid>/stat` files held open between intervals.
pub const MAX_HELD_FILES: usize = 1024;

const PID_STAT: &str = "/proc/<pid>/stat";
const PROC_LIMITS: &str = "Max open files";
const FILE_NR: &str = "/proc/sys/fs/file-nr";

/// System-wide file handles from `/proc/sys/fs/file-nr` text
/// (`allocated unused max`).
pub fn parse_file_nr(text: &str) -> Result<OpenFiles, ParseError> {
    let mut f = text.split_ascii_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next(), f.next()) {
        (Some(Ok(allocated)), Some(Ok(_unused)), Some(Ok(max))) => Ok(OpenFiles { allocated, max }),
        _ => Err(ParseError::malformed(FILE_NR, 1, "expected three numbers")),
    }
}

/// The `uid → name` pairs of `/etc/passwd` text; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// User names by uid, from `/etc/passwd`: read at first use and again when
/// an unknown uid is met, at most once an interval.
#[derive(Debug, Default)]
struct UserNames {
    names: HashMap<u32, String>,
    loaded_this_interval: bool,
}

impl UserNames {
    fn new_interval(&mut self) {
        self.loaded_this_interval = false;
    }

    /// The name of `uid`, or the number when it has none.
    fn name(&mut self, uid: u32) -> String {
        if !self.names.contains_key(&uid) && !self.loaded_this_interval {
            self.loaded_this_interval = true;
            if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
                self.names = parse_passwd(&text);
            }
        }
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// Options of the `processes` collector (`[collectors.processes]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessOptions {
    /// Processes in each list (by CPU, by memory), 1..=100. Default 5.
    pub top_n: usize,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions { top_n: 5 }
    }
}

/// The fields of `/proc/<pid>/stat` this collector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
    /// The executable's name as the kernel keeps it (`comm`, ≤ 15 bytes for
    /// user processes; kernel threads may have longer names).
    pub comm: &'a str,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot (tells a reused pid apart).
    pub start_time: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
    /// The one-letter state (`R`, `S`, `D`, `Z`, `T`, `I`, …).
    pub state: u8,
    /// Threads in the process.
    pub threads: u32,
}

/// [`PidStat`] with the name still in bytes, as [`parse_pid_stat_bytes`]
/// returns it (the collector decodes the name only when it changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPidStat<'a> {
    /// The name's bytes (`comm`); see [`PidStat::comm`].
    pub comm: &'a [u8],
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks after boot (tells a reused pid apart).
    pub start_time: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
    /// The one-letter state (`R`, `S`, `D`, `Z`, `T`, `I`, …).
    pub state: u8,
    /// Threads in the process.
    pub threads: u32,
}

/// Parses the text of `/proc/<pid>/stat`. The name sits between the first `(`
/// and the last `)` and may itself hold spaces and parentheses.
pub fn parse_pid_stat(text: &str) -> Result<PidStat<'_>, ParseError> {
    let raw = parse_pid_stat_bytes(text.as_bytes())?;
    // The name is cut at ASCII parentheses, so it stays valid UTF-8.
    let comm = std::str::from_utf8(raw.comm)
        .map_err(|_| ParseError::malformed(PID_STAT, 1, "name is not UTF-8"))?;
    Ok(PidStat {
        comm,
        cpu_ticks: raw.cpu_ticks,
        start_time: raw.start_time,
        rss_pages: raw.rss_pages,
        state: raw.state,
        threads: raw.threads,
    })
}

/// [`parse_pid_stat`] on the raw bytes of the file: no UTF-8 check of the
/// whole text, no allocation; the same fields, errors and number syntax.
pub fn parse_pid_stat_bytes(bytes: &[u8]) -> Result<RawPidStat<'_>, ParseError> {
    let bad = |m: &str| ParseError::malformed(PID_STAT, 1, m.to_string());
    let open = bytes
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| bad("no `(` before the name"))?;
    let close = bytes
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| bad("no `)` after the name"))?;
    if close < open {
        return Err(bad("`)` before `(`"));
    }
    let comm = &bytes[open + 1..close];
    // After the name: field 3 (state) is index 0; utime 14, stime 15,
    // num_threads 20, starttime 22 and rss 24 are indexes 11, 12, 17, 19 and 21.
    let mut fields = bytes[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let state = match fields.next() {
        Some([b]) if b.is_ascii_alphabetic() => *b,
        _ => return Err(bad("no one-letter state")),
    };
    let mut take = |skip: usize, what: &str| -> Result<u64, ParseError> {
        let field = fields
            .nth(skip)
            .ok_or_else(|| bad(&format!("no {what} field")))?;
        std::str::from_utf8(field)
            .ok()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| {
                bad(&format!(
                    "{what} {:?} is not a number",
                    String::from_utf8_lossy(field)
                ))
            })
    };
    let utime = take(10, "utime")?;
    let stime = take(0, "stime")?;
    let threads = take(4, "num_threads")?;
    let start_time = take(1, "starttime")?;
    let rss_pages = take(1, "rss")?;
    Ok(RawPidStat {
        comm,
        cpu_ticks: utime.saturating_add(stime),
        start_time,
        rss_pages,
        state,
        threads: u32::try_from(threads).unwrap_or(u32::MAX),
    })
}

/// The clock tick rate (`AT_CLKTCK`) and page size (`AT_PAGESZ`) from the
/// bytes of `/proc/self/auxv` (native-endian pairs of machine words).
pub fn parse_auxv(bytes: &[u8]) -> (Option<u64>, Option<u64>) {
    const AT_PAGESZ: u64 = 6;
    const AT_CLKTCK: u64 = 17;
    const W: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        usize::from_ne_bytes(a) as u64
    };
    let (mut hz, mut page) = (None, None);
    for pair in bytes.chunks_exact(2 * W) {
        let (key, value) = (word(&pair[..W]), word(&pair[W..]));
        match key {
            0 => break, // AT_NULL
            AT_CLKTCK if value > 0 => hz = Some(value),
            AT_PAGESZ if value > 0 => page = Some(value),
            _ => {}
        }
    }
    (hz, page)
}

/// The soft open-files limit from `/proc/self/limits` text: `Some(None)` when
/// unlimited, `None` when the line is missing or unreadable.
pub fn parse_open_files_limit(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.starts_with(PROC_LIMITS))?;
    match line[PROC_LIMITS.len()..].split_ascii_whitespace().next()? {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// How many `stat` files to hold open given the soft open-files limit.
fn held_files_budget(limit: Option<Option<u64>>) -> usize {
    match limit {
        Some(Some(n)) => usize::try_from(n / 2)
            .unwrap_or(usize::MAX)
            .min(MAX_HELD_FILES),
        Some(None) => MAX_HELD_FILES,
        None => 0,
    }
}

/// What the selection needs of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// Process id.
    pub pid: u32,
    /// CPU in percent of one core over the last interval.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub memory_bytes: u64,
}

/// What a top-N list is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    /// Highest CPU first.
    Cpu,
    /// Largest resident memory first.
    Memory,
}

fn compare(by: TopBy) -> impl Fn(&ProcessSample, &ProcessSample) -> Ordering {
    move |a, b| {
        let primary = match by {
            TopBy::Cpu => b.cpu_percent.total_cmp(&a.cpu_percent),
            TopBy::Memory => b.memory_bytes.cmp(&a.memory_bytes),
        };
        primary.then(a.pid.cmp(&b.pid))
    }
}

/// Moves the `n` highest of `samples` by `by` to the front, sorted highest
/// first (ties by ascending pid), and returns them. O(len + n log n): the rest
/// of the slice is left unsorted.
pub fn select_top(samples: &mut [ProcessSample], n: usize, by: TopBy) -> &[ProcessSample] {
    let n = n.min(samples.len());
    if n == 0 {
        return &[];
    }
    let cmp = compare(by);
    if n < samples.len() {
        samples.select_nth_unstable_by(n - 1, &cmp);
    }
    let top = &mut samples[..n];
    top.sort_unstable_by(&cmp);
    top
}

/// What is remembered of a process between scans.
#[derive(Debug)]
struct Tracked {
    name: String,
    start_time: u64,
    cpu_ticks: u64,
    seen: u64,
    state: u8,
    threads: u32,
    /// Its `stat` file, held open between intervals (within the budget).
    file: Option<File>,
}

/// Fills `top_cpu_processes` and `top_mem_processes`. Primed at construction
/// (one scan), so the first `collect` already has CPU figures.
#[derive(Debug)]
pub struct ProcessCollector {
    top_n: usize,
    proc_root: PathBuf,
    ticks_per_sec: f64,
    page_size: u64,
    tracked: HashMap<u32, Tracked>,
    generation: u64,
    last_scan: Option<Instant>,
    samples: Vec<ProcessSample>,
    path: String,
    buf: ReadBuf,
    held_budget: usize,
    held: usize,
    users: UserNames,
}

impl ProcessCollector {
    /// The registered name.
    pub const NAME: &'static str = "processes";

    /// A collector with `options`, primed with a first scan of the processes.
    pub fn new(options: ProcessOptions) -> Result<Self, CollectorError> {
        if !(1..=MAX_TOP_N).contains(&options.top_n) {
            return Err(CollectorError::Config {
                name: Self::NAME.to_string(),
                message: format!(
                    "`top_n` must be between 1 and {MAX_TOP_N}, not {} (to collect no processes, set `enabled = false`)",
                    options.top_n
                ),
            });
        }
        let (hz, page) = std::fs::read("/proc/self/auxv")
            .map(|b| parse_auxv(&b))
            .unwrap_or((None, None));
        if hz.is_none() || page.is_none() {
            debug!("processes collector: /proc/self/auxv unreadable; assuming 100 ticks/s and 4 KiB pages");
        }
        let mut c = ProcessCollector {
            top_n: options.top_n,
            proc_root: PathBuf::from("/proc"),
            ticks_per_sec: hz.unwrap_or(100) as f64,
            page_size: page.unwrap_or(4096),
            tracked: HashMap::new(),
            generation: 0,
            last_scan: None,
            samples: Vec::new(),
            path: String::with_capacity(32),
            buf: ReadBuf::with_capacity(1024),
            held_budget: held_files_budget(
                std::fs::read_to_string("/proc/self/limits")
                    .ok()
                    .and_then(|t| parse_open_files_limit(&t)),
            ),
            held: 0,
            users: UserNames::default(),
        };
        if let Err(e) = c.scan() {
            debug!(error = %e, "processes collector: priming failed; retrying at the first interval");
        }
        Ok(c)
    }

    /// Reads every process's `stat` into `samples`; returns how many were read.
    fn scan(&mut self) -> Result<usize, CollectorError> {
        let now = Instant::now();
        let elapsed = self
            .last_scan
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        self.samples.clear();
        let dir = std::fs::read_dir(&self.proc_root).map_err(|source| CollectorError::Io {
            what: self.proc_root.display().to_string(),
            source,
        })?;
        let mut malformed = 0usize;
        for entry in dir.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // Re-read the held file; if the process died it fails (ESRCH) and
            // the path is opened afresh (the pid may belong to a new process).
            let mut reread = false;
            if let Some(t) = self.tracked.get_mut(&pid) {
                if let Some(f) = &t.file {
                    reread = self.buf.reread_file(f).is_ok();
                    if !reread {
                        t.file = None;
                        self.held -= 1;
                    }
                }
            }
            let mut opened = None;
            if !reread {
                self.path.clear();
                let _ = write!(self.path, "{}/{pid}/stat", self.proc_root.display());
                let Ok(mut f) = File::open(&self.path) else {
                    continue; // exited since the listing (or hidden from us)
                };
                if self.buf.read_file(&mut f).is_err() {
                    continue;
                }
                opened = Some(f);
            }
            let Ok(stat) = parse_pid_stat_bytes(self.buf.bytes()) else {
                malformed += 1;
                continue;
            };
            let keep = opened.filter(|_| self.held < self.held_budget);
            self.held += usize::from(keep.is_some());
            // Ticks used since the last scan. A process not seen then (or a
            // reused pid) started since: all its ticks are in this interval.
            let delta = match self.tracked.entry(pid) {
                Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    let delta = if t.start_time == stat.start_time {
                        stat.cpu_ticks.saturating_sub(t.cpu_ticks)
                    } else {
                        stat.cpu_ticks
                    };
                    if t.name.as_bytes() != stat.comm {
                        t.name.clear();
                        t.name.push_str(&String::from_utf8_lossy(stat.comm));
                    }
                    t.start_time = stat.start_time;
                    t.cpu_ticks = stat.cpu_ticks;
                    t.seen = generation;
                    t.state = stat.state;
                    t.threads = stat.threads;
                    if keep.is_some() {
                        t.file = keep;
                    }
                    delta
                }
                Entry::Vacant(e) => {
                    e.insert(Tracked {
                        name: String::from_utf8_lossy(stat.comm).into_owned(),
                        start_time: stat.start_time,
                        cpu_ticks: stat.cpu_ticks,
                        seen: generation,
                        state: stat.state,
                        threads: stat.threads,
                        file: keep,
                    });
                    stat.cpu_ticks
                }
            };
            let cpu_percent = match elapsed {
                Some(secs) => delta as f64 / self.ticks_per_sec / secs * 100.0,
                None => 0.0,
            };
            self.samples.push(ProcessSample {
                pid,
                cpu_percent,
                memory_bytes: stat.rss_pages.saturating_mul(self.page_size),
            });
        }
        let held = &mut self.held;
        self.tracked.retain(|_, t| {
            let keep = t.seen == generation;
            if !keep && t.file.is_some() {
                *held -= 1;
            }
            keep
        });
        self.last_scan = Some(now);
        if malformed > 0 {
            debug!(
                malformed,
                "processes collector: unparsable /proc/<pid>/stat files skipped"
            );
        }
        Ok(self.samples.len())
    }

    /// The first `top_n` samples (as [`select_top`] left them) as wire
    /// entries, with their open descriptors and owner.
    fn list(&mut self, total_memory: u64) -> Vec<ProcessInfo> {
        let n = self.top_n.min(self.samples.len());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let s = self.samples[i];
            let (open_fds, uid) = self.fds_and_owner(s.pid);
            let tracked = self.tracked.get(&s.pid);
            out.push(ProcessInfo {
                pid: s.pid,
                name: tracked.map(|t| t.name.clone()).unwrap_or_default(),
                cpu_percent: (s.cpu_percent * 100.0).round() / 100.0,
                memory_percent: (total_memory > 0)
                    .then(|| (s.memory_bytes as f64 * 100.0 / total_memory as f64).min(100.0)),
                memory_bytes: Some(s.memory_bytes),
                threads: tracked.map(|t| t.threads),
                state: tracked.map(|t| char::from(t.state).to_string()),
                open_fds,
                user: None,
            });
            if let (Some(u), Some(p)) = (uid, out.last_mut()) {
                p.user = Some(self.users.name(u));
            }
        }
        out
    }

    /// The open descriptors of `pid` (where readable) and its owner's uid.
    ///
    /// The owner is that of `/proc/<pid>` (`/proc/<pid>/fd` belongs to root
    /// for a non-dumpable process). Linux 6.2 and later report the number of
    /// open descriptors as the size of `/proc/<pid>/fd`: one `stat` and an
    /// access check instead of listing the directory. Where it reads 0 (older
    /// kernels, or no descriptor open) the directory is listed as before.
    fn fds_and_owner(&mut self, pid: u32) -> (Option<u32>, Option<u32>) {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}", self.proc_root.display());
        #[cfg(unix)]
        let uid = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&self.path).ok().map(|m| m.uid())
        };
        #[cfg(not(unix))]
        let uid = None;
        self.path.push_str("/fd");
        #[cfg(target_os = "linux")]
        if let Some(n) = fd_count_from_size(&mut self.path) {
            return (Some(n), uid);
        }
        (count_fds_by_listing(&self.path), uid)
    }
}

/// The open descriptors under `path` (a `/proc/<pid>/fd`) by listing it;
/// `None` where it is not readable.
fn count_fds_by_listing(path: &str) -> Option<u32> {
    std::fs::read_dir(path)
        .ok()
        .map(|d| u32::try_from(d.count()).unwrap_or(u32::MAX))
}

/// The size of the `/proc/<pid>/fd` directory at `path` (its open
/// descriptors on Linux ≥ 6.2) when the directory is also listable by this
/// process (the same answer [`count_fds_by_listing`] would give), else `None`
/// (not readable, or a size of 0: the caller lists it then). `path` gets a NUL
/// pushed for the system call and removed again.
#[cfg(target_os = "linux")]
fn fd_count_from_size(path: &mut String) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let size = std::fs::metadata(path.as_str()).ok()?.size();
    if size == 0 {
        return None;
    }
    path.push('\0');
    let readable = std::ffi::CStr::from_bytes_with_nul(path.as_bytes())
        .ok()
        .is_some_and(|c| {
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            unsafe {
                libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::R_OK, libc::AT_EACCESS) == 0
            }
        });
    path.pop();
    readable.then(|| u32::try_from(size).unwrap_or(u32::MAX))
}

impl Collector for ProcessCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        if self.scan()? == 0 {
            return Err(CollectorError::Failed(
                "no process readable in /proc (mounted with hidepid?)".into(),
            ));
        }
        // The memory collector usually ran first in this snapshot: reuse its total.
        let total_memory = match snapshot.memory.map(|m| m.total_bytes) {
            Some(t) if t > 0 => t,
            _ => {
                self.buf.read_path("/proc/meminfo")?;
                parse_mem_total(&self.buf.text())?
            }
        };
        self.users.new_interval();
        select_top(&mut self.samples, self.top_n, TopBy::Cpu);
        snapshot.top_cpu_processes = self.list(total_memory);
        select_top(&mut self.samples, self.top_n, TopBy::Memory);
        snapshot.top_mem_processes = self.list(total_memory);
        snapshot.open_files = match self.buf.read_path(FILE_NR) {
            Ok(()) => Some(parse_file_nr(&self.buf.text())?),
            Err(_) => None, // not a Linux /proc: the lists still stand
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pid: u32, cpu: f64, mem: u64) -> ProcessSample {
        ProcessSample {
            pid,
            cpu_percent: cpu,
            memory_bytes: mem,
        }
    }

    #[test]
    fn selects_and_sorts_the_top_n() {
        let mut v = vec![
            s(1, 0.0, 500),
            s(2, 50.0, 100),
            s(3, 150.0, 10),
            s(4, 50.0, 900),
            s(5, 3.0, 700),
            s(6, 0.5, 0),
        ];
        let top: Vec<u32> = select_top(&mut v, 3, TopBy::Cpu)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(top, vec![3, 2, 4]); // tie at 50 % broken by pid
        let top: Vec<u32> = select_top(&mut v, 2, TopBy::Memory)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(top, vec![4, 5]);
        assert_eq!(select_top(&mut v, 10, TopBy::Cpu).len(), 6);
        assert!(select_top(&mut v, 0, TopBy::Cpu).is_empty());
        assert!(select_top(&mut [], 5, TopBy::Memory).is_empty());
    }

    #[test]
    fn parses_pid_stat() {
        let text = "1234 (python3) S 1 1234 1234 0 -1 4194560 5000 0 3 0 250 75 0 0 20 0 4 0 98765 512000000 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let p = parse_pid_stat(text).unwrap();
        assert_eq!(p.comm, "python3");
        assert_eq!(p.cpu_ticks, 325);
        assert_eq!(p.start_time, 98765);
        assert_eq!(p.rss_pages, 3000);
        assert_eq!((p.state, p.threads), (b'S', 4));
        // names may hold spaces and parentheses; the command line never appears here
        let text = "77 (my (odd) name) R 1 77 77 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 500 100 7 0\n";
        let p = parse_pid_stat(text).unwrap();
        assert_eq!(
            (p.comm, p.cpu_ticks, p.start_time, p.rss_pages),
            ("my (odd) name", 3, 500, 7)
        );
        // kernel threads: no memory
        let text = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 2 0 0 18446744073709551615 0 0";
        assert_eq!(parse_pid_stat(text).unwrap().rss_pages, 0);
    }

    #[test]
    fn malformed_pid_stat_is_an_error() {
        assert!(parse_pid_stat("").is_err());
        assert!(parse_pid_stat("1 (x S 1 2 3").is_err());
        assert!(parse_pid_stat("1 (x) 5 1 1 1 0 -1 0 0 0 0 0 10 10 0 0 20 0 1 0 5 1 1").is_err());
        assert!(parse_pid_stat("1 x) S 1 2 3").is_err());
        assert!(parse_pid_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 10 x 0 0 20 0 1 0 5 1 1").is_err());
        let err = parse_pid_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 10 10 0 0 20 0 1 0 5").unwrap_err();
        assert!(err.to_string().contains("rss"), "{err}");
    }

    #[test]
    fn parses_file_nr_and_passwd() {
        assert_eq!(
            parse_file_nr("2944\t0\t9223372036854775807\n").unwrap(),
            OpenFiles {
                allocated: 2944,
                max: 9_223_372_036_854_775_807
            }
        );
        assert!(parse_file_nr("12 x").is_err());
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\npostgres:x:106:110::/var/lib/postgresql:/bin/bash\nbroken\n:x:5:5\n",
        );
        assert_eq!(users.len(), 2);
        assert_eq!(users[&106], "postgres");
    }

    #[test]
    fn parses_auxv() {
        let mut bytes = Vec::new();
        for (k, v) in [
            (33usize, 0x7fffusize),
            (6, 4096),
            (17, 100),
            (0, 0),
            (17, 250),
        ] {
            bytes.extend_from_slice(&k.to_ne_bytes());
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&bytes), (Some(100), Some(4096)));
        assert_eq!(parse_auxv(&[]), (None, None));
        assert_eq!(parse_auxv(&[1, 2, 3]), (None, None));
    }

    #[test]
    fn auxv_of_this_process() {
        let (hz, page) = parse_auxv(&std::fs::read("/proc/self/auxv").unwrap());
        assert_eq!(hz, Some(100));
        assert!(page.is_some_and(|p| p.is_power_of_two() && p >= 4096));
    }

    #[test]
    fn parses_open_files_limit() {
        let text =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 1048576              files     \n";
        assert_eq!(parse_open_files_limit(text), Some(Some(1024)));
        assert_eq!(held_files_budget(parse_open_files_limit(text)), 512);
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(
            held_files_budget(parse_open_files_limit(text)),
            MAX_HELD_FILES
        );
        assert_eq!(parse_open_files_limit("Max processes 5 5\n"), None);
        assert_eq!(held_files_budget(None), 0);
        assert_eq!(held_files_budget(Some(Some(1 << 40))), MAX_HELD_FILES);
    }

    #[test]
    fn held_files_stay_within_budget_and_are_released() {
        let mut c = ProcessCollector::new(ProcessOptions::default()).unwrap();
        let open = |c: &ProcessCollector| c.tracked.values().filter(|t| t.file.is_some()).count();
        assert!(c.held > 0 && c.held <= c.held_budget);
        assert_eq!(open(&c), c.held);
        c.held_budget = 3;
        for t in c.tracked.values_mut() {
            t.file = None;
        }
        c.held = 0;
        c.collect(&mut Snapshot::default()).unwrap();
        assert_eq!((c.held, open(&c)), (3, 3));
        // a short-lived child: its held file is dropped once it is gone
        c.held_budget = 10_000;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        c.collect(&mut Snapshot::default()).unwrap();
        let pid = child.id();
        assert!(c
            .tracked
            .get(&pid)
            .is_some_and(|t| t.file.is_some() && t.name == "sleep"));
        child.kill().unwrap();
        child.wait().unwrap();
        c.collect(&mut Snapshot::default()).unwrap();
        assert!(!c.tracked.contains_key(&pid));
        assert_eq!(open(&c), c.held);
    }

    #[test]
    fn byte_parser_agrees_with_the_text_parser() {
        let texts = [
            "1234 (python3) S 1 1234 1234 0 -1 4194560 5000 0 3 0 250 75 0 0 20 0 4 0 98765 512000000 3000 18446744073709551615 1 1 0\n",
            "77 (my (odd) name) R 1 77 77 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 500 100 7 0\n",
            "5 (tab\tname) I\t0 0 0 0 -1 0 0 0 0 0 +9 1 0 0 20 0 1 0 5 0 0",
            "1 (x) S 1 1 1 0 -1 0 0 0 0 0 10 x 0 0 20 0 1 0 5 1 1",
            "1 (x) S 1 1 1 0 -1 0 0 0 0 0 10 10 0 0 20 0 1 0 5",
            "1 x) S 1 2 3",
            "",
        ];
        for text in texts {
            let by_text = parse_pid_stat(text).map_err(|e| e.to_string());
            let by_bytes = parse_pid_stat_bytes(text.as_bytes()).map_err(|e| e.to_string());
            match (&by_text, &by_bytes) {
                (Ok(t), Ok(b)) => {
                    assert_eq!(t.comm.as_bytes(), b.comm, "{text}");
                    assert_eq!(
                        (t.cpu_ticks, t.start_time, t.rss_pages, t.state, t.threads),
                        (b.cpu_ticks, b.start_time, b.rss_pages, b.state, b.threads),
                        "{text}"
                    );
                }
                (Err(t), Err(b)) => assert_eq!(t, b, "{text}"),
                _ => panic!("{text}: {by_text:?} vs {by_bytes:?}"),
            }
        }
        assert_eq!(
            parse_pid_stat_bytes(b"5 (tab\tname) I 0 0 0 0 -1 0 0 0 0 0 +9 1 0 0 20 0 1 0 5 0 0")
                .unwrap()
                .cpu_ticks,
            10
        );
        // a name that is not UTF-8 (a process may set any bytes)
        let raw = parse_pid_stat_bytes(b"9 (a\xffb) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 2")
            .unwrap();
        assert_eq!((raw.comm, raw.rss_pages), (&b"a\xffb"[..], 2));
    }

    #[test]
    fn a_reused_pid_is_read_afresh() {
        let mut c = ProcessCollector::new(ProcessOptions::default()).unwrap();
        c.held_budget = 10_000;
        let open = |c: &ProcessCollector| c.tracked.values().filter(|t| t.file.is_some()).count();
        let sleep = || {
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (sleep(), sleep());
        let (pa, pb) = (a.id(), b.id());
        c.collect(&mut Snapshot::default()).unwrap();
        let b_start = c.tracked[&pb].start_time;
        a.kill().unwrap();
        a.wait().unwrap();
        // a's held file now belongs to a dead process: procfs refuses to read it
        let stale = c.tracked.get_mut(&pa).unwrap().file.take().unwrap();
        assert!(c.buf.reread_file(&stale).is_err());
        // b's entry as if its pid had been reused: it holds the dead process's
        // file and remembers another start time and name
        let t = c.tracked.get_mut(&pb).unwrap();
        t.file = Some(stale);
        t.start_time = b_start + 1;
        t.name = "old".into();
        t.cpu_ticks = 1_000_000;
        c.held -= 1; // a's file moved to b, b's dropped
        assert_eq!(open(&c), c.held);
        c.collect(&mut Snapshot::default()).unwrap();
        assert!(!c.tracked.contains_key(&pa));
        let t = &c.tracked[&pb];
        assert_eq!((t.start_time, t.name.as_str()), (b_start, "sleep"));
        // the re-opened file is b's own
        let file = t.file.as_ref().expect("re-opened and held");
        let mut buf = ReadBuf::with_capacity(64);
        buf.reread_file(file).unwrap();
        assert!(buf.text().starts_with(&format!("{pb} (sleep)")));
        assert_eq!(open(&c), c.held);
        b.kill().unwrap();
        b.wait().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn open_descriptors_by_size_match_the_listing() {
        use std::os::unix::fs::MetadataExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut c = ProcessCollector::new(ProcessOptions::default()).unwrap();
        let path = format!("/proc/{pid}/fd");
        let listed = count_fds_by_listing(&path);
        assert!(listed.is_some_and(|n| n >= 3), "{listed:?}"); // stdin, stdout, stderr
        let mut p = path.clone();
        assert_eq!(fd_count_from_size(&mut p), listed);
        assert_eq!(p, path);
        let (fds, uid) = c.fds_and_owner(pid);
        assert_eq!(fds, listed);
        assert_eq!(
            uid,
            Some(std::fs::metadata(format!("/proc/{pid}")).unwrap().uid())
        );
        // pid 1 (not ours to list when unprivileged): readable both ways or neither
        let mut p = "/proc/1/fd".to_string();
        assert_eq!(
            fd_count_from_size(&mut p).is_some(),
            count_fds_by_listing(&p).is_some()
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn top_n_must_be_in_range() {
        for bad in [0, MAX_TOP_N + 1] {
            let err = ProcessCollector::new(ProcessOptions { top_n: bad })
                .err()
                .unwrap();
            assert!(err.to_string().contains("top_n"), "{err}");
        }
    }
}
