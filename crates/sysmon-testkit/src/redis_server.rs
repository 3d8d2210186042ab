//! A real `redis-server` for tests.
//!
//! [`RedisServer::start`] runs Debian's `redis-server` on a free loopback port in
//! its own temporary directory with persistence off (`--save "" --appendonly no`),
//! waits until it answers `PING`, and kills it on drop. [`RedisServer::stop`] and
//! [`RedisServer::start_again`] kill it and bring it back, empty, on the same port:
//! that is how tests simulate a Redis crash and restart.
//!
//! A missing binary is a loud panic naming the package that provides it, never a
//! silent skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{find_binary, free_port};

/// How long `start` waits for the server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) `redis-server` owned by a test.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    tls: bool,
    child: Option<Child>,
    starts: u32,
}

/// PEM files for a TLS-only server ([`RedisServer::start_tls`]).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate (its SANs must cover `127.0.0.1`).
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
    /// The CA that signed it, and that client certificates must chain to when
    /// the server asks for them (by default it does not).
    pub ca: PathBuf,
}

impl RedisServer {
    /// Starts an empty `redis-server` on a free port. Panics (with the install
    /// command) when `redis-server` is not installed, or when it does not come up.
    pub fn start() -> RedisServer {
        RedisServer::start_with_args(&[])
    }

    /// Like [`RedisServer::start`], with extra command-line arguments for
    /// `redis-server`, e.g. `["--requirepass", "secret"]` or an ACL
    /// `["--user", "alice", "on", ">pw", "~*", "&*", "+@all"]`. They are passed
    /// again on [`RedisServer::start_again`].
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        RedisServer::start_inner(args, None)
    }

    /// Starts a server that speaks only TLS on its port (`rediss://`), with the
    /// given certificate and key, not asking clients for certificates. Redis
    /// must be built with TLS (Debian's is).
    pub fn start_tls(files: &TlsFiles) -> RedisServer {
        RedisServer::start_inner(&[], Some(files))
    }

    /// Like [`RedisServer::start_tls`], with extra arguments after the TLS
    /// ones (a later argument wins): e.g. `["--tls-auth-clients", "yes"]` to
    /// require client certificates signed by `files.ca`, or ACL users.
    pub fn start_tls_with_args(files: &TlsFiles, args: &[&str]) -> RedisServer {
        RedisServer::start_inner(args, Some(files))
    }

    fn start_inner(args: &[&str], tls: Option<&TlsFiles>) -> RedisServer {
        let binary = find_binary("redis-server")
            .or_else(|| {
                let p = PathBuf::from("/usr/bin/redis-server");
                p.is_file().then_some(p)
            })
            .unwrap_or_else(|| {
                panic!(
                    "redis-server is not installed; these tests need a real Redis. \
                     Install it with `sudo apt-get install -y redis-server` \
                     (or run the project's test script, which installs it)"
                )
            });
        let dir = tempfile::Builder::new()
            .prefix("sysmon-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
        let port = free_port();
        let mut extra_args: Vec<String> = Vec::new();
        if let Some(f) = tls {
            let path = |p: &Path| p.to_string_lossy().into_owned();
            extra_args.extend([
                "--port".to_string(),
                "0".to_string(),
                "--tls-port".to_string(),
                port.to_string(),
                "--tls-cert-file".to_string(),
                path(&f.cert),
                "--tls-key-file".to_string(),
                path(&f.key),
                "--tls-ca-cert-file".to_string(),
                path(&f.ca),
                "--tls-auth-clients".to_string(),
                "no".to_string(),
            ]);
        }
        extra_args.extend(args.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            binary,
            port,
            dir,
            extra_args,
            tls: tls.is_some(),
            child: None,
            starts: 0,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>/` (no credentials), or `rediss://...` for a
    /// server started with [`RedisServer::start_tls`].
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (holds `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs (for profiling or signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the server process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit. Its
    /// data is gone: persistence is off. Does nothing when already stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server dies of SIGKILL too; no need to resume it first.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, like a Redis stuck in a long fork or a network black hole.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Thaws a server frozen by [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, sig: &str) {
        let pid = match self.child.as_ref() {
            Some(c) => c.id(),
            None => panic!("redis-server is not running"),
        };
        let status = Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {sig} {pid}: {e}"));
        assert!(status.success(), "kill {sig} {pid} failed");
    }

    /// Starts the server again, empty, on the same port, and waits for `PING`.
    /// Panics when it is already running or does not come up.
    pub fn start_again(&mut self) {
        assert!(
            !self.is_running(),
            "start_again called while redis-server is running"
        );
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let port = self.port.to_string();
        let log = self.log_path();
        // Each start gets a fresh log (readiness of a TLS server is read from it).
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port])
            .args(["--bind", "127.0.0.1"])
            .arg("--save")
            .arg("")
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {}: {e}", self.binary.display());
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = if self.tls {
                // A plain PING cannot cross TLS: wait for the log's ready line.
                std::fs::read_to_string(&log)
                    .map(|l| l.contains("Ready to accept connections"))
                    .unwrap_or(false)
                    && crate::ports::wait_for_port(self.port, Duration::from_millis(100))
            } else {
                ping(self.port)
            };
            if up {
                return;
            }
            if !self.is_running() || Instant::now() >= deadline {
                let why = if self.is_running() {
                    "did not answer PING in time"
                } else {
                    "exited"
                };
                self.stop();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                panic!(
                    "redis-server on port {} {why} (start #{}); last log lines:\n{}",
                    self.port,
                    self.starts,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// Sends a RESP `PING` and accepts `+PONG` or an authentication error (the
/// server is up, it just wants a password).
fn ping(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            let reply = &buf[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut r = RedisServer::start();
        let port = r.port();
        assert!(ping(port));
        assert!(r.url().contains(&port.to_string()));
        r.stop();
        assert!(!ping(port));
        r.start_again();
        assert_eq!(r.port(), port);
        assert!(ping(port));
    }
}
