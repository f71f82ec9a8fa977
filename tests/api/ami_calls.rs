//! Asterisk through AMI, in the hub: a fake Asterisk on loopback (speaking the byte streams
//! of `connectors/asterisk-ami/tests/fixtures`) logs the hub's connector in, plays an
//! inbound call that rings extension 101 (the operator sees it before the answer), then
//! takes the operator's click-to-call: the `Originate` carries our call id as its channel
//! id, and the PBX's events for it update the call the console already shows.

use std::collections::HashMap;
use std::time::Duration;

use kommutator::domain::Role;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;
use crate::ws_client::*;

pub(crate) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/connectors/asterisk-ami/tests/fixtures/{name}.ami",
        env!("CARGO_MANIFEST_DIR")
    );
    String::from_utf8(std::fs::read(&path).expect("fixture")).expect("utf-8")
}

/// What follows `marker` (and its blank line) in a fixture: the events of the call.
pub(crate) fn after(text: &str, marker: &str) -> String {
    let at = text.find(marker).expect("marker") + marker.len();
    let rest = &text[at..];
    let end = rest.find("\r\n\r\n").expect("block end") + 4;
    rest[end..].to_owned()
}

/// The hub's config with an `asterisk_ami` instance `office_pbx` (department "Sales")
/// connecting to a fake Asterisk on `port`.
pub(crate) fn with_ami(port: u16) -> impl FnOnce(&mut kommutator::config::Config) {
    move |c| {
        let inst: kommutator::config::ConnectorConfig = toml::from_str(&format!(
            "type = \"asterisk_ami\"\ndepartment = \"Sales\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             username = \"crmhub\"\nsecret = \"ami-secret-for-tests\"\ndefault_country_code = \"7\"\n"
        ))
        .expect("config");
        c.connectors.insert("office_pbx".into(), inst);
    }
}

pub(crate) struct FakeAsterisk {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl FakeAsterisk {
    pub(crate) async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("the hub's connector connects")
            .expect("accept");
        let (r, w) = TcpStream::into_split(stream);
        let mut me = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        me.write("Asterisk Call Manager/7.0.3\r\n").await;
        me
    }

    pub(crate) async fn write(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.expect("write");
    }

    /// The next action, answering pings on the way.
    pub(crate) async fn action(&mut self) -> HashMap<String, String> {
        loop {
            let mut fields = HashMap::new();
            loop {
                let mut line = String::new();
                let n =
                    tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                        .await
                        .expect("an action in time")
                        .expect("read");
                assert!(n > 0, "the connector hung up");
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    fields.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
            if fields.is_empty() {
                continue;
            }
            if fields.get("Action").map(String::as_str) == Some("Ping") {
                let id = fields.get("ActionID").cloned().unwrap_or_default();
                self.write(&format!(
                    "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n"
                ))
                .await;
                continue;
            }
            return fields;
        }
    }

    pub(crate) async fn respond(&mut self, action: &HashMap<String, String>, extra: &str) {
        let id = action.get("ActionID").cloned().unwrap_or_default();
        self.write(&format!(
            "Response: Success\r\nActionID: {id}\r\n{extra}\r\n"
        ))
        .await;
    }

    pub(crate) async fn login(&mut self) {
        let a = self.action().await;
        assert_eq!(a["Action"], "Challenge");
        self.respond(&a, "Challenge: 840716384\r\n").await;
        let a = self.action().await;
        assert_eq!(a["Action"], "Login");
        assert_eq!(a["Username"], "crmhub");
        assert!(!a.contains_key("Secret"), "MD5: the secret stays home");
        self.respond(&a, "Message: Authentication accepted\r\n")
            .await;
        self.write("Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
            .await;
        let a = self.action().await;
        assert_eq!(a["Action"], "CoreShowChannels");
        let id = a["ActionID"].clone();
        self.respond(&a, "EventList: start\r\nMessage: Channels will follow\r\n")
            .await;
        self.write(&format!(
            "Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
        ))
        .await;
    }
}

#[tokio::test]
async fn an_asterisk_call_pops_up_and_click_to_call_goes_through_the_pbx() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let app = spawn_app_with(with_ami(port)).await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;

    let mut pbx = FakeAsterisk::accept(&listener).await;
    pbx.login().await;

    // An inbound call rings 101, is answered, and ends.
    let inbound = fixture("inbound_answered");
    pbx.write(&after(&inbound, "ListItems: 0")).await;
    let ringing = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["operator_id"] == anna.id)
        .await;
    assert_eq!(ringing["data"]["from_number"], "+79161234567", "{ringing}");
    assert_eq!(ringing["data"]["direction"], "inbound");
    let done = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["status"] == "completed")
        .await;
    assert_eq!(done["data"]["duration_secs"], 93, "{done}");

    // Click-to-call: the hub answers at once, the PBX gets the Originate with our id.
    let (status, call) = app
        .post(
            Some(&anna),
            "/api/v1/calls/originate",
            &json!({"to": "8 916 123-45-67"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{call}");
    let our_id = call["external_id"].as_str().expect("id").to_owned();
    assert_eq!(call["status"], "ringing");
    assert_eq!(call["to_number"], "+79161234567");
    let originate = pbx.action().await;
    assert_eq!(originate["Action"], "Originate", "{originate:?}");
    assert_eq!(originate["ChannelId"], our_id);
    assert_eq!(originate["Channel"], "PJSIP/101");
    let c2c = fixture("click_to_call_ok");
    let events = after(&c2c, "Message: Originate successfully queued");
    pbx.respond(&originate, "Message: Originate successfully queued\r\n")
        .await;
    pbx.write(
        &events
            .replace("kommutator-7", &originate["ActionID"])
            .replace("crm-c2c-0001", &our_id),
    )
    .await;
    let done = ws
        .event_where(|e| {
            e["entity"] == "call"
                && e["data"]["external_id"] == our_id.as_str()
                && e["data"]["status"] == "completed"
        })
        .await;
    assert_eq!(done["data"]["id"], call["id"], "the same call: {done}");
    assert_eq!(done["data"]["operator_id"], anna.id);

    // Two calls on record: the inbound one and the click-to-call.
    let (_, page) = app.get(Some(&app.admin), "/api/v1/calls?limit=50").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    let (_, conns) = app.get(Some(&app.admin), "/api/v1/connectors").await;
    assert!(conns.to_string().contains("asterisk_ami"), "{conns}");
}
