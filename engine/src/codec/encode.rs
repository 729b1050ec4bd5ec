//! Encoding of packets into `BytesMut`, in the shortest form the spec allows.
//!
//! Sizes are computed first (the remaining length precedes the body), which also lets the engine check a
//! client's Maximum Packet Size without encoding. For MQTT 3.x, properties and non-3.x reason codes are
//! left out or folded: the packet model is the 5.0 superset.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use super::reason::ReasonCode;
use super::types::{PacketType, ProtocolVersion};
use super::wire::{binary_len, check_field, put_binary, put_varint, varint_len, VARINT_MAX};

impl Packet {
    /// The number of bytes this packet takes on the wire for a connection of `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint_len(body.min(VARINT_MAX as usize) as u32) + body
    }

    /// Appends the packet to `buf`.
    ///
    /// `version` is the connection's protocol version; CONNECT uses its own. Fails only for packets that
    /// cannot be expressed: too large, a field over 65,535 bytes, or AUTH before MQTT 5.0.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = self.packet_type();
        if packet == PacketType::Auth && !version.is_v5() {
            return Err(EncodeError::NotInVersion { packet, version });
        }
        self.check(version)?;
        let body = self.body_len(version);
        if body > VARINT_MAX as usize {
            return Err(EncodeError::TooLarge { packet, size: body });
        }
        buf.reserve(1 + varint_len(body as u32) + body);
        buf.put_u8(self.first_byte());
        put_varint(buf, body as u32);
        let start = buf.len();
        self.write_body(version, buf);
        debug_assert_eq!(buf.len() - start, body, "{packet} body length mismatch");
        Ok(())
    }

    fn first_byte(&self) -> u8 {
        let packet = self.packet_type();
        let flags = match self {
            Packet::Publish(p) => {
                let qos = p.qos().as_u8();
                (u8::from(p.dup && qos > 0) << 3) | (qos << 1) | u8::from(p.retain)
            }
            _ => packet.fixed_flags(),
        };
        ((packet as u8) << 4) | flags
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let v5 = version.is_v5();
        match self {
            Packet::Connect(c) => connect_len(c),
            Packet::ConnAck(c) => 2 + if v5 { c.properties.wire_len() } else { 0 },
            Packet::Publish(p) => publish_len(p, v5),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                2 + if v5 {
                    reason_and_props_len(a.reason, a.properties.is_empty(), a.properties.wire_len())
                } else {
                    0
                }
            }
            Packet::Subscribe(s) => {
                2 + props_len(v5, s.properties.wire_len())
                    + s.subscriptions
                        .iter()
                        .map(|s| binary_len(s.filter.as_str().as_bytes()) + 1)
                        .sum::<usize>()
            }
            Packet::SubAck(s) => 2 + props_len(v5, s.properties.wire_len()) + s.reasons.len(),
            Packet::Unsubscribe(u) => {
                2 + props_len(v5, u.properties.wire_len())
                    + u.filters
                        .iter()
                        .map(|f| binary_len(f.as_str().as_bytes()))
                        .sum::<usize>()
            }
            Packet::UnsubAck(u) => {
                2 + if v5 {
                    u.properties.wire_len() + u.reasons.len()
                } else {
                    0
                }
            }
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(d) if v5 => {
                reason_and_props_len(d.reason, d.properties.is_empty(), d.properties.wire_len())
            }
            Packet::Disconnect(_) => 0,
            Packet::Auth(a) => {
                reason_and_props_len(a.reason, a.properties.is_empty(), a.properties.wire_len())
            }
        }
    }

    /// Rejects fields that a two-byte length cannot carry.
    fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        match self {
            Packet::Connect(c) => {
                check_field(c.client_id.as_bytes(), "client identifier")?;
                if let Some(u) = &c.username {
                    check_field(u.as_bytes(), "user name")?;
                }
                if let Some(p) = &c.password {
                    check_field(p, "password")?;
                }
                if let Some(w) = &c.will {
                    check_field(&w.payload, "will payload")?;
                    w.properties.check()?;
                }
                c.properties.check()
            }
            Packet::ConnAck(c) if v5 => c.properties.check(),
            Packet::Publish(p) if v5 => p.properties.check(),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a)
                if v5 =>
            {
                a.properties.check()
            }
            Packet::Subscribe(s) if v5 => s.properties.check(),
            Packet::SubAck(s) if v5 => s.properties.check(),
            Packet::Unsubscribe(u) if v5 => u.properties.check(),
            Packet::UnsubAck(u) if v5 => u.properties.check(),
            Packet::Disconnect(d) if v5 => d.properties.check(),
            Packet::Auth(a) => a.properties.check(),
            _ => Ok(()),
        }
    }

    fn write_body(&self, version: ProtocolVersion, buf: &mut BytesMut) {
        let v5 = version.is_v5();
        match self {
            Packet::Connect(c) => write_connect(c, buf),
            Packet::ConnAck(c) => write_connack(c, version, buf),
            Packet::Publish(p) => write_publish(p, v5, buf),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                write_ack(a, v5, buf)
            }
            Packet::Subscribe(s) => write_subscribe(s, v5, buf),
            Packet::SubAck(s) => write_suback(s, v5, buf),
            Packet::Unsubscribe(u) => write_unsubscribe(u, v5, buf),
            Packet::UnsubAck(u) => write_unsuback(u, v5, buf),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(d) => {
                if v5 {
                    write_disconnect(d, buf)
                }
            }
            Packet::Auth(a) => write_auth(a, buf),
        }
    }
}

fn props_len(v5: bool, wire_len: usize) -> usize {
    if v5 {
        wire_len
    } else {
        0
    }
}

/// Trailing reason code and properties of 5.0 acks, DISCONNECT and AUTH: left out entirely when the reason
/// is Success and there are no properties, and the property length left out when there are none.
fn reason_and_props_len(reason: ReasonCode, props_empty: bool, props_wire_len: usize) -> usize {
    match (reason, props_empty) {
        (ReasonCode::Success, true) => 0,
        (_, true) => 1,
        (_, false) => 1 + props_wire_len,
    }
}

fn write_reason_and_props(
    reason: ReasonCode,
    props_empty: bool,
    buf: &mut BytesMut,
    write_props: impl FnOnce(&mut BytesMut),
) {
    if reason == ReasonCode::Success && props_empty {
        return;
    }
    buf.put_u8(reason.as_u8());
    if !props_empty {
        write_props(buf);
    }
}

fn connect_len(c: &Connect) -> usize {
    let v5 = c.protocol.is_v5();
    let mut len = binary_len(c.protocol.protocol_name().as_bytes()) + 1 + 1 + 2;
    len += props_len(v5, c.properties.wire_len());
    len += binary_len(c.client_id.as_bytes());
    if let Some(w) = &c.will {
        len += props_len(v5, w.properties.wire_len());
        len += binary_len(w.topic.as_str().as_bytes()) + binary_len(&w.payload);
    }
    len += c.username.as_ref().map_or(0, |u| binary_len(u.as_bytes()));
    len += c.password.as_ref().map_or(0, |p| binary_len(p));
    len
}

fn write_connect(c: &Connect, buf: &mut BytesMut) {
    let v5 = c.protocol.is_v5();
    put_binary(buf, c.protocol.protocol_name().as_bytes());
    buf.put_u8(c.protocol.level());
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos.as_u8() << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        c.properties.encode(buf);
    }
    put_binary(buf, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        if v5 {
            w.properties.encode(buf);
        }
        put_binary(buf, w.topic.as_str().as_bytes());
        put_binary(buf, &w.payload);
    }
    if let Some(u) = &c.username {
        put_binary(buf, u.as_bytes());
    }
    if let Some(p) = &c.password {
        put_binary(buf, p);
    }
}

fn write_connack(c: &ConnAck, version: ProtocolVersion, buf: &mut BytesMut) {
    // MQTT 3.1 has no Session Present flag: the byte is reserved.
    let session_present = c.session_present && version != ProtocolVersion::V3_1;
    buf.put_u8(u8::from(session_present));
    if version.is_v5() {
        buf.put_u8(c.reason.as_u8());
        c.properties.encode(buf);
    } else {
        buf.put_u8(c.reason.to_v3_connack());
    }
}

fn publish_len(p: &Publish, v5: bool) -> usize {
    binary_len(p.topic.as_str().as_bytes())
        + if p.delivery.packet_id().is_some() {
            2
        } else {
            0
        }
        + props_len(v5, p.properties.wire_len())
        + p.payload.len()
}

fn write_publish(p: &Publish, v5: bool, buf: &mut BytesMut) {
    put_binary(buf, p.topic.as_str().as_bytes());
    if let Some(id) = p.delivery.packet_id() {
        buf.put_u16(id.get());
    }
    if v5 {
        p.properties.encode(buf);
    }
    buf.put_slice(&p.payload);
}

fn write_ack(a: &Ack, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(a.packet_id.get());
    if v5 {
        write_reason_and_props(a.reason, a.properties.is_empty(), buf, |b| {
            a.properties.encode(b)
        });
    }
}

pub(crate) fn options_byte(o: &SubscriptionOptions, v5: bool) -> u8 {
    let mut byte = o.qos.as_u8();
    if v5 {
        if o.no_local {
            byte |= 0x04;
        }
        if o.retain_as_published {
            byte |= 0x08;
        }
        byte |= match o.retain_handling {
            RetainHandling::SendAtSubscribe => 0,
            RetainHandling::SendIfNew => 1,
            RetainHandling::DoNotSend => 2,
        } << 4;
    }
    byte
}

fn write_subscribe(s: &Subscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.encode(buf);
    }
    for sub in &s.subscriptions {
        put_binary(buf, sub.filter.as_str().as_bytes());
        buf.put_u8(options_byte(&sub.options, v5));
    }
}

fn write_suback(s: &SubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(s.packet_id.get());
    if v5 {
        s.properties.encode(buf);
    }
    for reason in &s.reasons {
        buf.put_u8(if v5 {
            reason.as_u8()
        } else {
            reason.to_v3_suback()
        });
    }
}

fn write_unsubscribe(u: &Unsubscribe, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.encode(buf);
    }
    for filter in &u.filters {
        put_binary(buf, filter.as_str().as_bytes());
    }
}

fn write_unsuback(u: &UnsubAck, v5: bool, buf: &mut BytesMut) {
    buf.put_u16(u.packet_id.get());
    if v5 {
        u.properties.encode(buf);
        for reason in &u.reasons {
            buf.put_u8(reason.as_u8());
        }
    }
}

fn write_disconnect(d: &Disconnect, buf: &mut BytesMut) {
    write_reason_and_props(d.reason, d.properties.is_empty(), buf, |b| {
        d.properties.encode(b)
    });
}

fn write_auth(a: &Auth, buf: &mut BytesMut) {
    write_reason_and_props(a.reason, a.properties.is_empty(), buf, |b| {
        a.properties.encode(b)
    });
}
