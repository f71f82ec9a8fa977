//! Separating the new text of a mail from the quoted history and the signature.
//!
//! Works on lines. The first "cut" is found: a quoted line (`>`), an attribution line that
//! introduces a quote ("On … wrote:", "пн, 1 дек. 2026 г. в 10:00, Иван <…>:"), a
//! separator ("-----Original Message-----", "---------- Forwarded message ---------"), an
//! Outlook header block ("From: … / Sent: …", "От: … / Отправлено: …"), a signature
//! delimiter ("-- ") or a mobile signature ("Sent from my iPhone", "Отправлено с iPhone").
//! What is before the cut is the new text, the rest is `quoted`. Two shapes are handled
//! on top of that: a bottom-posted reply (the quote first, then the answer) and an
//! interleaved one (answers between quoted lines, kept whole as the text). When nothing
//! would be left as text, the whole body is the text.

use std::sync::LazyLock;

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    pub text: Option<String>,
    pub quoted: Option<String>,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static regex compiles")
}

static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(sent from my \S.{0,40}|sent from (mail|outlook|yahoo mail) for \S.{0,30}|sent from yahoo mail.{0,30}|get outlook for \S.{0,20}|sent via \S.{0,40}|(сообщение )?отправлено (с|со|из) (моего |мобильного |мобильной )?\S.{0,40}|послано с (моего )?\S.{0,40}|von meinem \S.{0,30} gesendet)\s*$",
    )
});
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^\s*(-{2,}|_{2,}|={2,})\s*(original message|forwarded message|message d'origine|ursprüngliche nachricht|mensaje original|исходное сообщение|пересылаемое сообщение|переадресованное сообщение|перенаправленное сообщение|оригинальное сообщение|конец пересылаемого сообщения)\s*(-{2,}|_{2,}|={2,})?\s*$|^\s*(begin forwarded message|начало переадресованного сообщения|начало пересылаемого сообщения)\s*:\s*$",
    )
});
static OUTLOOK_FROM: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^\s*\*?\s*(from|от|von|de|отправитель)\s*:\s*\*?\s*\S"));
static OUTLOOK_SENT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*\*?\s*(sent|date|отправлено|дата|gesendet|datum|envoyé)\s*:\s*\*?\s*\S")
});
static RULE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(_{8,}|-{8,})\s*$"));
/// "On Tue, 1 Dec 2026 at 10:00, Ivan <ivan@example.com> wrote:" (possibly wrapped).
static ON_WROTE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(on|am|le|el)\s.{3,300}\s(wrote|schrieb|a écrit|escribió)\s*:\s*$")
});
/// "Иван Петров написал(а):", "… пишет:", "Ivan wrote:".
static WROTE_VERB: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(написал|написала|написал\(а\)|пишет|wrote|schrieb|a écrit|escribió)\s*:\s*$")
});
/// An attribution without a verb: ends with ':' and names an address or a time.
/// "пн, 1 дек. 2026 г. в 10:00, Иван <ivan@example.ru>:", "01.12.2026, 10:00, "Иван" <i@ya.ru>:".
static HEADER_LIKE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(<[^<>\s]+@[^<>\s]+>|\b\d{1,2}:\d{2}\b|\b\d{4}\b).{0,80}:\s*$"));

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn is_quote(line: &str) -> bool {
    line.trim_start_matches([' ', '\t']).starts_with('>')
}

fn is_signature(line: &str) -> bool {
    line.trim_end() == "--" || line == "-- " || MOBILE_SIGNATURE.is_match(line)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// A quoted line at this index.
    Quote,
    /// An attribution of this many lines, followed by a quote.
    Attribution(usize),
    /// Everything from here is history or signature.
    Hard,
}

/// If an attribution starts at `i`, how many lines it takes and whether it stands on its
/// own (a strong shape) or needs a quote after it.
fn attribution(lines: &[&str], i: usize) -> Option<(usize, bool)> {
    let first = lines.get(i)?;
    if is_blank(first) || is_quote(first) {
        return None;
    }
    let mut joined = String::new();
    for k in 0..3 {
        let line = lines.get(i + k)?;
        if k > 0 && (is_blank(line) || is_quote(line)) {
            return None;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line.trim());
        if joined.len() > 400 {
            return None;
        }
        if joined.ends_with(':') {
            let strong = ON_WROTE.is_match(&joined)
                || (WROTE_VERB.is_match(&joined) && HEADER_LIKE.is_match(&joined));
            let weak = WROTE_VERB.is_match(&joined) || HEADER_LIKE.is_match(&joined);
            return (strong || weak).then_some((k + 1, strong));
        }
    }
    None
}

fn outlook_block(lines: &[&str], i: usize) -> bool {
    let Some(first) = lines.get(i) else {
        return false;
    };
    OUTLOOK_FROM.is_match(first)
        && lines
            .iter()
            .skip(i + 1)
            .take(5)
            .any(|l| OUTLOOK_SENT.is_match(l))
}

fn next_non_blank(lines: &[&str], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&j| lines.get(j).is_some_and(|l| !is_blank(l)))
}

/// The first cut at or after `from`. With `hard_only`, quoted lines and attributions do
/// not count unless they are strong.
fn find_cut(lines: &[&str], from: usize, hard_only: bool) -> Option<(usize, Cut)> {
    let mut i = from;
    while let Some(line) = lines.get(i) {
        if is_quote(line) {
            if !hard_only {
                return Some((i, Cut::Quote));
            }
        } else if is_signature(line) || SEPARATOR.is_match(line) {
            return Some((i, Cut::Hard));
        } else if outlook_block(lines, i) {
            // An Outlook rule ("______") just above belongs to the history.
            let mut start = i;
            if let Some(prev) = (from..i)
                .rev()
                .find(|&j| lines.get(j).is_some_and(|l| !is_blank(l)))
            {
                if lines.get(prev).is_some_and(|l| RULE.is_match(l)) {
                    start = prev;
                }
            }
            return Some((start, Cut::Hard));
        } else if let Some((len, strong)) = attribution(lines, i) {
            let quote_follows = next_non_blank(lines, i + len)
                .and_then(|j| lines.get(j))
                .is_some_and(|l| is_quote(l));
            if quote_follows && !hard_only {
                return Some((i, Cut::Attribution(len)));
            }
            if strong {
                return Some((i, Cut::Hard));
            }
        }
        i += 1;
    }
    None
}

/// The index after a quote block starting at `from` (quoted and blank lines).
fn quote_block_end(lines: &[&str], from: usize) -> usize {
    let mut j = from;
    while lines.get(j).is_some_and(|l| is_quote(l) || is_blank(l)) {
        j += 1;
    }
    j
}

fn join(lines: &[&str]) -> Option<String> {
    let start = lines.iter().position(|l| !is_blank(l))?;
    let end = lines.iter().rposition(|l| !is_blank(l))?;
    let s = lines.get(start..=end)?.join("\n");
    Some(s.trim_end().to_owned())
}

fn get<'a, 'b>(lines: &'a [&'b str], from: usize, to: usize) -> &'a [&'b str] {
    lines.get(from..to.min(lines.len())).unwrap_or(&[])
}

/// Splits a plain-text body into the new text and the quoted part (with the signature).
pub(crate) fn split_quoted(body: &str) -> Split {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized
        .lines()
        .map(|l| l.trim_end_matches(' ').trim_end_matches('\t'))
        .collect();
    // The signature delimiter is "-- " with its space: look at the untrimmed lines too.
    let lines: Vec<&str> = normalized
        .lines()
        .zip(lines)
        .map(|(raw, trimmed)| if raw == "-- " { raw } else { trimmed })
        .collect();
    let n = lines.len();
    let whole = || Split {
        text: join(&lines),
        quoted: None,
    };

    let Some((cut, kind)) = find_cut(&lines, 0, false) else {
        return whole();
    };
    let (text, quoted) = match kind {
        Cut::Hard => (join(get(&lines, 0, cut)), join(get(&lines, cut, n))),
        Cut::Quote | Cut::Attribution(_) => {
            let block_start = match kind {
                Cut::Attribution(len) => cut + len,
                _ => cut,
            };
            let block_end = quote_block_end(&lines, block_start);
            let after_hard = find_cut(&lines, block_end, true).map_or(n, |(c, _)| c);
            let new_after = join(get(&lines, block_end, after_hard));
            let before = join(get(&lines, 0, cut));
            match (before, new_after) {
                // Top-posting: the answer, then the history.
                (Some(before), None) => (Some(before), join(get(&lines, cut, n))),
                // Bottom-posting: the history, then the answer.
                (None, Some(after)) => {
                    let mut q: Vec<&str> = get(&lines, cut, block_end).to_vec();
                    q.extend_from_slice(get(&lines, after_hard, n));
                    (Some(after), join(&q))
                }
                // Interleaved: the answers only make sense with the quotes.
                (Some(_), Some(_)) => (
                    join(get(&lines, 0, after_hard)),
                    join(get(&lines, after_hard, n)),
                ),
                (None, None) => (None, None),
            }
        }
    };
    match text {
        Some(text) => Split {
            text: Some(text),
            quoted,
        },
        None => whole(),
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, Option<String>) {
        let r = split_quoted(s);
        (r.text.unwrap_or_default(), r.quoted)
    }

    #[test]
    fn plain_message_is_all_text() {
        assert_eq!(
            split("Hello\n\nHow are you?\n"),
            ("Hello\n\nHow are you?".into(), None)
        );
        assert_eq!(
            split_quoted("  \n\n"),
            Split {
                text: None,
                quoted: None
            }
        );
    }

    #[test]
    fn english_attribution_and_quote() {
        let (t, q) = split("Thanks, agreed.\r\n\r\nOn Tue, 1 Dec 2026 at 10:00, Ivan Petrov <ivan@example.com> wrote:\r\n> Can we meet?\r\n>\r\n> Ivan\r\n");
        assert_eq!(t, "Thanks, agreed.");
        assert_eq!(q.unwrap(), "On Tue, 1 Dec 2026 at 10:00, Ivan Petrov <ivan@example.com> wrote:\n> Can we meet?\n>\n> Ivan");
    }

    #[test]
    fn wrapped_attribution() {
        let (t, q) = split("Yes.\n\nOn Tue, Dec 1, 2026 at 10:00 AM Ivan Petrov <\nivan@example.com> wrote:\n\n> Can we meet?\n");
        assert_eq!(t, "Yes.");
        assert!(q.unwrap().starts_with("On Tue, Dec 1"));
    }

    #[test]
    fn russian_gmail_attribution() {
        let (t, q) = split("Да, подходит.\n\nпн, 1 дек. 2026 г. в 10:00, Иван <ivan@example.ru>:\n\n> Удобно ли завтра?\n");
        assert_eq!(t, "Да, подходит.");
        assert!(q.unwrap().starts_with("пн, 1 дек. 2026 г."));
        let (t, _) = split("Ок\n\n01.12.2026, 10:00, \"Иван\" <ivan@ya.ru>:\n> Вопрос\n");
        assert_eq!(t, "Ок");
        let (t, _) = split("Ок\n\nИван Петров написал(а):\n> Вопрос\n");
        assert_eq!(t, "Ок");
    }

    #[test]
    fn original_message_separator() {
        let (t, q) = split("See below.\n\n-----Original Message-----\nFrom: Ivan\nSent: Tuesday\nSubject: x\n\nold\n");
        assert_eq!(t, "See below.");
        assert!(q.unwrap().starts_with("-----Original Message-----"));
        let (t, _) = split("Смотрите ниже.\n\n-------- Пересылаемое сообщение --------\nold\n");
        assert_eq!(t, "Смотрите ниже.");
    }

    #[test]
    fn outlook_blocks() {
        let (t, q) = split("Добрый день!\nСчёт во вложении.\n\nОт: Иван Петров <ivan@example.ru>\nОтправлено: 1 декабря 2026 г. 10:00\nКому: sales@example.com\nТема: Счёт\n\nПришлите счёт.\n");
        assert_eq!(t, "Добрый день!\nСчёт во вложении.");
        assert!(q.unwrap().starts_with("От: Иван Петров"));
        let (t, q) = split("Sure.\n\n________________________________\nFrom: Ivan Petrov <ivan@example.com>\nSent: Tuesday, December 1, 2026 10:00 AM\nTo: sales\nSubject: Quote\n\nSend a quote.\n");
        assert_eq!(t, "Sure.");
        assert!(q.unwrap().starts_with("______"));
        let (t, _) = split("Sure.\n\n*From:* Ivan\n*Sent:* Tuesday\n\nold\n");
        assert_eq!(t, "Sure.");
    }

    #[test]
    fn signatures() {
        let (t, q) = split("Call me tomorrow.\n\n-- \nIvan Petrov\n+7 900 000-00-00\n");
        assert_eq!(t, "Call me tomorrow.");
        assert_eq!(q.unwrap(), "-- \nIvan Petrov\n+7 900 000-00-00");
        let (t, q) = split(
            "Ok\n\nSent from my iPhone\n\nOn 1 Dec 2026, at 10:00, Ivan <i@x.com> wrote:\n> q\n",
        );
        assert_eq!(t, "Ok");
        assert!(q.unwrap().starts_with("Sent from my iPhone"));
        let (t, _) = split("Хорошо\n\nОтправлено с iPhone\n");
        assert_eq!(t, "Хорошо");
        let (t, _) = split("Хорошо\n\nОтправлено из мобильной Почты Mail.ru\n");
        assert_eq!(t, "Хорошо");
    }

    #[test]
    fn everything_quoted_keeps_all_as_text() {
        let (t, q) = split("> only a quote\n> nothing else\n");
        assert_eq!(t, "> only a quote\n> nothing else");
        assert_eq!(q, None);
        let (t, q) = split("-- \nJust a signature\n");
        assert_eq!(t, "-- \nJust a signature");
        assert_eq!(q, None);
    }

    #[test]
    fn bottom_posting_and_interleaving() {
        let (t, q) = split(
            "On Tue, 1 Dec 2026, Ivan <i@x.com> wrote:\n> Price?\n\n100 rubles.\n-- \nShop\n",
        );
        assert_eq!(t, "100 rubles.");
        assert_eq!(
            q.unwrap(),
            "On Tue, 1 Dec 2026, Ivan <i@x.com> wrote:\n> Price?\n\n-- \nShop"
        );
        let (t, q) = split("Hi,\n> Price?\n100.\n> Delivery?\nTomorrow.\n-- \nShop\n");
        assert_eq!(t, "Hi,\n> Price?\n100.\n> Delivery?\nTomorrow.");
        assert_eq!(q.unwrap(), "-- \nShop");
    }

    #[test]
    fn a_colon_line_without_quote_is_text() {
        let (t, q) = split("The plan for 2026:\n- one\n- two\n");
        assert_eq!(t, "The plan for 2026:\n- one\n- two");
        assert_eq!(q, None);
    }
}
