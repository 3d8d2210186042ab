//! Helpers shared by the process tests: the binaries under test; the
//! process handling itself is `sysmon_testkit::process` (each test file uses a subset).
#![allow(unused_imports, dead_code)]

pub use sysmon_testkit::process::{poll_until, wait_for, wait_until, Proc};

/// The `sysmon` binary under test.
pub const SYSMON: &str = env!("CARGO_BIN_EXE_sysmon");
/// The `sysmon-agent` binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_sysmon-agent");
