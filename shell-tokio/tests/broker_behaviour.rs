//! End to end through real sockets with a minimal client built on the engine's codec, for what
//! third-party clients cannot do on purpose: go silent, send garbage, open a thousand connections.

mod support;

use std::time::{Duration, Instant};

use cicada_engine::codec::{
    Delivery, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};
use support::{connect_packet, Broker, Raw};

fn subscribe(raw: &mut Raw, filter: &str) {
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: cicada_engine::codec::PacketId::new(1).expect("non-zero"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::new(filter.to_string()).expect("valid"),
            options: SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..Default::default()
            },
        }],
    }));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
}

#[test]
fn keep_alive_timeout_closes_a_silent_client() {
    let broker = Broker::start(&[]);
    let (mut raw, ack) = Raw::session(
        broker.port,
        connect_packet("sleepy", ProtocolVersion::V5, 1),
    );
    assert!(matches!(ack, Packet::ConnAck(a) if a.reason == ReasonCode::Success));
    let start = Instant::now();
    // 1.5 × 1 s of silence: the broker says 0x8D and closes.
    match raw.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::KeepAliveTimeout),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert_eq!(raw.recv(), None);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn malformed_packet_closes_only_its_connection() {
    let broker = Broker::start(&[]);
    let (mut good, _) = Raw::session(
        broker.port,
        connect_packet("good", ProtocolVersion::V3_1_1, 60),
    );
    subscribe(&mut good, "t");
    let (mut bad, _) = Raw::session(broker.port, connect_packet("bad", ProtocolVersion::V5, 60));
    // A PUBLISH with QoS 3.
    bad.send_bytes(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
    match bad.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::MalformedPacket),
        other => panic!("expected DISCONNECT 0x81, got {other:?}"),
    }
    assert_eq!(bad.recv(), None, "closed");
    let (mut publisher, _) =
        Raw::session(broker.port, connect_packet("p", ProtocolVersion::V5, 60));
    let mut p = Publish::new(TopicName::new("t").expect("valid"), &b"fine"[..]);
    p.delivery = Delivery::AtMostOnce;
    publisher.send(&Packet::Publish(p));
    match good.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"fine"),
        other => panic!("the good client lost its connection: {other:?}"),
    }
}

#[test]
fn takeover_disconnects_the_first_connection() {
    let broker = Broker::start(&[]);
    let (mut first, _) = Raw::session(broker.port, connect_packet("dup", ProtocolVersion::V5, 60));
    let (_second, ack) = Raw::session(broker.port, connect_packet("dup", ProtocolVersion::V5, 60));
    assert!(matches!(ack, Packet::ConnAck(a) if a.reason == ReasonCode::Success));
    match first.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SessionTakenOver),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
}

#[test]
fn a_thousand_concurrent_clients() {
    let broker = Broker::start(&[]);
    let mut clients = Vec::new();
    for i in 0..1000 {
        let (raw, ack) = Raw::session(
            broker.port,
            connect_packet(&format!("many-{i}"), ProtocolVersion::V3_1_1, 60),
        );
        assert!(
            matches!(ack, Packet::ConnAck(a) if a.reason == ReasonCode::Success),
            "client {i}"
        );
        clients.push(raw);
    }
    subscribe(&mut clients[999], "all");
    let mut p = Publish::new(TopicName::new("all").expect("valid"), &b"hi"[..]);
    p.delivery = Delivery::AtMostOnce;
    clients[0].send(&Packet::Publish(p));
    assert!(matches!(clients[999].recv(), Some(Packet::Publish(_))));
    // Every connection is still alive.
    for c in clients.iter_mut().step_by(97) {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp));
    }
}

#[test]
fn sigterm_tells_v5_clients_and_exits_zero() {
    let broker = Broker::start(&[]);
    let (mut five, _) = Raw::session(broker.port, connect_packet("five", ProtocolVersion::V5, 60));
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    match five.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ServerShuttingDown),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
}

#[test]
fn config_errors_name_the_key_and_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("cicada-bad-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[limits]\nreceive_maximum = 0\n").expect("write");
    let out = std::process::Command::new(support::BINARY)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run cicada");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.receive_maximum"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
