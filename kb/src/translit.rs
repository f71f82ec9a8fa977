//! Latin → Cyrillic transliteration of query words, so that `skolko stoit dostavka` (Russian
//! typed on a Latin keyboard, as customers often write) finds the article about «доставка».
//!
//! The customers' transliteration is not a standard: this follows the common informal one
//! (`zh` ж, `kh`/`h` х, `ts` ц, `ch` ч, `sh` ш, `shch`/`sch` щ, `ya`/`ja` я, `yu`/`ju` ю,
//! `yo`/`jo` ё, a word-initial `e` э, `y`/`i` after a vowel at a word's end й, `'` ь).
//! Soft signs and «ъ» are rarely typed and cannot be guessed; the Russian stemmer absorbs
//! most of the resulting misspellings of endings (`mebeli` → «мебели»). The query keeps the
//! Latin word too, so brand names (`iPhone`) and English still match as they are.

/// Longest word transliterated, in bytes (longer ones are not Russian words).
const MAX_WORD: usize = 40;

/// The Cyrillic reading of a word of ASCII letters (and apostrophes), lowercased; `None` for
/// anything else or a word shorter than two letters.
#[must_use]
pub fn to_cyrillic(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    let b = lower.as_bytes();
    if b.len() < 2
        || b.len() > MAX_WORD
        || !b.iter().all(|c| c.is_ascii_lowercase() || *c == b'\'')
        || !b.iter().any(u8::is_ascii_lowercase)
    {
        return None;
    }
    let vowel = |c: u8| matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y');
    let mut out = String::with_capacity(b.len() * 2);
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let at_end = |n: usize| i + n == b.len();
        let prev_vowel = i > 0 && vowel(b[i - 1]);
        let (cyr, used) = if rest.starts_with(b"shch") {
            ("щ", 4)
        } else if rest.starts_with(b"sch") {
            ("щ", 3)
        } else if rest.starts_with(b"zh") {
            ("ж", 2)
        } else if rest.starts_with(b"kh") {
            ("х", 2)
        } else if rest.starts_with(b"ts") {
            ("ц", 2)
        } else if rest.starts_with(b"ch") {
            ("ч", 2)
        } else if rest.starts_with(b"sh") {
            ("ш", 2)
        } else if rest.starts_with(b"ya") || rest.starts_with(b"ja") {
            ("я", 2)
        } else if rest.starts_with(b"yu") || rest.starts_with(b"ju") {
            ("ю", 2)
        } else if rest.starts_with(b"yo") || rest.starts_with(b"jo") {
            ("ё", 2)
        } else if rest.starts_with(b"ye") && i == 0 {
            ("е", 2)
        } else {
            let c = rest[0];
            let one = match c {
                b'a' => "а",
                b'b' => "б",
                b'v' | b'w' => "в",
                b'g' => "г",
                b'd' => "д",
                b'e' if i == 0 => "э",
                b'e' => "е",
                b'z' => "з",
                b'i' | b'y' if prev_vowel && at_end(1) => "й",
                b'i' => "и",
                b'y' if prev_vowel => "й",
                b'y' => "ы",
                b'j' => "й",
                b'k' | b'q' => "к",
                b'l' => "л",
                b'm' => "м",
                b'n' => "н",
                b'o' => "о",
                b'p' => "п",
                b'r' => "р",
                b's' => "с",
                b't' => "т",
                b'u' => "у",
                b'f' => "ф",
                b'h' => "х",
                b'c' => "ц",
                b'x' => "кс",
                b'\'' => "ь",
                _ => return None,
            };
            (one, 1)
        };
        out.push_str(cyr);
        i += used;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_informal_spellings_read_as_russian() {
        for (latin, cyrillic) in [
            ("kogda", "когда"),
            ("privezut", "привезут"),
            ("divan", "диван"),
            ("dostavka", "доставка"),
            ("zapchastei", "запчастей"),
            ("moi", "мой"),
            ("moy", "мой"),
            ("zakaz", "заказ"),
            ("etazh", "этаж"),
            ("kartoi", "картой"),
            ("rassrochka", "рассрочка"),
            ("holodilnik", "холодилник"),
            ("shchetka", "щетка"),
            ("vy", "вы"),
            ("yabloko", "яблоко"),
            ("Kuda", "куда"),
            ("den'gi", "деньги"),
        ] {
            assert_eq!(to_cyrillic(latin).as_deref(), Some(cyrillic), "{latin}");
        }
    }

    #[test]
    fn anything_but_a_latin_word_is_left_alone() {
        for word in [
            "",
            "a",
            "диван",
            "wi-fi",
            "mp3",
            "naïve",
            "''",
            &"a".repeat(41),
        ] {
            assert_eq!(to_cyrillic(word), None, "{word:?}");
        }
    }
}
