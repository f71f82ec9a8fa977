//! Text normalisation: what every engine sees before featurisation.
//!
//! Customer text arrives from e-mail, messengers, chats and web forms, in Russian and English,
//! with typos, transliteration, homoglyphs (a Latin `c` typed inside a Cyrillic word),
//! invisible characters and emoji. [`normalize`] turns it into lowercase words separated by
//! single spaces, so that the same request typed differently gives the same features:
//!
//! - input longer than [`MAX_INPUT_BYTES`] is cut at a char boundary first ([`truncate`]), so
//!   the cost of everything downstream is bounded whatever the caller passes;
//! - letters are lowercased (Unicode), `ё` becomes `е`;
//! - every decimal digit becomes `0` and a run of digits keeps at most
//!   [`MAX_DIGIT_RUN`] of them: "order 12345678" and "order 55512345" look alike;
//! - apostrophes inside words are dropped ("don't" → "dont", like people type it);
//! - invisible characters (zero-width spaces and joiners, soft hyphens, variation selectors,
//!   skin-tone modifiers, combining marks) are deleted;
//! - emoji and the symbols `?`, `!`, `$`, `%`, `№` and currency signs become words of
//!   their own: they carry intent ("😡", "?", "₽");
//! - everything else that is not a letter or digit — whitespace, punctuation, control
//!   characters — separates words;
//! - a word mixing Cyrillic and Latin letters has its look-alike letters (`a c e o p x y k m
//!   t b h`) switched to the script of the word's majority;
//! - optionally ([`fold_cyrillic`](normalize)) Cyrillic is transliterated to Latin the way
//!   people type Russian without a Cyrillic keyboard ("хочу" → "hochu"), so transliterated
//!   and Cyrillic spellings share features.
//!
//! Everything is a single pass over the characters (plus one pass per word), linear in the
//! input length, with no panics on any input.

/// Input beyond this many bytes is ignored (64 KiB): no inquiry needs more to be classified,
/// and it bounds the time and memory of featurisation for pathological input.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// A run of digits keeps at most this many (`0000`): enough to tell a PIN from a card
/// number, without long numbers flooding the features.
pub const MAX_DIGIT_RUN: usize = 4;

/// The first [`MAX_INPUT_BYTES`] bytes of `text`, cut back to a char boundary.
#[must_use]
pub fn truncate(text: &str) -> &str {
    if text.len() <= MAX_INPUT_BYTES {
        return text;
    }
    let mut end = MAX_INPUT_BYTES;
    // At most 3 steps back: a UTF-8 sequence is at most 4 bytes long.
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Normalises `text` (after [`truncate`]) into lowercase words separated by single spaces.
///
/// With `fold_cyrillic`, Cyrillic letters are transliterated to Latin. The result is empty
/// when the text has no letters, digits or symbol words.
#[must_use]
pub fn normalize(text: &str, fold_cyrillic: bool) -> String {
    let text = truncate(text);
    let mut out = String::with_capacity(text.len() + 8);
    let mut word = Word::default();
    let mut digit_run = 0usize;
    for c in text.chars() {
        if is_deleted(c) {
            continue;
        }
        if is_apostrophe(c) {
            // Joins the two halves of "don't"; at a word's edge it simply vanishes.
            continue;
        }
        if c.is_numeric() {
            digit_run += 1;
            if digit_run <= MAX_DIGIT_RUN {
                word.push('0');
            }
            continue;
        }
        digit_run = 0;
        if c.is_alphabetic() {
            for lower in c.to_lowercase() {
                if !is_deleted(lower) {
                    word.push(if lower == 'ё' { 'е' } else { lower });
                }
            }
        } else if is_symbol_word(c) {
            word.flush(&mut out, fold_cyrillic);
            word.push(c);
            word.flush(&mut out, fold_cyrillic);
        } else {
            word.flush(&mut out, fold_cyrillic);
        }
    }
    word.flush(&mut out, fold_cyrillic);
    out
}

/// The word being collected, with its script counts for the homoglyph fix.
#[derive(Debug, Default)]
struct Word {
    chars: Vec<char>,
    cyrillic: usize,
    latin: usize,
}

impl Word {
    fn push(&mut self, c: char) {
        if is_cyrillic(c) {
            self.cyrillic += 1;
        } else if c.is_ascii_lowercase() {
            self.latin += 1;
        }
        self.chars.push(c);
    }

    /// Appends the word (if any) to `out`, space-separated, and starts a new one.
    fn flush(&mut self, out: &mut String, fold_cyrillic: bool) {
        if self.chars.is_empty() {
            return;
        }
        let to_cyrillic = self.cyrillic > 0 && self.latin > 0 && self.cyrillic > self.latin;
        let to_latin = self.cyrillic > 0 && self.latin > 0 && self.latin > self.cyrillic;
        if !out.is_empty() {
            out.push(' ');
        }
        for &c in &self.chars {
            let c = if to_cyrillic {
                latin_lookalike_to_cyrillic(c)
            } else if to_latin {
                cyrillic_lookalike_to_latin(c)
            } else {
                c
            };
            if fold_cyrillic {
                match transliterate(c) {
                    Some(latin) => out.push_str(latin),
                    None => out.push(c),
                }
            } else {
                out.push(c);
            }
        }
        self.chars.clear();
        self.cyrillic = 0;
        self.latin = 0;
    }
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{04FF}')
}

/// Characters removed without leaving a word boundary: they are invisible or decorate the
/// letter before them, and are used (deliberately or not) inside words.
fn is_deleted(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{0300}'..='\u{036F}'       // combining diacritical marks
        | '\u{200B}'..='\u{200F}'       // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}'       // bidi embedding controls
        | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors (emoji presentation)
        | '\u{FEFF}'                    // byte-order mark / zero-width no-break space
        | '\u{1F3FB}'..='\u{1F3FF}'     // emoji skin-tone modifiers
    )
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '\u{00B4}' | '\u{2018}' | '\u{2019}' | '\u{02BC}'
    )
}

/// Characters that form a one-character word: emoji, pictographs and a few symbols whose
/// presence says something about the request (a question, an exclamation, money).
fn is_symbol_word(c: char) -> bool {
    matches!(c,
        '?' | '!' | '$' | '%' | '№' | '€' | '£' | '¥'
        | '\u{20A0}'..='\u{20CF}'       // currency signs (₽, ₴, ₸ ...)
        | '\u{2600}'..='\u{27BF}'       // misc symbols, dingbats
        | '\u{2B00}'..='\u{2BFF}'       // arrows and stars
        | '\u{1F000}'..='\u{1FAFF}'     // emoji, pictographs
    )
}

fn latin_lookalike_to_cyrillic(c: char) -> char {
    match c {
        'a' => 'а',
        'b' => 'в',
        'c' => 'с',
        'e' => 'е',
        'h' => 'н',
        'k' => 'к',
        'm' => 'м',
        'o' => 'о',
        'p' => 'р',
        't' => 'т',
        'x' => 'х',
        'y' => 'у',
        other => other,
    }
}

fn cyrillic_lookalike_to_latin(c: char) -> char {
    match c {
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'е' => 'e',
        'н' => 'h',
        'к' => 'k',
        'м' => 'm',
        'о' => 'o',
        'р' => 'p',
        'т' => 't',
        'х' => 'x',
        'у' => 'y',
        other => other,
    }
}

/// Informal Russian (and Ukrainian) transliteration, as typed on a Latin keyboard.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' | 'ґ' => "g",
        'д' => "d",
        'е' | 'э' | 'є' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' | 'і' | 'ї' => "i",
        'й' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' => "u",
        'ф' => "f",
        'х' => "h",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "sch",
        'ъ' | 'ь' => "",
        'ы' => "y",
        'ю' => "yu",
        'я' => "ya",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_collapses_and_maps_digits() {
        assert_eq!(
            normalize("  Hello,   WORLD!! Order #1234567\t\n", false),
            "hello world ! ! order 0000"
        );
    }

    #[test]
    fn yo_becomes_ye_and_apostrophes_join() {
        assert_eq!(normalize("Ёлка ещё, don't", false), "елка еще dont");
    }

    #[test]
    fn homoglyphs_follow_the_majority_script() {
        // "cпасибо" with a Latin c, "Hellо" with a Cyrillic о.
        assert_eq!(normalize("cпасибо Hellо", false), "спасибо hello");
    }

    #[test]
    fn folding_transliterates_cyrillic() {
        assert_eq!(normalize("Хочу купить щётку", true), "hochu kupit schetku");
        assert_eq!(normalize("hochu kupit", true), "hochu kupit");
    }

    #[test]
    fn invisible_characters_vanish_and_controls_separate() {
        assert_eq!(
            normalize("воз\u{200B}врат\u{00AD}\u{0007}денег", false),
            "возврат денег"
        );
        assert_eq!(normalize("\u{0000}\u{001B}[31m", false), "00m");
    }

    #[test]
    fn emoji_are_words() {
        assert_eq!(normalize("ужас😡😡 👍🏽", false), "ужас 😡 😡 👍");
    }

    #[test]
    fn empty_and_punctuation_only_give_nothing() {
        assert_eq!(normalize("", false), "");
        assert_eq!(normalize(" \t\r\n ... --- ,,,", false), "");
    }

    #[test]
    fn truncates_at_a_char_boundary() {
        let text = "я".repeat(MAX_INPUT_BYTES); // 2 bytes each
        let cut = truncate(&text);
        assert!(cut.len() <= MAX_INPUT_BYTES);
        let odd = format!("a{}", "я".repeat(MAX_INPUT_BYTES));
        let cut = truncate(&odd);
        assert_eq!(cut.len(), MAX_INPUT_BYTES - 1);
        assert!(cut.ends_with('я'));
    }
}
