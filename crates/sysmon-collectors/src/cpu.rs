//! CPU utilisation, whole host and per logical core, from `/proc/stat`.
//!
//! `/proc/stat` is read directly rather than through sysinfo: one read of one
//! file into a reused buffer, cores matched by their index (an offline core is
//! simply absent, never shifts the others), and a read failure reported as an
//! error instead of silently keeping the previous figures.
//!
//! Utilisation is the share of non-idle time over the interval, like psutil's
//! `cpu_percent()` and `top`: idle and iowait count as idle; user, nice, system,
//! irq, softirq and steal count as busy (guest time is already inside user and
//! nice, so it is not added twice).

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, Snapshot};
use tracing::debug;

use crate::error::ParseError;
use crate::util::ReadBuf;

const PROC_STAT: &str = "/proc/stat";

/// Options of the `cpu` collector (`[collectors.cpu]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuOptions {
    /// Also report utilisation per logical core (`cpu_per_core`). Default `true`.
    pub per_core: bool,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions { per_core: true }
    }
}

/// Cumulative CPU time counters of one `cpu` line of `/proc/stat`, in clock
/// ticks (USER_HZ) since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time in user mode (includes guest time).
    pub user: u64,
    /// Time in user mode at low priority (includes guest_nice time).
    pub nice: u64,
    /// Time in kernel mode.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Idle time while waiting for I/O.
    pub iowait: u64,
    /// Time servicing hardware interrupts.
    pub irq: u64,
    /// Time servicing soft interrupts.
    pub softirq: u64,
    /// Time stolen by the hypervisor for other guests.
    pub steal: u64,
}

impl CpuTimes {
    /// Idle time including iowait.
    pub fn idle_total(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    /// All time accounted (guest time excluded: it is already inside user/nice).
    pub fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Percent of time busy between `earlier` and `self`, in 0..=100; 0 when no
    /// time passed (counters are per tick, so two reads within one tick look
    /// identical).
    pub fn usage_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total().saturating_sub(earlier.total());
        if total == 0 {
            return 0.0;
        }
        let idle = self.idle_total().saturating_sub(earlier.idle_total());
        let busy = total.saturating_sub(idle);
        (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    }
}

/// The counters of one logical core (`cpuN` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreTimes {
    /// The core's index, `N` of `cpuN`.
    pub index: u32,
    /// Its counters.
    pub times: CpuTimes,
}

fn parse_times(
    fields: &mut std::str::SplitAsciiWhitespace<'_>,
    line: usize,
) -> Result<CpuTimes, ParseError> {
    let mut v = [0u64; 8];
    let mut n = 0;
    for (slot, field) in v.iter_mut().zip(fields) {
        *slot = field.parse().map_err(|_| {
            ParseError::malformed(
                PROC_STAT,
                line,
                format!("counter {field:?} is not a number"),
            )
        })?;
        n += 1;
    }
    // Kernels before 2.6 have only user, nice, system and idle.
    if n < 4 {
        return Err(ParseError::malformed(
            PROC_STAT,
            line,
            format!("{n} counters, at least 4 expected"),
        ));
    }
    Ok(CpuTimes {
        user: v[0],
        nice: v[1],
        system: v[2],
        idle: v[3],
        iowait: v[4],
        irq: v[5],
        softirq: v[6],
        steal: v[7],
    })
}

/// Parses the `cpu` lines of `/proc/stat` text: returns the aggregate line and
/// fills `cores` (cleared first) with one entry per `cpuN` line, in file order.
pub fn parse_proc_stat(text: &str, cores: &mut Vec<CoreTimes>) -> Result<CpuTimes, ParseError> {
    cores.clear();
    let mut total = None;
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("cpu") else {
            if total.is_some() {
                break; // the cpu lines come first; the rest is not ours
            }
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        if rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            total = Some(parse_times(&mut fields, i + 1)?);
        } else {
            let id = fields.next().unwrap_or_default();
            let index = id.parse::<u32>().map_err(|_| {
                ParseError::malformed(PROC_STAT, i + 1, format!("cpu{id} is not a core number"))
            })?;
            let times = parse_times(&mut fields, i + 1)?;
            cores.push(CoreTimes { index, times });
        }
    }
    total.ok_or(ParseError::Missing {
        file: PROC_STAT,
        what: "aggregate \"cpu\" line",
    })
}

/// Fills `cpu_usage` (whole host) and `cpu_per_core`, in percent over the last
/// interval. Primed at construction, so the first `collect` one interval later
/// already covers a real interval.
#[derive(Debug)]
pub struct CpuCollector {
    options: CpuOptions,
    buf: ReadBuf,
    prev: Option<CpuTimes>,
    prev_cores: Vec<CoreTimes>,
    cores: Vec<CoreTimes>,
}

impl CpuCollector {
    /// The registered name.
    pub const NAME: &'static str = "cpu";

    /// A collector with `options`, primed with a first reading of `/proc/stat`
    /// (a failure there is reported by the first `collect`).
    pub fn new(options: CpuOptions) -> Self {
        let mut c = CpuCollector {
            options,
            buf: ReadBuf::with_capacity(4096),
            prev: None,
            prev_cores: Vec::new(),
            cores: Vec::new(),
        };
        match c.read() {
            Ok(t) => {
                c.prev = Some(t);
                std::mem::swap(&mut c.cores, &mut c.prev_cores);
            }
            Err(e) => {
                debug!(error = %e, "cpu collector: priming failed; retrying at the first interval")
            }
        }
        c
    }

    fn read(&mut self) -> Result<CpuTimes, CollectorError> {
        self.buf.read_path(PROC_STAT)?;
        Ok(parse_proc_stat(&self.buf.text(), &mut self.cores)?)
    }
}

impl Default for CpuCollector {
    fn default() -> Self {
        Self::new(CpuOptions::default())
    }
}

impl Collector for CpuCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let now = self.read()?;
        let Some(prev) = self.prev.replace(now) else {
            std::mem::swap(&mut self.cores, &mut self.prev_cores);
            return Err(CollectorError::Failed(
                "no earlier /proc/stat reading to compare with yet; CPU usage starts at the next interval"
                    .into(),
            ));
        };
        snapshot.cpu_usage = now.usage_since(&prev);
        if self.options.per_core {
            let mut per_core = Vec::with_capacity(self.cores.len());
            for (i, core) in self.cores.iter().enumerate() {
                // Same position almost always; search only after a hot-plug.
                let before = match self.prev_cores.get(i) {
                    Some(p) if p.index == core.index => Some(p),
                    _ => self.prev_cores.iter().find(|p| p.index == core.index),
                };
                // A core that just came online has no interval yet: 0 for one sample.
                per_core.push(before.map_or(0.0, |p| core.times.usage_since(&p.times)));
            }
            snapshot.cpu_per_core = per_core;
        }
        std::mem::swap(&mut self.cores, &mut self.prev_cores);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
cpu  92974 0 10957 51033 456 0 114 30 0 0
cpu0 45539 0 5247 26811 98 0 22 11 0 0
cpu1 47434 0 5709 24222 358 0 91 19 0 0
intr 749315 0 0 0 0 0 0 0 0 0 0
ctxt 1223683
btime 1763603280
processes 5071
procs_running 2
";

    #[test]
    fn parses_aggregate_and_cores() {
        let mut cores = Vec::new();
        let total = parse_proc_stat(SAMPLE, &mut cores).unwrap();
        assert_eq!(total.user, 92974);
        assert_eq!(total.system, 10957);
        assert_eq!(total.idle, 51033);
        assert_eq!(total.iowait, 456);
        assert_eq!(total.softirq, 114);
        assert_eq!(total.steal, 30);
        assert_eq!(cores.len(), 2);
        assert_eq!(cores[1].index, 1);
        assert_eq!(cores[1].times.user, 47434);
        assert_eq!(total.total(), 92974 + 10957 + 51033 + 456 + 114 + 30);
    }

    #[test]
    fn old_kernels_with_four_counters_and_offline_cores() {
        let mut cores = Vec::new();
        let text = "cpu 10 0 10 80\ncpu0 5 0 5 40\ncpu3 5 0 5 40\npage 1 2\n";
        let total = parse_proc_stat(text, &mut cores).unwrap();
        assert_eq!(total.total(), 100);
        assert_eq!(
            cores.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 3]
        );
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_line() {
        let mut cores = Vec::new();
        let err = parse_proc_stat("cpu 1 2 x 4\n", &mut cores).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(err.to_string().contains("\"x\""), "{err}");
        assert!(parse_proc_stat("cpu 1 2\n", &mut cores).is_err());
        assert!(parse_proc_stat("cpuX 1 2 3 4\ncpu 1 2 3 4\n", &mut cores).is_err());
        let err = parse_proc_stat("intr 1 2 3\n", &mut cores).unwrap_err();
        assert!(matches!(err, ParseError::Missing { .. }), "{err}");
        assert!(parse_proc_stat("", &mut cores).is_err());
    }

    #[test]
    fn usage_counts_iowait_as_idle_and_steal_as_busy() {
        let a = CpuTimes {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let b = CpuTimes {
            user: 130,
            system: 10,
            idle: 150,
            iowait: 5,
            steal: 5,
            ..Default::default()
        };
        // total delta 30+10+50+5+5 = 100, idle delta 55 -> 45 % busy
        assert!((b.usage_since(&a) - 45.0).abs() < 1e-9);
        assert_eq!(a.usage_since(&a), 0.0);
        // counters going backwards never yield a negative or >100 figure
        assert_eq!(a.usage_since(&b), 0.0);
        let c = CpuTimes { iowait: 0, ..b };
        let u = c.usage_since(&b);
        assert!((0.0..=100.0).contains(&u));
    }
}
