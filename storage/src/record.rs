//! Keys and values on disk.
//!
//! Values start with a format byte so a later version can read old data or refuse it clearly. Messages
//! are stored as the MQTT 5.0 PUBLISH that carries them (topic, flags, properties, payload) and wills as
//! an MQTT 5.0 CONNECT carrying only the will, so the codec — fuzzed and round-trip tested — does the
//! heavy lifting and every property survives a restart without a second serialisation to keep in step.
//!
//! Keys of records that belong to a session start with the client identifier's length (u16, big endian)
//! and bytes, so all records of one session are one contiguous range (deleted with one range delete)
//! and no client identifier is a prefix of another's range.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use cicada_engine::codec::{
    decode_one, decode_shared, Connect, Delivery, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, RetainHandling, SubscriptionId, SubscriptionOptions, Will,
};
use cicada_engine::{
    Instant, Message, OutboundState, Stamp, StoredMessage, StoredSubscription, TakenSince,
};

/// The format of every value written by this version.
const FORMAT: u8 = 1;

/// Why a record cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown record format {0} (written by a newer cicada?)")]
    Format(u8),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("stored packet does not decode: {0}")]
    Packet(String),
}

/// Appends fields to a value (after the format byte).
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Writer {
        Writer(vec![FORMAT])
    }

    fn u8(&mut self, v: u8) -> &mut Writer {
        self.0.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Writer {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Writer {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Writer {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Writer {
        // Lengths fit: packets are at most 268,435,455 bytes, client ids 65,535.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads fields of a value in the order they were written.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(value: &'a [u8]) -> Result<Reader<'a>, RecordError> {
        let mut r = Reader(value);
        match r.u8()? {
            FORMAT => Ok(r),
            other => Err(RecordError::Format(other)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn bool(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Invalid("flag")),
        }
    }

    fn at_end(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self) -> Result<(), RecordError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(RecordError::Invalid("trailing bytes"))
        }
    }
}

// ----- keys -----

/// The first bytes of every key of a session's records.
pub(crate) fn session_prefix(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut key = Vec::with_capacity(2 + id.len() + 8);
    key.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// The first key after every key starting with `prefix`: the end of its range. A session prefix ends
/// with a byte of UTF-8 (never 0xFF) or a length byte, so incrementing the last byte below 0xFF works;
/// the general case carries.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xFF bytes: no key is greater with this prefix; an empty end would mean "no range", so
    // extend instead (cannot happen for session prefixes).
    let mut end = prefix.to_vec();
    end.extend_from_slice(&[0xFF; 16]);
    end
}

pub(crate) fn subscription_key(client_id: &str, filter: &str) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(filter.as_bytes());
    key
}

pub(crate) fn message_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn incoming_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(&packet_id.to_be_bytes());
    key
}

pub(crate) fn seen_key(client_id: &str, node: u16) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.extend_from_slice(&node.to_be_bytes());
    key
}

/// The key of a session's move window (its floor and when it closes): first of its range.
pub(crate) fn window_key(client_id: &str) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(WINDOW_HEAD);
    key
}

/// The key of one stamp a session's move window took.
pub(crate) fn taken_key(client_id: &str, stamp: &Stamp) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(WINDOW_TAKEN);
    push_stamp(&mut key, stamp);
    key
}

/// The key of a relay a cluster node keeps until its destination acknowledges it.
pub(crate) fn relay_key(client_id: &str, stamp: &Stamp) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    push_stamp(&mut key, stamp);
    key
}

fn push_stamp(key: &mut Vec<u8>, stamp: &Stamp) {
    key.extend_from_slice(&stamp.node.to_be_bytes());
    key.extend_from_slice(&stamp.incarnation.to_be_bytes());
    key.extend_from_slice(&stamp.seq.to_be_bytes());
}

/// The stamp a key ends with (after the session prefix and any tag).
pub(crate) fn stamp_of(rest: &[u8]) -> Result<Stamp, RecordError> {
    let (node, rest) = rest
        .split_first_chunk::<2>()
        .ok_or(RecordError::Truncated)?;
    let (incarnation, rest) = rest
        .split_first_chunk::<8>()
        .ok_or(RecordError::Truncated)?;
    let seq: [u8; 8] = rest.try_into().map_err(|_| RecordError::Invalid("stamp"))?;
    Ok(Stamp {
        node: u16::from_be_bytes(*node),
        incarnation: u64::from_be_bytes(*incarnation),
        seq: u64::from_be_bytes(seq),
    })
}

/// What a key of the window family holds, after the session prefix.
pub(crate) enum WindowRecord {
    /// The window itself ([`window_key`]).
    Head,
    /// A stamp it took ([`taken_key`]).
    Taken(Stamp),
}

const WINDOW_HEAD: u8 = 0;
const WINDOW_TAKEN: u8 = 1;

pub(crate) fn window_record_of(rest: &[u8]) -> Result<WindowRecord, RecordError> {
    match rest {
        [WINDOW_HEAD] => Ok(WindowRecord::Head),
        [WINDOW_TAKEN, stamp @ ..] => Ok(WindowRecord::Taken(stamp_of(stamp)?)),
        _ => Err(RecordError::Invalid("move window key")),
    }
}

/// Splits a session record's key into the client identifier and the rest.
pub(crate) fn split_key(key: &[u8]) -> Result<(ByteString, &[u8]), RecordError> {
    if key.len() < 2 {
        return Err(RecordError::Truncated);
    }
    let len = usize::from(u16::from_be_bytes([key[0], key[1]]));
    let rest = &key[2..];
    if rest.len() < len {
        return Err(RecordError::Truncated);
    }
    let (id, rest) = rest.split_at(len);
    let id = std::str::from_utf8(id).map_err(|_| RecordError::Invalid("client identifier"))?;
    Ok((ByteString::from(id), rest))
}

pub(crate) fn utf8(bytes: &[u8], what: &'static str) -> Result<ByteString, RecordError> {
    std::str::from_utf8(bytes)
        .map(ByteString::from)
        .map_err(|_| RecordError::Invalid(what))
}

pub(crate) fn seq_of(rest: &[u8]) -> Result<u64, RecordError> {
    let b: [u8; 8] = rest
        .try_into()
        .map_err(|_| RecordError::Invalid("sequence number"))?;
    Ok(u64::from_be_bytes(b))
}

pub(crate) fn packet_id_of(rest: &[u8]) -> Result<u16, RecordError> {
    let b: [u8; 2] = rest
        .try_into()
        .map_err(|_| RecordError::Invalid("packet identifier"))?;
    Ok(u16::from_be_bytes(b))
}

/// The origin node of a high-water mark's key.
pub(crate) fn node_of(rest: &[u8]) -> Result<u16, RecordError> {
    let b: [u8; 2] = rest
        .try_into()
        .map_err(|_| RecordError::Invalid("origin node"))?;
    Ok(u16::from_be_bytes(b))
}

// ----- values -----

/// A high-water mark: the origin's incarnation and counter (fixed width, no format byte: the
/// whole value is two big-endian u64).
pub(crate) fn encode_seen(incarnation: u64, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&incarnation.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

pub(crate) fn decode_seen(value: &[u8]) -> Result<(u64, u64), RecordError> {
    let b: [u8; 16] = value
        .try_into()
        .map_err(|_| RecordError::Invalid("high-water mark"))?;
    let (inc, seq) = b.split_at(8);
    let word = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
    Ok((word(inc), word(seq)))
}

/// A move window without its stamps (each is a key of its own): when it closes, and the floor
/// per origin incarnation.
pub(crate) fn encode_window(w: &TakenSince) -> Vec<u8> {
    let mut out = Writer::new();
    match w.until {
        Some(until) => out.u8(1).u64(until.as_micros()),
        None => out.u8(0),
    };
    out.u32(u32::try_from(w.floor.len()).unwrap_or(u32::MAX));
    for (&(node, incarnation), &seq) in &w.floor {
        out.u16(node).u64(incarnation).u64(seq);
    }
    out.finish()
}

pub(crate) fn decode_window(value: &[u8]) -> Result<TakenSince, RecordError> {
    let mut r = Reader::new(value)?;
    let until = match r.bool()? {
        true => Some(Instant::from_micros(r.u64()?)),
        false => None,
    };
    let mut w = TakenSince {
        until,
        ..TakenSince::default()
    };
    for _ in 0..r.u32()? {
        let key = (r.u16()?, r.u64()?);
        w.floor.insert(key, r.u64()?);
    }
    r.end()?;
    Ok(w)
}

fn protocol_of(b: u8) -> Result<ProtocolVersion, RecordError> {
    match b {
        3 => Ok(ProtocolVersion::V3_1),
        4 => Ok(ProtocolVersion::V3_1_1),
        5 => Ok(ProtocolVersion::V5),
        _ => Err(RecordError::Invalid("protocol version")),
    }
}

/// A session's own record (its subscriptions, messages and QoS 2 ids are records of their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub(crate) protocol: ProtocolVersion,
    pub(crate) expiry_interval: u32,
    pub(crate) offline_since: Option<Instant>,
    pub(crate) will: Option<Will>,
}

pub(crate) fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(s.protocol.level()).u32(s.expiry_interval);
    match s.offline_since {
        Some(at) => w.u8(1).u64(at.as_micros()),
        None => w.u8(0),
    };
    match &s.will {
        Some(will) => w.u8(1).bytes(&encode_will(will)),
        None => w.u8(0),
    };
    w.finish()
}

pub(crate) fn decode_session(value: &[u8]) -> Result<SessionRecord, RecordError> {
    let mut r = Reader::new(value)?;
    let protocol = protocol_of(r.u8()?)?;
    let expiry_interval = r.u32()?;
    let offline_since = if r.bool()? {
        Some(Instant::from_micros(r.u64()?))
    } else {
        None
    };
    let will = if r.bool()? {
        Some(decode_will(r.bytes()?)?)
    } else {
        None
    };
    r.end()?;
    Ok(SessionRecord {
        protocol,
        expiry_interval,
        offline_since,
        will,
    })
}

/// A will as the CONNECT (5.0) that would carry it.
fn encode_will(will: &Will) -> Vec<u8> {
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: ByteString::from_static("w"),
        will: Some(will.clone()),
        username: None,
        password: None,
    };
    encode_packet(&Packet::Connect(Box::new(connect)))
}

fn decode_will(bytes: &[u8]) -> Result<Will, RecordError> {
    match decode_one(bytes, ProtocolVersion::V5) {
        Ok(Packet::Connect(c)) => c.will.ok_or(RecordError::Invalid("will")),
        Ok(other) => Err(RecordError::Packet(format!(
            "expected CONNECT, found {other}"
        ))),
        Err(e) => Err(RecordError::Packet(e.to_string())),
    }
}

fn encode_packet(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    // Only a packet over the protocol's size limit fails to encode; stored messages were received
    // within it, so this cannot happen; an empty record would then fail loudly at load.
    let _ = packet.encode(ProtocolVersion::V5, &mut buf);
    buf.to_vec()
}

pub(crate) fn encode_subscription(s: &StoredSubscription) -> Vec<u8> {
    let o = s.options;
    let mut w = Writer::new();
    w.u8(o.qos.as_u8())
        .u8(u8::from(o.no_local))
        .u8(u8::from(o.retain_as_published))
        .u8(o.retain_handling as u8)
        .u32(s.id.map_or(0, SubscriptionId::get));
    w.finish()
}

pub(crate) fn decode_subscription(value: &[u8]) -> Result<StoredSubscription, RecordError> {
    let mut r = Reader::new(value)?;
    let qos = QoS::from_u8(r.u8()?).ok_or(RecordError::Invalid("QoS"))?;
    let no_local = r.bool()?;
    let retain_as_published = r.bool()?;
    let retain_handling = match r.u8()? {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(RecordError::Invalid("retain handling")),
    };
    let id = SubscriptionId::new(r.u32()?);
    r.end()?;
    Ok(StoredSubscription {
        options: SubscriptionOptions {
            qos,
            no_local,
            retain_as_published,
            retain_handling,
        },
        id,
    })
}

/// The part shared by session messages and retained messages.
fn write_message(w: &mut Writer, m: &Message) {
    match m.expires_at {
        Some(at) => w.u8(1).u64(at.as_micros()),
        None => w.u8(0),
    };
    match &m.origin {
        Some(origin) => w.u8(1).bytes(origin.as_bytes()),
        None => w.u8(0),
    };
    // The packet id is a placeholder: a QoS 1/2 PUBLISH needs one, the message itself has none.
    let delivery = Delivery::new(m.qos, PacketId::new(1)).unwrap_or(Delivery::AtMostOnce);
    let publish = Publish {
        dup: false,
        delivery,
        retain: m.retain,
        topic: m.topic.clone(),
        properties: PublishProperties::clone(&m.properties),
        payload: m.payload.clone(),
    };
    w.bytes(&encode_packet(&Packet::Publish(publish)));
}

/// Reads a message from `r`, a reader over `whole`: topic, payload, properties and origin become
/// slices of `whole`, so a loaded message costs one buffer rather than one per field.
fn read_message(r: &mut Reader<'_>, whole: &Bytes) -> Result<Message, RecordError> {
    let expires_at = if r.bool()? {
        Some(Instant::from_micros(r.u64()?))
    } else {
        None
    };
    let origin = if r.bool()? {
        let bytes = whole.slice_ref(r.bytes()?);
        Some(ByteString::try_from(bytes).map_err(|_| RecordError::Invalid("origin"))?)
    } else {
        None
    };
    let p = match decode_shared(whole.slice_ref(r.bytes()?), ProtocolVersion::V5) {
        Ok(Packet::Publish(p)) => p,
        Ok(other) => {
            return Err(RecordError::Packet(format!(
                "expected PUBLISH, found {other}"
            )))
        }
        Err(e) => return Err(RecordError::Packet(e.to_string())),
    };
    Ok(Message {
        topic: p.topic,
        qos: p.delivery.qos(),
        retain: p.retain,
        properties: p.properties.into(),
        payload: p.payload,
        origin,
        expires_at,
    })
}

/// A message on its own: a retained one (under its topic) or a relay (under its session and stamp).
pub(crate) fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Writer::new();
    write_message(&mut w, m);
    w.finish()
}

pub(crate) fn decode_message(value: &[u8]) -> Result<Arc<Message>, RecordError> {
    let whole = Bytes::copy_from_slice(value);
    let mut r = Reader::new(&whole)?;
    let m = read_message(&mut r, &whole)?;
    r.end()?;
    Ok(Arc::new(m))
}

pub(crate) fn encode_stored_message(m: &StoredMessage) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(m.qos.as_u8());
    match m.state {
        OutboundState::Queued => w.u8(0).u16(0),
        OutboundState::Sent(pid) => w.u8(1).u16(pid),
        OutboundState::Released(pid) => w.u8(2).u16(pid),
    };
    w.u8(u8::from(m.retain));
    w.u16(u16::try_from(m.sub_ids.len()).unwrap_or(u16::MAX));
    for id in m.sub_ids.iter().take(usize::from(u16::MAX)) {
        w.u32(id.get());
    }
    write_message(&mut w, &m.message);
    if let Some(stamp) = &m.stamp {
        w.u16(stamp.node).u64(stamp.incarnation).u64(stamp.seq);
    }
    w.finish()
}

pub(crate) fn decode_stored_message(value: &[u8]) -> Result<StoredMessage, RecordError> {
    let whole = Bytes::copy_from_slice(value);
    let mut r = Reader::new(&whole)?;
    let qos = QoS::from_u8(r.u8()?).ok_or(RecordError::Invalid("QoS"))?;
    let tag = r.u8()?;
    let pid = r.u16()?;
    let state = match tag {
        0 => OutboundState::Queued,
        1 if pid != 0 => OutboundState::Sent(pid),
        2 if pid != 0 => OutboundState::Released(pid),
        _ => return Err(RecordError::Invalid("message state")),
    };
    let retain = r.bool()?;
    let count = r.u16()?;
    let mut sub_ids = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        sub_ids.push(SubscriptionId::new(r.u32()?).ok_or(RecordError::Invalid("subscription id"))?);
    }
    let message = Arc::new(read_message(&mut r, &whole)?);
    // The cluster stamp ends the record when there is one (standalone brokers, and records written
    // before stamps were stored, have none).
    let stamp = if r.at_end() {
        None
    } else {
        Some(Stamp {
            node: r.u16()?,
            incarnation: r.u64()?,
            seq: r.u64()?,
        })
    };
    r.end()?;
    Ok(StoredMessage {
        qos,
        state,
        retain,
        sub_ids,
        message,
        stamp,
    })
}

#[cfg(test)]
mod tests {
    use cicada_engine::codec::{TopicName, UserProperty, WillProperties};

    use super::*;

    fn message() -> Message {
        Message {
            topic: TopicName::new("a/b").expect("valid"),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(30),
                content_type: Some("text/plain".into()),
                response_topic: Some(TopicName::new("r").expect("valid")),
                correlation_data: Some(Bytes::from_static(b"\x00\x01")),
                user_properties: vec![UserProperty::new("k", "v1"), UserProperty::new("k", "v2")],
                ..Default::default()
            }
            .into(),
            origin: Some("pub".into()),
            expires_at: Some(Instant::from_micros(123_456_789)),
        }
    }

    #[test]
    fn stored_messages_round_trip_with_every_property() {
        let m = StoredMessage {
            qos: QoS::AtLeastOnce,
            state: OutboundState::Released(7),
            retain: false,
            sub_ids: vec![
                SubscriptionId::new(1).expect("valid"),
                SubscriptionId::new(268_435_455).expect("valid"),
            ],
            message: Arc::new(message()),
            stamp: Some(Stamp {
                node: 3,
                incarnation: u64::MAX - 1,
                seq: 1 << 40,
            }),
        };
        let back = decode_stored_message(&encode_stored_message(&m)).expect("decodes");
        assert_eq!(back, m);
        // A standalone broker's message has no stamp, nor has one stored before stamps were.
        let unstamped = StoredMessage { stamp: None, ..m };
        let back = decode_stored_message(&encode_stored_message(&unstamped)).expect("decodes");
        assert_eq!(back, unstamped);
        let r = decode_message(&encode_message(&message())).expect("decodes");
        assert_eq!(*r, message());
    }

    #[test]
    fn sessions_round_trip_with_their_will() {
        let mut will = Will {
            topic: TopicName::new("will/x").expect("valid"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        };
        will.properties.will_delay_interval = Some(30);
        will.properties.user_properties = vec![UserProperty::new("a", "b")];
        for s in [
            SessionRecord {
                protocol: ProtocolVersion::V5,
                expiry_interval: u32::MAX,
                offline_since: Some(Instant::from_micros(42)),
                will: Some(will.clone()),
            },
            SessionRecord {
                protocol: ProtocolVersion::V3_1,
                expiry_interval: 1,
                offline_since: None,
                will: None,
            },
        ] {
            assert_eq!(decode_session(&encode_session(&s)).expect("decodes"), s);
        }
    }

    #[test]
    fn subscriptions_round_trip() {
        let s = StoredSubscription {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
            id: SubscriptionId::new(99),
        };
        assert_eq!(
            decode_subscription(&encode_subscription(&s)).expect("decodes"),
            s
        );
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let good = encode_stored_message(&StoredMessage {
            qos: QoS::AtLeastOnce,
            state: OutboundState::Queued,
            retain: false,
            sub_ids: vec![],
            message: Arc::new(message()),
            stamp: None,
        });
        for len in 0..good.len() {
            assert!(decode_stored_message(&good[..len]).is_err(), "cut at {len}");
        }
        let mut newer = good.clone();
        newer[0] = 9;
        assert!(matches!(
            decode_stored_message(&newer),
            Err(RecordError::Format(9))
        ));
        let mut flipped = good;
        let last = flipped.len() - 12;
        flipped[last] ^= 0xFF;
        let _ = decode_stored_message(&flipped);
    }

    #[test]
    fn session_keys_keep_each_session_in_its_own_range() {
        let a = session_prefix("a");
        let ab = session_prefix("ab");
        let end = prefix_end(&a);
        let ab_key = message_key("ab", 0);
        assert!(
            !(a.as_slice() <= ab_key.as_slice() && ab_key < end),
            "\"ab\" is outside \"a\"'s range"
        );
        let a_key = message_key("a", u64::MAX);
        assert!(a.as_slice() <= a_key.as_slice() && a_key < end);
        assert_eq!(split_key(&a_key).expect("splits").0, "a");
        assert!(ab < prefix_end(&ab));
    }
}
