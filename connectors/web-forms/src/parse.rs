//! One form submission, parsed: body bytes + content type + the form's [`FormSpec`] →
//! [`Submission`] or a [`FormError`] that says which 4xx to answer. Pure: no I/O, no
//! clock (the caller passes the time), no panic on any input.

use std::collections::BTreeMap;

use kommutator_sdk::phone::{normalize_number, Number, NumberPlan};
use serde_json::{json, Map, Value};

/// The most distinct fields a body may have; more is answered 400 `too_many_fields`.
pub const MAX_FIELDS: usize = 200;
/// The most values (repeated keys, array items) a body may have in all.
pub const MAX_VALUES: usize = 1_000;
/// The longest value of a one-line field (name, phone, email, company, extras), in
/// characters.
pub const MAX_LINE_CHARS: usize = 1_000;
/// The longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Traffic-source values (URLs mostly) longer than this are cut, in characters.
pub const MAX_SOURCE_CHARS: usize = 2_048;

/// The body fields that carry the traffic source, in the order they are kept; each one
/// goes to `raw.traffic_source` under the same name.
pub const TRAFFIC_KEYS: [&str; 11] = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "landing_page",
    "page_url",
    "ga_client_id",
    "ym_client_id",
    "visit_id",
];

/// The body field with the client's idempotency key.
pub const IDEMPOTENCY_KEY_FIELD: &str = "idempotency_key";
/// The body field with the time the form was shown (ms since the epoch, client clock).
pub const STARTED_FIELD: &str = "_started";
/// The body field with the time the form was sent (ms since the epoch, client clock).
pub const SENT_FIELD: &str = "_sent";
/// The body field with the visitor's consent (a checkbox).
pub const CONSENT_FIELD: &str = "consent";

/// Whether `name` is a body field the connector reads itself (traffic source, anti-spam,
/// idempotency, consent), so a form field cannot be mapped from it.
pub fn is_reserved_field(name: &str) -> bool {
    TRAFFIC_KEYS.contains(&name)
        || [
            IDEMPOTENCY_KEY_FIELD,
            STARTED_FIELD,
            SENT_FIELD,
            CONSENT_FIELD,
        ]
        .contains(&name)
}

/// What a form is for: it sets the subject and the default required fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormKind {
    /// A lead form (request a quote, contact us).
    #[default]
    Lead,
    /// A callback request: a phone number to call back.
    Callback,
}

impl FormKind {
    /// `"lead"` or `"callback"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lead => "lead",
            Self::Callback => "callback",
        }
    }
}

/// One of our fields, that a site's field maps to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// The visitor's name: the party's display name.
    Name,
    /// A phone number: a `phone` identity, normalized toward E.164.
    Phone,
    /// An email address: an `email` identity.
    Email,
    /// The visitor's message: the message text.
    Message,
    /// The visitor's company.
    Company,
    /// Anything else, shown as `Label: value` under the message.
    Extra(String),
}

impl Field {
    /// The longest label of an `extra:` field, in characters.
    pub const MAX_LABEL_CHARS: usize = 64;

    /// The five standard fields.
    pub const STANDARD: [Field; 5] = [
        Field::Name,
        Field::Phone,
        Field::Email,
        Field::Message,
        Field::Company,
    ];

    /// Reads `name`, `phone`, `email`, `message`, `company` or `extra:<label>` (a label
    /// of 1 to 64 characters without control characters).
    pub fn parse(s: &str) -> Option<Field> {
        match s {
            "name" => Some(Self::Name),
            "phone" => Some(Self::Phone),
            "email" => Some(Self::Email),
            "message" => Some(Self::Message),
            "company" => Some(Self::Company),
            other => {
                let label = other.strip_prefix("extra:")?.trim();
                let chars = label.chars().count();
                ((1..=Self::MAX_LABEL_CHARS).contains(&chars)
                    && !label.chars().any(char::is_control))
                .then(|| Self::Extra(label.to_owned()))
            }
        }
    }

    /// The name as written in the config (`phone`, `extra:Budget`).
    pub fn name(&self) -> String {
        match self {
            Self::Extra(label) => format!("extra:{label}"),
            other => other.standard_name().to_owned(),
        }
    }

    /// The key in `raw.fields` and the label used in errors: `phone`, or the extra's label.
    pub fn key(&self) -> &str {
        match self {
            Self::Extra(label) => label,
            other => other.standard_name(),
        }
    }

    fn standard_name(&self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Message => "message",
            Self::Company => "company",
            Self::Extra(_) => "extra",
        }
    }
}

/// The form's rules, built from the config by `WebForm::new`.
#[derive(Debug, Clone)]
pub struct FormSpec {
    /// The site's field name → our field, in order (the identity mapping of the standard
    /// fields included unless the config maps those names elsewhere).
    pub fields: Vec<(String, Field)>,
    /// Fields that must be present.
    pub required: Vec<Field>,
    /// Whether a phone or an email must be present.
    pub require_contact: bool,
    /// The hidden field only bots fill.
    pub honeypot_field: String,
    /// A submission filled faster than this (ms) is spam.
    pub min_fill_ms: Option<i64>,
    /// Whether the `consent` field must be truthy.
    pub consent_required: bool,
    /// How to read phone numbers.
    pub plan: NumberPlan,
}

impl FormSpec {
    /// The first site field name mapped to `field`, if any.
    pub fn input_of(&self, field: &Field) -> Option<&str> {
        self.fields
            .iter()
            .find(|(_, f)| f == field)
            .map(|(site, _)| site.as_str())
    }
}

/// What the request adds to the body: the time and whether a browser sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseContext {
    /// The server's time, ms since the Unix epoch.
    pub now_ms: i64,
    /// Whether the request came from a browser (it has an `Origin`).
    pub browser: bool,
}

/// A valid, non-spam submission.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submission {
    /// The visitor's name, one line.
    pub name: Option<String>,
    /// The phone, normalized (`+74951234567`, or digits without a country code).
    pub phone: Option<String>,
    /// The email address, domain lowercased.
    pub email: Option<String>,
    /// The message, multi-line.
    pub message: Option<String>,
    /// The company.
    pub company: Option<String>,
    /// `extra:` fields as (label, value), in the config's order.
    pub extras: Vec<(String, String)>,
    /// Whether the `consent` field was truthy.
    pub consent: bool,
    /// The traffic source fields present, in [`TRAFFIC_KEYS`] order.
    pub traffic: Vec<(&'static str, String)>,
    /// The client's idempotency key, when it was valid (8 to 64 of `[A-Za-z0-9_-]`).
    pub idempotency_key: Option<String>,
}

impl Submission {
    /// Whether no field of ours has a value (a submission with only unmapped fields).
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.phone.is_none()
            && self.email.is_none()
            && self.message.is_none()
            && self.company.is_none()
            && self.extras.is_empty()
    }

    /// Our fields as the JSON object of `raw.fields`.
    pub fn fields_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("name", &self.name),
            ("phone", &self.phone),
            ("email", &self.email),
            ("message", &self.message),
            ("company", &self.company),
        ] {
            if let Some(v) = v {
                m.insert(k.to_owned(), Value::String(v.clone()));
            }
        }
        for (label, v) in &self.extras {
            m.entry(label.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        Value::Object(m)
    }

    /// The traffic source as the JSON object of `raw.traffic_source`.
    pub fn traffic_json(&self) -> Value {
        Value::Object(
            self.traffic
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect(),
        )
    }
}

/// Why a submission is refused. Every variant maps to a 4xx; nothing reaches the hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A required field is absent or empty (400 `missing_field`).
    #[error("{message}")]
    MissingField {
        /// Our field (`phone`, `consent`, an extra's label).
        field: String,
        /// What to do.
        message: String,
    },
    /// A field has a value we cannot take (400 `invalid_field`).
    #[error("{message}")]
    InvalidField {
        /// Our field, or the site's field name when the value's shape is wrong.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The honeypot was filled or the form was sent too fast (400 `spam`).
    #[error("submission looks automated: {0}")]
    Spam(&'static str),
    /// The body cannot be read: not JSON, not an object, not UTF-8 (400 `malformed_body`).
    #[error("{0}")]
    Malformed(String),
    /// More than [`MAX_FIELDS`] fields or [`MAX_VALUES`] values (400 `too_many_fields`).
    #[error("the body has too many fields (at most {MAX_FIELDS} fields and {MAX_VALUES} values)")]
    TooManyFields,
    /// Neither JSON nor form-urlencoded (415 `unsupported_content_type`).
    #[error(
        "content type must be application/json or application/x-www-form-urlencoded, not {0:?}"
    )]
    UnsupportedContentType(String),
    /// The body is over the form's limit (413 `too_large`).
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
}

impl FormError {
    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnsupportedContentType(_) => 415,
            Self::TooLarge(_) => 413,
            _ => 400,
        }
    }

    /// The machine-readable `error` of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::Spam(_) => "spam",
            Self::Malformed(_) => "malformed_body",
            Self::TooManyFields => "too_many_fields",
            Self::UnsupportedContentType(_) => "unsupported_content_type",
            Self::TooLarge(_) => "too_large",
        }
    }

    /// The field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::MissingField { field, .. } | Self::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The answer's JSON body: `{"error", "message"}` plus `field` (and `input`, the
    /// site's field name, when `spec` maps one to it).
    pub fn to_json(&self, spec: &FormSpec) -> Value {
        let mut v = json!({"error": self.code(), "message": self.to_string()});
        if let (Some(field), Some(obj)) = (self.field(), v.as_object_mut()) {
            obj.insert("field".to_owned(), Value::String(field.to_owned()));
            let input = match field {
                CONSENT_FIELD => Some(CONSENT_FIELD),
                f => spec
                    .fields
                    .iter()
                    .find(|(_, ours)| ours.key() == f)
                    .map(|(site, _)| site.as_str()),
            };
            if let Some(input) = input {
                obj.insert("input".to_owned(), Value::String(input.to_owned()));
            }
        }
        v
    }
}

fn missing(field: &Field) -> FormError {
    FormError::MissingField {
        field: field.key().to_owned(),
        message: format!("field `{}` is required", field.key()),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> FormError {
    FormError::InvalidField {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The body's fields: name → values, in name order.
type RawFields = BTreeMap<String, Vec<String>>;

/// Parses one submission.
///
/// # Errors
///
/// A [`FormError`]; its [`status`](FormError::status) is the answer's.
pub fn parse_submission(
    body: &[u8],
    content_type: Option<&str>,
    spec: &FormSpec,
    ctx: ParseContext,
) -> Result<Submission, FormError> {
    let raw = read_body(body, content_type)?;
    check_spam(&raw, spec, ctx)?;
    map_fields(&raw, spec)
}

/// The media type of a `Content-Type` value, lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the body's content type is one the form reads.
///
/// # Errors
///
/// [`FormError::UnsupportedContentType`] for anything but JSON and form-urlencoded.
pub fn check_content_type(content_type: Option<&str>) -> Result<BodyType, FormError> {
    let Some(ct) = content_type else {
        return Err(FormError::UnsupportedContentType(String::new()));
    };
    match media_type(ct).as_str() {
        "application/json" => Ok(BodyType::Json),
        "application/x-www-form-urlencoded" => Ok(BodyType::Form),
        _ => Err(FormError::UnsupportedContentType(
            ct.chars().take(100).collect(),
        )),
    }
}

/// The body encodings a form reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json`: an object of strings or string arrays.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

fn read_body(body: &[u8], content_type: Option<&str>) -> Result<RawFields, FormError> {
    match check_content_type(content_type)? {
        BodyType::Json => read_json(body),
        BodyType::Form => read_form(body),
    }
}

fn push_value(
    raw: &mut RawFields,
    count: &mut usize,
    key: &str,
    value: String,
) -> Result<(), FormError> {
    *count += 1;
    if *count > MAX_VALUES {
        return Err(FormError::TooManyFields);
    }
    if !raw.contains_key(key) && raw.len() >= MAX_FIELDS {
        return Err(FormError::TooManyFields);
    }
    raw.entry(key.to_owned()).or_default().push(value);
    Ok(())
}

fn read_json(body: &[u8]) -> Result<RawFields, FormError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FormError::Malformed(format!("body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(FormError::Malformed(
            "body must be a JSON object of strings".to_owned(),
        ));
    };
    if obj.len() > MAX_FIELDS {
        return Err(FormError::TooManyFields);
    }
    let mut raw = RawFields::new();
    let mut count = 0;
    for (key, value) in obj {
        let shape = || {
            invalid(
                &key,
                format!("field `{key}` must be a string or an array of strings"),
            )
        };
        match value {
            Value::Null => {}
            Value::String(s) => push_value(&mut raw, &mut count, &key, s)?,
            Value::Bool(b) => push_value(&mut raw, &mut count, &key, b.to_string())?,
            Value::Number(n) => push_value(&mut raw, &mut count, &key, n.to_string())?,
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => push_value(&mut raw, &mut count, &key, s)?,
                        Value::Number(n) => push_value(&mut raw, &mut count, &key, n.to_string())?,
                        Value::Bool(b) => push_value(&mut raw, &mut count, &key, b.to_string())?,
                        _ => return Err(shape()),
                    }
                }
            }
            Value::Object(_) => return Err(shape()),
        }
    }
    Ok(raw)
}

fn read_form(body: &[u8]) -> Result<RawFields, FormError> {
    if std::str::from_utf8(body).is_err() {
        return Err(FormError::Malformed("body is not UTF-8".to_owned()));
    }
    let mut raw = RawFields::new();
    let mut count = 0;
    for (k, v) in form_urlencoded::parse(body) {
        if !k.is_empty() {
            push_value(&mut raw, &mut count, &k, v.into_owned())?;
        }
    }
    Ok(raw)
}

/// The values of `key`, cleaned, non-empty ones only.
fn values<'a>(raw: &'a RawFields, key: &str) -> impl Iterator<Item = &'a str> {
    raw.get(key)
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

fn first(raw: &RawFields, key: &str) -> Option<String> {
    values(raw, key).next().map(clean_line)
}

fn parse_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    // Some scripts send `Date.now() / 1` as a float string.
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && f.abs() < 1e15)
        .map(|f| f as i64)
}

fn check_spam(raw: &RawFields, spec: &FormSpec, ctx: ParseContext) -> Result<(), FormError> {
    if values(raw, &spec.honeypot_field).next().is_some() {
        return Err(FormError::Spam("hidden field filled"));
    }
    let Some(min) = spec.min_fill_ms else {
        return Ok(());
    };
    let Some(started) = values(raw, STARTED_FIELD).next() else {
        // Server-to-server posts and forms without the embed script carry no start time;
        // a browser post through the script always does.
        return if ctx.browser {
            Err(FormError::Spam("no start time"))
        } else {
            Ok(())
        };
    };
    let started = parse_ms(started).ok_or(FormError::Spam("bad start time"))?;
    // The script sends its own clock's send time, which makes the fill time immune to a
    // client clock that is off; without it, the server's clock is the end.
    let end = match values(raw, SENT_FIELD).next() {
        Some(sent) => parse_ms(sent).ok_or(FormError::Spam("bad send time"))?,
        None => ctx.now_ms,
    };
    if end.saturating_sub(started) < min {
        return Err(FormError::Spam("sent too fast"));
    }
    Ok(())
}

/// One line of text: control characters become spaces, surrounding space is trimmed.
fn clean_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Multi-line text: line ends become `\n`, other control characters but tab go.
fn clean_text(s: &str) -> String {
    s.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>()
        .trim()
        .to_owned()
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Whether a checkbox-like value means yes.
pub fn is_truthy(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "on" | "yes" | "y" | "checked" | "да"
    )
}

/// Reads a phone number under `plan`: `Some` when it has 7 to 15 digits and reads as a
/// phone (not an extension nor text).
pub fn normalize_phone(s: &str, plan: &NumberPlan) -> Option<String> {
    match normalize_number(s, plan) {
        Number::Phone(p) => {
            let digits = p.bytes().filter(u8::is_ascii_digit).count();
            (7..=15).contains(&digits).then_some(p)
        }
        Number::Extension(_) | Number::Other(_) => None,
    }
}

/// Checks an email address loosely (one `@`, a dotted domain, no spaces or brackets) and
/// lowercases its domain.
pub fn normalize_email(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() > 254 {
        return None;
    }
    let (local, domain) = s.split_once('@')?;
    let bad_local = |c: char| c.is_whitespace() || c.is_control() || "()<>[]:;,\\\"@".contains(c);
    if local.is_empty()
        || local.len() > 64
        || local.chars().any(bad_local)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    for label in &labels {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return None;
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(format!("{local}@{}", domain.to_lowercase()))
}

/// Whether `key` can be a client idempotency key: 8 to 64 of `[A-Za-z0-9_-]`.
pub fn is_valid_idempotency_key(key: &str) -> bool {
    (8..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn map_fields(raw: &RawFields, spec: &FormSpec) -> Result<Submission, FormError> {
    let mut sub = Submission::default();
    for (site, field) in &spec.fields {
        let joined: Vec<&str> = values(raw, site).collect();
        if joined.is_empty() {
            continue;
        }
        let value = if *field == Field::Message {
            clean_text(&joined.join("\n"))
        } else {
            clean_line(&joined.join(", "))
        };
        if value.is_empty() {
            continue;
        }
        let max = if *field == Field::Message {
            MAX_MESSAGE_CHARS
        } else {
            MAX_LINE_CHARS
        };
        if value.chars().count() > max {
            return Err(invalid(
                field.key(),
                format!("field `{}` is longer than {max} characters", field.key()),
            ));
        }
        let slot = match field {
            Field::Name => &mut sub.name,
            Field::Phone => &mut sub.phone,
            Field::Email => &mut sub.email,
            Field::Message => &mut sub.message,
            Field::Company => &mut sub.company,
            Field::Extra(label) => {
                if !sub.extras.iter().any(|(l, _)| l == label) {
                    sub.extras.push((label.clone(), value));
                }
                continue;
            }
        };
        if slot.is_some() {
            continue;
        }
        *slot = Some(match field {
            Field::Phone => normalize_phone(&value, &spec.plan)
                .ok_or_else(|| invalid("phone", "field `phone` is not a phone number"))?,
            Field::Email => normalize_email(&value)
                .ok_or_else(|| invalid("email", "field `email` is not an email address"))?,
            _ => value,
        });
    }
    sub.consent = values(raw, CONSENT_FIELD).any(is_truthy);

    for field in &spec.required {
        let present = match field {
            Field::Name => sub.name.is_some(),
            Field::Phone => sub.phone.is_some(),
            Field::Email => sub.email.is_some(),
            Field::Message => sub.message.is_some(),
            Field::Company => sub.company.is_some(),
            Field::Extra(label) => sub.extras.iter().any(|(l, _)| l == label),
        };
        if !present {
            return Err(missing(field));
        }
    }
    if spec.require_contact && sub.phone.is_none() && sub.email.is_none() {
        return Err(FormError::MissingField {
            field: "phone".to_owned(),
            message: "a phone number or an email address is required".to_owned(),
        });
    }
    if spec.consent_required && !sub.consent {
        return Err(FormError::MissingField {
            field: CONSENT_FIELD.to_owned(),
            message: "consent to the processing of personal data is required".to_owned(),
        });
    }

    for key in TRAFFIC_KEYS {
        if let Some(v) = first(raw, key) {
            sub.traffic.push((key, cut(&v, MAX_SOURCE_CHARS)));
        }
    }
    sub.idempotency_key = values(raw, IDEMPOTENCY_KEY_FIELD)
        .next()
        .filter(|k| is_valid_idempotency_key(k))
        .map(str::to_owned);
    Ok(sub)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> FormSpec {
        FormSpec {
            fields: Field::STANDARD
                .iter()
                .map(|f| (f.key().to_owned(), f.clone()))
                .chain([("budget".to_owned(), Field::Extra("Budget".to_owned()))])
                .collect(),
            required: vec![],
            require_contact: true,
            honeypot_field: "website".to_owned(),
            min_fill_ms: Some(3_000),
            consent_required: false,
            plan: NumberPlan::new(Some("7".to_owned()), 5),
        }
    }

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded; charset=UTF-8");
    const NOW: i64 = 1_777_000_000_000;

    fn ctx(browser: bool) -> ParseContext {
        ParseContext {
            now_ms: NOW,
            browser,
        }
    }

    fn parse(body: &str, ct: Option<&str>) -> Result<Submission, FormError> {
        parse_submission(body.as_bytes(), ct, &spec(), ctx(false))
    }

    #[test]
    fn json_submission_maps_every_field() {
        let sub = parse(
            r#"{"name":" Ivan ","phone":"8 (916) 123-45-67","email":"Ivan@Example.RU",
                "message":"Call me\r\nplease","budget":["100","200"],"consent":"on",
                "utm_source":"yandex","page_url":"https://shop.example/a","idempotency_key":"abcdef12-3456",
                "unmapped":"x","website":""}"#,
            JSON,
        )
        .unwrap();
        assert_eq!(sub.name.as_deref(), Some("Ivan"));
        assert_eq!(sub.phone.as_deref(), Some("+79161234567"));
        assert_eq!(sub.email.as_deref(), Some("Ivan@example.ru"));
        assert_eq!(sub.message.as_deref(), Some("Call me\nplease"));
        assert_eq!(
            sub.extras,
            vec![("Budget".to_owned(), "100, 200".to_owned())]
        );
        assert!(sub.consent);
        assert_eq!(
            sub.traffic,
            vec![
                ("utm_source", "yandex".to_owned()),
                ("page_url", "https://shop.example/a".to_owned())
            ]
        );
        assert_eq!(sub.idempotency_key.as_deref(), Some("abcdef12-3456"));
    }

    #[test]
    fn urlencoded_submission_and_repeated_keys() {
        let sub = parse(
            "name=%D0%98%D0%B2%D0%B0%D0%BD&email=a%40b.co&budget=1&budget=2&idempotency_key=short",
            FORM,
        )
        .unwrap();
        assert_eq!(sub.name.as_deref(), Some("Иван"));
        assert_eq!(sub.email.as_deref(), Some("a@b.co"));
        assert_eq!(sub.extras[0].1, "1, 2");
        assert_eq!(sub.idempotency_key, None, "too short a key is ignored");
    }

    #[test]
    fn errors_map_to_codes_and_statuses() {
        let cases: [(&str, Option<&str>, &str, u16); 9] = [
            ("{}", Some("text/plain"), "unsupported_content_type", 415),
            ("{}", None, "unsupported_content_type", 415),
            ("{", JSON, "malformed_body", 400),
            ("[1]", JSON, "malformed_body", 400),
            (r#"{"name":{"a":1}}"#, JSON, "invalid_field", 400),
            (r#"{"name":"x"}"#, JSON, "missing_field", 400),
            (r#"{"phone":"12"}"#, JSON, "invalid_field", 400),
            (r#"{"email":"not-an-email"}"#, JSON, "invalid_field", 400),
            (
                r#"{"phone":"+79161234567","website":"http://spam"}"#,
                JSON,
                "spam",
                400,
            ),
        ];
        for (body, ct, code, status) in cases {
            let err = parse(body, ct).unwrap_err();
            assert_eq!((err.code(), err.status()), (code, status), "{body}");
        }
        let err = parse_submission(b"name=\xff", FORM, &spec(), ctx(false)).unwrap_err();
        assert_eq!(err, FormError::Malformed("body is not UTF-8".to_owned()));
        assert_eq!(FormError::TooLarge(10).status(), 413);
    }

    #[test]
    fn missing_field_names_the_field_and_input() {
        let mut s = spec();
        s.required = vec![Field::Name];
        s.fields.insert(0, ("fio".to_owned(), Field::Name));
        let err =
            parse_submission(br#"{"phone":"+79161234567"}"#, JSON, &s, ctx(false)).unwrap_err();
        assert_eq!(
            err.to_json(&s),
            json!({"error":"missing_field","field":"name","input":"fio","message":"field `name` is required"})
        );
    }

    #[test]
    fn fill_time_is_checked() {
        let fast = format!(r#"{{"phone":"+79161234567","_started":"{}"}}"#, NOW - 1_000);
        assert_eq!(
            parse(&fast, JSON).unwrap_err(),
            FormError::Spam("sent too fast")
        );
        let slow = format!(
            r#"{{"phone":"+79161234567","_started":"{}"}}"#,
            NOW - 10_000
        );
        assert!(parse(&slow, JSON).is_ok());
        // The client's own clock wins when it sends `_sent`.
        let skewed = r#"{"phone":"+79161234567","_started":"5000","_sent":"9000"}"#;
        assert!(parse(skewed, JSON).is_ok());
        let bad = r#"{"phone":"+79161234567","_started":"soon"}"#;
        assert_eq!(
            parse(bad, JSON).unwrap_err(),
            FormError::Spam("bad start time")
        );
        // No start time: fine server-to-server, spam from a browser.
        let none = r#"{"phone":"+79161234567"}"#;
        assert!(parse(none, JSON).is_ok());
        let err = parse_submission(none.as_bytes(), JSON, &spec(), ctx(true)).unwrap_err();
        assert_eq!(err, FormError::Spam("no start time"));
    }

    #[test]
    fn consent_when_required() {
        let mut s = spec();
        s.consent_required = true;
        let err =
            parse_submission(br#"{"phone":"+79161234567"}"#, JSON, &s, ctx(false)).unwrap_err();
        assert_eq!(err.field(), Some("consent"));
        let body = br#"{"phone":"+79161234567","consent":true}"#;
        assert!(
            parse_submission(body, JSON, &s, ctx(false))
                .unwrap()
                .consent
        );
    }

    #[test]
    fn hostile_input_is_kept_as_text_or_refused() {
        let sub = parse(
            r#"{"name":"<script>alert(1)</script>\u0000\n","phone":"+79161234567"}"#,
            JSON,
        )
        .unwrap();
        assert_eq!(sub.name.as_deref(), Some("<script>alert(1)</script>"));
        let many: String = (0..MAX_FIELDS + 1).map(|i| format!("f{i}=1&")).collect();
        assert_eq!(parse(&many, FORM).unwrap_err(), FormError::TooManyFields);
        let repeated = "a=1&".repeat(MAX_VALUES + 1);
        assert_eq!(
            parse(&repeated, FORM).unwrap_err(),
            FormError::TooManyFields
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep, JSON).unwrap_err().code(), "malformed_body");
        let long = format!(
            r#"{{"phone":"+79161234567","name":"{}"}}"#,
            "x".repeat(1_001)
        );
        assert_eq!(parse(&long, JSON).unwrap_err().field(), Some("name"));
    }

    #[test]
    fn phones_and_emails() {
        let plan = NumberPlan::new(Some("7".to_owned()), 5);
        assert_eq!(
            normalize_phone("+7 916 123-45-67", &plan).as_deref(),
            Some("+79161234567")
        );
        assert_eq!(normalize_phone("101", &plan), None);
        assert_eq!(normalize_phone("call me", &plan), None);
        assert_eq!(normalize_phone("+1234567890123456", &plan), None);
        for ok in ["a@b.co", "first.last+tag@sub.example.com", "иван@пример.рф"] {
            assert!(normalize_email(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "a@@b.co", "a b@c.de", ".a@b.co", "a@-b.co", "a@b.123", "a@b..co",
        ] {
            assert!(normalize_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fields_parse_and_name() {
        assert_eq!(
            Field::parse("extra:Budget"),
            Some(Field::Extra("Budget".to_owned()))
        );
        assert_eq!(Field::parse("extra:"), None);
        assert_eq!(Field::parse("phone2"), None);
        assert_eq!(Field::Extra("B".to_owned()).name(), "extra:B");
        assert_eq!(Field::Phone.name(), "phone");
        assert!(is_reserved_field("utm_source") && is_reserved_field("consent"));
        assert!(!is_reserved_field("phone"));
    }

    #[test]
    fn idempotency_keys() {
        assert!(is_valid_idempotency_key(
            "0b8c7a9e-1f2d-4c3b-9a8e-7d6c5b4a3f21"
        ));
        assert!(!is_valid_idempotency_key("short"));
        assert!(!is_valid_idempotency_key("has:colon-123"));
        assert!(!is_valid_idempotency_key(&"a".repeat(65)));
    }
}
