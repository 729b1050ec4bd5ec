//! A session: what the broker keeps for one client identifier, online or not: subscriptions, the
//! outbound queue and inflight window, incoming QoS 2 packet ids, and the will.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{PacketId, ProtocolVersion, QoS, SubscriptionId, SubscriptionOptions, Will};
use crate::io::{ConnId, DropReason, OutboundState, Stamp, StoreOp};
use crate::message::Message;
use crate::stored::{StoredMessage, StoredSession, StoredSubscription};
use crate::time::Instant;

mod window;

pub(crate) use window::MoveWindow;

/// Sessions are numbered by the engine in creation order; numbers are never reused.
pub(crate) type SessionId = u64;

/// One subscription of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sub {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<SubscriptionId>,
}

/// A message on its way to this session's client.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    /// Position in the session's stream; the storage key.
    pub(crate) seq: u64,
    pub(crate) message: Arc<Message>,
    /// Delivery QoS: the lower of the published QoS and the subscription's.
    pub(crate) qos: QoS,
    /// The RETAIN flag to send.
    pub(crate) retain: bool,
    /// Identifiers of the matching subscriptions (v5).
    pub(crate) sub_ids: Vec<SubscriptionId>,
    /// Whether a storage operation holds it (so removing it needs one too).
    pub(crate) stored: bool,
    /// The shared subscription (`$share/...` filter) it came through, if any: such a message may move
    /// to another member of the group while this session is offline. Not stored: after a restart a
    /// queued message stays with the member it was queued on.
    pub(crate) shared: Option<ByteString>,
    /// Its cluster identity (stored with it): a node that finds it no longer owns the session
    /// relays what it queued with one, and a node that gets the session late merges what its
    /// session did not take (see `engine/cluster/moving.rs`).
    pub(crate) stamp: Option<Stamp>,
}

impl Outbound {
    /// The operation storing it for `client_id` in `state`.
    pub(crate) fn put_op(&self, client_id: &ByteString, state: OutboundState) -> StoreOp {
        StoreOp::PutMessage {
            client_id: client_id.clone(),
            seq: self.seq,
            qos: self.qos,
            state,
            retain: self.retain,
            sub_ids: self.sub_ids.clone(),
            message: self.message.clone(),
            stamp: self.stamp,
        }
    }
}

/// Where an inflight message is in its QoS flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// A QoS 1/2 message sent and not yet fully acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Inflight {
    pub(crate) out: Outbound,
    pub(crate) flow: Flow,
    /// The storage batch its PUBLISH last waited behind on its connection (`None`: sent when
    /// written, or restored). While that batch is not durable the client has not seen it, and a
    /// connection closed meanwhile never sends it: a session handed over then carries it as
    /// never sent (see `Engine::unsent`).
    pub(crate) held_by: Option<u64>,
}

/// A will message waiting for its connection to end.
#[derive(Clone, Debug)]
pub(crate) struct PendingWill {
    pub(crate) will: Will,
    /// Seconds to wait after the connection ends (v5 Will Delay Interval).
    pub(crate) delay: u32,
}

/// Queue limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: ByteString,
    pub(crate) protocol: ProtocolVersion,
    /// The connection currently attached, if online.
    pub(crate) conn: Option<ConnId>,
    /// Seconds the session outlives its connection: 0 ends it with the connection, `u32::MAX` never.
    pub(crate) expiry_interval: u32,
    pub(crate) subscriptions: BTreeMap<ByteString, Sub>,
    pub(crate) queue: VecDeque<Outbound>,
    pub(crate) queued_bytes: usize,
    /// Keyed by packet id.
    pub(crate) inflight: BTreeMap<u16, Inflight>,
    next_packet_id: u16,
    next_seq: u64,
    /// QoS 2 packet ids received and PUBREC'd, waiting for PUBREL.
    pub(crate) incoming: BTreeSet<u16>,
    pub(crate) will: Option<PendingWill>,
    /// When its connection ended, while it has none.
    pub(crate) offline_since: Option<Instant>,
    /// How many QoS 1/2 messages may be inflight to the client now.
    pub(crate) send_quota: u16,
    /// The client's Maximum Packet Size (v5).
    pub(crate) client_max_packet: Option<u32>,
    /// Who its client proved to be at its last CONNECT, for the ACL; `None` for a session restored
    /// from storage whose client has not connected since.
    pub(crate) principal: Option<crate::io::Principal>,
    /// Its tenant (an index into the configured tenants), as of its client's last CONNECT.
    pub(crate) tenant: Option<usize>,
    /// Its tenant's mount point, put before every topic its client uses.
    pub(crate) mount: Option<std::sync::Arc<str>>,
    /// In a cluster: the last message identity it took from each origin node, as (incarnation,
    /// counter). Moves with the session between nodes (see [`Stamp`]).
    pub(crate) seen: BTreeMap<u16, (u64, u64)>,
    /// For a while after it moved to this node: each stamp it took since, so a message relayed
    /// by the node it left is judged exactly (see [`MoveWindow`]). Stored with the session.
    pub(crate) window: Option<Box<MoveWindow>>,
}

impl Session {
    pub(crate) fn new(client_id: ByteString, protocol: ProtocolVersion) -> Session {
        Session {
            client_id,
            protocol,
            conn: None,
            expiry_interval: 0,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: BTreeMap::new(),
            next_packet_id: 1,
            next_seq: 1,
            incoming: BTreeSet::new(),
            will: None,
            offline_since: None,
            send_quota: 1,
            client_max_packet: None,
            principal: None,
            tenant: None,
            mount: None,
            seen: BTreeMap::new(),
            window: None,
        }
    }

    /// Records that the session takes the message `stamp` identifies; false if it took it (or a
    /// later one of the same origin incarnation) before. With `check` false it records without
    /// refusing: a shared group's message was routed to this node for this member alone.
    /// Within a [`MoveWindow`] open at `now`, the window judges instead.
    ///
    /// The mark keeps one incarnation per origin. `latest` are the origin's incarnations the
    /// node knows to be its newest (none: it knows nothing). A stamp of another incarnation than
    /// the mark's is from a restarted origin's new one if it is among them: it starts the mark
    /// over. Else it is from an older one, whose mark the new one replaced, so whether the
    /// session took it cannot be told: it is refused (a loss rather than a second delivery) and
    /// leaves the mark alone. Seed 1805: a node restarted, its session took a message it then
    /// routed under its new incarnation, and a relay of one it had routed under its old one,
    /// taken before the crash, came again and was delivered twice.
    pub(crate) fn take_stamp(
        &mut self,
        stamp: Stamp,
        check: bool,
        now: Instant,
        latest: [Option<u64>; 2],
    ) -> bool {
        if self.window.as_ref().is_some_and(|w| !w.open(now)) {
            self.window = None;
        }
        let known = latest.iter().flatten().next().is_some();
        let newer = !known || latest.contains(&Some(stamp.incarnation));
        let mark = self.seen.get(&stamp.node).copied();
        let older = mark.is_some_and(|(inc, _)| inc != stamp.incarnation) && !newer;
        let fresh = match &mut self.window {
            Some(window) if window.knows(&stamp) || !older => window.take(stamp, check),
            _ => {
                !check
                    || !older
                        && !mark
                            .is_some_and(|(inc, seq)| inc == stamp.incarnation && stamp.seq <= seq)
            }
        };
        if !fresh {
            return false;
        }
        // The highest per origin, window or not: what a handover or the store carries on.
        match self.seen.get_mut(&stamp.node) {
            Some((inc, seq)) if *inc == stamp.incarnation => *seq = (*seq).max(stamp.seq),
            Some(_) if older => {}
            // A restarted origin counts again from its new incarnation.
            _ => {
                self.seen.insert(stamp.node, (stamp.incarnation, stamp.seq));
            }
        }
        true
    }

    /// The session as a store holds it, without its will: what a handover carries to another node.
    /// QoS 0 messages still queued stay behind (at most once allows it).
    pub(crate) fn snapshot(&self) -> StoredSession {
        let stored = |out: &Outbound, state| StoredMessage {
            qos: out.qos,
            state,
            retain: out.retain,
            sub_ids: out.sub_ids.clone(),
            message: out.message.clone(),
            stamp: out.stamp,
        };
        let mut messages = BTreeMap::new();
        for (&packet_id, f) in &self.inflight {
            let state = match f.flow {
                Flow::Published => OutboundState::Sent(packet_id),
                Flow::Released => OutboundState::Released(packet_id),
            };
            messages.insert(f.out.seq, stored(&f.out, state));
        }
        for out in self.queue.iter().filter(|o| o.qos != QoS::AtMostOnce) {
            messages.insert(out.seq, stored(out, OutboundState::Queued));
        }
        StoredSession {
            protocol: self.protocol,
            expiry_interval: self.expiry_interval,
            offline_since: None,
            will: None,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(f, sub)| {
                    let stored = StoredSubscription {
                        options: sub.options,
                        id: sub.id,
                    };
                    (f.clone(), stored)
                })
                .collect(),
            messages,
            incoming: self.incoming.clone(),
            seen: self.seen.clone(),
            window: None,
            next_packet_id: Some(self.next_packet_id),
        }
    }

    /// [`Session::snapshot`] with what its [`MoveWindow`], if still open at `now`, took: what a
    /// handover carries (without when the window closes, which the receiver decides).
    pub(crate) fn handed_over(&self, now: Instant) -> StoredSession {
        let mut stored = self.stored(now);
        if let Some(w) = &mut stored.window {
            w.until = None;
        }
        stored
    }

    /// [`Session::snapshot`] with its [`MoveWindow`], if still open at `now`: what the store
    /// holds.
    pub(crate) fn stored(&self, now: Instant) -> StoredSession {
        let window = (self.window.as_ref())
            .filter(|w| w.open(now))
            .map(|w| Box::new(w.taken().clone()));
        StoredSession {
            window,
            ..self.snapshot()
        }
    }

    /// Whether the session outlives its connection (and is therefore stored).
    pub(crate) fn is_persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    /// Forgets that storage holds any of its messages: after the store deleted the session (it stopped
    /// being persistent while still in use), no later operation may write or delete them again.
    pub(crate) fn forget_stored(&mut self) {
        for out in self.queue.iter_mut() {
            out.stored = false;
        }
        for f in self.inflight.values_mut() {
            f.out.stored = false;
        }
    }

    /// Continues the message stream after `last` (a restored session's highest stored position).
    pub(crate) fn continue_after(&mut self, last: u64) {
        self.next_seq = self.next_seq.max(last + 1);
    }

    /// The next position in the session's message stream.
    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// A packet id not used by any inflight message. The caller guarantees the window is not full, so
    /// one exists (the window is at most 65,535).
    pub(crate) fn take_packet_id(&mut self) -> PacketId {
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&candidate) {
                if let Some(id) = PacketId::new(candidate) {
                    return id;
                }
            }
        }
    }

    /// Goes on with packet identifiers from `next` (what a handover carries), or else `jump`
    /// past the id of the latest inflight message (wrapping, 0 skipped). Identifiers are taken
    /// in turn, so a session restored or moved here does not go back to ids its client may still
    /// hold from another version of it (see [`StoredSession::next_packet_id`]).
    pub(crate) fn continue_packet_ids(&mut self, next: Option<u16>, jump: u16) {
        if let Some(next) = next.filter(|n| *n != 0) {
            self.next_packet_id = next;
            return;
        }
        let latest = (self.inflight.iter())
            .max_by_key(|(_, f)| f.out.seq)
            .map_or(0, |(pid, _)| *pid);
        let next = (u32::from(latest) + u32::from(jump)) % u32::from(u16::MAX) + 1;
        self.next_packet_id = u16::try_from(next).unwrap_or(1);
    }

    /// Whether another QoS 1/2 message may be sent now.
    pub(crate) fn window_open(&self) -> bool {
        self.inflight.len() < usize::from(self.send_quota)
    }

    /// Appends a message to the queue within `limits`. Returns the messages that did not make it: the
    /// oldest queued QoS 0 messages evicted to make room for a QoS 1/2 one, or `out` itself when no room
    /// can be made (a QoS 0 message never evicts anything).
    pub(crate) fn push(
        &mut self,
        out: Outbound,
        limits: QueueLimits,
    ) -> Vec<(Outbound, DropReason)> {
        let mut dropped = Vec::new();
        let size = out.message.queued_size();
        loop {
            if self.queue.len() < limits.messages && self.queued_bytes + size <= limits.bytes {
                self.queued_bytes += size;
                self.queue.push_back(out);
                return dropped;
            }
            let victim = if out.qos == QoS::AtMostOnce {
                None
            } else {
                self.queue.iter().position(|o| o.qos == QoS::AtMostOnce)
            };
            match victim.and_then(|i| self.queue.remove(i)) {
                Some(old) => {
                    self.queued_bytes -= old.message.queued_size();
                    dropped.push((old, DropReason::QoS0Evicted));
                }
                None => {
                    dropped.push((out, DropReason::QueueFull));
                    return dropped;
                }
            }
        }
    }

    /// Appends a message restored from storage, outside the queue limits: it was accepted under them.
    pub(crate) fn restore_queued(&mut self, out: Outbound) {
        self.queued_bytes += out.message.queued_size();
        self.queue.push_back(out);
    }

    /// Removes the front of the queue.
    pub(crate) fn pop(&mut self) -> Option<Outbound> {
        let out = self.queue.pop_front()?;
        self.queued_bytes -= out.message.queued_size();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::codec::TopicName;

    fn out(session: &mut Session, qos: QoS) -> Outbound {
        let message = Arc::new(Message {
            topic: TopicName::new("t").expect("valid"),
            payload: Bytes::from_static(b"123456789"),
            qos,
            retain: false,
            properties: Default::default(),
            origin: None,
            expires_at: None,
        });
        Outbound {
            shared: None,
            seq: session.take_seq(),
            message,
            qos,
            retain: false,
            sub_ids: Vec::new(),
            stored: false,
            stamp: None,
        }
    }

    fn qos_of_queue(s: &Session) -> Vec<(u64, u8)> {
        s.queue.iter().map(|o| (o.seq, o.qos.as_u8())).collect()
    }

    #[test]
    fn full_queue_evicts_oldest_qos0_first_then_refuses() {
        let limits = QueueLimits {
            messages: 3,
            bytes: usize::MAX,
        };
        let mut s = Session::new("c".into(), ProtocolVersion::V5);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::AtMostOnce] {
            let o = out(&mut s, qos);
            assert!(s.push(o, limits).is_empty());
        }
        // A QoS 1 message pushes out the oldest QoS 0.
        let o = out(&mut s, QoS::AtLeastOnce);
        let dropped = s.push(o, limits);
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (dropped[0].0.seq, dropped[0].1),
            (1, DropReason::QoS0Evicted)
        );
        assert_eq!(qos_of_queue(&s), [(2, 1), (3, 0), (4, 1)]);
        // A QoS 0 message does not push out another QoS 0: it is the one dropped.
        let o = out(&mut s, QoS::AtMostOnce);
        let dropped = s.push(o, limits);
        assert_eq!((dropped[0].0.seq, dropped[0].1), (5, DropReason::QueueFull));
        assert_eq!(qos_of_queue(&s), [(2, 1), (3, 0), (4, 1)]);
        // QoS 1 evicts the last QoS 0; then the queue is all QoS 1 and refuses.
        let o = out(&mut s, QoS::AtLeastOnce);
        assert_eq!(s.push(o, limits)[0].1, DropReason::QoS0Evicted);
        let o = out(&mut s, QoS::ExactlyOnce);
        assert_eq!(s.push(o, limits)[0].1, DropReason::QueueFull);
        assert_eq!(qos_of_queue(&s), [(2, 1), (4, 1), (6, 1)]);
    }

    #[test]
    fn byte_limit_counts_topic_and_payload() {
        let limits = QueueLimits {
            messages: 100,
            bytes: 25,
        };
        let mut s = Session::new("c".into(), ProtocolVersion::V5);
        for _ in 0..2 {
            let o = out(&mut s, QoS::AtLeastOnce);
            assert!(s.push(o, limits).is_empty());
        }
        assert_eq!(s.queued_bytes, 20);
        let o = out(&mut s, QoS::AtLeastOnce);
        assert_eq!(s.push(o, limits)[0].1, DropReason::QueueFull);
        let popped = s.pop().expect("queued");
        assert_eq!(popped.seq, 1);
        assert_eq!(s.queued_bytes, 10);
    }

    #[test]
    fn packet_ids_skip_inflight_and_wrap() {
        let mut s = Session::new("c".into(), ProtocolVersion::V5);
        s.next_packet_id = u16::MAX;
        let o = out(&mut s, QoS::AtLeastOnce);
        s.inflight.insert(
            1,
            Inflight {
                out: o,
                flow: Flow::Published,
                held_by: None,
            },
        );
        assert_eq!(s.take_packet_id().get(), u16::MAX);
        assert_eq!(s.take_packet_id().get(), 2);
    }

    #[test]
    fn packet_ids_go_on_after_the_latest_inflight_message_or_from_what_a_handover_carried() {
        let mut s = Session::new("c".into(), ProtocolVersion::V5);
        // Sent in turn: 65,535, then 2 (the latest), then 1 was free again.
        for pid in [u16::MAX, 2] {
            let o = out(&mut s, QoS::ExactlyOnce);
            let flow = Flow::Published;
            let held_by = None;
            s.inflight.insert(
                pid,
                Inflight {
                    out: o,
                    flow,
                    held_by,
                },
            );
        }
        s.continue_packet_ids(None, 0);
        assert_eq!(s.take_packet_id().get(), 3, "not the lowest free (1)");
        s.continue_packet_ids(None, 1 << 15);
        assert_eq!(s.take_packet_id().get(), 2 + (1 << 15) + 1);
        s.continue_packet_ids(Some(9), 1 << 15);
        assert_eq!(s.take_packet_id().get(), 9, "a handover's");
        s.continue_packet_ids(Some(0), 0);
        assert_eq!(s.take_packet_id().get(), 3, "0 is none");
    }

    #[test]
    fn a_stamp_of_an_origins_older_incarnation_is_refused_and_leaves_the_mark() {
        let stamp = |incarnation, seq| Stamp {
            node: 2,
            incarnation,
            seq,
        };
        let now = Instant::ZERO;
        let mut s = Session::new("c".into(), ProtocolVersion::V5);
        // Node 2 runs as incarnation 7, then restarts as 8.
        assert!(s.take_stamp(stamp(7, 28), true, now, [Some(7), None]));
        assert!(!s.take_stamp(stamp(7, 28), true, now, [Some(7), None]));
        assert!(s.take_stamp(stamp(8, 1), true, now, [Some(8), Some(7)]));
        assert_eq!(s.seen.get(&2), Some(&(8, 1)));
        // Incarnation 7's message again (a relay resent): its mark is gone, so refused.
        assert!(!s.take_stamp(stamp(7, 28), true, now, [Some(8), None]));
        assert!(!s.take_stamp(stamp(7, 29), true, now, [Some(8), None]));
        assert_eq!(s.seen.get(&2), Some(&(8, 1)), "the mark stays");
        // Recorded without a check (a shared group's), it does not lower the mark either.
        assert!(s.take_stamp(stamp(7, 30), false, now, [Some(8), None]));
        assert_eq!(s.seen.get(&2), Some(&(8, 1)));
        // The node does not know of 9 yet, but its link does: a restart, taken.
        assert!(s.take_stamp(stamp(9, 1), true, now, [Some(8), Some(9)]));
        assert_eq!(s.seen.get(&2), Some(&(9, 1)));
        // Knowing nothing of the origin, a new incarnation is taken as before.
        assert!(s.take_stamp(stamp(10, 1), true, now, [None, None]));
    }
}
