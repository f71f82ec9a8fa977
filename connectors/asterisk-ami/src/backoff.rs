//! Jittered exponential backoff between reconnect attempts.

use std::time::Duration;

/// The first delay before jitter.
const BASE: Duration = Duration::from_millis(500);

/// Doubles from 0.5 s up to `max`, each delay drawn from the upper half of its step
/// (`d/2 ..= d`), so a fleet of hubs restarted together does not reconnect in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    attempt: u32,
    max: Duration,
    rng: u64,
}

impl Backoff {
    /// A backoff capped at `max`, seeded from the clock.
    pub(crate) fn new(max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self::with_seed(max, seed)
    }

    pub(crate) fn with_seed(max: Duration, seed: u64) -> Self {
        Self {
            attempt: 0,
            max: max.max(BASE),
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = BASE
            .checked_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.next_u64() % (span + 1)
        };
        half + Duration::from_millis(jitter)
    }

    /// Back to the shortest delay, after a session that stayed up.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_bounds_and_resets() {
        let max = Duration::from_secs(8);
        let mut b = Backoff::with_seed(max, 42);
        let mut steps = vec![];
        for _ in 0..10 {
            steps.push(b.next_delay());
        }
        let bounds = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0];
        for (d, hi) in steps.iter().zip(bounds) {
            let hi = Duration::from_secs_f64(hi);
            assert!(
                *d >= hi / 2 && *d <= hi,
                "{d:?} not in {:?}..={hi:?}",
                hi / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let max = Duration::from_secs(60);
        let a: Vec<_> = {
            let mut b = Backoff::with_seed(max, 1);
            (0..6).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::with_seed(max, 2);
            (0..6).map(|_| b.next_delay()).collect()
        };
        assert_ne!(a, c);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::with_seed(Duration::from_secs(30), 7);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
    }
}
