//! The core's ticks from the monotonic clock. A leaf.
//!
//! The core counts time in ticks, and its lease is a count of ticks. A timer that fires once per
//! interval drifts behind real time whenever the process does not run: after a SIGSTOP, a VM
//! pause or a stall, the missed ticks never come, and a leader would judge its lease on a clock
//! that stopped while the rest of the cluster moved on. Instead the node asks this clock, at every
//! turn of its loop and before it takes in any input, how many ticks are due since it started, and
//! gives the core those ticks first.

use std::time::Duration;

use tokio::time::Instant;

/// Turns elapsed monotonic time into ticks owed to the core.
#[derive(Debug)]
pub(super) struct TickClock {
    start: Instant,
    interval: Duration,
    /// Ticks due since `start` that were handed out (or skipped).
    counted: u64,
    /// The most ticks handed out at once: beyond it, more ticks change nothing (every timeout of
    /// the core is shorter), so the rest are skipped instead of replayed one by one.
    max_at_once: u64,
}

impl TickClock {
    /// A clock whose ticks last `interval`, handing out at most `max_at_once` ticks per call.
    pub(super) fn new(now: Instant, interval: Duration, max_at_once: u64) -> Self {
        TickClock {
            start: now,
            interval: interval.max(Duration::from_nanos(1)),
            counted: 0,
            max_at_once: max_at_once.max(1),
        }
    }

    /// The ticks to give the core now: those due since the last call, at most `max_at_once`.
    pub(super) fn due(&mut self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        let total = u64::try_from(elapsed.as_nanos() / self.interval.as_nanos()).unwrap_or(u64::MAX);
        let owed = total.saturating_sub(self.counted);
        self.counted = total.max(self.counted);
        owed.min(self.max_at_once)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_clock_not_the_calls() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, Duration::from_millis(10), 100);
        assert_eq!(clock.due(start + Duration::from_millis(5)), 0);
        assert_eq!(clock.due(start + Duration::from_millis(10)), 1);
        assert_eq!(
            clock.due(start + Duration::from_millis(10)),
            0,
            "a tick is given once"
        );
        assert_eq!(clock.due(start + Duration::from_millis(35)), 2);
        assert_eq!(clock.due(start + Duration::from_millis(39)), 0);
        assert_eq!(clock.due(start + Duration::from_millis(40)), 1);
    }

    #[test]
    fn a_pause_is_caught_up_at_once_and_a_long_one_is_capped() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, Duration::from_millis(10), 32);
        // A pause of 250 ms: all 25 ticks come in the first call after it.
        assert_eq!(clock.due(start + Duration::from_millis(250)), 25);
        // A pause of an hour: capped, and the rest skipped rather than owed.
        assert_eq!(clock.due(start + Duration::from_secs(3600)), 32);
        assert_eq!(clock.due(start + Duration::from_secs(3600)), 0);
        assert_eq!(clock.due(start + Duration::from_millis(3_600_010)), 1);
    }

    #[test]
    fn a_clock_read_earlier_than_the_last_gives_nothing() {
        let start = Instant::now();
        let mut clock = TickClock::new(start, Duration::from_millis(10), 32);
        assert_eq!(clock.due(start + Duration::from_millis(100)), 10);
        assert_eq!(clock.due(start + Duration::from_millis(50)), 0);
        assert_eq!(clock.due(start + Duration::from_millis(110)), 1);
    }
}
