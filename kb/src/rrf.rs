//! Reciprocal rank fusion.

use std::collections::HashMap;

/// The usual constant of reciprocal rank fusion (Cormack et al., 2009).
pub const RRF_K: f32 = 60.0;

/// Fuses ranked lists of ids: each id scores `Σ 1 / (k + rank)` over the lists it appears in,
/// rank counted from 1; the result is sorted by that score, best first.
///
/// An id repeated within one list counts once, at its best rank there. A `k` that is negative
/// or not finite is replaced by [`RRF_K`].
///
/// Ties are ordered deterministically: the id with the better best rank in any list first; at
/// an equal best rank, the one from the earlier list; the sums are computed so that ids with
/// the same ranks get exactly the same score, whatever the order of the lists.
pub fn rrf(lists: &[Vec<i64>], k: f32) -> Vec<(i64, f32)> {
    let k = if k.is_finite() && k >= 0.0 {
        f64::from(k)
    } else {
        f64::from(RRF_K)
    };
    struct Entry {
        ranks: Vec<usize>,
        /// (best rank, index of the first list where it was reached)
        best: (usize, usize),
        /// The list seen last, to skip repeats within one list.
        last_list: usize,
    }
    let mut entries: HashMap<i64, Entry> = HashMap::new();
    for (list_index, list) in lists.iter().enumerate() {
        for (position, &id) in list.iter().enumerate() {
            let rank = position.saturating_add(1);
            match entries.get_mut(&id) {
                Some(entry) if entry.last_list == list_index => {}
                Some(entry) => {
                    entry.ranks.push(rank);
                    entry.last_list = list_index;
                    if rank < entry.best.0 {
                        entry.best = (rank, list_index);
                    }
                }
                None => {
                    entries.insert(
                        id,
                        Entry {
                            ranks: vec![rank],
                            best: (rank, list_index),
                            last_list: list_index,
                        },
                    );
                }
            }
        }
    }
    let mut fused: Vec<(i64, f64, (usize, usize))> = entries
        .into_iter()
        .map(|(id, mut entry)| {
            // Summing in rank order makes equal multisets of ranks give bit-equal sums.
            entry.ranks.sort_unstable();
            // Ranks are list positions: far below 2^53, exact as f64.
            let score: f64 = entry.ranks.iter().map(|&r| 1.0 / (k + r as f64)).sum();
            (id, score, entry.best)
        })
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    fused
        .into_iter()
        .map(|(id, score, _)| (id, score as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_reciprocal_ranks() {
        let fused = rrf(&[vec![1, 2], vec![2, 3]], 60.0);
        let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        let two = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((f64::from(fused[0].1) - two).abs() < 1e-7);
    }

    #[test]
    fn bad_k_falls_back_to_default() {
        assert_eq!(rrf(&[vec![7]], f32::NAN), rrf(&[vec![7]], RRF_K));
        assert_eq!(rrf(&[vec![7]], -1.0), rrf(&[vec![7]], RRF_K));
    }
}
