//! Score fusion of keyword and vector rankings ("hybrid search").
//!
//! Plain reciprocal rank fusion ([`crate::rrf`]) gives the keyword list as much say as the
//! vector list; on the shipped evaluation set (`kb/eval`) that costs the cross-language
//! queries, where a common word shared with a wrong article puts it first. Here each list's
//! scores are scaled to 0..1 within the query (min–max: BM25 and cosine have unrelated
//! units) and mixed, `(1 − w) · vector + w · keyword`, so a keyword match moves an article
//! up by how strong it is relative to the others, and a query whose words match nothing
//! (another language) is ranked by the vectors alone.

use std::collections::HashMap;

/// The keyword list's share in [`hybrid`], chosen on `kb/eval` (kb-fused prints the
/// alternatives; see `docs/iconsultant.md`).
pub const HYBRID_KEYWORD_WEIGHT: f32 = 0.2;

/// Fuses a keyword ranking and a vector ranking, each `(id, score)` with higher scores
/// better, into one list best first (ties by ascending id). An id missing from a list gets
/// that list's lowest scaled score, 0. Non-finite scores count as 0; `weight` is clamped
/// to 0..=1 (0: vectors only, 1: keywords only).
#[must_use]
pub fn hybrid(keyword: &[(i64, f32)], vector: &[(i64, f32)], weight: f32) -> Vec<(i64, f32)> {
    let w = if weight.is_finite() {
        weight.clamp(0.0, 1.0)
    } else {
        HYBRID_KEYWORD_WEIGHT
    };
    let mut fused: HashMap<i64, f32> = HashMap::new();
    for (list, share) in [(keyword, w), (vector, 1.0 - w)] {
        for (id, s) in scaled(list) {
            *fused.entry(id).or_default() += share * s;
        }
    }
    let mut out: Vec<(i64, f32)> = fused.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Scores scaled to 0..=1 within the list (all equal: all 1); repeated ids keep their best.
fn scaled(list: &[(i64, f32)]) -> HashMap<i64, f32> {
    let finite = |s: f32| if s.is_finite() { s } else { 0.0 };
    let mut best: HashMap<i64, f32> = HashMap::new();
    for &(id, s) in list {
        let s = finite(s);
        best.entry(id).and_modify(|b| *b = b.max(s)).or_insert(s);
    }
    let (lo, hi) = best
        .values()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
    let span = hi - lo;
    for s in best.values_mut() {
        *s = if span > 0.0 { (*s - lo) / span } else { 1.0 };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_rank_when_keywords_match_nothing() {
        let v = [(3, 0.91), (1, 0.88), (2, 0.80)];
        let ids: Vec<i64> = hybrid(&[], &v, 0.3).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [3, 1, 2]);
    }

    #[test]
    fn a_strong_keyword_match_lifts_a_close_second() {
        let v = [(3, 0.91), (1, 0.90), (2, 0.80)];
        let k = [(1, 12.0), (2, 3.0)];
        let ids: Vec<i64> = hybrid(&k, &v, 0.3).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 3, 2]);
    }

    #[test]
    fn a_keyword_match_does_not_beat_a_clearly_better_vector_match() {
        // A shared common word with a wrong article (id 2) against the right one (id 3).
        let v = [(3, 0.93), (1, 0.84), (2, 0.80)];
        let k = [(2, 5.0), (3, 4.0)];
        let ids: Vec<i64> = hybrid(&k, &v, 0.3).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids[0], 3);
    }

    #[test]
    fn odd_scores_and_weights_are_tamed() {
        let v = [(1, f32::NAN), (2, 0.5), (2, 0.7)];
        let k = [(1, f32::INFINITY)];
        for w in [f32::NAN, -1.0, 0.0, 1.0, 7.0] {
            let out = hybrid(&k, &v, w);
            assert_eq!(out.len(), 2);
            assert!(out.iter().all(|(_, s)| s.is_finite()));
        }
        assert!(hybrid(&[], &[], 0.3).is_empty());
    }
}
