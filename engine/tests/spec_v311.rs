//! The server side of the MQTT 3.1.1 normative statements (OASIS MQTT 3.1.1, Appendix B), for 3.1.1
//! clients: one small test per statement or group, each naming the statements it asserts. A client
//! obligation is checked through the broker's reaction when a client breaks it. The conformance
//! matrix `conformance/matrix/mqtt-3.1.1.toml` points at these tests (and at the others that already
//! assert a statement for 3.1.1 clients).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    Ack, Connect, Delivery, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
    Will,
};
use cicada_engine::sim::expect::{connack, payloads, publish_of, suback_of, unsuback_of};
use cicada_engine::sim::Sim;
use cicada_engine::{
    AuthDecision, Authentication, Config, ConnId, ConnMeta, Engine, Event, Input, Instant,
};

use ProtocolVersion::V3_1_1;

// ----- helpers -----

fn sim() -> Sim {
    Sim::new(Config::default())
}

fn pid(n: u16) -> PacketId {
    match PacketId::new(n) {
        Some(id) => id,
        None => panic!("packet id 0"),
    }
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s.to_string()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s.to_string()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// A 3.1.1 CONNECT with CleanSession 1 and keep alive 60 s.
fn clean(name: &str) -> Connect {
    Sim::connect_packet(name, V3_1_1)
}

/// A 3.1.1 CONNECT with CleanSession 0.
fn persistent(name: &str) -> Connect {
    let mut c = clean(name);
    c.clean_start = false;
    c
}

fn with_will(mut c: Connect, will_topic: &str, qos: QoS, retain: bool) -> Connect {
    c.will = Some(Will {
        topic: topic(will_topic),
        payload: Bytes::from_static(b"gone"),
        qos,
        retain,
        properties: Default::default(),
    });
    c
}

/// Connects `name` with `connect` and checks it is accepted; returns Session Present.
fn accepted(sim: &mut Sim, name: &str, connect: Connect) -> bool {
    let ack = connack(sim.connect_with(name, connect));
    assert_eq!(ack.reason, ReasonCode::Success, "{name}");
    ack.session_present
}

/// Connects a clean 3.1.1 client `name` subscribed to `filter` at `qos`.
fn subscriber(sim: &mut Sim, name: &str, filter: &str, qos: QoS) {
    accepted(sim, name, clean(name));
    let ack = suback_of(sim.subscribe(name, filter, qos));
    assert_eq!(ack.reasons, [ReasonCode::granted(qos)]);
}

/// A PUBLISH of `payload` to `topic_name`.
fn message(topic_name: &str, delivery: Delivery, payload: &'static str) -> Publish {
    let mut p = Publish::new(topic(topic_name), Bytes::from_static(payload.as_bytes()));
    p.delivery = delivery;
    p
}

/// A retained PUBLISH.
fn retained(topic_name: &str, delivery: Delivery, payload: &'static str) -> Publish {
    let mut p = message(topic_name, delivery, payload);
    p.retain = true;
    p
}

/// SUBSCRIBE with one entry per `(filter, qos)`.
fn subscribe_packet(packet_id: u16, entries: &[(&str, QoS)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        properties: Default::default(),
        subscriptions: entries
            .iter()
            .map(|(f, qos)| Subscription {
                filter: filter(f),
                options: SubscriptionOptions {
                    qos: *qos,
                    ..Default::default()
                },
            })
            .collect(),
    })
}

fn unsubscribe_packet(packet_id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(packet_id),
        properties: Default::default(),
        filters: filters.iter().map(|f| filter(f)).collect(),
    })
}

/// A control packet on the wire: `first` byte, remaining length, `body`.
fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string field with these bytes.
fn field(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or_else(|_| panic!("field too long"));
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A 3.1.1 CONNECT on the wire: protocol "MQTT" level 4, these connect flags, keep alive 60 s and
/// this payload.
fn connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x3C];
    body.extend_from_slice(payload);
    framed(0x10, &body)
}

/// A PUBLISH on the wire with this fixed header byte, topic bytes, packet id (QoS > 0) and payload.
fn publish_bytes(first: u8, topic_bytes: &[u8], packet_id: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic_bytes);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    framed(first, &body)
}

/// A SUBSCRIBE on the wire with one filter (raw bytes) and options byte.
fn subscribe_bytes(first: u8, packet_id: u16, filter_bytes: &[u8], options: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend_from_slice(&field(filter_bytes));
    body.push(options);
    framed(first, &body)
}

/// An UNSUBSCRIBE on the wire with one filter (raw bytes).
fn unsubscribe_bytes(first: u8, packet_id: u16, filter_bytes: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend_from_slice(&field(filter_bytes));
    framed(first, &body)
}

/// Opens a connection, sends `bytes` as its first input, and checks the broker closed it without
/// answering (no CONNACK) and without creating a session.
#[track_caller]
fn closed_without_connack(bytes: &[u8]) {
    let mut sim = sim();
    sim.open("c");
    sim.send_bytes("c", bytes);
    assert!(sim.is_closed("c"), "not closed:\n{}", sim.transcript());
    assert_eq!(sim.recv("c"), None, "a CONNACK was sent");
    assert_eq!(sim.engine.session_count(), 0);
}

/// Connects client `c` (3.1.1, CleanSession 1, will on `will/c`) and a watcher of `will/#` and `#`
/// traffic, then has `c` send `bytes`. The broker must close `c`'s connection without answering (3.1.1
/// has no server DISCONNECT) and, since the connection did not end with DISCONNECT, publish its will.
#[track_caller]
fn violation_closes(bytes: &[u8]) -> Sim {
    let mut sim = sim();
    subscriber(&mut sim, "watcher", "#", QoS::AtMostOnce);
    accepted(
        &mut sim,
        "c",
        with_will(clean("c"), "will/c", QoS::AtMostOnce, false),
    );
    sim.send_bytes("c", bytes);
    assert!(sim.is_closed("c"), "not closed:\n{}", sim.transcript());
    assert_eq!(sim.recv_all("c"), [], "3.1.1 closes without a packet");
    let seen: Vec<String> = publishes(sim.recv_all("watcher"))
        .into_iter()
        .map(|p| p.topic.as_str().to_string())
        .collect();
    assert_eq!(
        seen,
        ["will/c"],
        "only the will, nothing the bad packet carried"
    );
    assert!(!sim.is_closed("watcher"));
    sim
}

/// The engine without the harness's decoding, to check bytes exactly as the broker writes them.
struct Wire {
    engine: Engine,
    out: BTreeMap<u64, Vec<u8>>,
}

impl Wire {
    fn new(config: Config) -> Wire {
        let config = Config {
            durable: false,
            ..config
        };
        match Engine::new(config, 7) {
            Ok(engine) => Wire {
                engine,
                out: BTreeMap::new(),
            },
            Err(e) => panic!("{e}"),
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle(Instant::ZERO, input);
        let mut flushed = Vec::new();
        while let Some(t) = self.engine.poll_transmit() {
            self.out
                .entry(t.conn.0)
                .or_default()
                .extend_from_slice(&t.data);
            flushed.push(Input::Flushed {
                conn: t.conn,
                bytes: t.data.len(),
            });
        }
        while self.engine.poll_event().is_some() {}
        for f in flushed {
            self.engine.handle(Instant::ZERO, f);
        }
    }

    /// Opens connection `conn` and connects it as a clean 3.1.1 client `name`.
    fn connect(&mut self, conn: u64, name: &str) {
        self.input(Input::Accepted {
            conn: ConnId(conn),
            meta: ConnMeta::default(),
        });
        self.send(conn, &Packet::Connect(Box::new(clean(name))));
        assert_eq!(self.take(conn), [0x20, 0x02, 0x00, 0x00], "CONNACK");
    }

    fn send(&mut self, conn: u64, packet: &Packet) {
        let mut bytes = BytesMut::new();
        if let Err(e) = packet.encode(V3_1_1, &mut bytes) {
            panic!("{e}");
        }
        self.input(Input::Received {
            conn: ConnId(conn),
            data: bytes.freeze(),
        });
    }

    /// Every byte the broker wrote to `conn` since the last call.
    fn take(&mut self, conn: u64) -> Vec<u8> {
        self.out.remove(&conn).unwrap_or_default()
    }
}

// ----- 1.5.3 UTF-8 encoded strings -----

/// [MQTT-1.5.3-1]: ill-formed UTF-8 (a bad byte, an encoded surrogate) in any string closes the
/// connection.
#[test]
fn ill_formed_utf8_closes_the_connection() {
    for topic_bytes in [&b"a\xFF"[..], b"\xC3\x28", b"a/\xED\xA0\x80"] {
        violation_closes(&publish_bytes(0x30, topic_bytes, None, b"x"));
        violation_closes(&subscribe_bytes(0x82, 1, topic_bytes, 0));
        violation_closes(&unsubscribe_bytes(0xA2, 1, topic_bytes));
    }
}

/// [MQTT-1.5.3-2], [MQTT-4.7.3-2]: U+0000 in a topic name or topic filter closes the connection.
#[test]
fn null_character_closes_the_connection() {
    violation_closes(&publish_bytes(0x30, b"a\x00b", None, b"x"));
    violation_closes(&publish_bytes(0x32, b"a/\x00", Some(1), b"x"));
    violation_closes(&subscribe_bytes(0x82, 1, b"a/\x00/#", 1));
    violation_closes(&unsubscribe_bytes(0xA2, 1, b"\x00"));
}

/// [MQTT-1.5.3-3]: U+FEFF is an ordinary character: a topic starting with it is neither stripped nor
/// matched as the topic without it.
#[test]
fn zero_width_no_break_space_is_kept() {
    let mut sim = sim();
    subscriber(&mut sim, "bom", "\u{FEFF}a", QoS::AtMostOnce);
    subscriber(&mut sim, "plain", "a", QoS::AtMostOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.send_bytes(
        "p",
        &publish_bytes(0x30, "\u{FEFF}a".as_bytes(), None, b"1"),
    );
    sim.publish("p", "a", QoS::AtMostOnce, "2");
    let got = publishes(sim.recv_all("bom"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].topic.as_str().as_bytes(), b"\xEF\xBB\xBFa");
    assert_eq!(&got[0].payload[..], b"1");
    assert_eq!(payloads(&sim.recv_all("plain")), ["2"]);
}

// ----- 2.2.2 flags, 2.3.1 packet identifiers -----

/// [MQTT-2.2.2-1]: every packet the broker writes carries the fixed header flags of Table 2.2
/// (PUBREL 0010, the others 0000; PUBLISH flags are DUP/QoS/RETAIN).
#[test]
fn the_brokers_packets_carry_the_reserved_flag_values() {
    let mut w = Wire::new(Config::default());
    w.connect(1, "s");
    w.send(1, &subscribe_packet(1, &[("t", QoS::ExactlyOnce)]));
    assert_eq!(w.take(1), [0x90, 0x03, 0x00, 0x01, 0x02], "SUBACK");
    w.connect(2, "p");
    w.send(
        2,
        &Packet::Publish(message("t", Delivery::ExactlyOnce(pid(5)), "m")),
    );
    assert_eq!(w.take(2), [0x50, 0x02, 0x00, 0x05], "PUBREC");
    w.send(2, &Packet::PubRel(Ack::new(pid(5))));
    assert_eq!(w.take(2), [0x70, 0x02, 0x00, 0x05], "PUBCOMP");
    // The subscriber's copy: QoS 2, DUP 0, RETAIN 0, packet id 1.
    assert_eq!(
        w.take(1),
        [0x34, 0x06, 0x00, 0x01, b't', 0x00, 0x01, b'm'],
        "PUBLISH"
    );
    w.send(1, &Packet::PubRec(Ack::new(pid(1))));
    assert_eq!(w.take(1), [0x62, 0x02, 0x00, 0x01], "PUBREL");
    w.send(1, &Packet::PubComp(Ack::new(pid(1))));
    w.send(
        2,
        &Packet::Publish(message("u", Delivery::AtLeastOnce(pid(6)), "m")),
    );
    assert_eq!(w.take(2), [0x40, 0x02, 0x00, 0x06], "PUBACK");
    w.send(1, &unsubscribe_packet(2, &["t"]));
    assert_eq!(w.take(1), [0xB0, 0x02, 0x00, 0x02], "UNSUBACK");
    w.send(1, &Packet::PingReq);
    assert_eq!(w.take(1), [0xD0, 0x00], "PINGRESP");
}

/// [MQTT-2.2.2-2]: a packet with invalid fixed header flags closes the connection (PUBACK, PUBREC,
/// PUBCOMP and PINGREQ here; PUBREL, SUBSCRIBE, UNSUBSCRIBE and DISCONNECT have their own tests).
#[test]
fn invalid_fixed_header_flags_close_the_connection() {
    for bytes in [
        &[0x41, 0x02, 0x00, 0x01][..],
        &[0x58, 0x02, 0x00, 0x01],
        &[0x72, 0x02, 0x00, 0x01],
        &[0xC1, 0x00],
        &[0xC8, 0x00],
    ] {
        violation_closes(bytes);
    }
    // A CONNECT with flags set in its fixed header is refused like any malformed CONNECT.
    closed_without_connack(&[0x12, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0]);
}

/// [MQTT-3.6.1-1]: a PUBREL whose fixed header bits are not 0010 is malformed: connection closed.
#[test]
fn pubrel_with_other_header_bits_closes_the_connection() {
    for first in [0x60, 0x63, 0x6A, 0x66] {
        let mut sim = violation_closes(&[first, 0x02, 0x00, 0x01]);
        assert!(sim.recv("watcher").is_none());
    }
}

/// [MQTT-3.8.1-1]: a SUBSCRIBE whose fixed header bits are not 0010 is malformed: connection closed,
/// and the subscription is not made.
#[test]
fn subscribe_with_other_header_bits_closes_the_connection() {
    for first in [0x80, 0x83, 0x8A, 0x81] {
        let sim = violation_closes(&subscribe_bytes(first, 1, b"t", 0));
        assert_eq!(sim.engine.subscription_count(), 1, "only the watcher's");
    }
}

/// [MQTT-3.10.1-1]: an UNSUBSCRIBE whose fixed header bits are not 0010 is malformed: connection
/// closed.
#[test]
fn unsubscribe_with_other_header_bits_closes_the_connection() {
    for first in [0xA0, 0xA3, 0xAA, 0xA1] {
        violation_closes(&unsubscribe_bytes(first, 1, b"t"));
    }
}

/// [MQTT-3.14.1-1]: a DISCONNECT with reserved bits set is a violation, not a disconnection: the
/// connection is closed and, unlike after a DISCONNECT, the will is published.
#[test]
fn disconnect_with_reserved_bits_closes_and_publishes_the_will() {
    for first in [0xE1, 0xE2, 0xE8] {
        violation_closes(&[first, 0x00]);
    }
}

/// [MQTT-2.3.1-1]: a QoS 1/2 PUBLISH, SUBSCRIBE or UNSUBSCRIBE with packet identifier 0 closes the
/// connection; the broker's own identifiers are never 0.
#[test]
fn packet_identifiers_must_not_be_zero() {
    violation_closes(&publish_bytes(0x32, b"t", Some(0), b"x"));
    violation_closes(&publish_bytes(0x34, b"t", Some(0), b"x"));
    violation_closes(&[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b't', 0x00]);
    violation_closes(&[0xA2, 0x05, 0x00, 0x00, 0x00, 0x01, b't']);

    let mut w = Wire::new(Config::default());
    w.connect(1, "s");
    w.send(1, &subscribe_packet(1, &[("t", QoS::AtLeastOnce)]));
    w.take(1);
    w.connect(2, "p");
    for n in 1..=3 {
        w.send(
            2,
            &Packet::Publish(message("t", Delivery::AtLeastOnce(pid(n)), "m")),
        );
    }
    let bytes = w.take(1);
    // Three PUBLISHes of 8 bytes: 0x32 0x06, topic "t", packet id, payload "m".
    assert_eq!(bytes.len(), 24, "{bytes:02X?}");
    for p in bytes.chunks(8) {
        assert_eq!(p[0], 0x32);
        assert_ne!(u16::from_be_bytes([p[5], p[6]]), 0);
    }
}

/// [MQTT-2.3.1-2]: a client that reuses the identifier of a QoS 2 PUBLISH still in progress for a new
/// message has that message taken for a resend: acknowledged with PUBREC, never delivered.
#[test]
fn a_packet_id_in_use_is_not_a_new_message() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::ExactlyOnce(pid(5)), "first")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(5)))));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::ExactlyOnce(pid(5)), "second")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(5)))));
    assert_eq!(payloads(&sim.recv_all("s")), ["first"]);
}

/// [MQTT-2.3.1-3]: a client's resend uses the same identifier, which is free again once acknowledged:
/// a QoS 2 resend before PUBREL is not delivered again, a PUBLISH with the identifier after PUBCOMP is
/// a new message, and SUBSCRIBE identifiers are free again after SUBACK.
#[test]
fn a_client_packet_id_is_reusable_after_its_acknowledgement() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    let mut first = message("t", Delivery::ExactlyOnce(pid(9)), "a");
    sim.send("p", Packet::Publish(first.clone()));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(9)))));
    first.dup = true;
    sim.send("p", Packet::Publish(first));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(9)))));
    sim.send("p", Packet::PubRel(Ack::new(pid(9))));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(9)))));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::ExactlyOnce(pid(9)), "b")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(9)))));
    assert_eq!(payloads(&sim.recv_all("s")), ["a", "b"]);

    for _ in 0..2 {
        sim.send("p", subscribe_packet(3, &[("x", QoS::AtMostOnce)]));
        assert_eq!(suback_of(sim.recv("p")).packet_id, pid(3));
    }
}

/// [MQTT-2.3.1-4], [MQTT-4.3.2-1]: the broker gives each new QoS 1 message an identifier not in use,
/// sends it with DUP 0, and keeps it unacknowledged until PUBACK: only the messages not acknowledged
/// are resent, under the same identifiers.
#[test]
fn the_broker_uses_unused_packet_ids_until_acknowledged() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    for payload in ["1", "2", "3"] {
        sim.publish("p", "t", QoS::AtLeastOnce, payload);
    }
    let sent = publishes(sim.recv_all("s"));
    assert_eq!(sent.len(), 3);
    let mut ids: Vec<PacketId> = sent
        .iter()
        .map(|p| {
            assert!(!p.dup);
            assert_eq!(p.delivery.qos(), QoS::AtLeastOnce);
            p.delivery.packet_id().unwrap_or_else(|| panic!("no id"))
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct identifiers: {ids:?}");
    sim.send("s", Packet::PubAck(Ack::new(ids[1])));
    sim.drop_connection("s");

    assert!(accepted(&mut sim, "s", persistent("s")));
    let resent = publishes(sim.recv_all("s"));
    let again: Vec<(Option<PacketId>, bool, String)> = resent
        .iter()
        .map(|p| {
            (
                p.delivery.packet_id(),
                p.dup,
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        again,
        [
            (Some(ids[0]), true, "1".to_string()),
            (Some(ids[2]), true, "3".to_string())
        ]
    );
    // A new message takes an identifier not in use.
    sim.publish("p", "t", QoS::AtLeastOnce, "4");
    let fresh = publish_of(sim.recv("s"));
    let fresh_id = fresh.delivery.packet_id();
    assert!(fresh_id != Some(ids[0]) && fresh_id != Some(ids[2]));
    assert!(!fresh.dup);
}

/// [MQTT-2.3.1-5], [MQTT-3.3.1-2], [MQTT-4.3.1-1]: a QoS 0 PUBLISH from the broker has no packet
/// identifier and DUP 0 (also when a QoS 1 message is downgraded to a QoS 0 subscription); a QoS 0
/// PUBLISH with DUP set closes the connection.
#[test]
fn qos0_publishes_have_no_packet_id_and_no_dup() {
    let mut w = Wire::new(Config::default());
    w.connect(1, "s");
    w.send(1, &subscribe_packet(1, &[("t", QoS::AtMostOnce)]));
    w.take(1);
    w.connect(2, "p");
    w.send(2, &Packet::Publish(message("t", Delivery::AtMostOnce, "a")));
    w.send(
        2,
        &Packet::Publish(message("t", Delivery::AtLeastOnce(pid(1)), "b")),
    );
    assert_eq!(
        w.take(1),
        [0x30, 0x04, 0x00, 0x01, b't', b'a', 0x30, 0x04, 0x00, 0x01, b't', b'b']
    );

    violation_closes(&publish_bytes(0x38, b"t", None, b"x"));
}

/// [MQTT-2.3.1-6], [MQTT-3.3.4-1], [MQTT-4.3.2-2], [MQTT-4.3.3-2]: the broker answers a QoS 0 PUBLISH
/// with nothing, QoS 1 with PUBACK and QoS 2 with PUBREC, then PUBREL with PUBCOMP, each carrying the
/// PUBLISH's packet identifier.
#[test]
fn publish_responses_follow_table_3_4_with_the_publish_packet_id() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::AtMostOnce, "0")),
    );
    assert_eq!(sim.recv("p"), None);
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::AtLeastOnce(pid(4242)), "1")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubAck(Ack::new(pid(4242)))));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::ExactlyOnce(pid(65535)), "2")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(65535)))));
    sim.send("p", Packet::PubRel(Ack::new(pid(65535))));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(65535)))));
    assert_eq!(sim.recv("p"), None);
    assert_eq!(payloads(&sim.recv_all("s")), ["0", "1", "2"]);
}

/// [MQTT-2.3.1-7], [MQTT-3.8.4-1], [MQTT-3.8.4-2], [MQTT-3.10.4-4]: SUBSCRIBE is answered with a
/// SUBACK and UNSUBSCRIBE with an UNSUBACK, each with the request's packet identifier.
#[test]
fn suback_and_unsuback_carry_the_request_packet_id() {
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    sim.send("c", subscribe_packet(31_000, &[("a/#", QoS::AtLeastOnce)]));
    let ack = suback_of(sim.recv("c"));
    assert_eq!(ack.packet_id, pid(31_000));
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1]);
    sim.send("c", unsubscribe_packet(12, &["a/#"]));
    assert_eq!(unsuback_of(sim.recv("c")).packet_id, pid(12));
    assert_eq!(sim.recv("c"), None);
}

// ----- 3.1 CONNECT -----

/// [MQTT-3.1.0-1]: a connection whose first packet is not CONNECT is closed unanswered.
#[test]
fn first_packet_must_be_connect() {
    for first in [
        publish_bytes(0x30, b"t", None, b"x"),
        subscribe_bytes(0x82, 1, b"t", 0),
        vec![0xE0, 0x00],
    ] {
        closed_without_connack(&first);
    }
}

/// [MQTT-3.1.0-2]: a second CONNECT is a protocol violation: the client is disconnected (and its
/// will published).
#[test]
fn a_second_connect_is_a_protocol_violation() {
    let mut bytes = BytesMut::new();
    if let Err(e) = Packet::Connect(Box::new(clean("c"))).encode(V3_1_1, &mut bytes) {
        panic!("{e}");
    }
    violation_closes(&bytes);
}

/// [MQTT-3.1.2-1]: a CONNECT with another protocol name is not processed as MQTT: the client is
/// disconnected, no session is made and nothing sent after it is processed.
#[test]
fn a_wrong_protocol_name_is_not_processed() {
    let mut sim = sim();
    subscriber(&mut sim, "watcher", "#", QoS::AtMostOnce);
    sim.open("c");
    let mut bytes = framed(
        0x10,
        &[0, 4, b'M', b'Q', b'T', b'X', 4, 2, 0, 60, 0, 1, b'c'],
    );
    bytes.extend(publish_bytes(0x31, b"r", None, b"x"));
    sim.send_bytes("c", &bytes);
    assert!(sim.is_closed("c"));
    if let Some(packet) = sim.recv("c") {
        assert_ne!(connack(Some(packet)).reason, ReasonCode::Success);
    }
    assert_eq!(sim.engine.session_count(), 1, "only the watcher's");
    assert_eq!(sim.engine.retained_count(), 0);
    assert_eq!(sim.recv_all("watcher"), []);
}

/// [MQTT-3.1.2-2]: a protocol level the broker does not support (here 2, 6, and 3 with name "MQTT")
/// gets CONNACK return code 0x01, then the connection is closed.
#[test]
fn an_unsupported_protocol_level_gets_return_code_1() {
    for level in [2, 3, 6, 255] {
        let mut sim = sim();
        sim.open("c");
        sim.send_bytes(
            "c",
            &framed(
                0x10,
                &[0, 4, b'M', b'Q', b'T', b'T', level, 2, 0, 60, 0, 1, b'c'],
            ),
        );
        let ack = connack(sim.recv("c"));
        assert_eq!(
            ack.reason,
            ReasonCode::UnsupportedProtocolVersion,
            "{level}"
        );
        assert_eq!(ack.reason.to_v3_connack(), 1);
        assert!(!ack.session_present);
        assert!(sim.is_closed("c"));
        assert_eq!(sim.engine.session_count(), 0);
    }
}

/// [MQTT-3.1.2-3], [MQTT-3.1.4-1], [MQTT-3.2.2-6]: a CONNECT with the reserved connect flag set does
/// not conform: the connection is closed without a CONNACK.
#[test]
fn the_reserved_connect_flag_closes_without_connack() {
    closed_without_connack(&connect_bytes(0x03, &field(b"c")));
    closed_without_connack(&connect_bytes(0x01, &field(b"c")));
}

/// [MQTT-3.1.2-9]: with the Will Flag set, a CONNECT whose payload lacks the Will Topic or Will
/// Message is malformed: closed without a CONNACK.
#[test]
fn a_will_flag_without_will_fields_closes_without_connack() {
    closed_without_connack(&connect_bytes(0x06, &field(b"c")));
    let mut payload = field(b"c");
    payload.extend(field(b"will/c"));
    closed_without_connack(&connect_bytes(0x06, &payload));
}

/// [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]: without the Will Flag, a Will QoS or Will
/// Retain bit, or will fields in the payload, make the CONNECT malformed: closed without a CONNACK.
#[test]
fn will_fields_without_the_will_flag_close_without_connack() {
    // Will QoS 1, Will QoS 2, Will Retain: each without the Will Flag.
    for flags in [0x0A, 0x12, 0x22, 0x3A] {
        closed_without_connack(&connect_bytes(flags, &field(b"c")));
    }
    let mut payload = field(b"c");
    payload.extend(field(b"will/c"));
    payload.extend(field(b"gone"));
    closed_without_connack(&connect_bytes(0x02, &payload));
}

/// [MQTT-3.1.2-14]: Will QoS 3 closes the connection without a CONNACK.
#[test]
fn will_qos_3_closes_without_connack() {
    let mut payload = field(b"c");
    payload.extend(field(b"will/c"));
    payload.extend(field(b"gone"));
    closed_without_connack(&connect_bytes(0x1E, &payload));
    // The same CONNECT with Will QoS 2 is accepted.
    let mut sim = sim();
    sim.open("c");
    sim.send_bytes("c", &connect_bytes(0x16, &payload));
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
}

/// [MQTT-3.1.2-18], [MQTT-3.1.2-19], [MQTT-3.1.2-20], [MQTT-3.1.2-21], [MQTT-3.1.2-22]: the User Name
/// and Password fields must be present exactly when their flags say so, and a password needs a user
/// name; otherwise the CONNECT is closed without a CONNACK.
#[test]
fn user_name_and_password_fields_follow_their_flags() {
    let id = field(b"c");
    let with = |fields: &[&[u8]]| {
        let mut payload = id.clone();
        for f in fields {
            payload.extend(field(f));
        }
        payload
    };
    // 3.1.2-18: no User Name Flag, but a user name.
    closed_without_connack(&connect_bytes(0x02, &with(&[b"user"])));
    // 3.1.2-19: User Name Flag, no user name.
    closed_without_connack(&connect_bytes(0x82, &with(&[])));
    // 3.1.2-20: no Password Flag, but a password.
    closed_without_connack(&connect_bytes(0x82, &with(&[b"user", b"pw"])));
    // 3.1.2-21: Password Flag, no password.
    closed_without_connack(&connect_bytes(0xC2, &with(&[b"user"])));
    // 3.1.2-22: Password Flag without User Name Flag.
    closed_without_connack(&connect_bytes(0x42, &with(&[b"pw"])));
    // Both present with both flags: accepted.
    let mut sim = sim();
    sim.open("c");
    sim.send_bytes("c", &connect_bytes(0xC2, &with(&[b"user", b"pw"])));
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
}

/// [MQTT-3.1.3-3]: a CONNECT without a Client Identifier closes without a CONNACK.
#[test]
fn a_connect_without_client_id_closes_without_connack() {
    closed_without_connack(&connect_bytes(0x02, &[]));
    closed_without_connack(&connect_bytes(0x02, &[0x00]));
}

/// [MQTT-3.1.3-4], [MQTT-3.1.3-10], [MQTT-3.1.3-11], [MQTT-1.5.3-1]: a Client Identifier, Will Topic or
/// User Name that is not UTF-8 closes the connection without a CONNACK.
#[test]
fn connect_strings_must_be_utf8() {
    for bad in [&b"c\xFF"[..], b"\xED\xA0\x80", b"a\x00"] {
        closed_without_connack(&connect_bytes(0x02, &field(bad)));

        let mut payload = field(b"c");
        payload.extend(field(bad));
        payload.extend(field(b"gone"));
        closed_without_connack(&connect_bytes(0x06, &payload));

        let mut payload = field(b"c");
        payload.extend(field(bad));
        closed_without_connack(&connect_bytes(0x82, &payload));
    }
}

/// [MQTT-3.1.3-1]: the payload fields are read in the order Client Identifier, Will Topic, Will
/// Message, User Name, Password.
#[test]
fn connect_payload_fields_are_read_in_order() {
    let mut payload = field(b"id");
    for f in [&b"will/t"[..], b"will-msg", b"user", b"pw"] {
        payload.extend(field(f));
    }
    let mut sim = sim();
    subscriber(&mut sim, "watcher", "will/#", QoS::AtMostOnce);
    sim.open("c");
    sim.send_bytes("c", &connect_bytes(0xC6, &payload));
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
    assert!(sim.events.iter().any(|e| matches!(e,
        Event::ClientConnected { client_id, .. } if client_id == "id")));
    sim.drop_connection("c");
    let will = publish_of(sim.recv("watcher"));
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("will/t", &b"will-msg"[..])
    );
}

/// [MQTT-3.1.2-4], [MQTT-3.2.2-2], [MQTT-3.2.2-3], [MQTT-3.1.4-3]: with CleanSession 0 the broker
/// creates a session if there is none (Session Present 0), keeps it after the disconnection, and
/// resumes it on the next CONNECT (Session Present 1, its subscriptions in force).
#[test]
fn clean_session_0_creates_keeps_and_resumes_the_session() {
    let mut sim = sim();
    assert!(!accepted(&mut sim, "s", persistent("s")));
    sim.subscribe("s", "news/#", QoS::AtLeastOnce);
    sim.send(
        "s",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert!(sim.is_closed("s"));
    assert_eq!(
        sim.engine.session_count(),
        1,
        "kept after the disconnection"
    );

    assert!(accepted(&mut sim, "s", persistent("s")));
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "news/today", QoS::AtLeastOnce, "hello");
    assert_eq!(payloads(&sim.recv_all("s")), ["hello"]);
}

/// [MQTT-3.1.2-6], [MQTT-3.2.2-1]: CleanSession 1 discards the previous session (Session Present 0,
/// no subscriptions, no queued messages), and its own state ends with the connection.
#[test]
fn clean_session_1_discards_the_session_and_keeps_nothing() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::AtLeastOnce, "queued");

    assert!(!accepted(&mut sim, "s", clean("s")));
    assert_eq!(
        sim.recv_all("s"),
        [],
        "the queued message went with the session"
    );
    sim.publish("p", "t", QoS::AtLeastOnce, "after");
    assert_eq!(
        sim.recv_all("s"),
        [],
        "the subscription went with the session"
    );

    // The clean session's own subscription ends with its connection.
    sim.subscribe("s", "u", QoS::AtLeastOnce);
    sim.send(
        "s",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert_eq!(sim.engine.session_count(), 1, "only the publisher's");
    assert!(!accepted(&mut sim, "s", persistent("s")));
    sim.publish("p", "u", QoS::AtLeastOnce, "later");
    assert_eq!(sim.recv_all("s"), []);
}

/// [MQTT-3.1.2-7]: retained messages are not part of the session: they stay when the session of the
/// client that published them ends.
#[test]
fn retained_messages_outlive_the_session() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("cfg", Delivery::AtLeastOnce(pid(1)), "v")),
    );
    sim.send(
        "p",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert_eq!(sim.engine.session_count(), 0);
    subscriber(&mut sim, "s", "cfg", QoS::AtLeastOnce);
    let p = publish_of(sim.recv("s"));
    assert_eq!(&p.payload[..], b"v");
    assert!(p.retain);
}

// ----- wills -----

/// [MQTT-3.1.2-8]: the will is published when the connection closes without DISCONNECT: lost
/// connection, keep alive timeout, protocol violation.
#[test]
fn the_will_is_published_when_the_connection_ends_without_disconnect() {
    let mut sim = sim();
    let mut watcher = clean("w");
    watcher.keep_alive = 0;
    accepted(&mut sim, "w", watcher);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);

    accepted(
        &mut sim,
        "lost",
        with_will(clean("lost"), "will/lost", QoS::AtLeastOnce, false),
    );
    sim.drop_connection("lost");
    let mut quiet = with_will(clean("quiet"), "will/quiet", QoS::AtLeastOnce, false);
    quiet.keep_alive = 5;
    accepted(&mut sim, "quiet", quiet);
    sim.advance(Duration::from_secs(8));
    accepted(
        &mut sim,
        "rude",
        with_will(clean("rude"), "will/rude", QoS::AtLeastOnce, false),
    );
    sim.send_bytes("rude", &[0xF0, 0x00]);

    let topics: Vec<String> = publishes(sim.recv_all("w"))
        .into_iter()
        .map(|p| p.topic.as_str().to_string())
        .collect();
    assert_eq!(topics, ["will/lost", "will/quiet", "will/rude"]);
}

/// [MQTT-3.1.2-10], [MQTT-3.14.4-3]: the will leaves the stored session once published, and on
/// DISCONNECT it is discarded unpublished; after a restart neither comes back.
#[test]
fn the_will_is_removed_once_published_or_on_disconnect() {
    let mut sim = sim();
    let mut watcher = persistent("w");
    watcher.keep_alive = 0;
    accepted(&mut sim, "w", watcher.clone());
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);

    accepted(
        &mut sim,
        "polite",
        with_will(persistent("polite"), "will/polite", QoS::AtLeastOnce, false),
    );
    assert!(sim.store.state.sessions["polite"].will.is_some());
    sim.send(
        "polite",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert_eq!(sim.store.state.sessions["polite"].will, None);

    accepted(
        &mut sim,
        "lost",
        with_will(persistent("lost"), "will/lost", QoS::AtLeastOnce, false),
    );
    sim.drop_connection("lost");
    assert_eq!(sim.store.state.sessions["lost"].will, None);
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);

    sim.crash(Duration::from_secs(1));
    accepted(&mut sim, "w", watcher);
    sim.advance(Duration::from_secs(3600));
    let wills: Vec<String> = publishes(sim.recv_all("w"))
        .into_iter()
        .filter(|p| !p.dup)
        .map(|p| p.topic.as_str().to_string())
        .collect();
    assert_eq!(
        wills,
        Vec::<String>::new(),
        "no will published twice or late"
    );
}

/// [MQTT-3.1.2-12]: a connection without a will publishes nothing when it ends.
#[test]
fn no_will_flag_no_will_message() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "#", QoS::AtLeastOnce);
    accepted(&mut sim, "a", clean("a"));
    sim.drop_connection("a");
    accepted(&mut sim, "b", clean("b"));
    sim.send_bytes("b", &[0xF0, 0x00]);
    assert!(sim.is_closed("b"));
    assert_eq!(sim.recv_all("w"), []);
}

/// [MQTT-3.1.2-16]: Will Retain 0: the will is published as a non-retained message.
#[test]
fn will_retain_0_publishes_a_non_retained_will() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "will/#", QoS::AtLeastOnce);
    accepted(
        &mut sim,
        "d",
        with_will(clean("d"), "will/d", QoS::AtLeastOnce, false),
    );
    sim.drop_connection("d");
    let will = publish_of(sim.recv("w"));
    assert!(!will.retain);
    assert_eq!(will.delivery.qos(), QoS::AtLeastOnce);
    assert_eq!(sim.engine.retained_count(), 0);
    subscriber(&mut sim, "late", "will/#", QoS::AtLeastOnce);
    assert_eq!(sim.recv("late"), None);
}

/// [MQTT-3.1.2-17]: Will Retain 1: the will is published as a retained message, which a later
/// subscriber receives with RETAIN set.
#[test]
fn will_retain_1_publishes_a_retained_will() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "will/#", QoS::AtLeastOnce);
    accepted(
        &mut sim,
        "d",
        with_will(clean("d"), "will/d", QoS::ExactlyOnce, true),
    );
    sim.drop_connection("d");
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);
    assert_eq!(sim.engine.retained_count(), 1);
    subscriber(&mut sim, "late", "will/#", QoS::ExactlyOnce);
    let will = publish_of(sim.recv("late"));
    assert!(will.retain);
    assert_eq!(will.delivery.qos(), QoS::ExactlyOnce);
    assert_eq!(will.topic.as_str(), "will/d");
}

// ----- keep alive -----

/// [MQTT-3.1.2-24], [MQTT-3.1.2-23]: a client that sends a packet (a PINGREQ will do) within each
/// keep alive stays connected; one silent for one and a half keep alives is disconnected as if the
/// network had failed (no packet, will published). Keep alive 0 means no such limit.
#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let mut sim = sim();
    let mut watcher = clean("w");
    watcher.keep_alive = 0;
    accepted(&mut sim, "w", watcher);
    sim.subscribe("w", "will/#", QoS::AtMostOnce);
    let mut c = with_will(clean("k"), "will/k", QoS::AtMostOnce, false);
    c.keep_alive = 10;
    accepted(&mut sim, "k", c);

    for _ in 0..5 {
        sim.advance(Duration::from_secs(14));
        sim.send("k", Packet::PingReq);
        assert_eq!(sim.recv("k"), Some(Packet::PingResp));
    }
    sim.advance(Duration::from_millis(14_999));
    assert!(!sim.is_closed("k"));
    sim.advance(Duration::from_millis(1));
    assert!(sim.is_closed("k"));
    assert_eq!(sim.recv_all("k"), [], "3.1.1: closed without a packet");
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);

    sim.advance(Duration::from_secs(24 * 3600));
    assert!(!sim.is_closed("w"), "keep alive 0: no limit");
}

// ----- 3.1.3 client identifiers -----

/// [MQTT-3.1.3-2]: the Client Identifier picks the session: each client resumes its own.
#[test]
fn the_client_id_identifies_the_session() {
    let mut sim = sim();
    for (name, f) in [("a", "for/a"), ("b", "for/b")] {
        accepted(&mut sim, name, persistent(name));
        sim.subscribe(name, f, QoS::AtLeastOnce);
        sim.drop_connection(name);
    }
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "for/a", QoS::AtLeastOnce, "A");
    sim.publish("p", "for/b", QoS::AtLeastOnce, "B");
    assert!(accepted(&mut sim, "b", persistent("b")));
    assert_eq!(payloads(&sim.recv_all("b")), ["B"]);
    assert!(accepted(&mut sim, "a", persistent("a")));
    assert_eq!(payloads(&sim.recv_all("a")), ["A"]);
}

/// [MQTT-3.1.3-5]: Client Identifiers of 1 to 23 bytes of 0-9, a-z, A-Z are accepted.
#[test]
fn short_alphanumeric_client_ids_are_accepted() {
    let mut sim = sim();
    for id in [
        "0123456789abcdefghijklm",
        "nopqrstuvwxyzABCDEFGHIJ",
        "KLMNOPQRSTUVWXYZ",
        "a",
        "Z",
        "7",
    ] {
        assert!((1..=23).contains(&id.len()));
        accepted(&mut sim, id, clean(id));
        accepted(&mut sim, &format!("{id}-p"), persistent(id));
    }
}

/// [MQTT-3.1.3-6]: clients with a zero-byte Client Identifier each get a unique one and are processed
/// as if they had sent it: two of them are separate sessions, both connected.
#[test]
fn zero_byte_client_ids_get_unique_identifiers() {
    let mut sim = sim();
    accepted(&mut sim, "anon1", clean(""));
    accepted(&mut sim, "anon2", clean(""));
    assert!(!sim.is_closed("anon1") && !sim.is_closed("anon2"));
    assert_eq!(sim.engine.session_count(), 2);
    let ids: Vec<String> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ClientConnected { client_id, .. } => Some(client_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] != ids[1] && !ids[0].is_empty() && !ids[1].is_empty());
    for name in ["anon1", "anon2"] {
        sim.subscribe(name, "t", QoS::AtMostOnce);
    }
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::AtMostOnce, "both");
    assert_eq!(payloads(&sim.recv_all("anon1")), ["both"]);
    assert_eq!(payloads(&sim.recv_all("anon2")), ["both"]);
}

/// [MQTT-3.1.3-7], [MQTT-3.1.3-8]: a zero-byte Client Identifier with CleanSession 0 gets CONNACK
/// return code 0x02 and the connection is closed.
#[test]
fn a_zero_byte_client_id_without_clean_session_is_rejected() {
    let mut sim = sim();
    let ack = connack(sim.connect_with("c", persistent("")));
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(ack.reason.to_v3_connack(), 2);
    assert!(!ack.session_present);
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.session_count(), 0);
}

/// [MQTT-3.1.3-9]: a Client Identifier the broker rejects (here: longer than its limit) gets CONNACK
/// return code 0x02 and the connection is closed.
#[test]
fn a_rejected_client_id_gets_return_code_2() {
    let mut sim = Sim::new(Config {
        max_client_id_length: 23,
        ..Config::default()
    });
    let id = "x".repeat(24);
    let ack = connack(sim.connect_with("c", clean(&id)));
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(ack.reason.to_v3_connack(), 2);
    assert!(!ack.session_present);
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.session_count(), 0);
}

// ----- 3.1.4 CONNECT actions, 3.2 CONNACK -----

/// [MQTT-3.1.4-2]: a CONNECT with the Client Identifier of a connected client disconnects the
/// existing one (3.1.1: closed without a packet, so its will is published); the new one is served.
#[test]
fn a_second_connection_with_the_same_client_id_takes_over() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "will/#", QoS::AtLeastOnce);
    accepted(
        &mut sim,
        "dev",
        with_will(persistent("dev"), "will/dev", QoS::AtLeastOnce, false),
    );
    sim.subscribe("dev", "cmd", QoS::AtLeastOnce);
    assert!(accepted(&mut sim, "dev-2", persistent("dev")));
    assert!(sim.is_closed("dev"));
    assert_eq!(sim.recv_all("dev"), []);
    assert_eq!(payloads(&sim.recv_all("w")), ["gone"]);
    assert!(!sim.is_closed("dev-2"));
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "cmd", QoS::AtLeastOnce, "go");
    assert_eq!(payloads(&sim.recv_all("dev-2")), ["go"]);
}

/// [MQTT-3.1.4-4]: a valid CONNECT is acknowledged with return code 0, with a will, a user name and a
/// password too.
#[test]
fn a_valid_connect_gets_return_code_0() {
    let mut sim = sim();
    let mut c = with_will(clean("c"), "will/c", QoS::ExactlyOnce, true);
    c.username = Some("user".into());
    c.password = Some(Bytes::from_static(b"secret"));
    let ack = connack(sim.connect_with("c", c));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(ack.reason.to_v3_connack(), 0);
    assert!(!sim.is_closed("c"));
}

/// [MQTT-3.1.4-5]: nothing a client sends after a CONNECT the broker rejects is processed: neither
/// after a refused Client Identifier nor while an authenticator is still deciding and then refuses.
#[test]
fn nothing_after_a_rejected_connect_is_processed() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "#", QoS::AtMostOnce);
    sim.open("c");
    let mut bytes = connect_bytes(0x00, &field(b""));
    bytes.extend(publish_bytes(0x31, b"r", None, b"x"));
    bytes.extend(subscribe_bytes(0x82, 1, b"#", 0));
    sim.send_bytes("c", &bytes);
    assert_eq!(
        connack(sim.recv("c")).reason,
        ReasonCode::ClientIdentifierNotValid
    );
    assert_eq!(sim.recv("c"), None);
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.retained_count(), 0);
    assert_eq!(sim.recv_all("w"), []);

    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    assert_eq!(sim.connect_with("c", clean("c")), None);
    sim.send_bytes("c", &publish_bytes(0x31, b"r", None, b"x"));
    sim.send("c", subscribe_packet(1, &[("#", QoS::AtMostOnce)]));
    let conn = sim.conn("c");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Deny {
            reason: ReasonCode::NotAuthorized,
        },
    });
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::NotAuthorized);
    assert_eq!(sim.recv("c"), None, "no SUBACK");
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.retained_count(), 0);
    assert_eq!(sim.engine.subscription_count(), 0);
}

/// [MQTT-3.2.0-1]: CONNACK is the first packet the broker sends, also when a resumed session has
/// messages waiting and when the client sent more behind its CONNECT.
#[test]
fn connack_is_the_first_packet_sent() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::AtLeastOnce, "waiting");
    sim.open("s");
    let mut bytes = BytesMut::new();
    for packet in [
        Packet::Connect(Box::new(persistent("s"))),
        Packet::PingReq,
        subscribe_packet(7, &[("u", QoS::AtMostOnce)]),
    ] {
        if let Err(e) = packet.encode(V3_1_1, &mut bytes) {
            panic!("{e}");
        }
    }
    sim.send_bytes("s", &bytes);
    let got = sim.recv_all("s");
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.session_present),
        "{got:?}"
    );
    assert_eq!(payloads(&got), ["waiting"]);
    assert_eq!(got.len(), 4, "{got:?}");

    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    assert_eq!(sim.connect_with("c", clean("c")), None);
    sim.send("c", Packet::PingReq);
    assert_eq!(sim.recv("c"), None, "nothing before CONNACK");
    let conn = sim.conn("c");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Allow,
    });
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
    assert_eq!(sim.recv("c"), Some(Packet::PingResp));
}

/// [MQTT-3.2.2-4], [MQTT-3.2.2-5]: a CONNACK with a non-zero return code has Session Present 0 even
/// when the session exists, and the connection is closed after it.
#[test]
fn a_refusing_connack_has_session_present_0_and_closes() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    let allow = |sim: &mut Sim, name: &str, decision: AuthDecision| {
        let conn = sim.conn(name);
        sim.input(Input::AuthDecided { conn, decision });
        connack(sim.recv(name))
    };
    sim.connect_with("s", persistent("s"));
    assert_eq!(
        allow(&mut sim, "s", AuthDecision::Allow).reason,
        ReasonCode::Success
    );
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    for (reason, code) in [
        (ReasonCode::BadUserNameOrPassword, 4),
        (ReasonCode::NotAuthorized, 5),
        (ReasonCode::ServerUnavailable, 3),
    ] {
        sim.connect_with("s", persistent("s"));
        let ack = allow(&mut sim, "s", AuthDecision::Deny { reason });
        assert_eq!(ack.reason.to_v3_connack(), code);
        assert!(!ack.session_present, "{reason}");
        assert!(sim.is_closed("s"));
    }
    sim.connect_with("s", persistent("s"));
    assert!(allow(&mut sim, "s", AuthDecision::Allow).session_present);
}

/// [MQTT-3.2.2-6], [MQTT-3.1.4-1]: a CONNECT no return code fits (malformed: a field running past
/// the packet, trailing bytes, a bad remaining length) closes the connection without a CONNACK.
#[test]
fn a_malformed_connect_closes_without_connack() {
    // The client identifier claims more bytes than the packet has.
    closed_without_connack(&connect_bytes(0x02, &[0x00, 0x05, b'c']));
    let mut longer = connect_bytes(0x02, &field(b"c"));
    longer[1] += 1;
    longer.push(0);
    closed_without_connack(&longer);
    closed_without_connack(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    closed_without_connack(&[0x10, 0x02, 0x00, 0x04]);
}

// ----- 3.3 PUBLISH -----

/// [MQTT-3.3.1-1], [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-4.3.3-1]: on resumption the broker resends
/// every unacknowledged PUBLISH with DUP 1 and every unacknowledged PUBREL, under their original
/// identifiers, in their original order; a QoS 2 message whose PUBREL was sent is not published again.
#[test]
fn unacknowledged_publishes_and_pubrels_are_resent_in_order() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::AtLeastOnce, "m1");
    sim.publish("p", "t", QoS::ExactlyOnce, "m2");
    sim.publish("p", "t", QoS::ExactlyOnce, "m3");
    sim.publish("p", "t", QoS::AtLeastOnce, "m4");
    let first = publishes(sim.recv_all("s"));
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|p| !p.dup));
    let ids: Vec<PacketId> = first
        .iter()
        .map(|p| p.delivery.packet_id().unwrap_or_else(|| panic!("no id")))
        .collect();
    sim.send("s", Packet::PubRec(Ack::new(ids[1])));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(ids[1]))));
    sim.drop_connection("s");

    assert!(accepted(&mut sim, "s", persistent("s")));
    let resent = sim.recv_all("s");
    assert_eq!(resent.len(), 4, "{resent:?}");
    for (i, packet) in resent.iter().enumerate() {
        match packet {
            Packet::PubRel(rel) => {
                assert_eq!(i, 1);
                assert_eq!(rel.packet_id, ids[1]);
            }
            Packet::Publish(p) => {
                assert!(p.dup, "{p:?}");
                assert_eq!(p.delivery, first[i].delivery);
                assert_eq!(p.payload, first[i].payload);
            }
            other => panic!("{other:?}"),
        }
    }
    // Completing the flows leaves nothing to resend.
    sim.send("s", Packet::PubAck(Ack::new(ids[0])));
    sim.send("s", Packet::PubComp(Ack::new(ids[1])));
    sim.send("s", Packet::PubRec(Ack::new(ids[2])));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(ids[2]))));
    sim.send("s", Packet::PubComp(Ack::new(ids[2])));
    sim.send("s", Packet::PubAck(Ack::new(ids[3])));
    sim.drop_connection("s");
    assert!(accepted(&mut sim, "s", persistent("s")));
    assert_eq!(sim.recv_all("s"), []);
}

/// [MQTT-3.3.1-3]: the DUP flag of an incoming PUBLISH is not passed on: subscribers get a first
/// delivery with DUP 0.
#[test]
fn incoming_dup_is_not_propagated() {
    let mut sim = sim();
    subscriber(&mut sim, "s1", "t", QoS::AtLeastOnce);
    subscriber(&mut sim, "s2", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    for delivery in [Delivery::AtLeastOnce(pid(1)), Delivery::ExactlyOnce(pid(2))] {
        let mut p = message("t", delivery, "m");
        p.dup = true;
        sim.send("p", Packet::Publish(p));
    }
    let got: Vec<Publish> = publishes(sim.recv_all("s1"))
        .into_iter()
        .chain(publishes(sim.recv_all("s2")))
        .collect();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|p| !p.dup), "{got:?}");
}

/// [MQTT-3.3.1-4]: a PUBLISH with both QoS bits set closes the connection.
#[test]
fn publish_with_qos_3_closes_the_connection() {
    violation_closes(&publish_bytes(0x36, b"t", Some(1), b"x"));
    violation_closes(&publish_bytes(0x37, b"t", Some(1), b"x"));
}

/// [MQTT-3.3.1-5], [MQTT-3.3.1-8]: a retained PUBLISH is stored with its QoS and delivered to later
/// subscribers with RETAIN 1, at the lower of its QoS and the subscription's.
#[test]
fn a_retained_message_is_stored_with_its_qos() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("r/2", Delivery::ExactlyOnce(pid(1)), "two")),
    );
    sim.send("p", Packet::PubRel(Ack::new(pid(1))));
    sim.send(
        "p",
        Packet::Publish(retained("r/1", Delivery::AtLeastOnce(pid(2)), "one")),
    );
    for (name, qos, expected) in [
        ("s2", QoS::ExactlyOnce, [QoS::AtLeastOnce, QoS::ExactlyOnce]),
        ("s1", QoS::AtLeastOnce, [QoS::AtLeastOnce, QoS::AtLeastOnce]),
        ("s0", QoS::AtMostOnce, [QoS::AtMostOnce, QoS::AtMostOnce]),
    ] {
        subscriber(&mut sim, name, "r/+", qos);
        let mut got: Vec<(String, QoS, bool)> = publishes(sim.recv_all(name))
            .into_iter()
            .map(|p| (p.topic.as_str().to_string(), p.delivery.qos(), p.retain))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("r/1".to_string(), expected[0], true),
                ("r/2".to_string(), expected[1], true)
            ],
            "{name}"
        );
    }
}

/// [MQTT-3.3.1-6]: a new subscription gets the last retained message of each matching topic, once.
#[test]
fn a_new_subscription_gets_the_last_retained_message_of_each_topic() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    for (t, v) in [
        ("s/1", "old"),
        ("s/1", "new"),
        ("s/2", "two"),
        ("x/1", "other"),
    ] {
        sim.send("p", Packet::Publish(retained(t, Delivery::AtMostOnce, v)));
    }
    subscriber(&mut sim, "s", "s/+", QoS::AtMostOnce);
    let mut got: Vec<(String, String, bool)> = publishes(sim.recv_all("s"))
        .into_iter()
        .map(|p| {
            (
                p.topic.as_str().to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
                p.retain,
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("s/1".to_string(), "new".to_string(), true),
            ("s/2".to_string(), "two".to_string(), true)
        ]
    );
}

/// [MQTT-3.3.1-7]: a retained QoS 0 message replaces the message retained before it.
#[test]
fn a_retained_qos0_message_replaces_the_previous_one() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtLeastOnce(pid(1)), "qos1")),
    );
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtMostOnce, "qos0")),
    );
    assert_eq!(sim.engine.retained_count(), 1);
    subscriber(&mut sim, "s", "r", QoS::AtLeastOnce);
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(&got[0].payload[..], b"qos0");
    assert_eq!(got[0].delivery.qos(), QoS::AtMostOnce);
}

/// [MQTT-3.3.1-9]: a message sent because it matches an established subscription has RETAIN 0, even
/// if it was published retained.
#[test]
fn established_subscriptions_get_retain_0() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "r/#", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("r/a", Delivery::AtLeastOnce(pid(1)), "x")),
    );
    sim.send(
        "p",
        Packet::Publish(retained("r/b", Delivery::AtMostOnce, "y")),
    );
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !p.retain), "{got:?}");
}

/// [MQTT-3.3.1-10], [MQTT-3.3.1-11]: a retained PUBLISH with an empty payload is delivered to current
/// subscribers as usual, removes the retained message, and is not itself stored: later subscribers
/// get nothing.
#[test]
fn an_empty_retained_message_is_forwarded_and_clears_the_topic() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtMostOnce, "v")),
    );
    subscriber(&mut sim, "s", "r", QoS::AtLeastOnce);
    assert_eq!(payloads(&sim.recv_all("s")), ["v"]);
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtLeastOnce(pid(1)), "")),
    );
    let got = publish_of(sim.recv("s"));
    assert!(got.payload.is_empty());
    assert_eq!(sim.engine.retained_count(), 0);
    assert!(!sim.store.state.retained.contains_key("r"));
    subscriber(&mut sim, "late", "r", QoS::AtLeastOnce);
    assert_eq!(sim.recv("late"), None);

    // An empty retained message on a topic with nothing retained is not stored either.
    sim.send(
        "p",
        Packet::Publish(retained("e", Delivery::AtMostOnce, "")),
    );
    assert_eq!(sim.engine.retained_count(), 0);
    subscriber(&mut sim, "late2", "e", QoS::AtLeastOnce);
    assert_eq!(sim.recv("late2"), None);
}

/// [MQTT-3.3.1-12]: a PUBLISH with RETAIN 0 is neither stored nor removes or replaces the retained
/// message (empty payload included).
#[test]
fn a_non_retained_publish_leaves_the_retained_message_alone() {
    let mut sim = sim();
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtMostOnce, "kept")),
    );
    sim.publish("p", "r", QoS::AtLeastOnce, "live");
    sim.publish("p", "r", QoS::AtMostOnce, "");
    sim.publish("p", "n", QoS::AtLeastOnce, "not retained");
    assert_eq!(sim.engine.retained_count(), 1);
    subscriber(&mut sim, "s", "#", QoS::AtLeastOnce);
    assert_eq!(payloads(&sim.recv_all("s")), ["kept"]);
}

/// [MQTT-3.3.2-1], [MQTT-3.3.2-2], [MQTT-4.7.1-1], [MQTT-4.7.3-1]: a PUBLISH without a topic name, with
/// an empty one, or with wildcards in it, closes the connection and is not delivered.
#[test]
fn publish_topic_names_must_be_present_and_free_of_wildcards() {
    violation_closes(&[0x30, 0x01, 0x00]);
    violation_closes(&publish_bytes(0x30, b"", None, b"x"));
    violation_closes(&publish_bytes(0x32, b"", Some(1), b"x"));
    for bad in [&b"a/+"[..], b"#", b"a/#", b"+", b"a+b", b"a/b#"] {
        violation_closes(&publish_bytes(0x30, bad, None, b"x"));
        violation_closes(&publish_bytes(0x32, bad, Some(1), b"x"));
    }
}

/// [MQTT-3.3.2-3]: the topic name sent to a subscriber is the published one, which matches the
/// subscription's filter; non-matching names are not sent.
#[test]
fn the_topic_name_sent_matches_the_subscription() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "a/+/c", QoS::AtMostOnce);
    accepted(&mut sim, "p", clean("p"));
    for t in ["a/b/c", "a/b/d", "a/b/c/d", "a//c", "b/b/c"] {
        sim.publish("p", t, QoS::AtMostOnce, t);
    }
    let got: Vec<String> = publishes(sim.recv_all("s"))
        .into_iter()
        .map(|p| p.topic.as_str().to_string())
        .collect();
    assert_eq!(got, ["a/b/c", "a//c"]);
}

/// [MQTT-3.3.5-2]: a PUBLISH the broker does not allow (a topic deeper than its limit, a QoS above
/// its maximum, RETAIN when it keeps no retained messages) is not acknowledged: the connection is
/// closed and the message goes nowhere.
#[test]
fn a_refused_publish_closes_the_connection_instead_of_being_acknowledged() {
    for (config, p) in [
        (
            Config {
                max_topic_levels: 2,
                ..Config::default()
            },
            message("a/b/c", Delivery::AtLeastOnce(pid(1)), "x"),
        ),
        (
            Config {
                max_qos: QoS::AtLeastOnce,
                ..Config::default()
            },
            message("a", Delivery::ExactlyOnce(pid(1)), "x"),
        ),
        (
            Config {
                retain_available: false,
                ..Config::default()
            },
            retained("a", Delivery::AtLeastOnce(pid(1)), "x"),
        ),
    ] {
        let mut sim = Sim::new(config);
        subscriber(&mut sim, "s", "#", QoS::AtMostOnce);
        accepted(&mut sim, "p", clean("p"));
        sim.send("p", Packet::Publish(p));
        assert!(sim.is_closed("p"));
        assert_eq!(sim.recv_all("p"), [], "not acknowledged");
        assert_eq!(sim.recv_all("s"), []);
    }
}

// ----- 3.8 SUBSCRIBE, 3.9 SUBACK -----

/// [MQTT-3.8.3-1]: a SUBSCRIBE filter that is not UTF-8 closes the connection; nothing is subscribed.
#[test]
fn subscribe_filters_must_be_utf8() {
    for bad in [&b"a/\xFF"[..], b"\xED\xA0\x80/#", b"\xC0\xAF"] {
        let sim = violation_closes(&subscribe_bytes(0x82, 1, bad, 0));
        assert_eq!(sim.engine.subscription_count(), 1, "only the watcher's");
    }
}

/// [MQTT-3.8.3-2]: with wildcard subscriptions switched off, a filter with wildcards is refused
/// (SUBACK 0x80) and others in the same SUBSCRIBE are granted.
#[test]
fn wildcard_filters_are_refused_when_wildcards_are_off() {
    let mut sim = Sim::new(Config {
        wildcard_subscriptions: false,
        ..Config::default()
    });
    accepted(&mut sim, "c", clean("c"));
    sim.send(
        "c",
        subscribe_packet(
            1,
            &[
                ("a/#", QoS::AtLeastOnce),
                ("a/b", QoS::AtLeastOnce),
                ("+", QoS::AtMostOnce),
            ],
        ),
    );
    let codes: Vec<u8> = suback_of(sim.recv("c"))
        .reasons
        .iter()
        .map(|r| r.to_v3_suback())
        .collect();
    assert_eq!(codes, [0x80, 0x01, 0x80]);
    assert_eq!(sim.engine.subscription_count(), 1);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "a/c", QoS::AtMostOnce, "no");
    sim.publish("p", "a/b", QoS::AtMostOnce, "yes");
    assert_eq!(payloads(&sim.recv_all("c")), ["yes"]);
}

/// [MQTT-3.8.3-3]: a SUBSCRIBE without any topic filter closes the connection.
#[test]
fn subscribe_without_filters_closes_the_connection() {
    violation_closes(&[0x82, 0x02, 0x00, 0x01]);
}

/// [MQTT-3.8.3-4]: a SUBSCRIBE with reserved option bits set or QoS 3 is malformed: connection
/// closed, nothing subscribed.
#[test]
fn subscribe_reserved_bits_or_qos_3_close_the_connection() {
    for options in [0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFC] {
        let sim = violation_closes(&subscribe_bytes(0x82, 1, b"t", options));
        assert_eq!(sim.engine.subscription_count(), 1, "only the watcher's");
    }
}

/// [MQTT-3.8.4-3]: subscribing again to an identical filter replaces the subscription (one, at the
/// new QoS), resends the retained messages, and does not interrupt messages already on their way.
#[test]
fn resubscribing_replaces_the_subscription_and_resends_retained_messages() {
    let mut sim = Sim::new(Config {
        max_inflight: 1,
        ..Config::default()
    });
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(retained("t", Delivery::AtMostOnce, "r")),
    );
    subscriber(&mut sim, "s", "t", QoS::AtLeastOnce);
    assert_eq!(payloads(&sim.recv_all("s")), ["r"]);
    for m in ["1", "2", "3"] {
        sim.publish("p", "t", QoS::AtLeastOnce, m);
    }
    let first = publish_of(sim.recv("s"));
    assert_eq!(&first.payload[..], b"1");

    sim.send("s", subscribe_packet(9, &[("t", QoS::ExactlyOnce)]));
    assert_eq!(
        suback_of(sim.recv("s")).reasons,
        [ReasonCode::GrantedQoS2],
        "the new QoS"
    );
    assert_eq!(sim.engine.subscription_count(), 1);

    // The flow goes on: the messages already accepted follow once the inflight one is acknowledged,
    // and the retained message is sent again (queued behind them).
    let mut rest = publishes(sim.recv_all("s"))
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect::<Vec<_>>();
    let mut ack = first.delivery.packet_id();
    while let Some(id) = ack.take() {
        sim.send("s", Packet::PubAck(Ack::new(id)));
        for p in publishes(sim.recv_all("s")) {
            if let Some(id) = p.delivery.packet_id() {
                ack = Some(id);
            }
            rest.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    let retained_again = rest.iter().filter(|m| *m == "r").count();
    assert_eq!(retained_again, 1, "{rest:?}");
    rest.retain(|m| m != "r");
    assert_eq!(rest, ["2", "3"]);
    // New messages now go at QoS 2, once.
    sim.publish("p", "t", QoS::ExactlyOnce, "4");
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery.qos(), QoS::ExactlyOnce);
}

/// [MQTT-3.8.4-4], [MQTT-3.8.4-5], [MQTT-3.9.3-1]: a SUBSCRIBE with several filters is handled as
/// several SUBSCRIBEs answered by one SUBACK with one return code per filter, in order: the QoS
/// granted (possibly lower than asked) or 0x80.
#[test]
fn several_filters_in_one_subscribe_get_one_suback_in_order() {
    let mut sim = Sim::new(Config {
        max_qos: QoS::AtLeastOnce,
        max_topic_levels: 3,
        ..Config::default()
    });
    accepted(&mut sim, "c", clean("c"));
    sim.send(
        "c",
        subscribe_packet(
            4,
            &[
                ("q2", QoS::ExactlyOnce),
                ("deep/a/b/c", QoS::AtMostOnce),
                ("q0", QoS::AtMostOnce),
                ("q1/#", QoS::AtLeastOnce),
            ],
        ),
    );
    let ack = suback_of(sim.recv("c"));
    assert_eq!(sim.recv("c"), None, "one SUBACK");
    assert_eq!(ack.packet_id, pid(4));
    let codes: Vec<u8> = ack.reasons.iter().map(|r| r.to_v3_suback()).collect();
    assert_eq!(codes, [0x01, 0x80, 0x00, 0x01]);
    assert_eq!(sim.engine.subscription_count(), 3);
    accepted(&mut sim, "p", clean("p"));
    for t in ["q2", "q0", "q1/x"] {
        sim.publish("p", t, QoS::AtLeastOnce, t);
    }
    let got: Vec<(String, QoS)> = publishes(sim.recv_all("c"))
        .into_iter()
        .map(|p| (p.topic.as_str().to_string(), p.delivery.qos()))
        .collect();
    assert_eq!(
        got,
        [
            ("q2".to_string(), QoS::AtLeastOnce),
            ("q0".to_string(), QoS::AtMostOnce),
            ("q1/x".to_string(), QoS::AtLeastOnce)
        ]
    );
}

/// [MQTT-3.8.4-6]: each message goes out at the lower of its published QoS and the QoS granted.
#[test]
fn delivery_qos_is_the_minimum_of_published_and_granted() {
    let mut sim = sim();
    let levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for (i, granted) in levels.iter().enumerate() {
        subscriber(&mut sim, &format!("s{i}"), "t", *granted);
    }
    accepted(&mut sim, "p", clean("p"));
    for published in levels {
        sim.publish("p", "t", published, "m");
        if published == QoS::ExactlyOnce {
            let id = sim.recv_all("p").iter().find_map(|p| match p {
                Packet::PubRec(a) => Some(a.packet_id),
                _ => None,
            });
            if let Some(id) = id {
                sim.send("p", Packet::PubRel(Ack::new(id)));
            }
        }
    }
    for (i, granted) in levels.iter().enumerate() {
        let got: Vec<QoS> = publishes(sim.recv_all(&format!("s{i}")))
            .iter()
            .map(|p| p.delivery.qos())
            .collect();
        let expected: Vec<QoS> = levels.iter().map(|p| (*p).min(*granted)).collect();
        assert_eq!(got, expected, "granted {granted:?}");
    }
}

/// [MQTT-3.9.3-2]: 3.1.1 SUBACK return codes on the wire are only 0x00, 0x01, 0x02 and 0x80, whatever
/// the reason a subscription failed.
#[test]
fn suback_return_codes_on_the_wire_are_0_1_2_or_0x80() {
    let mut w = Wire::new(Config {
        wildcard_subscriptions: false,
        max_topic_levels: 2,
        shared_subscriptions: false,
        ..Config::default()
    });
    w.connect(1, "c");
    w.send(
        1,
        &subscribe_packet(
            1,
            &[
                ("a", QoS::AtMostOnce),
                ("a/#", QoS::AtLeastOnce),
                ("b", QoS::ExactlyOnce),
                ("x/y/z", QoS::AtLeastOnce),
                ("c", QoS::AtLeastOnce),
            ],
        ),
    );
    assert_eq!(
        w.take(1),
        [0x90, 0x07, 0x00, 0x01, 0x00, 0x80, 0x02, 0x80, 0x01]
    );
}

// ----- 3.10 UNSUBSCRIBE, 3.11 UNSUBACK -----

/// [MQTT-3.10.3-1]: an UNSUBSCRIBE filter that is not UTF-8 closes the connection.
#[test]
fn unsubscribe_filters_must_be_utf8() {
    for bad in [&b"a/\xFF"[..], b"\xED\xA0\x80/#", b"\xC0\xAF"] {
        violation_closes(&unsubscribe_bytes(0xA2, 1, bad));
    }
}

/// [MQTT-3.10.3-2]: an UNSUBSCRIBE without any topic filter closes the connection.
#[test]
fn unsubscribe_without_filters_closes_the_connection() {
    violation_closes(&[0xA2, 0x02, 0x00, 0x01]);
}

/// [MQTT-3.10.4-1]: UNSUBSCRIBE filters are compared character by character with the client's
/// filters: only an identical one is deleted; a filter that merely covers it deletes nothing.
#[test]
fn unsubscribe_compares_filters_character_by_character() {
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    sim.send(
        "c",
        subscribe_packet(1, &[("a/+", QoS::AtMostOnce), ("a/b", QoS::AtMostOnce)]),
    );
    suback_of(sim.recv("c"));
    sim.send(
        "c",
        unsubscribe_packet(2, &["a/#", "A/+", "a/+/", "+/b", "#"]),
    );
    unsuback_of(sim.recv("c"));
    assert_eq!(sim.engine.subscription_count(), 2);
    sim.send("c", unsubscribe_packet(3, &["a/+"]));
    unsuback_of(sim.recv("c"));
    assert_eq!(sim.engine.subscription_count(), 1);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "a/c", QoS::AtMostOnce, "gone");
    sim.publish("p", "a/b", QoS::AtMostOnce, "kept");
    assert_eq!(payloads(&sim.recv_all("c")), ["kept"]);
}

/// [MQTT-3.10.4-2], [MQTT-3.10.4-3]: after UNSUBSCRIBE no new messages are added for the client, but
/// QoS 1 and QoS 2 deliveries already started are completed.
#[test]
fn unsubscribing_stops_new_messages_but_completes_started_ones() {
    let mut sim = sim();
    accepted(&mut sim, "s", clean("s"));
    sim.send(
        "s",
        subscribe_packet(1, &[("one", QoS::AtLeastOnce), ("two", QoS::ExactlyOnce)]),
    );
    suback_of(sim.recv("s"));
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "one", QoS::AtLeastOnce, "q1");
    sim.publish("p", "two", QoS::ExactlyOnce, "q2");
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 2);
    let ids: Vec<PacketId> = got
        .iter()
        .map(|p| p.delivery.packet_id().unwrap_or_else(|| panic!("no id")))
        .collect();

    sim.send("s", unsubscribe_packet(2, &["one", "two"]));
    unsuback_of(sim.recv("s"));
    sim.publish("p", "one", QoS::AtLeastOnce, "late1");
    sim.publish("p", "two", QoS::ExactlyOnce, "late2");
    assert_eq!(sim.recv_all("s"), [], "nothing new");

    sim.send("s", Packet::PubAck(Ack::new(ids[0])));
    sim.send("s", Packet::PubRec(Ack::new(ids[1])));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(ids[1]))));
    sim.send("s", Packet::PubComp(Ack::new(ids[1])));
    assert_eq!(sim.recv_all("s"), []);
    assert!(!sim.is_closed("s"));
    sim.engine
        .check_invariants()
        .unwrap_or_else(|e| panic!("{e}"));
}

/// [MQTT-3.10.4-5]: UNSUBSCRIBE is answered with UNSUBACK even when no subscription was deleted.
#[test]
fn unsuback_even_when_nothing_was_deleted() {
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    sim.send("c", unsubscribe_packet(77, &["never/subscribed"]));
    assert_eq!(unsuback_of(sim.recv("c")).packet_id, pid(77));
}

/// [MQTT-3.10.4-6]: an UNSUBSCRIBE with several filters deletes each and is answered by one UNSUBACK.
#[test]
fn several_filters_in_one_unsubscribe_get_one_unsuback() {
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    sim.send(
        "c",
        subscribe_packet(
            1,
            &[
                ("a", QoS::AtMostOnce),
                ("b/#", QoS::AtMostOnce),
                ("c", QoS::AtMostOnce),
            ],
        ),
    );
    suback_of(sim.recv("c"));
    sim.send("c", unsubscribe_packet(2, &["a", "nothing", "b/#"]));
    assert_eq!(unsuback_of(sim.recv("c")).packet_id, pid(2));
    assert_eq!(sim.recv("c"), None, "one UNSUBACK");
    assert_eq!(sim.engine.subscription_count(), 1);
}

// ----- 3.14 DISCONNECT -----

/// [MQTT-3.14.4-1]: after DISCONNECT the connection is closed (the broker closes it too), and the
/// session of a clean client ends.
#[test]
fn the_connection_is_closed_after_disconnect() {
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    sim.send(
        "c",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert!(sim.is_closed("c"));
    assert_eq!(sim.recv_all("c"), []);
    assert_eq!(sim.engine.connection_count(), 0);
    assert_eq!(sim.engine.session_count(), 0);
}

/// [MQTT-3.14.4-2]: packets a client sends after its DISCONNECT are not processed.
#[test]
fn nothing_after_disconnect_is_processed() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "#", QoS::AtMostOnce);
    accepted(&mut sim, "c", clean("c"));
    let mut bytes = vec![0xE0, 0x00];
    bytes.extend(publish_bytes(0x31, b"r", None, b"x"));
    bytes.extend(subscribe_bytes(0x82, 1, b"#", 0));
    sim.send_bytes("c", &bytes);
    assert!(sim.is_closed("c"));
    assert_eq!(sim.recv_all("c"), []);
    assert_eq!(sim.recv_all("w"), []);
    assert_eq!(sim.engine.retained_count(), 0);
}

/// [MQTT-3.14.4-3]: on DISCONNECT the will is discarded unpublished.
#[test]
fn disconnect_discards_the_will() {
    let mut sim = sim();
    subscriber(&mut sim, "w", "will/#", QoS::AtLeastOnce);
    for c in [
        with_will(clean("c"), "will/c", QoS::AtLeastOnce, true),
        with_will(persistent("c"), "will/c", QoS::ExactlyOnce, false),
    ] {
        accepted(&mut sim, "c", c);
        sim.send(
            "c",
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        );
        assert!(sim.is_closed("c"));
    }
    sim.advance(Duration::from_secs(3600));
    assert_eq!(sim.recv_all("w"), []);
    assert_eq!(sim.engine.retained_count(), 0);
}

// ----- 4.1 sessions -----

/// [MQTT-4.1.0-1]: a persistent session keeps its state while the client is away: subscriptions,
/// QoS 1/2 messages queued and in flight, and QoS 2 messages received but not released.
#[test]
fn session_state_is_kept_for_the_whole_session() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::ExactlyOnce, "inflight");
    let inflight = publish_of(sim.recv("s"));
    sim.send(
        "s",
        Packet::Publish(message("x", Delivery::ExactlyOnce(pid(40)), "received")),
    );
    assert_eq!(sim.recv("s"), Some(Packet::PubRec(Ack::new(pid(40)))));
    sim.drop_connection("s");
    sim.publish("p", "t", QoS::AtLeastOnce, "queued");
    sim.advance(Duration::from_secs(7 * 24 * 3600));

    assert!(accepted(&mut sim, "s", persistent("s")));
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].delivery, inflight.delivery);
    assert!(got[0].dup);
    assert_eq!(&got[1].payload[..], b"queued");
    // The QoS 2 message it sent before is still known: a resend is not a new message.
    let mut again = message("x", Delivery::ExactlyOnce(pid(40)), "received");
    again.dup = true;
    subscriber(&mut sim, "x", "x", QoS::AtLeastOnce);
    sim.send("s", Packet::Publish(again));
    assert_eq!(sim.recv("s"), Some(Packet::PubRec(Ack::new(pid(40)))));
    sim.send("s", Packet::PubRel(Ack::new(pid(40))));
    assert_eq!(sim.recv("s"), Some(Packet::PubComp(Ack::new(pid(40)))));
    assert_eq!(sim.recv_all("x"), []);
}

/// [MQTT-4.1.0-2]: a session lasts at least as long as its connection, however short the broker's
/// session expiry and however long the connection.
#[test]
fn a_session_lasts_as_long_as_its_connection() {
    let mut sim = Sim::new(Config {
        max_session_expiry: 5,
        ..Config::default()
    });
    for (name, mut c) in [("s", persistent("s")), ("c", clean("c"))] {
        c.keep_alive = 0;
        accepted(&mut sim, name, c);
        sim.subscribe(name, "t", QoS::AtLeastOnce);
    }
    sim.advance(Duration::from_secs(24 * 3600));
    assert_eq!(sim.engine.session_count(), 2);
    let mut p = clean("p");
    p.keep_alive = 0;
    accepted(&mut sim, "p", p);
    sim.publish("p", "t", QoS::AtLeastOnce, "still here");
    assert_eq!(payloads(&sim.recv_all("s")), ["still here"]);
    assert_eq!(payloads(&sim.recv_all("c")), ["still here"]);
}

// ----- 4.3 QoS flows -----

/// [MQTT-4.3.2-2]: after PUBACK, a PUBLISH with the same packet identifier is a new message, DUP or
/// not: delivered and acknowledged again.
#[test]
fn after_puback_the_same_packet_id_is_a_new_message() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "t", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::AtLeastOnce(pid(7)), "first")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubAck(Ack::new(pid(7)))));
    let mut again = message("t", Delivery::AtLeastOnce(pid(7)), "second");
    again.dup = true;
    sim.send("p", Packet::Publish(again));
    assert_eq!(sim.recv("p"), Some(Packet::PubAck(Ack::new(pid(7)))));
    assert_eq!(payloads(&sim.recv_all("s")), ["first", "second"]);
}

/// [MQTT-4.3.3-1]: towards a subscriber the broker sends QoS 2 with a fresh identifier and DUP 0,
/// answers PUBREC with a PUBREL carrying that identifier, and then resends only the PUBREL (never the
/// PUBLISH) until PUBCOMP.
#[test]
fn the_broker_as_qos2_sender() {
    let mut sim = sim();
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "t", QoS::ExactlyOnce, "m");
    let p = publish_of(sim.recv("s"));
    assert_eq!(p.delivery.qos(), QoS::ExactlyOnce);
    assert!(!p.dup);
    let id = p.delivery.packet_id().unwrap_or_else(|| panic!("no id"));
    sim.send("s", Packet::PubRec(Ack::new(id)));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(id))));
    for _ in 0..2 {
        sim.drop_connection("s");
        assert!(accepted(&mut sim, "s", persistent("s")));
        assert_eq!(sim.recv_all("s"), [Packet::PubRel(Ack::new(id))]);
    }
    sim.send("s", Packet::PubComp(Ack::new(id)));
    sim.drop_connection("s");
    assert!(accepted(&mut sim, "s", persistent("s")));
    assert_eq!(sim.recv_all("s"), []);
}

/// [MQTT-4.3.3-2]: as QoS 2 receiver the broker answers PUBREC, answers a resent PUBLISH with PUBREC
/// again without delivering it twice, answers PUBREL with PUBCOMP, and after that treats the
/// identifier as new.
#[test]
fn the_broker_as_qos2_receiver() {
    let mut sim = sim();
    subscriber(&mut sim, "s", "t", QoS::ExactlyOnce);
    accepted(&mut sim, "p", clean("p"));
    let mut first = message("t", Delivery::ExactlyOnce(pid(3)), "once");
    sim.send("p", Packet::Publish(first.clone()));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(3)))));
    first.dup = true;
    for _ in 0..3 {
        sim.send("p", Packet::Publish(first.clone()));
        assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(3)))));
    }
    sim.send("p", Packet::PubRel(Ack::new(pid(3))));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(3)))));
    assert_eq!(payloads(&sim.recv_all("s")), ["once"]);
    sim.send(
        "p",
        Packet::Publish(message("t", Delivery::ExactlyOnce(pid(3)), "new")),
    );
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(3)))));
    assert_eq!(payloads(&sim.recv_all("s")), ["new"]);
}

// ----- 4.5 message receipt, 4.6 ordering -----

/// [MQTT-4.5.0-1]: a message the broker accepts is added to every session with a matching
/// subscription, connected or not (QoS 1/2), and to no other.
#[test]
fn an_accepted_message_goes_to_every_matching_session() {
    let mut sim = sim();
    subscriber(&mut sim, "online", "a/#", QoS::AtLeastOnce);
    accepted(&mut sim, "away", persistent("away"));
    sim.subscribe("away", "a/+", QoS::ExactlyOnce);
    sim.drop_connection("away");
    subscriber(&mut sim, "other", "b/#", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", "a/x", QoS::AtLeastOnce, "m");
    assert_eq!(payloads(&sim.recv_all("online")), ["m"]);
    assert_eq!(sim.recv_all("other"), []);
    assert!(accepted(&mut sim, "away", persistent("away")));
    assert_eq!(payloads(&sim.recv_all("away")), ["m"]);
}

/// [MQTT-4.5.0-2]: a message the client does not acknowledge stays unacknowledged: it holds its place
/// in the inflight window and is resent on resumption.
#[test]
fn unacknowledged_deliveries_stay_owed() {
    let mut sim = Sim::new(Config {
        max_inflight: 2,
        ..Config::default()
    });
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    for m in ["1", "2", "3"] {
        sim.publish("p", "t", QoS::AtLeastOnce, m);
    }
    let got = publishes(sim.recv_all("s"));
    assert_eq!(got.len(), 2, "the third waits for an acknowledgement");
    sim.drop_connection("s");
    assert!(accepted(&mut sim, "s", persistent("s")));
    let again = publishes(sim.recv_all("s"));
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|p| p.dup));
    let id = again[0]
        .delivery
        .packet_id()
        .unwrap_or_else(|| panic!("no id"));
    sim.send("s", Packet::PubAck(Ack::new(id)));
    assert_eq!(payloads(&sim.recv_all("s")), ["3"]);
}

/// [MQTT-4.6.0-5], [MQTT-4.6.0-6]: topics are ordered: the messages one client publishes to a topic
/// reach each subscriber in the order received, per QoS and across QoS levels, through a narrow
/// inflight window and through an offline queue.
#[test]
fn messages_reach_subscribers_in_the_order_published() {
    let mut sim = Sim::new(Config {
        max_inflight: 1,
        ..Config::default()
    });
    accepted(&mut sim, "s", persistent("s"));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    subscriber(&mut sim, "s1", "t", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    let sent: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    let levels = [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtMostOnce];
    for (i, m) in sent.iter().enumerate() {
        if i == 15 {
            sim.drop_connection("s");
        }
        let qos = levels[i % 3];
        sim.publish("p", "t", qos, m);
        for packet in sim.recv_all("p") {
            if let Packet::PubRec(a) = packet {
                sim.send("p", Packet::PubRel(Ack::new(a.packet_id)));
            }
        }
    }
    assert!(accepted(&mut sim, "s", persistent("s")));
    for name in ["s", "s1"] {
        let mut got = Vec::new();
        loop {
            let batch = publishes(sim.recv_all(name));
            if batch.is_empty() {
                break;
            }
            // Each message is acknowledged once seen, so none comes twice: the copy resent (DUP) on
            // resumption is the first one this inbox holds.
            for p in batch {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
                match p.delivery {
                    Delivery::AtMostOnce => {}
                    Delivery::AtLeastOnce(id) => sim.send(name, Packet::PubAck(Ack::new(id))),
                    Delivery::ExactlyOnce(id) => {
                        sim.send(name, Packet::PubRec(Ack::new(id)));
                        sim.send(name, Packet::PubComp(Ack::new(id)));
                    }
                }
            }
        }
        // The offline session missed the QoS 0 messages published while it was away; the rest keep
        // their order.
        let expected: Vec<String> = sent
            .iter()
            .enumerate()
            .filter(|(i, _)| name == "s1" || *i < 15 || levels[i % 3] != QoS::AtMostOnce)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

// ----- 4.7 topics -----

/// [MQTT-4.7.1-2], [MQTT-4.7.1-3]: `#` only alone or after `/` and last, `+` only as a whole level;
/// a filter breaking either closes the connection, well-placed ones are granted.
#[test]
fn misplaced_wildcards_in_filters_close_the_connection() {
    for bad in [
        &b"a/#/b"[..],
        b"a#",
        b"a/b#",
        b"#/",
        b"##",
        b"+a",
        b"a/+b",
        b"a/b+/c",
        b"++",
    ] {
        let sim = violation_closes(&subscribe_bytes(0x82, 1, bad, 0));
        assert_eq!(sim.engine.subscription_count(), 1, "only the watcher's");
    }
    let mut sim = sim();
    accepted(&mut sim, "c", clean("c"));
    let good = ["#", "a/#", "/#", "+", "+/+", "a/+/c", "+/b/#", "/+", "a//+"];
    let entries: Vec<(&str, QoS)> = good.iter().map(|f| (*f, QoS::AtMostOnce)).collect();
    sim.send("c", subscribe_packet(1, &entries));
    assert_eq!(
        suback_of(sim.recv("c")).reasons,
        vec![ReasonCode::Success; good.len()]
    );
}

/// [MQTT-4.7.3-1]: empty topic filters close the connection (empty topic names: see
/// `publish_topic_names_must_be_present_and_free_of_wildcards`).
#[test]
fn empty_topic_filters_close_the_connection() {
    violation_closes(&subscribe_bytes(0x82, 1, b"", 0));
    violation_closes(&unsubscribe_bytes(0xA2, 1, b""));
}

/// [MQTT-4.7.3-3]: a topic name of 65535 bytes (the most a string holds) is routed like any other;
/// longer names and filters cannot be made.
#[test]
fn topics_of_up_to_65535_bytes() {
    let long = "a".repeat(65_535);
    assert!(TopicName::new("a".repeat(65_536)).is_err());
    assert!(TopicFilter::new(format!("{}/#", "a".repeat(65_534))).is_err());
    let mut sim = sim();
    subscriber(&mut sim, "s", &long, QoS::AtLeastOnce);
    subscriber(&mut sim, "all", "#", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.publish("p", &long, QoS::AtLeastOnce, "long");
    assert_eq!(publish_of(sim.recv("s")).topic.as_str(), long);
    assert_eq!(payloads(&sim.recv_all("all")), ["long"]);
}

/// [MQTT-4.7.3-4]: matching does no normalization: Unicode composition, case, trailing separators and
/// spaces all make different topics, and topic names are passed on byte for byte.
#[test]
fn topic_matching_does_not_normalize() {
    let mut sim = sim();
    subscriber(&mut sim, "nfc", "caf\u{e9}", QoS::AtMostOnce);
    subscriber(&mut sim, "lower", "a/b", QoS::AtMostOnce);
    accepted(&mut sim, "p", clean("p"));
    for t in [
        "cafe\u{301}",
        "CAF\u{c9}",
        "A/b",
        "a/b/",
        "a/b ",
        " a/b",
        "a//b",
    ] {
        sim.publish("p", t, QoS::AtMostOnce, t);
    }
    assert_eq!(sim.recv_all("nfc"), []);
    assert_eq!(sim.recv_all("lower"), []);
    sim.publish("p", "caf\u{e9}", QoS::AtMostOnce, "x");
    let p = publish_of(sim.recv("nfc"));
    assert_eq!(p.topic.as_str().as_bytes(), b"caf\xC3\xA9");
}

// ----- 4.8 errors -----

/// [MQTT-4.8.0-1]: a protocol violation (here a packet only servers send, and a PUBREL flagged as
/// malformed) closes that connection only; other clients carry on.
#[test]
fn a_protocol_violation_closes_only_that_connection() {
    for bytes in [
        vec![0x20, 0x02, 0x00, 0x00],
        vec![0x90, 0x03, 0x00, 0x01, 0x00],
        vec![0xB0, 0x02, 0x00, 0x01],
        vec![0xD0, 0x00],
    ] {
        let mut sim = violation_closes(&bytes);
        accepted(&mut sim, "p", clean("p"));
        sim.publish("p", "after", QoS::AtMostOnce, "fine");
        assert_eq!(payloads(&sim.recv_all("watcher")), ["fine"]);
    }
}

/// [MQTT-4.8.0-2]: a transient error while handling a packet (the storage batch holding its
/// acknowledgement failed) closes that connection, unacknowledged; other connections stay.
#[test]
fn a_transient_error_closes_the_connection_it_happened_on() {
    let mut sim = sim();
    subscriber(&mut sim, "other", "x", QoS::AtLeastOnce);
    accepted(&mut sim, "p", clean("p"));
    sim.auto_persist = false;
    sim.send(
        "p",
        Packet::Publish(retained("r", Delivery::AtLeastOnce(pid(1)), "v")),
    );
    let seq = *sim
        .pending_batches
        .last()
        .unwrap_or_else(|| panic!("no batch"));
    sim.fail_batch(seq);
    assert!(sim.is_closed("p"));
    assert_eq!(sim.recv_all("p"), [], "3.1.1: closed, never acknowledged");
    assert!(!sim.is_closed("other"));
    sim.auto_persist = true;
    sim.send("other", Packet::PingReq);
    assert_eq!(sim.recv("other"), Some(Packet::PingResp));
}
