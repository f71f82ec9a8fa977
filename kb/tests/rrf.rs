//! Reciprocal rank fusion: scores and tie order.

use kommutator_kb::{rrf, RRF_K};

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() < 1e-7
}

#[test]
fn scores_are_sums_of_reciprocal_ranks() {
    let fused = rrf(&[vec![10, 20, 30], vec![30, 10]], RRF_K);
    let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![10, 30, 20]);
    assert!(close(fused[0].1, 1.0 / 61.0 + 1.0 / 62.0));
    assert!(close(fused[1].1, 1.0 / 63.0 + 1.0 / 61.0));
    assert!(close(fused[2].1, 1.0 / 62.0));
}

#[test]
fn k_changes_the_weight_of_rank() {
    // With k = 0 rank 1 in one list beats ranks 3 and 3 in two; with k = 60 it does not.
    let lists = [vec![1, 8, 2], vec![9, 7, 2]];
    assert_eq!(rrf(&lists, 0.0)[0].0, 1);
    assert_eq!(rrf(&lists, 60.0)[0].0, 2);
}

#[test]
fn empty_inputs() {
    assert!(rrf(&[], RRF_K).is_empty());
    assert!(rrf(&[vec![], vec![]], RRF_K).is_empty());
}

#[test]
fn repeats_within_a_list_count_once_at_the_best_rank() {
    let fused = rrf(&[vec![5, 6, 5, 5]], RRF_K);
    assert_eq!(fused.len(), 2);
    assert_eq!(fused[0].0, 5);
    assert!(close(fused[0].1, 1.0 / 61.0));
}

#[test]
fn ties_order_by_best_rank_then_earlier_list() {
    // 1 and 2 have ranks {1, 2} each: exactly equal scores. 1 reached rank 1 in list 0, 2 in
    // list 1: 1 first.
    let fused = rrf(&[vec![1, 2], vec![2, 1]], RRF_K);
    assert_eq!(fused[0].1, fused[1].1);
    assert_eq!([fused[0].0, fused[1].0], [1, 2]);
    // Swapping the lists swaps the tie.
    let fused = rrf(&[vec![2, 1], vec![1, 2]], RRF_K);
    assert_eq!([fused[0].0, fused[1].0], [2, 1]);
    // Single-list ties: equal ranks in different lists, earlier list first.
    let fused = rrf(&[vec![7], vec![3], vec![5]], RRF_K);
    let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![7, 3, 5]);
    // Equal scores from different rank sets: three ranks summed in any order are bit-equal,
    // and the better best rank wins the tie.
    let lists = [vec![4, 1, 9], vec![1, 9, 4], vec![9, 4, 1]];
    let fused = rrf(&lists, RRF_K);
    assert!(fused[0].1 == fused[1].1 && fused[1].1 == fused[2].1);
    let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![4, 1, 9]);
}

#[test]
fn deterministic_across_runs() {
    let lists: Vec<Vec<i64>> = (0..5)
        .map(|l| (0..50).map(|i| (i * 7 + l * 13) % 60).collect())
        .collect();
    let first = rrf(&lists, RRF_K);
    for _ in 0..20 {
        assert_eq!(rrf(&lists, RRF_K), first);
    }
}
