//! Capped exponential backoff, shared by every loop that waits for a
//! dependency to come back (the broker, Redis, the required sink, the
//! dashboard's live feed).
//!
//! The cap is what bounds how late a dependency's return is noticed: with
//! [`Backoff::DEPENDENCY`] a loop retries at least once a second however long
//! the outage lasted, so Redis or the broker being back is seen within about a
//! second (plus the attempt's own time). A retry a second against a dead local
//! service costs next to nothing; the cap is not there to save load.

use std::time::Duration;

/// The delays of one retry loop: `min`, then doubling, never above `max`.
///
/// ```
/// use std::time::Duration;
/// use sysmon_core::backoff::Backoff;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.next_delay(), Duration::from_millis(200));
/// assert_eq!(b.next_delay(), Duration::from_millis(300));
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// The schedule for waiting on a dependency: 100 ms, 200 ms, 400 ms,
    /// 800 ms, then 1 s for as long as it takes.
    pub const DEPENDENCY: Backoff =
        Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));

    /// A schedule starting at `min` and doubling up to `max` (a `max` below
    /// `min` is raised to `min`; a zero `min` stays zero).
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < min.as_nanos() {
            min
        } else {
            max
        };
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the
    /// following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The first delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The cap: the longest delay this schedule ever returns.
    pub fn max(&self) -> Duration {
        self.max
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEPENDENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_dependency_schedule_doubles_from_100_ms_and_stays_at_one_second() {
        let mut b = Backoff::DEPENDENCY;
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000, 1000]
                .map(ms)
                .to_vec()
        );
        assert_eq!((b.min(), b.max()), (ms(100), ms(1000)));
        // However long the outage, the next attempt is at most a second away.
        for _ in 0..1000 {
            assert!(b.next_delay() <= ms(1000));
        }
    }

    #[test]
    fn reset_starts_over_and_odd_bounds_are_sane() {
        let mut b = Backoff::new(ms(250), ms(2000));
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), ms(2000));
        b.reset();
        assert_eq!(b.next_delay(), ms(250));
        assert_eq!(b.next_delay(), ms(500));

        // A cap below the start is the start.
        let mut b = Backoff::new(ms(500), ms(100));
        assert_eq!([b.next_delay(), b.next_delay()], [ms(500), ms(500)]);

        // No overflow however many doublings.
        let mut b = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        for _ in 0..10 {
            assert!(b.next_delay() >= Duration::from_secs(u64::MAX / 4));
        }
    }
}
