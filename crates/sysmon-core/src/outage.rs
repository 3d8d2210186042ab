//! [`Outage`]: a dependency's outage, logged once when it starts and once
//! when it ends (with its duration), however many attempts fail or succeed
//! in between. The ingester's receive loop and the agent's publisher each
//! keep one for the transport.
//!
//! What counts as an attempt matters as much: an outage ends only on
//! evidence that the other side is back (the Kafka receiver no longer
//! reports a quiet poll as success while no broker is reachable; see
//! `sysmon_sinks::kafka`).
//!
//! An outage also ends only once the other side has stayed back for a short
//! while ([`Outage::SETTLE`]): right after a broker restarts, librdkafka
//! reports a few short "all brokers down" spells while the cluster's metadata
//! settles. Those belong to the outage being ended, not to new ones, so a
//! failure within the settling time continues the outage silently.

use std::time::{Duration, Instant};

/// The state of one dependency's outage; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    /// When the outage began (`None`: no outage).
    since: Option<Instant>,
    /// During an outage: when the current run of successes began.
    back_since: Option<Instant>,
    /// How long successes must last before the outage counts as over.
    settle: Duration,
}

impl Default for Outage {
    fn default() -> Self {
        Self::with_settle(Self::SETTLE)
    }
}

impl Outage {
    /// How long the other side must stay reachable before an outage ends.
    pub const SETTLE: Duration = Duration::from_secs(5);

    /// An outage that ends once successes have lasted `settle`.
    pub fn with_settle(settle: Duration) -> Self {
        Self {
            since: None,
            back_since: None,
            settle,
        }
    }

    /// An attempt failed: true when this starts an outage (log it then).
    /// A failure while an outage is settling continues that outage.
    pub fn failed(&mut self) -> bool {
        self.back_since = None;
        if self.since.is_some() {
            return false;
        }
        self.since = Some(Instant::now());
        true
    }

    /// An attempt succeeded: how long the outage lasted (until the other
    /// side came back) when this ends one (log it then), `None` when there
    /// was none or it is still settling.
    pub fn ended(&mut self) -> Option<Duration> {
        let since = self.since?;
        let back = *self.back_since.get_or_insert_with(Instant::now);
        if back.elapsed() < self.settle {
            return None;
        }
        self.since = None;
        self.back_since = None;
        Some(back.saturating_duration_since(since))
    }

    /// True during an outage (settling included).
    pub fn is_on(&self) -> bool {
        self.since.is_some()
    }
}

/// A duration for an outage log line, to the tenth of a second (`4m 12s 300ms`).
pub fn human(d: Duration) -> String {
    crate::duration::format(Duration::from_millis(d.as_millis() as u64 / 100 * 100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_and_ends_once_whatever_happens_between() {
        let mut o = Outage::with_settle(Duration::ZERO);
        assert!(o.ended().is_none(), "no outage, nothing to end");
        let starts = (0..100).filter(|_| o.failed()).count();
        assert_eq!(starts, 1);
        assert!(o.is_on());
        assert!(o.ended().is_some());
        assert!(o.ended().is_none());
        assert!(!o.is_on());
        assert!(o.failed(), "a new outage");
        assert_eq!(human(Duration::from_millis(252_345)), "4m 12s 300ms");
        assert_eq!(human(Duration::from_secs(40)), "40s");
    }

    #[test]
    fn failures_while_settling_continue_the_outage_and_it_ends_once() {
        let settle = Duration::from_millis(200);
        let mut o = Outage::with_settle(settle);
        assert!(o.failed(), "the outage starts");
        // Back, then a short relapse, as right after a broker restart.
        assert!(o.ended().is_none(), "still settling");
        assert!(!o.failed(), "a relapse while settling is the same outage");
        assert!(o.ended().is_none(), "settling starts again");
        assert!(o.is_on());
        std::thread::sleep(settle);
        let lasted = o.ended().expect("back for the whole settling time");
        assert!(lasted < settle, "lasted until it came back: {lasted:?}");
        assert!(!o.is_on());
        assert!(o.ended().is_none(), "ended once");
        assert!(o.failed(), "a later failure is a new outage");
    }
}
