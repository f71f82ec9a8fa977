//! Knowledge-base article bodies and query words (written by admins, pasted from anywhere;
//! queries are customers' messages): `parse_markup` splits any text into pieces that put
//! back together give the text exactly; link and image URLs never span a line or a space;
//! `safe_url` and `kb_plain_text` take anything; the query transliteration reads any word
//! or leaves it, never panics.
#![no_main]

use kommutator::domain::{kb_plain_text, parse_markup, safe_url, Piece};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let pieces = parse_markup(&body);
    let mut back = String::with_capacity(body.len());
    for p in &pieces {
        match p {
            Piece::Text(t) => back.push_str(t),
            Piece::Link { text, url } | Piece::Image { alt: text, url } => {
                assert!(!url.is_empty());
                assert!(!url.contains(['\n', ' ', '\t', ')']), "{url:?}");
                assert!(!text.contains(['\n', '[', ']']), "{text:?}");
                if matches!(p, Piece::Image { .. }) {
                    back.push('!');
                }
                back.push('[');
                back.push_str(text);
                back.push_str("](");
                back.push_str(url);
                back.push(')');
                let _ = safe_url(url);
            }
        }
    }
    assert_eq!(back, body, "the pieces put together are the body");
    assert!(kb_plain_text(&body).len() <= body.len());
    for word in body.split_whitespace() {
        if let Some(cyr) = kommutator_kb::translit::to_cyrillic(word) {
            assert!(cyr.chars().all(|c| ('а'..='я').contains(&c) || c == 'ё'), "{cyr}");
        }
    }
});
