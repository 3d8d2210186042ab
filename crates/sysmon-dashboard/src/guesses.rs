//! A limit on wrong credentials per client address, so the access token cannot
//! be guessed at network speed.
//!
//! Every request that carries a credential (the login form, a bearer header, the
//! session cookie) and fails counts against its client's address. After
//! [`MAX_FAILURES`] failures within [`WINDOW`], every credential from that
//! address is refused with `429 Too Many Requests` and a `Retry-After` until the
//! window ends, *without being checked* (otherwise the guessing would go on,
//! only with a different status code). Requests without a credential are not
//! counted. Behind a reverse proxy every client has the proxy's address, so the
//! limit becomes one for all clients together: a flood of wrong guesses then
//! also holds back a real sign-in for up to a minute, which beats letting the
//! guessing through. Addresses tracked are capped ([`MAX_TRACKED`]); when full,
//! expired entries go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong credentials allowed per address within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in, from an address's first failure.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    since: Instant,
    failures: u32,
}

/// Failed credentials per client address (`None`: the address is unknown, as
/// when the router runs without connection info; those share one entry).
#[derive(Debug, Default)]
pub struct Guesses {
    entries: Mutex<HashMap<Option<IpAddr>, Entry>>,
}

impl Guesses {
    /// `Some(wait)` when `addr` has used up its failures: refuse, and say when
    /// to come back.
    pub fn blocked(&self, addr: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&addr)?;
        let end = e.since + WINDOW;
        (e.failures >= MAX_FAILURES && now < end).then(|| end - now)
    }

    /// Counts a wrong credential from `addr`.
    pub fn failed(&self, addr: Option<IpAddr>, now: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if let Some(e) = entries.get_mut(&addr) {
            if now >= e.since + WINDOW {
                *e = Entry {
                    since: now,
                    failures: 1,
                };
            } else {
                e.failures = e.failures.saturating_add(1);
            }
            return;
        }
        if entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| now < e.since + WINDOW);
            if entries.len() >= MAX_TRACKED {
                if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            addr,
            Entry {
                since: now,
                failures: 1,
            },
        );
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let g = Guesses::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(g.blocked(ip(1), t0), None, "failure {i}");
            g.failed(ip(1), t0);
        }
        let wait = g.blocked(ip(1), t0 + Duration::from_secs(10));
        assert_eq!(wait, Some(WINDOW - Duration::from_secs(10)));
        // Another address is not affected.
        assert_eq!(g.blocked(ip(2), t0), None);
        // The window over, the address may try again and counts afresh.
        let later = t0 + WINDOW;
        assert_eq!(g.blocked(ip(1), later), None);
        g.failed(ip(1), later);
        assert_eq!(g.blocked(ip(1), later), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let g = Guesses::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let addr = IpAddr::from(i.to_be_bytes());
            g.failed(Some(addr), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(g.tracked(), MAX_TRACKED);
    }
}
