//! Messages to subscribers: routing, the per-session queue and inflight window, the send window, and the
//! QoS 1/2 flows towards clients.

use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{
    Ack, Delivery, Packet, PacketId, Publish, PublishProperties, QoS, ReasonCode, SubscriptionId,
};
use crate::io::{ConnId, DropReason, Event, OutboundState, StoreOp};
use crate::message::Message;
use crate::session::{Flow, Inflight, Outbound, SessionId};

use super::Engine;

/// One session's share of a routed message.
#[derive(Debug)]
pub(super) struct Target {
    qos: QoS,
    sub_ids: Vec<SubscriptionId>,
    retain_as_published: bool,
}

impl Engine {
    /// Delivers `message` to this engine's subscribers: ordinary and shared.
    pub(super) fn route(&mut self, message: Arc<Message>) {
        self.route_plain(&message);
        self.route_shared(&message, None);
    }

    /// Delivers `message` to every session with a matching ordinary subscription: once per session,
    /// at the highest QoS of its matching subscriptions, with all their identifiers.
    pub(super) fn route_plain(&mut self, message: &Arc<Message>) {
        self.route_plain_to(message, None);
        // In a cluster, also for the sessions on their way here.
        self.keep_for_awaited(message);
    }

    /// [`Engine::route_plain`], to session `only` alone if given.
    pub(super) fn route_plain_to(&mut self, message: &Arc<Message>, only: Option<SessionId>) {
        // The list is kept between publishes: a fan-out allocates nothing for its targets.
        let mut targets = std::mem::take(&mut self.route_targets);
        targets.clear();
        let sessions = &self.sessions;
        self.router
            .plain
            .for_each_match(message.topic.as_str(), |sid, sub| {
                if only.is_some_and(|only| only != *sid) {
                    return;
                }
                if sub.options.no_local
                    && message.origin.as_ref() == sessions.get(sid).map(|s| &s.client_id)
                {
                    return;
                }
                targets.push((
                    *sid,
                    Target {
                        qos: message.qos.min(sub.options.qos),
                        sub_ids: sub.id.into_iter().collect(),
                        retain_as_published: sub.options.retain_as_published,
                    },
                ));
            });
        // One delivery per session, in session order, merging its overlapping subscriptions.
        targets.sort_unstable_by_key(|(sid, _)| *sid);
        targets.dedup_by(|(sid, later), (kept_sid, kept)| {
            if sid != kept_sid {
                return false;
            }
            kept.qos = kept.qos.max(later.qos);
            kept.sub_ids.append(&mut later.sub_ids);
            kept.retain_as_published |= later.retain_as_published;
            true
        });
        for (sid, t) in targets.drain(..) {
            if !self.take_stamp(sid, true) {
                continue;
            }
            let retain = message.retain && t.retain_as_published;
            self.enqueue(sid, message.clone(), t.qos, retain, t.sub_ids, None);
        }
        self.route_targets = targets;
    }

    /// Whether session `sid` takes the message being routed, by its cluster identity: a session
    /// that moved between nodes refuses a late copy of a message it took on the node it left
    /// (`check`; a shared group's message is only recorded, see [`crate::session::Session::take_stamp`]).
    pub(super) fn take_stamp(&mut self, sid: SessionId, check: bool) -> bool {
        let Some(stamp) = self.stamp else {
            return true;
        };
        let latest = (self.cluster.as_ref()).map_or([None; 2], |n| n.incarnations_of(stamp.node));
        let Some(session) = self.sessions.get_mut(&sid) else {
            return true;
        };
        let windowed = session.window.is_some();
        let fresh = session.take_stamp(stamp, check, self.now, latest);
        if windowed && session.window.is_none() && session.is_persistent() {
            // Closed: from now on takes are recorded in the marks alone, so the stored window
            // (which a restart or a copy would judge by) goes before any of them.
            self.persist.push(StoreOp::DeleteWindow {
                client_id: session.client_id.clone(),
            });
        }
        if !fresh {
            self.count_duplicate();
            return false;
        }
        if session.is_persistent() && session.window.as_ref().is_some_and(|w| w.remembers(&stamp)) {
            self.persist.push(StoreOp::PutTaken {
                client_id: session.client_id.clone(),
                stamp,
            });
        }
        if session.is_persistent() {
            // Kept with the session, so a late copy is still recognised after a restart: the
            // highest taken, which a relayed message (see `MoveWindow`) does not lower.
            let (incarnation, seq) = session.seen.get(&stamp.node).copied().unwrap_or_default();
            self.persist.push(StoreOp::PutSeen {
                client_id: session.client_id.clone(),
                stamp: crate::io::Stamp {
                    incarnation,
                    seq,
                    ..stamp
                },
            });
        }
        true
    }

    /// Queues a message for a session and sends what its windows allow.
    pub(super) fn enqueue(
        &mut self,
        sid: SessionId,
        message: Arc<Message>,
        qos: QoS,
        retain: bool,
        mut sub_ids: Vec<SubscriptionId>,
        shared: Option<ByteString>,
    ) {
        let before = self.queue_size(sid);
        let limits = self.queue_limits(sid, before);
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.conn.is_none() && qos == QoS::AtMostOnce && !self.config.queue_qos0_offline {
            self.stats.messages_dropped += 1;
            self.stats.qos0_dropped += 1;
            self.stats.dropped.count(DropReason::Offline);
            return;
        }
        sub_ids.sort_unstable();
        let out = Outbound {
            seq: session.take_seq(),
            message,
            qos,
            retain,
            sub_ids,
            stored: false,
            shared,
            stamp: self.stamp,
        };
        let dropped = session.push(out, limits);
        let online = session.conn.is_some();
        self.settle_queue(sid, before);
        for (out, reason) in dropped {
            if reason == DropReason::QueueFull
                && online
                && self.config.quotas.queue_full == crate::config::OverloadPolicy::Disconnect
                && !self.slow_consumers.contains(&sid)
            {
                // Disconnected once routing is over (see `Engine::finish`), not in its middle.
                self.slow_consumers.push(sid);
            }
            self.dropped(sid, out, reason);
        }
        self.pump(sid);
        self.store_queue_tail(sid);
    }

    /// Accounts for a message a session will not get.
    fn dropped(&mut self, sid: SessionId, out: Outbound, reason: DropReason) {
        self.stats.messages_dropped += 1;
        self.stats.dropped.count(reason);
        if out.qos == QoS::AtMostOnce {
            self.stats.qos0_dropped += 1;
        }
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        if out.stored {
            self.persist.push(StoreOp::DeleteMessage {
                client_id: session.client_id.clone(),
                seq: out.seq,
            });
        }
        self.events.push_back(Event::MessageDropped {
            client_id: session.client_id.clone(),
            topic: out.message.topic.clone(),
            reason,
        });
    }

    /// Stores QoS 1/2 messages that stayed queued, so a persistent session keeps them across a restart.
    fn store_queue_tail(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !session.is_persistent() || !self.persist.enabled() {
            return;
        }
        for out in session.queue.iter_mut().rev() {
            if out.stored {
                break;
            }
            if out.qos != QoS::AtMostOnce {
                out.stored = true;
                self.persist
                    .push(out.put_op(&session.client_id, OutboundState::Queued));
            }
        }
    }

    /// Sends queued messages while the session is online, its inflight window has room and its
    /// connection's send window is open.
    pub(super) fn pump(&mut self, sid: SessionId) {
        let before = self.queue_size(sid);
        self.pump_queue(sid);
        self.settle_queue(sid, before);
    }

    /// [`Engine::pump`] without the tenant's queue accounting.
    fn pump_queue(&mut self, sid: SessionId) {
        loop {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            let Some(conn) = session.conn else {
                return;
            };
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.pending_bytes() >= self.config.send_window {
                return;
            }
            let version = c.version.unwrap_or(crate::codec::ProtocolVersion::V3_1_1);
            match session.queue.front() {
                None => return,
                Some(front) if front.qos != QoS::AtMostOnce && !session.window_open() => return,
                Some(_) => {}
            }
            let Some(mut out) = session.pop() else {
                return;
            };
            if out.message.is_expired(self.now) {
                self.dropped(sid, out, DropReason::Expired);
                continue;
            }
            let pid = (out.qos != QoS::AtMostOnce).then(|| session.take_packet_id());
            let same_for_all =
                out.sub_ids.is_empty() && session.mount.is_none() && c.out_aliases.is_off();
            let prepared = if same_for_all {
                let encoded = self.encoded.get(&out, pid, version, self.now);
                let limit = session.client_max_packet.map_or(usize::MAX, |m| m as usize);
                (encoded.len() <= limit).then_some(Prepared::Encoded(encoded))
            } else {
                let publish =
                    outbound_publish(&out, pid, false, self.now, session.mount.as_deref());
                c.out_aliases
                    .fit(publish, version, session.client_max_packet)
                    .map(Prepared::Packet)
            };
            let Some(prepared) = prepared else {
                // [MQTT-3.1.2-25]: discard it as if it had been delivered.
                self.dropped(sid, out, DropReason::TooLargeForClient);
                continue;
            };
            let qos = out.qos;
            // A QoS 0 message is delivered once written; QoS 1 and 2 once acknowledged.
            let watched = (qos == QoS::AtMostOnce
                && super::publish::watches(&self.config.message_events, &out.message.topic))
            .then(|| out.message.clone());
            let mut gate = None;
            if let Some(pid) = pid {
                if session.is_persistent() && self.persist.enabled() {
                    out.stored = true;
                    self.persist
                        .push(out.put_op(&session.client_id, OutboundState::Sent(pid.get())));
                    // A QoS 2 packet id must be durable before the client sees it: after a restart
                    // the message must be resent under the same id, or the client delivers it twice.
                    if out.qos == QoS::ExactlyOnce {
                        gate = Some(self.persist.building());
                    }
                }
                session.inflight.insert(
                    pid.get(),
                    Inflight {
                        out,
                        flow: Flow::Published,
                        held_by: None,
                    },
                );
            }
            self.stats.publishes_sent += 1;
            self.stats.publishes_sent_by_qos[qos_index(qos)] += 1;
            if let Some(message) = watched {
                self.events.push_back(Event::MessageDelivered {
                    client_id: session.client_id.clone(),
                    qos,
                    message,
                });
            }
            match prepared {
                Prepared::Encoded(encoded) => {
                    // Taken out for the write so its bytes are copied without a reference count.
                    let cache = std::mem::take(&mut self.encoded);
                    if let Some(target) = self.out_buffer(conn, gate) {
                        cache.write(&encoded, target);
                    }
                    self.encoded = cache;
                }
                Prepared::Packet(packet) => self.write(conn, &packet, gate),
            }
            if let Some(pid) = pid {
                self.note_held(sid, conn, pid.get(), true);
            }
        }
    }

    /// Records behind which batch the PUBLISH just written for `pid` waits on `conn`, if any. A
    /// resend (not `first`) counts as held only if no earlier send of it left either: once one
    /// may have reached the client, it stays one the client may have.
    fn note_held(&mut self, sid: SessionId, conn: ConnId, pid: u16, first: bool) {
        let held_by = (self.conns.get(&conn)).and_then(|c| c.held.back().map(|h| h.seq));
        let flow = (self.sessions.get_mut(&sid)).and_then(|s| s.inflight.get_mut(&pid));
        if let Some(flow) = flow {
            let unseen = first || flow.held_by.is_some_and(|b| !self.persist.is_durable(b));
            flow.held_by = held_by.filter(|_| unseen);
        }
    }

    /// The positions of `sid`'s inflight messages (QoS 1 or 2) whose PUBLISH the client has not
    /// seen: written behind a batch not durable yet, on a connection this node closes now (a
    /// handover), which never sends them. Such a message can go on as never sent; any other QoS 2
    /// message sent may have reached the client, who would take it twice under another packet id.
    pub(super) fn unsent(&self, sid: SessionId) -> Vec<u64> {
        let Some(s) = self.sessions.get(&sid) else {
            return Vec::new();
        };
        (s.inflight.values())
            .filter(|f| f.flow == Flow::Published)
            .filter(|f| {
                f.held_by
                    .is_some_and(|batch| !self.persist.is_durable(batch))
            })
            .map(|f| f.out.seq)
            .collect()
    }

    /// After a session resumes: resends every unacknowledged PUBLISH (DUP set) and PUBREL, oldest first.
    pub(super) fn resend_inflight(&mut self, sid: SessionId) {
        self.resend_flows(sid, None);
    }

    /// [`Engine::resend_inflight`], for packet id `only` alone if given.
    pub(super) fn resend_flows(&mut self, sid: SessionId, only: Option<u16>) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let Some(conn) = session.conn else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let version = c.version.unwrap_or(crate::codec::ProtocolVersion::V3_1_1);
        let mut flows: Vec<(PacketId, &Inflight)> = session
            .inflight
            .iter()
            .filter(|(pid, _)| only.is_none_or(|only| only == **pid))
            .filter_map(|(pid, f)| Some((PacketId::new(*pid)?, f)))
            .collect();
        flows.sort_by_key(|(_, f)| f.out.seq);
        let packets: Vec<(PacketId, Option<Packet>)> = flows
            .into_iter()
            .map(|(pid, f)| match f.flow {
                Flow::Published => {
                    let publish = outbound_publish(
                        &f.out,
                        Some(pid),
                        true,
                        self.now,
                        session.mount.as_deref(),
                    );
                    let packet = c
                        .out_aliases
                        .fit(publish, version, session.client_max_packet);
                    (pid, packet)
                }
                Flow::Released => (pid, Some(Packet::PubRel(Ack::new(pid)))),
            })
            .collect();
        for (pid, packet) in packets {
            match packet {
                Some(packet) => {
                    let publish = matches!(packet, Packet::Publish(_));
                    if publish {
                        self.stats.publishes_sent += 1;
                        self.stats.publishes_sent_by_qos[qos_index(publish_qos(&packet))] += 1;
                    }
                    self.write(conn, &packet, None);
                    if publish {
                        self.note_held(sid, conn, pid.get(), false);
                    }
                }
                None => {
                    // The client now accepts smaller packets than when it was first sent
                    // [MQTT-3.1.2-25].
                    let done = self
                        .sessions
                        .get_mut(&sid)
                        .and_then(|s| s.inflight.remove(&pid.get()));
                    if let Some(done) = done {
                        self.dropped(sid, done.out, DropReason::TooLargeForClient);
                    }
                }
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the message is delivered.
    pub(super) fn outbound_acked(&mut self, sid: SessionId, pid: PacketId, complete: bool) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let expected = if complete {
            Flow::Released
        } else {
            Flow::Published
        };
        let matches = session
            .inflight
            .get(&pid.get())
            .is_some_and(|f| f.flow == expected && (complete || f.out.qos == QoS::AtLeastOnce));
        if !matches {
            // An acknowledgement for nothing we sent: harmless, ignored (as the spec's senders may resend).
            return;
        }
        if let Some(done) = session.inflight.remove(&pid.get()) {
            if done.out.stored {
                self.persist.push(StoreOp::DeleteMessage {
                    client_id: session.client_id.clone(),
                    seq: done.out.seq,
                });
            }
            if super::publish::watches(&self.config.message_events, &done.out.message.topic) {
                self.events.push_back(Event::MessageDelivered {
                    client_id: session.client_id.clone(),
                    qos: done.out.qos,
                    message: done.out.message,
                });
            }
        }
        self.pump(sid);
    }

    /// PUBREC from the client: answer PUBREL, or drop the message if the client refused it.
    pub(super) fn outbound_received(&mut self, id: ConnId, sid: SessionId, ack: Ack) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let pid = ack.packet_id;
        let known = session
            .inflight
            .get(&pid.get())
            .is_some_and(|f| f.flow == Flow::Published && f.out.qos == QoS::ExactlyOnce);
        if !known {
            let mut rel = Ack::new(pid);
            if session.protocol.is_v5() {
                rel.reason = ReasonCode::PacketIdentifierNotFound;
            }
            return self.write(id, &Packet::PubRel(rel), None);
        }
        if ack.reason.as_u8() >= 0x80 {
            // The client refused the message: the exchange ends here [MQTT-4.3.3].
            if let Some(done) = session.inflight.remove(&pid.get()) {
                if done.out.stored {
                    self.persist.push(StoreOp::DeleteMessage {
                        client_id: session.client_id.clone(),
                        seq: done.out.seq,
                    });
                }
            }
            return self.pump(sid);
        }
        let mut gate = None;
        if let Some(f) = session.inflight.get_mut(&pid.get()) {
            f.flow = Flow::Released;
            if f.out.stored {
                // PUBREL must not reach the client before Released is durable: after a restart we
                // would resend the PUBLISH, and a client that already completed the exchange would
                // take it for a new message.
                gate = Some(self.persist.building());
                self.persist.push(
                    f.out
                        .put_op(&session.client_id, OutboundState::Released(pid.get())),
                );
            }
        }
        self.write(id, &Packet::PubRel(Ack::new(pid)), gate);
    }
}

/// A PUBLISH about to be written. It lives on the stack for one delivery, so the size difference of
/// its variants costs nothing; boxing the packet would cost an allocation per delivery.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    /// Bytes shared with other subscribers of the message.
    Encoded(super::encoded::Encoded),
    /// A packet of its own (subscription identifiers, topic alias or mount).
    Packet(Packet),
}

/// The PUBLISH carrying `out` to its client at `now`.
pub(super) fn outbound_publish(
    out: &Outbound,
    pid: Option<PacketId>,
    dup: bool,
    now: crate::time::Instant,
    mount: Option<&str>,
) -> Publish {
    let message = &out.message;
    let mut properties = PublishProperties::clone(&message.properties);
    properties.subscription_identifiers = out.sub_ids.clone();
    properties.message_expiry_interval = message.remaining_expiry(now);
    Publish {
        dup,
        delivery: Delivery::new(out.qos, pid).unwrap_or(Delivery::AtMostOnce),
        retain: out.retain,
        topic: super::tenant::unmount_topic(mount, &message.topic),
        properties,
        payload: message.payload.clone(),
    }
}

/// A QoS's slot in the per-QoS counters of [`super::Stats`].
pub(super) fn qos_index(qos: QoS) -> usize {
    qos as usize
}

/// The QoS of an outgoing PUBLISH (0 for any other packet).
fn publish_qos(packet: &Packet) -> QoS {
    match packet {
        Packet::Publish(p) => p.delivery.qos(),
        _ => QoS::AtMostOnce,
    }
}
