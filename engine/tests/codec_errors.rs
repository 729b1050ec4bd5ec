//! Every class of malformed input is refused with the right typed error, and that error maps to the right
//! MQTT 5.0 reason code (and, for CONNECT, the right 3.x CONNACK return code).

use cicada_engine::codec::{
    decode_one, DecodeError, PacketType, PropertyId, ProtocolVersion, ReasonCode,
};

use DecodeError::*;
use ProtocolVersion::{V3_1, V3_1_1, V5};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// Decoding `bytes` in `version` fails with exactly `error`, which maps to `reason`.
#[track_caller]
fn refused(version: ProtocolVersion, bytes: &str, error: DecodeError, reason: ReasonCode) {
    assert_eq!(
        decode_one(&hex(bytes), version),
        Err(error.clone()),
        "{bytes}"
    );
    assert_eq!(error.reason_code(), reason, "reason code of {error}");
    // The message names the rule; it is what goes into the log line.
    assert!(!error.to_string().is_empty());
}

#[test]
fn packet_type_zero_and_auth_before_v5() {
    refused(
        V5,
        "00 00",
        InvalidPacketType { nibble: 0 },
        ReasonCode::ProtocolError,
    );
    refused(
        V3_1_1,
        "F0 00",
        InvalidPacketType { nibble: 15 },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn reserved_fixed_header_flags() {
    for (bytes, packet, flags) in [
        ("11 00", PacketType::Connect, 1),
        ("60 02 00 01", PacketType::PubRel, 0),
        ("80 00", PacketType::Subscribe, 0),
        ("A0 00", PacketType::Unsubscribe, 0),
        ("C1 00", PacketType::PingReq, 1),
        ("E8 00", PacketType::Disconnect, 8),
    ] {
        refused(
            V3_1_1,
            bytes,
            InvalidHeaderFlags { packet, flags },
            ReasonCode::MalformedPacket,
        );
    }
}

#[test]
fn dup_on_resent_3_1_packets_is_tolerated_but_not_in_3_1_1() {
    // MQTT 3.1 set DUP on resent PUBREL/SUBSCRIBE/UNSUBSCRIBE; 3.1.1 fixed those bits.
    assert!(decode_one(&hex("6A 02 00 01"), V3_1).is_ok());
    refused(
        V3_1_1,
        "6A 02 00 01",
        InvalidHeaderFlags {
            packet: PacketType::PubRel,
            flags: 0x0A,
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn remaining_length_over_four_bytes_or_not_shortest() {
    let field = "remaining length";
    refused(
        V5,
        "30 FF FF FF FF 01",
        MalformedVarInt { field },
        ReasonCode::MalformedPacket,
    );
    // 0x80 0x00 is zero in two bytes: not the shortest form.
    refused(
        V5,
        "C0 80 00",
        MalformedVarInt { field },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn qos_3() {
    refused(
        V3_1_1,
        "36 05 00 01 61 00 01",
        InvalidQoS {
            field: "PUBLISH fixed header",
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn dup_on_qos_0_publish() {
    refused(
        V3_1_1,
        "38 03 00 01 61",
        DupOnQoS0,
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn bad_utf8_null_and_surrogates_in_topic() {
    let field = "topic name";
    refused(
        V3_1_1,
        "30 04 00 02 61 FF",
        InvalidUtf8 { field },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "30 04 00 02 61 00",
        NullCharacter { field },
        ReasonCode::MalformedPacket,
    );
    // ED A0 80 is U+D800 encoded as if it were a scalar value.
    refused(
        V3_1_1,
        "30 05 00 03 ED A0 80",
        Surrogate { field },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn wildcards_in_topic_names() {
    refused(
        V3_1_1,
        "30 05 00 03 61 2F 2B",
        InvalidTopicName {
            topic: "a/+".into(),
            rule: "must not contain wildcard characters",
        },
        ReasonCode::TopicNameInvalid,
    );
}

#[test]
fn empty_topic_name_needs_an_alias() {
    refused(
        V3_1_1,
        "30 02 00 00",
        InvalidTopicName {
            topic: String::new(),
            rule: "must be at least one character long",
        },
        ReasonCode::TopicNameInvalid,
    );
    refused(
        V5,
        "30 03 00 00 00",
        EmptyTopicWithoutAlias,
        ReasonCode::ProtocolError,
    );
}

#[test]
fn misplaced_wildcards_in_filters() {
    for (bytes, bad) in [
        ("82 09 00 01 00 04 61 2F 61 2B 00", "a/a+"),
        ("82 08 00 01 00 03 23 2F 61 00", "#/a"),
        ("82 0D 00 01 00 08 24 73 68 61 72 65 2F 67 00", "$share/g"),
    ] {
        let err = decode_one(&hex(bytes), V3_1_1).expect_err("refused");
        assert!(
            matches!(&err, InvalidTopicFilter { filter, .. } if filter == bad),
            "{bad}: {err:?}"
        );
        assert_eq!(err.reason_code(), ReasonCode::TopicFilterInvalid);
    }
}

#[test]
fn subscribe_needs_a_filter_and_valid_options() {
    refused(
        V3_1_1,
        "82 02 00 01",
        NoTopicFilters {
            packet: PacketType::Subscribe,
        },
        ReasonCode::ProtocolError,
    );
    // Retain Handling 3 (0x30) is reserved.
    let err = decode_one(&hex("82 07 00 01 00 00 01 61 30"), V5).expect_err("refused");
    assert!(
        matches!(err, InvalidSubscriptionOptions { options: 0x30, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
    // 3.1.1 reserves the upper six bits.
    let err = decode_one(&hex("82 06 00 01 00 01 61 04"), V3_1_1).expect_err("refused");
    assert!(
        matches!(err, InvalidSubscriptionOptions { options: 0x04, .. }),
        "{err:?}"
    );
}

#[test]
fn no_local_on_a_shared_subscription() {
    // "$share/g/a" with options 0x04 (No Local).
    refused(
        V5,
        "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04",
        NoLocalOnSharedSubscription {
            filter: "$share/g/a".into(),
        },
        ReasonCode::ProtocolError,
    );
}

#[test]
fn zero_packet_identifiers() {
    refused(
        V3_1_1,
        "32 05 00 01 61 00 00",
        ZeroPacketId {
            packet: PacketType::Publish,
        },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "40 02 00 00",
        ZeroPacketId {
            packet: PacketType::PubAck,
        },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "82 06 00 00 00 01 61 00",
        ZeroPacketId {
            packet: PacketType::Subscribe,
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn properties_unknown_not_allowed_duplicate_and_out_of_range() {
    refused(
        V5,
        "E0 03 00 01 7F",
        UnknownProperty {
            id: 0x7F,
            packet: PacketType::Disconnect,
        },
        ReasonCode::MalformedPacket,
    );
    // Topic Alias (0x23) in DISCONNECT.
    refused(
        V5,
        "E0 05 00 03 23 00 01",
        PropertyNotAllowed {
            id: PropertyId::TopicAlias,
            packet: PacketType::Disconnect,
        },
        ReasonCode::ProtocolError,
    );
    // Session Expiry Interval twice.
    refused(
        V5,
        "E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02",
        DuplicateProperty {
            id: PropertyId::SessionExpiryInterval,
            packet: PacketType::Disconnect,
        },
        ReasonCode::ProtocolError,
    );
    // Receive Maximum 0 in CONNACK.
    let err = decode_one(&hex("20 06 00 00 03 21 00 00"), V5).expect_err("refused");
    assert!(
        matches!(
            err,
            InvalidPropertyValue {
                id: PropertyId::ReceiveMaximum,
                packet: PacketType::ConnAck,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
    // Topic Alias 0 in PUBLISH has its own reason code.
    let err = decode_one(&hex("30 07 00 01 61 03 23 00 00"), V5).expect_err("refused");
    assert!(
        matches!(
            err,
            InvalidPropertyValue {
                id: PropertyId::TopicAlias,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::TopicAliasInvalid);
}

#[test]
fn reason_codes_not_allowed_in_the_packet() {
    // 0x18 Continue authentication belongs to AUTH, not DISCONNECT; 3.1.1 CONNACK stops at 5.
    refused(
        V5,
        "E0 02 18 00",
        InvalidReasonCode {
            code: 0x18,
            packet: PacketType::Disconnect,
        },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "20 02 00 06",
        InvalidReasonCode {
            code: 6,
            packet: PacketType::ConnAck,
        },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn truncated_and_trailing_bytes() {
    // The packet says 5 bytes but its topic claims 9.
    refused(
        V3_1_1,
        "30 05 00 09 61 62 63",
        UnexpectedEnd {
            packet: PacketType::Publish,
            field: "topic name",
        },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "40 03 00 01 00",
        TrailingBytes {
            packet: PacketType::PubAck,
            extra: 1,
        },
        ReasonCode::MalformedPacket,
    );
    refused(
        V3_1_1,
        "40 02 00",
        Truncated { needed: 1 },
        ReasonCode::MalformedPacket,
    );
}

#[test]
fn connect_protocol_name_and_level() {
    let err =
        decode_one(&hex("10 0C 00 04 4D 51 54 54 06 02 00 3C 00 00"), V5).expect_err("refused");
    assert!(
        matches!(err, UnsupportedProtocolLevel { level: 6, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    assert_eq!(err.v3_connack_code(), Some(1));

    // "MQIsdp" must come with level 3, "MQTT" with 4 or 5.
    let err =
        decode_one(&hex("10 0C 00 04 4D 51 54 54 03 02 00 3C 00 00"), V5).expect_err("refused");
    assert!(
        matches!(err, UnsupportedProtocolLevel { level: 3, .. }),
        "{err:?}"
    );

    let err =
        decode_one(&hex("10 0C 00 04 4D 51 54 58 04 02 00 3C 00 00"), V5).expect_err("refused");
    assert!(matches!(err, InvalidProtocolName { .. }), "{err:?}");
    // Not MQTT at all: no CONNACK, the connection is just closed [MQTT-3.1.2-1].
    assert_eq!(err.v3_connack_code(), None);
}

#[test]
fn connect_flags() {
    // Reserved bit 0 set.
    let err =
        decode_one(&hex("10 0C 00 04 4D 51 54 54 04 03 00 3C 00 00"), V3_1_1).expect_err("refused");
    assert!(
        matches!(err, InvalidConnectFlags { flags: 0x03, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
    // No CONNACK is owed for a malformed CONNECT in 3.x: the connection is just closed.
    assert_eq!(err.v3_connack_code(), None);
    // Will retain without a will.
    let err =
        decode_one(&hex("10 0C 00 04 4D 51 54 54 04 22 00 3C 00 00"), V3_1_1).expect_err("refused");
    assert!(
        matches!(err, InvalidConnectFlags { flags: 0x22, .. }),
        "{err:?}"
    );
    // Will QoS 3.
    let err = decode_one(
        &hex("10 12 00 04 4D 51 54 54 04 1E 00 3C 00 00 00 01 74 00 01 70"),
        V3_1_1,
    )
    .expect_err("refused");
    assert!(
        matches!(err, InvalidQoS { .. } | InvalidConnectFlags { .. }),
        "{err:?}"
    );
    // A password without a user name in 3.1.1.
    let err = decode_one(
        &hex("10 0F 00 04 4D 51 54 54 04 42 00 3C 00 00 00 01 70"),
        V3_1_1,
    )
    .expect_err("refused");
    assert!(
        matches!(err, InvalidConnectFlags { flags: 0x42, .. }),
        "{err:?}"
    );
}

#[test]
fn every_reason_code_mapping_is_an_error_code() {
    // The mapping never yields a success code: an error always closes with a failure reason.
    let samples = [
        DecodeError::PacketTooLarge { size: 10, max: 5 },
        DupOnQoS0,
        EmptyTopicWithoutAlias,
        Truncated { needed: 1 },
        InvalidPacketType { nibble: 0 },
    ];
    for e in samples {
        assert!(e.reason_code().as_u8() >= 0x80, "{e}");
    }
    assert_eq!(
        DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
        ReasonCode::PacketTooLarge
    );
}
