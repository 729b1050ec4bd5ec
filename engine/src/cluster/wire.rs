//! The bytes nodes exchange: frames on the network ([`Frame`]) and commands in the replicated log
//! ([`Command`]). A hand-written little format, one [`FORMAT`] number for all of it: every node of a
//! cluster runs the same format (a rolling upgrade across formats is not supported, see
//! `docs/cluster.md`).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::replica::Replicas;
use super::table::{RetainedBy, Table};
use super::MemberAddress;
use crate::codec::{
    decode_shared, options_byte, subscription_options, Delivery, PacketId, ProtocolVersion,
    Publish, QoS, SubscriptionId, TopicName, Will, WillProperties,
};
use crate::io::{OutboundState, PeerMessage, Stamp, StoreOp};
use crate::message::Message;
use crate::stored::{StoredMessage, StoredSession, StoredSubscription, TakenSince};
use crate::time::Instant;

/// Why bytes from another node could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("cluster frame truncated in {0}")]
    Truncated(&'static str),
    /// A tag names nothing this build knows.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What the tag was for.
        what: &'static str,
        /// The tag.
        tag: u8,
    },
    /// A text field is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes were left after the last field.
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    /// An embedded message did not decode.
    #[error("embedded message: {0}")]
    Message(String),
}

/// One frame between two nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Frame {
    /// A raft message (protobuf, as raft-rs encodes it).
    Raft(Bytes),
    /// Part of a raft message too large for one frame (a snapshot; see [`super::parts`]).
    RaftPart {
        /// Numbers the sender's large messages.
        id: u64,
        /// Which part, from 0.
        part: u32,
        /// How many parts the message has.
        parts: u32,
        /// The part's bytes.
        bytes: Bytes,
    },
    /// A message on the reliable link from the sender (see [`super::link`]).
    Data {
        /// The sender's incarnation (changes at each start).
        incarnation: u64,
        /// The oldest sequence number the sender still holds (a receiver that does not know this
        /// incarnation starts there).
        base: u64,
        /// This message's sequence number.
        seq: u64,
        /// The message.
        message: PeerMessage,
    },
    /// Everything up to `upto` of incarnation `incarnation` arrived.
    Ack {
        /// The acknowledged sender's incarnation.
        incarnation: u64,
        /// The last sequence number delivered in order.
        upto: u64,
    },
}

/// A change to the replicated state ([`super::table::Table`]), one raft log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `node` owns `client_id` from now on, for the CONNECT it numbered `token` in `incarnation`.
    Claim {
        /// The client identifier.
        client_id: ByteString,
        /// The new owner.
        node: u16,
        /// The claiming node's incarnation.
        incarnation: u64,
        /// Increases with each claim of the incarnation: a resent claim already applied, or older
        /// than one applied, is ignored (so a late duplicate never takes a client back).
        token: u64,
        /// The will of a CONNECT whose session ends with its connection, so that another node
        /// can publish it if this one dies (a persistent session's will is in its copies).
        will: Option<Box<Will>>,
    },
    /// `node` no longer holds the session it admitted under claim `token` of `incarnation`
    /// (ignored unless that claim is still the one in force: a newer claim, here or elsewhere, wins).
    Release {
        /// The client identifier.
        client_id: ByteString,
        /// The node letting go.
        node: u16,
        /// The incarnation of the claim released.
        incarnation: u64,
        /// The claim released.
        token: u64,
        /// How far `node` had applied the log when it let go: the ownership it ends is one it
        /// knew of then, never one a claim of the same number gave it back later (a resent
        /// claim applies again once a release forgot it; seed 3392).
        seen: u64,
    },
    /// `node`'s sessions subscribe `count` times to `filter` (0: not at all), as of `version` of
    /// `node`'s incarnation `incarnation`.
    Interest {
        /// The node.
        node: u16,
        /// Its incarnation; an older one's commands are ignored.
        incarnation: u64,
        /// Increases with each command of the incarnation; an older one is ignored.
        version: u64,
        /// The filter (a whole `$share/...` filter for a shared group).
        filter: ByteString,
        /// How many subscriptions.
        count: u32,
    },
    /// `node` (re)started as `incarnation`: what an earlier incarnation subscribed to is forgotten.
    Start {
        /// The node.
        node: u16,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// `node`'s `incarnation` is down: the leader (`adopter`) heard nothing from it for
    /// `peer_timeout`. Its persistent sessions become the adopter's (from their copies), and what
    /// was routed to it goes to the adopter (see [`super::table::Table::adopt`]).
    Down {
        /// The node declared down.
        node: u16,
        /// Its incarnation (a `Down` of an earlier one is ignored).
        incarnation: u64,
        /// The node that takes its sessions.
        adopter: u16,
    },
    /// `node` is back after it applied its own `Down` (it was cut off, not dead): it owns nothing,
    /// and serves again.
    Up {
        /// The node.
        node: u16,
        /// Its incarnation, declared down.
        incarnation: u64,
    },
    /// `node` heard the log again after a time without a leader, and publishes the wills it kept
    /// back meanwhile, unless it was declared down first (then their sessions' adopter did).
    Wills {
        /// The node.
        node: u16,
        /// Its incarnation.
        incarnation: u64,
    },
    /// The retained message of a topic (an empty payload clears it).
    Retain {
        /// The message.
        message: Arc<Message>,
        /// How far the proposing node had applied the log (see [`Table::retain`]).
        seen: u64,
    },
    /// What `node` wrote to its store for the persistent sessions it owns, number `seq` of its
    /// incarnation: every other node applies it to its copy of those sessions, so they survive
    /// `node`. Applied only in order (`seq` one past the last applied), so a resent or reordered
    /// proposal never undoes a later one.
    Session {
        /// The owner that wrote it.
        node: u16,
        /// Its incarnation.
        incarnation: u64,
        /// Counts from 1 in each incarnation.
        seq: u64,
        /// The writes, in the order made.
        writes: Vec<Written>,
    },
}

/// Session writes a node made when it had applied the log up to `seen`: each applies only if
/// its session had been that node's since then (see [`Table::writes_to`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The index of the last log entry the node had applied.
    pub(crate) seen: u64,
    /// The writes, all of persistent sessions ([`StoreOp::session_client`]).
    pub(crate) ops: Vec<StoreOp>,
}

/// Writes fields.
struct Writer(BytesMut);

impl Writer {
    fn new(tag: u8) -> Writer {
        let mut w = Writer(BytesMut::with_capacity(64));
        w.u8(tag);
        w
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.put_u8(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.put_u16(v);
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.put_u32(v);
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put_u64(v);
        self
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.put_slice(v);
        self
    }

    /// Writes what `fill` writes as `bytes` would (its length first), in place: a snapshot
    /// writes hundreds of thousands of messages, and a buffer of their own for each costs more
    /// than the rest of the snapshot.
    fn framed(&mut self, fill: impl FnOnce(&mut Self)) -> &mut Self {
        let at = self.0.len();
        self.0.put_u32(0);
        fill(self);
        let len = u32::try_from(self.0.len() - at - 4).unwrap_or(u32::MAX);
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// A message as a v5 PUBLISH (the codec already knows every property), then its publisher.
    fn message(&mut self, message: &Message, now: Instant) -> &mut Self {
        let mut properties = (*message.properties).clone();
        properties.message_expiry_interval = message.remaining_expiry(now);
        let publish = Publish {
            dup: false,
            delivery: Delivery::new(message.qos, Some(PacketId::MIN))
                .unwrap_or(Delivery::AtMostOnce),
            retain: message.retain,
            topic: message.topic.clone(),
            properties,
            payload: message.payload.clone(),
        };
        self.framed(|w| {
            // A message the broker accepted always encodes (its sizes were checked on the way
            // in).
            w.framed(|w| {
                let _ =
                    crate::codec::Packet::Publish(publish).encode(ProtocolVersion::V5, &mut w.0);
            });
            match &message.origin {
                Some(origin) => w.u8(1).bytes(origin.as_bytes()),
                None => w.u8(0),
            };
        })
    }

    /// A will, as the message it becomes (its expiry interval stays what the client set: it
    /// runs from publication) and its delay.
    fn will(&mut self, will: Option<&Will>, now: Instant) -> &mut Self {
        let Some(will) = will else {
            return self.u8(0);
        };
        let message = Message::from_will(will.clone(), ByteString::new(), now);
        self.u8(1).message(&message, now);
        match will.properties.will_delay_interval {
            Some(delay) => self.u8(1).u32(delay),
            None => self.u8(0),
        }
    }

    fn stamp(&mut self, stamp: Option<&Stamp>) -> &mut Self {
        match stamp {
            Some(s) => self.u8(1).u16(s.node).u64(s.incarnation).u64(s.seq),
            None => self.u8(0),
        }
    }

    /// A session's [`TakenSince`], if it has one: per origin incarnation, its floor and the
    /// stamps above it taken (not `until`, on the sender's clock: the receiver decides its own).
    fn window(&mut self, window: Option<&TakenSince>) -> &mut Self {
        let Some(w) = window else {
            return self.u8(0);
        };
        let keys: BTreeSet<&(u16, u64)> = w.floor.keys().chain(w.taken.keys()).collect();
        self.u8(1).u32(len_u32(keys.len()));
        for key in keys {
            let taken = w.taken.get(key);
            self.u16(key.0)
                .u64(key.1)
                .u64(w.floor.get(key).copied().unwrap_or(0))
                .u32(len_u32(taken.map_or(0, BTreeSet::len)));
            for seq in taken.into_iter().flatten() {
                self.u64(*seq);
            }
        }
        self
    }

    /// A session as a store holds it, without its will (written after it where one goes along:
    /// a snapshot's copies, a handover's will that came due and still waited for its write).
    fn session(&mut self, session: &StoredSession, now: Instant) -> &mut Self {
        self.u8(session.protocol.level())
            .u32(session.expiry_interval);
        self.u32(u32::try_from(session.subscriptions.len()).unwrap_or(u32::MAX));
        for (filter, sub) in &session.subscriptions {
            self.subscription(filter, sub);
        }
        self.u32(u32::try_from(session.messages.len()).unwrap_or(u32::MAX));
        for (seq, m) in &session.messages {
            self.stored_message(*seq, m, now);
        }
        self.u32(u32::try_from(session.incoming.len()).unwrap_or(u32::MAX));
        for id in &session.incoming {
            self.u16(*id);
        }
        self.u32(u32::try_from(session.seen.len()).unwrap_or(u32::MAX));
        for (&node, &(incarnation, seq)) in &session.seen {
            self.stamp(Some(&Stamp {
                node,
                incarnation,
                seq,
            }));
        }
        // 0: none (packet identifiers start at 1).
        self.u16(session.next_packet_id.unwrap_or(0))
    }

    fn subscription(&mut self, filter: &ByteString, sub: &StoredSubscription) -> &mut Self {
        self.bytes(filter.as_bytes())
            .u8(options_byte(&sub.options, true))
            .u32(sub.id.map_or(0, SubscriptionId::get))
    }

    fn stored_message(&mut self, seq: u64, m: &StoredMessage, now: Instant) -> &mut Self {
        let (state, packet_id) = match m.state {
            OutboundState::Queued => (0, 0),
            OutboundState::Sent(id) => (1, id),
            OutboundState::Released(id) => (2, id),
        };
        self.u64(seq)
            .u8(m.qos.as_u8())
            .u8(state)
            .u16(packet_id)
            .u8(u8::from(m.retain));
        self.u32(u32::try_from(m.sub_ids.len()).unwrap_or(u32::MAX));
        for id in &m.sub_ids {
            self.u32(id.get());
        }
        self.message(&m.message, now).stamp(m.stamp.as_ref())
    }

    /// A storage write of a persistent session (nothing for any other write, which never goes in
    /// a [`Command::Session`]). A session's will goes with it, so the node that takes the session
    /// in when this one dies can publish it; the time it went offline stays on its node.
    fn session_op(&mut self, op: &StoreOp, now: Instant) -> &mut Self {
        match op {
            StoreOp::PutSession {
                client_id,
                protocol,
                expiry_interval,
                will,
                ..
            } => self
                .u8(OP_PUT_SESSION)
                .bytes(client_id.as_bytes())
                .u8(protocol.level())
                .u32(*expiry_interval)
                .will(will.as_ref(), now),
            StoreOp::DeleteSession { client_id } => {
                self.u8(OP_DELETE_SESSION).bytes(client_id.as_bytes())
            }
            StoreOp::PutSubscription {
                client_id,
                filter,
                options,
                id,
            } => self
                .u8(OP_PUT_SUBSCRIPTION)
                .bytes(client_id.as_bytes())
                .subscription(
                    filter,
                    &StoredSubscription {
                        options: *options,
                        id: *id,
                    },
                ),
            StoreOp::DeleteSubscription { client_id, filter } => self
                .u8(OP_DELETE_SUBSCRIPTION)
                .bytes(client_id.as_bytes())
                .bytes(filter.as_bytes()),
            StoreOp::PutMessage { .. } => match op.stored_message() {
                Some((client_id, seq, m)) => self
                    .u8(OP_PUT_MESSAGE)
                    .bytes(client_id.as_bytes())
                    .stored_message(seq, &m, now),
                None => self,
            },
            StoreOp::DeleteMessage { client_id, seq } => self
                .u8(OP_DELETE_MESSAGE)
                .bytes(client_id.as_bytes())
                .u64(*seq),
            StoreOp::PutIncoming {
                client_id,
                packet_id,
            } => self
                .u8(OP_PUT_INCOMING)
                .bytes(client_id.as_bytes())
                .u16(*packet_id),
            StoreOp::DeleteIncoming {
                client_id,
                packet_id,
            } => self
                .u8(OP_DELETE_INCOMING)
                .bytes(client_id.as_bytes())
                .u16(*packet_id),
            StoreOp::PutSeen { client_id, stamp } => self
                .u8(OP_PUT_SEEN)
                .bytes(client_id.as_bytes())
                .stamp(Some(stamp)),
            StoreOp::PutWindow { client_id, window } => self
                .u8(OP_PUT_WINDOW)
                .bytes(client_id.as_bytes())
                .window(Some(window)),
            StoreOp::PutTaken { client_id, stamp } => self
                .u8(OP_PUT_TAKEN)
                .bytes(client_id.as_bytes())
                .stamp(Some(stamp)),
            StoreOp::DeleteWindow { client_id } => {
                self.u8(OP_DELETE_WINDOW).bytes(client_id.as_bytes())
            }
            // Not a session's: `Command::Session` leaves these out (see `StoreOp::session_client`).
            StoreOp::PutRetained { .. }
            | StoreOp::DeleteRetained { .. }
            | StoreOp::PutRelay { .. }
            | StoreOp::DeleteRelay { .. }
            | StoreOp::PutHandedOver { .. }
            | StoreOp::PutRaftEntry { .. }
            | StoreOp::TruncateRaftLog { .. }
            | StoreOp::PutRaftSnapshot { .. }
            | StoreOp::PutRaftHardState { .. } => self,
        }
    }

    fn done(&mut self) -> Bytes {
        std::mem::take(&mut self.0).freeze()
    }
}

/// Reads fields.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, field: &'static str) -> Result<(), WireError> {
        if self.0.remaining() < n {
            return Err(WireError::Truncated(field));
        }
        Ok(())
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        self.need(1, field)?;
        Ok(self.0.get_u8())
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.need(2, field)?;
        Ok(self.0.get_u16())
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.need(4, field)?;
        Ok(self.0.get_u32())
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.need(8, field)?;
        Ok(self.0.get_u64())
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        let n = self.u32(field)? as usize;
        self.need(n, field)?;
        Ok(self.0.split_to(n))
    }

    fn string(&mut self, field: &'static str) -> Result<ByteString, WireError> {
        ByteString::try_from(self.bytes(field)?).map_err(|_| WireError::NotUtf8(field))
    }

    /// The value read, if nothing is left after it (trailing bytes mean a different format).
    fn end<T>(self, value: T) -> Result<T, WireError> {
        if self.0.has_remaining() {
            return Err(WireError::Trailing(self.0.remaining()));
        }
        Ok(value)
    }

    fn count(&mut self, field: &'static str) -> Result<u32, WireError> {
        let n = self.u32(field)?;
        // Every element takes at least a byte: a count beyond what is left is garbage, not a
        // reason to reserve memory.
        self.need(n as usize, field)?;
        Ok(n)
    }

    fn stamp(&mut self) -> Result<Option<Stamp>, WireError> {
        Ok(match self.u8("stamp flag")? {
            0 => None,
            _ => Some(Stamp {
                node: self.u16("stamp node")?,
                incarnation: self.u64("stamp incarnation")?,
                seq: self.u64("stamp seq")?,
            }),
        })
    }

    fn window(&mut self) -> Result<Option<Box<TakenSince>>, WireError> {
        if self.u8("window flag")? == 0 {
            return Ok(None);
        }
        let mut w = TakenSince::default();
        for _ in 0..self.count("window origins")? {
            let key = (self.u16("window node")?, self.u64("window incarnation")?);
            w.floor.insert(key, self.u64("window floor")?);
            let mut taken = BTreeSet::new();
            for _ in 0..self.count("window stamps")? {
                taken.insert(self.u64("window stamp")?);
            }
            if !taken.is_empty() {
                w.taken.insert(key, taken);
            }
        }
        Ok(Some(Box::new(w)))
    }

    fn session(&mut self, now: Instant) -> Result<StoredSession, WireError> {
        let protocol = self.protocol()?;
        let mut session = StoredSession {
            protocol,
            expiry_interval: self.u32("session expiry")?,
            offline_since: None,
            will: None,
            subscriptions: Default::default(),
            messages: Default::default(),
            incoming: Default::default(),
            seen: Default::default(),
            window: None,
            next_packet_id: None,
        };
        for _ in 0..self.count("subscriptions")? {
            let (filter, sub) = self.subscription()?;
            session.subscriptions.insert(filter, sub);
        }
        for _ in 0..self.count("messages")? {
            let (seq, m) = self.stored_message(now)?;
            session.messages.insert(seq, m);
        }
        for _ in 0..self.count("incoming")? {
            session.incoming.insert(self.u16("incoming packet id")?);
        }
        for _ in 0..self.count("high-water marks")? {
            if let Some(s) = self.stamp()? {
                session.seen.insert(s.node, (s.incarnation, s.seq));
            }
        }
        session.next_packet_id = Some(self.u16("next packet id")?).filter(|id| *id != 0);
        Ok(session)
    }

    fn protocol(&mut self) -> Result<ProtocolVersion, WireError> {
        match self.u8("session protocol")? {
            3 => Ok(ProtocolVersion::V3_1),
            4 => Ok(ProtocolVersion::V3_1_1),
            5 => Ok(ProtocolVersion::V5),
            tag => Err(WireError::UnknownTag {
                what: "protocol",
                tag,
            }),
        }
    }

    fn subscription(&mut self) -> Result<(ByteString, StoredSubscription), WireError> {
        let filter = self.string("filter")?;
        let byte = self.u8("subscription options")?;
        let options =
            subscription_options(byte, true).map_err(|e| WireError::Message(e.to_string()))?;
        let id = SubscriptionId::new(self.u32("subscription id")?);
        Ok((filter, StoredSubscription { options, id }))
    }

    fn stored_message(&mut self, now: Instant) -> Result<(u64, StoredMessage), WireError> {
        let seq = self.u64("message seq")?;
        let qos = QoS::from_u8(self.u8("message qos")?).ok_or(WireError::UnknownTag {
            what: "qos",
            tag: 3,
        })?;
        let state = match (self.u8("message state")?, self.u16("packet id")?) {
            (0, _) => OutboundState::Queued,
            (1, id) => OutboundState::Sent(id),
            (2, id) => OutboundState::Released(id),
            (tag, _) => {
                return Err(WireError::UnknownTag {
                    what: "message state",
                    tag,
                })
            }
        };
        let retain = self.u8("retain")? != 0;
        let mut sub_ids = Vec::new();
        for _ in 0..self.count("subscription ids")? {
            sub_ids.extend(SubscriptionId::new(self.u32("subscription id")?));
        }
        let message = self.message(now)?;
        let m = StoredMessage {
            qos,
            state,
            retain,
            sub_ids,
            message,
            stamp: self.stamp()?,
        };
        Ok((seq, m))
    }

    fn session_op(&mut self, now: Instant) -> Result<StoreOp, WireError> {
        let tag = self.u8("session op")?;
        let client_id = self.string("client id")?;
        Ok(match tag {
            OP_PUT_SESSION => StoreOp::PutSession {
                client_id,
                protocol: self.protocol()?,
                expiry_interval: self.u32("session expiry")?,
                offline_since: None,
                will: self.will(now)?,
            },
            OP_DELETE_SESSION => StoreOp::DeleteSession { client_id },
            OP_PUT_SUBSCRIPTION => {
                let (filter, sub) = self.subscription()?;
                StoreOp::PutSubscription {
                    client_id,
                    filter,
                    options: sub.options,
                    id: sub.id,
                }
            }
            OP_DELETE_SUBSCRIPTION => StoreOp::DeleteSubscription {
                client_id,
                filter: self.string("filter")?,
            },
            OP_PUT_MESSAGE => {
                let (seq, m) = self.stored_message(now)?;
                StoreOp::put_message(client_id, seq, m)
            }
            OP_DELETE_MESSAGE => StoreOp::DeleteMessage {
                client_id,
                seq: self.u64("message seq")?,
            },
            OP_PUT_INCOMING => StoreOp::PutIncoming {
                client_id,
                packet_id: self.u16("packet id")?,
            },
            OP_DELETE_INCOMING => StoreOp::DeleteIncoming {
                client_id,
                packet_id: self.u16("packet id")?,
            },
            OP_PUT_SEEN => match self.stamp()? {
                Some(stamp) => StoreOp::PutSeen { client_id, stamp },
                None => return Err(WireError::Truncated("high-water mark")),
            },
            OP_PUT_WINDOW => match self.window()? {
                Some(window) => StoreOp::PutWindow { client_id, window },
                None => return Err(WireError::Truncated("move window")),
            },
            OP_PUT_TAKEN => match self.stamp()? {
                Some(stamp) => StoreOp::PutTaken { client_id, stamp },
                None => return Err(WireError::Truncated("taken stamp")),
            },
            OP_DELETE_WINDOW => StoreOp::DeleteWindow { client_id },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "session op",
                    tag,
                })
            }
        })
    }

    fn message(&mut self, now: Instant) -> Result<Arc<Message>, WireError> {
        let bytes = self.bytes("message")?;
        decode_message(bytes, now).map(Arc::new)
    }

    fn will(&mut self, now: Instant) -> Result<Option<Will>, WireError> {
        if self.u8("will")? == 0 {
            return Ok(None);
        }
        let m = decode_message(self.bytes("will message")?, now)?;
        let will_delay_interval = match self.u8("will delay")? {
            0 => None,
            _ => Some(self.u32("will delay")?),
        };
        let message_expiry_interval = m.remaining_expiry(now);
        let p = (*m.properties).clone();
        Ok(Some(Will {
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            properties: WillProperties {
                will_delay_interval,
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            },
        }))
    }
}

const FRAME_RAFT: u8 = 1;
const FRAME_DATA: u8 = 2;
const FRAME_ACK: u8 = 3;
const FRAME_RAFT_PART: u8 = 4;

const PEER_PUBLISH: u8 = 1;
const PEER_STORED: u8 = 2;
const PEER_HANDOVER: u8 = 3;
const PEER_RELAY: u8 = 4;

const CMD_CLAIM: u8 = 1;
const CMD_RELEASE: u8 = 2;
const CMD_INTEREST: u8 = 3;
const CMD_START: u8 = 4;
const CMD_RETAIN: u8 = 5;
const CMD_SESSION: u8 = 6;
const CMD_DOWN: u8 = 7;
const CMD_UP: u8 = 8;
const CMD_WILLS: u8 = 9;

/// The format of everything cluster nodes exchange and keep: link frames, log commands and
/// snapshots (whose first byte it is). It changes with any of them (6: a session's next packet
/// identifier in snapshots and handovers; 5: the copies' move windows, `Release::seen` and
/// `Relay::after`; 3: where retained messages were set; 2: the replaced wills). Nodes of different
/// formats would misread each other's bytes, so they refuse each other's snapshots, and the
/// shells refuse their links (the hello carries it).
pub const FORMAT: u8 = 6;
const MEMBER_V1: u8 = 1;

const OP_PUT_SESSION: u8 = 1;
const OP_DELETE_SESSION: u8 = 2;
const OP_PUT_SUBSCRIPTION: u8 = 3;
const OP_DELETE_SUBSCRIPTION: u8 = 4;
const OP_PUT_MESSAGE: u8 = 5;
const OP_DELETE_MESSAGE: u8 = 6;
const OP_PUT_INCOMING: u8 = 7;
const OP_DELETE_INCOMING: u8 = 8;
const OP_PUT_SEEN: u8 = 9;
const OP_PUT_WINDOW: u8 = 10;
const OP_PUT_TAKEN: u8 = 11;
const OP_DELETE_WINDOW: u8 = 12;

impl Frame {
    /// The frame's bytes; a message's expiry is sent as what remains of it at `now`.
    pub(crate) fn encode(&self, now: Instant) -> Bytes {
        match self {
            Frame::Raft(bytes) => {
                let mut w = Writer::new(FRAME_RAFT);
                w.0.put_slice(bytes);
                w.done()
            }
            Frame::RaftPart {
                id,
                part,
                parts,
                bytes,
            } => Writer::new(FRAME_RAFT_PART)
                .u64(*id)
                .u32(*part)
                .u32(*parts)
                .bytes(bytes)
                .done(),
            Frame::Data {
                incarnation,
                base,
                seq,
                message,
            } => {
                let mut w = Writer::new(FRAME_DATA);
                w.u64(*incarnation).u64(*base).u64(*seq);
                match message {
                    PeerMessage::Publish {
                        message,
                        plain,
                        groups,
                        receipt,
                        from,
                        stamp,
                        after,
                    } => {
                        w.u8(PEER_PUBLISH)
                            .message(message, now)
                            .u8(u8::from(*plain));
                        w.u32(u32::try_from(groups.len()).unwrap_or(u32::MAX));
                        for g in groups {
                            w.bytes(g.as_bytes());
                        }
                        w.u64(receipt.map_or(0, |r| r + 1)).u16(*from);
                        w.stamp(stamp.as_ref()).u64(*after);
                    }
                    PeerMessage::Handover {
                        client_id,
                        claim,
                        session,
                        receipt,
                        applied,
                    } => {
                        w.u8(PEER_HANDOVER)
                            .bytes(client_id.as_bytes())
                            .u64(claim.0)
                            .u64(claim.1)
                            .u64(receipt.map_or(0, |r| r + 1))
                            .u64(*applied);
                        match session {
                            Some(session) => w
                                .u8(1)
                                .session(session, now)
                                .will(session.will.as_ref(), now)
                                .window(session.window.as_deref()),
                            None => w.u8(0),
                        };
                    }
                    PeerMessage::Stored { seq } => {
                        w.u8(PEER_STORED).u64(*seq);
                    }
                    PeerMessage::Relay {
                        client_id,
                        message,
                        stamp,
                        after,
                    } => {
                        w.u8(PEER_RELAY)
                            .u64(*after)
                            .bytes(client_id.as_bytes())
                            .message(message, now)
                            .u16(stamp.node)
                            .u64(stamp.incarnation)
                            .u64(stamp.seq);
                    }
                    // Interest travels through the replicated log, never on a link.
                    PeerMessage::Interest { .. } => {}
                }
                w.done()
            }
            Frame::Ack { incarnation, upto } => {
                let mut w = Writer::new(FRAME_ACK);
                w.u64(*incarnation).u64(*upto);
                w.done()
            }
        }
    }

    /// Reads a frame received at `now`.
    pub(crate) fn decode(bytes: Bytes, now: Instant) -> Result<Frame, WireError> {
        let mut r = Reader(bytes);
        let frame = match r.u8("frame tag")? {
            FRAME_RAFT => return Ok(Frame::Raft(r.0)),
            FRAME_DATA => {
                let incarnation = r.u64("incarnation")?;
                let base = r.u64("base")?;
                let seq = r.u64("seq")?;
                let message = match r.u8("peer message tag")? {
                    PEER_PUBLISH => {
                        let message = r.message(now)?;
                        let plain = r.u8("plain")? != 0;
                        let n = r.u32("groups")?;
                        let mut groups = Vec::new();
                        for _ in 0..n {
                            groups.push(r.string("group")?);
                        }
                        let receipt = r.u64("receipt")?.checked_sub(1);
                        let from = r.u16("from")?;
                        let stamp = r.stamp()?;
                        PeerMessage::Publish {
                            message,
                            plain,
                            groups,
                            receipt,
                            from,
                            stamp,
                            after: r.u64("after")?,
                        }
                    }
                    PEER_HANDOVER => {
                        let client_id = r.string("client id")?;
                        let claim = (r.u64("claim")?, r.u64("claim")?);
                        let receipt = r.u64("receipt")?.checked_sub(1);
                        let applied = r.u64("applied")?;
                        let session = match r.u8("session flag")? {
                            0 => None,
                            _ => {
                                let mut session = r.session(now)?;
                                session.will = r.will(now)?;
                                session.window = r.window()?;
                                Some(Box::new(session))
                            }
                        };
                        PeerMessage::Handover {
                            client_id,
                            claim,
                            session,
                            receipt,
                            applied,
                        }
                    }
                    PEER_STORED => PeerMessage::Stored {
                        seq: r.u64("stored seq")?,
                    },
                    PEER_RELAY => {
                        let after = r.u64("relay after")?;
                        let client_id = r.string("client id")?;
                        let message = r.message(now)?;
                        let stamp = Stamp {
                            node: r.u16("stamp node")?,
                            incarnation: r.u64("stamp incarnation")?,
                            seq: r.u64("stamp seq")?,
                        };
                        PeerMessage::Relay {
                            client_id,
                            message,
                            stamp,
                            after,
                        }
                    }
                    tag => {
                        return Err(WireError::UnknownTag {
                            what: "peer message",
                            tag,
                        })
                    }
                };
                Frame::Data {
                    incarnation,
                    base,
                    seq,
                    message,
                }
            }
            FRAME_ACK => Frame::Ack {
                incarnation: r.u64("incarnation")?,
                upto: r.u64("upto")?,
            },
            FRAME_RAFT_PART => Frame::RaftPart {
                id: r.u64("part id")?,
                part: r.u32("part")?,
                parts: r.u32("parts")?,
                bytes: r.bytes("part bytes")?,
            },
            tag => return Err(WireError::UnknownTag { what: "frame", tag }),
        };
        r.end(frame)
    }
}

impl Command {
    /// The log entry's bytes. A retained message's expiry is stored as what remains at `now`, so a
    /// node replaying the log later sees it expire later: retained expiry is approximate in a
    /// cluster (see `docs/cluster.md`).
    pub(crate) fn encode(&self, now: Instant) -> Vec<u8> {
        let bytes = match self {
            Command::Claim {
                client_id,
                node,
                incarnation,
                token,
                will,
            } => Writer::new(CMD_CLAIM)
                .bytes(client_id.as_bytes())
                .u16(*node)
                .u64(*incarnation)
                .u64(*token)
                .will(will.as_deref(), now)
                .done(),
            Command::Release {
                client_id,
                node,
                incarnation,
                token,
                seen,
            } => Writer::new(CMD_RELEASE)
                .bytes(client_id.as_bytes())
                .u16(*node)
                .u64(*incarnation)
                .u64(*token)
                .u64(*seen)
                .done(),
            Command::Interest {
                node,
                incarnation,
                version,
                filter,
                count,
            } => Writer::new(CMD_INTEREST)
                .u16(*node)
                .u64(*incarnation)
                .u64(*version)
                .bytes(filter.as_bytes())
                .u32(*count)
                .done(),
            Command::Start { node, incarnation } => {
                Writer::new(CMD_START).u16(*node).u64(*incarnation).done()
            }
            Command::Down {
                node,
                incarnation,
                adopter,
            } => Writer::new(CMD_DOWN)
                .u16(*node)
                .u64(*incarnation)
                .u16(*adopter)
                .done(),
            Command::Up { node, incarnation } => {
                Writer::new(CMD_UP).u16(*node).u64(*incarnation).done()
            }
            Command::Wills { node, incarnation } => {
                Writer::new(CMD_WILLS).u16(*node).u64(*incarnation).done()
            }
            Command::Retain { message, seen } => Writer::new(CMD_RETAIN)
                .message(message, now)
                .u64(*seen)
                .done(),
            Command::Session {
                node,
                incarnation,
                seq,
                writes,
            } => {
                let mut w = Writer::new(CMD_SESSION);
                w.u16(*node).u64(*incarnation).u64(*seq);
                w.u32(len_u32(writes.len()));
                for written in writes {
                    let ops: Vec<&StoreOp> = (written.ops.iter())
                        .filter(|op| op.session_client().is_some())
                        .collect();
                    w.u64(written.seen).u32(len_u32(ops.len()));
                    for op in ops {
                        w.session_op(op, now);
                    }
                }
                w.done()
            }
        };
        bytes.to_vec()
    }

    /// Reads a log entry applied at `now`.
    pub(crate) fn decode(bytes: Bytes, now: Instant) -> Result<Command, WireError> {
        let mut r = Reader(bytes);
        let command = match r.u8("command tag")? {
            CMD_CLAIM => Command::Claim {
                client_id: r.string("client id")?,
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
                token: r.u64("token")?,
                will: r.will(now)?.map(Box::new),
            },
            CMD_RELEASE => Command::Release {
                client_id: r.string("client id")?,
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
                token: r.u64("token")?,
                seen: r.u64("seen")?,
            },
            CMD_INTEREST => Command::Interest {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
                version: r.u64("version")?,
                filter: r.string("filter")?,
                count: r.u32("count")?,
            },
            CMD_START => Command::Start {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
            },
            CMD_RETAIN => Command::Retain {
                message: r.message(now)?,
                seen: r.u64("seen")?,
            },
            CMD_DOWN => Command::Down {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
                adopter: r.u16("adopter")?,
            },
            CMD_UP => Command::Up {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
            },
            CMD_WILLS => Command::Wills {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
            },
            CMD_SESSION => {
                let node = r.u16("node")?;
                let incarnation = r.u64("incarnation")?;
                let seq = r.u64("seq")?;
                let mut writes = Vec::new();
                for _ in 0..r.count("session writes")? {
                    let seen = r.u64("writes seen")?;
                    let mut ops = Vec::new();
                    for _ in 0..r.count("session ops")? {
                        ops.push(r.session_op(now)?);
                    }
                    writes.push(Written { seen, ops });
                }
                Command::Session {
                    node,
                    incarnation,
                    seq,
                    writes,
                }
            }
            tag => {
                return Err(WireError::UnknownTag {
                    what: "command",
                    tag,
                })
            }
        };
        r.end(command)
    }
}

/// What a snapshot carries: the applied state at its index, as every node builds it from the log.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) table: Table,
    /// Every persistent session's copy: (client identifier, the node whose writes built it, the
    /// session).
    pub(crate) copies: Vec<(ByteString, u16, StoredSession)>,
    /// The retained messages.
    pub(crate) retained: Vec<Arc<Message>>,
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Writer {
    fn text(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    fn optional(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).text(v),
            None => self.u8(0),
        }
    }

    fn member(&mut self, m: &MemberAddress) -> &mut Self {
        self.text(&m.address)
            .optional(m.server_name.as_deref())
            .optional(m.mqtt.as_deref())
    }
}

impl Reader {
    fn optional(&mut self, field: &'static str) -> Result<Option<String>, WireError> {
        Ok(match self.u8(field)? {
            0 => None,
            _ => Some(self.string(field)?.to_string()),
        })
    }

    fn member(&mut self) -> Result<MemberAddress, WireError> {
        Ok(MemberAddress {
            address: self.string("member address")?.to_string(),
            server_name: self.optional("member server name")?,
            mqtt: self.optional("member mqtt address")?,
        })
    }
}

impl MemberAddress {
    /// The context of the configuration change that adds a node: its address, for every node.
    pub(crate) fn encode(&self) -> Vec<u8> {
        Writer::new(MEMBER_V1).member(self).done().to_vec()
    }

    pub(crate) fn decode(bytes: Bytes) -> Result<MemberAddress, WireError> {
        let mut r = Reader(bytes);
        match r.u8("member tag")? {
            MEMBER_V1 => {
                let m = r.member()?;
                r.end(m)
            }
            tag => Err(WireError::UnknownTag {
                what: "member",
                tag,
            }),
        }
    }
}

impl State {
    /// A snapshot's data, written straight from the applied state (a copy of it first would
    /// cost as much again, on the engine's thread): the table, every session copy, and the
    /// retained messages not expired at `now`. Expiry is relative to `now`, as in the log.
    pub(crate) fn encode(
        table: &Table,
        replicas: &Replicas,
        retained: &[Arc<Message>],
        now: Instant,
    ) -> Bytes {
        let t = table;
        let mut w = Writer::new(FORMAT);
        w.u32(len_u32(t.owners.len()));
        for (client, node) in &t.owners {
            let since = t.owned_since.get(client).copied().unwrap_or(0);
            w.bytes(client.as_bytes()).u16(*node).u64(since);
        }
        w.u32(len_u32(t.claims.len()));
        for ((client, node), (inc, token)) in &t.claims {
            w.bytes(client.as_bytes()).u16(*node).u64(*inc).u64(*token);
        }
        w.u32(len_u32(t.incarnations.len()));
        for (node, inc) in &t.incarnations {
            w.u16(*node).u64(*inc);
        }
        w.u32(len_u32(t.interest.len()));
        for ((node, filter), (version, count)) in &t.interest {
            w.u16(*node)
                .bytes(filter.as_bytes())
                .u64(*version)
                .u32(*count);
        }
        w.u32(len_u32(t.retained_by.len()));
        for (topic, by) in &t.retained_by {
            w.bytes(topic.as_bytes())
                .u16(by.node)
                .u64(by.incarnation)
                .u64(by.token)
                .u64(by.seen)
                .u64(by.at);
        }
        w.u32(len_u32(t.session_seq.len()));
        for (node, seq) in &t.session_seq {
            w.u16(*node).u64(*seq);
        }
        w.u32(len_u32(t.members.len()));
        for (node, member) in &t.members {
            w.u16(*node).member(member);
        }
        w.u32(len_u32(t.down.len()));
        for (node, (inc, adopter)) in &t.down {
            w.u16(*node).u64(*inc).u16(*adopter);
        }
        w.u64(t.downs);
        w.u32(len_u32(t.wills.len()));
        for (client, (node, inc, will)) in &t.wills {
            w.bytes(client.as_bytes())
                .u16(*node)
                .u64(*inc)
                .will(Some(will), now);
        }
        w.u32(len_u32(t.replaced.len()));
        for ((client, node, inc, token), will) in &t.replaced {
            w.bytes(client.as_bytes())
                .u16(*node)
                .u64(*inc)
                .u64(*token)
                .will(Some(will), now);
        }
        let copies: Vec<_> = replicas.iter().collect();
        w.u32(len_u32(copies.len()));
        for (client, writer, session) in copies {
            w.bytes(client.as_bytes())
                .u16(writer)
                .session(session, now)
                .will(session.will.as_ref(), now)
                .window(session.window.as_deref());
        }
        let retained: Vec<_> = retained.iter().filter(|m| !m.is_expired(now)).collect();
        w.u32(len_u32(retained.len()));
        for message in retained {
            w.message(message, now);
        }
        w.done()
    }

    /// Reads a snapshot's data at `now`.
    pub(crate) fn decode(bytes: Bytes, now: Instant) -> Result<State, WireError> {
        let mut r = Reader(bytes);
        let tag = r.u8("state tag")?;
        if tag != FORMAT {
            return Err(WireError::UnknownTag { what: "state", tag });
        }
        let mut state = State::default();
        let t = &mut state.table;
        for _ in 0..r.count("owners")? {
            let client = r.string("client id")?;
            t.owners.insert(client.clone(), r.u16("owner")?);
            let since = r.u64("owned since")?;
            t.owned_since.insert(client.clone(), since);
            t.mark_moved(client, since);
        }
        for _ in 0..r.count("claims")? {
            let key = (r.string("client id")?, r.u16("claim node")?);
            t.claims
                .insert(key, (r.u64("claim incarnation")?, r.u64("claim token")?));
        }
        for _ in 0..r.count("incarnations")? {
            t.incarnations.insert(r.u16("node")?, r.u64("incarnation")?);
        }
        for _ in 0..r.count("interest")? {
            let key = (r.u16("interest node")?, r.string("filter")?);
            t.interest
                .insert(key, (r.u64("interest version")?, r.u32("interest count")?));
        }
        for _ in 0..r.count("retained by")? {
            let topic = r.string("topic")?;
            let by = RetainedBy {
                node: r.u16("node")?,
                incarnation: r.u64("incarnation")?,
                token: r.u64("token")?,
                seen: r.u64("seen")?,
                at: r.u64("at")?,
            };
            t.retained_by.insert(topic, by);
        }
        for _ in 0..r.count("session seqs")? {
            t.session_seq.insert(r.u16("node")?, r.u64("seq")?);
        }
        for _ in 0..r.count("members")? {
            let node = r.u16("member node")?;
            t.members.insert(node, r.member()?);
        }
        for _ in 0..r.count("down")? {
            let node = r.u16("down node")?;
            t.down
                .insert(node, (r.u64("down incarnation")?, r.u16("adopter")?));
        }
        t.downs = r.u64("downs")?;
        for _ in 0..r.count("wills")? {
            let client = r.string("client id")?;
            let (node, inc) = (r.u16("will node")?, r.u64("will incarnation")?);
            if let Some(will) = r.will(now)? {
                t.wills.insert(client, (node, inc, will));
            }
        }
        for _ in 0..r.count("replaced wills")? {
            let client = r.string("client id")?;
            let (node, inc) = (r.u16("will node")?, r.u64("will incarnation")?);
            let token = r.u64("will token")?;
            if let Some(will) = r.will(now)? {
                t.replaced.insert((client, node, inc, token), will);
            }
        }
        for _ in 0..r.count("copies")? {
            let client = r.string("client id")?;
            let writer = r.u16("writer")?;
            let mut session = r.session(now)?;
            session.will = r.will(now)?;
            session.window = r.window()?;
            state.copies.push((client, writer, session));
        }
        for _ in 0..r.count("retained")? {
            state.retained.push(r.message(now)?);
        }
        r.end(state)
    }
}

fn decode_message(bytes: Bytes, now: Instant) -> Result<Message, WireError> {
    let mut r = Reader(bytes);
    let packet = r.bytes("publish")?;
    let origin = match r.u8("origin")? {
        0 => None,
        _ => Some(r.string("origin")?),
    };
    let publish = match decode_shared(packet, ProtocolVersion::V5) {
        Ok(crate::codec::Packet::Publish(p)) => p,
        Ok(_) => return Err(WireError::Message("not a PUBLISH".into())),
        Err(e) => return Err(WireError::Message(e.to_string())),
    };
    let qos = match publish.delivery {
        Delivery::AtMostOnce => QoS::AtMostOnce,
        Delivery::AtLeastOnce(_) => QoS::AtLeastOnce,
        Delivery::ExactlyOnce(_) => QoS::ExactlyOnce,
    };
    let expires_at = Message::expiry_from(now, publish.properties.message_expiry_interval);
    let mut properties = publish.properties;
    properties.message_expiry_interval = None;
    Ok(Message {
        topic: TopicName::new(publish.topic.as_str().to_owned())
            .map_err(|e| WireError::Message(e.to_string()))?,
        payload: publish.payload,
        qos,
        retain: publish.retain,
        properties: properties.into(),
        origin,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message() -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new("a/b").expect("a topic"),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Default::default(),
            origin: Some("pub-1".into()),
            expires_at: Some(Instant::ZERO + Duration::from_secs(30)),
        })
    }

    /// A will with every property.
    fn will() -> Will {
        Will {
            topic: TopicName::new("dev/1/status").expect("a topic"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some(TopicName::new("dev/1/reply").expect("a topic")),
                correlation_data: Some(Bytes::from_static(b"\x01")),
                user_properties: vec![crate::codec::UserProperty {
                    name: "site".into(),
                    value: "north".into(),
                }],
            },
        }
    }

    /// A handover of `session` as link message `seq`.
    fn handover(seq: u64, session: StoredSession) -> Frame {
        Frame::Data {
            incarnation: 7,
            base: 3,
            seq,
            message: PeerMessage::Handover {
                client_id: "roamer".into(),
                claim: (8, 3),
                session: Some(Box::new(session)),
                receipt: Some(seq + 30),
                applied: seq + 200,
            },
        }
    }

    /// `session()` with a will, as the copies hold it (a handover only one that came due).
    /// A move window, as a handover or the log carries it (without `until`).
    fn taken_since() -> Box<TakenSince> {
        Box::new(TakenSince {
            floor: [((1, 4), 90), ((3, 8), 2)].into_iter().collect(),
            taken: [((1, 4), [95, 97].into_iter().collect())]
                .into_iter()
                .collect(),
            until: None,
        })
    }

    fn session_with_will() -> StoredSession {
        StoredSession {
            will: Some(will()),
            ..session()
        }
    }

    /// A session with one of everything a handover carries.
    fn session() -> StoredSession {
        use crate::codec::{RetainHandling, SubscriptionOptions};
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let mut session = StoredSession {
            protocol: ProtocolVersion::V5,
            expiry_interval: 3600,
            offline_since: None,
            will: None,
            subscriptions: Default::default(),
            messages: Default::default(),
            incoming: [3, 9].into_iter().collect(),
            seen: [(1, (4, 99)), (3, (8, 2))].into_iter().collect(),
            window: None,
            next_packet_id: Some(7),
        };
        session.subscriptions.insert(
            "a/#".into(),
            StoredSubscription {
                options,
                id: SubscriptionId::new(42),
            },
        );
        for (seq, state) in [
            (5, OutboundState::Released(7)),
            (6, OutboundState::Sent(8)),
            (7, OutboundState::Queued),
        ] {
            let stored = StoredMessage {
                qos: QoS::ExactlyOnce,
                state,
                retain: seq == 7,
                sub_ids: SubscriptionId::new(42).into_iter().collect(),
                message: message(),
                stamp: (seq == 5).then_some(Stamp {
                    node: 2,
                    incarnation: 9,
                    seq: 40,
                }),
            };
            session.messages.insert(seq, stored);
        }
        session
    }

    #[test]
    fn a_handover_too_big_for_a_frame_leaves_its_newest_messages_behind() {
        let mut s = session();
        let all = s.clone();
        assert_eq!(s.trim_to(usize::MAX), 0);
        assert_eq!(s, all);
        // The subscription "a/#" and two messages ("a/b" + "hello"), each with 64 bytes around it.
        assert_eq!(s.trim_to((3 + 64) + 2 * (3 + 5 + 64)), 1);
        assert_eq!(s.messages.keys().copied().collect::<Vec<_>>(), [5, 6]);
        assert_eq!(s.trim_to(0), 2);
        assert!(s.messages.is_empty());
    }

    /// A frame of each kind.
    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Raft(Bytes::from_static(b"\x08\x01")),
            Frame::RaftPart {
                id: 3,
                part: 1,
                parts: 4,
                bytes: Bytes::from_static(b"\x08\x01\x10"),
            },
            Frame::Data {
                incarnation: 7,
                base: 3,
                seq: 9,
                message: PeerMessage::Publish {
                    message: message(),
                    plain: true,
                    groups: vec!["$share/g/a/#".into()],
                    receipt: Some(0),
                    from: 2,
                    stamp: Some(Stamp {
                        node: 2,
                        incarnation: 5,
                        seq: 17,
                    }),
                    after: 3,
                },
            },
            Frame::Data {
                incarnation: 7,
                base: 3,
                seq: 10,
                message: PeerMessage::Stored { seq: 44 },
            },
            handover(11, session()),
            // A will that came due and still waited for its write goes along.
            handover(12, session_with_will()),
            // So does what its move window took.
            handover(
                13,
                StoredSession {
                    window: Some(taken_since()),
                    ..session()
                },
            ),
            Frame::Data {
                incarnation: 7,
                base: 3,
                seq: 12,
                message: PeerMessage::Relay {
                    client_id: "roamer".into(),
                    message: message(),
                    stamp: Stamp {
                        node: 3,
                        incarnation: 1,
                        seq: 99,
                    },
                    after: 42,
                },
            },
            Frame::Data {
                incarnation: 7,
                base: 3,
                seq: 12,
                message: PeerMessage::Handover {
                    client_id: "gone".into(),
                    claim: (8, 4),
                    session: None,
                    receipt: None,
                    applied: 0,
                },
            },
            Frame::Ack {
                incarnation: 7,
                upto: 10,
            },
        ]
    }

    #[test]
    fn frames_round_trip() {
        let now = Instant::ZERO;
        for frame in sample_frames() {
            assert_eq!(
                Frame::decode(frame.encode(now), now).expect("decodes"),
                frame
            );
        }
    }

    /// A log entry of each kind, one with every session write.
    fn sample_commands() -> Vec<Command> {
        vec![
            Command::Claim {
                client_id: "c".into(),
                node: 3,
                incarnation: 4,
                token: 5,
                will: None,
            },
            Command::Claim {
                client_id: "d".into(),
                node: 3,
                incarnation: 4,
                token: 6,
                will: Some(Box::new(will())),
            },
            Command::Release {
                client_id: "c".into(),
                node: 3,
                incarnation: 4,
                token: 5,
                seen: 17,
            },
            Command::Down {
                node: 2,
                incarnation: 6,
                adopter: 1,
            },
            Command::Up {
                node: 2,
                incarnation: 6,
            },
            Command::Wills {
                node: 2,
                incarnation: 6,
            },
            Command::Interest {
                node: 1,
                incarnation: 5,
                version: 6,
                filter: "a/+".into(),
                count: 2,
            },
            Command::Start {
                node: 1,
                incarnation: 5,
            },
            Command::Retain {
                message: message(),
                seen: 11,
            },
            Command::Session {
                node: 2,
                incarnation: 6,
                seq: 1,
                // Every kind of session write: a whole session's, then the deletions, made
                // knowing more of the log.
                writes: vec![
                    Written {
                        seen: 40,
                        ops: session_with_will().ops(&"roamer".into()),
                    },
                    Written {
                        seen: 41,
                        ops: vec![
                            StoreOp::DeleteSubscription {
                                client_id: "roamer".into(),
                                filter: "a/#".into(),
                            },
                            StoreOp::DeleteMessage {
                                client_id: "roamer".into(),
                                seq: 5,
                            },
                            StoreOp::DeleteIncoming {
                                client_id: "roamer".into(),
                                packet_id: 3,
                            },
                            StoreOp::PutWindow {
                                client_id: "roamer".into(),
                                window: taken_since(),
                            },
                            StoreOp::PutTaken {
                                client_id: "roamer".into(),
                                stamp: Stamp {
                                    node: 1,
                                    incarnation: 4,
                                    seq: 98,
                                },
                            },
                            StoreOp::DeleteWindow {
                                client_id: "roamer".into(),
                            },
                            StoreOp::DeleteSession {
                                client_id: "roamer".into(),
                            },
                        ],
                    },
                ],
            },
        ]
    }

    #[test]
    fn commands_round_trip_and_expiry_is_relative() {
        for cmd in sample_commands() {
            let bytes = Bytes::from(cmd.encode(Instant::ZERO));
            assert_eq!(Command::decode(bytes, Instant::ZERO).expect("decodes"), cmd);
        }
        // Applied ten seconds later, the message has thirty seconds from then.
        let retain = Command::Retain {
            message: message(),
            seen: 0,
        };
        let bytes = Bytes::from(retain.encode(Instant::ZERO));
        let later = Instant::ZERO + Duration::from_secs(10);
        let Command::Retain { message: m, .. } = Command::decode(bytes, later).expect("decodes")
        else {
            panic!("not a retain")
        };
        assert_eq!(m.expires_at, Some(later + Duration::from_secs(30)));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // Valid frames and log entries of each kind with bytes changed and cut, so the damage
        // reaches deep fields (sessions in handovers, every session write).
        let mut samples: Vec<Vec<u8>> = sample_frames()
            .iter()
            .map(|f| f.encode(Instant::ZERO).to_vec())
            .collect();
        samples.extend(sample_commands().iter().map(|c| c.encode(Instant::ZERO)));
        samples.push(encoded(&sample_state()).to_vec());
        samples.push(sample_member().encode());
        bolero::check!()
            .with_type::<(u8, u16, Vec<(u16, u8)>)>()
            .with_test_time(std::time::Duration::from_secs(2))
            .for_each(|(which, cut, edits)| {
                let mut bytes = samples[usize::from(*which) % samples.len()].clone();
                for (at, value) in edits {
                    let at = usize::from(*at) % bytes.len().max(1);
                    if let Some(b) = bytes.get_mut(at) {
                        *b = *value;
                    }
                }
                bytes.truncate(usize::from(*cut));
                let bytes = Bytes::from(bytes);
                let _ = Frame::decode(bytes.clone(), Instant::ZERO);
                let _ = Command::decode(bytes.clone(), Instant::ZERO);
                let _ = State::decode(bytes.clone(), Instant::ZERO);
                let _ = MemberAddress::decode(bytes);
            });
    }

    fn sample_member() -> MemberAddress {
        MemberAddress {
            address: "10.0.0.4:7883".into(),
            server_name: Some("node4.cluster".into()),
            mqtt: None,
        }
    }

    fn sample_state() -> State {
        let mut table = Table::default();
        table.owners.insert("c".into(), 2);
        table.owned_since.insert("c".into(), 21);
        table.mark_moved("c".into(), 21);
        table.claims.insert(("c".into(), 2), (7, 3));
        table.incarnations.insert(2, 7);
        table.interest.insert((2, "t/#".into()), (4, 1));
        let by = RetainedBy {
            node: 1,
            incarnation: 9,
            token: 12,
            seen: 30,
            at: 33,
        };
        table.retained_by.insert("r/x".into(), by);
        table.session_seq.insert(2, 5);
        table.members.insert(4, sample_member());
        table.down.insert(3, (8, 2));
        table.downs = 2;
        table.wills.insert("d".into(), (2, 7, will()));
        table.replaced.insert(("d".into(), 1, 6, 4), will());
        State {
            table,
            copies: vec![
                ("c".into(), 2, session_with_will()),
                (
                    "e".into(),
                    1,
                    StoredSession {
                        window: Some(taken_since()),
                        ..session()
                    },
                ),
            ],
            retained: vec![message()],
        }
    }

    fn encoded(state: &State) -> Bytes {
        let replicas = Replicas::restore(state.copies.clone());
        State::encode(&state.table, &replicas, &state.retained, Instant::ZERO)
    }

    #[test]
    fn a_snapshot_state_and_a_member_round_trip() {
        let state = sample_state();
        let back = State::decode(encoded(&state), Instant::ZERO).expect("decodes");
        assert_eq!(back.table, state.table);
        assert_eq!(back.copies, state.copies);
        assert_eq!(back.retained.len(), 1);
        assert_eq!(back.retained[0].payload, state.retained[0].payload);
        let member = sample_member();
        assert_eq!(
            MemberAddress::decode(Bytes::from(member.encode())),
            Ok(member)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x02\x00",
            b"\x09",
            b"\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x07",
        ] {
            assert!(Frame::decode(Bytes::copy_from_slice(bytes), Instant::ZERO).is_err());
            assert!(Command::decode(Bytes::copy_from_slice(bytes), Instant::ZERO).is_err());
        }
    }
}
