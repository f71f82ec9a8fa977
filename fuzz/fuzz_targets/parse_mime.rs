//! Mail comes from anyone: `parse_mail` answers every input with a parsed mail or an
//! error, never a panic; the token finder and a form template run on whatever it yields.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use kommutator_email::form_template::{CompiledTemplates, FormTemplate};
use kommutator_email::mime::{find_token, parse_mail, Limits};
use libfuzzer_sys::fuzz_target;

static TEMPLATES: LazyLock<CompiledTemplates> = LazyLock::new(|| {
    CompiledTemplates::new(&[FormTemplate {
        name: "site".to_owned(),
        from: Some("*@example.ru".to_owned()),
        subject: Some("(?i)заявка|request".to_owned()),
        fields: BTreeMap::from([
            ("name".to_owned(), r"(?m)^(?:Имя|Name):\s*(.+)$".to_owned()),
            (
                "phone".to_owned(),
                r"(?m)^(?:Телефон|Phone):\s*(.+)$".to_owned(),
            ),
            ("email".to_owned(), r"(?m)^(?:E-?mail):\s*(.+)$".to_owned()),
            (
                "message".to_owned(),
                r"(?s)(?:Сообщение|Message):\s*(.+)".to_owned(),
            ),
            (
                "city".to_owned(),
                r"(?m)^(?:Город|City):\s*(.+)$".to_owned(),
            ),
        ]),
    }])
    .expect("the fuzz template compiles")
});

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 1 << 20,
        max_attachments: 10,
    };
    if let Ok(mail) = parse_mail(data, &limits) {
        assert!(mail.attachments.len() <= 10);
        if let Some(text) = &mail.text {
            assert!(!text.trim().is_empty(), "an empty text is None");
        }
        if let Some(token) = &mail.token {
            assert!(token.starts_with("K-") && token.len() == 10);
        }
        let _ = TEMPLATES.extract(&mail);
    }
    let _ = find_token(&String::from_utf8_lossy(data));
});
