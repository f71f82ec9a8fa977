//! Replay tests against a real mail system: a private Dovecot (IMAP + LMTP) and Postfix
//! (SMTP) started by `rig`. They print `SKIPPED` (or panic when `CI` is set) on a machine
//! without the Debian packages or root.
//!
//! Waits are real (the servers run in real time) but always polls with a deadline.

#![allow(clippy::unwrap_used)]

mod rig;

use std::time::Duration;

use kommutator_email::{mime, smtp, Email};
use kommutator_sdk::{
    Attachment, Connector, ConnectorContext, ConnectorError, DeliveryState, IdentityKind,
    InboundEvent, InboundKind, InboundMessage, OutboundMessage, PartyIdentity, TestHarness,
};
use rig::{MailRig, CUSTOMER, SUPPORT};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn config(rig: &MailRig, password: &str) -> kommutator_email::Config {
    serde_json::from_value(config_json(rig, password)).unwrap()
}

fn config_json(rig: &MailRig, password: &str) -> serde_json::Value {
    json!({
        "address": SUPPORT,
        "display_name": "Example support",
        "imap": {
            "host": "127.0.0.1", "port": rig.imap_port(), "tls": "none",
            "username": SUPPORT, "password": password,
        },
        "smtp": {"host": "127.0.0.1", "port": rig.smtp_port(), "tls": "none"},
    })
}

fn start(
    cfg: kommutator_email::Config,
    ctx: ConnectorContext,
) -> tokio::task::JoinHandle<Result<(), ConnectorError>> {
    let email = Email::new(cfg).unwrap();
    tokio::spawn(email.run(ctx))
}

async fn next(hub: &mut TestHarness, rig: &MailRig) -> InboundEvent {
    match hub.next_event(WAIT).await {
        Some(ev) => ev,
        None => panic!("no event within {WAIT:?}\n{}", rig.logs()),
    }
}

fn message(ev: &InboundEvent) -> &InboundMessage {
    match &ev.kind {
        InboundKind::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The unfolded value of header `name` in a raw mail.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn mail(from: &str, subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nDate: Fri, 03 May 2024 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn mail_in_reply_out_threading_bounce_and_restart() {
    let Some(rig) = MailRig::start() else { return };
    // Delivered before the first start: imported by the first-start scan.
    rig.deliver(include_bytes!("fixtures/session-order.eml"), SUPPORT)
        .await;

    let (ctx, mut hub) = ConnectorContext::for_test("mail");
    let task = start(config(&rig, "pass"), ctx);

    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "order42.1@customer.example.test");
    let m = message(&ev);
    let thread = m.thread_id.clone();
    assert_eq!(thread, "order42.1@customer.example.test");
    assert_eq!(m.subject.as_deref(), Some("Order 42"));
    assert!(m.text.as_deref().unwrap().contains("price list"), "{m:?}");
    assert_eq!(
        m.sender.identities,
        [PartyIdentity::new(IdentityKind::Email, CUSTOMER)]
    );
    assert_eq!(m.sender.display_name.as_deref(), Some("Ivan Petrov"));
    assert_eq!(m.attachments.len(), 1, "{m:?}");
    assert_eq!(m.attachments[0].name, "prices.pdf");
    let stored = hub.files().files();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].content.starts_with(b"%PDF-1.4"));
    let raw = ev.raw.clone().unwrap();
    assert_eq!(raw["mailbox"], "INBOX");
    assert_eq!(raw["uid"], 1);
    assert_eq!(raw["message_id"], "order42.1@customer.example.test");
    assert!(
        !raw.to_string().contains("price list"),
        "raw holds no body: {raw}"
    );
    assert_eq!(
        ev.occurred_at,
        time::macros::datetime!(2024-05-01 09:00:00 UTC)
    );

    // Delivered while the connector IDLEs.
    rig.deliver(
        &mail(
            "Ivan Petrov <customer@example.test>",
            "Re: Order 42",
            "order42.2@customer.example.test",
            "In-Reply-To: <order42.1@customer.example.test>\r\n",
            "And a sofa, please.",
        ),
        SUPPORT,
    )
    .await;
    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "order42.2@customer.example.test");
    let m = message(&ev);
    assert_eq!(m.thread_id, thread);
    assert_eq!(
        m.reply_to_external_id.as_deref(),
        Some("order42.1@customer.example.test")
    );

    // Our reply, with the stored attachment.
    hub.send_outbound(OutboundMessage {
        id: 9,
        connector_id: "mail".into(),
        thread_id: thread.clone(),
        to: None,
        subject: None,
        text: Some("Here is the price list.".to_owned()),
        attachments: vec![Attachment {
            name: "prices.pdf".to_owned(),
            mime_type: "application/pdf".to_owned(),
            size: None,
            url_or_ref: "memory:1".to_owned(),
        }],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let ack = next(&mut hub, &rig).await;
    let our_id = smtp::message_id("mail", 9, &thread, "example.test");
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 9,
            external_id: our_id.clone()
        }
    );
    let sent = rig.wait_for(CUSTOMER, "INBOX", &our_id, WAIT).await;
    let token = mime::thread_token(&thread);
    assert_eq!(header(&sent, "Message-ID"), Some(format!("<{our_id}>")));
    assert_eq!(
        header(&sent, "In-Reply-To").as_deref(),
        Some("<order42.2@customer.example.test>")
    );
    let refs = header(&sent, "References").unwrap();
    assert!(
        refs.contains("<order42.1@customer.example.test>")
            && refs.ends_with("<order42.2@customer.example.test>"),
        "{refs}"
    );
    assert_eq!(
        header(&sent, "Subject"),
        Some(format!("Re: Order 42 [{token}]"))
    );
    assert!(String::from_utf8_lossy(&sent).contains("prices.pdf"));
    let copy = rig.wait_for(SUPPORT, "Sent", &our_id, WAIT).await;
    assert_eq!(header(&copy, "Message-ID"), Some(format!("<{our_id}>")));

    // The customer answers our mail with proper headers.
    rig.deliver(
        &mail(
            "Ivan Petrov <customer@example.test>",
            &format!("Re: Order 42 [{token}]"),
            "order42.3@customer.example.test",
            &format!(
                "In-Reply-To: <{our_id}>\r\nReferences: <order42.1@customer.example.test> <{our_id}>\r\n"
            ),
            "Thanks!",
        ),
        SUPPORT,
    )
    .await;
    let ev = next(&mut hub, &rig).await;
    assert_eq!(message(&ev).thread_id, thread);

    // Broken References, another address and subject: the token still finds the thread.
    rig.deliver(
        &mail(
            "ivan.home@example.org",
            &format!("Fwd: prices [{token}]"),
            "order42.4@example.org",
            "References: <lost@nowhere.example>\r\n",
            "From my home address.",
        ),
        SUPPORT,
    )
    .await;
    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "order42.4@example.org");
    assert_eq!(message(&ev).thread_id, thread);

    // A bounce of our mail becomes a failed delivery status of it.
    let dsn = format!(
        "From: Mail Delivery System <MAILER-DAEMON@example.test>\r\nTo: {SUPPORT}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nDate: Fri, 03 May 2024 11:00:00 +0000\r\n\
         Message-ID: <dsn.1@mx.example.test>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"r1\"\r\n\r\n\
         --r1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --r1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n\
         Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n\
         --r1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {SUPPORT}\r\nTo: {CUSTOMER}\r\n\
         Subject: Re: Order 42\r\nMessage-ID: <{our_id}>\r\n\r\n--r1--\r\n"
    );
    rig.deliver(dsn.as_bytes(), SUPPORT).await;
    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, format!("{our_id}:failed"));
    match &ev.kind {
        InboundKind::DeliveryStatus {
            message_external_id,
            status: DeliveryState::Failed { reason },
        } => {
            assert_eq!(message_external_id, &our_id);
            assert!(reason.contains("5.1.1"), "{reason}");
        }
        other => panic!("expected a failed delivery status, got {other:?}"),
    }

    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns on shutdown")
        .unwrap()
        .unwrap();

    // Restart with the same state: nothing is imported again, threads are remembered.
    let (ctx, mut hub2) = ConnectorContext::for_test("mail");
    let ctx = ctx.with_state(hub.state().clone());
    let task = start(config(&rig, "pass"), ctx);
    rig.deliver(
        &mail(
            "Ivan Petrov <customer@example.test>",
            &format!("Re: Order 42 [{token}]"),
            "order42.6@customer.example.test",
            &format!("In-Reply-To: <{our_id}>\r\n"),
            "One more thing.",
        ),
        SUPPORT,
    )
    .await;
    let ev = next(&mut hub2, &rig).await;
    assert_eq!(ev.external_id, "order42.6@customer.example.test");
    assert_eq!(message(&ev).thread_id, thread);
    assert_eq!(hub2.try_next_event(), None);
    hub2.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn charsets_big_attachments_auto_replies_and_smtp_refusals() {
    let Some(rig) = MailRig::start() else { return };
    rig.deliver(include_bytes!("fixtures/session-koi8r.eml"), SUPPORT)
        .await;
    let big: Vec<u8> = (0..5 * 1024 * 1024_u32)
        .map(|i| u8::try_from(i.wrapping_mul(31) % 251).unwrap())
        .collect();
    let big_mail = lettre::Message::builder()
        .from("customer@example.test".parse().unwrap())
        .to(SUPPORT.parse().unwrap())
        .subject("Drawings")
        .message_id(Some("<big.1@customer.example.test>".to_owned()))
        .multipart(
            lettre::message::MultiPart::mixed()
                .singlepart(lettre::message::SinglePart::plain(
                    "The drawings are attached.".to_owned(),
                ))
                .singlepart(
                    lettre::message::Attachment::new("drawings.bin".to_owned()).body(
                        big.clone(),
                        lettre::message::header::ContentType::parse("application/octet-stream")
                            .unwrap(),
                    ),
                ),
        )
        .unwrap();
    rig.deliver(&big_mail.formatted(), SUPPORT).await;
    rig.deliver(include_bytes!("fixtures/session-autoreply.eml"), SUPPORT)
        .await;
    rig.deliver(include_bytes!("fixtures/session-form.eml"), SUPPORT)
        .await;

    let mut cfg = config_json(&rig, "pass");
    cfg["form_templates"] = json!([{
        "name": "site",
        "from": "*@site.example.test",
        "subject": "Новая заявка",
        "fields": {
            "name": r"(?m)^Имя:\s*(.+)$",
            "phone": r"(?m)^Телефон:\s*(.+)$",
            "email": r"(?m)^E-mail:\s*(.+)$",
            "message": r"(?s)Сообщение:\s*(.+)",
            "utm_source": r"(?m)^utm_source:\s*(.+)$",
            "utm_campaign": r"(?m)^utm_campaign:\s*(.+)$",
        },
    }]);
    let (ctx, mut hub) = ConnectorContext::for_test("mail");
    let task = start(serde_json::from_value(cfg).unwrap(), ctx);

    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "koi8.1@example.org");
    let m = message(&ev);
    assert_eq!(m.subject.as_deref(), Some("Заказ дивана"));
    assert!(
        m.text.as_deref().unwrap().contains("Хочу заказать диван"),
        "{m:?}"
    );
    assert_eq!(m.sender.display_name.as_deref(), Some("Пётр"));

    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "big.1@customer.example.test");
    let m = message(&ev);
    assert_eq!(m.attachments.len(), 1, "{m:?}");
    assert_eq!(m.attachments[0].size, Some(big.len() as u64));
    let stored = hub.files().files();
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].content == big,
        "the 5 MB attachment is stored intact"
    );

    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "auto.1@customer.example.test");
    assert!(
        matches!(ev.kind, InboundKind::Unknown { .. }),
        "an auto-reply is not a message: {:?}",
        ev.kind
    );

    // A site form: a message from the person in it, in a new thread.
    let ev = next(&mut hub, &rig).await;
    assert_eq!(ev.external_id, "form.1@site.example.test");
    let m = message(&ev);
    assert_eq!(m.thread_id, "form.1@site.example.test");
    assert_eq!(m.subject.as_deref(), Some("Site form: site"));
    assert_eq!(
        m.sender.identities,
        [
            PartyIdentity::new(IdentityKind::Phone, "+7 (912) 345-67-89"),
            PartyIdentity::new(IdentityKind::Email, "maria@example.test"),
        ]
    );
    assert_eq!(m.sender.display_name.as_deref(), Some("Мария Сидорова"));
    let text = m.text.as_deref().unwrap();
    assert!(text.starts_with("Перезвоните после 18:00"), "{text}");
    assert!(text.contains("Phone: +7 (912) 345-67-89"), "{text}");
    let raw = ev.raw.clone().unwrap();
    assert_eq!(raw["form"]["phone"], "+7 (912) 345-67-89");
    assert_eq!(
        raw["traffic_source"],
        json!({"utm_source": "yandex", "utm_campaign": "spring"})
    );

    // Our answer goes to the person of the form, who has no mailbox here: Postfix
    // accepts it, Dovecot's LMTP refuses it, and Postfix's real bounce comes back as a
    // failed delivery status of our mail.
    hub.send_outbound(OutboundMessage {
        id: 3,
        connector_id: "mail".into(),
        thread_id: "form.1@site.example.test".to_owned(),
        to: None,
        subject: None,
        text: Some("We will call you at 18:00.".to_owned()),
        attachments: vec![],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let form_reply = smtp::message_id("mail", 3, "form.1@site.example.test", "example.test");
    let ev = next(&mut hub, &rig).await;
    assert_eq!(
        ev.kind,
        InboundKind::OutboundAck {
            message_id: 3,
            external_id: form_reply.clone()
        }
    );
    let ev = next(&mut hub, &rig).await;
    match &ev.kind {
        InboundKind::DeliveryStatus {
            message_external_id,
            status: DeliveryState::Failed { reason },
        } => {
            assert_eq!(message_external_id, &form_reply);
            assert!(reason.contains("5.1.1"), "{reason}");
        }
        other => panic!("expected the bounce of our reply, got {other:?}"),
    }

    // A recipient Postfix will not relay to: 554, reported as failed, not retried.
    hub.send_outbound(OutboundMessage {
        id: 1,
        connector_id: "mail".into(),
        thread_id: "new-1".to_owned(),
        to: Some(PartyIdentity::new(
            IdentityKind::Email,
            "someone@elsewhere.example",
        )),
        subject: Some("Offer".to_owned()),
        text: Some("Hello".to_owned()),
        attachments: vec![],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let ev = next(&mut hub, &rig).await;
    match &ev.kind {
        InboundKind::OutboundFailed { message_id, reason } => {
            assert_eq!(*message_id, 1);
            assert!(reason.contains("Relay access denied"), "{reason}");
        }
        other => panic!("expected outbound_failed, got {other:?}"),
    }

    // A conversation the hub starts: `to` and `subject` are used, with our token.
    hub.send_outbound(OutboundMessage {
        id: 2,
        connector_id: "mail".into(),
        thread_id: "new-2".to_owned(),
        to: Some(PartyIdentity::new(IdentityKind::Email, CUSTOMER)),
        subject: Some("Your offer".to_owned()),
        text: Some("Please find our offer below.".to_owned()),
        attachments: vec![],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let ev = next(&mut hub, &rig).await;
    let our_id = smtp::message_id("mail", 2, "new-2", "example.test");
    assert_eq!(
        ev.kind,
        InboundKind::OutboundAck {
            message_id: 2,
            external_id: our_id.clone()
        }
    );
    let sent = rig.wait_for(CUSTOMER, "INBOX", &our_id, WAIT).await;
    assert_eq!(
        header(&sent, "Subject"),
        Some(format!("Your offer [{}]", mime::thread_token("new-2")))
    );
    assert_eq!(header(&sent, "In-Reply-To"), None);

    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let Some(rig) = MailRig::start() else { return };
    let (ctx, _hub) = ConnectorContext::for_test("mail");
    let task = start(config(&rig, "wrong"), ctx);
    let res = tokio::time::timeout(WAIT, task)
        .await
        .expect("run ends by itself")
        .unwrap();
    match res {
        Err(e @ ConnectorError::Auth(_)) => {
            assert!(!e.is_retryable());
            assert!(!e.to_string().contains("wrong"), "no password in {e}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
}

/// A loopback SMTP peer that answers `MAIL FROM` with 451 on its first connection and
/// accepts on the next; returns the DATA it received.
async fn flaky_smtp(listener: tokio::net::TcpListener) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut connection = 0;
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        connection += 1;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 flaky.example.test ESMTP\r\n")
            .await
            .unwrap();
        let mut data = String::new();
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            if in_data {
                if line == ".\r\n" {
                    w.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                    in_data = false;
                } else {
                    data.push_str(&line);
                }
                continue;
            }
            let cmd = line.to_ascii_uppercase();
            let answer: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                b"250 flaky.example.test\r\n"
            } else if cmd.starts_with("MAIL") && connection == 1 {
                b"451 4.3.0 try again later\r\n"
            } else if cmd.starts_with("DATA") {
                in_data = true;
                b"354 go ahead\r\n"
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").await.unwrap();
                break;
            } else if cmd.starts_with("RSET") || cmd.starts_with("MAIL") || cmd.starts_with("RCPT")
            {
                b"250 ok\r\n"
            } else {
                b"502 unknown\r\n"
            };
            w.write_all(answer).await.unwrap();
        }
        if !data.is_empty() {
            return data;
        }
    }
}

#[tokio::test]
async fn a_transient_smtp_failure_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = listener.local_addr().unwrap().port();
    let peer = tokio::spawn(flaky_smtp(listener));
    // No IMAP server: its task keeps reconnecting while outbound works.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imap_port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg: kommutator_email::Config = serde_json::from_value(json!({
        "address": SUPPORT,
        "imap": {"host": "127.0.0.1", "port": imap_port, "tls": "none",
                 "username": SUPPORT, "password": "pass", "sent_mailbox": ""},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none"},
    }))
    .unwrap();
    let (ctx, mut hub) = ConnectorContext::for_test("mail");
    let task = start(cfg, ctx);
    hub.send_outbound(OutboundMessage {
        id: 5,
        connector_id: "mail".into(),
        thread_id: "t-5".to_owned(),
        to: Some(PartyIdentity::new(IdentityKind::Email, CUSTOMER)),
        subject: Some("Hello".to_owned()),
        text: Some("Second time lucky.".to_owned()),
        attachments: vec![],
        reply_to_external_id: None,
    })
    .await
    .unwrap();
    let ev = hub.next_event(WAIT).await.expect("an ack after the retry");
    let our_id = smtp::message_id("mail", 5, "t-5", "example.test");
    assert_eq!(
        ev.kind,
        InboundKind::OutboundAck {
            message_id: 5,
            external_id: our_id.clone()
        }
    );
    let data = tokio::time::timeout(WAIT, peer).await.unwrap().unwrap();
    assert!(data.contains(&format!("Message-ID: <{our_id}>")), "{data}");
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns on shutdown")
        .unwrap()
        .unwrap();
}
