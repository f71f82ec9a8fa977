//! SIP seen through HEP, in the hub: the HEPv3 packets Kamailio mirrored for real baresip
//! calls (captured by the HEP connector's rig, `connectors/hep/tests/fixtures/captured`)
//! sent over UDP to the hub's collector, twice each, reach the operator whose extension
//! rang as one call, in its states. The live rig itself (Kamailio + baresip placing the
//! calls) runs in `connectors/hep/tests/kamailio_rig.rs`.

use std::time::Duration;

use kommutator::domain::Role;
use serde_json::Value;

use crate::helpers::*;
use crate::ws_client::*;

/// The packets of a capture file: HEPv3 back to back, each carrying its length.
fn packets(name: &str) -> Vec<Vec<u8>> {
    let path = format!(
        "{}/connectors/hep/tests/fixtures/captured/{name}.hep",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).expect("capture");
    let mut out = Vec::new();
    let mut at = 0;
    while at + 6 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"HEP3", "{path} at {at}");
        let len = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
        out.push(bytes[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, bytes.len());
    out
}

#[tokio::test]
async fn calls_mirrored_by_kamailio_reach_the_operator_once() {
    let port = free_port();
    let app = spawn_app_with(move |c| {
        let inst: kommutator::config::ConnectorConfig = toml::from_str(&format!(
            "type = \"hep\"\ndepartment = \"Sales\"\nudp_bind = \"127.0.0.1:{port}\"\ndefault_country_code = \"7\"\n"
        ))
        .expect("config");
        c.connectors.insert("office_sip".into(), inst);
    })
    .await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "2001").await;
    let (mut ws, _) = Ws::operator(&app, &anna).await;
    ws.subscribe(&format!("user:{}", anna.id), Some(app.last_seq().await))
        .await;

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let send_all = |name: &'static str| {
        let sock = &sock;
        async move {
            // Twice, as the proxy's in and out copies and a retransmission would.
            for p in packets(name).iter().chain(packets(name).iter()) {
                sock.send_to(p, ("127.0.0.1", port)).await.expect("send");
            }
        }
    };
    // The collector binds when the connector starts: send until the call shows up.
    let created = loop {
        send_all("answered").await;
        if let Some(v) = ws
            .try_next(Duration::from_secs(1))
            .await
            .filter(|e| e["entity"] == "call")
        {
            break v;
        }
    };
    assert_eq!(created["data"]["operator_id"], anna.id, "{created}");
    assert_eq!(created["data"]["to_number"], "2001");
    let done = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["status"] == "completed")
        .await;
    let call = done["data"]["id"].clone();
    assert!(done["data"]["duration_secs"].as_i64().is_some(), "{done}");

    send_all("cancelled").await;
    let missed = ws
        .event_where(|e| e["entity"] == "call" && e["data"]["status"] == "missed")
        .await;
    assert_eq!(missed["data"]["missed_reason"], "cancelled", "{missed}");
    send_all("rejected").await;
    let busy = ws
        .event_where(|e| {
            e["entity"] == "call"
                && e["data"]["status"] == "missed"
                && e["data"]["missed_reason"] == "busy"
        })
        .await;
    assert_ne!(busy["data"]["id"], missed["data"]["id"]);

    // Resent, the answered call is the same one, still completed: stored once.
    send_all("answered").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, page) = app.get(Some(&app.admin), "/api/v1/calls?limit=50").await;
    let calls: Vec<&Value> = page["items"].as_array().expect("items").iter().collect();
    assert_eq!(calls.len(), 3, "{page}");
    assert!(calls
        .iter()
        .any(|c| c["id"] == call && c["status"] == "completed"));
    let (_, conns) = app.get(Some(&app.admin), "/api/v1/connectors").await;
    assert!(conns.to_string().contains("\"hep\""), "{conns}");
}
