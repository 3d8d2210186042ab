//! [`Spool`]: the agent's optional on-disk copy of undelivered samples, so a
//! backlog survives an agent restart (`[agent] spool_dir`, `--spool-dir`).
//!
//! One file per machine, `<dir>/<machine_id>.spool.jsonl`, one native-JSON
//! snapshot per line, oldest first. It is always replaced whole (a temporary
//! file with a name of its own per process and save, fsync, rename, fsync of
//! the directory so the rename itself is durable), so a crash leaves either the
//! old or the new file, never half of one, and two writers never share a
//! temporary file. On start the agent loads it before sampling, so the backlog goes out
//! first and in order; it is removed once everything in it was delivered.
//! A line that does not parse is skipped with a warning, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

use crate::error::CoreError;
use crate::snapshot::Snapshot;

/// The spool file of one machine's agent.
#[derive(Debug, Clone)]
pub struct Spool {
    path: PathBuf,
}

/// Makes a rename or removal in `dir` durable (fsync of the directory; a
/// no-op where directories cannot be opened, as on Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> CoreError {
    move |source| CoreError::Io { context, source }
}

impl Spool {
    /// The spool of `machine_id` in `dir` (created on first save). Characters
    /// other than ASCII letters, digits, `-`, `_` and `.` in the id become `_`.
    pub fn new(dir: impl AsRef<Path>, machine_id: &str) -> Self {
        let safe: String = machine_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Spool {
            path: dir.as_ref().join(format!("{safe}.spool.jsonl")),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the spooled snapshots, oldest first; at most the newest `capacity`
    /// are kept. A missing file is an empty spool; corrupt lines are skipped
    /// and counted in the warning.
    pub fn load(&self, capacity: usize) -> Result<Vec<Snapshot>, CoreError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("reading spool {}", self.path.display()))(e)),
        };
        let mut out = Vec::new();
        let mut corrupt = 0u64;
        let mut first_error = None;
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Snapshot>(line) {
                Ok(s) => out.push(s),
                Err(e) => {
                    corrupt += 1;
                    first_error.get_or_insert_with(|| format!("line {}: {e}", i + 1));
                }
            }
        }
        if corrupt > 0 {
            warn!(
                path = %self.path.display(),
                skipped = corrupt,
                first = first_error.unwrap_or_default(),
                "skipped corrupt lines in the spool"
            );
        }
        let capacity = capacity.max(1);
        if out.len() > capacity {
            let over = out.len() - capacity;
            warn!(path = %self.path.display(), dropped = over,
                  "spool holds more than the buffer capacity; dropping the oldest");
            out.drain(..over);
        }
        Ok(out)
    }

    /// Replaces the spool with `snapshots` (oldest first) atomically; an empty
    /// slice removes it.
    pub fn save(&self, snapshots: &[Snapshot]) -> Result<(), CoreError> {
        if snapshots.is_empty() {
            return self.clear();
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(io(format!("creating spool directory {}", dir.display())))?;
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            SAVES.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut w = std::io::BufWriter::new(file);
            for s in snapshots {
                serde_json::to_writer(&mut w, s)?;
                w.write_all(b"\n")?;
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(dir)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(format!("writing spool {}", self.path.display()))(e)
        })
    }

    /// Removes the spool (nothing left to deliver). A missing file is fine.
    pub fn clear(&self) -> Result<(), CoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                sync_dir(dir).map_err(io(format!("syncing spool directory {}", dir.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing spool {}", self.path.display()))(e)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);
    impl TempDir {
        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub(crate) fn tempdir() -> std::io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "sysmon-spool-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            crate::agent::now_epoch_secs()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    fn snap(i: u64) -> Snapshot {
        let mut s = Snapshot::new("m/1", 1_764_086_400.0 + i as f64);
        s.disk_io.read = i;
        s
    }

    fn seq(v: &[Snapshot]) -> Vec<u64> {
        v.iter().map(|s| s.disk_io.read).collect()
    }

    #[test]
    fn round_trip_in_order_and_clear() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path().join("nested"), "m/1");
        assert!(spool.path().ends_with("m_1.spool.jsonl"));
        assert!(spool.load(10).unwrap().is_empty(), "missing file is empty");
        let snaps: Vec<_> = (1..=5).map(snap).collect();
        spool.save(&snaps).unwrap();
        let back = spool.load(10).unwrap();
        assert_eq!(back, snaps);
        spool.save(&[]).unwrap();
        assert!(!spool.path().exists());
        spool.clear().unwrap();
    }

    #[test]
    fn bounded_by_capacity_keeping_the_newest() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path(), "m");
        spool.save(&(1..=8).map(snap).collect::<Vec<_>>()).unwrap();
        assert_eq!(seq(&spool.load(3).unwrap()), [6, 7, 8]);
    }

    #[test]
    fn corrupt_lines_are_skipped() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path(), "m");
        spool.save(&[snap(1), snap(2)]).unwrap();
        let mut text = std::fs::read_to_string(spool.path()).unwrap();
        text.insert_str(0, "{\"not\": a snapshot\n\u{0}\u{1}garbage\n\n");
        text.push_str("{\"machine_id\": 5}\n{\"truncated\":");
        std::fs::write(spool.path(), text).unwrap();
        assert_eq!(seq(&spool.load(10).unwrap()), [1, 2]);
    }

    #[test]
    fn save_replaces_and_leaves_no_temporary_file() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path(), "m");
        spool.save(&(1..=4).map(snap).collect::<Vec<_>>()).unwrap();
        spool.save(&[snap(9)]).unwrap();
        assert_eq!(seq(&spool.load(10).unwrap()), [9]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("m.spool.jsonl")]);
    }

    #[test]
    fn concurrent_saves_never_share_a_temporary_file() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path(), "m");
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let batch: Vec<_> =
                            (0..50).map(|j| snap(t * 10_000 + i * 100 + j)).collect();
                        spool.save(&batch).expect("every save succeeds");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Whole: one writer's 50 snapshots, never a mix or half a file.
        let loaded = seq(&spool.load(1000).unwrap());
        assert_eq!(loaded.len(), 50);
        assert!(loaded.windows(2).all(|w| w[1] == w[0] + 1), "{loaded:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("m.spool.jsonl")]);
    }

    #[test]
    fn unreadable_spool_is_an_error_not_a_panic() {
        let dir = tempdir().unwrap();
        let spool = Spool::new(dir.path(), "m");
        std::fs::create_dir(spool.path()).unwrap();
        assert!(spool.load(10).is_err());
    }
}
