//! Shared helpers of the integration tests.

#![allow(dead_code)]

use kommutator_kb::{KbDoc, KbFilter, KbIndex};

/// An article with just these fields set: Russian, public, no department, no tags.
pub fn article(id: i64, title: &str, body: &str) -> KbDoc {
    KbDoc {
        id,
        title: title.to_owned(),
        body: body.to_owned(),
        tags: Vec::new(),
        language: "ru".to_owned(),
        department_id: None,
        public: true,
    }
}

/// An index holding `docs`.
pub fn index_of(docs: &[KbDoc]) -> KbIndex {
    let index = KbIndex::new().expect("index");
    index.upsert_many(docs).expect("upsert_many");
    index
}

/// The ids `query` finds with no filter, best first.
pub fn ids(index: &KbIndex, query: &str) -> Vec<i64> {
    ids_with(index, query, &KbFilter::default())
}

/// The ids `query` finds with `filter`, best first.
pub fn ids_with(index: &KbIndex, query: &str, filter: &KbFilter) -> Vec<i64> {
    index
        .search(query, filter, 100)
        .expect("search")
        .into_iter()
        .map(|hit| hit.id)
        .collect()
}
