//! SCRAM-SHA-256 re-authentication through the real binary, including the failure case, driven with
//! the raw test client and `cicada-scram`'s client side. MQTT.js covers success too (`mqttjs.rs`),
//! but only through its internal packet writer: no third-party client here has a re-authentication
//! API (paho-mqtt, mosquitto and rumqttc 0.24/0.25 have no AUTH flow at all).

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{Auth, Packet, ProtocolVersion, ReasonCode};
use cicada_scram::{ClientAwaitingServerFirst, CredentialsFile, StoredCredentials};
use support::{connect_packet, Broker, Raw};

const METHOD: &str = "SCRAM-SHA-256";

fn auth(reason: ReasonCode, data: String) -> Packet {
    let mut a = Auth {
        reason,
        properties: Default::default(),
    };
    a.properties.authentication_method = Some(METHOD.into());
    a.properties.authentication_data = Some(Bytes::from(data));
    Packet::Auth(a)
}

/// The AUTH 0x18 challenge's data.
fn challenge(packet: Option<Packet>) -> Bytes {
    match packet {
        Some(Packet::Auth(a)) if a.reason == ReasonCode::ContinueAuthentication => a
            .properties
            .authentication_data
            .expect("server-first in the challenge"),
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// Runs one exchange after `first` went out; returns the server's last packet.
fn answer(
    raw: &mut Raw,
    client: ClientAwaitingServerFirst,
) -> (Packet, cicada_scram::ClientAwaitingServerFinal) {
    let server_first = challenge(raw.recv());
    let (client, last) = client.respond(&server_first).expect("valid server-first");
    raw.send(&auth(ReasonCode::ContinueAuthentication, last));
    (raw.recv().expect("the server's verdict"), client)
}

#[test]
fn scram_connect_then_reauthenticate_and_failed_or_other_user_reauthentication_disconnects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = StoredCredentials::derive(
        "pencil",
        b"0123456789abcdef",
        NonZeroU32::new(4096).expect("non-zero"),
    );
    let file = dir.path().join("users.scram");
    let lines = format!(
        "{}\n{}\n",
        CredentialsFile::line("alice", &creds),
        CredentialsFile::line("bob", &creds)
    );
    std::fs::write(&file, lines).expect("write");
    let config = dir.path().join("cicada.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nscram_credentials = {:?}\n",
            file.display().to_string()
        ),
    )
    .expect("write");
    let broker = Broker::start(&["--config", config.to_str().expect("utf-8")]);

    let mut raw = Raw::connect(broker.port, ProtocolVersion::V5);
    let (client, first) = ClientAwaitingServerFirst::start("alice", "pencil", "nonce-one");
    let mut connect = connect_packet("scram-raw", ProtocolVersion::V5, 30);
    connect.properties.authentication_method = Some(METHOD.into());
    connect.properties.authentication_data = Some(Bytes::from(first));
    raw.send(&Packet::Connect(Box::new(connect)));
    let (verdict, client) = answer(&mut raw, client);
    let Packet::ConnAck(ack) = verdict else {
        panic!("expected CONNACK, got {verdict:?}");
    };
    assert_eq!(ack.reason, ReasonCode::Success);
    let server_final = ack.properties.authentication_data.expect("server-final");
    client
        .verify(&server_final)
        .expect("the broker knows alice's verifier");

    // Re-authenticate: AUTH 0x19 with a new client-first; the answer is AUTH 0x00 with server-final.
    let (client, first) = ClientAwaitingServerFirst::start("alice", "pencil", "nonce-two");
    raw.send(&auth(ReasonCode::ReAuthenticate, first));
    let (verdict, client) = answer(&mut raw, client);
    let Packet::Auth(done) = verdict else {
        panic!("expected AUTH 0x00, got {verdict:?}");
    };
    assert_eq!(done.reason, ReasonCode::Success);
    client
        .verify(&done.properties.authentication_data.expect("server-final"))
        .expect("signature");
    raw.send(&Packet::PingReq);
    assert_eq!(raw.recv(), Some(Packet::PingResp), "still connected");

    // A re-authentication with a wrong password ends the connection with 0x87.
    let (client, first) = ClientAwaitingServerFirst::start("alice", "eraser", "nonce-three");
    raw.send(&auth(ReasonCode::ReAuthenticate, first));
    let (verdict, _) = answer(&mut raw, client);
    match verdict {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(raw.recv(), None, "closed");

    // Re-authentication must prove the same user: bob's valid proof on alice's connection is refused.
    let mut raw = Raw::connect(broker.port, ProtocolVersion::V5);
    let (client, first) = ClientAwaitingServerFirst::start("alice", "pencil", "nonce-four");
    let mut connect = connect_packet("scram-switch", ProtocolVersion::V5, 30);
    connect.properties.authentication_method = Some(METHOD.into());
    connect.properties.authentication_data = Some(Bytes::from(first));
    raw.send(&Packet::Connect(Box::new(connect)));
    let (verdict, _) = answer(&mut raw, client);
    assert!(matches!(verdict, Packet::ConnAck(a) if a.reason == ReasonCode::Success));
    let (client, first) = ClientAwaitingServerFirst::start("bob", "pencil", "nonce-five");
    raw.send(&auth(ReasonCode::ReAuthenticate, first));
    let (verdict, _) = answer(&mut raw, client);
    match verdict {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::NotAuthorized),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}
