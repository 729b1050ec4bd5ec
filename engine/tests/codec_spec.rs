//! The codec against hand-assembled wire bytes: every packet type in MQTT 3.1, 3.1.1 and 5.0 decodes to the
//! expected value, and that value encodes back to the same bytes. The incremental decoder is checked on
//! partial, whole and concatenated packets.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use cicada_engine::codec::{
    decode_one, Ack, Auth, ConnAck, Connect, DecodeError, Decoded, Decoder, Delivery, Disconnect,
    Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    Subscription, SubscriptionId, SubscriptionOptions, TopicFilter, TopicName, UnsubAck,
    Unsubscribe, UserProperty, Will,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// Parses `"10 1F 00 04"`-style hex.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// `bytes` decodes to `expected` in `version`, and `expected` encodes to exactly `bytes`.
fn assert_wire(version: ProtocolVersion, bytes: &str, expected: Packet) {
    let bytes = hex(bytes);
    assert_eq!(
        decode_one(&bytes, version),
        Ok(expected.clone()),
        "decoding in {version}"
    );
    let mut out = BytesMut::new();
    expected.encode(version, &mut out).expect("encodes");
    assert_eq!(
        out.as_ref(),
        bytes.as_slice(),
        "encoding {expected} in {version}"
    );
    assert_eq!(expected.encoded_len(version), bytes.len());
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).expect("valid topic")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).expect("valid filter")
}

fn connect(protocol: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn connect_v3_1_uses_mqisdp_and_level_3() {
    assert_wire(
        V3_1,
        "10 11 00 06 4D 51 49 73 64 70 03 02 00 3C 00 03 63 69 64",
        Packet::Connect(Box::new(connect(V3_1, "cid"))),
    );
}

#[test]
fn connect_v3_1_1_with_will_user_and_password() {
    let mut c = connect(V3_1_1, "cid");
    c.will = Some(Will {
        topic: topic("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    c.username = Some("u".into());
    c.password = Some(Bytes::from_static(b"p"));
    // Flags 0xEE: user name, password, will retain, will QoS 1, will flag, clean session.
    assert_wire(
        V3_1_1,
        "10 1F 00 04 4D 51 54 54 04 EE 00 3C 00 03 63 69 64 00 03 77 2F 74 00 03 62 79 65 00 01 75 00 01 70",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_v3_1_1_empty_client_id_without_clean_session() {
    let mut c = connect(V3_1_1, "");
    c.clean_start = false;
    c.keep_alive = 0;
    assert_wire(
        V3_1_1,
        "10 0C 00 04 4D 51 54 54 04 00 00 00 00 00",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_v5_with_properties_and_will_properties() {
    let mut c = connect(V5, "cid");
    c.properties.session_expiry_interval = Some(120);
    c.properties.receive_maximum = NonZeroU16::new(20);
    let mut will = Will {
        topic: topic("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(5);
    c.will = Some(will);
    assert_wire(
        V5,
        "10 28 00 04 4D 51 54 54 05 06 00 3C 08 11 00 00 00 78 21 00 14 00 03 63 69 64 \
         05 18 00 00 00 05 00 03 77 2F 74 00 03 62 79 65",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_v5_password_without_user_name_is_allowed() {
    // MQTT 5.0 drops the 3.1.1 rule that a password needs a user name.
    let mut c = connect(V5, "c");
    c.password = Some(Bytes::from_static(b"pw"));
    assert_wire(
        V5,
        "10 12 00 04 4D 51 54 54 05 42 00 3C 00 00 01 63 00 02 70 77",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connack_each_version() {
    let ok = |session_present| ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties: Default::default(),
    };
    assert_wire(V3_1, "20 02 00 00", Packet::ConnAck(ok(false)));
    assert_wire(V3_1_1, "20 02 01 00", Packet::ConnAck(ok(true)));
    let refused = ConnAck {
        session_present: false,
        reason: ReasonCode::NotAuthorized,
        properties: Default::default(),
    };
    // 0x87 Not authorized folds to 3.1.1 return code 5.
    assert_wire(V3_1_1, "20 02 00 05", Packet::ConnAck(refused.clone()));
    assert_wire(V5, "20 03 00 87 00", Packet::ConnAck(refused));

    let mut assigned = ok(false);
    assigned.properties.assigned_client_identifier = Some("abc".into());
    assigned.properties.topic_alias_maximum = Some(10);
    assert_wire(
        V5,
        "20 0C 00 00 09 12 00 03 61 62 63 22 00 0A",
        Packet::ConnAck(assigned),
    );
}

#[test]
fn publish_qos_0_1_2_with_flags() {
    let mut p = Publish::new(topic("a/b"), Bytes::new());
    assert_wire(V3_1_1, "30 05 00 03 61 2F 62", Packet::Publish(p.clone()));

    p.delivery = Delivery::AtLeastOnce(pid(10));
    p.retain = true;
    p.payload = Bytes::from_static(b"hi");
    assert_wire(
        V3_1_1,
        "33 09 00 03 61 2F 62 00 0A 68 69",
        Packet::Publish(p),
    );

    let mut q2 = Publish::new(topic("a/b"), Bytes::new());
    q2.delivery = Delivery::ExactlyOnce(pid(1));
    q2.dup = true;
    assert_wire(V3_1, "3C 07 00 03 61 2F 62 00 01", Packet::Publish(q2));
}

#[test]
fn publish_v5_with_every_property() {
    let mut p = Publish::new(topic("a/b"), Bytes::from_static(b"x"));
    p.delivery = Delivery::AtLeastOnce(pid(10));
    let props = &mut p.properties;
    props.payload_format_indicator = Some(true);
    props.message_expiry_interval = Some(60);
    props.topic_alias = NonZeroU16::new(5);
    props.response_topic = Some(topic("r"));
    props.correlation_data = Some(Bytes::from_static(&[1, 2]));
    props.user_properties = vec![UserProperty::new("k", "v")];
    props.subscription_identifiers = vec![SubscriptionId::new(7).expect("non-zero")];
    props.content_type = Some("t".into());
    assert_wire(
        V5,
        "32 29 00 03 61 2F 62 00 0A 20 01 01 02 00 00 00 3C 23 00 05 08 00 01 72 09 00 02 01 02 \
         26 00 01 6B 00 01 76 0B 07 03 00 01 74 78",
        Packet::Publish(p),
    );
}

#[test]
fn publish_v5_alias_only_topic() {
    // An empty topic name is legal in 5.0 when a Topic Alias stands for it.
    let packet = decode_one(&hex("30 06 00 00 03 23 00 01"), V5).expect("decodes");
    let Packet::Publish(p) = packet else {
        panic!("not a PUBLISH: {packet}")
    };
    assert!(p.topic.is_empty());
    assert_eq!(p.properties.topic_alias, NonZeroU16::new(1));
}

#[test]
fn acknowledgements_in_short_and_long_forms() {
    let ack = |n| Ack::new(pid(n));
    assert_wire(V3_1_1, "40 02 00 07", Packet::PubAck(ack(7)));
    assert_wire(V3_1_1, "50 02 00 07", Packet::PubRec(ack(7)));
    assert_wire(V3_1_1, "62 02 00 07", Packet::PubRel(ack(7)));
    assert_wire(V3_1_1, "70 02 00 07", Packet::PubComp(ack(7)));
    // 5.0 omits a Success reason code and empty properties.
    assert_wire(V5, "40 02 00 07", Packet::PubAck(ack(7)));

    let mut refused = ack(7);
    refused.reason = ReasonCode::NoMatchingSubscribers;
    assert_wire(V5, "40 03 00 07 10", Packet::PubAck(refused));

    let mut with_reason = ack(7);
    with_reason.reason = ReasonCode::NotAuthorized;
    with_reason.properties.reason_string = Some("no".into());
    assert_wire(
        V5,
        "50 09 00 07 87 05 1F 00 02 6E 6F",
        Packet::PubRec(with_reason),
    );
}

#[test]
fn v5_ack_with_reason_code_but_no_property_length_decodes() {
    // 3.4.2.1: the property length may be omitted when the remaining length is 3.
    let mut expected = Ack::new(pid(7));
    expected.reason = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(
        decode_one(&hex("62 03 00 07 92"), V5),
        Ok(Packet::PubRel(expected))
    );
}

#[test]
fn subscribe_and_suback() {
    let options = |qos| SubscriptionOptions {
        qos,
        ..Default::default()
    };
    let sub = Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        subscriptions: vec![
            Subscription {
                filter: filter("a/+"),
                options: options(QoS::AtLeastOnce),
            },
            Subscription {
                filter: filter("#"),
                options: options(QoS::AtMostOnce),
            },
        ],
    };
    assert_wire(
        V3_1_1,
        "82 0C 00 01 00 03 61 2F 2B 01 00 01 23 00",
        Packet::Subscribe(sub),
    );
    let suback = SubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
    };
    assert_wire(V3_1_1, "90 04 00 01 01 80", Packet::SubAck(suback.clone()));
    assert_wire(V5, "90 05 00 01 00 01 80", Packet::SubAck(suback));
}

#[test]
fn subscribe_v5_options_and_identifier() {
    let mut sub = Subscribe {
        packet_id: pid(2),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: filter("$share/g/a"),
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: false,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        }],
    };
    sub.properties.subscription_identifier = SubscriptionId::new(200);
    // Options 0x2A: retain handling 2, retain as published, QoS 2. Identifier 200 is C8 01.
    assert_wire(
        V5,
        "82 13 00 02 03 0B C8 01 00 0A 24 73 68 61 72 65 2F 67 2F 61 2A",
        Packet::Subscribe(sub),
    );
}

#[test]
fn unsubscribe_and_unsuback() {
    let unsub = Unsubscribe {
        packet_id: pid(3),
        properties: Default::default(),
        filters: vec![filter("a/#")],
    };
    assert_wire(
        V3_1_1,
        "A2 07 00 03 00 03 61 2F 23",
        Packet::Unsubscribe(unsub.clone()),
    );
    assert_wire(
        V5,
        "A2 08 00 03 00 00 03 61 2F 23",
        Packet::Unsubscribe(unsub),
    );
    let unsuback = UnsubAck {
        packet_id: pid(3),
        properties: Default::default(),
        reasons: vec![ReasonCode::NoSubscriptionExisted],
    };
    assert_wire(V5, "B0 04 00 03 00 11", Packet::UnsubAck(unsuback));
    // 3.1.1 UNSUBACK has no payload: the reasons are not on the wire.
    assert_wire(
        V3_1_1,
        "B0 02 00 03",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(3),
            properties: Default::default(),
            reasons: vec![],
        }),
    );
}

#[test]
fn ping_disconnect_and_auth() {
    for version in [V3_1, V3_1_1, V5] {
        assert_wire(version, "C0 00", Packet::PingReq);
        assert_wire(version, "D0 00", Packet::PingResp);
        assert_wire(
            version,
            "E0 00",
            Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
        );
    }
    let mut d = Disconnect::new(ReasonCode::SessionTakenOver);
    d.properties.session_expiry_interval = Some(0);
    assert_wire(V5, "E0 07 8E 05 11 00 00 00 00", Packet::Disconnect(d));
    assert_wire(
        V5,
        "E0 01 04",
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill)),
    );

    let mut auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Default::default(),
    };
    auth.properties.authentication_method = Some("SCRAM".into());
    auth.properties.authentication_data = Some(Bytes::from_static(&[0xAB]));
    assert_wire(
        V5,
        "F0 0E 18 0C 15 00 05 53 43 52 41 4D 16 00 01 AB",
        Packet::Auth(auth),
    );
}

#[test]
fn auth_is_not_a_3_x_packet() {
    assert_eq!(
        decode_one(&hex("F0 00"), V3_1_1),
        Err(DecodeError::InvalidPacketType { nibble: 15 })
    );
}

#[test]
fn connack_maximum_packet_size_property() {
    let mut ack = ConnAck {
        session_present: false,
        reason: ReasonCode::Success,
        properties: Default::default(),
    };
    ack.properties.maximum_packet_size = NonZeroU32::new(1024);
    assert_wire(V5, "20 08 00 00 05 27 00 00 04 00", Packet::ConnAck(ack));
}

// ----- incremental decoding -----

const PUBLISH_311: &str = "33 09 00 03 61 2F 62 00 0A 68 69";

#[test]
fn incremental_decoding_reports_bytes_needed() {
    let bytes = hex(PUBLISH_311);
    let mut decoder = Decoder::new(1024);
    decoder.set_version(V3_1_1);
    let mut buf = BytesMut::new();
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Incomplete { needed: 2 })
    );
    buf.extend_from_slice(&bytes[..1]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Incomplete { needed: 1 })
    );
    // Once the fixed header is complete the count is exact, and nothing is consumed.
    for have in 2..bytes.len() {
        buf.clear();
        buf.extend_from_slice(&bytes[..have]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Incomplete {
                needed: bytes.len() - have
            })
        );
        assert_eq!(buf.len(), have);
    }
    buf.extend_from_slice(&bytes[buf.len()..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Decoded::Packet(Packet::Publish(_)))
    ));
    assert!(buf.is_empty());
}

#[test]
fn several_packets_in_one_buffer_come_out_in_order() {
    let mut stream = hex(PUBLISH_311);
    stream.extend(hex("C0 00 40 02 00 07"));
    stream.extend(hex("E0")); // the start of a fourth packet
    let mut decoder = Decoder::new(1024);
    decoder.set_version(V3_1_1);
    let mut buf = BytesMut::from(stream.as_slice());
    let mut types = Vec::new();
    while let Decoded::Packet(p) = decoder.decode(&mut buf).expect("valid stream") {
        types.push(p.packet_type().name());
    }
    assert_eq!(types, ["PUBLISH", "PINGREQ", "PUBACK"]);
    assert_eq!(buf.as_ref(), &[0xE0]);
}

#[test]
fn decoder_learns_the_version_from_connect() {
    let mut buf =
        BytesMut::from(hex("10 0E 00 04 4D 51 54 54 05 02 00 3C 00 00 01 63 E0 01 04").as_slice());
    let mut decoder = Decoder::new(1024);
    assert_eq!(decoder.version(), None);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Decoded::Packet(Packet::Connect(_)))
    ));
    assert_eq!(decoder.version(), Some(V5));
    // `E0 01 04` is a 5.0 DISCONNECT with a reason code; in 3.1.1 it would be malformed.
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Decoded::Packet(Packet::Disconnect(Disconnect::new(
            ReasonCode::DisconnectWithWill
        ))))
    );
}

#[test]
fn oversized_packet_is_refused_from_its_fixed_header() {
    let mut decoder = Decoder::new(100);
    decoder.set_version(V3_1_1);
    // 0x80 0x01 is 128: the header alone says the packet is 131 bytes.
    let mut buf = BytesMut::from(hex("30 80 01").as_slice());
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 131,
            max: 100
        })
    );
    // Exactly at the limit is fine: 2 + 98 = 100 bytes.
    let mut at_limit = hex("30 62 00 01 61");
    at_limit.resize(100, b'x');
    let mut buf = BytesMut::from(at_limit.as_slice());
    assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::Packet(_))));
}

#[test]
fn publish_payload_is_a_slice_of_the_receive_buffer() {
    let mut decoder = Decoder::new(1024);
    decoder.set_version(V3_1_1);
    let mut buf = BytesMut::from(hex(PUBLISH_311).as_slice());
    let start = buf.as_ptr() as usize;
    let Ok(Decoded::Packet(Packet::Publish(p))) = decoder.decode(&mut buf) else {
        panic!("expected a PUBLISH")
    };
    // The payload "hi" is the last two bytes of the 11-byte packet: no copy was made.
    assert_eq!(p.payload.as_ptr() as usize, start + 9);
}
