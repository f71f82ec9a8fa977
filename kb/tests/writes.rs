//! Writes: replace and delete are visible to the very next search; batches; concurrent
//! searches while writing never fail.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{article, ids, index_of};
use kommutator_kb::{KbDoc, KbFilter, KbIndex};

#[test]
fn upsert_replaces_by_id_at_once() {
    let index = index_of(&[article(1, "Доставка", "Курьером")]);
    assert_eq!(ids(&index, "доставка"), vec![1]);
    index
        .upsert(&article(1, "Самовывоз", "Из пункта выдачи"))
        .expect("upsert");
    assert!(ids(&index, "доставка").is_empty());
    assert_eq!(ids(&index, "самовывоз"), vec![1]);
    assert_eq!(index.len(), 1);
}

#[test]
fn delete_is_visible_at_once_and_unknown_id_is_fine() {
    let index = index_of(&[article(1, "Доставка", ""), article(2, "Доставка", "")]);
    index.delete(1).expect("delete");
    assert_eq!(ids(&index, "доставка"), vec![2]);
    assert_eq!(index.len(), 1);
    index.delete(12345).expect("delete of an unknown id");
    index.delete(1).expect("second delete");
    assert_eq!(index.len(), 1);
}

#[test]
fn upsert_many_last_duplicate_wins() {
    let index = index_of(&[
        article(1, "Доставка", ""),
        article(1, "Оплата", ""),
        article(2, "Возврат", ""),
    ]);
    assert_eq!(index.len(), 2);
    assert!(ids(&index, "доставка").is_empty());
    assert_eq!(ids(&index, "оплата"), vec![1]);
    index.upsert_many(&[]).expect("empty batch");
    assert_eq!(index.len(), 2);
}

#[test]
fn replace_all_swaps_the_whole_set() {
    let index = index_of(&[article(1, "Доставка", ""), article(2, "Оплата", "")]);
    index
        .replace_all(&[article(3, "Доставка", "")])
        .expect("replace_all");
    assert_eq!(index.len(), 1);
    assert_eq!(ids(&index, "доставка"), vec![3]);
    index.replace_all(&[]).expect("replace_all empty");
    assert!(index.is_empty());
}

#[test]
fn extreme_articles_are_indexed() {
    let huge = "слово ".repeat(200_000);
    let index = index_of(&[
        KbDoc {
            id: i64::MIN,
            tags: vec![
                String::new(),
                "  ".to_owned(),
                "x".repeat(10_000),
                "ok".to_owned(),
            ],
            language: String::new(),
            department_id: Some(i64::MAX),
            ..article(0, "", &huge)
        },
        KbDoc {
            id: i64::MAX,
            title: "\u{0}\u{1F600}\u{202E}".to_owned(),
            ..article(0, "", "")
        },
    ]);
    assert_eq!(index.len(), 2);
    assert_eq!(ids(&index, "слова"), vec![i64::MIN]);
    assert_eq!(ids(&index, "ok"), vec![i64::MIN]);
}

#[test]
fn concurrent_searches_during_writes_never_fail() {
    let index = Arc::new(index_of(
        &(0..200)
            .map(|id| {
                article(
                    id,
                    "Доставка заказа",
                    &format!("Текст статьи {id} про оплату"),
                )
            })
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let searchers: Vec<_> = (0..3)
        .map(|n| {
            let index = Arc::clone(&index);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut searches = 0u32;
                let filter = KbFilter {
                    public_only: n % 2 == 0,
                    ..KbFilter::default()
                };
                while !stop.load(Ordering::Relaxed) || searches < 10 {
                    let hits = index
                        .search("доставки и оплата", &filter, 10)
                        .expect("search during writes");
                    assert!(hits.len() <= 10);
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    let writer = {
        let index = Arc::clone(&index);
        thread::spawn(move || {
            for round in 0..60i64 {
                let id = round % 200;
                index
                    .upsert(&article(id, "Доставка", &format!("Новая версия {round}")))
                    .expect("upsert");
                // Read-your-writes from the writing thread, while others search.
                let seen = index
                    .search(&format!("версия {round}"), &KbFilter::default(), 200)
                    .expect("search");
                assert!(seen.iter().any(|hit| hit.id == id), "round {round}");
                if round % 10 == 9 {
                    index.delete(id).expect("delete");
                }
            }
        })
    };
    writer.join().expect("writer thread");
    stop.store(true, Ordering::Relaxed);
    for searcher in searchers {
        assert!(searcher.join().expect("searcher thread") >= 10);
    }
    assert_eq!(index.len(), 194);
}

#[test]
fn index_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<KbIndex>();
}
