//! What a site pastes: the script (`embed.js`, written for this crate, dependency-free)
//! and an example HTML snippet.

use kommutator_sdk::ConnectorId;

use crate::parse::{Field, FormKind, FormSpec};

/// The script's source, with the honeypot placeholder.
pub const EMBED_JS_TEMPLATE: &str = include_str!("embed.js");

const HONEYPOT_PLACEHOLDER: &str = "\"__KOMMUTATOR_HONEYPOT__\"";

/// The script for a form whose hidden field is `honeypot` (validated by `WebForm::new`
/// to `[A-Za-z0-9_-]`, and written as a JSON string anyway).
pub fn script(honeypot: &str) -> String {
    let literal = serde_json::to_string(honeypot).unwrap_or_else(|_| "\"website\"".to_owned());
    EMBED_JS_TEMPLATE.replacen(HONEYPOT_PLACEHOLDER, &literal, 1)
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn label(field: &Field) -> String {
    match field {
        Field::Name => "Name".to_owned(),
        Field::Phone => "Phone".to_owned(),
        Field::Email => "Email".to_owned(),
        Field::Message => "Message".to_owned(),
        Field::Company => "Company".to_owned(),
        Field::Extra(label) => label.clone(),
    }
}

/// An example form with the script, for the form `id` served from `host`. Every
/// interpolated value is escaped.
pub fn snippet(
    host: &str,
    id: &ConnectorId,
    form_name: &str,
    kind: FormKind,
    spec: &FormSpec,
    consent_text: Option<&str>,
) -> String {
    let base = format!(
        "https://{}/forms/{}/",
        escape_html(host),
        escape_html(id.as_str())
    );
    let mut wanted: Vec<Field> = match kind {
        FormKind::Callback => vec![Field::Name, Field::Phone],
        FormKind::Lead => vec![Field::Name, Field::Phone, Field::Email, Field::Message],
    };
    for (_, f) in &spec.fields {
        if !wanted.contains(f) && (matches!(f, Field::Extra(_)) || spec.required.contains(f)) {
            wanted.push(f.clone());
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "<!-- Kommutator form \"{}\": paste into your page. -->\n",
        escape_html(form_name)
    ));
    out.push_str(&format!(
        "<form id=\"kommutator-form\" action=\"{base}\" method=\"post\">\n"
    ));
    for f in &wanted {
        let Some(input) = spec.input_of(f) else {
            continue;
        };
        let name = escape_html(input);
        let required = if spec.required.contains(f) {
            " required"
        } else {
            ""
        };
        let control = match f {
            Field::Message => format!("<textarea name=\"{name}\"{required}></textarea>"),
            Field::Phone => {
                format!("<input name=\"{name}\" type=\"tel\" autocomplete=\"tel\"{required}>")
            }
            Field::Email => {
                format!("<input name=\"{name}\" type=\"email\" autocomplete=\"email\"{required}>")
            }
            Field::Name => format!("<input name=\"{name}\" autocomplete=\"name\"{required}>"),
            _ => format!("<input name=\"{name}\"{required}>"),
        };
        out.push_str(&format!(
            "  <label>{} {control}</label>\n",
            escape_html(&label(f))
        ));
    }
    if let Some(text) = consent_text {
        out.push_str(&format!(
            "  <label><input type=\"checkbox\" name=\"consent\" value=\"1\" required> {}</label>\n",
            escape_html(text)
        ));
    }
    out.push_str("  <button type=\"submit\">Send</button>\n</form>\n");
    out.push_str(&format!(
        "<script src=\"{base}embed.js\" data-form=\"#kommutator-form\" async></script>\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kommutator_sdk::phone::NumberPlan;

    #[test]
    fn script_gets_the_honeypot() {
        let js = script("hp_field");
        assert!(js.contains("var HONEYPOT = \"hp_field\";"));
        assert!(!js.contains("__KOMMUTATOR_HONEYPOT__"));
    }

    #[test]
    fn snippet_escapes_everything() {
        let spec = FormSpec {
            fields: vec![
                ("tel".to_owned(), Field::Phone),
                ("x\"y".to_owned(), Field::Extra("<b>".to_owned())),
            ],
            required: vec![Field::Phone],
            require_contact: false,
            honeypot_field: "website".to_owned(),
            min_fill_ms: None,
            consent_required: true,
            plan: NumberPlan::default(),
        };
        let html = snippet(
            "hub.example:8080",
            &ConnectorId::new("site"),
            "<Call>",
            FormKind::Callback,
            &spec,
            Some("I agree & accept"),
        );
        assert!(html.contains("action=\"https://hub.example:8080/forms/site/\""));
        assert!(html.contains("<input name=\"tel\" type=\"tel\" autocomplete=\"tel\" required>"));
        assert!(html.contains("name=\"x&quot;y\""));
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("&lt;Call&gt;"));
        assert!(html.contains("I agree &amp; accept"));
        assert!(html.contains("src=\"https://hub.example:8080/forms/site/embed.js\""));
    }
}
