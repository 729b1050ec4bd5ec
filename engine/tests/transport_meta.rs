//! What a transport vouches for (a verified client certificate) reaches the authenticator, and a
//! certificate identity taken as the user name replaces the one the client claims.

use bytes::BytesMut;
use cicada_engine::codec::{Decoded, Decoder, Packet, ProtocolVersion, ReasonCode};
use cicada_engine::sim::Sim;
use cicada_engine::{
    AuthDecision, Authentication, CertIdentity, Config, ConnId, ConnMeta, Engine, Event, Input,
    Instant,
};

fn identity() -> CertIdentity {
    CertIdentity {
        common_name: Some("device-7".into()),
        alt_names: vec!["device-7@example.test".into()],
    }
}

/// Connects with `meta` and CONNECT user name "admin"; returns the Authenticate event's user name
/// and identity, and the CONNACK reason after the authenticator allows it.
fn connect_with(meta: ConnMeta) -> (Option<String>, Option<CertIdentity>, ReasonCode) {
    let config = Config {
        authentication: Authentication::External,
        ..Config::default()
    };
    let mut engine = Engine::new(config, 1).expect("config");
    let conn = ConnId(1);
    engine.handle(Instant::ZERO, Input::Accepted { conn, meta });
    let mut connect = Sim::connect_packet("c1", ProtocolVersion::V5);
    connect.username = Some("admin".into());
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(ProtocolVersion::V5, &mut bytes)
        .expect("encode");
    engine.handle(
        Instant::ZERO,
        Input::Received {
            conn,
            data: bytes.freeze(),
        },
    );
    let (username, identity) = std::iter::from_fn(|| engine.poll_event())
        .find_map(|e| match e {
            Event::Authenticate {
                username, identity, ..
            } => Some((username.map(|u| u.to_string()), identity)),
            _ => None,
        })
        .expect("the authenticator is asked");
    let decision = AuthDecision::Allow;
    engine.handle(Instant::ZERO, Input::AuthDecided { conn, decision });
    let mut out = BytesMut::new();
    while let Some(t) = engine.poll_transmit() {
        out.extend_from_slice(&t.data);
    }
    let mut decoder = Decoder::new(1 << 20);
    decoder.set_version(ProtocolVersion::V5);
    let reason = match decoder.decode(&mut out) {
        Ok(Decoded::Packet(Packet::ConnAck(ack))) => ack.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    (username, identity, reason)
}

#[test]
fn a_certificate_identity_reaches_the_authenticator() {
    let meta = ConnMeta {
        peer: "192.0.2.1:5000".into(),
        listener: "tls://0.0.0.0:8883".into(),
        identity: Some(identity()),
        username: None,
    };
    let (username, identity_seen, reason) = connect_with(meta);
    // Without identity_as_username the client's own user name stands.
    assert_eq!(username.as_deref(), Some("admin"));
    assert_eq!(identity_seen, Some(identity()));
    assert_eq!(reason, ReasonCode::Success);
}

#[test]
fn an_identity_taken_as_user_name_replaces_the_claimed_one() {
    let meta = ConnMeta {
        peer: "192.0.2.1:5000".into(),
        listener: "mtls".into(),
        identity: Some(identity()),
        username: identity().name().map(Into::into),
    };
    let (username, _, reason) = connect_with(meta);
    assert_eq!(username.as_deref(), Some("device-7"));
    assert_eq!(reason, ReasonCode::Success);
}

#[test]
fn the_name_of_an_identity_is_its_common_name_else_its_first_alternative_name() {
    assert_eq!(identity().name(), Some("device-7"));
    let no_cn = CertIdentity {
        common_name: None,
        alt_names: vec!["a.example".into(), "b.example".into()],
    };
    assert_eq!(no_cn.name(), Some("a.example"));
    assert_eq!(CertIdentity::default().name(), None);
}
