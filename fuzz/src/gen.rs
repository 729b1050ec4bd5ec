//! Generators of MQTT packets from unstructured fuzz input.
//!
//! Every generator produces only values the codec can represent exactly in the protocol version it is
//! given, so that `decode(encode(p)) == p` must hold for all of them:
//!
//! - MQTT 3.x packets have empty properties and only the reason codes 3.x can express;
//! - MQTT 5.0 packets carry every property of their packet sometimes, reason codes the spec allows in
//!   that packet, and respect the cross-field rules the decoder enforces (Authentication Data only with an
//!   Authentication Method, an empty PUBLISH topic only with a Topic Alias, no No Local on shared
//!   subscriptions);
//! - topic names, topic filters and strings are valid (no wildcards in names, `+` and `#` only where
//!   allowed, no U+0000), packet identifiers are non-zero, and PUBLISH carries DUP only at QoS 1 and 2.
//!
//! The generators are driven by [`arbitrary::Unstructured`], so they work with any byte source: bolero's
//! random engine under `cargo test`, libFuzzer or AFL under `cargo bolero`, or a fixed seed in a test.
//! When the input runs out, `Unstructured` answers with the smallest choice, so generation still succeeds
//! (with small, mostly default values).

use std::num::{NonZeroU16, NonZeroU32};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Error, Result, Unstructured};
use bytes::Bytes;
use bytestring::ByteString;
use cicada_engine::codec::{
    decode_one, Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, Delivery, Disconnect, DisconnectProperties, Packet, PacketId, PacketType,
    ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, SubscribeProperties, Subscription, SubscriptionId, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, UnsubscribeProperties, UserProperty, Will, WillProperties,
    SHARED_PREFIX,
};

/// The largest value of a variable byte integer, hence of a subscription identifier.
pub const VARINT_MAX: u32 = 268_435_455;

/// The packet types that exist in `version`, in wire order: every type, AUTH only in MQTT 5.0.
pub fn packet_types(version: ProtocolVersion) -> &'static [PacketType] {
    const ALL: [PacketType; 15] = [
        PacketType::Connect,
        PacketType::ConnAck,
        PacketType::Publish,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::Subscribe,
        PacketType::SubAck,
        PacketType::Unsubscribe,
        PacketType::UnsubAck,
        PacketType::PingReq,
        PacketType::PingResp,
        PacketType::Disconnect,
        PacketType::Auth,
    ];
    if version.is_v5() {
        &ALL
    } else {
        &ALL[..14]
    }
}

/// Any packet representable in `version`: its type drawn from [`packet_types`], its fields by
/// [`packet_of_type`].
pub fn packet(u: &mut Unstructured, version: ProtocolVersion) -> Result<Packet> {
    let packet_type = *u.choose(packet_types(version))?;
    packet_of_type(u, version, packet_type)
}

/// Between `min` and `max` packets of `version`, for stream tests.
pub fn packets(
    u: &mut Unstructured,
    version: ProtocolVersion,
    min: usize,
    max: usize,
) -> Result<Vec<Packet>> {
    let count = u.int_in_range(min..=max)?;
    (0..count).map(|_| packet(u, version)).collect()
}

/// A packet of type `packet_type` representable in `version`.
///
/// Fails with [`Error::IncorrectFormat`] for AUTH before MQTT 5.0, which does not exist there.
pub fn packet_of_type(
    u: &mut Unstructured,
    version: ProtocolVersion,
    packet_type: PacketType,
) -> Result<Packet> {
    let v5 = version.is_v5();
    Ok(match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(connect(u, version)?)),
        PacketType::ConnAck => Packet::ConnAck(connack(u, version)?),
        PacketType::Publish => Packet::Publish(publish(u, version)?),
        PacketType::PubAck => Packet::PubAck(ack(u, version, PacketType::PubAck)?),
        PacketType::PubRec => Packet::PubRec(ack(u, version, PacketType::PubRec)?),
        PacketType::PubRel => Packet::PubRel(ack(u, version, PacketType::PubRel)?),
        PacketType::PubComp => Packet::PubComp(ack(u, version, PacketType::PubComp)?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(u, version)?),
        PacketType::SubAck => Packet::SubAck(suback(u, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(u, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback(u, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(disconnect(u, version)?),
        PacketType::Auth if v5 => Packet::Auth(auth(u)?),
        _ => return Err(Error::IncorrectFormat),
    })
}

/// A CONNECT whose `protocol` is `version`.
pub fn connect(u: &mut Unstructured, version: ProtocolVersion) -> Result<Connect> {
    let v5 = version.is_v5();
    let properties = if v5 {
        connect_properties(u)?
    } else {
        ConnectProperties::default()
    };
    let client_id = string(u)?;
    let will = if u.arbitrary()? {
        Some(will(u, version)?)
    } else {
        None
    };
    let username = option(u, string)?;
    // MQTT 3.x has no password without a user name ([MQTT-3.1.2-22]).
    let password = if v5 || username.is_some() {
        option(u, |u| binary(u, 64))?
    } else {
        None
    };
    Ok(Connect {
        protocol: version,
        clean_start: u.arbitrary()?,
        keep_alive: u16_value(u)?,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

/// A will message; with properties only in MQTT 5.0.
pub fn will(u: &mut Unstructured, version: ProtocolVersion) -> Result<Will> {
    Ok(Will {
        topic: topic_name(u)?,
        payload: binary(u, 300)?,
        qos: qos(u)?,
        retain: u.arbitrary()?,
        properties: if version.is_v5() {
            will_properties(u)?
        } else {
            WillProperties::default()
        },
    })
}

/// A CONNACK: in 3.x a return code from 0 to 5 (and no Session Present in 3.1), in 5.0 any CONNACK
/// reason code and properties.
pub fn connack(u: &mut Unstructured, version: ProtocolVersion) -> Result<ConnAck> {
    if version.is_v5() {
        return Ok(ConnAck {
            session_present: u.arbitrary()?,
            reason: reason_for(u, PacketType::ConnAck)?,
            properties: connack_properties(u)?,
        });
    }
    let code = u.int_in_range(0..=5)?;
    Ok(ConnAck {
        // MQTT 3.1 has no Session Present flag.
        session_present: version != ProtocolVersion::V3_1 && u.arbitrary()?,
        reason: ReasonCode::from_v3_connack(code).ok_or(Error::IncorrectFormat)?,
        properties: ConnAckProperties::default(),
    })
}

/// A PUBLISH. In 5.0 its topic may be empty when a Topic Alias stands for it.
pub fn publish(u: &mut Unstructured, version: ProtocolVersion) -> Result<Publish> {
    let v5 = version.is_v5();
    let delivery = match u.int_in_range(0..=2)? {
        0 => Delivery::AtMostOnce,
        1 => Delivery::AtLeastOnce(packet_id(u)?),
        _ => Delivery::ExactlyOnce(packet_id(u)?),
    };
    let dup = delivery != Delivery::AtMostOnce && u.arbitrary()?;
    let properties = if v5 {
        publish_properties(u)?
    } else {
        PublishProperties::default()
    };
    let alias_only = properties.topic_alias.is_some() && u.ratio(1, 3)?;
    let topic = match alias_only.then(alias_only_topic).flatten() {
        Some(empty) => empty,
        None => topic_name(u)?,
    };
    Ok(Publish {
        dup,
        delivery,
        retain: u.arbitrary()?,
        topic,
        properties,
        payload: payload(u)?,
    })
}

/// The empty topic name of an MQTT 5.0 PUBLISH that names its topic by Topic Alias alone, as the decoder
/// represents it.
///
/// The codec does not export a constructor for it (`TopicName::new` refuses an empty name), so this
/// decodes a minimal alias-only PUBLISH once and keeps its topic. `None` if the codec refuses that packet.
pub fn alias_only_topic() -> Option<TopicName> {
    /// PUBLISH QoS 0, remaining length 6: empty topic, properties (3 bytes): Topic Alias 1.
    const ALIAS_ONLY_PUBLISH: [u8; 8] = [0x30, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01];
    static TOPIC: OnceLock<Option<TopicName>> = OnceLock::new();
    TOPIC
        .get_or_init(
            || match decode_one(&ALIAS_ONLY_PUBLISH, ProtocolVersion::V5) {
                Ok(Packet::Publish(p)) if p.topic.is_empty() => Some(p.topic),
                _ => None,
            },
        )
        .clone()
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_type`): in 3.x always Success without properties.
pub fn ack(u: &mut Unstructured, version: ProtocolVersion, packet_type: PacketType) -> Result<Ack> {
    let packet_id = packet_id(u)?;
    if !version.is_v5() {
        return Ok(Ack::new(packet_id));
    }
    Ok(Ack {
        packet_id,
        reason: reason_for(u, packet_type)?,
        properties: ack_properties(u)?,
    })
}

/// A SUBSCRIBE with one to six filters.
pub fn subscribe(u: &mut Unstructured, version: ProtocolVersion) -> Result<Subscribe> {
    let v5 = version.is_v5();
    let packet_id = packet_id(u)?;
    let properties = if v5 {
        SubscribeProperties {
            subscription_identifier: option(u, subscription_id)?,
            user_properties: user_properties(u)?,
        }
    } else {
        SubscribeProperties::default()
    };
    let count = u.int_in_range(1..=6)?;
    let subscriptions = (0..count)
        .map(|_| {
            let filter = topic_filter(u)?;
            let options = subscription_options(u, version, filter.shared().is_some())?;
            Ok(Subscription { filter, options })
        })
        .collect::<Result<_>>()?;
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

/// Subscription options: only the QoS in 3.x; in 5.0 every option, but never No Local on a shared
/// subscription ([MQTT-3.8.3-4]).
pub fn subscription_options(
    u: &mut Unstructured,
    version: ProtocolVersion,
    shared: bool,
) -> Result<SubscriptionOptions> {
    let qos = qos(u)?;
    if !version.is_v5() {
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: !shared && u.arbitrary()?,
        retain_as_published: u.arbitrary()?,
        retain_handling: *u.choose(&[
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend,
        ])?,
    })
}

/// A SUBACK with zero to six reason codes (3.x: granted QoS 0 to 2 or failure).
pub fn suback(u: &mut Unstructured, version: ProtocolVersion) -> Result<SubAck> {
    let v5 = version.is_v5();
    let packet_id = packet_id(u)?;
    let properties = if v5 {
        ack_properties(u)?
    } else {
        AckProperties::default()
    };
    let count = u.int_in_range(0..=6)?;
    let reasons = (0..count)
        .map(|_| {
            if v5 {
                reason_for(u, PacketType::SubAck)
            } else {
                u.choose(&[
                    ReasonCode::Success,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::UnspecifiedError,
                ])
                .copied()
            }
        })
        .collect::<Result<_>>()?;
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

/// An UNSUBSCRIBE with one to six filters.
pub fn unsubscribe(u: &mut Unstructured, version: ProtocolVersion) -> Result<Unsubscribe> {
    let packet_id = packet_id(u)?;
    let properties = if version.is_v5() {
        UnsubscribeProperties {
            user_properties: user_properties(u)?,
        }
    } else {
        UnsubscribeProperties::default()
    };
    let count = u.int_in_range(1..=6)?;
    let filters = (0..count).map(|_| topic_filter(u)).collect::<Result<_>>()?;
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

/// An UNSUBACK: in 3.x without reason codes (3.x UNSUBACK has no payload), in 5.0 with zero to six.
pub fn unsuback(u: &mut Unstructured, version: ProtocolVersion) -> Result<UnsubAck> {
    let packet_id = packet_id(u)?;
    if !version.is_v5() {
        return Ok(UnsubAck {
            packet_id,
            properties: AckProperties::default(),
            reasons: Vec::new(),
        });
    }
    let properties = ack_properties(u)?;
    let count = u.int_in_range(0..=6)?;
    let reasons = (0..count)
        .map(|_| reason_for(u, PacketType::UnsubAck))
        .collect::<Result<_>>()?;
    Ok(UnsubAck {
        packet_id,
        properties,
        reasons,
    })
}

/// A DISCONNECT: in 3.x always Success without properties.
pub fn disconnect(u: &mut Unstructured, version: ProtocolVersion) -> Result<Disconnect> {
    if !version.is_v5() {
        return Ok(Disconnect::new(ReasonCode::Success));
    }
    Ok(Disconnect {
        reason: reason_for(u, PacketType::Disconnect)?,
        properties: DisconnectProperties {
            session_expiry_interval: option(u, u32_value)?,
            reason_string: option(u, string)?,
            server_reference: option(u, string)?,
            user_properties: user_properties(u)?,
        },
    })
}

/// An AUTH (MQTT 5.0 only).
pub fn auth(u: &mut Unstructured) -> Result<Auth> {
    Ok(Auth {
        reason: reason_for(u, PacketType::Auth)?,
        properties: AuthProperties {
            authentication_method: option(u, string)?,
            authentication_data: option(u, |u| binary(u, 64))?,
            reason_string: option(u, string)?,
            user_properties: user_properties(u)?,
        },
    })
}

/// CONNECT properties; Authentication Data only with an Authentication Method.
pub fn connect_properties(u: &mut Unstructured) -> Result<ConnectProperties> {
    let authentication_method = option(u, string)?;
    let authentication_data = if authentication_method.is_some() {
        option(u, |u| binary(u, 64))?
    } else {
        None
    };
    Ok(ConnectProperties {
        session_expiry_interval: option(u, u32_value)?,
        receive_maximum: option(u, non_zero_u16)?,
        maximum_packet_size: option(u, non_zero_u32)?,
        topic_alias_maximum: option(u, u16_value)?,
        request_response_information: option(u, bool_value)?,
        request_problem_information: option(u, bool_value)?,
        authentication_method,
        authentication_data,
        user_properties: user_properties(u)?,
    })
}

/// Will properties.
pub fn will_properties(u: &mut Unstructured) -> Result<WillProperties> {
    Ok(WillProperties {
        will_delay_interval: option(u, u32_value)?,
        payload_format_indicator: option(u, bool_value)?,
        message_expiry_interval: option(u, u32_value)?,
        content_type: option(u, string)?,
        response_topic: option(u, topic_name)?,
        correlation_data: option(u, |u| binary(u, 64))?,
        user_properties: user_properties(u)?,
    })
}

/// CONNACK properties; Maximum QoS is 0 or 1 (the spec has no value for 2: it is the default).
pub fn connack_properties(u: &mut Unstructured) -> Result<ConnAckProperties> {
    Ok(ConnAckProperties {
        session_expiry_interval: option(u, u32_value)?,
        receive_maximum: option(u, non_zero_u16)?,
        maximum_qos: option(u, |u| {
            u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce]).copied()
        })?,
        retain_available: option(u, bool_value)?,
        maximum_packet_size: option(u, non_zero_u32)?,
        assigned_client_identifier: option(u, string)?,
        topic_alias_maximum: option(u, u16_value)?,
        reason_string: option(u, string)?,
        wildcard_subscription_available: option(u, bool_value)?,
        subscription_identifiers_available: option(u, bool_value)?,
        shared_subscription_available: option(u, bool_value)?,
        server_keep_alive: option(u, u16_value)?,
        response_information: option(u, string)?,
        server_reference: option(u, string)?,
        authentication_method: option(u, string)?,
        authentication_data: option(u, |u| binary(u, 64))?,
        user_properties: user_properties(u)?,
    })
}

/// PUBLISH properties, with up to four subscription identifiers.
pub fn publish_properties(u: &mut Unstructured) -> Result<PublishProperties> {
    Ok(PublishProperties {
        payload_format_indicator: option(u, bool_value)?,
        message_expiry_interval: option(u, u32_value)?,
        topic_alias: option(u, non_zero_u16)?,
        response_topic: option(u, topic_name)?,
        correlation_data: option(u, |u| binary(u, 64))?,
        user_properties: user_properties(u)?,
        subscription_identifiers: several(u, 4, subscription_id)?,
        content_type: option(u, string)?,
    })
}

/// The diagnostics properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub fn ack_properties(u: &mut Unstructured) -> Result<AckProperties> {
    Ok(AckProperties {
        reason_string: option(u, string)?,
        user_properties: user_properties(u)?,
    })
}

/// Zero to four user properties (none half of the time); names may repeat.
pub fn user_properties(u: &mut Unstructured) -> Result<Vec<UserProperty>> {
    several(u, 4, |u| {
        Ok(UserProperty {
            name: string(u)?,
            value: string(u)?,
        })
    })
}

/// A reason code the spec allows in `packet_type` (MQTT 5.0).
pub fn reason_for(u: &mut Unstructured, packet_type: PacketType) -> Result<ReasonCode> {
    let allowed = reasons_allowed_in(packet_type);
    u.choose(&allowed).copied()
}

/// Every MQTT 5.0 reason code allowed in `packet_type`, in numeric order.
pub fn reasons_allowed_in(packet_type: PacketType) -> Vec<ReasonCode> {
    (0..=u8::MAX)
        .filter_map(ReasonCode::from_u8)
        .filter(|code| code.allowed_in(packet_type))
        .collect()
}

/// Levels topic names and filters are built from: empty levels, `$`-prefixed ones, spaces and
/// non-ASCII text.
const LEVELS: &[&str] = &[
    "", "a", "b", "sport", "tennis", "player1", "$SYS", "$share", "$", "é", "日本", "🦀", " ",
    "x y", "-", "\u{FEFF}",
];

/// Share names of shared subscriptions: never empty, never with `/`, `+` or `#`.
const SHARE_NAMES: &[&str] = &["g", "group", "$SYS", "日本", "g-1", " "];

/// A valid topic name: one to five levels, no wildcards, never empty.
pub fn topic_name(u: &mut Unstructured) -> Result<TopicName> {
    let count = u.int_in_range(1..=5)?;
    let mut levels = Vec::with_capacity(count);
    for _ in 0..count {
        levels.push(*u.choose(LEVELS)?);
    }
    let mut name = levels.join("/");
    if name.is_empty() {
        name.push('/');
    }
    TopicName::new(name).map_err(|_| Error::IncorrectFormat)
}

/// A valid topic filter: one to five levels with `+` anywhere and `#` only last, sometimes behind a
/// `$share/{group}/` prefix.
pub fn topic_filter(u: &mut Unstructured) -> Result<TopicFilter> {
    let count = u.int_in_range(1..=5)?;
    let mut levels = Vec::with_capacity(count);
    for _ in 0..count {
        levels.push(if u.ratio(1, 4)? {
            "+"
        } else {
            *u.choose(LEVELS)?
        });
    }
    if u.ratio(1, 4)? {
        levels.push("#");
    }
    let mut filter = levels.join("/");
    if filter.is_empty() {
        filter.push('#');
    }
    if u.ratio(1, 5)? {
        let group = u.choose(SHARE_NAMES)?;
        filter = format!("{SHARED_PREFIX}{group}/{filter}");
    }
    // Levels starting with `$share` may form an unintended (and sometimes invalid) share prefix; a
    // leading `x` turns it into an ordinary level.
    TopicFilter::new(filter.clone())
        .or_else(|_| TopicFilter::new(format!("x{filter}")))
        .map_err(|_| Error::IncorrectFormat)
}

/// Fragments strings are assembled from: ASCII, multi-byte UTF-8, noncharacters, a BOM, control
/// characters other than U+0000.
const FRAGMENTS: &[&str] = &[
    "a",
    "client",
    "0",
    " ",
    "/",
    "+",
    "#",
    "$",
    "é",
    "ß",
    "日本",
    "🦀",
    "\u{FEFF}",
    "\u{FFFF}",
    "\u{10FFFF}",
    "\u{1}",
    "\u{7F}",
    "\n",
];

/// A UTF-8 string without U+0000: empty, assembled from fragments, arbitrary text, or long (over 255
/// bytes) to exercise two-byte lengths.
pub fn string(u: &mut Unstructured) -> Result<ByteString> {
    let text = match u.int_in_range(0..=7)? {
        0 => String::new(),
        1 => {
            let raw = <&str>::arbitrary(u)?;
            raw.chars().filter(|&c| c != '\0').take(64).collect()
        }
        2 => {
            let fragment = u.choose(FRAGMENTS)?;
            fragment.repeat(u.int_in_range(40..=200)?)
        }
        _ => {
            let count = u.int_in_range(1..=4)?;
            let mut text = String::new();
            for _ in 0..count {
                text.push_str(u.choose(FRAGMENTS)?);
            }
            text
        }
    };
    Ok(ByteString::from(text))
}

/// Binary data of at most `max` bytes.
pub fn binary(u: &mut Unstructured, max: usize) -> Result<Bytes> {
    let len = u.int_in_range(0..=max)?;
    filled(u, len)
}

/// A PUBLISH payload: usually short, sometimes a few hundred bytes, rarely over 16 KiB so the remaining
/// length needs three bytes.
pub fn payload(u: &mut Unstructured) -> Result<Bytes> {
    let len = match u.int_in_range(0..=31)? {
        0..=3 => 0,
        4..=23 => u.int_in_range(1..=64)?,
        24..=30 => u.int_in_range(100..=400)?,
        _ => u.int_in_range(16_300..=16_500)?,
    };
    filled(u, len)
}

/// `len` bytes: up to 64 taken from the input, the rest a repeated byte (so large values do not drain the
/// input).
fn filled(u: &mut Unstructured, len: usize) -> Result<Bytes> {
    let mut data = vec![0u8; len];
    let head = len.min(64);
    u.fill_buffer(&mut data[..head])?;
    let fill = u8::arbitrary(u)?;
    data[head..].fill(fill);
    Ok(Bytes::from(data))
}

/// A non-zero packet identifier, often at the edges of its range.
pub fn packet_id(u: &mut Unstructured) -> Result<PacketId> {
    let raw = match u.int_in_range(0..=3)? {
        0 => *u.choose(&[1, 0x00FF, 0x0100, u16::MAX])?,
        _ => u.int_in_range(1..=u16::MAX)?,
    };
    PacketId::new(raw).ok_or(Error::IncorrectFormat)
}

/// A QoS level.
pub fn qos(u: &mut Unstructured) -> Result<QoS> {
    u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
        .copied()
}

/// A subscription identifier (1 to 268,435,455), often at a variable byte integer length boundary.
pub fn subscription_id(u: &mut Unstructured) -> Result<SubscriptionId> {
    let raw = if u.arbitrary()? {
        *u.choose(&[
            1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ])?
    } else {
        u.int_in_range(1..=VARINT_MAX)?
    };
    SubscriptionId::new(raw).ok_or(Error::IncorrectFormat)
}

fn bool_value(u: &mut Unstructured) -> Result<bool> {
    u.arbitrary()
}

fn u16_value(u: &mut Unstructured) -> Result<u16> {
    if u.arbitrary()? {
        u.choose(&[0, 1, u16::MAX]).copied()
    } else {
        u.arbitrary()
    }
}

fn u32_value(u: &mut Unstructured) -> Result<u32> {
    if u.arbitrary()? {
        u.choose(&[0, 1, u32::MAX]).copied()
    } else {
        u.arbitrary()
    }
}

fn non_zero_u16(u: &mut Unstructured) -> Result<NonZeroU16> {
    NonZeroU16::new(u16_value(u)?.max(1)).ok_or(Error::IncorrectFormat)
}

fn non_zero_u32(u: &mut Unstructured) -> Result<NonZeroU32> {
    NonZeroU32::new(u32_value(u)?.max(1)).ok_or(Error::IncorrectFormat)
}

/// `Some` half of the time.
fn option<T>(
    u: &mut Unstructured,
    value: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary()? {
        Some(value(u)?)
    } else {
        None
    })
}

/// None half of the time, otherwise one to `max` values.
fn several<T>(
    u: &mut Unstructured,
    max: usize,
    mut value: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let count = if u.arbitrary()? {
        u.int_in_range(1..=max)?
    } else {
        0
    };
    (0..count).map(|_| value(u)).collect()
}
