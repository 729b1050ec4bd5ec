//! MQTT 5.0 normative statements, one test per statement or small group, through the simulation
//! harness. Each test names the statements it checks; `conformance/matrix/mqtt-5.0.toml` maps every
//! statement of the standard to the tests that check it.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{
    Ack, Auth, ConnAck, Connect, Delivery, Disconnect, Packet, PacketId, ProtocolVersion, Publish,
    QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionId,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, UserProperty, Will,
};
use cicada_engine::sim::expect::{auth_of, connack, publish_of, suback_of, unsuback_of};
use cicada_engine::sim::Sim;
use cicada_engine::{
    AuthDecision, Authentication, Config, ConnId, ConnMeta, DropReason, Engine, Event, Input,
    Instant,
};

use ProtocolVersion::V5;

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
    match TopicName::new(s) {
        Ok(t) => t,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn filter(s: &str) -> TopicFilter {
    match TopicFilter::new(s) {
        Ok(f) => f,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

/// The packet id of a QoS 1/2 PUBLISH.
fn id_of(p: &Publish) -> PacketId {
    match p.delivery.packet_id() {
        Some(id) => id,
        None => panic!("a QoS 0 PUBLISH has no packet id: {p:?}"),
    }
}

/// The PUBLISHes among `packets`.
fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn payloads(packets: Vec<Packet>) -> Vec<String> {
    publishes(packets)
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// A v5 CONNECT resuming (or creating) a session that outlives its connection by `expiry` seconds.
fn persistent(name: &str, expiry: u32) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

fn will(topic_name: &str, payload: &'static [u8]) -> Will {
    Will {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// A QoS 0 PUBLISH.
fn message(topic_name: &str, payload: &'static [u8]) -> Publish {
    Publish::new(topic(topic_name), Bytes::from_static(payload))
}

fn subscribe_packet(packet_id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id: pid(packet_id),
        properties: Default::default(),
        subscriptions: filters
            .iter()
            .map(|(f, qos)| Subscription {
                filter: filter(f),
                options: SubscriptionOptions {
                    qos: *qos,
                    ..Default::default()
                },
            })
            .collect(),
    }
}

fn unsubscribe_packet(packet_id: u16, filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(packet_id),
        properties: Default::default(),
        filters: filters.iter().map(|f| filter(f)).collect(),
    }
}

/// `name` got a DISCONNECT with `reason` as its last packet, and its connection is closed.
#[track_caller]
fn assert_disconnected(sim: &mut Sim, name: &str, reason: ReasonCode) {
    let got = sim.recv_all(name);
    match got.last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason, "{got:?}"),
        _ => panic!("{name}: expected DISCONNECT {reason:?}, got {got:?}"),
    }
    assert!(sim.is_closed(name), "{name} is still open");
}

/// `name` was closed without any packet from the broker (a malformed CONNECT gets no CONNACK).
#[track_caller]
fn assert_closed_silently(sim: &mut Sim, name: &str) {
    let got = sim.recv_all(name);
    assert!(got.is_empty(), "{name}: expected nothing, got {got:?}");
    assert!(sim.is_closed(name), "{name} is still open");
}

// ----- raw wire bytes -----

fn put_varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return;
        }
    }
}

/// A packet: the first byte, the remaining length, the body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
fn field(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A v5 CONNECT with `flags` (keep alive 60, no properties) followed by `payload` as given.
fn v5_connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend_from_slice(&[5, flags, 0, 60, 0]);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A v5 QoS 0 PUBLISH with a raw topic and raw properties.
fn v5_publish_bytes(topic: &[u8], properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    put_varint(properties.len(), &mut body);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// A User Property (0x26) with raw name and value.
fn user_property_bytes(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x26];
    out.extend(field(name));
    out.extend(field(value));
    out
}

/// Opens `name`, sends raw CONNECT bytes and returns everything the broker answered.
fn raw_connect(sim: &mut Sim, name: &str, bytes: &[u8]) -> Vec<Packet> {
    sim.open(name);
    sim.set_version(name, V5);
    sim.send_bytes(name, bytes);
    sim.recv_all(name)
}

/// Drives an engine directly and returns the raw bytes it writes back for `input`.
fn raw_answer(config: Config, input: &[u8]) -> Vec<u8> {
    let mut engine = match Engine::new(config, 7) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let conn = ConnId(1);
    let meta = ConnMeta {
        peer: "raw".into(),
        listener: "raw".into(),
        ..ConnMeta::default()
    };
    engine.handle(Instant::ZERO, Input::Accepted { conn, meta });
    engine.handle(
        Instant::ZERO,
        Input::Received {
            conn,
            data: Bytes::copy_from_slice(input),
        },
    );
    let mut out = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        out.extend_from_slice(&t.data);
    }
    out
}

// ----- the reason code tables of the standard -----

/// Table 3-1, Connect Reason Codes.
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// Tables 3-4 and 3-5, PUBACK and PUBREC Reason Codes.
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Tables 3-6 and 3-7, PUBREL and PUBCOMP Reason Codes.
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
/// Table 3-8, Subscribe Reason Codes.
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// Table 3-9, Unsubscribe Reason Codes.
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Table 3-10, Disconnect Reason Codes.
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// Table 3-11, Authenticate Reason Codes.
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

/// Every reason code in `packets` is in its packet type's table.
#[track_caller]
fn assert_reason_codes_from_the_tables(packets: &[Packet]) {
    for p in packets {
        let (codes, table): (Vec<u8>, &[u8]) = match p {
            Packet::ConnAck(a) => (vec![a.reason.as_u8()], CONNACK_CODES),
            Packet::PubAck(a) | Packet::PubRec(a) => (vec![a.reason.as_u8()], PUBACK_CODES),
            Packet::PubRel(a) | Packet::PubComp(a) => (vec![a.reason.as_u8()], PUBREL_CODES),
            Packet::SubAck(a) => (a.reasons.iter().map(|r| r.as_u8()).collect(), SUBACK_CODES),
            Packet::UnsubAck(a) => (
                a.reasons.iter().map(|r| r.as_u8()).collect(),
                UNSUBACK_CODES,
            ),
            Packet::Disconnect(d) => (vec![d.reason.as_u8()], DISCONNECT_CODES),
            Packet::Auth(a) => (vec![a.reason.as_u8()], AUTH_CODES),
            _ => continue,
        };
        for code in codes {
            assert!(table.contains(&code), "{code:#04x} is not allowed in {p:?}");
        }
    }
}

// ----- 1.5 data representation -----

/// [MQTT-1.5.4-1] [MQTT-3.3.2-1]: ill-formed UTF-8 (a stray byte, an overlong form) and an encoded
/// surrogate in a topic name are a Malformed Packet: DISCONNECT 0x81, then the connection is closed.
#[test]
fn ill_formed_utf8_and_surrogates_are_malformed() {
    for bad in [&b"a\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf"] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &v5_publish_bytes(bad, &[], b"x"));
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
    }
}

/// [MQTT-1.5.4-2] [MQTT-4.7.3-2]: U+0000 in a topic name, a topic filter or a user property is a
/// Malformed Packet.
#[test]
fn the_null_character_is_malformed_in_any_string() {
    let mut sim = sim();
    sim.connect("topic", V5);
    sim.send_bytes("topic", &v5_publish_bytes(b"a\x00b", &[], b"x"));
    assert_disconnected(&mut sim, "topic", ReasonCode::MalformedPacket);

    sim.connect("filter", V5);
    // SUBSCRIBE id 1, no properties, filter "a\0", options QoS 0.
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend(field(b"a\x00"));
    body.push(0x00);
    sim.send_bytes("filter", &frame(0x82, &body));
    assert_disconnected(&mut sim, "filter", ReasonCode::MalformedPacket);

    sim.connect("property", V5);
    let props = user_property_bytes(b"k", b"v\x00");
    sim.send_bytes("property", &v5_publish_bytes(b"t", &props, b"x"));
    assert_disconnected(&mut sim, "property", ReasonCode::MalformedPacket);
}

/// [MQTT-1.5.4-3] [MQTT-4.7.3-4]: a leading U+FEFF (EF BB BF) is part of the string: a topic that
/// starts with it is another topic than the one without it, and it reaches subscribers intact, in the
/// topic and in user properties.
#[test]
fn a_byte_order_mark_is_neither_skipped_nor_stripped() {
    let mut sim = sim();
    sim.connect("bom", V5);
    sim.subscribe("bom", "\u{feff}t", QoS::AtMostOnce);
    sim.connect("plain", V5);
    sim.subscribe("plain", "t", QoS::AtMostOnce);
    sim.connect("p", V5);
    let props = user_property_bytes(b"\xef\xbb\xbfk", b"\xef\xbb\xbfv");
    sim.send_bytes("p", &v5_publish_bytes(b"\xef\xbb\xbft", &props, b"x"));
    let got = publish_of(sim.recv("bom"));
    assert_eq!(got.topic.as_str().as_bytes(), b"\xef\xbb\xbft");
    assert_eq!(
        got.properties.user_properties,
        [UserProperty::new("\u{feff}k", "\u{feff}v")]
    );
    assert_eq!(sim.recv("plain"), None, "\"t\" is another topic");
}

/// [MQTT-1.5.5-1]: a Variable Byte Integer in more bytes than needed (the remaining length, a
/// property length) is a Malformed Packet.
#[test]
fn non_minimal_variable_byte_integers_are_malformed() {
    let mut sim = sim();
    sim.connect("length", V5);
    // PINGREQ with a remaining length of 0 written in two bytes.
    sim.send_bytes("length", &[0xC0, 0x80, 0x00]);
    assert_disconnected(&mut sim, "length", ReasonCode::MalformedPacket);

    sim.connect("props", V5);
    // PUBLISH "t" whose property length 0 is written in two bytes.
    sim.send_bytes("props", &[0x30, 0x06, 0x00, 0x01, b't', 0x80, 0x00, b'x']);
    assert_disconnected(&mut sim, "props", ReasonCode::MalformedPacket);
}

/// [MQTT-1.5.7-1]: both strings of a UTF-8 String Pair (a User Property) must be valid UTF-8.
#[test]
fn both_strings_of_a_user_property_must_be_utf8() {
    for (name, value) in [(&b"\xff"[..], &b"v"[..]), (b"k", b"\xed\xa0\x80")] {
        let mut sim = sim();
        sim.connect("c", V5);
        let props = user_property_bytes(name, value);
        sim.send_bytes("c", &v5_publish_bytes(b"t", &props, b"x"));
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
    }
}

// ----- 2 packet format -----

/// [MQTT-2.1.3-1] [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1] [MQTT-3.14.1-1] [MQTT-3.15.1-1]
/// [MQTT-4.13.1-1]: fixed-header flags other than the listed ones are a Malformed Packet: DISCONNECT
/// 0x81 and close.
#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let cases: [(&str, Vec<u8>); 8] = [
        ("PUBACK", frame(0x41, &[0x00, 0x01])),
        ("PUBREL", frame(0x60, &[0x00, 0x01])),
        ("PUBREL", frame(0x63, &[0x00, 0x01])),
        (
            "SUBSCRIBE",
            frame(0x80, &[0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x00]),
        ),
        (
            "UNSUBSCRIBE",
            frame(0xA0, &[0x00, 0x01, 0x00, 0x00, 0x01, b't']),
        ),
        ("PINGREQ", frame(0xC1, &[])),
        ("DISCONNECT", frame(0xE1, &[])),
        ("AUTH", frame(0xF1, &[])),
    ];
    for (what, bytes) in cases {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &bytes);
        let got = sim.recv_all("c");
        assert!(
            matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::MalformedPacket),
            "{what}: {got:?}"
        );
        assert!(sim.is_closed("c"), "{what}");
    }
}

/// [MQTT-2.2.1-2] [MQTT-3.3.1-2] [MQTT-3.3.1-3] [MQTT-4.3.1-1]: a QoS 0 PUBLISH from the broker has no
/// packet id and DUP 0, even when the PUBLISH it forwards was a QoS 1 resend with DUP 1; a QoS 1 copy of
/// that resend is a first transmission to its subscriber, so DUP 0 as well.
#[test]
fn dup_is_set_per_outgoing_packet_and_qos_0_has_no_packet_id() {
    let mut sim = sim();
    sim.connect("q0", V5);
    sim.subscribe("q0", "t", QoS::AtMostOnce);
    sim.connect("q1", V5);
    sim.subscribe("q1", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    let mut p = message("t", b"again");
    p.delivery = Delivery::AtLeastOnce(pid(5));
    p.dup = true;
    sim.send("p", Packet::Publish(p));
    let q0 = publish_of(sim.recv("q0"));
    assert_eq!((q0.delivery, q0.dup), (Delivery::AtMostOnce, false));
    let q1 = publish_of(sim.recv("q1"));
    assert_eq!(q1.delivery.qos(), QoS::AtLeastOnce);
    assert!(!q1.dup, "first transmission to this subscriber");
}

/// [MQTT-2.2.1-3]: packet identifier 0 on a QoS 1 PUBLISH, SUBSCRIBE or UNSUBSCRIBE is a Malformed
/// Packet.
#[test]
fn packet_identifier_zero_is_malformed() {
    let cases: [Vec<u8>; 3] = [
        frame(0x32, &[0x00, 0x01, b't', 0x00, 0x00, 0x00, b'x']),
        frame(0x82, &[0x00, 0x00, 0x00, 0x00, 0x01, b't', 0x00]),
        frame(0xA2, &[0x00, 0x00, 0x00, 0x00, 0x01, b't']),
    ];
    for bytes in cases {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &bytes);
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
    }
}

/// [MQTT-2.2.1-4] [MQTT-4.3.2-1] [MQTT-4.3.3-1]: every new QoS 1/2 PUBLISH the broker sends gets a
/// non-zero packet id not in use by another unacknowledged one, and a freed id may come back.
#[test]
fn outgoing_packet_ids_are_non_zero_and_unused() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    for i in 0..10 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        sim.publish("p", "t", qos, "m");
    }
    sim.recv_all("p");
    let sent = publishes(sim.recv_all("s"));
    assert_eq!(sent.len(), 10);
    let mut ids: Vec<u16> = sent.iter().map(|p| id_of(p).get()).collect();
    assert!(ids.iter().all(|id| *id != 0));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ten messages in flight, ten ids");
    // Acknowledge the first; a later message must still not reuse an id in flight.
    sim.send("s", Packet::PubAck(Ack::new(id_of(&sent[0]))));
    sim.publish("p", "t", QoS::AtLeastOnce, "later");
    let later = publish_of(sim.recv("s"));
    let in_flight: Vec<u16> = sent[1..].iter().map(|p| id_of(p).get()).collect();
    assert!(!in_flight.contains(&id_of(&later).get()), "{later:?}");
}

/// [MQTT-2.2.1-6] [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5]: SUBSCRIBE gets a
/// SUBACK and UNSUBSCRIBE an UNSUBACK with the request's packet id, even when nothing was unsubscribed.
#[test]
fn suback_and_unsuback_carry_the_requests_packet_id() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.send(
        "c",
        Packet::Subscribe(subscribe_packet(4711, &[("a", QoS::AtLeastOnce)])),
    );
    assert_eq!(suback_of(sim.recv("c")).packet_id, pid(4711));
    sim.send("c", Packet::Unsubscribe(unsubscribe_packet(65535, &["a"])));
    let u = unsuback_of(sim.recv("c"));
    assert_eq!(
        (u.packet_id, u.reasons),
        (pid(65535), vec![ReasonCode::Success])
    );
    sim.send("c", Packet::Unsubscribe(unsubscribe_packet(3, &["never"])));
    let u = unsuback_of(sim.recv("c"));
    assert_eq!(
        (u.packet_id, u.reasons),
        (pid(3), vec![ReasonCode::NoSubscriptionExisted])
    );
}

/// [MQTT-2.2.2-1] [MQTT-3.2.2-1]: on the wire, a CONNACK with no properties still carries a Property
/// Length of zero, and its acknowledge flags byte uses bit 0 only.
#[test]
fn connack_bytes_have_a_zero_property_length_and_no_reserved_flags() {
    let refused = raw_answer(
        Config {
            max_client_id_length: 23,
            ..Config::default()
        },
        &v5_connect_bytes(0x02, &field(b"a-client-id-of-24-bytes!")),
    );
    // CONNACK, remaining length 3, flags 0, 0x85, property length 0.
    assert_eq!(refused, [0x20, 0x03, 0x00, 0x85, 0x00]);

    let accepted = raw_answer(Config::default(), &v5_connect_bytes(0x02, &field(b"c")));
    assert_eq!(accepted[0], 0x20);
    assert_eq!(accepted[2] & 0xFE, 0, "reserved acknowledge flags");
    // A SUBACK (no properties) after it: 90 04 <id> 00 <code>.
    let mut input = v5_connect_bytes(0x02, &field(b"c"));
    input.extend(frame(0x82, &[0x00, 0x07, 0x00, 0x00, 0x01, b't', 0x01]));
    let out = raw_answer(Config::default(), &input);
    assert_eq!(out[out.len() - 6..], [0x90, 0x04, 0x00, 0x07, 0x00, 0x01]);
}

// ----- 3.1 CONNECT -----

/// Opens `name` decoding what comes back in 3.1.1 form (a refusal of an unknown protocol is written so
/// that every version can read it) and sends raw CONNECT bytes.
fn raw_connect_read_as_3_1_1(sim: &mut Sim, name: &str, bytes: &[u8]) -> Vec<Packet> {
    sim.open(name);
    sim.send_bytes(name, bytes);
    sim.recv_all(name)
}

/// [MQTT-3.1.2-1]: a protocol name other than "MQTT" is refused (here with CONNACK 0x84, which the
/// server may send) and the connection is closed.
#[test]
fn a_protocol_name_other_than_mqtt_is_refused_and_closed() {
    let mut sim = sim();
    let mut body = field(b"MQTX");
    body.extend_from_slice(&[5, 0x02, 0, 60, 0]);
    body.extend(field(b"c"));
    let got = raw_connect_read_as_3_1_1(&mut sim, "c", &frame(0x10, &body));
    assert!(
        got.iter().all(|p| matches!(p, Packet::ConnAck(a)
            if a.reason == ReasonCode::UnsupportedProtocolVersion && !a.session_present)),
        "{got:?}"
    );
    assert!(sim.is_closed("c"));
}

/// [MQTT-3.1.2-2]: a protocol version the server does not accept gets CONNACK 0x84, then the
/// connection is closed.
#[test]
fn an_unsupported_protocol_version_gets_0x84_and_is_closed() {
    for level in [0u8, 2, 6, 0x85] {
        let mut sim = sim();
        let mut body = field(b"MQTT");
        body.extend_from_slice(&[level, 0x02, 0, 60, 0]);
        body.extend(field(b"c"));
        let got = raw_connect_read_as_3_1_1(&mut sim, "c", &frame(0x10, &body));
        assert!(
            matches!(&got[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::UnsupportedProtocolVersion),
            "level {level}: {got:?}"
        );
        assert!(sim.is_closed("c"), "level {level}");
    }
}

/// [MQTT-3.1.2-3] [MQTT-3.1.4-1]: the reserved CONNECT flag set is a Malformed Packet: the connection
/// is closed (no CONNACK is owed).
#[test]
fn the_reserved_connect_flag_must_be_zero() {
    let mut sim = sim();
    let got = raw_connect(&mut sim, "c", &v5_connect_bytes(0x03, &field(b"c")));
    assert!(
        got.iter()
            .all(|p| matches!(p, Packet::ConnAck(a) if a.reason.is_error())),
        "{got:?}"
    );
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.session_count(), 0);
}

/// [MQTT-3.1.2-4] [MQTT-3.1.4-4] [MQTT-3.2.2-2]: Clean Start 1 discards the existing session (its
/// subscriptions and queued messages) and CONNACK says Session Present 0.
#[test]
fn clean_start_discards_the_existing_session() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", 600));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "queued");
    let mut clean = persistent("s", 600);
    clean.clean_start = true;
    let ack = connack(sim.connect_with("s", clean));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::Success, false)
    );
    assert_eq!(
        sim.recv_all("s"),
        [],
        "the queued message went with the session"
    );
    sim.publish("p", "t", QoS::AtLeastOnce, "new");
    assert_eq!(sim.recv_all("s"), [], "and so did the subscription");
}

/// [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-3] [MQTT-3.1.3-2]: Clean Start 0 creates a session when
/// the client id has none (Session Present 0) and resumes it later (Session Present 1, with its
/// subscriptions); sessions are told apart by client id alone.
#[test]
fn clean_start_0_creates_then_resumes_the_session_of_that_client_id() {
    let mut sim = sim();
    let ack = connack(sim.connect_with("s", persistent("s", 600)));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::Success, false)
    );
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    let ack = connack(sim.connect_with("s", persistent("s", 600)));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::Success, true)
    );
    // Another client id has a session of its own (none yet).
    let ack = connack(sim.connect_with("other", persistent("other", 600)));
    assert!(!ack.session_present);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    assert_eq!(payloads(sim.recv_all("s")), ["m"]);
    assert_eq!(sim.recv_all("other"), []);
}

/// [MQTT-3.1.2-9] [MQTT-3.1.4-1]: with the Will Flag set, Will Properties, Will Topic and Will Payload
/// must follow the client id; a CONNECT that stops short is malformed and closed.
#[test]
fn the_will_fields_must_follow_the_will_flag() {
    let mut payload = field(b"c");
    let cut_after_id = payload.clone();
    payload.push(0); // will properties
    let cut_after_properties = payload.clone();
    payload.extend(field(b"w"));
    let cut_after_topic = payload.clone();
    for p in [cut_after_id, cut_after_properties, cut_after_topic] {
        let mut sim = sim();
        raw_connect(&mut sim, "c", &v5_connect_bytes(0x06, &p));
        assert_closed_silently(&mut sim, "c");
    }
    // Complete, it is accepted.
    payload.extend(field(b"bye"));
    let mut sim = sim();
    let got = raw_connect(&mut sim, "c", &v5_connect_bytes(0x06, &payload));
    assert_eq!(connack(got.into_iter().next()).reason, ReasonCode::Success);
}

/// [MQTT-3.1.2-10] [MQTT-3.14.4-3] [MQTT-3.1.2-8]: a will is published once, then it is gone from the
/// session (the session ending later publishes nothing more); DISCONNECT 0x00 deletes it unpublished.
#[test]
fn a_will_is_removed_once_published_or_after_a_normal_disconnect() {
    let mut sim = sim();
    let mut watcher = Sim::connect_packet("w", V5);
    watcher.keep_alive = 0;
    sim.connect_with("w", watcher);
    sim.subscribe("w", "will/#", QoS::AtLeastOnce);

    let mut delayed = persistent("d", 100);
    let mut w = will("will/d", b"d");
    w.properties.will_delay_interval = Some(5);
    delayed.will = Some(w);
    sim.connect_with("d", delayed);
    sim.drop_connection("d");
    sim.advance(Duration::from_secs(5));
    assert_eq!(payloads(sim.recv_all("w")), ["d"]);
    sim.advance(Duration::from_secs(100));
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::SessionExpired { client_id } if client_id == "d")));
    assert_eq!(sim.recv_all("w"), [], "published once, then removed");

    let mut polite = persistent("n", 100);
    polite.will = Some(will("will/n", b"n"));
    sim.connect_with("n", polite);
    sim.send(
        "n",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    sim.advance(Duration::from_secs(200));
    assert_eq!(sim.recv_all("w"), [], "DISCONNECT 0x00 deleted it");
}

/// [MQTT-3.1.2-11] [MQTT-3.1.2-13]: Will QoS and Will Retain must be 0 without the Will Flag; a
/// CONNECT that sets them is malformed and closed.
#[test]
fn will_qos_and_will_retain_need_the_will_flag() {
    // Will QoS 1, Will QoS 2, Will Retain; each with Clean Start and no Will Flag.
    for flags in [0x0A, 0x12, 0x22] {
        let mut sim = sim();
        raw_connect(&mut sim, "c", &v5_connect_bytes(flags, &field(b"c")));
        assert_closed_silently(&mut sim, "c");
    }
}

/// [MQTT-3.1.2-12]: Will QoS 3 is a Malformed Packet.
#[test]
fn will_qos_3_is_malformed() {
    let mut payload = field(b"c");
    payload.push(0);
    payload.extend(field(b"w"));
    payload.extend(field(b"bye"));
    let mut sim = sim();
    raw_connect(&mut sim, "c", &v5_connect_bytes(0x1E, &payload));
    assert_closed_silently(&mut sim, "c");
}

/// [MQTT-3.1.2-7] [MQTT-3.1.2-14] [MQTT-3.1.2-15]: the will stored with the session is published
/// retained exactly when Will Retain is 1.
#[test]
fn will_retain_decides_whether_the_will_is_retained() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe_with(
        "w",
        "will/#",
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_as_published: true,
            ..Default::default()
        },
    );
    let mut plain = Sim::connect_packet("plain", V5);
    plain.will = Some(will("will/plain", b"p"));
    sim.connect_with("plain", plain);
    let mut kept = Sim::connect_packet("kept", V5);
    let mut w = will("will/kept", b"k");
    w.retain = true;
    kept.will = Some(w);
    sim.connect_with("kept", kept);
    assert_eq!(sim.recv_all("w"), [], "stored, not yet published");

    sim.drop_connection("plain");
    let p = publish_of(sim.recv("w"));
    assert_eq!((p.topic.as_str(), p.retain), ("will/plain", false));
    assert_eq!(sim.engine.retained_count(), 0);
    sim.drop_connection("kept");
    let p = publish_of(sim.recv("w"));
    assert_eq!((p.topic.as_str(), p.retain), ("will/kept", true));
    assert_eq!(sim.engine.retained_count(), 1);

    sim.connect("late", V5);
    sim.subscribe("late", "will/#", QoS::AtMostOnce);
    let p = publish_of(sim.recv("late"));
    assert_eq!((p.topic.as_str(), p.retain), ("will/kept", true));
    assert_eq!(sim.recv("late"), None);
}

/// [MQTT-3.1.2-16] [MQTT-3.1.2-17] [MQTT-3.1.2-18] [MQTT-3.1.2-19] [MQTT-3.1.4-1]: a User Name and a
/// Password are present exactly when their flags say so; a missing or an unannounced field is
/// malformed and closes the connection.
#[test]
fn user_name_and_password_are_present_exactly_when_flagged() {
    let id = field(b"c");
    let with = |extra: &[&[u8]]| {
        let mut p = id.clone();
        for e in extra {
            p.extend(field(e));
        }
        p
    };
    let refused: [(u8, Vec<u8>); 5] = [
        (0x82, with(&[])),                  // user name flagged, absent
        (0x42, with(&[])),                  // password flagged, absent
        (0xC2, with(&[b"u"])),              // both flagged, password absent
        (0x02, with(&[b"u"])),              // nothing flagged, a user name follows
        (0x82, with(&[b"u", b"password"])), // user name only, a password follows
    ];
    for (flags, payload) in refused {
        let mut sim = sim();
        raw_connect(&mut sim, "c", &v5_connect_bytes(flags, &payload));
        assert_closed_silently(&mut sim, "c");
    }
    for (flags, payload) in [
        (0x82, with(&[b"u"])),
        (0x42, with(&[b"pw"])),
        (0xC2, with(&[b"u", b"pw"])),
    ] {
        let mut sim = sim();
        let got = raw_connect(&mut sim, "c", &v5_connect_bytes(flags, &payload));
        assert_eq!(
            connack(got.into_iter().next()).reason,
            ReasonCode::Success,
            "{flags:#04x}"
        );
    }
}

/// [MQTT-3.1.2-22] [MQTT-3.2.2-22] [MQTT-3.1.2-20]: without a Server Keep Alive in CONNACK, the
/// client's Keep Alive is enforced: a client silent for 1.5 times it is disconnected (0x8D) and closed
/// as if the network had failed, so its will is published.
#[test]
fn the_clients_keep_alive_is_enforced_when_the_server_sets_none() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe("w", "will/k", QoS::AtMostOnce);
    let mut c = Sim::connect_packet("k", V5);
    c.keep_alive = 20;
    c.will = Some(will("will/k", b"gone"));
    let ack = connack(sim.connect_with("k", c));
    assert_eq!(ack.properties.server_keep_alive, None);
    sim.advance(Duration::from_millis(29_999));
    assert!(!sim.is_closed("k"));
    sim.advance(Duration::from_millis(1));
    assert_disconnected(&mut sim, "k", ReasonCode::KeepAliveTimeout);
    assert_eq!(payloads(sim.recv_all("w")), ["gone"]);
}

/// [MQTT-3.1.2-23] [MQTT-4.1.0-2] [MQTT-4.5.0-1]: a session with a Session Expiry Interval above 0
/// outlives its connection, collecting messages for its subscriptions, until the interval has passed;
/// then it is discarded.
#[test]
fn a_session_is_stored_until_its_expiry_interval_passes() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", 60));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    let mut publisher = Sim::connect_packet("p", V5);
    publisher.keep_alive = 0;
    sim.connect_with("p", publisher);
    sim.publish("p", "t", QoS::AtLeastOnce, "kept");
    sim.advance(Duration::from_secs(59));
    let ack = connack(sim.connect_with("s", persistent("s", 60)));
    assert!(ack.session_present);
    assert_eq!(payloads(sim.recv_all("s")), ["kept"]);

    sim.drop_connection("s");
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.engine.session_count(), 1, "only the publisher's");
    let ack = connack(sim.connect_with("s", persistent("s", 60)));
    assert!(!ack.session_present);
}

/// [MQTT-3.1.2-25]: a PUBLISH larger than the client's Maximum Packet Size is not sent; it is
/// discarded as if delivered (it takes no place in the Receive Maximum window and is not resent later),
/// and every PUBLISH that is sent fits (the PUBLISH part of MQTT-3.1.2-24; DISCONNECT and AUTH do not
/// always fit, see finding F1 in `conformance/matrix/findings-5.0.md`).
#[test]
fn packets_over_the_clients_maximum_packet_size_are_discarded_as_if_delivered() {
    let mut sim = sim();
    let mut c = persistent("s", 600);
    c.properties.maximum_packet_size = NonZeroU32::new(64);
    c.properties.receive_maximum = NonZeroU16::new(1);
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "t/#", QoS::AtLeastOnce);
    sim.connect("p", V5);
    let mut retained = message("t/r", b"");
    retained.payload = Bytes::from(vec![b'r'; 100]);
    retained.retain = true;
    sim.send("p", Packet::Publish(retained));
    sim.publish("p", "t/1", QoS::AtLeastOnce, &"x".repeat(100));
    sim.publish("p", "t/2", QoS::AtLeastOnce, "small");
    let got = sim.recv_all("s");
    assert_eq!(payloads(got.clone()), ["small"]);
    for p in &got {
        assert!(p.encoded_len(V5) <= 64, "{p:?}");
    }
    let too_large = |sim: &Sim| {
        sim.events
            .iter()
            .filter(|e| {
                matches!(e, Event::MessageDropped { client_id, reason: DropReason::TooLargeForClient, .. }
                    if client_id == "s")
            })
            .count()
    };
    assert_eq!(too_large(&sim), 2, "the large retained one and t/1");

    // Not pending either: a resumed session resends only the unacknowledged small one.
    sim.drop_connection("s");
    sim.connect_with("s", c);
    assert_eq!(payloads(sim.recv_all("s")), ["small"]);
    // And a retained message too large for the client is not sent on subscribe.
    let ack = sim.subscribe("s", "t/r", QoS::AtMostOnce);
    assert!(matches!(ack, Some(Packet::SubAck(_))));
    assert_eq!(sim.recv_all("s"), []);
    assert_eq!(too_large(&sim), 3);
}

/// [MQTT-3.1.2-28]: Request Response Information 0 gets no Response Information, even where the server
/// has some to give.
#[test]
fn request_response_information_0_gets_none() {
    let mut sim = Sim::new(Config {
        response_information_prefix: Some("reply/".into()),
        ..Config::default()
    });
    let mut c = Sim::connect_packet("c", V5);
    c.properties.request_response_information = Some(false);
    let ack = connack(sim.connect_with("c", c));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(ack.properties.response_information, None);
}

/// A configuration that refuses some subscriptions: no wildcards, no shared subscriptions, filters of
/// at most 20 bytes.
fn limited() -> Config {
    Config {
        wildcard_subscriptions: false,
        shared_subscriptions: false,
        max_topic_length: 20,
        ..Config::default()
    }
}

/// Drives the connected v5 client `name` through every acknowledgement the broker sends: SUBACK
/// (granted and refused), PUBACK, PUBREC, PUBREL, PUBCOMP (also for unknown ids), UNSUBACK, PINGRESP.
/// Returns every packet it received. Under [`limited`], the SUBACK says 0x02, 0xA2, 0x9E, 0x8F.
fn exercise(sim: &mut Sim, name: &str) -> Vec<Packet> {
    let mut got = Vec::new();
    let s = subscribe_packet(
        1,
        &[
            ("t", QoS::ExactlyOnce),
            ("a/+", QoS::AtMostOnce),
            ("$share/g/t", QoS::AtMostOnce),
            ("a/filter/over/20/bytes", QoS::AtMostOnce),
        ],
    );
    sim.send(name, Packet::Subscribe(s));
    got.extend(sim.recv_all(name));
    sim.publish(name, "t", QoS::AtLeastOnce, "one");
    let two = sim.publish(name, "t", QoS::ExactlyOnce, "two");
    let received = sim.recv_all(name);
    got.extend(received.clone());
    for p in publishes(received) {
        match p.delivery {
            Delivery::AtLeastOnce(id) => sim.send(name, Packet::PubAck(Ack::new(id))),
            Delivery::ExactlyOnce(id) => sim.send(name, Packet::PubRec(Ack::new(id))),
            Delivery::AtMostOnce => {}
        }
    }
    let released = sim.recv_all(name);
    got.extend(released.clone());
    for p in released {
        if let Packet::PubRel(rel) = p {
            sim.send(name, Packet::PubComp(Ack::new(rel.packet_id)));
        }
    }
    sim.send(name, Packet::PubRel(Ack::new(id_of(&two))));
    sim.send(name, Packet::PubRel(Ack::new(pid(999))));
    sim.send(name, Packet::PubRec(Ack::new(pid(998))));
    sim.send(
        name,
        Packet::Unsubscribe(unsubscribe_packet(2, &["t", "never"])),
    );
    sim.send(name, Packet::PingReq);
    got.extend(sim.recv_all(name));
    got
}

/// [MQTT-3.1.2-29]: with Request Problem Information 0 no packet but PUBLISH, CONNACK and DISCONNECT
/// carries a Reason String or User Properties.
#[test]
fn no_reason_string_or_user_property_without_problem_information() {
    let mut sim = Sim::new(limited());
    let mut c = Sim::connect_packet("c", V5);
    c.properties.request_problem_information = Some(false);
    connack(sim.connect_with("c", c));
    let got = exercise(&mut sim, "c");
    assert!(got.len() >= 10, "{got:?}");
    for p in &got {
        let props = match p {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                &a.properties
            }
            Packet::SubAck(a) => &a.properties,
            Packet::UnsubAck(a) => &a.properties,
            _ => continue,
        };
        assert_eq!(props.reason_string, None, "{p:?}");
        assert!(props.user_properties.is_empty(), "{p:?}");
    }
}

/// [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.9.3-2] [MQTT-3.11.3-2]
/// [MQTT-3.8.4-6] [MQTT-3.8.4-7]: every acknowledgement the broker sends uses a reason code of its
/// packet's table: SUBACK one per filter, granted QoS or a failure; PUBREL and PUBCOMP 0x92 for ids it
/// does not know.
#[test]
fn acknowledgements_use_the_reason_codes_of_their_tables() {
    let mut sim = Sim::new(limited());
    sim.connect("c", V5);
    let got = exercise(&mut sim, "c");
    assert_reason_codes_from_the_tables(&got);
    let subacks: Vec<&SubAck> = got
        .iter()
        .filter_map(|p| match p {
            Packet::SubAck(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        subacks[0].reasons,
        [
            ReasonCode::GrantedQoS2,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::TopicFilterInvalid
        ]
    );
    assert!(got.contains(&Packet::PubComp(Ack {
        packet_id: pid(999),
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Default::default()
    })));
    assert!(got.contains(&Packet::PubRel(Ack {
        packet_id: pid(998),
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Default::default()
    })));
    for kind in [
        "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "UNSUBACK", "PINGRESP",
    ] {
        assert!(
            got.iter().any(|p| p.packet_type().name() == kind),
            "no {kind} in {got:?}"
        );
    }
}

/// [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.14.2-1]: a client's
/// acknowledgement or DISCONNECT with a reason code outside its packet's table is a Malformed Packet.
#[test]
fn client_reason_codes_outside_their_tables_are_malformed() {
    for bytes in [
        [0x40, 0x03, 0x00, 0x01, 0x92], // PUBACK 0x92
        [0x50, 0x03, 0x00, 0x01, 0x11], // PUBREC 0x11
        [0x62, 0x03, 0x00, 0x01, 0x10], // PUBREL 0x10
        [0x70, 0x03, 0x00, 0x01, 0x80], // PUBCOMP 0x80
        [0xE0, 0x03, 0x18, 0x00, 0x00], // DISCONNECT 0x18
    ] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &bytes);
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
    }
}

/// [MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.5.2-2] [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3]
/// [MQTT-3.7.2-2] [MQTT-3.7.2-3] [MQTT-3.9.2-1] [MQTT-3.9.2-2] [MQTT-3.11.2-1] [MQTT-3.11.2-2]: the
/// broker's acknowledgements carry no Reason String or User Property, so none can push them over the
/// client's Maximum Packet Size; every one fits a 32-byte limit.
#[test]
fn acknowledgements_never_exceed_the_clients_maximum_packet_size() {
    let mut sim = Sim::new(limited());
    let mut c = Sim::connect_packet("c", V5);
    c.properties.maximum_packet_size = NonZeroU32::new(32);
    connack(sim.connect_with("c", c));
    let got = exercise(&mut sim, "c");
    let mut acks = 0;
    for p in &got {
        let props = match p {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                &a.properties
            }
            Packet::SubAck(a) => &a.properties,
            Packet::UnsubAck(a) => &a.properties,
            _ => continue,
        };
        acks += 1;
        assert!(props.is_empty(), "{p:?}");
        assert!(p.encoded_len(V5) <= 32, "{p:?}");
    }
    assert!(acks >= 8, "{got:?}");
}

// ----- 3.1.3 CONNECT payload, 3.1.4 CONNECT actions -----

/// [MQTT-3.1.3-5]: client ids of 1 to 23 bytes of [0-9a-zA-Z] are accepted, even by a server
/// configured with the smallest limit it may have.
#[test]
fn client_ids_of_up_to_23_alphanumerics_are_allowed() {
    let mut sim = Sim::new(Config {
        max_client_id_length: 23,
        ..Config::default()
    });
    for id in [
        "0",
        "0123456789abcdefghijklm",
        "nopqrstuvwxyzABCDEFGHIJ",
        "KLMNOPQRSTUVWXYZ",
    ] {
        let ack = connack(sim.connect(id, V5));
        assert_eq!(ack.reason, ReasonCode::Success, "{id}");
        assert!(!sim.is_closed(id));
    }
}

/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]: an empty client id gets a unique one, returned as
/// Assigned Client Identifier, and the session is that id's: a later CONNECT naming it resumes it.
#[test]
fn an_empty_client_id_gets_a_unique_assigned_one() {
    let mut sim = sim();
    let first = connack(sim.connect_with("one", persistent("", 600)));
    let second = connack(sim.connect_with("two", persistent("", 600)));
    let (Some(a), Some(b)) = (
        first.properties.assigned_client_identifier,
        second.properties.assigned_client_identifier,
    ) else {
        panic!("no Assigned Client Identifier");
    };
    assert!(!a.is_empty());
    assert_ne!(a, b);
    sim.subscribe("one", "t", QoS::AtLeastOnce);
    sim.drop_connection("one");
    let again = connack(sim.connect_with("again", persistent(&a, 600)));
    assert!(again.session_present, "the session belongs to {a}");
    assert_eq!(again.properties.assigned_client_identifier, None);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    assert_eq!(payloads(sim.recv_all("again")), ["m"]);
}

/// [MQTT-3.1.3-8] [MQTT-3.2.2-6] [MQTT-3.2.2-7]: a client id the server refuses gets CONNACK 0x85,
/// Session Present 0, and the connection is closed.
#[test]
fn a_refused_client_id_gets_0x85_and_the_connection_is_closed() {
    let mut sim = Sim::new(Config {
        max_client_id_length: 23,
        ..Config::default()
    });
    let ack = connack(sim.connect_with("c", persistent("a-client-id-of-24-bytes!", 60)));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::ClientIdentifierNotValid, false)
    );
    assert!(sim.is_closed("c"));
}

/// [MQTT-3.1.3-10]: the will's User Properties are published in their order.
#[test]
fn the_wills_user_properties_keep_their_order() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe("w", "will", QoS::AtMostOnce);
    let mut c = Sim::connect_packet("c", V5);
    let mut w = will("will", b"bye");
    for (k, v) in [("b", "1"), ("a", "2"), ("b", "3"), ("a", "0")] {
        w.properties.user_properties.push(UserProperty::new(k, v));
    }
    c.will = Some(w);
    sim.connect_with("c", c);
    sim.drop_connection("c");
    let got = publish_of(sim.recv("w"));
    let order: Vec<(&str, &str)> = got
        .properties
        .user_properties
        .iter()
        .map(|u| (&*u.name, &*u.value))
        .collect();
    assert_eq!(order, [("b", "1"), ("a", "2"), ("b", "3"), ("a", "0")]);
}

/// [MQTT-3.1.3-3] [MQTT-3.1.3-4] [MQTT-3.1.3-11] [MQTT-3.1.3-12] [MQTT-3.1.4-1]: the client id must
/// come first and, like the will topic and the user name, be valid UTF-8; otherwise the CONNECT is
/// malformed and the connection closed.
#[test]
fn connect_strings_must_be_present_and_utf8() {
    let will_with_topic = |t: &[u8]| {
        let mut p = field(b"c");
        p.push(0);
        p.extend(field(t));
        p.extend(field(b"bye"));
        p
    };
    let mut user = field(b"c");
    user.extend(field(b"\xc3\x28"));
    let cases: [(u8, Vec<u8>); 5] = [
        (0x02, Vec::new()),                // no client id at all
        (0x02, field(b"c\xff")),           // client id not UTF-8
        (0x02, field(b"\xed\xa0\x80")),    // client id a surrogate
        (0x06, will_with_topic(b"w\xff")), // will topic not UTF-8
        (0x82, user),                      // user name not UTF-8
    ];
    for (flags, payload) in cases {
        let mut sim = sim();
        raw_connect(&mut sim, "c", &v5_connect_bytes(flags, &payload));
        assert_closed_silently(&mut sim, "c");
    }
}

/// [MQTT-3.1.4-2] [MQTT-3.2.2-7]: a CONNECT that fails authentication gets a refusing CONNACK and the
/// connection is closed.
#[test]
fn failed_authentication_closes_the_connection() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    let mut c = Sim::connect_packet("c", V5);
    c.username = Some("mallory".into());
    c.password = Some(Bytes::from_static(b"guess"));
    assert_eq!(sim.connect_with("c", c), None);
    let conn = sim.conn("c");
    sim.input(Input::AuthDecided {
        conn,
        decision: AuthDecision::Deny {
            reason: ReasonCode::BadUserNameOrPassword,
        },
    });
    let ack = connack(sim.recv("c"));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::BadUserNameOrPassword, false)
    );
    assert!(sim.is_closed("c"));
    assert_eq!(sim.engine.session_count(), 0);
}

/// [MQTT-3.1.4-5]: an accepted CONNECT is acknowledged with CONNACK 0x00.
#[test]
fn an_accepted_connect_gets_connack_success() {
    let mut sim = sim();
    let ack = connack(sim.connect("c", V5));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert!(!sim.is_closed("c"));
}

/// [MQTT-3.1.4-6]: after a refused CONNECT nothing the client sent behind it is processed: a
/// pipelined retained PUBLISH reaches no one and is not stored, a SUBSCRIBE gets no SUBACK.
#[test]
fn nothing_behind_a_refused_connect_is_processed() {
    let mut sim = Sim::new(Config {
        max_client_id_length: 23,
        ..Config::default()
    });
    sim.connect("w", V5);
    sim.subscribe("w", "t", QoS::AtMostOnce);
    let mut bytes = v5_connect_bytes(0x02, &field(b"a-client-id-of-24-bytes!"));
    // PUBLISH "t" retained, then SUBSCRIBE "t".
    bytes.extend(frame(0x31, &[0x00, 0x01, b't', 0x00, b'x']));
    bytes.extend(frame(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x00]));
    let got = raw_connect(&mut sim, "c", &bytes);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::ClientIdentifierNotValid),
        "{got:?}"
    );
    assert!(sim.is_closed("c"));
    assert_eq!(sim.recv_all("w"), []);
    assert_eq!(sim.engine.retained_count(), 0);
}

// ----- 3.2 CONNACK -----

/// [MQTT-3.2.0-1] [MQTT-3.2.0-2]: CONNACK is the first packet on a connection, before the messages a
/// resumed session has waiting and before answers to packets pipelined behind CONNECT; and there is
/// only one: a second CONNECT is answered with DISCONNECT 0x82, not a CONNACK.
#[test]
fn connack_comes_first_and_only_once() {
    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        ..Config::default()
    });
    let allow = |sim: &mut Sim, name: &str| {
        let conn = sim.conn(name);
        sim.input(Input::AuthDecided {
            conn,
            decision: AuthDecision::Allow,
        });
    };
    sim.connect_with("s", persistent("s", 600));
    allow(&mut sim, "s");
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    sim.connect_with("p", Sim::connect_packet("p", V5));
    allow(&mut sim, "p");
    sim.recv_all("p");
    sim.publish("p", "t", QoS::AtLeastOnce, "waiting");

    sim.open("s");
    sim.set_version("s", V5);
    let mut bytes = bytes::BytesMut::new();
    for packet in [
        Packet::Connect(Box::new(persistent("s", 600))),
        Packet::PingReq,
    ] {
        if let Err(e) = packet.encode(V5, &mut bytes) {
            panic!("{e}");
        }
    }
    sim.send_bytes("s", &bytes);
    assert_eq!(
        sim.recv_all("s"),
        [],
        "nothing before the authenticator decides"
    );
    allow(&mut sim, "s");
    let got = sim.recv_all("s");
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::Success && a.session_present),
        "{got:?}"
    );
    assert_eq!(payloads(got.clone()), ["waiting"]);
    assert!(got.contains(&Packet::PingResp));

    sim.send("s", Packet::Connect(Box::new(persistent("s", 600))));
    let after = sim.recv_all("s");
    assert!(
        !after.iter().any(|p| matches!(p, Packet::ConnAck(_))),
        "{after:?}"
    );
    assert!(
        matches!(after.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::ProtocolError)
    );
    assert!(sim.is_closed("s"));
}

/// [MQTT-3.2.2-6]: a refusing CONNACK says Session Present 0, even when a session for the client id
/// exists and Clean Start is 0.
#[test]
fn a_refusing_connack_says_session_present_0() {
    let mut sim = Sim::new(Config {
        max_qos: QoS::AtLeastOnce,
        ..Config::default()
    });
    sim.connect_with("s", persistent("s", 600));
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.drop_connection("s");
    // Refused for its will QoS.
    let mut c = persistent("s", 600);
    let mut w = will("w", b"x");
    w.qos = QoS::ExactlyOnce;
    c.will = Some(w);
    let ack = connack(sim.connect_with("s", c));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::QoSNotSupported, false)
    );
    // Refused by a redirect.
    sim.input(Input::SetRedirect {
        redirect: Some(cicada_engine::Redirect {
            server_reference: "elsewhere".into(),
            permanent: false,
        }),
    });
    let ack = connack(sim.connect_with("s", persistent("s", 600)));
    assert_eq!(
        (ack.reason, ack.session_present),
        (ReasonCode::UseAnotherServer, false)
    );
    // The session was there all along.
    sim.input(Input::SetRedirect { redirect: None });
    assert!(connack(sim.connect_with("s", persistent("s", 600))).session_present);
}

const METHOD: &str = "TOY";

/// A broker with an external authenticator offering the enhanced authentication method [`METHOD`].
fn auth_sim() -> Sim {
    Sim::new(Config {
        authentication: Authentication::External,
        auth_methods: vec![METHOD.into()],
        ..Config::default()
    })
}

fn enhanced(name: &str) -> Connect {
    let mut c = Sim::connect_packet(name, V5);
    c.properties.authentication_method = Some(METHOD.into());
    c.properties.authentication_data = Some(Bytes::from_static(b"first"));
    c
}

fn decide(sim: &mut Sim, name: &str, decision: AuthDecision) {
    let conn = sim.conn(name);
    sim.input(Input::AuthDecided { conn, decision });
}

fn client_auth(reason: ReasonCode, method: &str) -> Packet {
    let mut a = Auth {
        reason,
        properties: Default::default(),
    };
    a.properties.authentication_method = Some(method.into());
    a.properties.authentication_data = Some(Bytes::from_static(b"data"));
    Packet::Auth(a)
}

/// [MQTT-3.2.2-7] [MQTT-3.2.2-8] [MQTT-4.13.2-1]: every CONNACK the broker sends uses a code of the
/// Connect Reason Code table; after one of 0x80 or above the connection is closed.
#[test]
fn connack_reason_codes_come_from_their_table_and_failures_close() {
    let mut acks: Vec<(String, ConnAck, bool)> = Vec::new();
    let mut record = |sim: &mut Sim, name: &str, packet: Option<Packet>| {
        acks.push((name.to_string(), connack(packet), sim.is_closed(name)));
    };

    let mut sim = Sim::new(Config {
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        max_client_id_length: 23,
        max_topic_length: 20,
        ..Config::default()
    });
    let ok = sim.connect("ok", V5);
    record(&mut sim, "ok", ok);
    let long = sim.connect("a-client-id-of-24-bytes!", V5);
    record(&mut sim, "a-client-id-of-24-bytes!", long);
    for (name, qos, retain, will_topic) in [
        ("qos", QoS::ExactlyOnce, false, "w"),
        ("retain", QoS::AtMostOnce, true, "w"),
        (
            "topic",
            QoS::AtMostOnce,
            false,
            "a/will/topic/over/20/bytes",
        ),
    ] {
        let mut c = Sim::connect_packet(name, V5);
        let mut w = will(will_topic, b"x");
        w.qos = qos;
        w.retain = retain;
        c.will = Some(w);
        let got = sim.connect_with(name, c);
        record(&mut sim, name, got);
    }
    for permanent in [false, true] {
        sim.input(Input::SetRedirect {
            redirect: Some(cicada_engine::Redirect {
                server_reference: "elsewhere".into(),
                permanent,
            }),
        });
        let name = if permanent { "moved" } else { "another" };
        let got = sim.connect(name, V5);
        record(&mut sim, name, got);
    }

    let mut sim = auth_sim();
    let mut other = Sim::connect_packet("method", V5);
    other.properties.authentication_method = Some("KERBEROS".into());
    let got = sim.connect_with("method", other);
    record(&mut sim, "method", got);
    for (name, reason) in [
        ("password", ReasonCode::BadUserNameOrPassword),
        ("denied", ReasonCode::NotAuthorized),
        ("busy", ReasonCode::ServerBusy),
        ("banned", ReasonCode::Banned),
    ] {
        sim.connect_with(name, enhanced(name));
        decide(&mut sim, name, AuthDecision::Deny { reason });
        let got = sim.recv(name);
        record(&mut sim, name, got);
    }
    sim.connect_with("eager", enhanced("eager"));
    decide(
        &mut sim,
        "eager",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    let _ = sim.recv("eager");
    sim.send("eager", Packet::PingReq);
    let got = sim.recv("eager");
    record(&mut sim, "eager", got);

    let codes: Vec<u8> = acks.iter().map(|(_, a, _)| a.reason.as_u8()).collect();
    assert_eq!(
        codes,
        [0x00, 0x85, 0x9B, 0x9A, 0x90, 0x9C, 0x9D, 0x8C, 0x86, 0x87, 0x89, 0x8A, 0x82]
    );
    for (name, ack, closed) in &acks {
        assert!(
            CONNACK_CODES.contains(&ack.reason.as_u8()),
            "{name}: {ack:?}"
        );
        assert_eq!(*closed, ack.reason.is_error(), "{name}: {ack:?}");
    }
}

/// [MQTT-3.2.2-9] [MQTT-3.2.2-10] [MQTT-3.8.4-7]: a server without QoS 2 (or QoS 1 and 2) says so with
/// Maximum QoS, and still accepts SUBSCRIBE at every QoS, granting at most its maximum.
#[test]
fn maximum_qos_is_advertised_and_every_requested_qos_is_still_subscribed() {
    for (max, granted) in [
        (
            QoS::AtMostOnce,
            [
                ReasonCode::Success,
                ReasonCode::Success,
                ReasonCode::Success,
            ],
        ),
        (
            QoS::AtLeastOnce,
            [
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS1,
            ],
        ),
        (
            QoS::ExactlyOnce,
            [
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
            ],
        ),
    ] {
        let mut sim = Sim::new(Config {
            max_qos: max,
            ..Config::default()
        });
        let ack = connack(sim.connect("c", V5));
        let advertised = (max < QoS::ExactlyOnce).then_some(max);
        assert_eq!(ack.properties.maximum_qos, advertised);
        sim.send(
            "c",
            Packet::Subscribe(subscribe_packet(
                1,
                &[
                    ("a", QoS::AtMostOnce),
                    ("b", QoS::AtLeastOnce),
                    ("c", QoS::ExactlyOnce),
                ],
            )),
        );
        assert_eq!(suback_of(sim.recv("c")).reasons, granted, "{max:?}");
    }
}

/// [MQTT-3.2.2-11]: a PUBLISH above the Maximum QoS the server announced is refused with DISCONNECT
/// 0x9B.
#[test]
fn a_publish_above_maximum_qos_is_refused_with_0x9b() {
    let mut sim = Sim::new(Config {
        max_qos: QoS::AtLeastOnce,
        ..Config::default()
    });
    sim.connect("w", V5);
    sim.subscribe("w", "t", QoS::ExactlyOnce);
    sim.connect("c", V5);
    sim.publish("c", "t", QoS::ExactlyOnce, "x");
    assert_disconnected(&mut sim, "c", ReasonCode::QoSNotSupported);
    assert_eq!(sim.recv_all("w"), [], "not forwarded");
}

/// [MQTT-3.2.2-12]: a Will QoS above the server's capabilities refuses the connection: CONNACK 0x9B,
/// then close.
#[test]
fn a_will_qos_above_maximum_qos_is_refused_with_0x9b() {
    let mut sim = Sim::new(Config {
        max_qos: QoS::AtMostOnce,
        ..Config::default()
    });
    let mut c = Sim::connect_packet("c", V5);
    c.will = Some(will("w", b"x"));
    let ack = connack(sim.connect_with("c", c));
    assert_eq!(ack.reason, ReasonCode::QoSNotSupported);
    assert!(sim.is_closed("c"));
}

/// [MQTT-3.2.2-13] [MQTT-3.2.2-14]: without retained messages, CONNACK says Retain Available 0; a will
/// with Will Retain 1 is refused with CONNACK 0x9A and close, a retained PUBLISH with DISCONNECT 0x9A.
#[test]
fn without_retain_available_retained_wills_and_publishes_are_refused() {
    let mut sim = Sim::new(Config {
        retain_available: false,
        ..Config::default()
    });
    let ack = connack(sim.connect("c", V5));
    assert_eq!(ack.properties.retain_available, Some(false));
    let mut p = message("t", b"x");
    p.retain = true;
    sim.send("c", Packet::Publish(p));
    assert_disconnected(&mut sim, "c", ReasonCode::RetainNotSupported);
    assert_eq!(sim.engine.retained_count(), 0);

    let mut c = Sim::connect_packet("w", V5);
    let mut w = will("w", b"x");
    w.retain = true;
    c.will = Some(w);
    let ack = connack(sim.connect_with("w", c));
    assert_eq!(ack.reason, ReasonCode::RetainNotSupported);
    assert!(sim.is_closed("w"));
}

/// A QoS 0 PUBLISH setting (or, with an empty topic, using) Topic Alias `alias`.
fn aliased(topic_name: &[u8], alias: u16, payload: &[u8]) -> Vec<u8> {
    let mut props = vec![0x23];
    props.extend_from_slice(&alias.to_be_bytes());
    v5_publish_bytes(topic_name, &props, payload)
}

/// [MQTT-3.2.2-17] [MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-12]: the server accepts every Topic Alias
/// from 1 to the Topic Alias Maximum it announced; 0 or a larger one is refused with DISCONNECT 0x94.
#[test]
fn topic_aliases_from_1_to_the_announced_maximum_and_no_others() {
    let config = Config {
        topic_alias_maximum: 5,
        ..Config::default()
    };
    let mut sim = Sim::new(config.clone());
    sim.connect("s", V5);
    sim.subscribe("s", "#", QoS::AtMostOnce);
    let ack = connack(sim.connect("p", V5));
    assert_eq!(ack.properties.topic_alias_maximum, Some(5));
    for alias in 1..=5u16 {
        let name = format!("t/{alias}");
        sim.send_bytes("p", &aliased(name.as_bytes(), alias, b"set"));
        sim.send_bytes("p", &aliased(b"", alias, b"used"));
    }
    let got: Vec<String> = publishes(sim.recv_all("s"))
        .iter()
        .map(|p| p.topic.as_str().to_string())
        .collect();
    assert_eq!(got.len(), 10);
    assert_eq!(got[8..], ["t/5", "t/5"]);
    assert!(!sim.is_closed("p"));

    for alias in [0u16, 6, 65535] {
        let mut sim = Sim::new(config.clone());
        sim.connect("p", V5);
        sim.send_bytes("p", &aliased(b"t", alias, b"x"));
        assert_disconnected(&mut sim, "p", ReasonCode::TopicAliasInvalid);
    }
}

/// [MQTT-3.2.2-18]: a server that takes no Topic Aliases leaves Topic Alias Maximum out of CONNACK, and
/// any alias is refused with DISCONNECT 0x94.
#[test]
fn no_topic_aliases_when_the_server_announces_none() {
    let mut sim = Sim::new(Config {
        topic_alias_maximum: 0,
        ..Config::default()
    });
    let ack = connack(sim.connect("p", V5));
    assert_eq!(ack.properties.topic_alias_maximum, None);
    sim.send_bytes("p", &aliased(b"t", 1, b"x"));
    assert_disconnected(&mut sim, "p", ReasonCode::TopicAliasInvalid);
}

/// [MQTT-3.2.2-19] [MQTT-3.2.2-20]: CONNACK, accepting or refusing, carries no Reason String and no
/// User Property, so neither can push it over the client's Maximum Packet Size.
#[test]
fn connack_carries_no_reason_string_or_user_property() {
    let mut sim = Sim::new(Config {
        max_client_id_length: 23,
        max_qos: QoS::AtLeastOnce,
        ..Config::default()
    });
    let small = |name: &str| {
        let mut c = Sim::connect_packet(name, V5);
        c.properties.maximum_packet_size = NonZeroU32::new(20);
        c
    };
    let mut acks = vec![
        connack(sim.connect_with("ok", small("ok"))),
        connack(sim.connect_with("x", small("a-client-id-of-24-bytes!"))),
    ];
    let mut c = small("w");
    let mut w = will("w", b"x");
    w.qos = QoS::ExactlyOnce;
    c.will = Some(w);
    acks.push(connack(sim.connect_with("w", c)));
    assert_eq!(acks[1].reason, ReasonCode::ClientIdentifierNotValid);
    for ack in acks {
        assert_eq!(ack.properties.reason_string, None, "{ack:?}");
        assert!(ack.properties.user_properties.is_empty(), "{ack:?}");
    }
}

// ----- 3.3 PUBLISH -----

fn retained(topic_name: &str, payload: &'static [u8], qos: QoS, sim: &mut Sim) -> Publish {
    let mut p = message(topic_name, payload);
    p.retain = true;
    if qos != QoS::AtMostOnce {
        p.delivery =
            Delivery::new(qos, Some(sim.next_packet_id("p"))).unwrap_or(Delivery::AtMostOnce);
    }
    p
}

/// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7]: a retained PUBLISH replaces the topic's retained
/// message (payload and QoS); one with an empty payload is forwarded like any other, removes the
/// retained message and is not stored itself, so later subscribers get nothing.
#[test]
fn retained_messages_are_replaced_and_an_empty_one_removes_them() {
    let mut sim = sim();
    sim.connect("p", V5);
    for (payload, qos) in [(&b"v1"[..], QoS::AtMostOnce), (b"v2", QoS::AtLeastOnce)] {
        let p = retained("r", b"", qos, &mut sim);
        sim.send(
            "p",
            Packet::Publish(Publish {
                payload: Bytes::copy_from_slice(payload),
                ..p
            }),
        );
    }
    assert_eq!(sim.engine.retained_count(), 1);
    sim.connect("s", V5);
    sim.subscribe("s", "r", QoS::ExactlyOnce);
    let got = publish_of(sim.recv("s"));
    assert_eq!(
        (&got.payload[..], got.delivery.qos()),
        (&b"v2"[..], QoS::AtLeastOnce)
    );
    sim.recv_all("s");

    // An empty retained PUBLISH on a topic with nothing retained stores nothing.
    let empty = retained("other", b"", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(empty));
    assert_eq!(sim.engine.retained_count(), 1);
    // On "r" it removes v2, and current subscribers still get it.
    let empty = retained("r", b"", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(empty));
    assert_eq!(sim.engine.retained_count(), 0);
    let got = publish_of(sim.recv("s"));
    assert!(got.payload.is_empty());
    sim.connect("late", V5);
    sim.subscribe("late", "#", QoS::AtMostOnce);
    assert_eq!(sim.recv("late"), None);
}

/// [MQTT-3.3.1-8]: a PUBLISH without RETAIN is not stored and leaves the retained message alone.
#[test]
fn a_publish_without_retain_neither_stores_nor_replaces_the_retained_message() {
    let mut sim = sim();
    sim.connect("p", V5);
    let kept = retained("r", b"kept", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(kept));
    sim.publish("p", "r", QoS::AtMostOnce, "live");
    sim.publish("p", "r", QoS::AtMostOnce, "");
    sim.publish("p", "n", QoS::AtMostOnce, "not retained");
    assert_eq!(sim.engine.retained_count(), 1);
    sim.connect("s", V5);
    sim.subscribe("s", "#", QoS::AtMostOnce);
    assert_eq!(payloads(sim.recv_all("s")), ["kept"]);
}

/// [MQTT-3.3.1-9] [MQTT-3.8.4-4]: with Retain Handling 0 the retained messages are sent at every
/// SUBSCRIBE, also one replacing an existing subscription, and messages in flight on the replaced
/// subscription are not lost.
#[test]
fn retain_handling_0_resends_retained_messages_and_replacing_loses_nothing() {
    let mut sim = sim();
    sim.connect("p", V5);
    let r = retained("r", b"kept", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(r));
    let mut c = Sim::connect_packet("s", V5);
    c.properties.receive_maximum = NonZeroU16::new(1);
    sim.connect_with("s", c);
    sim.subscribe("s", "#", QoS::AtLeastOnce);
    let first = publish_of(sim.recv("s"));
    assert_eq!((&first.payload[..], first.retain), (&b"kept"[..], true));
    // Two live messages: one in flight, one waiting for the window.
    sim.publish("p", "t", QoS::AtLeastOnce, "a");
    sim.publish("p", "t", QoS::AtLeastOnce, "b");
    sim.recv_all("p");
    let in_flight = sim.recv_all("s");
    assert_eq!(payloads(in_flight.clone()), ["a"]);
    // Replace the subscription (Retain Handling 0 is the default).
    let ack = sim.subscribe("s", "#", QoS::AtLeastOnce);
    assert!(matches!(ack, Some(Packet::SubAck(_))), "{ack:?}");
    let mut seen = vec![String::from_utf8_lossy(&first.payload).into_owned()];
    let mut pending = in_flight;
    pending.extend(sim.recv_all("s"));
    while !pending.is_empty() {
        for p in publishes(pending) {
            seen.push(String::from_utf8_lossy(&p.payload).into_owned());
            if let Some(id) = p.delivery.packet_id() {
                sim.send("s", Packet::PubAck(Ack::new(id)));
            }
        }
        pending = sim.recv_all("s");
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "kept", "kept"]);
}

/// [MQTT-3.3.1-12] [MQTT-3.3.1-13]: forwarding a live message, RETAIN is cleared for a subscription
/// with Retain As Published 0 and kept as received for one with 1.
#[test]
fn retain_as_published_decides_the_forwarded_retain_flag() {
    let mut sim = sim();
    sim.connect("rap0", V5);
    sim.subscribe("rap0", "t", QoS::AtMostOnce);
    sim.connect("rap1", V5);
    sim.subscribe_with(
        "rap1",
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..Default::default()
        },
    );
    sim.connect("p", V5);
    let r = retained("t", b"r", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(r));
    sim.publish("p", "t", QoS::AtMostOnce, "n");
    let flags = |sim: &mut Sim, name: &str| -> Vec<bool> {
        publishes(sim.recv_all(name))
            .iter()
            .map(|p| p.retain)
            .collect()
    };
    assert_eq!(flags(&mut sim, "rap0"), [false, false]);
    assert_eq!(flags(&mut sim, "rap1"), [true, false]);
}

/// [MQTT-3.3.1-10] [MQTT-3.3.1-11]: Retain Handling 1 sends the retained messages only when the
/// subscription is new, Retain Handling 2 never at subscribe time; live messages flow either way.
#[test]
fn retain_handling_1_sends_only_for_a_new_subscription_and_2_never() {
    let mut sim = sim();
    sim.connect("p", V5);
    let r = retained("r/1", b"kept", QoS::AtMostOnce, &mut sim);
    sim.send("p", Packet::Publish(r));
    let options = |retain_handling| SubscriptionOptions {
        retain_handling,
        ..Default::default()
    };
    sim.connect("c", V5);
    sim.subscribe_with("c", "r/+", options(RetainHandling::SendIfNew));
    assert_eq!(payloads(sim.recv_all("c")), ["kept"]);
    sim.subscribe_with("c", "r/+", options(RetainHandling::SendIfNew));
    assert_eq!(sim.recv_all("c"), [], "it existed");
    sim.subscribe_with("c", "r/#", options(RetainHandling::DoNotSend));
    assert_eq!(sim.recv_all("c"), []);
    sim.send("c", Packet::Unsubscribe(unsubscribe_packet(40, &["r/+"])));
    unsuback_of(sim.recv("c"));
    sim.subscribe_with("c", "r/+", options(RetainHandling::DoNotSend));
    assert_eq!(sim.recv_all("c"), []);
    sim.publish("p", "r/1", QoS::AtMostOnce, "live");
    assert_eq!(payloads(sim.recv_all("c")), ["live"]);
}

/// [MQTT-3.3.2-2] [MQTT-4.7.0-1]: a topic name with a wildcard character is refused (DISCONNECT
/// 0x90) and not forwarded.
#[test]
fn a_topic_name_with_wildcards_is_refused() {
    for bad in [&b"a/+"[..], b"#", b"a/#", b"+"] {
        let mut sim = sim();
        sim.connect("w", V5);
        sim.subscribe("w", "#", QoS::AtMostOnce);
        sim.connect("c", V5);
        sim.send_bytes("c", &v5_publish_bytes(bad, &[], b"x"));
        assert_disconnected(&mut sim, "c", ReasonCode::TopicNameInvalid);
        assert_eq!(sim.recv_all("w"), []);
    }
}

/// [MQTT-3.3.2-3]: a forwarded PUBLISH names the topic as published, which the subscription's filter
/// matches.
#[test]
fn forwarded_topic_names_are_the_published_ones() {
    let mut sim = sim();
    let filters = ["a/b/c", "a/+/c", "a/#", "+/b/+", "#"];
    for (i, f) in filters.iter().enumerate() {
        let name = format!("s{i}");
        sim.connect(&name, V5);
        sim.subscribe(&name, f, QoS::AtMostOnce);
    }
    sim.connect("p", V5);
    sim.publish("p", "a/b/c", QoS::AtMostOnce, "x");
    sim.publish("p", "x/y", QoS::AtMostOnce, "y");
    for (i, f) in filters.iter().enumerate() {
        let got: Vec<String> = publishes(sim.recv_all(&format!("s{i}")))
            .iter()
            .map(|p| p.topic.as_str().to_string())
            .collect();
        let expected: &[&str] = if *f == "#" {
            &["a/b/c", "x/y"]
        } else {
            &["a/b/c"]
        };
        assert_eq!(got, expected, "{f}");
    }
}

/// [MQTT-3.3.2-7]: topic aliases a client set on one connection mean nothing on the next, even when
/// the session is resumed: an alias-only PUBLISH for it is a Protocol Error.
#[test]
fn inbound_topic_aliases_do_not_outlive_the_connection() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::AtMostOnce);
    sim.connect_with("p", persistent("p", 600));
    sim.send_bytes("p", &aliased(b"t", 1, b"set"));
    sim.send_bytes("p", &aliased(b"", 1, b"used"));
    assert_eq!(payloads(sim.recv_all("s")), ["set", "used"]);
    sim.drop_connection("p");
    let ack = connack(sim.connect_with("p", persistent("p", 600)));
    assert!(ack.session_present);
    sim.send_bytes("p", &aliased(b"", 1, b"stale"));
    assert_disconnected(&mut sim, "p", ReasonCode::ProtocolError);
    assert_eq!(sim.recv_all("s"), []);
}

/// [MQTT-3.3.2-13] [MQTT-3.3.2-14] [MQTT-3.3.2-19]: a Response Topic must be a valid UTF-8 topic name
/// without wildcards, and a Content Type valid UTF-8; otherwise the PUBLISH is refused and the
/// connection closed.
#[test]
fn response_topic_and_content_type_must_be_valid() {
    let string_property = |id: u8, value: &[u8]| {
        let mut p = vec![id];
        p.extend(field(value));
        p
    };
    let cases = [
        (string_property(0x08, b"r\xff"), ReasonCode::MalformedPacket),
        (
            string_property(0x08, b"r/\x00"),
            ReasonCode::MalformedPacket,
        ),
        (
            string_property(0x03, b"text/\xff"),
            ReasonCode::MalformedPacket,
        ),
        (string_property(0x08, b"r/+"), ReasonCode::TopicNameInvalid),
        (string_property(0x08, b"r/#"), ReasonCode::TopicNameInvalid),
    ];
    for (props, reason) in cases {
        let mut sim = sim();
        sim.connect("w", V5);
        sim.subscribe("w", "t", QoS::AtMostOnce);
        sim.connect("c", V5);
        sim.send_bytes("c", &v5_publish_bytes(b"t", &props, b"x"));
        let got = sim.recv_all("c");
        assert!(
            matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == reason),
            "{props:?}: {got:?}"
        );
        assert!(sim.is_closed("c"));
        assert_eq!(sim.recv_all("w"), []);
    }
}

/// [MQTT-3.3.4-5]: when the broker sends a message more than once to a client (here once for a
/// subscription and once for a shared subscription it is a member of), each copy carries the
/// identifier of its own subscription.
#[test]
fn each_copy_carries_the_identifier_of_its_own_subscription() {
    let mut sim = sim();
    sim.connect("c", V5);
    for (f, id) in [("t", 1), ("$share/g/t", 2)] {
        let mut s = subscribe_packet(u16::try_from(id).unwrap_or(1), &[(f, QoS::AtMostOnce)]);
        s.properties.subscription_identifier = SubscriptionId::new(id);
        sim.send("c", Packet::Subscribe(s));
    }
    sim.recv_all("c");
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtMostOnce, "x");
    let mut ids: Vec<Vec<u32>> = publishes(sim.recv_all("c"))
        .iter()
        .map(|p| {
            p.properties
                .subscription_identifiers
                .iter()
                .map(|i| i.get())
                .collect()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [vec![1], vec![2]]);
}

/// [MQTT-3.3.4-6]: a PUBLISH from a client carrying a Subscription Identifier is a Protocol Error.
#[test]
fn a_client_publish_with_a_subscription_identifier_is_a_protocol_error() {
    let mut sim = sim();
    sim.connect("w", V5);
    sim.subscribe("w", "t", QoS::AtMostOnce);
    sim.connect("c", V5);
    sim.send_bytes("c", &v5_publish_bytes(b"t", &[0x0B, 0x07], b"x"));
    assert_disconnected(&mut sim, "c", ReasonCode::ProtocolError);
    assert_eq!(sim.recv_all("w"), []);
}

/// [MQTT-3.3.4-9] [MQTT-3.3.4-10] [MQTT-4.9.0-1] [MQTT-4.9.0-2] [MQTT-4.9.0-3]: with the client's
/// Receive Maximum used up, no further QoS 1/2 PUBLISH goes out until an acknowledgement, while
/// every other packet is still answered at once.
#[test]
fn other_packets_are_answered_while_the_send_quota_is_zero() {
    let mut sim = sim();
    let mut c = Sim::connect_packet("s", V5);
    c.properties.receive_maximum = NonZeroU16::new(2);
    sim.connect_with("s", c);
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    for i in 0..4 {
        sim.publish("p", "t", QoS::ExactlyOnce, &i.to_string());
    }
    let sent = publishes(sim.recv_all("s"));
    assert_eq!(sent.len(), 2, "quota starts at Receive Maximum");
    sim.send("s", Packet::PingReq);
    assert_eq!(sim.recv("s"), Some(Packet::PingResp));
    sim.send(
        "s",
        Packet::Subscribe(subscribe_packet(50, &[("u", QoS::AtLeastOnce)])),
    );
    assert!(matches!(sim.recv("s"), Some(Packet::SubAck(a)) if a.packet_id == pid(50)));
    sim.send("s", Packet::Unsubscribe(unsubscribe_packet(51, &["u"])));
    assert!(matches!(sim.recv("s"), Some(Packet::UnsubAck(a)) if a.packet_id == pid(51)));
    let own = sim.publish("s", "elsewhere", QoS::AtLeastOnce, "x");
    assert_eq!(sim.recv("s"), Some(Packet::PubAck(Ack::new(id_of(&own)))));
    // PUBREC keeps the slot (the exchange is not over); PUBCOMP frees it for the next message.
    sim.send("s", Packet::PubRec(Ack::new(id_of(&sent[0]))));
    assert_eq!(
        sim.recv_all("s"),
        [Packet::PubRel(Ack::new(id_of(&sent[0])))]
    );
    sim.send("s", Packet::PubComp(Ack::new(id_of(&sent[0]))));
    assert_eq!(payloads(sim.recv_all("s")), ["2"]);
}

// ----- 3.8 SUBSCRIBE, 3.10 UNSUBSCRIBE, 3.12 PINGREQ -----

/// A v5 SUBSCRIBE (id 1, no properties) for one raw filter with raw options.
fn raw_subscribe(filter_bytes: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend(field(filter_bytes));
    body.push(options);
    frame(0x82, &body)
}

/// A v5 UNSUBSCRIBE (id 1, no properties) for one raw filter.
fn raw_unsubscribe(filter_bytes: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x00];
    body.extend(field(filter_bytes));
    frame(0xA2, &body)
}

/// [MQTT-3.8.3-1] [MQTT-3.10.3-1]: topic filters in SUBSCRIBE and UNSUBSCRIBE must be valid UTF-8.
#[test]
fn subscribe_and_unsubscribe_filters_must_be_utf8() {
    for bytes in [
        raw_subscribe(b"a/\xff", 0),
        raw_subscribe(b"\xed\xa0\x80", 0),
        raw_unsubscribe(b"a/\xff"),
    ] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &bytes);
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
    }
}

/// [MQTT-3.8.3-2] [MQTT-3.10.3-2]: a SUBSCRIBE or UNSUBSCRIBE without any topic filter is a Protocol
/// Error.
#[test]
fn subscribe_and_unsubscribe_need_at_least_one_filter() {
    for first in [0x82, 0xA2] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &frame(first, &[0x00, 0x01, 0x00]));
        assert_disconnected(&mut sim, "c", ReasonCode::ProtocolError);
    }
}

/// [MQTT-3.8.3-5]: reserved bits of the Subscription Options (bits 6 and 7, and Retain Handling 3) set
/// make the SUBSCRIBE malformed.
#[test]
fn reserved_subscription_option_bits_are_malformed() {
    for options in [0x40, 0x80, 0xC1, 0x30] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &raw_subscribe(b"t", options));
        assert_disconnected(&mut sim, "c", ReasonCode::MalformedPacket);
        assert_eq!(sim.engine.subscription_count(), 0);
    }
}

/// [MQTT-3.8.4-3]: a SUBSCRIBE for a filter the session already has replaces that subscription: one
/// subscription, with the new options and identifier.
#[test]
fn subscribing_to_the_same_filter_replaces_the_subscription() {
    let mut sim = sim();
    sim.connect("c", V5);
    for (qos, id) in [(QoS::ExactlyOnce, 1), (QoS::AtMostOnce, 2)] {
        let mut s = subscribe_packet(10, &[("t", qos)]);
        s.properties.subscription_identifier = SubscriptionId::new(id);
        sim.send("c", Packet::Subscribe(s));
        suback_of(sim.recv("c"));
    }
    assert_eq!(sim.engine.subscription_count(), 1);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "x");
    let got = publishes(sim.recv_all("c"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery, Delivery::AtMostOnce);
    let ids: Vec<u32> = got[0]
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    assert_eq!(ids, [2]);
}

/// [MQTT-3.8.4-5] [MQTT-3.9.3-1] [MQTT-3.8.4-6]: a SUBSCRIBE with several filters acts as that many
/// SUBSCRIBEs in order (a repeated filter: the later one wins) answered by one SUBACK whose reason
/// codes follow the filters' order.
#[test]
fn a_subscribe_with_several_filters_is_handled_in_order_with_one_suback() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.send(
        "c",
        Packet::Subscribe(subscribe_packet(
            7,
            &[
                ("a", QoS::AtLeastOnce),
                ("b", QoS::AtMostOnce),
                ("c", QoS::ExactlyOnce),
                ("a", QoS::ExactlyOnce),
            ],
        )),
    );
    let got = sim.recv_all("c");
    assert_eq!(got.len(), 1, "{got:?}");
    let ack = suback_of(got.into_iter().next());
    assert_eq!(
        ack.reasons,
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::Success,
            ReasonCode::GrantedQoS2,
            ReasonCode::GrantedQoS2
        ]
    );
    assert_eq!(sim.engine.subscription_count(), 3);
    sim.connect("p", V5);
    sim.publish("p", "a", QoS::ExactlyOnce, "x");
    assert_eq!(publish_of(sim.recv("c")).delivery.qos(), QoS::ExactlyOnce);
}

/// [MQTT-3.10.4-1] [MQTT-3.10.4-2]: UNSUBSCRIBE compares filters character by character (no wildcard
/// matching, no case folding); the subscription whose filter is equal is deleted and gets no new
/// messages, the others stay.
#[test]
fn unsubscribe_deletes_only_the_exactly_equal_filter() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.subscribe("c", "a/+", QoS::AtMostOnce);
    sim.subscribe("c", "a/b", QoS::AtMostOnce);
    sim.send(
        "c",
        Packet::Unsubscribe(unsubscribe_packet(5, &["a/#", "A/+", "a/b/", "+/+"])),
    );
    assert_eq!(
        unsuback_of(sim.recv("c")).reasons,
        [ReasonCode::NoSubscriptionExisted; 4]
    );
    assert_eq!(sim.engine.subscription_count(), 2);
    sim.send("c", Packet::Unsubscribe(unsubscribe_packet(6, &["a/+"])));
    assert_eq!(unsuback_of(sim.recv("c")).reasons, [ReasonCode::Success]);
    sim.connect("p", V5);
    sim.publish("p", "a/c", QoS::AtMostOnce, "gone");
    sim.publish("p", "a/b", QoS::AtMostOnce, "kept");
    assert_eq!(payloads(sim.recv_all("c")), ["kept"]);
}

/// [MQTT-3.10.4-3]: QoS 1 and QoS 2 deliveries already started on a filter complete after it is
/// unsubscribed.
#[test]
fn unsubscribe_completes_deliveries_already_started() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.subscribe("c", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "one");
    sim.publish("p", "t", QoS::ExactlyOnce, "two");
    let sent = publishes(sim.recv_all("c"));
    assert_eq!(sent.len(), 2);
    sim.send("c", Packet::Unsubscribe(unsubscribe_packet(9, &["t"])));
    assert_eq!(unsuback_of(sim.recv("c")).reasons, [ReasonCode::Success]);
    sim.send("c", Packet::PubRec(Ack::new(id_of(&sent[1]))));
    assert_eq!(
        sim.recv("c"),
        Some(Packet::PubRel(Ack::new(id_of(&sent[1]))))
    );
    sim.send("c", Packet::PubAck(Ack::new(id_of(&sent[0]))));
    sim.send("c", Packet::PubComp(Ack::new(id_of(&sent[1]))));
    assert_eq!(sim.recv_all("c"), []);
    sim.publish("p", "t", QoS::ExactlyOnce, "after");
    assert_eq!(sim.recv_all("c"), [], "no new messages");
    sim.engine
        .check_invariants()
        .unwrap_or_else(|e| panic!("{e}"));
}

/// [MQTT-3.10.4-6] [MQTT-3.11.3-1] [MQTT-3.10.4-4]: an UNSUBSCRIBE with several filters is handled as a
/// sequence and answered by one UNSUBACK with a reason code per filter, in order.
#[test]
fn an_unsubscribe_with_several_filters_gets_one_unsuback_in_order() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.subscribe("c", "a", QoS::AtMostOnce);
    sim.subscribe("c", "b", QoS::AtMostOnce);
    sim.send(
        "c",
        Packet::Unsubscribe(unsubscribe_packet(8, &["b", "x", "a", "a"])),
    );
    let got = sim.recv_all("c");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        unsuback_of(got.into_iter().next()).reasons,
        [
            ReasonCode::Success,
            ReasonCode::NoSubscriptionExisted,
            ReasonCode::Success,
            ReasonCode::NoSubscriptionExisted
        ]
    );
    assert_eq!(sim.engine.subscription_count(), 0);
}

/// [MQTT-3.12.4-1]: PINGREQ is answered with PINGRESP.
#[test]
fn pingreq_gets_pingresp() {
    let mut sim = sim();
    sim.connect("c", V5);
    for _ in 0..3 {
        sim.send("c", Packet::PingReq);
        assert_eq!(sim.recv_all("c"), [Packet::PingResp]);
    }
}

// ----- 3.14 DISCONNECT -----

/// [MQTT-3.14.0-1]: no DISCONNECT goes to a connection without a successful CONNACK: not for a
/// first packet that is not CONNECT, a malformed CONNECT, a refused one, a shutdown or a timeout
/// during authentication, nor a protocol error in the AUTH exchange before CONNACK.
#[test]
fn no_disconnect_before_a_successful_connack() {
    let no_disconnect = |got: &[Packet]| !got.iter().any(|p| matches!(p, Packet::Disconnect(_)));

    let mut sim = Sim::new(Config {
        authentication: Authentication::External,
        auth_methods: vec![METHOD.into()],
        max_client_id_length: 23,
        ..Config::default()
    });
    sim.open("ping");
    sim.set_version("ping", V5);
    sim.send("ping", Packet::PingReq);
    let got = sim.recv_all("ping");
    assert!(got.is_empty() && sim.is_closed("ping"), "{got:?}");

    let got = raw_connect(&mut sim, "malformed", &v5_connect_bytes(0x03, &field(b"m")));
    assert!(no_disconnect(&got) && sim.is_closed("malformed"), "{got:?}");

    let got = raw_connect(
        &mut sim,
        "refused",
        &v5_connect_bytes(0x02, &field(b"a-client-id-of-24-bytes!")),
    );
    assert!(no_disconnect(&got) && sim.is_closed("refused"), "{got:?}");

    sim.connect_with("eager", enhanced("eager"));
    decide(
        &mut sim,
        "eager",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    sim.send(
        "eager",
        Packet::Subscribe(subscribe_packet(1, &[("t", QoS::AtMostOnce)])),
    );
    let got = sim.recv_all("eager");
    assert!(no_disconnect(&got) && sim.is_closed("eager"), "{got:?}");

    sim.connect_with("slow", Sim::connect_packet("slow", V5));
    sim.advance(Duration::from_secs(10));
    let got = sim.recv_all("slow");
    assert!(no_disconnect(&got) && sim.is_closed("slow"), "{got:?}");
    sim.connect_with("pending", Sim::connect_packet("pending", V5));
    sim.input(Input::Shutdown);
    let got = sim.recv_all("pending");
    assert!(no_disconnect(&got) && sim.is_closed("pending"), "{got:?}");
}

/// Every DISCONNECT the broker sent, by client, with whether the client was then closed.
fn server_disconnects(sim: &mut Sim, names: &[&str]) -> Vec<(String, Disconnect, bool)> {
    names
        .iter()
        .map(|name| {
            let got = sim.recv_all(name);
            let Some(Packet::Disconnect(d)) = got
                .into_iter()
                .rev()
                .find(|p| matches!(p, Packet::Disconnect(_)))
            else {
                panic!("{name}: no DISCONNECT");
            };
            (name.to_string(), d, sim.is_closed(name))
        })
        .collect()
}

/// [MQTT-3.14.2-1] [MQTT-3.14.2-2] [MQTT-3.14.4-2] [MQTT-3.14.2-4] [MQTT-4.13.1-1] [MQTT-4.13.2-1]:
/// the DISCONNECTs the broker sends, for malformed packets, protocol errors and its other reasons,
/// use codes of the DISCONNECT table, never carry a Session Expiry Interval nor User Properties, and
/// the connection is closed after each.
#[test]
fn server_disconnects_use_their_table_and_close_the_connection() {
    let mut sim = Sim::new(Config {
        max_packet_size: 256,
        max_qos: QoS::AtLeastOnce,
        retain_available: false,
        subscription_identifiers: false,
        max_topic_levels: 3,
        ..Config::default()
    });
    let names = [
        "malformed",
        "protocol",
        "taken",
        "keepalive",
        "large",
        "alias",
        "qos",
        "retain",
        "subid",
        "topic",
        "format",
        "shutdown",
    ];
    for name in names {
        let mut c = persistent(name, 600);
        c.keep_alive = if name == "keepalive" { 5 } else { 0 };
        sim.connect_with(name, c);
    }
    sim.send_bytes("malformed", &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
    sim.send(
        "protocol",
        Packet::Connect(Box::new(persistent("protocol", 600))),
    );
    sim.connect_with("taken-2", persistent("taken", 600));
    sim.advance(Duration::from_secs(8));
    sim.publish("large", "t", QoS::AtMostOnce, &"x".repeat(300));
    sim.send_bytes("alias", &aliased(b"t", 1000, b"x"));
    sim.send_bytes("qos", &frame(0x34, &[0x00, 0x01, b't', 0x00, 0x01, 0x00]));
    let r = retained("t", b"x", QoS::AtMostOnce, &mut sim);
    sim.send("retain", Packet::Publish(r));
    let mut s = subscribe_packet(1, &[("t", QoS::AtMostOnce)]);
    s.properties.subscription_identifier = SubscriptionId::new(1);
    sim.send("subid", Packet::Subscribe(s));
    sim.publish("topic", "a/b/c/d", QoS::AtMostOnce, "x");
    let mut p = message("t", b"\xff");
    p.properties.payload_format_indicator = Some(true);
    sim.send("format", Packet::Publish(p));
    let mut all = server_disconnects(&mut sim, &names[..names.len() - 1]);
    sim.input(Input::Shutdown);
    all.extend(server_disconnects(&mut sim, &["shutdown"]));

    let mut sim = Sim::new(Config {
        receive_maximum: 1,
        ..Config::default()
    });
    sim.connect("receive", V5);
    for id in [1, 2] {
        sim.send_bytes("receive", &frame(0x34, &[0x00, 0x01, b't', 0x00, id, 0x00]));
    }
    all.extend(server_disconnects(&mut sim, &["receive"]));

    let codes: Vec<u8> = all.iter().map(|(_, d, _)| d.reason.as_u8()).collect();
    assert_eq!(
        codes,
        [0x81, 0x82, 0x8E, 0x8D, 0x95, 0x94, 0x9B, 0x9A, 0xA1, 0x90, 0x99, 0x8B, 0x93]
    );
    for (name, d, closed) in &all {
        assert!(
            DISCONNECT_CODES.contains(&d.reason.as_u8()),
            "{name}: {d:?}"
        );
        assert_eq!(d.properties.session_expiry_interval, None, "{name}: {d:?}");
        assert!(d.properties.user_properties.is_empty(), "{name}: {d:?}");
        assert!(closed, "{name} still open");
    }
}

/// [MQTT-3.14.4-1] [MQTT-3.14.4-2]: after its DISCONNECT the broker sends nothing more on the
/// connection, not the answer to a packet pipelined behind the offending one nor later messages.
#[test]
fn nothing_follows_the_servers_disconnect() {
    let mut sim = sim();
    sim.connect("c", V5);
    sim.subscribe("c", "t", QoS::AtMostOnce);
    let mut bytes = vec![0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01];
    bytes.extend_from_slice(&[0xC0, 0x00]);
    sim.send_bytes("c", &bytes);
    let got = sim.recv_all("c");
    assert!(
        matches!(&got[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::MalformedPacket),
        "{got:?}"
    );
    assert!(sim.is_closed("c"));
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtMostOnce, "later");
    assert_eq!(sim.recv_all("c"), []);
}

// ----- 3.15 AUTH, 4.12 enhanced authentication -----

/// [MQTT-3.15.2-1] [MQTT-3.15.2-2] [MQTT-3.15.2-3] [MQTT-4.12.0-2] [MQTT-4.12.0-5]: the AUTH packets of
/// an exchange and of a re-authentication use 0x18 to continue and 0x00 to succeed, carry the
/// CONNECT's Authentication Method (as does the successful CONNACK) and never a Reason String or User
/// Property.
#[test]
fn auth_packets_carry_the_method_and_no_diagnostics() {
    let mut sim = auth_sim();
    sim.connect_with("c", enhanced("c"));
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"challenge"),
        },
    );
    let mut auths = vec![auth_of(sim.recv("c"))];
    sim.send("c", client_auth(ReasonCode::ContinueAuthentication, METHOD));
    decide(&mut sim, "c", AuthDecision::Allow);
    let ack = connack(sim.recv("c"));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    sim.send("c", client_auth(ReasonCode::ReAuthenticate, METHOD));
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"again"),
        },
    );
    auths.push(auth_of(sim.recv("c")));
    sim.send("c", client_auth(ReasonCode::ContinueAuthentication, METHOD));
    decide(&mut sim, "c", AuthDecision::Allow);
    auths.push(auth_of(sim.recv("c")));
    let reasons: Vec<ReasonCode> = auths.iter().map(|a| a.reason).collect();
    assert_eq!(
        reasons,
        [
            ReasonCode::ContinueAuthentication,
            ReasonCode::ContinueAuthentication,
            ReasonCode::Success
        ]
    );
    for a in &auths {
        assert!(AUTH_CODES.contains(&a.reason.as_u8()));
        assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        assert_eq!(a.properties.reason_string, None);
        assert!(a.properties.user_properties.is_empty());
    }
    assert!(!sim.is_closed("c"));
}

/// [MQTT-4.12.0-1]: an Authentication Method the server does not offer gets CONNACK 0x8C and the
/// connection is closed, also on a server offering none.
#[test]
fn an_unsupported_authentication_method_is_refused_and_closed() {
    for mut sim in [sim(), auth_sim()] {
        let mut c = Sim::connect_packet("c", V5);
        c.properties.authentication_method = Some("GS2-KRB5".into());
        let ack = connack(sim.connect_with("c", c));
        assert_eq!(
            (ack.reason, ack.session_present),
            (ReasonCode::BadAuthenticationMethod, false)
        );
        assert!(sim.is_closed("c"));
    }
}

/// [MQTT-4.12.0-3] [MQTT-4.12.0-5]: the client's answer to a challenge must be AUTH 0x18 with the
/// CONNECT's method; any other refuses the connection (CONNACK 0x82) and closes it.
#[test]
fn an_answer_to_a_challenge_must_be_auth_0x18_with_the_same_method() {
    for answer in [
        client_auth(ReasonCode::ReAuthenticate, METHOD),
        client_auth(ReasonCode::Success, METHOD),
        client_auth(ReasonCode::ContinueAuthentication, "OTHER"),
    ] {
        let mut sim = auth_sim();
        sim.connect_with("c", enhanced("c"));
        decide(
            &mut sim,
            "c",
            AuthDecision::Continue {
                data: Bytes::from_static(b"?"),
            },
        );
        auth_of(sim.recv("c"));
        sim.send("c", answer.clone());
        let ack = connack(sim.recv("c"));
        assert_eq!(ack.reason, ReasonCode::ProtocolError, "{answer:?}");
        assert!(sim.is_closed("c"));
    }
}

/// [MQTT-4.12.0-4]: the server may reject the authentication at any step: after a challenge and an
/// answer, a refusing CONNACK, then close.
#[test]
fn the_server_can_reject_the_authentication_at_any_step() {
    let mut sim = auth_sim();
    sim.connect_with("c", enhanced("c"));
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    auth_of(sim.recv("c"));
    sim.send("c", client_auth(ReasonCode::ContinueAuthentication, METHOD));
    decide(
        &mut sim,
        "c",
        AuthDecision::Deny {
            reason: ReasonCode::NotAuthorized,
        },
    );
    let ack = connack(sim.recv("c"));
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    assert!(sim.is_closed("c"));
}

/// [MQTT-4.12.0-6]: to a client whose CONNECT named no Authentication Method the server sends no AUTH
/// (an authenticator asking to challenge it gets the client refused instead) and no Authentication
/// Method in CONNACK.
#[test]
fn no_auth_packet_and_no_method_for_a_plain_connect() {
    let mut sim = auth_sim();
    sim.connect_with("plain", Sim::connect_packet("plain", V5));
    decide(
        &mut sim,
        "plain",
        AuthDecision::Continue {
            data: Bytes::from_static(b"?"),
        },
    );
    let got = sim.recv_all("plain");
    assert!(!got.iter().any(|p| matches!(p, Packet::Auth(_))), "{got:?}");
    assert!(sim.is_closed("plain"));

    sim.connect_with("ok", Sim::connect_packet("ok", V5));
    decide(&mut sim, "ok", AuthDecision::Allow);
    let ack = connack(sim.recv("ok"));
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
}

/// [MQTT-4.12.1-1]: a re-authentication must use the method of the CONNECT; another one is a Protocol
/// Error (DISCONNECT 0x82, close).
#[test]
fn reauthentication_must_use_the_connects_method() {
    let mut sim = auth_sim();
    sim.connect_with("c", enhanced("c"));
    decide(&mut sim, "c", AuthDecision::Allow);
    assert_eq!(connack(sim.recv("c")).reason, ReasonCode::Success);
    sim.send("c", client_auth(ReasonCode::ReAuthenticate, "OTHER"));
    assert_disconnected(&mut sim, "c", ReasonCode::ProtocolError);
}

/// [MQTT-4.12.1-2]: a failed re-authentication is answered with DISCONNECT (0x87 here) and the
/// connection is closed.
#[test]
fn a_failed_reauthentication_disconnects_and_closes() {
    let mut sim = auth_sim();
    sim.connect_with("c", enhanced("c"));
    decide(&mut sim, "c", AuthDecision::Allow);
    connack(sim.recv("c"));
    sim.send("c", client_auth(ReasonCode::ReAuthenticate, METHOD));
    decide(
        &mut sim,
        "c",
        AuthDecision::Deny {
            reason: ReasonCode::NotAuthorized,
        },
    );
    assert_disconnected(&mut sim, "c", ReasonCode::NotAuthorized);
}

// ----- 4.1 session state, 4.3 QoS flows, 4.4 retries -----

/// [MQTT-4.1.0-1]: a session is kept for as long as its connection is open, whatever its Session
/// Expiry Interval (0 or 1 s here): its subscriptions and unacknowledged messages are still there
/// much later.
#[test]
fn session_state_is_kept_while_the_connection_is_open() {
    let mut sim = sim();
    for (name, expiry) in [("zero", 0), ("one", 1)] {
        let mut c = persistent(name, expiry);
        c.keep_alive = 0;
        sim.connect_with(name, c);
        sim.subscribe(name, "t", QoS::AtLeastOnce);
    }
    let mut p = Sim::connect_packet("p", V5);
    p.keep_alive = 0;
    sim.connect_with("p", p);
    sim.publish("p", "t", QoS::AtLeastOnce, "early");
    sim.advance(Duration::from_secs(3600));
    sim.publish("p", "t", QoS::AtLeastOnce, "late");
    for name in ["zero", "one"] {
        let got = publishes(sim.recv_all(name));
        assert_eq!(got.len(), 2, "{name}");
        // The first is still unacknowledged, so its acknowledgement is still expected.
        sim.send(name, Packet::PubAck(Ack::new(id_of(&got[0]))));
        assert!(!sim.is_closed(name));
    }
    assert_eq!(sim.engine.session_count(), 3);
    sim.engine
        .check_invariants()
        .unwrap_or_else(|e| panic!("{e}"));
}

/// [MQTT-4.3.2-2] [MQTT-4.3.2-3] [MQTT-4.4.0-1] [MQTT-3.3.1-1]: a QoS 1 PUBLISH first goes out with DUP
/// 0; it stays unacknowledged until PUBACK, is resent (DUP 1, same packet id) only when the session
/// resumes, never on a timer, and not after its PUBACK.
#[test]
fn qos1_is_resent_with_dup_only_on_resumption_until_puback() {
    let mut sim = sim();
    let mut c = persistent("s", 600);
    c.keep_alive = 0;
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "t", QoS::AtLeastOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "m");
    let first = publish_of(sim.recv("s"));
    assert_eq!((first.delivery.qos(), first.dup), (QoS::AtLeastOnce, false));
    sim.advance(Duration::from_secs(600));
    assert_eq!(sim.recv_all("s"), [], "no resend on a live connection");
    sim.drop_connection("s");
    connack(sim.connect_with("s", c.clone()));
    let again = publish_of(sim.recv("s"));
    assert!(again.dup);
    assert_eq!(again.delivery, first.delivery);
    sim.send("s", Packet::PubAck(Ack::new(id_of(&again))));
    sim.drop_connection("s");
    connack(sim.connect_with("s", c));
    assert_eq!(sim.recv_all("s"), [], "acknowledged: never again");
}

/// [MQTT-4.3.2-4] [MQTT-4.3.2-5]: a QoS 1 PUBLISH is acknowledged with its packet id; once acknowledged,
/// a PUBLISH reusing the id (even with DUP 1) is a new message, delivered again.
#[test]
fn after_puback_the_same_packet_id_is_a_new_message() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::AtMostOnce);
    sim.connect("p", V5);
    for (dup, payload) in [(false, "first"), (true, "second")] {
        let mut p = message("t", b"");
        p.payload = Bytes::from(payload);
        p.delivery = Delivery::AtLeastOnce(pid(7));
        p.dup = dup;
        sim.send("p", Packet::Publish(p));
        assert_eq!(sim.recv("p"), Some(Packet::PubAck(Ack::new(pid(7)))));
    }
    assert_eq!(payloads(sim.recv_all("s")), ["first", "second"]);
}

/// [MQTT-4.3.3-2] [MQTT-4.3.3-3] [MQTT-4.3.3-4] [MQTT-4.3.3-5] [MQTT-4.3.3-6] [MQTT-4.4.0-1]: a QoS 2
/// PUBLISH first goes out with DUP 0 and is resent (DUP 1) on resumption until PUBREC; PUBREC is
/// answered with PUBREL with the same id, which is then resent instead of the PUBLISH until PUBCOMP.
#[test]
fn qos2_publish_then_pubrel_are_resent_until_acknowledged() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", 600));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::ExactlyOnce, "m");
    let first = publish_of(sim.recv("s"));
    assert_eq!((first.delivery.qos(), first.dup), (QoS::ExactlyOnce, false));
    let id = id_of(&first);
    sim.drop_connection("s");
    connack(sim.connect_with("s", persistent("s", 600)));
    let again = publish_of(sim.recv("s"));
    assert_eq!((again.dup, again.delivery), (true, first.delivery));
    sim.send("s", Packet::PubRec(Ack::new(id)));
    assert_eq!(sim.recv_all("s"), [Packet::PubRel(Ack::new(id))]);
    for _ in 0..2 {
        sim.drop_connection("s");
        connack(sim.connect_with("s", persistent("s", 600)));
        assert_eq!(
            sim.recv_all("s"),
            [Packet::PubRel(Ack::new(id))],
            "PUBREL, never the PUBLISH again"
        );
    }
    sim.send("s", Packet::PubComp(Ack::new(id)));
    sim.drop_connection("s");
    connack(sim.connect_with("s", persistent("s", 600)));
    assert_eq!(sim.recv_all("s"), []);
}

/// [MQTT-4.3.3-7]: a QoS 2 message already sent is not expired: resent after its Message Expiry
/// Interval passed, and its exchange completes.
#[test]
fn a_sent_qos2_message_is_not_expired() {
    let mut sim = sim();
    sim.connect_with("s", persistent("s", 600));
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    let mut p = message("t", b"brief");
    p.delivery = Delivery::ExactlyOnce(pid(1));
    p.properties.message_expiry_interval = Some(5);
    sim.send("p", Packet::Publish(p));
    let first = publish_of(sim.recv("s"));
    sim.drop_connection("s");
    sim.advance(Duration::from_secs(60));
    connack(sim.connect_with("s", persistent("s", 600)));
    let again = publish_of(sim.recv("s"));
    assert_eq!((again.dup, &again.payload[..]), (true, &b"brief"[..]));
    sim.send("s", Packet::PubRec(Ack::new(id_of(&first))));
    assert_eq!(sim.recv("s"), Some(Packet::PubRel(Ack::new(id_of(&first)))));
}

/// [MQTT-4.3.3-8] [MQTT-4.3.3-11] [MQTT-4.3.3-12] [MQTT-4.3.3-10]: a QoS 2 PUBLISH gets PUBREC with its
/// id, PUBREL gets PUBCOMP with its id; after PUBCOMP a PUBLISH with the same id is a new message.
#[test]
fn after_pubcomp_the_same_packet_id_is_a_new_message() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::AtMostOnce);
    sim.connect("p", V5);
    for payload in ["first", "second"] {
        let mut p = message("t", b"");
        p.payload = Bytes::from(payload);
        p.delivery = Delivery::ExactlyOnce(pid(3));
        sim.send("p", Packet::Publish(p.clone()));
        assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(3)))));
        // A resend before PUBREL is acknowledged again, and not delivered twice.
        p.dup = true;
        sim.send("p", Packet::Publish(p));
        assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(3)))));
        sim.send("p", Packet::PubRel(Ack::new(pid(3))));
        assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(3)))));
    }
    assert_eq!(payloads(sim.recv_all("s")), ["first", "second"]);
}

/// [MQTT-4.3.3-9]: the broker never answers a QoS 2 PUBLISH with a PUBREC of 0x80 or above (a PUBLISH
/// it refuses ends the connection instead), and a refused PUBLISH leaves no trace of its packet id: the
/// same id on the next connection is a new message.
#[test]
fn a_refused_qos2_publish_leaves_its_packet_id_free() {
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", "t", QoS::AtMostOnce);
    sim.connect_with("p", persistent("p", 600));
    let mut bad = message("t", b"\xff");
    bad.delivery = Delivery::ExactlyOnce(pid(9));
    bad.properties.payload_format_indicator = Some(true);
    sim.send("p", Packet::Publish(bad));
    let got = sim.recv_all("p");
    assert!(
        !got.iter().any(|p| matches!(p, Packet::PubRec(_))),
        "{got:?}"
    );
    assert!(sim.is_closed("p"));
    connack(sim.connect_with("p", persistent("p", 600)));
    let mut good = message("t", b"fine");
    good.delivery = Delivery::ExactlyOnce(pid(9));
    sim.send("p", Packet::Publish(good));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(9)))));
    assert_eq!(payloads(sim.recv_all("s")), ["fine"]);
}

/// [MQTT-4.3.3-13]: a received QoS 2 message whose Message Expiry Interval passed still has its
/// exchange completed: PUBREL gets PUBCOMP 0x00.
#[test]
fn the_qos2_exchange_completes_after_the_message_expired() {
    let mut sim = sim();
    let mut c = Sim::connect_packet("p", V5);
    c.keep_alive = 0;
    sim.connect_with("p", c);
    let mut p = message("t", b"brief");
    p.delivery = Delivery::ExactlyOnce(pid(4));
    p.properties.message_expiry_interval = Some(1);
    sim.send("p", Packet::Publish(p));
    assert_eq!(sim.recv("p"), Some(Packet::PubRec(Ack::new(pid(4)))));
    sim.advance(Duration::from_secs(30));
    sim.send("p", Packet::PubRel(Ack::new(pid(4))));
    assert_eq!(sim.recv("p"), Some(Packet::PubComp(Ack::new(pid(4)))));
}

/// [MQTT-4.4.0-2]: a PUBACK or PUBREC of 0x80 or above ends the exchange: no PUBREL, no resend on
/// resumption, and the Receive Maximum slot is free again.
#[test]
fn an_error_puback_or_pubrec_acknowledges_for_good() {
    let mut sim = sim();
    let mut c = persistent("s", 600);
    c.properties.receive_maximum = NonZeroU16::new(1);
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "t", QoS::ExactlyOnce);
    sim.connect("p", V5);
    sim.publish("p", "t", QoS::AtLeastOnce, "one");
    sim.publish("p", "t", QoS::ExactlyOnce, "two");
    sim.publish("p", "t", QoS::AtLeastOnce, "three");
    let one = publish_of(sim.recv("s"));
    assert_eq!(sim.recv("s"), None, "window of one");
    let mut refuse = Ack::new(id_of(&one));
    refuse.reason = ReasonCode::UnspecifiedError;
    sim.send("s", Packet::PubAck(refuse));
    let two = publish_of(sim.recv("s"));
    assert_eq!(&two.payload[..], b"two");
    let mut refuse = Ack::new(id_of(&two));
    refuse.reason = ReasonCode::QuotaExceeded;
    sim.send("s", Packet::PubRec(refuse));
    let next = sim.recv_all("s");
    assert_eq!(payloads(next.clone()), ["three"], "no PUBREL: {next:?}");
    sim.drop_connection("s");
    connack(sim.connect_with("s", c));
    assert_eq!(
        payloads(sim.recv_all("s")),
        ["three"],
        "only the unacknowledged one"
    );
}

// ----- 4.6 ordering -----

/// [MQTT-4.6.0-5] [MQTT-4.6.0-6]: messages from one client reach a non-shared subscriber in the
/// order they were published, per topic and QoS, through a narrow Receive Maximum window and through an
/// offline queue.
#[test]
fn messages_keep_their_publishing_order() {
    let mut sim = sim();
    let mut c = persistent("s", 600);
    c.properties.receive_maximum = NonZeroU16::new(3);
    sim.connect_with("s", c.clone());
    sim.subscribe("s", "#", QoS::ExactlyOnce);
    sim.connect("p", V5);
    let sent: Vec<(String, QoS, String)> = (0..30)
        .map(|i| {
            let t = ["a", "b", "a/b"][i % 3].to_string();
            let qos = [QoS::AtLeastOnce, QoS::ExactlyOnce][i % 2];
            (t, qos, i.to_string())
        })
        .collect();
    for (i, (t, qos, payload)) in sent.iter().enumerate() {
        if i == 15 {
            sim.drop_connection("s");
        }
        sim.publish("p", t, *qos, payload);
    }
    sim.recv_all("p");
    let mut got: Vec<(String, QoS, String)> = Vec::new();
    let mut deliver = |sim: &mut Sim| loop {
        let batch = sim.recv_all("s");
        if batch.is_empty() {
            return;
        }
        for packet in batch {
            match packet {
                Packet::Publish(p) => {
                    if !got.iter().any(|(_, _, pl)| pl.as_bytes() == &p.payload[..]) {
                        got.push((
                            p.topic.as_str().to_string(),
                            p.delivery.qos(),
                            String::from_utf8_lossy(&p.payload).into_owned(),
                        ));
                    }
                    match p.delivery {
                        Delivery::AtLeastOnce(id) => sim.send("s", Packet::PubAck(Ack::new(id))),
                        Delivery::ExactlyOnce(id) => sim.send("s", Packet::PubRec(Ack::new(id))),
                        Delivery::AtMostOnce => {}
                    }
                }
                Packet::PubRel(rel) => sim.send("s", Packet::PubComp(Ack::new(rel.packet_id))),
                _ => {}
            }
        }
    };
    deliver(&mut sim);
    connack(sim.connect_with("s", c));
    deliver(&mut sim);
    assert_eq!(got.len(), 30);
    for t in ["a", "b", "a/b"] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let expected: Vec<&String> = sent
                .iter()
                .filter(|(st, sq, _)| st == t && *sq == qos)
                .map(|(_, _, p)| p)
                .collect();
            let delivered: Vec<&String> = got
                .iter()
                .filter(|(gt, gq, _)| gt == t && *gq == qos)
                .map(|(_, _, p)| p)
                .collect();
            assert_eq!(delivered, expected, "{t} {qos:?}");
        }
    }
}

// ----- 4.7 topic names and filters -----

/// [MQTT-4.7.1-1] [MQTT-4.7.1-2]: `#` only alone or after `/` and last, `+` only as a whole level;
/// misplaced wildcards make the filter invalid and the SUBSCRIBE is refused (0x8F), while well placed
/// ones are granted.
#[test]
fn wildcards_must_be_well_placed_in_filters() {
    for bad in [
        &b"a/#/b"[..],
        b"a#",
        b"#/",
        b"a/b#",
        b"a+",
        b"a/+b",
        b"+a/b",
        b"a/b/c+",
    ] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &raw_subscribe(bad, 0));
        assert_disconnected(&mut sim, "c", ReasonCode::TopicFilterInvalid);
        assert_eq!(sim.engine.subscription_count(), 0);
    }
    let mut sim = sim();
    sim.connect("c", V5);
    for good in ["#", "a/#", "+", "+/+", "+/b/#", "a/+/c", "/+", "+/"] {
        let ack = suback_of(sim.subscribe("c", good, QoS::AtMostOnce));
        assert_eq!(ack.reasons, [ReasonCode::Success], "{good}");
    }
}

/// [MQTT-4.7.3-1]: an empty topic name (without a Topic Alias) and an empty topic filter are refused.
#[test]
fn empty_topic_names_and_filters_are_refused() {
    let mut sim = sim();
    sim.connect("name", V5);
    sim.send_bytes("name", &v5_publish_bytes(b"", &[], b"x"));
    assert_disconnected(&mut sim, "name", ReasonCode::ProtocolError);
    for bytes in [raw_subscribe(b"", 0), raw_unsubscribe(b"")] {
        let mut sim = self::sim();
        sim.connect("filter", V5);
        sim.send_bytes("filter", &bytes);
        let got = sim.recv_all("filter");
        assert!(
            matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason.is_error()),
            "{got:?}"
        );
        assert!(sim.is_closed("filter"));
    }
}

/// [MQTT-4.7.3-3]: topic names and filters are at most 65,535 bytes: longer ones cannot be built (so
/// are never encoded), and one of exactly 65,535 bytes goes through the broker.
#[test]
fn topics_are_at_most_65535_bytes() {
    assert!(TopicName::new("a".repeat(65_536)).is_err());
    assert!(TopicFilter::new("a".repeat(65_536)).is_err());
    let longest = "a".repeat(65_535);
    let mut sim = sim();
    sim.connect("s", V5);
    sim.subscribe("s", &longest, QoS::AtMostOnce);
    sim.connect("p", V5);
    sim.publish("p", &longest, QoS::AtMostOnce, "x");
    let got = publish_of(sim.recv("s"));
    assert_eq!(got.topic.as_str().len(), 65_535);
}

/// [MQTT-4.7.3-4]: matching compares topics as they are: no case folding, no Unicode normalization
/// (U+00E9 is not "e" + U+0301), no trimming of empty levels.
#[test]
fn topic_matching_does_not_normalize() {
    let mut sim = sim();
    let filters = ["caf\u{e9}", "cafe\u{301}", "Cafe", "a/b", "a//b", "a/b/"];
    for (i, f) in filters.iter().enumerate() {
        let name = format!("s{i}");
        sim.connect(&name, V5);
        sim.subscribe(&name, f, QoS::AtMostOnce);
    }
    sim.connect("p", V5);
    for t in filters {
        sim.publish("p", t, QoS::AtMostOnce, t);
    }
    for (i, f) in filters.iter().enumerate() {
        let got = publishes(sim.recv_all(&format!("s{i}")));
        let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(topics, [*f], "{f:?}");
    }
}

// ----- 4.8 shared subscriptions -----

/// [MQTT-4.8.2-1] [MQTT-4.8.2-2]: a shared subscription filter is `$share/`, a ShareName of at least
/// one character without `/`, `+` or `#`, a `/` and a topic filter; other `$share/` filters are
/// refused.
#[test]
fn shared_subscription_filters_need_a_share_name_and_a_filter() {
    for bad in [
        &b"$share//t"[..],
        b"$share/g",
        b"$share/g/",
        b"$share/g+/t",
        b"$share/g#/t",
        b"$share/+/t",
        b"$share/#",
    ] {
        let mut sim = sim();
        sim.connect("c", V5);
        sim.send_bytes("c", &raw_subscribe(bad, 0));
        let got = sim.recv_all("c");
        let refused = match got.last() {
            Some(Packet::Disconnect(d)) => d.reason.is_error() && sim.is_closed("c"),
            Some(Packet::SubAck(a)) => a.reasons.iter().all(|r| r.is_error()),
            _ => false,
        };
        assert!(refused, "{}: {got:?}", String::from_utf8_lossy(bad));
        assert_eq!(sim.engine.subscription_count(), 0);
    }
    let mut sim = sim();
    sim.connect("c", V5);
    for good in ["$share/g/t", "$share/group-1/a/+/#", "$share/g/#"] {
        let ack = suback_of(sim.subscribe("c", good, QoS::AtMostOnce));
        assert_eq!(ack.reasons, [ReasonCode::Success], "{good}");
    }
}

/// [MQTT-4.8.2-5]: a QoS 2 message whose delivery to a shared subscriber had started goes to no other
/// member when that subscriber's session ends before it comes back.
#[test]
fn a_shared_qos2_message_ends_with_its_members_session() {
    let mut sim = sim();
    sim.connect_with("a", persistent("a", 10));
    sim.subscribe("a", "$share/g/t", QoS::ExactlyOnce);
    let mut b = persistent("b", 600);
    b.keep_alive = 0;
    sim.connect_with("b", b);
    sim.subscribe("b", "$share/g/t", QoS::ExactlyOnce);
    let mut p = Sim::connect_packet("p", V5);
    p.keep_alive = 0;
    sim.connect_with("p", p);
    sim.publish("p", "t", QoS::ExactlyOnce, "only");
    let to_a = sim.recv_all("a");
    let to_b = sim.recv_all("b");
    assert_eq!(payloads(to_a).len() + payloads(to_b.clone()).len(), 1);
    let (member, other) = if to_b.is_empty() {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert_eq!(member, "a", "round robin starts with the first member");
    sim.drop_connection(member);
    sim.advance(Duration::from_secs(11));
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, Event::SessionExpired { client_id } if client_id == "a")));
    assert_eq!(sim.recv_all(other), [], "not handed to another member");
}

/// [MQTT-4.8.2-6]: a message a shared subscriber refuses (PUBACK or PUBREC 0x80 or above) is discarded,
/// not offered to another member, also when the refusing member goes away.
#[test]
fn a_refused_shared_message_goes_to_no_other_member() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut sim = sim();
        sim.connect_with("a", persistent("a", 600));
        sim.subscribe("a", "$share/g/t", qos);
        sim.connect_with("b", persistent("b", 600));
        sim.subscribe("b", "$share/g/t", qos);
        sim.connect("p", V5);
        sim.publish("p", "t", qos, "refused");
        let got = publish_of(sim.recv("a"));
        let mut refuse = Ack::new(id_of(&got));
        refuse.reason = ReasonCode::ImplementationSpecificError;
        if qos == QoS::AtLeastOnce {
            sim.send("a", Packet::PubAck(refuse));
        } else {
            sim.send("a", Packet::PubRec(refuse));
        }
        assert_eq!(sim.recv_all("a"), [], "{qos:?}: no PUBREL");
        sim.drop_connection("a");
        assert_eq!(sim.recv_all("b"), [], "{qos:?}");
        connack(sim.connect_with("a", persistent("a", 600)));
        assert_eq!(sim.recv_all("a"), [], "{qos:?}");
    }
}

/// [MQTT-3.14.2-3], [MQTT-3.1.2-24]: a DISCONNECT's Reason String is left out rather than push it over
/// the client's Maximum Packet Size (finding F1, fixed).
#[test]
fn disconnect_reason_string_fits_the_clients_maximum_packet_size() {
    let mut sim = sim();
    let mut c = Sim::connect_packet("c", V5);
    c.properties.maximum_packet_size = NonZeroU32::new(16);
    sim.connect_with("c", c);
    let mut p = message("t", b"\xff");
    p.properties.payload_format_indicator = Some(true);
    sim.send("c", Packet::Publish(p));
    let got = sim.recv_all("c");
    let Some(d @ Packet::Disconnect(_)) = got.last() else {
        panic!("{got:?}");
    };
    assert!(d.encoded_len(V5) <= 16, "{d:?}");
    assert!(sim.is_closed("c"));
}

/// [MQTT-3.1.2-24]: an AUTH challenge larger than the client's Maximum Packet Size is not sent
/// (finding F1, fixed).
#[test]
fn auth_packets_fit_the_clients_maximum_packet_size() {
    let mut sim = auth_sim();
    let mut c = enhanced("c");
    c.properties.maximum_packet_size = NonZeroU32::new(16);
    sim.connect_with("c", c);
    decide(
        &mut sim,
        "c",
        AuthDecision::Continue {
            data: Bytes::from(vec![b'x'; 40]),
        },
    );
    for p in sim.recv_all("c") {
        assert!(p.encoded_len(V5) <= 16, "{p:?}");
    }
}

/// [MQTT-3.2.2-8]: an authenticator refusing with a code CONNACK cannot carry gets 0x87 Not
/// authorized in the CONNACK instead (finding F2, fixed).
#[test]
fn a_deny_with_a_disconnect_only_code_still_gets_a_valid_connack() {
    let mut sim = auth_sim();
    sim.connect_with("x", enhanced("x"));
    decide(
        &mut sim,
        "x",
        AuthDecision::Deny {
            reason: ReasonCode::SessionTakenOver,
        },
    );
    let got = sim.recv_all("x");
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason == ReasonCode::NotAuthorized),
        "{got:?}"
    );
    assert!(sim.is_closed("x"));
}
