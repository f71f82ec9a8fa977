//! Any text a customer can send is a valid query: query-syntax characters, huge, binary,
//! control characters, emoji, only stop words or punctuation. Each search returns `Ok`.
//! (No wall-clock assertions here: the bench measures what a 1 MB query costs.)

mod common;

use common::{article, index_of};
use kommutator_kb::{KbFilter, KbIndex};

fn index() -> KbIndex {
    index_of(&[
        article(
            1,
            "Доставка заказа",
            "Курьер привезёт заказ AND оплата (наличными).",
        ),
        article(
            2,
            "Title: field",
            "title:доставка body:\"x\" NOT -y +z ~2 ^3 [a TO b] {c} *",
        ),
    ])
}

fn search(index: &KbIndex, query: &str) -> Vec<i64> {
    index
        .search(query, &KbFilter::default(), 10)
        .unwrap_or_else(|error| panic!("query {:?} failed: {error}", query.get(..60)))
        .into_iter()
        .map(|hit| hit.id)
        .collect()
}

#[test]
fn query_syntax_is_just_text() {
    let index = index();
    for query in [
        "title:доставка",
        "\"доставка",
        "доставка\"",
        "(доставка",
        "доставка)",
        "доставка AND",
        "AND OR NOT",
        "-доставка",
        "+доставка",
        "доставка~",
        "доставка^100",
        "доставк*",
        "[доставка TO заказ}",
        "body:(\"x\" OR y)",
        "\\",
        "::::",
        "{}[]()^\"~*?:\\/",
        "field:",
        ":",
    ] {
        search(&index, query);
    }
    // The words still count: a minus sign does not exclude, a colon does not pick a field.
    assert!(search(&index, "-доставка").contains(&1));
    assert!(search(&index, "title:доставка").contains(&1));
}

#[test]
fn empty_and_wordless_queries_find_nothing() {
    let index = index();
    for query in [
        "",
        " ",
        "\t\n\r",
        "?!.,;:-—…«»",
        "и в на с по не что",
        "the and of to is a",
        "и the, и the!!!",
        "😀😀😀 🚚",
        "\u{0}\u{1}\u{7}\u{1b}[31m\u{7f}",
        "\u{200B}\u{FEFF}\u{202E}",
    ] {
        assert_eq!(search(&index, query), Vec::<i64>::new(), "{query:?}");
    }
}

#[test]
fn emoji_and_control_characters_around_words() {
    let index = index();
    for query in [
        "🚚доставка🚚",
        "\u{0}доставка\u{1b}",
        "\u{202E}ДОСТАВКА\u{200B}",
    ] {
        assert_eq!(search(&index, query).first(), Some(&1), "{query:?}");
    }
}

#[test]
fn megabyte_queries() {
    let index = index();
    // 1 MB of repeated real words.
    let repeated = "где моя доставка? ".repeat((1 << 20) / 32);
    assert!(repeated.len() >= 1 << 20);
    assert!(search(&index, &repeated).contains(&1));
    // 1 MB of distinct words, none in the index.
    let distinct: String = (0..100_000u32).map(|i| format!("w{i:x}z ")).collect();
    assert!(distinct.len() >= 600_000);
    assert!(search(&index, &distinct).is_empty());
    // 1 MB of one word (removed as too long) and of pseudo-random characters.
    search(&index, &"я".repeat(1 << 19));
    let noise: String = (0..(1u32 << 18))
        .map(|i| char::from_u32(i.wrapping_mul(7919) % 0x10_FFFF).unwrap_or('\u{FFFD}'))
        .collect();
    search(&index, &noise);
    // A word cut by the 32 KiB bound inside a multi-byte character.
    search(&index, &format!("{}доставка", "x".repeat(32 * 1024 - 1)));
}

#[test]
fn many_distinct_known_words_are_capped_not_rejected() {
    let docs: Vec<_> = (0..300)
        .map(|i| article(i, &format!("тема{i}"), &format!("слово{i} общее")))
        .collect();
    let index = index_of(&docs);
    let query: String = (0..300).map(|i| format!("слово{i} ")).collect();
    let found = search(&index, &query);
    // At most 64 words become clauses, so at most 64 articles can match.
    assert!(!found.is_empty() && found.len() <= 64, "{}", found.len());
}

#[test]
fn rarest_words_are_kept_when_capping() {
    // 100 words that every one of 70 articles has, then one word only article 500 has: the
    // rare word comes last, past the cap, and still counts.
    let common: String = (0..100).map(|i| format!("common{i} ")).collect();
    let mut docs: Vec<_> = (0..70).map(|i| article(i, "", &common)).collect();
    docs.push(article(500, "", "редкость"));
    let index = index_of(&docs);
    let found = search(&index, &format!("{common} редкости"));
    assert_eq!(found.first(), Some(&500));
}
