//! Small helpers shared by the collectors: buffer-reusing file reads, name
//! patterns and per-device counter deltas.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use sysmon_core::CollectorError;

/// A reusable read buffer for small kernel text files.
///
/// Reads with plain `read` calls into memory kept between intervals: no
/// allocation once warm, and none of the `statx`/`lseek` calls that
/// `fs::read_to_string` makes to size its buffer (useless on `/proc`, whose
/// files report size 0).
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    bytes: Vec<u8>,
    len: usize,
}

impl ReadBuf {
    /// A buffer starting at `capacity` bytes (it grows as needed).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        ReadBuf {
            bytes: vec![0; capacity.max(64)],
            len: 0,
        }
    }

    /// Opens `path`, reads it whole and closes it.
    pub(crate) fn read_path(&mut self, path: impl AsRef<Path>) -> Result<(), CollectorError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|source| io_error(path, source))?;
        self.read_file(&mut file)
            .map_err(|source| io_error(path, source))
    }

    /// Reads an open file from its current position to its end.
    pub(crate) fn read_file(&mut self, file: &mut File) -> std::io::Result<()> {
        self.len = 0;
        loop {
            if self.len == self.bytes.len() {
                let grown = self.bytes.len() * 2;
                self.bytes.resize(grown, 0);
            }
            match file.read(&mut self.bytes[self.len..]) {
                Ok(0) => return Ok(()),
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads an open `/proc` file whole from offset 0 with one `pread`,
    /// leaving it open: the kernel regenerates its contents on each read.
    ///
    /// A read that leaves room in the buffer is taken as the whole file (a
    /// `/proc/<pid>` seq file is produced in one go); asking again for the end
    /// of file would make the kernel generate the whole text a second time. A
    /// full buffer is grown and the read repeated.
    pub(crate) fn reread_file(&mut self, file: &File) -> std::io::Result<()> {
        loop {
            match read_at_start(file, &mut self.bytes) {
                Ok(n) if n < self.bytes.len() => {
                    self.len = n;
                    return Ok(());
                }
                Ok(_) => {
                    let grown = self.bytes.len() * 2;
                    self.bytes.resize(grown, 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes read.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The text read (kernel files are ASCII; stray bytes, as a process may put
    /// in its name, are replaced rather than failing the read).
    pub(crate) fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..self.len])
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CollectorError {
    CollectorError::Io {
        what: path.display().to_string(),
        source,
    }
}

/// One positioned read at offset 0 (`pread`), leaving the file position alone.
#[cfg(unix)]
fn read_at_start(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    file.read_at(buf, 0)
}

/// One positioned read at offset 0 (`ReadFile` with an offset).
#[cfg(windows)]
fn read_at_start(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::windows::fs::FileExt;
    file.seek_read(buf, 0)
}

/// True when `name` matches `pattern`: an exact name, or a prefix followed by
/// `*` (`veth*` matches `veth12ab`; `*` alone matches everything).
pub(crate) fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// True when `name` matches any of `patterns` (see [`matches_pattern`]).
pub(crate) fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches_pattern(p, name))
}

/// Checks that every pattern is usable: non-empty, `*` only at the end.
pub(crate) fn check_patterns(
    collector: &str,
    option: &str,
    patterns: &[String],
) -> Result<(), CollectorError> {
    for p in patterns {
        let body = p.strip_suffix('*').unwrap_or(p);
        if p.is_empty() || body.contains('*') {
            return Err(CollectorError::Config {
                name: collector.to_string(),
                message: format!(
                    "`{option}`: pattern {p:?} is not a name or a prefix followed by `*`"
                ),
            });
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Entry {
    values: [u64; 2],
    seen: u64,
}

/// The previous value of a pair of cumulative counters per device, so a rate
/// is computed from the devices present in both samples: a device that appears
/// or disappears (a container's veth, a hot-plugged disk) never makes a rate
/// jump or go negative.
#[derive(Debug, Default)]
pub(crate) struct PairCounters {
    entries: HashMap<String, Entry>,
    generation: u64,
    last: Option<Instant>,
}

/// What [`PairCounters::sample`] returns: the pair summed over devices and, from
/// the second sample on, the summed increases with the seconds they took.
pub(crate) type PairSample = ([u64; 2], Option<([u64; 2], f64)>);

impl PairCounters {
    /// One sample over `devices` (`name`, pair of cumulative counters): the
    /// totals, and the increases since the previous sample over the devices
    /// present in both. A device error ends the sample early and leaves the
    /// previous instant in place.
    pub(crate) fn sample<'a, E>(
        &mut self,
        devices: impl IntoIterator<Item = Result<(&'a str, [u64; 2]), E>>,
    ) -> Result<PairSample, E> {
        let now = Instant::now();
        let mut total = [0u64; 2];
        let mut delta = [0u64; 2];
        self.begin();
        for device in devices {
            let (name, values) = device?;
            total[0] = total[0].saturating_add(values[0]);
            total[1] = total[1].saturating_add(values[1]);
            if let Some([a, b]) = self.update(name, values) {
                delta[0] = delta[0].saturating_add(a);
                delta[1] = delta[1].saturating_add(b);
            }
        }
        self.end();
        let elapsed = self
            .last
            .replace(now)
            .map(|t| now.duration_since(t).as_secs_f64());
        Ok((total, elapsed.filter(|s| *s > 0.0).map(|s| (delta, s))))
    }

    /// Starts a new sample.
    pub(crate) fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Records `values` for `name` in this sample and returns the increase since
    /// the previous sample, or `None` for a device not seen before. A counter
    /// that went down (device re-created, counter reset) counts as no increase.
    pub(crate) fn update(&mut self, name: &str, values: [u64; 2]) -> Option<[u64; 2]> {
        let generation = self.generation;
        match self.entries.get_mut(name) {
            Some(e) => {
                let delta = [
                    values[0].saturating_sub(e.values[0]),
                    values[1].saturating_sub(e.values[1]),
                ];
                e.values = values;
                e.seen = generation;
                Some(delta)
            }
            None => {
                self.entries.insert(
                    name.to_string(),
                    Entry {
                        values,
                        seen: generation,
                    },
                );
                None
            }
        }
    }

    /// Ends the sample: forgets devices that were not in it.
    pub(crate) fn end(&mut self) {
        let generation = self.generation;
        self.entries.retain(|_, e| e.seen == generation);
    }

    /// How many devices are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buf_reads_whole_files_of_any_size() {
        let path = std::env::temp_dir().join(format!("sysmon-readbuf-{}", std::process::id()));
        let big: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &big).unwrap();
        let mut b = ReadBuf::with_capacity(16);
        b.read_path(&path).unwrap();
        assert_eq!(b.text(), big);
        std::fs::write(&path, "short\n").unwrap();
        b.read_path(&path).unwrap();
        assert_eq!(b.text(), "short\n");
        let f = File::open(&path).unwrap();
        b.reread_file(&f).unwrap();
        b.reread_file(&f).unwrap();
        assert_eq!(b.text(), "short\n");
        let mut small = ReadBuf::with_capacity(16);
        std::fs::write(&path, &big).unwrap();
        small.reread_file(&f).unwrap();
        assert_eq!(small.text(), big);
        std::fs::write(&path, b"bad \xff byte").unwrap();
        b.read_path(&path).unwrap();
        assert_eq!(b.text(), "bad \u{fffd} byte");
        std::fs::remove_file(&path).unwrap();
        let err = b.read_path(&path).unwrap_err();
        assert!(err.to_string().contains("sysmon-readbuf"), "{err}");
    }

    #[test]
    fn reread_regenerates_proc_files() {
        let f = File::open("/proc/self/stat").unwrap();
        let mut b = ReadBuf::with_capacity(64);
        b.reread_file(&f).unwrap();
        let first = b.text().into_owned();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(60);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        b.reread_file(&f).unwrap();
        assert!(first.starts_with(&format!("{} (", std::process::id())));
        assert_ne!(b.text(), first, "utime must have moved");
    }

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        assert!(matches_pattern("lo", "lo"));
        assert!(!matches_pattern("lo", "lo0"));
        assert!(matches_pattern("veth*", "veth12ab"));
        assert!(!matches_pattern("veth*", "eth0"));
        assert!(matches_pattern("*", "anything"));
        let pats = vec!["lo".to_string(), "docker*".to_string()];
        assert!(matches_any(&pats, "docker0"));
        assert!(!matches_any(&pats, "eth0"));
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        assert!(check_patterns(
            "network",
            "exclude_interfaces",
            &["lo".into(), "veth*".into()]
        )
        .is_ok());
        let err = check_patterns("network", "exclude_interfaces", &["*eth".into()]).unwrap_err();
        assert!(err.to_string().contains("collector `network`"), "{err}");
        assert!(check_patterns("network", "exclude_interfaces", &[String::new()]).is_err());
    }

    #[test]
    fn deltas_only_for_devices_in_both_samples() {
        let mut c = PairCounters::default();
        c.begin();
        assert_eq!(c.update("eth0", [100, 10]), None);
        assert_eq!(c.update("veth1", [5, 5]), None);
        c.end();
        c.begin();
        assert_eq!(c.update("eth0", [150, 12]), Some([50, 2]));
        // veth1 gone, a new device appears
        assert_eq!(c.update("eth1", [1_000_000, 0]), None);
        c.end();
        assert_eq!(c.len(), 2);
        c.begin();
        // eth0 re-created: counters reset, no negative delta
        assert_eq!(c.update("eth0", [3, 1]), Some([0, 0]));
        c.end();
        assert_eq!(c.len(), 1);
    }
}
