//! Disk I/O of whole disks from `/proc/diskstats`: cumulative bytes since boot
//! (`disk_io`) and bytes per second over the last interval (`disk_rate`).
//!
//! Only whole physical disks are counted, so no byte is counted twice: a
//! partition's I/O is already in its disk's counters, and device-mapper, md
//! RAID, loop, ram and zram devices sit on top of (or beside) real disks. A
//! device is a whole physical disk when `/sys/block/<name>` exists (partitions
//! are not listed there) and does not resolve under `/sys/devices/virtual/`
//! (where loop, ram, zram, dm-* and md* live). Without a readable `/sys/block`,
//! a name-based rule decides ([`is_whole_disk_by_name`]).
//!
//! sysinfo is not used here: its disk I/O counters are per mounted partition.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::PathBuf;

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, DiskIo, IoRate, Snapshot};
use tracing::debug;

use crate::error::ParseError;
use crate::util::{check_patterns, matches_any, PairCounters, ReadBuf};

pub(crate) const PROC_DISKSTATS: &str = "/proc/diskstats";
pub(crate) const SYS_BLOCK: &str = "/sys/block";
/// `/proc/diskstats` counts 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: u64 = 512;

/// Options of the `disk` collector (`[collectors.disk]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskOptions {
    /// Whole disks not to count, by name or prefix pattern (`"sdb"`, `"nbd*"`).
    /// Default: none (partitions and virtual devices are never counted anyway).
    pub exclude_devices: Vec<String>,
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat<'a> {
    /// The kernel's device name, e.g. `sda`, `nvme0n1p2`.
    pub name: &'a str,
    /// Reads completed since boot.
    pub read_ops: u64,
    /// Writes completed since boot.
    pub write_ops: u64,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub write_bytes: u64,
    /// Milliseconds spent reading since boot (0 in the old partition format).
    pub read_time_ms: u64,
    /// Milliseconds spent writing since boot (0 in the old partition format).
    pub write_time_ms: u64,
    /// Requests in flight now (0 in the old partition format).
    pub in_flight: u64,
    /// Milliseconds the device was busy since boot (0 in the old partition format).
    pub io_time_ms: u64,
}

/// Parses `/proc/diskstats` text line by line.
pub fn parse_diskstats(text: &str) -> impl Iterator<Item = Result<DiskStat<'_>, ParseError>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| parse_diskstats_line(line, i + 1))
}

fn parse_diskstats_line(line: &str, n: usize) -> Result<DiskStat<'_>, ParseError> {
    let mut f = line.split_ascii_whitespace();
    let (Some(_major), Some(_minor), Some(name)) = (f.next(), f.next(), f.next()) else {
        return Err(ParseError::malformed(
            PROC_DISKSTATS,
            n,
            "fewer than 3 fields",
        ));
    };
    let mut stats = [0u64; 10];
    let mut count = 0;
    for (slot, field) in stats.iter_mut().zip(f) {
        *slot = field.parse().map_err(|_| {
            ParseError::malformed(
                PROC_DISKSTATS,
                n,
                format!("{name}: counter {field:?} is not a number"),
            )
        })?;
        count += 1;
    }
    let sectors = |s: u64| s.saturating_mul(SECTOR_BYTES);
    match count {
        // Kernels 2.6.25 and older list partitions with 4 counters:
        // reads, sectors read, writes, sectors written.
        4 => Ok(DiskStat {
            name,
            read_ops: stats[0],
            write_ops: stats[2],
            read_bytes: sectors(stats[1]),
            write_bytes: sectors(stats[3]),
            read_time_ms: 0,
            write_time_ms: 0,
            in_flight: 0,
            io_time_ms: 0,
        }),
        // reads, merged, sectors read, ms reading, writes, merged, sectors
        // written, ms writing, in flight, ms doing I/O, …
        10 => Ok(DiskStat {
            name,
            read_ops: stats[0],
            write_ops: stats[4],
            read_bytes: sectors(stats[2]),
            write_bytes: sectors(stats[6]),
            read_time_ms: stats[3],
            write_time_ms: stats[7],
            in_flight: stats[8],
            io_time_ms: stats[9],
        }),
        _ => Err(ParseError::malformed(
            PROC_DISKSTATS,
            n,
            format!("{name}: {count} counters, 4 or at least 10 expected"),
        )),
    }
}

/// Decides from the target of the `/sys/block/<name>` symlink whether the device
/// is a physical disk (e.g. `../devices/pci0000:00/.../block/sda`) rather than a
/// virtual one (`../devices/virtual/block/loop0`, `dm-0`, `md0`, `zram0`).
pub fn is_whole_disk_sysfs(link_target: &str) -> bool {
    !link_target.contains("/virtual/")
}

/// Name-based fallback when `/sys/block` cannot be read: virtual devices (loop,
/// ram, zram, dm-, md, nbd) and partitions (`sda1`, `vdb2`, `xvda1`,
/// `nvme0n1p1`, `mmcblk0p1`) are not whole disks; anything else is.
pub fn is_whole_disk_by_name(name: &str) -> bool {
    const VIRTUAL: [&str; 6] = ["loop", "ram", "zram", "dm-", "md", "nbd"];
    if VIRTUAL.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    for family in ["nvme", "mmcblk"] {
        if let Some(rest) = name.strip_prefix(family) {
            // nvme0n1p2 / mmcblk0p1: a `p` followed by digits at the end.
            return !rest.rsplit_once('p').is_some_and(|(_, part)| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
            });
        }
    }
    for family in ["sd", "hd", "vd", "xvd"] {
        if let Some(rest) = name.strip_prefix(family) {
            let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
            if !letters.is_empty() && letters.bytes().all(|b| b.is_ascii_lowercase()) {
                return letters.len() == rest.len();
            }
        }
    }
    true
}

/// Classifies devices once each and remembers the answer.
#[derive(Debug)]
pub(crate) struct Classifier {
    sys_block: PathBuf,
    sysfs_usable: bool,
    cache: HashMap<String, bool>,
}

impl Classifier {
    pub(crate) fn new(sys_block: PathBuf) -> Self {
        Classifier {
            sysfs_usable: sys_block.is_dir(),
            sys_block,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn is_whole_disk(&mut self, name: &str) -> bool {
        if let Some(&known) = self.cache.get(name) {
            return known;
        }
        let whole = if self.sysfs_usable {
            // sysfs writes `/` in device names (cciss/c0d0) as `!`.
            let path = self.sys_block.join(name.replace('/', "!"));
            match std::fs::read_link(&path) {
                Ok(target) => is_whole_disk_sysfs(&target.to_string_lossy()),
                Err(e) if e.kind() == ErrorKind::NotFound => false, // a partition
                Err(_) => is_whole_disk_by_name(name),
            }
        } else {
            is_whole_disk_by_name(name)
        };
        if self.cache.len() >= 4096 {
            self.cache.clear(); // bounded, whatever the device churn
        }
        self.cache.insert(name.to_string(), whole);
        whole
    }
}

/// Fills `disk_io` (cumulative bytes since boot, whole disks only) and
/// `disk_rate` (bytes per second over the last interval). Primed at
/// construction, so the first `collect` already has a rate.
#[derive(Debug)]
pub struct DiskCollector {
    options: DiskOptions,
    source: PathBuf,
    buf: ReadBuf,
    classifier: Classifier,
    counters: PairCounters,
}

impl DiskCollector {
    /// The registered name.
    pub const NAME: &'static str = "disk";

    /// A collector with `options`, primed with a first reading.
    pub fn new(options: DiskOptions) -> Result<Self, CollectorError> {
        Self::with_sources(options, PROC_DISKSTATS.into(), SYS_BLOCK.into())
    }

    /// A collector reading `diskstats` and classifying devices under `sys_block`
    /// (for tests and for hosts whose `/proc` and `/sys` are mounted elsewhere).
    pub fn with_sources(
        options: DiskOptions,
        diskstats: PathBuf,
        sys_block: PathBuf,
    ) -> Result<Self, CollectorError> {
        check_patterns(Self::NAME, "exclude_devices", &options.exclude_devices)?;
        let mut c = DiskCollector {
            options,
            source: diskstats,
            buf: ReadBuf::with_capacity(4096),
            classifier: Classifier::new(sys_block),
            counters: PairCounters::default(),
        };
        if let Err(e) = c.sample() {
            debug!(error = %e, "disk collector: priming failed; retrying at the first interval");
        }
        Ok(c)
    }

    /// Reads the counters: cumulative totals and, when a previous sample exists,
    /// the increase with the seconds it covers.
    fn sample(&mut self) -> Result<(DiskIo, Option<(DiskIo, f64)>), CollectorError> {
        self.buf.read_path(&self.source)?;
        let text = self.buf.text();
        let (classifier, excluded) = (&mut self.classifier, &self.options.exclude_devices);
        let disks = parse_diskstats(&text).filter_map(|stat| match stat {
            Err(e) => Some(Err(e)),
            Ok(s) if !classifier.is_whole_disk(s.name) || matches_any(excluded, s.name) => None,
            Ok(s) => Some(Ok((s.name, [s.read_bytes, s.write_bytes]))),
        });
        let ([read, write], rate) = self.counters.sample(disks)?;
        let rate = rate.map(|([r, w], secs)| (DiskIo { read: r, write: w }, secs));
        Ok((DiskIo { read, write }, rate))
    }
}

impl Collector for DiskCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let (total, rate) = self.sample()?;
        snapshot.disk_io = total;
        snapshot.disk_rate = rate.map(|(d, secs)| IoRate {
            read: d.read as f64 / secs,
            write: d.write as f64 / secs,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
   7       0 loop0 57 0 2104 14 0 0 0 0 0 24 14 0 0 0 0 0 0
   8       0 sda 1000 10 8000 500 2000 20 16000 900 0 1500 1400 0 0 0 0 100 50
   8       1 sda1 900 10 7000 450 1900 20 15000 850 0 1400 1300 0 0 0 0 0 0
   8       2 sda2 100 0 1000 50 100 0 1000 50 0 100 100 0 0 0 0 0 0
 259       0 nvme0n1 10 0 100 1 20 0 200 2 0 3 3
 259       1 nvme0n1p1 10 0 100 1 20 0 200 2 0 3 3
 253       0 dm-0 100 0 1000 50 100 0 1000 50 0 100 100 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
 252       0 zram0 5 0 40 0 5 0 40 0 0 0 0
";

    #[test]
    fn parses_every_line_with_sectors_as_bytes() {
        let stats: Vec<_> = parse_diskstats(SAMPLE).collect::<Result<_, _>>().unwrap();
        assert_eq!(stats.len(), 9);
        let sda = stats.iter().find(|s| s.name == "sda").unwrap();
        assert_eq!(sda.read_bytes, 8000 * 512);
        assert_eq!(sda.write_bytes, 16000 * 512);
        // kernel 2.6.25 partition format: reads, sectors read, writes, sectors written
        let old = parse_diskstats("   3    1 hda1 35486 38030 386 3088")
            .next()
            .unwrap()
            .unwrap();
        assert_eq!((old.read_bytes, old.write_bytes), (38030 * 512, 3088 * 512));
    }

    #[test]
    fn malformed_diskstats_is_an_error() {
        let err = parse_diskstats("8 0 sda 1 2 x 4 5 6 7\n")
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("sda"), "{err}");
        assert!(parse_diskstats("8 0\n").next().unwrap().is_err());
        assert!(parse_diskstats("8 0 sda 1 2 3 4 5 6 7\n")
            .next()
            .unwrap()
            .is_err());
    }

    #[test]
    fn whole_disks_by_name() {
        for disk in [
            "sda", "sdab", "vda", "xvdb", "hda", "nvme0n1", "mmcblk0", "sr0",
        ] {
            assert!(is_whole_disk_by_name(disk), "{disk}");
        }
        for not in [
            "sda1",
            "sdab12",
            "vda3",
            "xvda1",
            "nvme0n1p1",
            "mmcblk0p2",
            "loop0",
            "ram1",
            "zram0",
            "dm-0",
            "md127",
            "nbd3",
        ] {
            assert!(!is_whole_disk_by_name(not), "{not}");
        }
    }

    #[test]
    fn whole_disks_by_sysfs_link() {
        assert!(is_whole_disk_sysfs(
            "../devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
        ));
        assert!(!is_whole_disk_sysfs("../devices/virtual/block/loop0"));
        assert!(!is_whole_disk_sysfs("../devices/virtual/block/dm-0"));
    }

    /// A fake `/proc/diskstats` and `/sys/block` in a temporary directory.
    struct Fixture(PathBuf);
    impl Fixture {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("sysmon-disk-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let block = dir.join("block");
            std::fs::create_dir_all(&block).unwrap();
            let link = |name: &str, target: &str| {
                std::os::unix::fs::symlink(target, block.join(name)).unwrap()
            };
            link(
                "sda",
                "../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            );
            link(
                "nvme0n1",
                "../devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1",
            );
            link("loop0", "../devices/virtual/block/loop0");
            link("dm-0", "../devices/virtual/block/dm-0");
            link("ram0", "../devices/virtual/block/ram0");
            link("zram0", "../devices/virtual/block/zram0");
            Fixture(dir)
        }
        fn write(&self, text: &str) {
            std::fs::write(self.0.join("diskstats"), text).unwrap();
        }
        fn collector(&self, options: DiskOptions) -> DiskCollector {
            DiskCollector::with_sources(options, self.0.join("diskstats"), self.0.join("block"))
                .unwrap()
        }
    }
    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn counts_whole_disks_once_and_rates_from_deltas() {
        let fx = Fixture::new("count");
        fx.write(SAMPLE);
        let mut c = fx.collector(DiskOptions::default());
        let mut s = Snapshot::default();
        // sda + nvme0n1 only: not sda1/sda2 (in sda), not dm-0, loop0, ram0, zram0
        c.collect(&mut s).unwrap();
        assert_eq!(s.disk_io.read, (8000 + 100) * 512);
        assert_eq!(s.disk_io.write, (16000 + 200) * 512);
        let rate = s.disk_rate.unwrap();
        assert_eq!((rate.read, rate.write), (0.0, 0.0));

        std::thread::sleep(std::time::Duration::from_millis(50));
        fx.write(
            &SAMPLE
                .replace("sda 1000 10 8000", "sda 1000 10 10048")
                .replace("dm-0 100 0 1000", "dm-0 100 0 900000"),
        );
        c.collect(&mut s).unwrap();
        assert_eq!(s.disk_io.read, (10048 + 100) * 512);
        let rate = s.disk_rate.unwrap();
        // 2048 sectors = 1 MiB in ~50 ms; dm-0's growth is not counted
        assert!(
            rate.read > 1_048_576.0 && rate.read < 1_048_576.0 / 0.045,
            "{rate:?}"
        );
        assert_eq!(rate.write, 0.0);
    }

    #[test]
    fn excluded_and_vanished_devices() {
        let fx = Fixture::new("exclude");
        fx.write(SAMPLE);
        let mut c = fx.collector(DiskOptions {
            exclude_devices: vec!["nvme*".into()],
        });
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        assert_eq!(s.disk_io.read, 8000 * 512);
        // sda unplugged: totals drop, the rate never goes negative
        fx.write(" 259 0 nvme0n1 10 0 100 1 20 0 200 2 0 3 3\n");
        c.collect(&mut s).unwrap();
        assert_eq!(s.disk_io, DiskIo::default());
        assert_eq!(s.disk_rate.unwrap().read, 0.0);
        assert!(DiskCollector::with_sources(
            DiskOptions {
                exclude_devices: vec!["*sd".into()]
            },
            fx.0.join("diskstats"),
            fx.0.join("block")
        )
        .is_err());
    }

    #[test]
    fn unreadable_source_is_a_reported_error() {
        let fx = Fixture::new("missing");
        let mut c = fx.collector(DiskOptions::default());
        let err = c.collect(&mut Snapshot::default()).unwrap_err();
        assert!(err.to_string().contains("diskstats"), "{err}");
    }
}
