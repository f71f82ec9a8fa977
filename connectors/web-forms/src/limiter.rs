//! A token bucket per client IP, in a bounded map.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most IPs the limiter remembers.
pub const MAX_TRACKED_IPS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// `per_minute` posts per IP, in bursts of up to `per_minute`.
///
/// A bucket left alone for a minute is full again, so forgetting it loses nothing: idle
/// buckets are dropped when the map is full, and if it is still full the least recently
/// seen IP goes.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    capacity: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// A limiter of `per_minute` (at least 1) posts per minute per key, remembering at
    /// most `capacity` keys.
    pub fn new(per_minute: u32, capacity: usize) -> Self {
        Self {
            per_minute: per_minute.max(1),
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    /// Takes a token for `key` at `now`; `Err(wait)` when there is none, with the time
    /// until the next one.
    ///
    /// # Errors
    ///
    /// The wait when `key` is over its limit.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        let full = f64::from(self.per_minute);
        let rate = self.rate_per_sec();
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.evict(now);
        }
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: full,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(full);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    fn evict(&mut self, now: Instant) {
        let idle = Duration::from_secs(60);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < idle);
        if self.buckets.len() >= self.capacity {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.buckets.remove(&k);
            }
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut l = RateLimiter::new(5, 100);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.check("a", t0), Ok(()));
        }
        let wait = l.check("a", t0).unwrap_err();
        assert_eq!(wait.as_secs(), 12, "{wait:?}");
        assert_eq!(l.check("b", t0), Ok(()), "other IPs are not affected");
        assert!(l.check("a", t0 + Duration::from_secs(11)).is_err());
        assert_eq!(l.check("a", t0 + Duration::from_secs(12)), Ok(()));
        // A minute later the bucket is full again, not fuller.
        let t1 = t0 + Duration::from_secs(600);
        for _ in 0..5 {
            assert_eq!(l.check("a", t1), Ok(()));
        }
        assert!(l.check("a", t1).is_err());
    }

    #[test]
    fn map_is_bounded() {
        let mut l = RateLimiter::new(1, 3);
        let t0 = Instant::now();
        for (i, ip) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(l.check(ip, t0 + Duration::from_secs(i as u64)), Ok(()));
        }
        assert_eq!(l.len(), 3);
        // Full and none idle: the least recently seen ("a") goes.
        assert_eq!(l.check("d", t0 + Duration::from_secs(3)), Ok(()));
        assert_eq!(l.len(), 3);
        assert!(
            l.check("b", t0 + Duration::from_secs(3)).is_err(),
            "b is remembered"
        );
        assert_eq!(
            l.check("a", t0 + Duration::from_secs(4)),
            Ok(()),
            "a was forgotten"
        );
        // Much later every bucket is idle: all are dropped to make room.
        assert_eq!(l.check("e", t0 + Duration::from_secs(120)), Ok(()));
        assert_eq!(l.len(), 1);
        assert!(!l.is_empty());
    }
}
