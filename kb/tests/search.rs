//! What a query finds and in which order: stemming in both languages, `ё`, title over body,
//! tags, and the filters.

mod common;

use common::{article, ids, ids_with, index_of};
use kommutator_kb::{KbDoc, KbFilter, KbIndex};

#[test]
fn russian_word_forms_find_each_other() {
    let index = index_of(&[
        article(1, "Сроки доставки", "Доставка занимает три дня."),
        article(
            2,
            "Возврат товара",
            "Вернуть покупку можно в течение двух недель.",
        ),
        article(3, "Оплата картой", "Мы принимаем банковские карты."),
    ]);
    assert_eq!(ids(&index, "доставка"), vec![1]);
    assert_eq!(ids(&index, "когда будет доставкой?"), vec![1]);
    assert_eq!(ids(&index, "ДОСТАВКУ"), vec![1]);
    assert_eq!(ids(&index, "покупки"), vec![2]);
    assert_eq!(ids(&index, "банковской карте"), vec![3]);
}

#[test]
fn english_word_forms_find_each_other() {
    let index = index_of(&[
        KbDoc {
            language: "en".to_owned(),
            ..article(
                1,
                "Delivery times",
                "Orders are usually delivered within three days.",
            )
        },
        KbDoc {
            language: "en".to_owned(),
            ..article(2, "Refunds", "Refunding a payment takes up to a week.")
        },
    ]);
    assert_eq!(ids(&index, "delivered"), vec![1]);
    assert_eq!(ids(&index, "deliveries"), vec![1]);
    assert_eq!(ids(&index, "when is my order delivering"), vec![1]);
    assert_eq!(ids(&index, "refunded"), vec![2]);
    assert_eq!(ids(&index, "payments"), vec![2]);
}

#[test]
fn yo_and_ye_are_one_letter() {
    let index = index_of(&[
        article(1, "Счёт на оплату", "Выставим счёт в течение часа."),
        article(2, "Ещё вопрос", "Елка"),
    ]);
    assert_eq!(ids(&index, "счет"), vec![1]);
    assert_eq!(ids(&index, "СЧЕТА"), vec![1]);
    assert_eq!(ids(&index, "ёлка"), vec![2]);
}

#[test]
fn mixed_language_query_finds_both() {
    let index = index_of(&[
        article(1, "Доставка", "Курьер привезёт заказ."),
        KbDoc {
            language: "en".to_owned(),
            ..article(2, "Invoices", "We send invoices by email.")
        },
    ]);
    let mut found = ids(&index, "доставки and invoice");
    found.sort_unstable();
    assert_eq!(found, vec![1, 2]);
}

#[test]
fn title_outranks_body() {
    let index = index_of(&[
        article(1, "Гарантия", "Сроки доставки зависят от региона."),
        article(2, "Сроки доставки", "Зависят от региона."),
    ]);
    assert_eq!(ids(&index, "доставка"), vec![2, 1]);
    let hits = index
        .search("доставка", &KbFilter::default(), 10)
        .expect("search");
    assert!(hits[0].score > hits[1].score, "{hits:?}");
}

#[test]
fn tags_match_one_or_two_words() {
    let index = index_of(&[
        KbDoc {
            tags: vec!["Wi-Fi".to_owned(), "роутер".to_owned()],
            ..article(1, "Нет интернета", "Перезагрузите устройство.")
        },
        article(2, "Роутеры", "Какой выбрать."),
    ]);
    // "роутер" is a tag of 1 (exact) and a title word of 2 (stemmed): both found.
    let mut found = ids(&index, "роутер");
    found.sort_unstable();
    assert_eq!(found, vec![1, 2]);
    // "wi fi" is two words of the query, one tag of article 1 (and in no text).
    assert_eq!(ids(&index, "не работает wi fi"), vec![1]);
    assert_eq!(ids(&index, "Wi-Fi"), vec![1]);
    // A tag is matched whole, not by one of its words.
    assert!(ids(&index, "wi").is_empty());
}

#[test]
fn limit_caps_and_zero_gives_nothing() {
    let docs: Vec<KbDoc> = (1..=20)
        .map(|id| article(id, "Доставка", &format!("Статья номер {id}")))
        .collect();
    let index = index_of(&docs);
    let hits = index
        .search("доставка", &KbFilter::default(), 5)
        .expect("search");
    assert_eq!(hits.len(), 5);
    // Equal scores: ascending id.
    let found: Vec<i64> = hits.iter().map(|hit| hit.id).collect();
    assert_eq!(found, vec![1, 2, 3, 4, 5]);
    assert!(index
        .search("доставка", &KbFilter::default(), 0)
        .expect("search")
        .is_empty());
    assert!(
        index
            .search("доставка", &KbFilter::default(), usize::MAX)
            .expect("search")
            .len()
            == 20
    );
}

fn filter_fixture() -> KbIndex {
    index_of(&[
        // Department 10, public, Russian.
        KbDoc {
            department_id: Some(10),
            ..article(1, "Доставка по Москве", "")
        },
        // Department 20, internal, Russian.
        KbDoc {
            department_id: Some(20),
            public: false,
            ..article(2, "Доставка: внутренний регламент", "")
        },
        // No department (everyone), public, English.
        KbDoc {
            language: "EN ".to_owned(),
            ..article(3, "Доставка abroad", "")
        },
        // No department, internal, other language.
        KbDoc {
            language: "kk".to_owned(),
            public: false,
            ..article(4, "Доставка", "")
        },
    ])
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

#[test]
fn department_filter_keeps_listed_and_departmentless() {
    let index = filter_fixture();
    let only = |departments: Option<Vec<i64>>| {
        let filter = KbFilter {
            department_ids: departments,
            ..KbFilter::default()
        };
        sorted(ids_with(&index, "доставка", &filter))
    };
    assert_eq!(only(None), vec![1, 2, 3, 4]);
    assert_eq!(only(Some(vec![10])), vec![1, 3, 4]);
    assert_eq!(only(Some(vec![20, 10])), vec![1, 2, 3, 4]);
    assert_eq!(only(Some(vec![99])), vec![3, 4]);
    assert_eq!(only(Some(vec![])), vec![3, 4]);
}

#[test]
fn public_only_filter() {
    let index = filter_fixture();
    let filter = KbFilter {
        public_only: true,
        ..KbFilter::default()
    };
    assert_eq!(sorted(ids_with(&index, "доставка", &filter)), vec![1, 3]);
}

#[test]
fn language_filter_is_exact_but_trims_and_ignores_case() {
    let index = filter_fixture();
    let language = |code: &str| {
        let filter = KbFilter {
            language: Some(code.to_owned()),
            ..KbFilter::default()
        };
        sorted(ids_with(&index, "доставка", &filter))
    };
    assert_eq!(language("ru"), vec![1, 2]);
    assert_eq!(language("en"), vec![3]);
    assert_eq!(language(" En"), vec![3]);
    assert_eq!(language("kk"), vec![4]);
    assert_eq!(language("de"), Vec::<i64>::new());
}

#[test]
fn filters_combine_and_do_not_change_scores() {
    let index = filter_fixture();
    let all = index
        .search("доставка", &KbFilter::default(), 10)
        .expect("search");
    let filter = KbFilter {
        department_ids: Some(vec![10]),
        public_only: true,
        language: Some("ru".to_owned()),
    };
    let filtered = index.search("доставка", &filter, 10).expect("search");
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, 1);
    let unfiltered = all.iter().find(|hit| hit.id == 1).expect("article 1");
    assert_eq!(filtered[0].score, unfiltered.score);
}

#[test]
fn empty_index_finds_nothing() {
    let index = KbIndex::new().expect("index");
    assert!(index.is_empty());
    assert!(ids(&index, "доставка").is_empty());
}

#[test]
fn admits_agrees_with_the_search_for_every_filter() {
    let docs = [
        KbDoc {
            department_id: Some(10),
            ..article(1, "Доставка по Москве", "")
        },
        KbDoc {
            department_id: Some(20),
            public: false,
            ..article(2, "Доставка: внутренний регламент", "")
        },
        KbDoc {
            language: "EN ".to_owned(),
            ..article(3, "Доставка abroad", "")
        },
        KbDoc {
            language: "kk".to_owned(),
            public: false,
            ..article(4, "Доставка", "")
        },
    ];
    let index = index_of(&docs);
    for department_ids in [
        None,
        Some(vec![]),
        Some(vec![10]),
        Some(vec![20, 10]),
        Some(vec![99]),
    ] {
        for public_only in [false, true] {
            for language in [None, Some("ru"), Some(" En"), Some("kk"), Some("de")] {
                let filter = KbFilter {
                    department_ids: department_ids.clone(),
                    public_only,
                    language: language.map(str::to_owned),
                };
                let admitted: Vec<i64> = docs
                    .iter()
                    .filter(|d| filter.admits(d.department_id, d.public, &d.language))
                    .map(|d| d.id)
                    .collect();
                assert_eq!(
                    sorted(ids_with(&index, "доставка", &filter)),
                    admitted,
                    "{filter:?}"
                );
            }
        }
    }
}

#[test]
fn russian_typed_in_latin_letters_finds_the_russian_article() {
    let index = index_of(&[
        article(
            1,
            "Доставка мебели",
            "Привезём диван и шкаф в течение трёх дней.",
        ),
        article(2, "Возврат товара", "Верните товар в течение 14 дней."),
        article(3, "Delivery abroad", "We ship sofas to Kazakhstan."),
    ]);
    assert_eq!(ids(&index, "kogda privezut divan").first(), Some(&1));
    assert_eq!(
        ids(&index, "skolko stoit dostavka mebeli").first(),
        Some(&1)
    );
    assert_eq!(ids(&index, "kak vernut tovar").first(), Some(&2));
    // English still reads as English.
    assert_eq!(ids(&index, "do you ship abroad").first(), Some(&3));
}
