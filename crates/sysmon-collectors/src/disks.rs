//! Per block device I/O from `/proc/diskstats`: operations, bytes, time spent,
//! requests in flight and busy time as counters since boot, plus per-interval
//! IOPS, average latency per operation and utilisation (`disks`).
//!
//! Whole disks are listed by default; partitions and device-mapper / md
//! devices can be added (`partitions`, `device_mapper`). loop, ram and zram
//! devices are never listed: they are memory or files, not devices that stall.
//! A whole disk is told apart from a partition through `/sys/block` as the
//! `disk` collector does (it shares that collector's parser and classifier).
//!
//! Latency is `Δ(time spent reading) / Δ(reads completed)` over the interval,
//! as `iostat`'s `r_await`; utilisation is `Δ(io time) / Δ(wall time)`, as
//! `iostat`'s `%util` (on devices that serve requests in parallel, such as
//! NVMe, 100 % means busy, not saturated).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;
use sysmon_core::{BlockDevice, Collector, CollectorError, Snapshot};

use crate::disk::{parse_diskstats, Classifier, DiskStat, PROC_DISKSTATS, SYS_BLOCK};
use crate::util::{check_patterns, matches_any, ReadBuf};

/// Most devices listed per snapshot (the wire format's bound).
pub const MAX_DEVICES: usize = 64;

/// Options of the `disks` collector (`[collectors.disks]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisksOptions {
    /// List partitions (`sda1`, `nvme0n1p2`) too. Default false.
    pub partitions: bool,
    /// List device-mapper and md devices (`dm-0`, `md127`: LVM, LUKS, RAID)
    /// too. Default false.
    pub device_mapper: bool,
    /// Devices not to list, by name or prefix pattern (`"sdb"`, `"nbd*"`).
    pub exclude_devices: Vec<String>,
}

/// A device's counters as of the previous interval, and the sample that saw it.
#[derive(Debug, Clone, Copy)]
struct Previous {
    counters: DiskStatCounters,
    seen: u64,
}

/// A device's entry for the current counters `s`, with rates over `secs` from
/// `prev` (the same device's counters one interval earlier) when known.
pub fn block_device(s: &DiskStat<'_>, rate_from: Option<(&DiskStatCounters, f64)>) -> BlockDevice {
    let mut d = BlockDevice {
        name: s.name.to_string(),
        read_ops: s.read_ops,
        write_ops: s.write_ops,
        read_bytes: s.read_bytes,
        write_bytes: s.write_bytes,
        read_time_ms: s.read_time_ms,
        write_time_ms: s.write_time_ms,
        in_flight: s.in_flight,
        io_time_ms: s.io_time_ms,
        ..BlockDevice::default()
    };
    if let Some((p, secs)) = rate_from.filter(|(_, secs)| *secs > 0.0) {
        let reads = s.read_ops.saturating_sub(p.read_ops);
        let writes = s.write_ops.saturating_sub(p.write_ops);
        let latency = |ms: u64, ops: u64| {
            if ops == 0 {
                0.0
            } else {
                ms as f64 / ops as f64
            }
        };
        d.read_iops = Some(reads as f64 / secs);
        d.write_iops = Some(writes as f64 / secs);
        d.read_latency_ms = Some(latency(
            s.read_time_ms.saturating_sub(p.read_time_ms),
            reads,
        ));
        d.write_latency_ms = Some(latency(
            s.write_time_ms.saturating_sub(p.write_time_ms),
            writes,
        ));
        let busy_ms = s.io_time_ms.saturating_sub(p.io_time_ms) as f64;
        d.utilization_percent = Some((busy_ms / (secs * 1000.0) * 100.0).min(100.0));
    }
    d
}

/// The counters of one device that rates are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskStatCounters {
    /// Reads completed.
    pub read_ops: u64,
    /// Writes completed.
    pub write_ops: u64,
    /// Milliseconds spent reading.
    pub read_time_ms: u64,
    /// Milliseconds spent writing.
    pub write_time_ms: u64,
    /// Milliseconds busy.
    pub io_time_ms: u64,
}

impl From<&DiskStat<'_>> for DiskStatCounters {
    fn from(s: &DiskStat<'_>) -> Self {
        DiskStatCounters {
            read_ops: s.read_ops,
            write_ops: s.write_ops,
            read_time_ms: s.read_time_ms,
            write_time_ms: s.write_time_ms,
            io_time_ms: s.io_time_ms,
        }
    }
}

/// Whether a device is listed: never loop/ram/zram or an excluded name;
/// device-mapper and md when asked; whole disks; partitions when asked.
fn listed(options: &DisksOptions, classifier: &mut Classifier, name: &str) -> bool {
    const NEVER: [&str; 3] = ["loop", "ram", "zram"];
    if NEVER.iter().any(|p| name.starts_with(p)) || matches_any(&options.exclude_devices, name) {
        return false;
    }
    if name.starts_with("dm-") || name.starts_with("md") {
        return options.device_mapper;
    }
    classifier.is_whole_disk(name) || options.partitions
}

/// Fills `disks`: one entry per listed block device, rates from the second
/// sample on (primed at construction, so the first `collect` has them).
#[derive(Debug)]
pub struct DisksCollector {
    options: DisksOptions,
    source: PathBuf,
    buf: ReadBuf,
    classifier: Classifier,
    previous: HashMap<String, Previous>,
    generation: u64,
    last: Option<Instant>,
}

impl DisksCollector {
    /// The registered name.
    pub const NAME: &'static str = "disks";

    /// A collector with `options`, primed with a first reading.
    pub fn new(options: DisksOptions) -> Result<Self, CollectorError> {
        Self::with_sources(options, PROC_DISKSTATS.into(), SYS_BLOCK.into())
    }

    /// A collector reading `diskstats` and classifying devices under `sys_block`.
    pub fn with_sources(
        options: DisksOptions,
        diskstats: PathBuf,
        sys_block: PathBuf,
    ) -> Result<Self, CollectorError> {
        check_patterns(Self::NAME, "exclude_devices", &options.exclude_devices)?;
        let mut c = DisksCollector {
            options,
            source: diskstats,
            buf: ReadBuf::with_capacity(4096),
            classifier: Classifier::new(sys_block),
            previous: HashMap::new(),
            generation: 0,
            last: None,
        };
        let _ = c.sample(); // priming; a failure shows at the first interval
        Ok(c)
    }

    fn sample(&mut self) -> Result<Vec<BlockDevice>, CollectorError> {
        let now = Instant::now();
        let secs = self.last.map(|t| now.duration_since(t).as_secs_f64());
        self.buf.read_path(&self.source)?;
        let text = self.buf.text();
        self.generation = self.generation.wrapping_add(1);
        let mut out = Vec::new();
        for stat in parse_diskstats(&text) {
            let stat = stat?;
            if out.len() >= MAX_DEVICES {
                break;
            }
            let listed = listed(&self.options, &mut self.classifier, stat.name);
            if !listed {
                continue;
            }
            let prev = self.previous.get(stat.name).map(|p| p.counters);
            out.push(block_device(&stat, prev.as_ref().zip(secs)));
            let entry = Previous {
                counters: DiskStatCounters::from(&stat),
                seen: self.generation,
            };
            match self.previous.get_mut(stat.name) {
                Some(p) => *p = entry,
                None => {
                    self.previous.insert(stat.name.to_string(), entry);
                }
            }
        }
        let generation = self.generation;
        self.previous.retain(|_, p| p.seen == generation);
        self.last = Some(now);
        Ok(out)
    }
}

impl Collector for DisksCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        snapshot.disks = self.sample()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
   7       0 loop0 57 0 2104 14 0 0 0 0 0 24 14 0 0 0 0 0 0
   8       0 sda 1000 10 8000 500 2000 20 16000 900 2 1500 1400 0 0 0 0 100 50
   8       1 sda1 900 10 7000 450 1900 20 15000 850 0 1400 1300 0 0 0 0 0 0
 253       0 dm-0 100 0 1000 50 100 0 1000 50 0 100 100 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn rates_latency_and_utilisation_from_two_samples() {
        let stat = parse_diskstats(SAMPLE).nth(1).unwrap().unwrap();
        let first = block_device(&stat, None);
        assert_eq!(
            (
                first.read_ops,
                first.write_ops,
                first.read_bytes,
                first.write_bytes
            ),
            (1000, 2000, 8000 * 512, 16000 * 512)
        );
        assert_eq!(
            (
                first.read_time_ms,
                first.write_time_ms,
                first.in_flight,
                first.io_time_ms
            ),
            (500, 900, 2, 1500)
        );
        assert_eq!(first.read_iops, None);
        let prev = DiskStatCounters {
            read_ops: 900,
            write_ops: 2000,
            read_time_ms: 300,
            write_time_ms: 900,
            io_time_ms: 1000,
        };
        let d = block_device(&stat, Some((&prev, 2.0)));
        assert_eq!(d.read_iops, Some(50.0)); // 100 reads in 2 s
        assert_eq!(d.write_iops, Some(0.0));
        assert_eq!(d.read_latency_ms, Some(2.0)); // 200 ms over 100 reads
        assert_eq!(d.write_latency_ms, Some(0.0)); // no writes: no latency
        assert_eq!(d.utilization_percent, Some(25.0)); // 500 ms busy in 2 s
        let busy = DiskStatCounters {
            io_time_ms: 0,
            ..prev
        };
        assert_eq!(
            block_device(&stat, Some((&busy, 1.0))).utilization_percent,
            Some(100.0),
            "clamped"
        );
    }

    fn fixture(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sysmon-disks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let block = dir.join("block");
        std::fs::create_dir_all(&block).unwrap();
        std::os::unix::fs::symlink("../devices/pci0000:00/block/sda", block.join("sda")).unwrap();
        std::os::unix::fs::symlink("../devices/virtual/block/dm-0", block.join("dm-0")).unwrap();
        std::fs::write(dir.join("diskstats"), SAMPLE).unwrap();
        dir
    }

    #[test]
    fn whole_disks_by_default_partitions_and_mapper_on_request() {
        let dir = fixture("kinds");
        let names = |o: DisksOptions| {
            let mut c =
                DisksCollector::with_sources(o, dir.join("diskstats"), dir.join("block")).unwrap();
            let mut s = Snapshot::default();
            c.collect(&mut s).unwrap();
            assert!(s.disks.iter().all(|d| d.read_iops.is_some()), "primed");
            s.disks.into_iter().map(|d| d.name).collect::<Vec<_>>()
        };
        assert_eq!(names(DisksOptions::default()), ["sda"]);
        let all = DisksOptions {
            partitions: true,
            device_mapper: true,
            ..DisksOptions::default()
        };
        assert_eq!(names(all.clone()), ["sda", "sda1", "dm-0"]);
        let excluded = DisksOptions {
            exclude_devices: vec!["sd*".into()],
            ..all
        };
        assert_eq!(names(excluded), ["dm-0"]);
        std::fs::write(dir.join("diskstats"), "8 0 sda 1 2 x\n").unwrap();
        let mut c = DisksCollector::with_sources(
            DisksOptions::default(),
            dir.join("diskstats"),
            dir.join("block"),
        )
        .unwrap();
        assert!(c.collect(&mut Snapshot::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
