//! The MIME fixtures (written by `tests/fixtures/make_fixtures.py`, see the README there)
//! through `parse_mail`: charsets, quote separation, HTML, attachments, bounces,
//! auto-replies, form templates, malformed input; and every fixture truncated at every
//! byte, which must never panic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use kommutator_email::form_template::{CompiledTemplates, FormTemplate};
use kommutator_email::mime::{
    find_token, parse_mail, thread_token, Limits, MailAddress, MailKind, MimeError, ParsedMail,
};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn raw(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap()
}

fn parse(name: &str) -> ParsedMail {
    parse_mail(&raw(name), &Limits::default()).unwrap()
}

fn addr(name: Option<&str>, address: &str) -> MailAddress {
    MailAddress {
        name: name.map(str::to_owned),
        address: address.to_owned(),
    }
}

#[test]
fn koi8r_body_and_encoded_words() {
    let m = parse("plain_koi8r.eml");
    assert_eq!(m.subject.as_deref(), Some("Вопрос о доставке"));
    assert_eq!(m.base_subject, "вопрос о доставке");
    assert_eq!(
        m.from,
        Some(addr(Some("Иван Петров"), "ivan.petrov@example.ru"))
    );
    assert_eq!(m.to, vec![addr(None, "sales@example.com")]);
    assert_eq!(
        m.text.as_deref(),
        Some("Добрый день!\nСколько стоит доставка в Казань?")
    );
    assert_eq!(m.quoted, None);
    assert_eq!(m.html, None);
    assert_eq!(m.message_id.as_deref(), Some("koi8-1@example.ru"));
    let date = m.date.unwrap();
    assert_eq!(date.unix_timestamp(), 1_796_108_400);
    assert_eq!(date.offset().whole_hours(), 3);
    assert_eq!(m.kind, MailKind::Normal);
    assert!(m.attachments.is_empty());
}

#[test]
fn cp1251_quoted_printable_reply_with_russian_attribution() {
    let m = parse("reply_cp1251_qp.eml");
    assert_eq!(m.subject.as_deref(), Some("Ответ: Re: Заказ №42"));
    assert_eq!(m.base_subject, "заказ №42");
    assert_eq!(m.from, Some(addr(Some("Иван"), "ivan@example.ru")));
    assert_eq!(
        m.cc,
        vec![
            addr(None, "boss@example.ru"),
            addr(Some("Бухгалтерия"), "buh@example.ru")
        ]
    );
    assert_eq!(m.text.as_deref(), Some("Да, подходит, жду счёт."));
    let quoted = m.quoted.unwrap();
    assert!(
        quoted.starts_with("вт, 1 дек. 2026 г. в 18:00, Отдел продаж <sales@example.com>:"),
        "{quoted}"
    );
    assert!(quoted.contains("> Добрый день! Заказ №42 готов."));
    assert_eq!(m.in_reply_to, vec!["out-1@example.com"]);
    assert_eq!(m.references, vec!["first@example.ru", "out-1@example.com"]);
    // The token is only in the quoted part of the reply.
    assert_eq!(m.token.as_deref(), Some("K-mfrggzdf"));
}

#[test]
fn iso_8859_5_base64() {
    let m = parse("plain_iso8859_5.eml");
    assert_eq!(m.subject.as_deref(), Some("Счёт на оплату"));
    assert_eq!(m.text.as_deref(), Some("Прошу выставить счёт.\nПётр"));
    assert_eq!(m.from, Some(addr(None, "petr@example.ru")));
}

#[test]
fn outlook_alternative_splits_at_the_header_block() {
    let m = parse("outlook_alternative_utf8.eml");
    assert_eq!(m.subject.as_deref(), Some("RE: Договор"));
    assert_eq!(m.base_subject, "договор");
    assert_eq!(m.text.as_deref(), Some("Добрый день!\nСогласовано."));
    assert!(m
        .quoted
        .unwrap()
        .starts_with("От: Отдел продаж <sales@example.com>\nОтправлено:"));
    let html = m.html.unwrap();
    assert!(html.contains("Согласовано."), "{html}");
    assert!(
        !html.contains("<style") && !html.contains("margin"),
        "{html}"
    );
    assert!(m.attachments.is_empty());
}

#[test]
fn html_only_with_inline_image_and_attachments() {
    let m = parse("html_related_attachments.eml");
    assert_eq!(m.subject.as_deref(), Some("Прайс"));
    let text = m.text.unwrap();
    assert!(
        text.starts_with("Здравствуйте!\nПришлите, пожалуйста, прайс & условия."),
        "{text}"
    );
    assert!(!text.contains("Чем можем помочь"), "{text}");
    assert!(!text.contains("alert"), "{text}");
    let quoted = m.quoted.unwrap();
    assert!(
        quoted.starts_with("пн, 30 нояб. 2026 г. в 17:00, Отдел продаж <sales@example.com>:"),
        "{quoted}"
    );
    assert!(quoted.contains("> Чем можем помочь?"), "{quoted}");

    let html = m.html.unwrap();
    for bad in [
        "<script",
        "alert",
        "tracker.example.net",
        "<iframe",
        "<form",
        "<input",
        "onerror",
        "onclick",
        "steal",
    ] {
        assert!(!html.contains(bad), "{bad} in {html}");
    }
    assert!(html.contains(r#"src="cid:logo@example.ru""#), "{html}");
    assert!(html.contains(r#"rel="noopener noreferrer""#), "{html}");
    assert!(html.contains(r#"target="_blank""#), "{html}");
    // The remote image is replaced by its alt text.
    assert!(html.contains("logo"), "{html}");
    // The quoted part stays in the HTML.
    assert!(html.contains("Чем можем помочь?"), "{html}");

    let names: Vec<(&str, &str, bool)> = m
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.mime_type.as_str(), a.inline))
        .collect();
    assert_eq!(
        names,
        vec![
            ("logo.png", "image/png", true),
            ("Счёт №42.pdf", "application/pdf", false),
            ("Прайс.xlsx", "application/octet-stream", false),
        ]
    );
    assert!(m.attachments[0].content.starts_with(b"\x89PNG\r\n"));
    assert_eq!(
        m.attachments[1].content,
        b"%PDF-1.4\n% fixture, not a real document\n%%EOF\n"
    );
    assert_eq!(m.attachments[2].content, b"PK\x03\x04fixture");
    assert_eq!(m.kind, MailKind::Normal);
}

#[test]
fn dsn_bounce() {
    let m = parse("bounce_dsn.eml");
    assert_eq!(
        m.kind,
        MailKind::Bounce {
            original_message_id: Some("out-6@example.com".into()),
            recipient: Some("nobody@example.net".into()),
            status: Some("5.1.1".into()),
        }
    );
    assert_eq!(m.from.unwrap().address, "mailer-daemon@mx.example.com");
}

#[test]
fn plain_mailer_daemon_bounce() {
    let m = parse("bounce_exim_plain.eml");
    assert_eq!(
        m.kind,
        MailKind::Bounce {
            original_message_id: Some("out-7@example.com".into()),
            recipient: Some("gone@example.org".into()),
            status: Some("5.1.1".into()),
        }
    );
}

#[test]
fn auto_replies() {
    for name in [
        "autoreply_rfc3834.eml",
        "autoreply_x_autoreply.eml",
        "autoreply_precedence_bulk.eml",
        "autoreply_exchange.eml",
        "autoreply_russian.eml",
        "autoreply_russian_short.eml",
    ] {
        let m = parse(name);
        assert_eq!(m.kind, MailKind::AutoReply, "{name}");
        assert_eq!(m.in_reply_to, vec!["out-8@example.com"], "{name}");
    }
    let m = parse("normal_auto_submitted_no.eml");
    assert_eq!(m.kind, MailKind::Normal);
    assert_eq!(m.text.as_deref(), Some("Thanks, we will buy."));
}

#[test]
fn precedence_bulk_alone_is_normal() {
    let m = parse_mail(
        b"From: news@example.com\r\nSubject: Our December newsletter\r\nPrecedence: bulk\r\n\r\nNews\r\n",
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(m.kind, MailKind::Normal);
}

#[test]
fn site_form_through_a_template() {
    let m = parse("site_form.eml");
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("Сайт example.ru")
    );
    let templates = CompiledTemplates::new(&[FormTemplate {
        name: "example.ru".into(),
        from: Some("*@EXAMPLE.ru".into()),
        subject: Some("(?i)заявка".into()),
        fields: BTreeMap::from([
            ("name".into(), r"(?m)^(?:Имя|Name):\s*(.+)$".into()),
            ("phone".into(), r"(?m)^(?:Телефон|Phone):\s*(.+)$".into()),
            ("email".into(), r"(?m)^(?:E-?mail):\s*(.+)$".into()),
            (
                "message".into(),
                r"(?s)(?:Сообщение|Message):\s*(.+)".into(),
            ),
        ]),
    }])
    .unwrap();
    let f = templates.extract(&m).unwrap();
    assert_eq!(f.template, "example.ru");
    assert_eq!(f.name.as_deref(), Some("Мария Сидорова"));
    assert_eq!(f.phone.as_deref(), Some("+7 (912) 345-67-89"));
    assert_eq!(f.email.as_deref(), Some("maria@example.net"));
    // The CMS footer after "-- " is not part of the message.
    assert_eq!(
        f.message.as_deref(),
        Some("Перезвоните после 18:00,\nпожалуйста.")
    );
}

#[test]
fn mobile_signature_and_original_message() {
    let m = parse("reply_iphone_signature.eml");
    assert_eq!(m.text.as_deref(), Some("Works for me."));
    assert!(m.quoted.unwrap().starts_with("Sent from my iPhone"));
    let m = parse("reply_original_message.eml");
    assert_eq!(m.text.as_deref(), Some("Approved."));
    assert!(m.quoted.unwrap().starts_with("-----Original Message-----"));
}

#[test]
fn malformed_mime_is_recovered() {
    let m = parse("malformed_no_end_boundary.eml");
    assert_eq!(m.text.as_deref(), Some("The text survives."));
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].name, "a.pdf");

    let m = parse("malformed_bad_base64.eml");
    assert_eq!(m.subject.as_deref(), Some("bad base64"));
    assert_eq!(m.message_id.as_deref(), Some("b64-17@example.com"));

    let m = parse("malformed_no_content_type.eml");
    assert_eq!(
        m.text.as_deref(),
        Some("Plain body without any MIME headers.")
    );
    assert_eq!(m.to, vec![addr(None, "b@example.com")]);

    let m = parse("malformed_header_no_colon.eml");
    assert_eq!(m.from, Some(addr(None, "a@example.com")));

    let m = parse("malformed_nul_bytes.eml");
    assert_eq!(m.text.as_deref(), Some("beforeafter"));
    assert!(!m.subject.unwrap_or_default().contains('\0'));

    let m = parse("malformed_8bit_headers_utf8.eml");
    assert_eq!(m.subject.as_deref(), Some("Привет без кодирования"));
    assert_eq!(m.from, Some(addr(Some("Иван Петров"), "ivan@example.ru")));
    assert_eq!(m.text.as_deref(), Some("Тело письма."));

    let m = parse("malformed_8bit_headers_koi8r.eml");
    assert_eq!(m.subject.as_deref(), Some("Привет в KOI8-R"));
    assert_eq!(m.text.as_deref(), Some("Тело письма."));
}

#[test]
fn not_a_message_is_unparseable() {
    for input in [
        &b""[..],
        b"\r\n\r\n",
        b"   ",
        b"hello world",
        b"hello world\n",
        b"\0\0\0",
    ] {
        assert_eq!(
            parse_mail(input, &Limits::default()),
            Err(MimeError::Unparseable),
            "{input:?}"
        );
    }
}

#[test]
fn too_large_and_attachment_limit() {
    let raw = raw("html_related_attachments.eml");
    let small = Limits {
        max_message_bytes: 100,
        max_attachments: 100,
    };
    assert!(matches!(
        parse_mail(&raw, &small),
        Err(MimeError::TooLarge { max: 100, .. })
    ));
    let two = Limits {
        max_message_bytes: 1 << 20,
        max_attachments: 2,
    };
    assert_eq!(parse_mail(&raw, &two).unwrap().attachments.len(), 2);
}

fn big_message(size: usize) -> (Vec<u8>, Vec<u8>) {
    let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut b64 = String::new();
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in content.chunks(57) {
        for triple in chunk.chunks(3) {
            let n = triple
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for k in 0..4 {
                if k <= triple.len() {
                    b64.push(TABLE[(n >> (18 - 6 * k) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        b64.push_str("\r\n");
    }
    let raw = format!(
        "From: a@example.com\r\nSubject: big\r\nMessage-ID: <big@example.com>\r\n\
         Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n\
         --big\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
         --big\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}--big--\r\n"
    );
    (raw.into_bytes(), content)
}

#[test]
fn five_megabyte_attachment() {
    let (raw, content) = big_message(5 * 1024 * 1024);
    let m = parse_mail(&raw, &Limits::default()).unwrap();
    assert_eq!(m.text.as_deref(), Some("See the attachment."));
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].name, "big.bin");
    assert_eq!(m.attachments[0].content.len(), content.len());
    assert!(m.attachments[0].content == content);
    // Cut inside the base64: what is there still parses.
    for cut in [raw.len() / 3, raw.len() / 2, raw.len() - 10] {
        let _ = parse_mail(&raw[..cut], &Limits::default()).unwrap();
    }
}

#[test]
fn token_helpers() {
    let t = thread_token("dialog-1");
    assert_eq!(find_token(&format!("Subject [{t}]")), Some(t));
}

/// Every fixture (ours and the session ones), whole and truncated at every byte (every 7th
/// for big ones): never a panic.
#[test]
fn every_fixture_truncated_at_every_byte() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    let limits = Limits::default();
    for path in names {
        let raw = std::fs::read(&path).unwrap();
        assert!(parse_mail(&raw, &limits).is_ok(), "{}", path.display());
        let step = if raw.len() > 64 * 1024 { 7 } else { 1 };
        for cut in (0..raw.len()).step_by(step) {
            if let Ok(m) = parse_mail(&raw[..cut], &limits) {
                if let Some(t) = &m.text {
                    assert!(!t.trim().is_empty(), "{} at {cut}", path.display());
                }
            }
        }
    }
}
