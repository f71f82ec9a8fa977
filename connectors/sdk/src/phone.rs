//! Phone numbers toward E.164 for webhook connectors: pure, best effort.
//!
//! A [`NumberPlan`] (the country to assume for national numbers, how long an internal
//! extension can be) and [`normalize_number`], which reads what a PBX or provider sends
//! (`8 (495) 123-45-67`, `0049…`, `101`, `anonymous`) as a [`Number`]: an extension, a
//! phone number (`+74951234567` when the plan allows it) or something else, kept as
//! given. The hub normalizes identities further; this only makes the same number look
//! the same in every event of a connector.
//!
//! ```
//! use kommutator_sdk::phone::{normalize_number, Number, NumberPlan};
//!
//! let plan = NumberPlan::new(Some("7".to_owned()), NumberPlan::DEFAULT_MAX_EXTENSION_LEN);
//! assert_eq!(
//!     normalize_number("8 (495) 123-45-67", &plan),
//!     Number::Phone("+74951234567".to_owned())
//! );
//! assert!(normalize_number("101", &plan).is_extension());
//! ```

/// How to read numbers without a `+`: the country to assume and how long an internal
/// extension can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    country_code: Option<String>,
    max_extension_len: usize,
}

impl NumberPlan {
    /// The default longest extension, in digits.
    pub const DEFAULT_MAX_EXTENSION_LEN: usize = 5;

    /// A plan assuming `country_code` (digits only, e.g. `"7"`, `"49"`) for national
    /// numbers, and reading numbers of at most `max_extension_len` digits as extensions.
    /// The caller validates `country_code` (see [`is_valid_country_code`]).
    pub fn new(country_code: Option<String>, max_extension_len: usize) -> Self {
        Self {
            country_code,
            max_extension_len,
        }
    }
}

impl Default for NumberPlan {
    fn default() -> Self {
        Self::new(None, Self::DEFAULT_MAX_EXTENSION_LEN)
    }
}

/// Whether `cc` can be a country calling code: 1 to 3 ASCII digits, not starting with 0.
pub fn is_valid_country_code(cc: &str) -> bool {
    (1..=3).contains(&cc.len()) && cc.bytes().all(|b| b.is_ascii_digit()) && !cc.starts_with('0')
}

/// A number as read by [`normalize_number`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Number {
    /// An internal extension (few digits), kept as given.
    Extension(String),
    /// An external number: `+` and digits when the plan allowed it, else the digits.
    Phone(String),
    /// Anything else (`anonymous`, a SIP URI, a user name), trimmed.
    Other(String),
}

impl Number {
    /// The normalized text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Extension(s) | Self::Phone(s) | Self::Other(s) => s,
        }
    }

    /// The normalized text, owned.
    pub fn into_string(self) -> String {
        match self {
            Self::Extension(s) | Self::Phone(s) | Self::Other(s) => s,
        }
    }

    /// Whether this is an internal extension.
    pub fn is_extension(&self) -> bool {
        matches!(self, Self::Extension(_))
    }
}

/// Reads `raw` toward E.164 under `plan`. Pure; never panics.
///
/// - Visual separators (spaces, `-`, `(`, `)`, `.`) are dropped.
/// - `+digits` stays; `00digits` becomes `+digits`.
/// - At most `max_extension_len` digits: an extension, kept as is.
/// - With a country code: a leading national trunk prefix (`8` for `7`, `0` otherwise) is
///   replaced by `+cc`; a number already starting with the code gets a `+`; for `7`,
///   a 10-digit national number gets `+7`.
/// - Without a country code, other digit strings are kept as digits.
pub fn normalize_number(raw: &str, plan: &NumberPlan) -> Number {
    let trimmed = raw.trim();
    let compact: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '\u{a0}' | '\t'))
        .collect();
    let (plus, digits) = match compact.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Number::Other(trimmed.to_owned());
    }
    if plus {
        return Number::Phone(format!("+{digits}"));
    }
    if let Some(intl) = digits.strip_prefix("00") {
        if intl.len() > plan.max_extension_len {
            return Number::Phone(format!("+{intl}"));
        }
    }
    if digits.len() <= plan.max_extension_len {
        return Number::Extension(digits.to_owned());
    }
    let Some(cc) = plan.country_code.as_deref() else {
        return Number::Phone(digits.to_owned());
    };
    if cc == "7" {
        let phone = match (digits.len(), digits.as_bytes().first()) {
            (11, Some(b'8')) => format!("+7{}", digits.get(1..).unwrap_or_default()),
            (11, Some(b'7')) | (12.., _) => format!("+{digits}"),
            (10, _) => format!("+7{digits}"),
            _ => digits.to_owned(),
        };
        return Number::Phone(phone);
    }
    if let Some(national) = digits.strip_prefix('0') {
        return Number::Phone(format!("+{cc}{national}"));
    }
    if digits.starts_with(cc) && digits.len() >= cc.len() + 6 {
        return Number::Phone(format!("+{digits}"));
    }
    Number::Phone(format!("+{cc}{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(cc: Option<&str>) -> NumberPlan {
        NumberPlan::new(cc.map(str::to_owned), NumberPlan::DEFAULT_MAX_EXTENSION_LEN)
    }

    #[test]
    fn russian_numbers() {
        let p = plan(Some("7"));
        for (raw, want) in [
            ("84951234567", "+74951234567"),
            ("74951234567", "+74951234567"),
            ("+7 (495) 123-45-67", "+74951234567"),
            ("4951234567", "+74951234567"),
            ("0074951234567", "+74951234567"),
            ("375291234567", "+375291234567"),
        ] {
            assert_eq!(
                normalize_number(raw, &p),
                Number::Phone(want.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn german_numbers() {
        let p = plan(Some("49"));
        assert_eq!(
            normalize_number("493055571600", &p),
            Number::Phone("+493055571600".to_owned())
        );
        assert_eq!(
            normalize_number("02214710334", &p),
            Number::Phone("+492214710334".to_owned())
        );
        assert_eq!(
            normalize_number("2214710334", &p),
            Number::Phone("+492214710334".to_owned())
        );
    }

    #[test]
    fn extensions_and_others() {
        let p = plan(Some("7"));
        assert_eq!(
            normalize_number(" 101 ", &p),
            Number::Extension("101".to_owned())
        );
        assert!(normalize_number("12345", &p).is_extension());
        assert_eq!(
            normalize_number("anonymous", &p),
            Number::Other("anonymous".to_owned())
        );
        assert_eq!(
            normalize_number("sip:101@pbx", &p),
            Number::Other("sip:101@pbx".to_owned())
        );
        assert_eq!(normalize_number("", &p), Number::Other(String::new()));
        assert_eq!(normalize_number("+", &p), Number::Other("+".to_owned()));
        assert_eq!(
            normalize_number("00", &p),
            Number::Extension("00".to_owned())
        );
    }

    #[test]
    fn without_a_country_code_digits_stay() {
        let p = plan(None);
        assert_eq!(
            normalize_number("84951234567", &p),
            Number::Phone("84951234567".to_owned())
        );
        assert_eq!(
            normalize_number("+4930123456", &p),
            Number::Phone("+4930123456".to_owned())
        );
    }

    #[test]
    fn country_code_validation() {
        for ok in ["7", "49", "375"] {
            assert!(is_valid_country_code(ok), "{ok}");
        }
        for bad in ["", "0", "07", "1234", "+7", "a"] {
            assert!(!is_valid_country_code(bad), "{bad}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let p = plan(Some("7"));
        for raw in ["８", "+٣", "\u{0}", "0", "8", "7", "((()))", "+00", "00+1"] {
            let _ = normalize_number(raw, &p);
        }
    }
}
