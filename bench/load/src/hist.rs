//! A log-linear histogram of non-negative integers (microseconds here): exact below 128,
//! then 64 sub-buckets per power of two, so any recorded value is reported within 1.6%.
//! Small enough (≈30 KiB) to keep one per worker process and to ship between processes as
//! a sparse list.

use serde::{Deserialize, Serialize};

const EXACT: u64 = 128;
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// 128 exact buckets + 64 per octave for octaves 7..=63.
const BUCKETS: usize = EXACT as usize + (64 - 7) * SUB as usize;

/// The histogram.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The sparse form sent between processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SparseHist {
    /// (bucket, count) for non-empty buckets.
    pub buckets: Vec<(u32, u64)>,
    /// Values recorded.
    pub count: u64,
    /// Sum of values.
    pub sum: u64,
    /// Smallest value (`u64::MAX` when empty).
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return usize::try_from(v).unwrap_or(0);
    }
    let e = 63 - v.leading_zeros(); // >= 7
    let shift = e - SUB_BITS;
    let m = v >> shift; // in [64, 127]
    let i = EXACT + u64::from(e - 7) * SUB + (m - SUB);
    usize::try_from(i).unwrap_or(BUCKETS - 1).min(BUCKETS - 1)
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let k = i - EXACT;
    let e = k / SUB + 7;
    let m = k % SUB + SUB;
    let shift = e - u64::from(SUB_BITS);
    let top = ((u128::from(m) + 1) << shift) - 1;
    u64::try_from(top).unwrap_or(u64::MAX)
}

impl Hist {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1): the upper edge of the bucket holding that rank,
    /// capped by the maximum, so it never under-reports.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max).max(self.min);
            }
        }
        self.max
    }

    /// Adds another histogram.
    pub fn merge(&mut self, o: &SparseHist) {
        for &(i, c) in &o.buckets {
            if let Some(slot) = self.counts.get_mut(i as usize) {
                *slot += c;
            }
        }
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The sparse form.
    pub fn sparse(&self) -> SparseHist {
        SparseHist {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), *c))
                .collect(),
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            10_000,
            1 << 40,
            u64::MAX / 2,
        ] {
            let i = index(v);
            assert!(i >= last, "index not monotonic at {v}");
            last = i;
            assert!(upper(i) >= v, "upper({i}) < {v}");
            if v >= 128 {
                let err = (upper(i) - v) as f64 / v as f64;
                assert!(err < 0.016, "error {err} at {v}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5);
        assert!((495..=510).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), 1000);
        let mut m = Hist::default();
        m.merge(&h.sparse());
        assert_eq!(m.quantile(0.99), h.quantile(0.99));
    }
}
