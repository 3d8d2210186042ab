//! Helpers shared by the process tests: run the real binaries with their logs
//! in files, signal them, wait for them (each test file uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `sysmon` binary under test.
pub const SYSMON: &str = env!("CARGO_BIN_EXE_sysmon");
/// The `sysmon-agent` binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_sysmon-agent");

/// A child process killed on drop; its stderr in `<dir>/<name>.log`, its
/// stdout in `<dir>/<name>.out`.
pub struct Proc {
    /// The process.
    pub child: Child,
    log: PathBuf,
    /// The name it was started with.
    pub name: String,
}

impl Proc {
    /// Starts `bin args` logging at `info` (`RUST_LOG` and `SYSMON_AUTH_TOKEN`
    /// from the test's environment are not passed on).
    pub fn spawn(bin: &str, args: &[&str], dir: &Path, name: &str) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
        let child = Command::new(bin)
            .args(args)
            .env("SYSMON_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("SYSMON_AUTH_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// Sends `sig` (`-TERM`, `-KILL`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// Waits for the process to exit; panics with its log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within {timeout:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self, within: Duration) {
        self.signal("-TERM");
        let status = self.wait(within);
        assert!(
            status.success(),
            "{} exit {status}:\n{}",
            self.name,
            self.log()
        );
    }

    /// Waits until the log contains `needle`; panics if the process exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not log {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns a value; panics with `what` and `log()` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `f` until it holds; panics with `what` and `log()` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> bool,
) {
    wait_for(what, timeout, log, || f().then_some(()))
}
