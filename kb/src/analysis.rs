//! The analyzers (text → terms) shared by indexing and querying, and the ё → е folding filter.
//!
//! Every analyzer starts with tantivy's `SimpleTokenizer` (split on anything that is not
//! alphanumeric), so the `position` of a token is the index of the word it came from in all of
//! them: that is what lets [`query_words`] line up the Russian, English and plain forms of one
//! word of a query.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
    Token, TokenFilter, TokenStream, Tokenizer,
};

/// Name under which the Russian analyzer is registered with the index.
pub(crate) const RU: &str = "kb_ru";
/// Name under which the English analyzer is registered with the index.
pub(crate) const EN: &str = "kb_en";

/// Tokens at or above this many bytes are dropped (base64 blobs, URLs glued into one word,
/// hashes): 64 bytes keep Russian words up to 31 letters, which covers real vocabulary.
const MAX_TOKEN_BYTES: usize = 64;

/// A normalised tag longer than this is not indexed (no query word pair could ever equal it).
pub(crate) const MAX_TAG_BYTES: usize = 256;

/// Only this much of a query's text is analysed: a customer's message is far shorter, and the
/// rest of a pasted log or letter would cost time without changing which articles match.
pub(crate) const MAX_QUERY_BYTES: usize = 32 * 1024;

/// `simple → remove long → lowercase → ё→е → Russian and English stop words → stemmer`,
/// and for English one more step, [`EnglishRestem`].
///
/// Both stop-word lists go into both analyzers: each analyzer sees all the text, whatever its
/// language, so a Russian stop word left in the English field would still match everything.
pub(crate) fn stemming(language: Language) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(YoFolding)
        .filter(stop_words(Language::Russian))
        .filter(stop_words(Language::English))
        .filter(Stemmer::new(language));
    match language {
        Language::English => builder.filter(EnglishRestem).build(),
        _ => builder.build(),
    }
}

/// `simple → remove long → lowercase → ё→е`: the words of a text as tags are compared.
pub(crate) fn plain() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(YoFolding)
        .build()
}

fn stop_words(language: Language) -> StopWordFilter {
    // `new` has a list for both languages with the `stopwords` feature; an empty filter is the
    // harmless fallback should a future release drop one.
    StopWordFilter::new(language).unwrap_or_else(|| StopWordFilter::remove(Vec::new()))
}

/// The keyword form of a tag: its plain words joined by single spaces, so `" Wi-Fi "`,
/// `"wi fi"` and `"WI–FI"` are one tag, and a tag can be matched from the words of a query.
/// `None` for a tag with no word, or one too long to index.
pub(crate) fn normalize_tag(analyzer: &mut TextAnalyzer, tag: &str) -> Option<String> {
    let mut out = String::new();
    let mut stream = analyzer.token_stream(tag);
    while let Some(token) = stream.next() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&token.text);
        if out.len() > MAX_TAG_BYTES {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The three forms of one word of a query; a form is `None` where its analyzer dropped the
/// word (a stop word for the stemmed forms, a too-long token for all three).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct QueryWord {
    pub(crate) ru: Option<String>,
    pub(crate) en: Option<String>,
    pub(crate) plain: Option<String>,
    /// A Latin word read as transliterated Russian, stemmed (`dostavki` → «доставк»).
    pub(crate) ru_translit: Option<String>,
}

/// Analysers for one query (`TextAnalyzer::token_stream` needs `&mut`, so each search gets
/// its own clones; a clone copies a few boxed filters and an `Arc` to the stop lists).
#[derive(Clone)]
pub(crate) struct QueryAnalyzers {
    pub(crate) ru: TextAnalyzer,
    pub(crate) en: TextAnalyzer,
    pub(crate) plain: TextAnalyzer,
}

impl QueryAnalyzers {
    pub(crate) fn new() -> Self {
        Self {
            ru: stemming(Language::Russian),
            en: stemming(Language::English),
            plain: plain(),
        }
    }
}

/// The words of `text` (its first [`MAX_QUERY_BYTES`]) in reading order, one entry per word
/// that at least one analyzer kept.
pub(crate) fn query_words(analyzers: &mut QueryAnalyzers, text: &str) -> Vec<QueryWord> {
    let text = truncate(text, MAX_QUERY_BYTES);
    let mut words: Vec<QueryWord> = Vec::new();
    let mut put = |position: usize, set: &mut dyn FnMut(&mut QueryWord, String), token: &Token| {
        // Positions are word indexes, dense from 0, and the input is bounded, so this vector
        // is at most one entry per word of the (truncated) text.
        if words.len() <= position {
            words.resize_with(position + 1, QueryWord::default);
        }
        if let Some(word) = words.get_mut(position) {
            set(word, token.text.clone());
        }
    };
    let mut stream = analyzers.ru.token_stream(text);
    while let Some(token) = stream.next() {
        put(token.position, &mut |w, t| w.ru = Some(t), token);
    }
    drop(stream);
    let mut stream = analyzers.en.token_stream(text);
    while let Some(token) = stream.next() {
        put(token.position, &mut |w, t| w.en = Some(t), token);
    }
    drop(stream);
    let mut stream = analyzers.plain.token_stream(text);
    while let Some(token) = stream.next() {
        put(token.position, &mut |w, t| w.plain = Some(t), token);
    }
    drop(stream);
    words.retain(|w| w.ru.is_some() || w.en.is_some() || w.plain.is_some());
    for word in &mut words {
        let Some(cyrillic) = word.plain.as_deref().and_then(crate::translit::to_cyrillic) else {
            continue;
        };
        let mut stream = analyzers.ru.token_stream(&cyrillic);
        if let Some(token) = stream.next() {
            word.ru_translit = Some(token.text.clone());
        }
    }
    words
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Folds `ё` into `е` (after lowercasing): Russian text writes either, and readers treat them
/// as one letter, so "счёт" and "счет" must be one term.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct YoFolding;

impl TokenFilter for YoFolding {
    type Tokenizer<T: Tokenizer> = YoFoldingTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> YoFoldingTokenizer<T> {
        YoFoldingTokenizer(tokenizer)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct YoFoldingTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for YoFoldingTokenizer<T> {
    type TokenStream<'a> = YoFoldingStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        YoFoldingStream(self.0.token_stream(text))
    }
}

pub(crate) struct YoFoldingStream<S>(S);

impl<S: TokenStream> TokenStream for YoFoldingStream<S> {
    fn advance(&mut self) -> bool {
        if !self.0.advance() {
            return false;
        }
        let token = self.0.token_mut();
        if token.text.contains('ё') {
            // Same length in UTF-8 (two bytes each), so offsets stay right.
            token.text = token.text.replace('ё', "е");
        }
        true
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

/// After the Snowball English (Porter2) stemmer: a stem that ends in the `i` Porter2 writes
/// for a final `y` loses it and is stemmed again, so the noun and the verb meet:
/// "delivery"/"deliveries" → "deliveri" → "deliver" → "deliv", the stem of "delivered",
/// "delivering", "deliver". Likewise "payment" stays, "company"/"companies" → "compan".
///
/// A function of the Porter2 stem, so words that shared a stem still do: it only merges
/// classes (at the cost of rare collisions such as "apply"/"apple" → "appl"). Stems of up
/// to three letters ("api", "ski") are left alone.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EnglishRestem;

impl TokenFilter for EnglishRestem {
    type Tokenizer<T: Tokenizer> = EnglishRestemTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> EnglishRestemTokenizer<T> {
        EnglishRestemTokenizer(tokenizer)
    }
}

#[derive(Clone)]
pub(crate) struct EnglishRestemTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for EnglishRestemTokenizer<T> {
    type TokenStream<'a> = EnglishRestemStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        EnglishRestemStream {
            inner: self.0.token_stream(text),
            stemmer: frostem::Stemmer::new(frostem::Algorithm::English),
        }
    }
}

pub(crate) struct EnglishRestemStream<S> {
    inner: S,
    stemmer: frostem::Stemmer,
}

impl<S: TokenStream> TokenStream for EnglishRestemStream<S> {
    fn advance(&mut self) -> bool {
        if !self.inner.advance() {
            return false;
        }
        let token = self.inner.token_mut();
        if let Some(stripped) = token.text.strip_suffix('i') {
            // ASCII-only: Porter2 leaves other scripts untouched, and so do we.
            if stripped.len() >= 3 && stripped.bytes().all(|b| b.is_ascii_lowercase()) {
                token.text = self.stemmer.stem(stripped).into_owned();
            }
        }
        true
    }

    fn token(&self) -> &Token {
        self.inner.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.inner.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(mut analyzer: TextAnalyzer, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            out.push(token.text.clone());
        }
        out
    }

    #[test]
    fn russian_forms_share_a_stem_and_yo_folds() {
        let ru = || stemming(Language::Russian);
        assert_eq!(terms(ru(), "доставка"), terms(ru(), "доставки"));
        assert_eq!(terms(ru(), "Счёт"), terms(ru(), "счет"));
        assert_eq!(terms(ru(), "и в на"), Vec::<String>::new());
    }

    #[test]
    fn english_forms_share_a_stem() {
        let en = || stemming(Language::English);
        for word in [
            "delivered",
            "delivery",
            "deliveries",
            "delivering",
            "Deliver",
        ] {
            assert_eq!(terms(en(), word), vec!["deliv".to_owned()], "{word}");
        }
        assert_eq!(terms(en(), "companies"), terms(en(), "company"));
        assert_eq!(terms(en(), "api"), vec!["api".to_owned()]);
        // Other scripts pass through the English analyzer unstemmed.
        assert_eq!(terms(en(), "доставки"), vec!["доставки".to_owned()]);
        assert_eq!(terms(en(), "the and of"), Vec::<String>::new());
    }

    #[test]
    fn query_words_line_up_by_position() {
        let mut analyzers = QueryAnalyzers::new();
        let words = query_words(&mut analyzers, "Где моя доставка? the parcels");
        // "где" and "моя" are Russian stop words, "the" an English one: dropped from the
        // stemmed forms, kept in the plain form.
        assert_eq!(words.len(), 5);
        assert_eq!(words[0].ru, None);
        assert_eq!(words[0].plain.as_deref(), Some("где"));
        assert_eq!(
            words[2].ru,
            terms(stemming(Language::Russian), "доставки").pop()
        );
        assert_eq!(words[4].en.as_deref(), Some("parcel"));
    }

    #[test]
    fn tags_normalize_to_plain_words() {
        let mut analyzer = plain();
        assert_eq!(
            normalize_tag(&mut analyzer, " Wi-Fi ").as_deref(),
            Some("wi fi")
        );
        assert_eq!(
            normalize_tag(&mut analyzer, "Счёт").as_deref(),
            Some("счет")
        );
        assert_eq!(normalize_tag(&mut analyzer, " -- "), None);
        assert_eq!(normalize_tag(&mut analyzer, &"ab ".repeat(200)), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ёж", 3), "ё");
        assert_eq!(truncate("ёж", 1), "");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
