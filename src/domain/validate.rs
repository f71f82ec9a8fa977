//! Field validation shared by every input type.

/// A rejected field: which one, a stable machine code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field in the request body (`custom_fields.vip`).
    pub field: String,
    /// Stable code: `required`, `too_long`, `invalid_phone`, `invalid_email`, ...
    pub code: &'static str,
    /// Human-readable explanation, lowercase, no trailing period.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Length limits, in characters.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    /// Names, titles, subjects, logins.
    pub const NAME: usize = 200;
    /// Short codes and labels (currency, source, position).
    pub const SHORT: usize = 100;
    /// Free text: notes, message bodies, interaction bodies.
    pub const TEXT: usize = 100_000;
    /// Identity values (phone, email, messenger ids, visitor ids).
    pub const IDENTITY: usize = 254;
}

/// Trims and checks a required text field: non-empty, at most `max` characters, no control
/// characters except newlines and tabs.
///
/// # Errors
/// `required`, `too_long` or `invalid_characters`.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new(
            field,
            "required",
            format!("{field} must not be empty"),
        ));
    }
    checked_text(field, v, max).map(str::to_owned)
}

/// Like [`required_text`] for an optional field; blank becomes `None`.
///
/// # Errors
/// `too_long` or `invalid_characters`.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => checked_text(field, v, max).map(|v| Some(v.to_owned())),
    }
}

fn checked_text<'a>(field: &str, v: &'a str, max: usize) -> Result<&'a str, FieldError> {
    let len = v.chars().count();
    if len > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("{field} is {len} characters long; the limit is {max}"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            format!("{field} contains control characters"),
        ));
    }
    Ok(v)
}

/// Lowercases and collapses whitespace: the form names are searched in.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(
            word.chars()
                .flat_map(char::to_lowercase)
                .map(|c| if c == 'ё' { 'е' } else { c }),
        );
    }
    out
}

/// The searchable words of a name: normalized, punctuation stripped, unique, at most 16.
pub fn search_terms(name: &str) -> Vec<String> {
    let norm = normalize_name(name);
    let mut terms: Vec<String> = Vec::new();
    for w in norm.split(|c: char| !c.is_alphanumeric()) {
        if !w.is_empty() && !terms.iter().any(|t| t == w) {
            terms.push(w.to_owned());
        }
        if terms.len() == 16 {
            break;
        }
    }
    terms
}

/// The exclusive upper bound of the range of strings starting with `prefix`, for an index
/// range scan `x >= prefix AND x < upper`. `None` when no bound exists.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Skip the surrogate gap.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(
            required_text("name", "  Ромашка ", 10).expect("ok"),
            "Ромашка"
        );
        assert_eq!(
            required_text("name", "   ", 10).expect_err("blank").code,
            "required"
        );
        let long = "я".repeat(11);
        assert_eq!(
            required_text("name", &long, 10).expect_err("long").code,
            "too_long"
        );
        assert_eq!(
            required_text("name", "a\u{0}b", 10).expect_err("nul").code,
            "invalid_characters"
        );
        assert_eq!(optional_text("notes", Some("  "), 10).expect("ok"), None);
        assert_eq!(optional_text("notes", None, 10).expect("ok"), None);
    }

    #[test]
    fn names_normalize_for_search() {
        assert_eq!(
            normalize_name("  ООО  «Ромашка»  Ёлки "),
            "ооо «ромашка» елки"
        );
        assert_eq!(
            search_terms("ООО «Ромашка-Плюс»"),
            vec!["ооо", "ромашка", "плюс"]
        );
        assert!(search_terms("!!! ---").is_empty());
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("ря").as_deref(), Some("рѐ"));
        assert_eq!(prefix_upper_bound(""), None);
        let upper = prefix_upper_bound("ромаш").expect("bound");
        assert!("ромашка" < upper.as_str() && "ромашка" >= "ромаш");
    }
}
