//! Background WAL checkpoints.
//!
//! In WAL mode every commit appends pages to the `-wal` file; a *checkpoint*
//! copies them back into the database file and fsyncs it. SQLite's automatic
//! checkpoint runs inside the committing writer, so a batch that happens to
//! cross the threshold pays for everyone's pages. Here a dedicated thread with
//! its own connection runs passive checkpoints (which never block the writer
//! or readers) whenever enough has been written, and once a second otherwise;
//! the writer keeps SQLite's automatic checkpoint only as a safety net at a
//! high threshold, which also restarts the WAL from its beginning (a passive
//! checkpoint racing a busy writer rarely can).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::lock;
use crate::error::SinksError;

/// How often the thread checkpoints when nobody asks.
const PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Flags {
    requested: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    flags: Mutex<Flags>,
    wake: Condvar,
}

/// Handle of the checkpoint thread; dropping it stops the thread (after the
/// checkpoint in progress, if any; a checkpoint cut short is harmless).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
}

impl Checkpointer {
    /// Starts the thread for the database at `path`.
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer, SinksError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| SinksError::SqliteOpen {
                path: path.to_path_buf(),
                source,
            })?;
        // A passive checkpoint does not wait for anyone; a busy checkpoint lock
        // (the writer's safety-net checkpoint) just means "next time".
        conn.busy_timeout(Duration::ZERO)?;
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let what = path.display().to_string();
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, &thread_shared, &what))
            .map_err(|source| SinksError::Io {
                context: "starting the SQLite checkpoint thread".into(),
                source,
            })?;
        Ok(Checkpointer { shared })
    }

    /// Asks for a checkpoint soon (returns at once).
    pub(crate) fn request(&self) {
        lock(&self.shared.flags).requested = true;
        self.shared.wake.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.flags).stop = true;
        self.shared.wake.notify_one();
    }
}

fn run(conn: Connection, shared: &Shared, what: &str) {
    loop {
        {
            let mut flags = lock(&shared.flags);
            if !flags.requested && !flags.stop {
                flags = shared
                    .wake
                    .wait_timeout(flags, PERIOD)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if flags.stop {
                return;
            }
            flags.requested = false;
        }
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match result {
            Ok((busy, wal_pages, copied)) => {
                tracing::trace!(db = what, busy, wal_pages, copied, "wal checkpoint")
            }
            Err(e) => tracing::debug!(db = what, error = %e, "wal checkpoint skipped"),
        }
    }
}
