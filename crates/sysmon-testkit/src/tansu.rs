//! A real tansu (Kafka-protocol) broker for tests.
//!
//! [`TansuBroker::start`] runs `tansu broker` on a free loopback port with the
//! in-memory storage engine; [`TansuBroker::start_durable`] backs it with a
//! fresh PostgreSQL database (created here, schema applied, dropped on drop) so
//! that [`TansuBroker::stop`] / [`TansuBroker::start_again`] model a broker
//! outage without losing topics, records or committed offsets.
//!
//! A missing `tansu` binary is a loud panic with the command that installs it,
//! never a silent skip. The broker's output goes to a log file in the broker's
//! temporary directory; [`TansuBroker::log`] returns it for failure messages.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ports::{find_binary, free_port};

/// The install hint printed when the binary is missing.
pub const INSTALL_HINT: &str = "tansu not found: run scripts/setup.sh \
(cargo install tansu --locked --version 0.6.0 --features dynostore,postgres)";

/// PostgreSQL schema for tansu 0.6.0's `postgres://` storage engine (tansu does
/// not create its tables on PostgreSQL itself).
pub const POSTGRES_SCHEMA: &str = include_str!("tansu_pg_schema.sql");

/// How long a broker may take to serve metadata after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or stopped) tansu broker owned by a test. Killed on drop.
pub struct TansuBroker {
    binary: PathBuf,
    port: u16,
    storage: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    database: Option<PostgresDatabase>,
    advertised: Option<String>,
}

impl TansuBroker {
    /// Starts a broker with in-memory storage on a free port and waits until it
    /// serves metadata. Data does not survive [`stop`](Self::stop).
    pub fn start() -> TansuBroker {
        Self::launch("memory://tansu/".to_string(), None, None)
    }

    /// Starts a broker whose storage is a fresh PostgreSQL database (dropped
    /// when the broker is dropped), so topics, records and committed offsets
    /// survive [`stop`](Self::stop) and [`start_again`](Self::start_again).
    ///
    /// The server is `SYSMON_TEST_POSTGRES_URL` (default
    /// `postgres://postgres@localhost`, trust authentication).
    pub fn start_durable() -> TansuBroker {
        let db = PostgresDatabase::create();
        let url = db.url();
        Self::launch(url, Some(db), None)
    }

    /// Starts an in-memory broker that advertises `advertised_url` (e.g.
    /// `tcp://10.9.9.9:9092`) in its metadata instead of the address it listens
    /// on: the classic misconfiguration `sysmon doctor` must catch, or the
    /// port of a [`crate::tls_proxy::TlsProxy`] in front of the broker (Kafka
    /// over TLS: metadata sends every client back through the proxy).
    pub fn start_advertising(advertised_url: &str) -> TansuBroker {
        Self::launch(
            "memory://tansu/".to_string(),
            None,
            Some(advertised_url.to_string()),
        )
    }

    fn launch(
        storage: String,
        database: Option<PostgresDatabase>,
        advertised: Option<String>,
    ) -> TansuBroker {
        let binary = find_binary("tansu").unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let dir = tempfile::Builder::new()
            .prefix("sysmon-tansu-")
            .tempdir()
            .expect("creating a temporary directory for tansu");
        let mut broker = TansuBroker {
            binary,
            port: free_port(),
            storage,
            dir,
            child: None,
            database,
            advertised,
        };
        broker.spawn();
        broker
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port the broker listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The storage engine URL the broker runs with.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// Whether the storage survives a restart (PostgreSQL).
    pub fn is_durable(&self) -> bool {
        self.database.is_some()
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the broker process (an abrupt outage: clients see refused connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Wait until the port is really closed so a test's outage starts now.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(100),
            )
            .is_ok()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same port with the same storage and waits
    /// until it serves metadata. With [`start`](Self::start)'s in-memory storage
    /// the broker comes back empty.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again called while the broker is running"
        );
        self.spawn();
    }

    /// Everything the broker wrote to stdout and stderr so far (all runs).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    fn spawn(&mut self) {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = self.advertised.clone().unwrap_or_else(|| listener.clone());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the tansu log file");
        let err = log.try_clone().expect("cloning the tansu log file handle");
        let child = Command::new(&self.binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(&listener)
            .arg("--advertised-listener-url")
            .arg(&advertised)
            .arg("--storage-engine")
            .arg(&self.storage)
            .current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("SYSMON_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if serves_metadata(self.port, Duration::from_secs(2)) {
                return;
            }
            if !self.is_running() {
                panic!(
                    "tansu exited before serving metadata (storage {}):\n{}",
                    self.storage,
                    tail(&self.log(), 4000)
                );
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.stop();
                panic!(
                    "tansu did not serve metadata on port {} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    tail(&log, 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `database` drops after this, once the broker no longer holds connections.
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Sends a Kafka `Metadata` (v1, all topics) request to `127.0.0.1:port` and
/// checks that a well-formed response with the right correlation id comes back.
pub fn serves_metadata(port: u16, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let client_id = b"sysmon-testkit";
    let correlation_id: i32 = 0x5353_4d31;
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    body.extend_from_slice(&1i16.to_be_bytes()); // api version 1
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // topics: null = all
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).is_err() {
        return false;
    }
    let size = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let id = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    // A response holds at least the broker array length after the correlation id.
    size >= 8 && id == correlation_id
}

static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A PostgreSQL database created for one broker, with tansu's schema; dropped on drop.
struct PostgresDatabase {
    psql: PathBuf,
    server: String,
    name: String,
}

impl PostgresDatabase {
    fn create() -> PostgresDatabase {
        let psql = find_binary("psql").unwrap_or_else(|| {
            panic!(
                "psql not found: durable tansu brokers need a PostgreSQL server and its client \
                 (apt-get install postgresql postgresql-client; see scripts/setup.sh)"
            )
        });
        let server = std::env::var("SYSMON_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@localhost".to_string())
            .trim_end_matches('/')
            .to_string();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sysmon_tansu_{}_{}_{nanos}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let db = PostgresDatabase { psql, server, name };
        db.run(
            "postgres",
            &format!("CREATE DATABASE {}", db.name),
            "creating the tansu database",
        );
        db.run(&db.name, POSTGRES_SCHEMA, "applying tansu's schema");
        db
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn run(&self, database: &str, sql: &str, what: &str) {
        let out = run_psql(&self.psql, &format!("{}/{database}", self.server), sql);
        match out {
            Ok(()) => {}
            Err(e) => panic!(
                "{what} on {} failed: {e}\n(is PostgreSQL running with trust auth? \
                 set SYSMON_TEST_POSTGRES_URL to point elsewhere)",
                self.server
            ),
        }
    }
}

fn run_psql(psql: &Path, url: &str, sql: &str) -> Result<(), String> {
    let mut child = Command::new(psql)
        .arg("-X")
        .arg("-q")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning psql: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(sql.as_bytes())
            .map_err(|e| format!("writing to psql: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let _ = run_psql(
            &self.psql,
            &format!("{}/postgres", self.server),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_starts_serves_metadata_and_stops() {
        let mut b = TansuBroker::start();
        assert!(serves_metadata(b.port(), Duration::from_secs(2)));
        assert!(b.bootstrap().starts_with("127.0.0.1:"));
        b.stop();
        assert!(!serves_metadata(b.port(), Duration::from_millis(500)));
        b.start_again();
        assert!(serves_metadata(b.port(), Duration::from_secs(2)));
    }

    #[test]
    fn durable_broker_restarts_on_its_database() {
        let mut b = TansuBroker::start_durable();
        assert!(b.is_durable());
        b.stop();
        b.start_again();
        assert!(serves_metadata(b.port(), Duration::from_secs(2)));
        assert!(b.log().contains("tansu broker"), "{}", b.log());
    }

    #[test]
    fn nothing_listening_is_not_a_broker() {
        assert!(!serves_metadata(free_port(), Duration::from_millis(300)));
    }
}
