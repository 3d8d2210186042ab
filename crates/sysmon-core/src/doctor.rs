//! The report of a setup check (`sysmon doctor`): findings in order, each with
//! its outcome and, when something is wrong, the fix in plain words.
//!
//! Backends contribute their own checks (the Kafka doctor in `sysmon-sinks`,
//! the Redis and SQLite checks in the binary); they all speak this model.

use std::fmt;

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works.
    Ok,
    /// Works, but something looks wrong or will break elsewhere.
    Warn,
    /// Does not work.
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

/// One finding of a setup check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorCheck {
    /// What was checked, e.g. `tcp 10.0.0.5:9092`.
    pub name: String,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, in plain words (for warnings and failures).
    pub fix: Option<String>,
}

/// Everything a setup check found, in the order it checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// `true` when no check failed (warnings allowed).
    pub fn is_ok(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.status, CheckStatus::Fail))
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &DoctorCheck> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, CheckStatus::Fail))
    }

    /// The first check whose name starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Option<&DoctorCheck> {
        self.checks.iter().find(|c| c.name.starts_with(prefix))
    }

    /// Appends a finding without a fix.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
    ) {
        self.checks.push(DoctorCheck::new(name, status, detail));
    }

    /// Appends a finding with the fix in plain words.
    pub fn push_fix(
        &mut self,
        name: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks
            .push(DoctorCheck::new(name, status, detail).with_fix(fix));
    }
}

impl DoctorCheck {
    /// A finding without a fix.
    pub fn new(name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Self {
        DoctorCheck {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    /// The same finding with the fix in plain words.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let tag = match c.status {
                CheckStatus::Ok => "  ok  ",
                CheckStatus::Warn => " WARN ",
                CheckStatus::Fail => " FAIL ",
                CheckStatus::Skipped => " skip ",
            };
            writeln!(f, "[{tag}] {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "         fix: {fix}")?;
            }
        }
        Ok(())
    }
}
