//! Decoding of one complete packet body, with every check of sections 2 and 3 of the specs.

use bytes::Bytes;

use super::error::DecodeError;
use super::packet::{
    Ack, Auth, ConnAck, Connect, Delivery, Disconnect, Packet, Publish, RetainHandling, SubAck,
    Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use super::property::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PropertyId, PublishProperties, SubscribeProperties, UnsubscribeProperties, WillProperties,
};
use super::reason::ReasonCode;
use super::topic::{TopicFilter, TopicName};
use super::types::{PacketId, PacketType, ProtocolVersion, QoS};
use super::wire::Reader;

/// Decodes the body of a packet whose fixed header byte is `first`.
///
/// `version` is the connection's protocol version; CONNECT carries its own and ignores it.
pub(crate) fn decode_packet(
    first: u8,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let nibble = first >> 4;
    let flags = first & 0x0F;
    let packet = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if !version.is_v5() => None,
        other => other,
    }
    .ok_or(DecodeError::InvalidPacketType { nibble })?;
    // MQTT 3.1 let senders set DUP (0x08) on a resent PUBREL, SUBSCRIBE or UNSUBSCRIBE; later versions fix
    // the flags exactly.
    let dup_allowed = version == ProtocolVersion::V3_1 && packet.fixed_flags() != 0;
    let checked_flags = if dup_allowed { flags & !0x08 } else { flags };
    if packet != PacketType::Publish && checked_flags != packet.fixed_flags() {
        return Err(DecodeError::InvalidHeaderFlags { packet, flags });
    }
    let mut r = Reader::new(body, packet);
    let v5 = version.is_v5();
    let decoded = match packet {
        PacketType::Connect => Packet::Connect(Box::new(connect(&mut r)?)),
        PacketType::ConnAck => Packet::ConnAck(connack(&mut r, version)?),
        PacketType::Publish => Packet::Publish(publish(&mut r, flags, v5)?),
        PacketType::PubAck => Packet::PubAck(ack(&mut r, v5)?),
        PacketType::PubRec => Packet::PubRec(ack(&mut r, v5)?),
        PacketType::PubRel => Packet::PubRel(ack(&mut r, v5)?),
        PacketType::PubComp => Packet::PubComp(ack(&mut r, v5)?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut r, v5)?),
        PacketType::SubAck => Packet::SubAck(suback(&mut r, v5)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        PacketType::UnsubAck => Packet::UnsubAck(unsuback(&mut r, v5)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(disconnect(&mut r, v5)?),
        PacketType::Auth => Packet::Auth(auth(&mut r)?),
    };
    r.finish()?;
    Ok(decoded)
}

fn packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    let raw = r.u16("packet identifier")?;
    PacketId::new(raw).ok_or(DecodeError::ZeroPacketId { packet: r.packet() })
}

fn reason(r: &mut Reader) -> Result<ReasonCode, DecodeError> {
    let code = r.u8("reason code")?;
    ReasonCode::from_u8(code)
        .filter(|c| c.allowed_in(r.packet()))
        .ok_or(DecodeError::InvalidReasonCode {
            code,
            packet: r.packet(),
        })
}

fn protocol_version(r: &mut Reader) -> Result<ProtocolVersion, DecodeError> {
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    let (name, version) = match &name[..] {
        b"MQTT" => ("MQTT", matches!(level, 4 | 5)),
        b"MQIsdp" => ("MQIsdp", level == 3),
        other => {
            return Err(DecodeError::InvalidProtocolName {
                name: String::from_utf8_lossy(other).into_owned(),
            })
        }
    };
    match (version, level) {
        (true, 3) => Ok(ProtocolVersion::V3_1),
        (true, 4) => Ok(ProtocolVersion::V3_1_1),
        (true, 5) => Ok(ProtocolVersion::V5),
        _ => Err(DecodeError::UnsupportedProtocolLevel { name, level }),
    }
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let protocol = protocol_version(r)?;
    let flags = r.u8("connect flags")?;
    let bad_flags = |rule| DecodeError::InvalidConnectFlags { flags, rule };
    if flags & 0x01 != 0 {
        return Err(bad_flags("the reserved bit must be 0"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos =
        QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidQoS { field: "will QoS" })?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(bad_flags(
            "will QoS and will retain must be 0 without a will",
        ));
    }
    if !protocol.is_v5() && has_password && !has_username {
        return Err(bad_flags("a password requires a user name before MQTT 5.0"));
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = if protocol.is_v5() {
        let props = ConnectProperties::decode(r)?;
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::InvalidPropertyValue {
                id: PropertyId::AuthenticationData,
                packet: PacketType::Connect,
                rule: "requires an Authentication Method",
            });
        }
        props
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = if protocol.is_v5() {
            WillProperties::decode(r)?
        } else {
            WillProperties::default()
        };
        let topic = TopicName::new(r.string("will topic")?)?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = has_username.then(|| r.string("user name")).transpose()?;
    let password = has_password.then(|| r.binary("password")).transpose()?;
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn connack(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("connect acknowledge flags")?;
    // MQTT 3.1 has no Session Present flag: the whole byte is "reserved, not used", so 3.1 peers may
    // put anything there and we ignore it. 3.1.1 and 5.0 reserve bits 7-1 and require them to be 0.
    let session_present = match version {
        ProtocolVersion::V3_1 => false,
        _ if flags & 0xFE != 0 => return Err(DecodeError::InvalidConnAckFlags { flags }),
        _ => flags & 0x01 != 0,
    };
    let (reason, properties) = if version.is_v5() {
        (reason(r)?, ConnAckProperties::decode(r)?)
    } else {
        let code = r.u8("return code")?;
        let reason = ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode {
            code,
            packet: PacketType::ConnAck,
        })?;
        (reason, ConnAckProperties::default())
    };
    Ok(ConnAck {
        session_present,
        reason,
        properties,
    })
}

fn publish(r: &mut Reader, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS {
        field: "PUBLISH fixed header",
    })?;
    let dup = flags & 0x08 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupOnQoS0);
    }
    let topic = r.string("topic name")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(packet_id(r)?),
    };
    let properties = if v5 {
        PublishProperties::decode(r)?
    } else {
        PublishProperties::default()
    };
    let topic = if topic.is_empty() && v5 {
        if properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
        TopicName::alias_only()
    } else {
        TopicName::new(topic)?
    };
    let delivery = match (qos, packet_id) {
        (QoS::AtLeastOnce, Some(id)) => Delivery::AtLeastOnce(id),
        (QoS::ExactlyOnce, Some(id)) => Delivery::ExactlyOnce(id),
        _ => Delivery::AtMostOnce,
    };
    Ok(Publish {
        dup,
        delivery,
        retain: flags & 0x01 != 0,
        topic,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In 5.0 the reason code and properties may be left out (section 3.4.2.1).
fn ack(r: &mut Reader, v5: bool) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut out = Ack::new(packet_id);
    if v5 && !r.is_empty() {
        out.reason = reason(r)?;
        if !r.is_empty() {
            out.properties = AckProperties::decode(r)?;
        }
    }
    Ok(out)
}

pub(crate) fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let bad = |rule| DecodeError::InvalidSubscriptionOptions {
        options: byte,
        rule,
    };
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidQoS {
        field: "subscription options",
    })?;
    if !v5 {
        if byte & 0xFC != 0 {
            return Err(bad("bits 2-7 are reserved before MQTT 5.0"));
        }
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    if byte & 0xC0 != 0 {
        return Err(bad("bits 6 and 7 are reserved"));
    }
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(bad("Retain Handling 3 is reserved")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        SubscribeProperties::decode(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = TopicFilter::new(r.string("topic filter")?)?;
        let options = subscription_options(r.u8("subscription options")?, v5)?;
        if v5 && options.no_local && filter.shared().is_some() {
            return Err(DecodeError::NoLocalOnSharedSubscription {
                filter: filter.to_string(),
            });
        }
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::NoTopicFilters {
            packet: PacketType::Subscribe,
        });
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

fn suback(r: &mut Reader, v5: bool) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        AckProperties::decode(r)?
    } else {
        AckProperties::default()
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(if v5 {
            reason(r)?
        } else {
            let code = r.u8("return code")?;
            ReasonCode::from_v3_suback(code).ok_or(DecodeError::InvalidReasonCode {
                code,
                packet: PacketType::SubAck,
            })?
        });
    }
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v5 {
        UnsubscribeProperties::decode(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(TopicFilter::new(r.string("topic filter")?)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters {
            packet: PacketType::Unsubscribe,
        });
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut out = UnsubAck {
        packet_id,
        properties: AckProperties::default(),
        reasons: Vec::new(),
    };
    if v5 {
        out.properties = AckProperties::decode(r)?;
        while !r.is_empty() {
            out.reasons.push(reason(r)?);
        }
    }
    Ok(out)
}

/// DISCONNECT: in 3.x an empty body; in 5.0 reason code and properties may be left out.
fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect, DecodeError> {
    let mut out = Disconnect::new(ReasonCode::Success);
    if v5 && !r.is_empty() {
        out.reason = reason(r)?;
        if !r.is_empty() {
            out.properties = DisconnectProperties::decode(r)?;
        }
    }
    Ok(out)
}

/// AUTH (5.0 only): reason code and properties may be left out when the reason is Success.
fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut out = Auth {
        reason: ReasonCode::Success,
        properties: AuthProperties::default(),
    };
    if !r.is_empty() {
        out.reason = reason(r)?;
        if !r.is_empty() {
            out.properties = AuthProperties::decode(r)?;
        }
    }
    Ok(out)
}
