//! Emailed site forms: a website's CMS mails "New request from the site" with the form's
//! fields as text. A [`FormTemplate`] from the config says how to recognize such a mail
//! (sender, subject) and how to pull each field out of its text (one regex per field);
//! [`CompiledTemplates::extract`] turns a [`ParsedMail`] into [`FormFields`] for a lead.
//!
//! ```toml
//! [[connectors.mail.form_templates]]
//! name = "site"
//! from = "*@example.com"
//! subject = '(?i)new request|заявка'
//! [connectors.mail.form_templates.fields]
//! name = '(?m)^(?:Имя|Name):\s*(.+)$'
//! phone = '(?m)^(?:Телефон|Phone):\s*(.+)$'
//! email = '(?m)^(?:E-?mail|Почта):\s*(.+)$'
//! message = '(?s)(?:Сообщение|Message):\s*(.+)'
//! ```

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};

use crate::mime::ParsedMail;

/// How to recognize one site's form mails and read their fields.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormTemplate {
    pub name: String,
    /// Sender address or "*@domain" glob; matched case-insensitively.
    pub from: Option<String>,
    /// Regex on the decoded subject.
    pub subject: Option<String>,
    /// Our field -> regex with ONE capture group applied to the text body, e.g.
    /// `phone = '(?m)^(?:Телефон|Phone):\s*(.+)$'`. Known fields: name, phone, email,
    /// message, company; others are kept as extra fields.
    pub fields: BTreeMap<String, String>,
}

/// What a form mail said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormFields {
    /// The name of the template that matched.
    pub template: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub company: Option<String>,
    pub message: Option<String>,
    /// Fields of the template other than the known ones.
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Compiled {
    name: String,
    from: Option<String>,
    subject: Option<Regex>,
    fields: Vec<(String, Regex)>,
}

/// Templates checked and compiled once, at config time.
#[derive(Debug)]
pub struct CompiledTemplates {
    templates: Vec<Compiled>,
}

/// Compiled regexes are bounded so a config cannot make one huge.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))
}

impl CompiledTemplates {
    /// Checks and compiles the templates. A bad one gives the field path as written in the
    /// config (`form_templates[0].fields.phone`) and what is wrong with it.
    pub fn new(templates: &[FormTemplate]) -> Result<Self, (String, String)> {
        let mut out = Vec::with_capacity(templates.len());
        for (i, t) in templates.iter().enumerate() {
            let path = |f: &str| format!("form_templates[{i}].{f}");
            if t.name.trim().is_empty() {
                return Err((path("name"), "must not be empty".into()));
            }
            let from = match t.from.as_deref().map(str::trim) {
                None => None,
                Some(f)
                    if f.is_empty() || f.chars().any(char::is_whitespace) || !f.contains('@') =>
                {
                    return Err((
                        path("from"),
                        "must be an address or a glob like \"*@example.com\"".into(),
                    ))
                }
                Some(f) => Some(f.to_lowercase()),
            };
            let subject = t
                .subject
                .as_deref()
                .map(compile)
                .transpose()
                .map_err(|e| (path("subject"), e))?;
            if t.fields.is_empty() {
                return Err((path("fields"), "must name at least one field".into()));
            }
            let mut fields = Vec::with_capacity(t.fields.len());
            for (field, pattern) in &t.fields {
                let field_path = path(&format!("fields.{field}"));
                if field.trim().is_empty() {
                    return Err((field_path, "field name must not be empty".into()));
                }
                let re = compile(pattern).map_err(|e| (field_path.clone(), e))?;
                if re.captures_len() != 2 {
                    return Err((
                        field_path,
                        format!(
                            "must have exactly one capture group, has {}",
                            re.captures_len().saturating_sub(1)
                        ),
                    ));
                }
                fields.push((field.clone(), re));
            }
            out.push(Compiled {
                name: t.name.clone(),
                from,
                subject,
                fields,
            });
        }
        Ok(Self { templates: out })
    }

    /// The fields of the first template whose from and subject match the mail AND that
    /// yields a phone or an email. Fields are looked for in the new text first, then in the
    /// whole body (text and quoted: a CMS footer can look like a signature).
    pub fn extract(&self, mail: &ParsedMail) -> Option<FormFields> {
        let text = mail.text.as_deref().unwrap_or("");
        let whole = match mail.quoted.as_deref() {
            Some(q) => format!("{text}\n{q}"),
            None => text.to_owned(),
        };
        self.templates.iter().find_map(|t| {
            if let Some(pattern) = &t.from {
                let addr = mail.from.as_ref().map(|a| a.address.as_str())?;
                if !glob_match(pattern, &addr.to_lowercase()) {
                    return None;
                }
            }
            if let Some(re) = &t.subject {
                if !re.is_match(mail.subject.as_deref()?) {
                    return None;
                }
            }
            let mut f = FormFields {
                template: t.name.clone(),
                ..FormFields::default()
            };
            for (field, re) in &t.fields {
                let value = capture(re, text).or_else(|| capture(re, &whole));
                let Some(value) = value else {
                    continue;
                };
                match field.as_str() {
                    "name" => f.name = Some(value),
                    "phone" => f.phone = Some(value),
                    "email" => f.email = Some(value),
                    "company" => f.company = Some(value),
                    "message" => f.message = Some(value),
                    other => {
                        f.extra.insert(other.to_owned(), value);
                    }
                }
            }
            (f.phone.is_some() || f.email.is_some()).then_some(f)
        })
    }
}

fn capture(re: &Regex, haystack: &str) -> Option<String> {
    let value = re.captures(haystack)?.get(1)?.as_str().trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `*` matches any run of characters; everything else literally. Both sides lower-case.
fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(c) if Some(c) == v.get(vi) => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or(&[]).iter().all(|&c| c == '*')
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::MailAddress;

    fn template() -> FormTemplate {
        FormTemplate {
            name: "site".into(),
            from: Some("*@Example.com".into()),
            subject: Some("(?i)заявка|new request".into()),
            fields: BTreeMap::from([
                ("name".into(), r"(?m)^(?:Имя|Name):\s*(.+)$".into()),
                ("phone".into(), r"(?m)^(?:Телефон|Phone):\s*(.+)$".into()),
                ("email".into(), r"(?m)^(?:E-?mail):\s*(.+)$".into()),
                (
                    "message".into(),
                    r"(?s)(?:Сообщение|Message):\s*(.+)".into(),
                ),
                ("city".into(), r"(?m)^Город:\s*(.+)$".into()),
            ]),
        }
    }

    fn mail(from: &str, subject: &str, text: &str) -> ParsedMail {
        ParsedMail {
            from: Some(MailAddress {
                name: None,
                address: from.into(),
            }),
            subject: Some(subject.into()),
            text: Some(text.into()),
            ..ParsedMail::default()
        }
    }

    #[test]
    fn extracts_fields() {
        let t = CompiledTemplates::new(&[template()]).unwrap();
        let m = mail(
            "noreply@example.com",
            "Новая заявка с сайта",
            "Имя: Иван Петров\nТелефон: +7 900 123-45-67\nГород: Москва\nСообщение: Нужна доставка\nзавтра",
        );
        let f = t.extract(&m).unwrap();
        assert_eq!(f.template, "site");
        assert_eq!(f.name.as_deref(), Some("Иван Петров"));
        assert_eq!(f.phone.as_deref(), Some("+7 900 123-45-67"));
        assert_eq!(f.email, None);
        assert_eq!(f.message.as_deref(), Some("Нужна доставка\nзавтра"));
        assert_eq!(f.extra.get("city").map(String::as_str), Some("Москва"));
    }

    #[test]
    fn needs_from_subject_and_a_contact() {
        let t = CompiledTemplates::new(&[template()]).unwrap();
        assert!(t
            .extract(&mail("noreply@other.com", "Заявка", "Телефон: 1"))
            .is_none());
        assert!(t
            .extract(&mail("noreply@example.com", "Hello", "Телефон: 1"))
            .is_none());
        assert!(t
            .extract(&mail("noreply@example.com", "Заявка", "Имя: Иван"))
            .is_none());
        assert!(t.extract(&ParsedMail::default()).is_none());
        // Found in the quoted part when the text lacks it.
        let mut m = mail("noreply@example.com", "Заявка", "Имя: Иван");
        m.quoted = Some("-- \nE-mail: ivan@example.ru".into());
        assert_eq!(
            t.extract(&m).unwrap().email.as_deref(),
            Some("ivan@example.ru")
        );
    }

    #[test]
    fn bad_templates_name_the_field() {
        let mut t = template();
        t.fields.insert("phone".into(), "Телефон: .+".into());
        let err = CompiledTemplates::new(&[template(), t]).unwrap_err();
        assert_eq!(err.0, "form_templates[1].fields.phone");
        let mut t = template();
        t.subject = Some("(".into());
        assert_eq!(
            CompiledTemplates::new(&[t]).unwrap_err().0,
            "form_templates[0].subject"
        );
        let mut t = template();
        t.from = Some("example.com".into());
        assert_eq!(
            CompiledTemplates::new(&[t]).unwrap_err().0,
            "form_templates[0].from"
        );
        let mut t = template();
        t.fields.clear();
        assert_eq!(
            CompiledTemplates::new(&[t]).unwrap_err().0,
            "form_templates[0].fields"
        );
    }

    #[test]
    fn deny_unknown_fields() {
        let err = serde_json::from_str::<FormTemplate>(r#"{"name":"x","fields":{},"bogus":1}"#);
        assert!(err.is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*@example.com", "a@example.com"));
        assert!(glob_match("a@example.com", "a@example.com"));
        assert!(!glob_match("*@example.com", "a@example.com.evil"));
        assert!(glob_match("*@*.example.com", "x@mail.example.com"));
        assert!(!glob_match("*@*.example.com", "x@example.com"));
        assert!(glob_match("*", ""));
    }
}
