//! A private PostgreSQL database per test on the machine's server: created
//! with a unique name, dropped (connections and all) on drop. Tests never
//! share a database; the server itself is never stopped (other people use it).
//!
//! The server is `postgresql://postgres@127.0.0.1:5432` (trust auth), or the
//! URL in `SYSMON_TEST_POSTGRES`. Administration goes through `psql`, so the
//! harness needs no async runtime; `scripts/setup.sh` installs and starts
//! PostgreSQL where it is missing.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server tests use, without a database name.
pub fn server_url() -> String {
    std::env::var("SYSMON_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// Runs `sql` with `psql` in `database`; returns its unaligned, tuples-only output.
///
/// Panics with psql's message when the statement fails (this is a test harness).
pub fn psql(database: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(format!("{}/{database}", server_url()))
        .args(["-v", "ON_ERROR_STOP=1", "-XqtA", "-c", sql])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run psql ({e}): install PostgreSQL with scripts/setup.sh")
        });
    assert!(
        out.status.success(),
        "psql in {database} failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of one test, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates an empty database with a name no other test uses.
    pub fn create() -> TestDatabase {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sysmon_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDatabase { name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// Runs `sql` in this database (see [`psql`]).
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    /// Runs `sql` as an administrator in the `postgres` database (e.g. `ALTER DATABASE`).
    pub fn admin(&self, sql: &str) -> String {
        psql("postgres", sql)
    }

    /// Closes every connection to this database (a server restart as its
    /// clients see it) and refuses new ones until [`TestDatabase::reopen`].
    pub fn cut_off(&self) {
        self.admin(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false; \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{0}'",
            self.name
        ));
    }

    /// Accepts connections again after [`TestDatabase::cut_off`].
    pub fn reopen(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(format!("{}/postgres", server_url()))
            .args([
                "-XqtA",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}
