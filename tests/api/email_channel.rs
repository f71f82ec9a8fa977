//! Email through the whole hub against real servers: a private Dovecot (IMAP with IDLE,
//! LMTP) and Postfix (SMTP), from the email connector's rig. A mail delivered to the
//! support mailbox reaches the operator's socket; the operator's reply reaches the
//! customer's mailbox with the threading headers their client needs; the customer's reply
//! lands in the same dialog; an auto-reply is no new inquiry; a restart of the hub imports
//! nothing twice. Skipped (with a note) where Dovecot and Postfix are not installed, never
//! in CI.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kommutator::domain::*;
use kommutator::storage::Store;
use serde_json::{json, Value};

use crate::channels_e2e::with_connector;
use crate::helpers::*;
use crate::ws_client::*;

#[path = "../../connectors/email/tests/rig/mod.rs"]
pub mod rig;

pub const SUPPORT: &str = "support@example.test";
const CUSTOMER: &str = "customer@example.test";

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

fn mail(subject: &str, id: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Ivan Petrov <{CUSTOMER}>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A mail with a PDF attached.
fn mail_with_pdf(subject: &str, id: &str, body: &str, pdf: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pdf);
    format!(
        "From: Ivan Petrov <{CUSTOMER}>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"drawing.pdf\"\r\nContent-Disposition: attachment; filename=\"drawing.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n"
    )
    .into_bytes()
}

pub fn mail_config(rig: &rig::MailRig) -> String {
    format!(
        r#"type = "email"
department = "Sales"
address = "{SUPPORT}"
display_name = "Shop support"
[imap]
host = "127.0.0.1"
port = {}
tls = "none"
username = "{SUPPORT}"
password = "pass"
[smtp]
host = "127.0.0.1"
port = {}
tls = "none""#,
        rig.imap_port(),
        rig.smtp_port()
    )
}

/// The messages of a dialog, oldest first.
async fn messages(store: &Arc<dyn Store>, dialog: i64) -> Vec<Message> {
    store
        .list_messages(&Actor::System, dialog, 200, None)
        .await
        .expect("messages")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_in_reply_out_threaded_both_ways_and_a_restart_imports_nothing_twice() {
    let Some(rig) = rig::MailRig::start() else {
        return;
    };
    let url = Arc::new(Mutex::new(String::new()));
    let seen_url = url.clone();
    let add_mail = with_connector("mail", mail_config(&rig));
    let app = spawn_app_with(move |c| {
        *seen_url.lock().expect("lock") = c.database.url.clone();
        add_mail(c);
    })
    .await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("dept:{sales}"), Some(app.last_seq().await))
        .await;

    // 1. A mail with an attachment arrives while the connector IDLEs.
    let pdf = b"%PDF-1.4\n% a drawing of the sofa\n".repeat(40);
    rig.deliver(
        &mail_with_pdf(
            "Sofa order",
            "c1@example.test",
            "I want to order the green sofa.",
            &pdf,
        ),
        SUPPORT,
    )
    .await;
    let ev = ws
        .event_where(|e| {
            e["entity"] == "message"
                && e["data"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("green sofa"))
        })
        .await;
    let m = &ev["data"];
    assert_eq!(m["subject"], "Sofa order", "{m}");
    let dialog = m["dialog_id"].as_i64().expect("dialog");
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(d["channel"], "email");
    assert_eq!(d["subject"], "Sofa order");
    let a = &m["attachments"][0];
    assert_eq!(a["name"], "drawing.pdf", "{m}");
    let file = app
        .http
        .get(format!("{}{}", app.base, a["url"].as_str().expect("url")))
        .bearer_auth(&anna.token)
        .send()
        .await
        .expect("file");
    assert_eq!(
        file.bytes().await.expect("bytes").to_vec(),
        pdf,
        "the attachment is stored whole"
    );

    // 2. The operator answers; the customer's mailbox gets it, threaded.
    let (status, r) = app
        .post(
            Some(&anna),
            &format!("/api/v1/dialogs/{dialog}/messages"),
            &json!({"external_id": "r-1", "body": "We have it in stock."}),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{r}");
    let got = rig
        .wait_for(
            CUSTOMER,
            "INBOX",
            "We have it in stock.",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        header(&got, "In-Reply-To").as_deref(),
        Some("<c1@example.test>")
    );
    assert!(header(&got, "References").is_some_and(|r| r.contains("<c1@example.test>")));
    let subject = header(&got, "Subject").expect("subject");
    assert!(subject.starts_with("Re: Sofa order [K-"), "{subject}");
    let ours = header(&got, "Message-ID").expect("our Message-ID");
    let id = r["id"].as_i64().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = messages(&app.store, dialog)
            .await
            .into_iter()
            .find(|x| x.id == id)
            .expect("reply");
        if sent.delivery_status == DeliveryStatus::Sent {
            assert_eq!(
                format!(
                    "<{}>",
                    sent.provider_message_id.as_deref().unwrap_or_default()
                ),
                ours
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reply was not acked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The copy in Sent.
    rig.wait_for(
        SUPPORT,
        "Sent",
        "We have it in stock.",
        Duration::from_secs(10),
    )
    .await;

    // 3. The customer answers: same dialog. A reply from a client that dropped References
    //    (Outlook) finds it by the token in the subject.
    rig.deliver(
        &mail(
            "Re: Sofa order",
            "c2@example.test",
            &format!("In-Reply-To: {ours}\r\nReferences: <c1@example.test> {ours}\r\n"),
            "Great, I will come on Monday.",
        ),
        SUPPORT,
    )
    .await;
    let ev = ws
        .event_where(|e| {
            e["entity"] == "message"
                && e["data"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("Monday"))
        })
        .await;
    assert_eq!(
        ev["data"]["dialog_id"], dialog,
        "the reply is in the same dialog"
    );
    rig.deliver(
        &mail(
            &subject,
            "c3@example.test",
            "",
            "One more question: is delivery free?",
        ),
        SUPPORT,
    )
    .await;
    let ev = ws
        .event_where(|e| {
            e["entity"] == "message"
                && e["data"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("delivery free"))
        })
        .await;
    assert_eq!(
        ev["data"]["dialog_id"], dialog,
        "found by the token in the subject"
    );

    // 4. An auto-reply is no new inquiry: no message, no dialog.
    let dialogs_before = app.get(Some(&app.admin), "/api/v1/dialogs").await.1["items"]
        .as_array()
        .map(Vec::len);
    rig.deliver(
        &mail(
            "Automatic reply: Sofa order",
            "auto1@example.test",
            "Auto-Submitted: auto-replied\r\n",
            "I am on vacation until Monday.",
        ),
        SUPPORT,
    )
    .await;
    // A mail after it shows the connector has read past it.
    rig.deliver(
        &mail(
            "Another question",
            "c4@example.test",
            "",
            "Do you sell armchairs?",
        ),
        SUPPORT,
    )
    .await;
    ws.event_where(|e| {
        e["entity"] == "message"
            && e["data"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("armchairs"))
    })
    .await;
    let all: Vec<Value> = app.get(Some(&app.admin), "/api/v1/dialogs").await.1["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        all.len(),
        dialogs_before.unwrap_or(0) + 1,
        "only the armchair question opened a dialog"
    );
    let n_messages = messages(&app.store, dialog).await.len();
    assert_eq!(
        n_messages, 4,
        "three from the customer and our reply; no auto-reply"
    );

    // 5. A restart: a new hub on the same database imports nothing again.
    let store = app.store.clone();
    drop(ws);
    drop(app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = url.lock().expect("lock").clone();
    let mut config = kommutator::config::Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.database.url = db;
    with_connector("mail", mail_config(&rig))(&mut config);
    let second = kommutator::startup::App::with_store(config, store.clone())
        .await
        .expect("second hub");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(second.run_until_stopped(async move {
        let _ = rx.await;
    }));
    rig.deliver(
        &mail(
            "After the restart",
            "c5@example.test",
            "",
            "Are you open on Sunday?",
        ),
        SUPPORT,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store
        .dialog_by_thread("mail", "c5@example.test")
        .await
        .expect("read")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second hub did not read new mail\n{}",
            rig.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        messages(&store, dialog).await.len(),
        n_messages,
        "nothing imported twice"
    );
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;
}
