//! [`Proc`]: a child process of a test (a sysmon binary), its output in files,
//! killed on drop; [`wait_until`] polls a condition.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop, its stderr in a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    log: PathBuf,
    /// Its name in messages and file names.
    pub name: String,
}

impl Proc {
    /// Starts `bin args` with `SYSMON_LOG=info`, stderr to `<dir>/<name>.log`
    /// and stdout to `<dir>/<name>.out`.
    pub fn spawn(bin: &str, args: &[&str], dir: &Path, name: &str) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
        let child = Command::new(bin)
            .args(args)
            .env("SYSMON_LOG", "info")
            .env_remove("RUST_LOG")
            .env_remove("SYSMON_AUTH_TOKEN")
            // Local-time output (the legacy consumer's rows) predictable in tests.
            .env("TZ", "UTC")
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

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    /// Sends `sig` (`-KILL`, `-TERM`, ...) with kill(1); panics if that fails.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// Waits for the process to exit; panics with its log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
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

    /// Waits until the log contains `needle`; panics with the log when it
    /// exits first or `timeout` passes.
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

/// Polls `cond` every 200 ms until it holds (true) or `timeout` passes (its
/// last answer).
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
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
