//! Phone numbers, extensions and channel names: pure normalization, no I/O, no panic.
//!
//! - [`NumberPlan::normalize_number`] turns what the PBX reports (`89161234567`,
//!   `8 (916) 123-45-67`, `0049301234567`, `101`) into E.164 (`+79161234567`) when the
//!   default country code allows it; extensions and non-numbers (`anonymous`) are kept.
//! - [`parse_channel`] splits `PJSIP/101-00000012`, `SIP/101-0000000a`,
//!   `Local/101@from-queue-0000002a;1` and interfaces like `PJSIP/101` into technology and
//!   endpoint; [`NumberPlan::extension_of`] says whether the endpoint is an extension.

/// How numbers of this PBX look: the country it is in, how long its extensions are, and
/// which dialplan contexts its phones live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// The country calling code for national numbers (`"7"` for Russia), digits only.
    pub country_code: Option<String>,
    /// Extensions are 1 to this many digits; longer digit strings are phone numbers.
    pub extension_max_len: usize,
    /// Dialplan contexts of internal phones (`from-internal`). A channel in one of them is
    /// internal whatever its name; empty means "judge by the name only".
    pub internal_contexts: Vec<String>,
}

impl Default for NumberPlan {
    fn default() -> Self {
        Self {
            country_code: None,
            extension_max_len: 5,
            internal_contexts: vec![],
        }
    }
}

impl NumberPlan {
    /// Whether `s` is an extension number (digits only, at most `extension_max_len`).
    pub fn is_extension(&self, s: &str) -> bool {
        !s.is_empty() && s.len() <= self.extension_max_len && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether `context` is one of the internal contexts.
    pub fn is_internal_context(&self, context: &str) -> bool {
        self.internal_contexts
            .iter()
            .any(|c| c.eq_ignore_ascii_case(context.trim()))
    }

    /// The extension a channel (or interface) belongs to, when its endpoint is one:
    /// `PJSIP/101-00000012` → `101`, `Local/101@from-queue-0000002a;1` → `101`,
    /// `PJSIP/rt-trunk-00000041` → `None`.
    pub fn extension_of(&self, channel: &str) -> Option<String> {
        let name = parse_channel(channel)?;
        self.is_extension(name.endpoint)
            .then(|| name.endpoint.to_owned())
    }

    /// Whether a channel belongs to an internal phone: its endpoint is an extension, or
    /// `context` (the channel's dialplan context) is an internal one.
    pub fn is_internal_channel(&self, channel: &str, context: Option<&str>) -> bool {
        self.extension_of(channel).is_some() || context.is_some_and(|c| self.is_internal_context(c))
    }

    /// Normalizes a number toward E.164; see [`normalize_number`].
    pub fn normalize_number(&self, raw: &str) -> String {
        normalize_number(raw, self)
    }
}

/// Normalizes a number as the PBX reports it toward E.164, with `plan`'s country code:
///
/// | input (country code 7) | output |
/// |---|---|
/// | `+7 916 123-45-67` | `+79161234567` |
/// | `89161234567`, `79161234567`, `9161234567` | `+79161234567` |
/// | `0049301234567`, `81049301234567` | `+49301234567` |
/// | `101` (an extension) | `101` |
/// | `1234567` (a local number, too short to be national) | `1234567` |
/// | `anonymous`, `<unknown>`, `s` | unchanged |
///
/// Other country codes use `0` as the national prefix (`0301234567` with code 49 →
/// `+49301234567`). Without a country code only `+…` and `00…` forms become E.164.
pub fn normalize_number(raw: &str, plan: &NumberPlan) -> String {
    let s = raw.trim();
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '\t'))
        .collect();
    if let Some(digits) = compact.strip_prefix('+') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return format!("+{digits}");
        }
        return s.to_owned();
    }
    if compact.is_empty() || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return s.to_owned();
    }
    let d = compact.as_str();
    if plan.is_extension(d) {
        return d.to_owned();
    }
    if let Some(intl) = d.strip_prefix("00") {
        if intl.len() >= 7 {
            return format!("+{intl}");
        }
    }
    let Some(cc) = plan.country_code.as_deref() else {
        return d.to_owned();
    };
    if cc == "7" {
        // Russia: 8 is the trunk prefix, 810 the international one.
        if let Some(intl) = d.strip_prefix("810") {
            if intl.len() >= 7 {
                return format!("+{intl}");
            }
        }
        if let Some(national) = d.strip_prefix('8') {
            if d.len() == 11 {
                return format!("+7{national}");
            }
        }
    } else if let Some(national) = d.strip_prefix('0') {
        if national.len() >= 7 {
            return format!("+{cc}{national}");
        }
    }
    if d.starts_with(cc) && d.len() >= 11 {
        return format!("+{d}");
    }
    if d.len() >= 9 {
        return format!("+{cc}{d}");
    }
    d.to_owned()
}

/// A channel name split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelName<'a> {
    /// `PJSIP`, `SIP`, `Local`, `IAX2`, …
    pub technology: &'a str,
    /// The endpoint (device or trunk) name: `101`, `rt-trunk`; for `Local`, the
    /// extension before the `@`.
    pub endpoint: &'a str,
    /// For a Local channel, which half: `;1` or `;2`.
    pub local_half: Option<u8>,
}

impl ChannelName<'_> {
    /// Whether this is a Local channel.
    pub fn is_local(&self) -> bool {
        self.technology.eq_ignore_ascii_case("Local")
    }
}

/// Splits a channel name (`PJSIP/101-00000012`) or an interface (`PJSIP/101`) into its
/// parts; `None` when it has no `technology/` prefix.
pub fn parse_channel(name: &str) -> Option<ChannelName<'_>> {
    let (technology, rest) = name.trim().split_once('/')?;
    if technology.is_empty() || rest.is_empty() {
        return None;
    }
    if technology.eq_ignore_ascii_case("Local") {
        // `Local/101@from-queue-0000002a;1`, or the interface `Local/101@from-queue/n`.
        let (endpoint, _) = rest.split_once('@').unwrap_or((rest, ""));
        let local_half = rest
            .rsplit_once(';')
            .and_then(|(_, half)| half.parse::<u8>().ok());
        return Some(ChannelName {
            technology,
            endpoint,
            local_half,
        });
    }
    // `PJSIP/101-00000012`; a channel the PBX is still dialing may read `PJSIP/trunk/sip:…`.
    let first = rest.split('/').next().unwrap_or(rest);
    Some(ChannelName {
        technology,
        endpoint: strip_sequence(first),
        local_half: None,
    })
}

/// Drops the `-0000002a` sequence Asterisk appends to channel names (eight hex digits).
fn strip_sequence(s: &str) -> &str {
    match s.rsplit_once('-') {
        Some((head, tail))
            if !head.is_empty()
                && tail.len() == 8
                && tail.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            head
        }
        _ => s,
    }
}

/// The number dialed in a `DialString` (`rt-trunk/89161234567`, `89161234567@rt-trunk`,
/// `trunk/sip:89161234567@host`), when it looks like one.
pub fn number_in_dial_string(dial_string: &str) -> Option<&str> {
    let before_at = dial_string.split('@').next().unwrap_or(dial_string);
    let last = before_at.rsplit('/').next().unwrap_or(before_at);
    let last = last
        .strip_prefix("sip:")
        .or_else(|| last.strip_prefix("tel:"))
        .unwrap_or(last);
    let digits = last.strip_prefix('+').unwrap_or(last);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ru() -> NumberPlan {
        NumberPlan {
            country_code: Some("7".to_owned()),
            ..NumberPlan::default()
        }
    }

    #[test]
    fn russian_numbers() {
        let plan = ru();
        for (input, expected) in [
            ("89161234567", "+79161234567"),
            ("79161234567", "+79161234567"),
            ("9161234567", "+79161234567"),
            ("+7 916 123-45-67", "+79161234567"),
            ("8 (916) 123-45-67", "+79161234567"),
            ("88001234567", "+78001234567"),
            ("74951234567", "+74951234567"),
            ("7172123456", "+77172123456"),
            ("81049301234567", "+49301234567"),
            ("0049301234567", "+49301234567"),
            ("101", "101"),
            ("10234", "10234"),
            ("1234567", "1234567"),
            ("anonymous", "anonymous"),
            ("<unknown>", "<unknown>"),
            ("s", "s"),
            ("", ""),
            ("  +", "+"),
            ("+7abc", "+7abc"),
        ] {
            assert_eq!(plan.normalize_number(input), expected, "{input:?}");
        }
    }

    #[test]
    fn other_country_and_none() {
        let de = NumberPlan {
            country_code: Some("49".to_owned()),
            extension_max_len: 4,
            ..NumberPlan::default()
        };
        assert_eq!(de.normalize_number("0301234567"), "+49301234567");
        assert_eq!(de.normalize_number("49301234567"), "+49301234567");
        assert_eq!(de.normalize_number("12345"), "12345");
        let none = NumberPlan::default();
        assert_eq!(none.normalize_number("89161234567"), "89161234567");
        assert_eq!(none.normalize_number("+79161234567"), "+79161234567");
        assert_eq!(none.normalize_number("0079161234567"), "+79161234567");
    }

    #[test]
    fn channel_names() {
        let c = parse_channel("PJSIP/101-00000012").unwrap();
        assert_eq!(
            (c.technology, c.endpoint, c.local_half),
            ("PJSIP", "101", None)
        );
        assert_eq!(parse_channel("SIP/101-0000000a").unwrap().endpoint, "101");
        assert_eq!(parse_channel("PJSIP/101").unwrap().endpoint, "101");
        assert_eq!(
            parse_channel("PJSIP/rt-trunk-00000041").unwrap().endpoint,
            "rt-trunk"
        );
        assert_eq!(
            parse_channel("PJSIP/rt-trunk").unwrap().endpoint,
            "rt-trunk"
        );
        let l = parse_channel("Local/101@from-queue-0000002a;2").unwrap();
        assert!(l.is_local());
        assert_eq!((l.endpoint, l.local_half), ("101", Some(2)));
        assert_eq!(
            parse_channel("Local/101@from-queue/n").unwrap().endpoint,
            "101"
        );
        assert_eq!(
            parse_channel("PJSIP/trunk/sip:8916@host").unwrap().endpoint,
            "trunk"
        );
        assert!(parse_channel("nonsense").is_none());
        assert!(parse_channel("/x").is_none());
        assert!(parse_channel("PJSIP/").is_none());
    }

    #[test]
    fn extensions_and_internal_channels() {
        let plan = NumberPlan {
            internal_contexts: vec!["from-internal".to_owned()],
            ..ru()
        };
        assert_eq!(
            plan.extension_of("PJSIP/101-00000012").as_deref(),
            Some("101")
        );
        assert_eq!(
            plan.extension_of("Local/102@from-queue-00000001;1")
                .as_deref(),
            Some("102")
        );
        assert_eq!(plan.extension_of("PJSIP/rt-trunk-00000041"), None);
        assert_eq!(plan.extension_of("PJSIP/74951234567-00000001"), None);
        assert!(plan.is_internal_channel("PJSIP/ivan-00000001", Some("from-internal")));
        assert!(!plan.is_internal_channel("PJSIP/ivan-00000001", Some("from-trunk")));
        assert!(plan.is_internal_channel("PJSIP/101-00000001", None));
    }

    #[test]
    fn dial_strings() {
        assert_eq!(
            number_in_dial_string("rt-trunk/89161234567"),
            Some("89161234567")
        );
        assert_eq!(
            number_in_dial_string("89161234567@rt-trunk"),
            Some("89161234567")
        );
        assert_eq!(
            number_in_dial_string("rt-trunk/sip:+79161234567@sip.example"),
            Some("+79161234567")
        );
        assert_eq!(number_in_dial_string("101"), Some("101"));
        assert_eq!(number_in_dial_string("rt-trunk"), None);
        assert_eq!(number_in_dial_string(""), None);
    }
}
