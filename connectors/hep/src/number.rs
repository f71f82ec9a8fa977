//! Turning SIP addresses into the parties of a call event: internal extensions stay as
//! they are (`sip:101@pbx` → `101`), phone numbers are brought toward E.164 with the
//! configured country code (`89161234567` → `+79161234567` for country code 7).

use crate::sip::Uri;

/// How to read the numbers of one PBX. Built from the connector's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRules {
    /// Country calling code without `+` (`"7"`), prefixed to national numbers.
    pub country_code: String,
    /// The national trunk prefix dialled before a national number (`"8"` in Russia,
    /// `"0"` in most of Europe); may be empty.
    pub national_prefix: String,
    /// User parts of only digits and at most this many of them are internal extensions;
    /// 0 turns the rule off.
    pub extension_max_len: usize,
    /// Hosts (lower-case) whose non-numeric users are internal (`alice@pbx.example.com`).
    pub internal_domains: Vec<String>,
}

/// Shortest all-digit national number that is prefixed with the country code; shorter
/// ones (service numbers like 112) are kept as dialled.
const MIN_NATIONAL_LEN: usize = 7;
/// E.164 allows at most 15 digits.
const MAX_E164_DIGITS: usize = 15;

/// One side of a call as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyNumber {
    /// The extension, the number (E.164 where it could be made so) or, for other users,
    /// the user part (`anonymous`, `alice`) or the host.
    pub value: String,
    /// Whether the party is on our side (an extension or a user of an internal domain).
    pub internal: bool,
}

/// Characters people and PBXs put inside phone numbers for readability.
fn is_visual_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')')
}

/// Brings a dialled number toward E.164: `+` and digits (separators dropped) stay;
/// `00` becomes `+`; the national prefix is replaced by `+{country code}`; 11 to 15
/// digits are taken to include the country code; 7 to 10 digits are a national number.
/// The result has at most 15 digits.
/// Returns `None` when `raw` is not a phone number (letters, or fewer than 7 digits
/// without `+`), so the caller keeps it as written.
///
/// Pure: no I/O, no panic.
pub fn normalize_number(rules: &NumberRules, raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_digit() || is_visual_separator(c))
    {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let e164 = |d: &str| (d.len() <= MAX_E164_DIGITS).then(|| format!("+{d}"));
    if plus {
        return e164(&digits);
    }
    if let Some(intl) = digits.strip_prefix("00") {
        return if intl.is_empty() { None } else { e164(intl) };
    }
    if !rules.national_prefix.is_empty() {
        if let Some(national) = digits.strip_prefix(rules.national_prefix.as_str()) {
            if national.len() >= MIN_NATIONAL_LEN {
                return e164(&format!("{}{national}", rules.country_code));
            }
        }
    }
    match digits.len() {
        // A country code never starts with 0.
        n if n > 10 && !digits.starts_with('0') => e164(&digits),
        n if n >= MIN_NATIONAL_LEN => e164(&format!("{}{digits}", rules.country_code)),
        _ => None,
    }
}

fn is_extension(rules: &NumberRules, user: &str) -> bool {
    !user.is_empty()
        && user.len() <= rules.extension_max_len
        && user.chars().all(|c| c.is_ascii_digit())
}

/// The party a URI names: an extension (internal), a phone number (external), a user of
/// an internal domain (internal) or anything else as written (external).
///
/// Pure: no I/O, no panic.
pub fn normalize_party(rules: &NumberRules, uri: &Uri) -> PartyNumber {
    let internal_host = uri
        .host
        .as_deref()
        .is_some_and(|h| rules.internal_domains.iter().any(|d| d == h));
    let Some(user) = uri.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        let value = uri.host.clone().unwrap_or_else(|| uri.raw.clone());
        return PartyNumber {
            value,
            internal: internal_host,
        };
    };
    if uri.scheme != "tel" && is_extension(rules, user) {
        return PartyNumber {
            value: user.to_owned(),
            internal: true,
        };
    }
    match normalize_number(rules, user) {
        Some(number) => PartyNumber {
            value: number,
            internal: false,
        },
        None => PartyNumber {
            value: user.to_owned(),
            internal: internal_host,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sip::parse_uri;

    fn rules() -> NumberRules {
        NumberRules {
            country_code: "7".into(),
            national_prefix: "8".into(),
            extension_max_len: 4,
            internal_domains: vec!["pbx.example.com".into()],
        }
    }

    #[test]
    fn numbers_toward_e164() {
        let r = rules();
        for (raw, want) in [
            ("89161234567", Some("+79161234567")),
            ("79161234567", Some("+79161234567")),
            ("9161234567", Some("+79161234567")),
            ("+79161234567", Some("+79161234567")),
            ("+7 (916) 123-45-67", Some("+79161234567")),
            ("8 916 123.45.67", Some("+79161234567")),
            ("0044 20 7946 0000", Some("+442079460000")),
            ("4420794600001", Some("+4420794600001")),
            ("+1", Some("+1")),
            ("1234567", Some("+71234567")),
            ("112", None),
            ("123456", None),
            ("00", None),
            ("", None),
            ("+", None),
            ("anonymous", None),
            ("12a45678", None),
            ("1234567890123456", None),
            ("+12345678901234567890", None),
            ("8123456", Some("+78123456")),
        ] {
            assert_eq!(normalize_number(&r, raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn other_national_prefix() {
        let r = NumberRules {
            country_code: "44".into(),
            national_prefix: "0".into(),
            ..rules()
        };
        assert_eq!(
            normalize_number(&r, "02079460000").unwrap(),
            "+442079460000"
        );
        assert_eq!(normalize_number(&r, "2079460000").unwrap(), "+442079460000");
        let none = NumberRules {
            national_prefix: String::new(),
            ..r
        };
        assert_eq!(
            normalize_number(&none, "02079460000").unwrap(),
            "+4402079460000"
        );
    }

    #[test]
    fn parties() {
        let r = rules();
        let cases = [
            ("sip:101@10.0.0.1", "101", true),
            ("sip:2001@127.0.0.1:5060", "2001", true),
            ("sip:89161234567@trunk.example.net", "+79161234567", false),
            (
                "sip:+79161234567@pbx.example.com;user=phone",
                "+79161234567",
                false,
            ),
            ("tel:+7-916-123-45-67", "+79161234567", false),
            ("tel:101", "101", false),
            ("sip:alice@pbx.example.com", "alice", true),
            ("sip:alice@elsewhere.example", "alice", false),
            ("sip:anonymous@anonymous.invalid", "anonymous", false),
            // 5 digits: not an extension, too short to be national: kept as dialled.
            ("sip:12345@h", "12345", false),
            ("sip:pbx.example.com", "pbx.example.com", true),
            ("urn:service:sos", "urn:service:sos", false),
        ];
        for (uri, value, internal) in cases {
            let p = normalize_party(&r, &parse_uri(uri));
            assert_eq!(
                p,
                PartyNumber {
                    value: value.into(),
                    internal
                },
                "{uri}"
            );
        }
        let off = NumberRules {
            extension_max_len: 0,
            ..rules()
        };
        assert_eq!(
            normalize_party(&off, &parse_uri("sip:101@h")),
            PartyNumber {
                value: "101".into(),
                internal: false
            }
        );
    }
}
