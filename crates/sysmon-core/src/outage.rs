//! [`Outage`]: a dependency's outage, logged once when it starts and once
//! when it ends (with its duration), however many attempts fail or succeed
//! in between. The ingester's receive loop and the agent's publisher each
//! keep one for the transport.
//!
//! What counts as an attempt matters as much: an outage ends only on
//! evidence that the other side is back (the Kafka receiver no longer
//! reports a quiet poll as success while no broker is reachable; see
//! `sysmon_sinks::kafka`).

use std::time::{Duration, Instant};

/// The state of one dependency's outage; see the [module docs](self).
#[derive(Debug, Default, Clone, Copy)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// An attempt failed: true when this starts an outage (log it then).
    pub fn failed(&mut self) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(Instant::now());
        true
    }

    /// An attempt succeeded: how long the outage lasted when this ends one
    /// (log it then), `None` when there was none.
    pub fn ended(&mut self) -> Option<Duration> {
        self.since.take().map(|s| s.elapsed())
    }

    /// True during an outage.
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
        let mut o = Outage::default();
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
}
