//! Messages for a persistent session on its way from one node to another.
//!
//! Interest is eventually consistent: when a session moves from node A to node B, A's interest in
//! its filters goes when A hands it over, and B's comes once B installed it. In the log A's
//! decrement usually commits first, and until B's increment applies, no node routes the session's
//! filters anywhere: a message published then reached no node that ever held the session, and was
//! lost although acknowledged (docs/cluster.md, "Session handover"). So:
//!
//! - every node that applied the claim also routes what matches the session's filters (as its copy
//!   of the session has them) to the claimant, until the claimant's own applied interest covers
//!   them ([`Node::moving`]);
//! - the claimant keeps what arrives for a session it still waits for, and delivers it to the
//!   session once it is installed ([`Awaiting::kept`]). The session's high-water marks drop what
//!   it already took on the old node. What it keeps holds its link's acknowledgement (or its
//!   publisher's, for a message published on the claimant itself), so a crash meanwhile loses
//!   nothing acknowledged;
//! - the old node relays what still arrives there for a session it handed over (routed to it
//!   before its origin applied the claim, or held up on the link) to the node that owns the
//!   session now, for a while ([`relay_window`]), on the same link as the handover, so after it.
//!   Such a message comes after later messages of its origin that went to the new node directly,
//!   which the session's high-water marks cannot tell from a copy; for a while after a move the
//!   session judges by each stamp it took instead ([`MoveWindow`]). A node that finds in a
//!   snapshot that a session it still held is another's relays too, from then on. It
//!   acknowledges on its own link what it relays without waiting for the new owner (links would
//!   wait on each other), so it stores each relay until the new owner acknowledges it, and sends
//!   it again after a restart ([`Engine::send_relay`]).
//!
//! Not covered: a message the old node took into the session but could not hand over (it learned
//! of the move from a snapshot, and its writes to a session it no longer owned were moot).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;

use crate::cluster::table::Table;
use crate::cluster::ClusterConfig;
use crate::codec::{split_shared, QoS, TopicFilter};
use crate::io::{DropReason, OutboundState, PeerMessage, Stamp, StoreOp};
use crate::message::Message;
use crate::router::TopicTrie;
use crate::session::{Flow, Inflight, MoveWindow, Outbound, Session, SessionId};
use crate::stored::{StoredMessage, StoredSession, TakenSince};
use crate::time::Instant;

use super::{Engine, Node};

/// A message kept for a session the claimant still waits for.
#[derive(Debug)]
pub(in crate::engine) struct Kept {
    message: Arc<Message>,
    /// Its cluster identity, which the session checks against what it took elsewhere.
    stamp: Option<Stamp>,
    /// What acknowledges it, which waits until the session took it.
    hold: Hold,
}

/// What a kept message holds back.
#[derive(Debug)]
enum Hold {
    /// The link message that brought it, (sender, sequence number) (see `Links::hold`).
    Link(u16, u64),
    /// A receipt on the batch that held its publisher's acknowledgement (published here).
    Receipt(u64),
}

/// Of two versions of one session, `b` if it took more than `a`: its high-water marks are at
/// least `a`'s for every origin, and above for one (the marks only grow along a session's
/// history); else `a`, if any. A node waiting for a session under an older claim can get, for
/// its newer claim, the session as a node that found it in a snapshot handed it on, with
/// messages no copy has, and then, for the older claim, a copy (seed 4: the copy was installed
/// and the other dropped). Returns the fresher and the other, whose messages the node merges
/// into the one it installs ([`Engine::merge_late`]).
pub(super) fn fresher(
    a: Option<Box<StoredSession>>,
    b: Option<Box<StoredSession>>,
) -> (Option<Box<StoredSession>>, Option<Box<StoredSession>>) {
    match (a, b) {
        (Some(a), Some(b)) if took_more(&b.seen, &a.seen) => (Some(b), Some(a)),
        (Some(a), b) => (Some(a), b),
        (None, b) => (b, None),
    }
}

/// Of `a` and `lates`, the version [`fresher`] than every other one (the first found, if none
/// is), and the others, each to be merged into it.
pub(super) fn freshest(
    a: Option<Box<StoredSession>>,
    lates: Vec<StoredSession>,
) -> (Option<Box<StoredSession>>, Vec<StoredSession>) {
    let mut others = Vec::new();
    let mut best = a;
    for late in lates {
        let (fresher, other) = fresher(best, Some(Box::new(late)));
        best = fresher;
        others.extend(other.map(|o| *o));
    }
    (best, others)
}

/// Whether the high-water marks `b` are at least `a` for every origin, and above for one.
pub(super) fn took_more(b: &BTreeMap<u16, (u64, u64)>, a: &BTreeMap<u16, (u64, u64)>) -> bool {
    let at_least = a
        .iter()
        .all(|(node, (inc, seq))| (b.get(node)).is_some_and(|(i, s)| i == inc && s >= seq));
    let above = b
        .iter()
        .any(|(node, (inc, seq))| (a.get(node)).is_none_or(|(i, s)| i == inc && s < seq));
    at_least && above
}

/// Marks the messages of `session` at positions `unsent` (see [`Engine::unsent`]) as never sent:
/// the node they go to delivers them under a packet identifier of its own, as a QoS 2 message
/// the client never saw may be.
pub(super) fn never_sent(session: &mut StoredSession, unsent: &[u64]) {
    for seq in unsent {
        if let Some(m) = session.messages.get_mut(seq) {
            m.state = OutboundState::Queued;
        }
    }
}

/// Whether `topic` matches one of the session's ordinary (not shared) subscriptions.
fn subscribed(session: &StoredSession, topic: &str) -> bool {
    session
        .subscriptions
        .keys()
        .filter_map(|f| TopicFilter::new(f.clone()).ok())
        .any(|f| f.shared().is_none() && f.matches(topic))
}

/// The session's ordinary (not shared) filters: what a node's interest counts for it.
pub(super) fn ordinary_filters(session: &StoredSession) -> impl Iterator<Item = &ByteString> {
    (session.subscriptions.keys()).filter(|f| split_shared(f).is_none())
}

/// A persistent session on its way to node `to`, whose interest entries up to version
/// `announced` were in the table when the move applied here.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moving {
    to: u16,
    announced: u64,
}

/// The messages of a handed-over `session` that may go to its owner as relays, with their
/// stamps: those never sent, and QoS 1 ones sent (at least once allows a second delivery). A
/// QoS 2 message sent goes on only under its packet identifier (see [`Engine::merge_late_flow`]).
fn relayable(session: &StoredSession) -> impl Iterator<Item = (Stamp, &Arc<Message>)> {
    (session.messages.values())
        .filter(|m| m.state == OutboundState::Queued || m.qos == QoS::AtLeastOnce)
        .filter_map(|m| Some((m.stamp?, &m.message)))
}

/// How long a node relays what arrives for a session it handed over. A message routed to it
/// before its origin applied the claim can be held up on the link by a partition until the others
/// give up on a node, `peer_timeout`; twice that, with room to spare.
fn relay_window(config: &ClusterConfig) -> Duration {
    config.peer_timeout * 2
}

impl Node {
    /// The persistent sessions node `to` owns, by their copies' ordinary filters: those a
    /// message routed to `to` was for.
    pub(super) fn subscribers_on(&self, to: u16) -> TopicTrie<ByteString, ()> {
        let mut trie = TopicTrie::default();
        for (client_id, _, copy) in self.replicas.iter() {
            if self.table.owners.get(client_id) != Some(&to) {
                continue;
            }
            for filter in ordinary_filters(copy) {
                trie.insert(filter, client_id.clone(), ());
            }
        }
        trie
    }

    /// This node handed `client_id`'s session over at `now`.
    pub(super) fn handed_over(&mut self, client_id: &ByteString, now: Instant) {
        let until = now + relay_window(&self.config);
        self.handed.insert(client_id.clone(), until);
    }

    /// The sessions handed over from here whose copy subscribes to `topic`, with the node that
    /// owns each now; forgets those handed over longer ago than the relay window.
    fn relays_for(&mut self, topic: &str, now: Instant) -> Vec<(ByteString, u16)> {
        let me = self.me();
        self.handed.retain(|_, until| now < *until);
        (self.handed.keys())
            .filter_map(|c| {
                let owner = *self.table.owners.get(c)?;
                let copy = self.replicas.session(c)?;
                (owner != me && subscribed(copy, topic)).then(|| (c.clone(), owner))
            })
            .collect()
    }

    /// A claim moved `client_id` to `to`: if it has a persistent session, its filters are routed
    /// there from now on, until `to`'s interest covers them in entries newer than its version
    /// `announced` (what it announced before: a node the session comes back to may still have
    /// its old interest in the table, which its decrement for the handover then takes away).
    pub(super) fn session_moving(&mut self, client_id: &ByteString, to: u16, announced: u64) {
        if self.replicas.has(client_id) {
            let moving = Moving { to, announced };
            self.moving.insert(client_id.clone(), moving);
        }
    }

    /// A snapshot replaced the table `old`: the sessions of other nodes that moved in what it
    /// covers, and those of nodes that restarted, are routed to their owner as after their claim
    /// or restart (seed 3630: a node cut off while another restarted took the restart in a
    /// snapshot, and routed a message for that node's session nowhere). What a claimant had
    /// announced before is told by the table replaced, the last this node knew. A session whose
    /// owner is the same under a newer claim moved too: it may have gone and come back, and its
    /// owner's interest for it went with it (seed 56902: a session went to another node and back
    /// in what a snapshot covered, its owner crashed before it arrived, and a message published
    /// on the node that took the snapshot reached no node).
    pub(super) fn moves_in_snapshot(&mut self, old: &Table) {
        let me = self.me();
        let claim = |table: &Table, c: &ByteString, owner: u16| {
            table.claims.get(&(c.clone(), owner)).copied()
        };
        let moved: Vec<(ByteString, u16, u64)> = (self.table.owners.iter())
            .filter(|(_, owner)| **owner != me)
            .filter(|(c, owner)| {
                old.owners.get(*c) != Some(*owner)
                    || claim(old, c, **owner) != claim(&self.table, c, **owner)
            })
            .map(|(c, owner)| (c.clone(), *owner, old.interest_version(*owner)))
            .collect();
        for (client_id, to, announced) in moved {
            self.session_moving(&client_id, to, announced);
        }
        let restarted: Vec<u16> = (self.table.incarnations.iter())
            .filter(|(n, inc)| **n != me && old.incarnations.get(*n) != Some(*inc))
            .map(|(n, _)| *n)
            .collect();
        for node in restarted {
            self.sessions_restarting(node);
        }
    }

    /// `node` restarted: its old incarnation's interest is gone, and its new one announces its
    /// sessions' filters again only once it restored them. Meanwhile their filters are routed to
    /// it as to a claimant, from their copies, or what is published then never reaches them
    /// (seed 117).
    pub(super) fn sessions_restarting(&mut self, node: u16) {
        let owned: Vec<ByteString> = (self.table.owners.iter())
            .filter(|(c, owner)| **owner == node && self.replicas.has(c))
            .map(|(c, _)| c.clone())
            .collect();
        for client_id in owned {
            let moving = Moving {
                to: node,
                announced: 0,
            };
            self.moving.insert(client_id, moving);
        }
    }

    /// The claimants (other than this node) of moving sessions subscribed to `topic`, without
    /// their own interest for it yet. Forgets the moves that settled: their claimant's applied
    /// interest covers every ordinary filter of the session, or the copy is gone.
    pub(in crate::engine) fn claimants(&mut self, topic: &str) -> Vec<u16> {
        let me = self.me();
        let mut to = Vec::new();
        let mut settled = Vec::new();
        for (client_id, moving) in &self.moving {
            let Some(copy) = self.replicas.session(client_id) else {
                settled.push(client_id.clone());
                continue;
            };
            let owner = moving.to;
            let covered = ordinary_filters(copy)
                .all(|f| self.table.announced_since(owner, f, moving.announced));
            if covered {
                settled.push(client_id.clone());
            } else if owner != me && !to.contains(&owner) && subscribed(copy, topic) {
                to.push(owner);
            }
        }
        for client_id in settled {
            self.moving.remove(&client_id);
        }
        to
    }
}

impl Engine {
    /// Keeps `message` (being routed here) for each session this node waits for whose copy
    /// subscribes to it, and for each whose handover came ahead of this node's claim.
    pub(in crate::engine) fn keep_for_awaited(&mut self, message: &Arc<Message>) {
        for client_id in self.waiting_for(message) {
            self.keep(&client_id, message, self.stamp);
        }
    }

    /// Keeps `message`, which waited for a node declared down, for each session this node waits
    /// for whose copy subscribes to it, under the publisher's `receipt` (its acknowledgement waits
    /// until the session took it here). Seed 1125: the roamer's node died, the roamer resumed on
    /// the publisher's node, and the messages that had waited for the dead node went to the
    /// adopter and the other nodes only; the session, handed over when the dead node came back,
    /// had never had them.
    pub(super) fn keep_redirected(
        &mut self,
        message: &Arc<Message>,
        stamp: Option<Stamp>,
        receipt: Option<u64>,
    ) {
        for client_id in self.waiting_for(message) {
            let hold = match receipt {
                Some(seq) => {
                    self.persist.await_more(seq);
                    Hold::Receipt(seq)
                }
                None => Hold::Receipt(self.persist.await_peer()),
            };
            self.keep_held(&client_id, message, stamp, hold);
        }
    }

    /// The clients whose sessions this node waits for (or holds an early handover of) and whose
    /// copy subscribes to `message`. A client may have both: an older claim waits, a newer one's
    /// handover came early.
    fn waiting_for(&self, message: &Message) -> BTreeSet<ByteString> {
        let Some(node) = &self.cluster else {
            return BTreeSet::new();
        };
        if node.awaiting.is_empty() && node.early.is_empty() {
            return BTreeSet::new();
        }
        let topic = message.topic.as_str();
        let awaited = (node.awaiting.keys())
            .filter(|c| (node.replicas.session(c)).is_some_and(|s| subscribed(s, topic)));
        let early = (node.early.iter())
            .filter(|(_, e)| e.session.as_ref().is_some_and(|s| subscribed(s, topic)))
            .map(|(c, _)| c);
        awaited.chain(early).cloned().collect()
    }

    /// Keeps `message` for `client_id`'s session, which this node waits for, holding back what
    /// acknowledges it: the link message being handled, or else the batch being built (its
    /// publisher's acknowledgement, for a message published here). A message kept for two
    /// sessions holds its link message for the first only.
    fn keep(&mut self, client_id: &ByteString, message: &Arc<Message>, stamp: Option<Stamp>) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        if !node.awaiting.contains_key(client_id) && !node.early.contains_key(client_id) {
            return;
        }
        let hold = match node.delivering.take() {
            Some((from, seq)) => Hold::Link(from, seq),
            None => Hold::Receipt(self.persist.await_peer()),
        };
        self.keep_held(client_id, message, stamp, hold);
    }

    /// Keeps `message` for `client_id`'s session, holding back `hold` until it is delivered.
    fn keep_held(
        &mut self,
        client_id: &ByteString,
        message: &Arc<Message>,
        stamp: Option<Stamp>,
        hold: Hold,
    ) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let kept = match node.awaiting.get_mut(client_id) {
            Some(awaiting) => Some(&mut awaiting.kept),
            None => node.early.get_mut(client_id).map(|e| &mut e.kept),
        };
        match (kept, hold) {
            (Some(kept), hold) => {
                let message = message.clone();
                kept.push(Kept {
                    message,
                    stamp,
                    hold,
                });
            }
            // Nothing waits for the session any more: nothing to hold.
            (None, Hold::Link(from, seq)) => node.links.release(from, seq, None),
            (None, Hold::Receipt(seq)) => self.persist.peer_stored(seq),
        }
    }

    /// Relays `message` (from another node, being routed here) to the sessions handed over from
    /// here that subscribe to it: it may have been routed here only, before its origin applied
    /// the claim that moved them. Their new owners drop what they already have (see
    /// [`crate::session::MoveWindow`]).
    pub(in crate::engine) fn relay_to_handed(&mut self, message: &Arc<Message>) {
        let now = self.now;
        let Some(stamp) = self.stamp else {
            return;
        };
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.handed.is_empty() {
            return;
        }
        for (client_id, to) in node.relays_for(message.topic.as_str(), now) {
            self.send_relay(to, client_id, message.clone(), stamp);
        }
    }

    /// Relays `message`, routed here by a node that had applied the log only to `after`, to the
    /// owners of the persistent sessions that moved since and subscribe to it. Its sender routed
    /// by who held them then, perhaps this node, which may have forgotten handing them over (it
    /// restarted since, or its relay window closed): seeds 1618 and 4994 lost messages routed to
    /// an old owner that had restarted. An owner drops what its session took already (stamps).
    pub(in crate::engine) fn relay_to_moved(&mut self, message: &Arc<Message>, after: u64) {
        let Some(stamp) = self.stamp else {
            return;
        };
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let topic = message.topic.as_str();
        let relays: Vec<(ByteString, u16)> = (node.table.moved_since(after))
            .filter(|client| !self.by_client.contains_key(*client))
            .filter_map(|client| {
                let owner = *node.table.owners.get(client)?;
                let copy = node.replicas.session(client)?;
                (owner != me && subscribed(copy, topic)).then(|| (client.clone(), owner))
            })
            .collect();
        for (client_id, to) in relays {
            self.send_relay(to, client_id, message.clone(), stamp);
        }
    }

    /// A message another node relayed for `client_id`'s session: delivered to it here, kept
    /// while it is on its way here, or relayed on to its owner if another node's. Its sender
    /// took this node for the owner having applied the log no further than this node has (see
    /// `PeerMessage::Relay::after`), so the owner this node knows is at least as recent: relayed
    /// on, it never comes back at the same point of the log. Seed 662: a node that restarted
    /// relayed what it had kept for a session to the owner its log said, which had handed it on
    /// and restarted since, and dropped the relays as no longer its own.
    pub(in crate::engine) fn relay_arrived(
        &mut self,
        client_id: ByteString,
        message: Arc<Message>,
        stamp: Stamp,
    ) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.awaiting.contains_key(&client_id) || node.early.contains_key(&client_id) {
            return self.keep(&client_id, &message, Some(stamp));
        }
        let me = node.me();
        let owner = node.table.owners.get(&client_id).copied();
        match (owner, self.by_client.get(&client_id).copied()) {
            (Some(owner), Some(sid)) if owner == me => {
                self.open_window_over_marks(&client_id, sid);
                let outer = self.stamp.replace(stamp);
                self.route_plain_to(&message, Some(sid));
                self.stamp = outer;
            }
            (Some(owner), _) if owner != me => self.send_relay(owner, client_id, message, stamp),
            // Nobody to take it: as before relays, lost.
            _ => {
                self.stats.messages_dropped += 1;
                self.stats.dropped.count(DropReason::Offline);
            }
        }
    }

    /// Persistent session `sid` as a handover carries it now: with its messages whose PUBLISH never
    /// left marked never sent ([`never_sent`]). `None` for a clean session.
    pub(super) fn handed_over_version(&self, sid: SessionId) -> Option<StoredSession> {
        let s = self.sessions.get(&sid).filter(|s| s.is_persistent())?;
        let mut version = s.handed_over(self.now);
        never_sent(&mut version, &self.unsent(sid));
        Some(version)
    }

    /// Routes the filters of session `sid`, which this node found in a snapshot or at a restart to
    /// be another node's, to that node until its interest covers them. If this node was `live`
    /// all along, it also hands the session over to that node under its claim in force, if every
    /// copy of it is as this node wrote it (nobody took the session since). This node never
    /// applied the claim, so never sent the session: the claimant waits for it, and would take
    /// the copy in the end, which lacks what this node took in meanwhile (seed 13). A claimant
    /// that has the session already drops this one as late; a copy another node wrote is newer
    /// than this session, which ends here then, and so may be one this node wrote before it
    /// restarted with a store that lost writes.
    pub(super) fn hand_over_found(&mut self, sid: SessionId, live: bool) {
        let budget = self.handover_budget();
        let version = self.handed_over_version(sid);
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let Some(node) = &mut self.cluster else {
            return;
        };
        let me = node.me();
        let client_id = s.client_id.clone();
        let owner = node.table.owners.get(&client_id).copied();
        let Some(owner) = owner.filter(|o| *o != me && s.is_persistent()) else {
            return;
        };
        // The snapshot may hold the owner's interest for the installed session already.
        node.session_moving(&client_id, owner, 0);
        if !live {
            return;
        }
        let claim = node.table.claims.get(&(client_id.clone(), owner)).copied();
        let (Some(claim), Some(true), Some(mut session)) = (
            claim,
            node.replicas.writer(&client_id).map(|w| w == me),
            version,
        ) else {
            return;
        };
        let left_behind = session.trim_to(budget);
        node.stats.handovers_sent += 1;
        node.stats.handover_messages_dropped += left_behind as u64;
        self.send_handover(owner, client_id, claim, Some(Box::new(session)));
    }

    /// Relays what session `sid`, which this node found in a snapshot or at a restart to be
    /// another node's, queued here meanwhile: this node acknowledged it, but its writes to a
    /// session it no longer owned were moot, so neither the new owner's copy nor a handover has
    /// it. QoS 1 messages sent go along (at least once allows it); QoS 2 messages sent or
    /// released go as a late handover, to keep their packet identifiers (see below). Messages
    /// without a stamp (restored, or handed over) cannot be judged at the new owner and stay.
    pub(super) fn relay_queue(&mut self, sid: SessionId) {
        let unsent = self.unsent(sid);
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let owner = node.table.owners.get(&s.client_id).copied();
        let Some(owner) = owner.filter(|o| *o != me && s.is_persistent()) else {
            return;
        };
        let sent = (s.inflight.values())
            .filter(|i| i.flow == Flow::Published)
            .filter(|i| i.out.qos == QoS::AtLeastOnce || unsent.contains(&i.out.seq))
            .map(|i| &i.out);
        let relays: Vec<(Arc<Message>, Stamp)> = (sent.chain(&s.queue))
            .filter_map(|out| Some((out.message.clone(), out.stamp?)))
            .collect();
        // Its QoS 2 flows can go on only under their packet identifiers: as a late handover of
        // the session with nothing else (no marks: it is never taken for a fresher version), which
        // the owner merges into the session it holds ([`Engine::merge_late`]; seed 2732: the
        // owner sent three on a connection its client had left and crashed before their writes
        // committed; restarted, it found the session another node's).
        let mut flows = s.handed_over(self.now);
        never_sent(&mut flows, &unsent);
        flows.messages.retain(|_, m| {
            m.qos == QoS::ExactlyOnce && m.state != OutboundState::Queued && m.stamp.is_some()
        });
        let claim = (node.incarnation, 0);
        let client_id = s.client_id.clone();
        for (message, stamp) in relays {
            self.send_relay(owner, client_id.clone(), message, stamp);
        }
        if !flows.messages.is_empty() {
            flows.seen.clear();
            flows.window = None;
            flows.next_packet_id = None;
            self.send_handover(owner, client_id, claim, Some(Box::new(flows)));
        }
    }

    /// Passes on to `to`, which claimed `client_id` while this node waited for the session under
    /// its claim `mine`, the version of the session it got besides the one it handed on (see
    /// [`fresher`]): as a late handover under `mine`, which `to` does not wait for, so it merges
    /// it into the session (seed 4990: a late handover from a node that had been cut off, with two
    /// messages no copy had, reached a node whose wait a newer claim had ended, and went no
    /// further).
    ///
    /// So does a version this node set aside at its restart, handed over before its crash with
    /// no word of its arrival ([`Engine::set_handed_over_aside`]): merged into the session had
    /// it come here, it goes on with the wait, and its records go once that handover is
    /// acknowledged. Left behind, they stayed in the store for good (seed 36881: the restarted
    /// node learned it had been declared down, and its wait ended without it). And so does a
    /// version the node still holds, which it took for stale as it started waiting: it may have
    /// taken messages the session that came lacks (seed 52316: a node took a message into the
    /// session, learned of a new claim of its own from a snapshot, waited for the session from
    /// the writer of its copy, passed on the one that came, and dropped its own with the message).
    pub(super) fn pass_on_late(
        &mut self,
        to: u16,
        client_id: &ByteString,
        mine: (u64, u64),
        lates: Vec<StoredSession>,
    ) {
        let set_aside = self.cluster.as_ref().and_then(|node| {
            let kept = node.kept.get(client_id)?;
            (!node.handing.contains_key(client_id)).then(|| kept.clone())
        });
        let held = (self.by_client.get(client_id)).and_then(|sid| self.handed_over_version(*sid));
        for late in lates {
            self.pass_on_handover(to, client_id.clone(), mine, Some(Box::new(late)));
        }
        // This node's store holds these two until their handover is acknowledged.
        for own in set_aside.into_iter().chain(held) {
            self.send_handover(to, client_id.clone(), mine, Some(Box::new(own)));
        }
    }

    /// Hands on to `to`, under `claim`, a version of `client_id`'s session that this node got
    /// (from another node's handover, or its copy) and does not hold in its store. What
    /// acknowledged the handover here (the sender's link) does not wait for `to`: so its
    /// messages that can be relayed ([`relayable`]) are stored as relays
    /// ([`StoreOp::PutRelay`]) until `to` acknowledges it ([`Engine::passed_on`]), and a
    /// restart sends them on ([`Engine::resend_stored_relays`]). Seed 56584: a claimant got the
    /// session, with four acknowledged messages no copy had, handed it on to a newer claimant
    /// cut off from it, and crashed; the link lost it, and the old owner had dropped its records
    /// on the claimant's acknowledgement.
    pub(super) fn pass_on_handover(
        &mut self,
        to: u16,
        client_id: ByteString,
        claim: (u64, u64),
        session: Option<Box<StoredSession>>,
    ) {
        if let (Some(session), Some(node)) = (&session, &mut self.cluster) {
            for (stamp, message) in relayable(session) {
                let key = (client_id.clone(), stamp);
                *node.passing.entry(key).or_insert(0) += 1;
                self.persist.push(StoreOp::PutRelay {
                    client_id: client_id.clone(),
                    stamp,
                    message: message.clone(),
                });
            }
        }
        self.send_handover(to, client_id, claim, session);
    }

    /// A handover of `session` from here is acknowledged or given up on: the relay records that
    /// [`Engine::pass_on_handover`] stored for it go, unless another handover on its way holds
    /// them too.
    pub(super) fn passed_on(&mut self, client_id: &ByteString, session: &StoredSession) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        for (stamp, _) in relayable(session) {
            let key = (client_id.clone(), stamp);
            match node.passing.get_mut(&key) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    node.passing.remove(&key);
                    self.persist.push(StoreOp::DeleteRelay {
                        client_id: client_id.clone(),
                        stamp,
                    });
                }
                None => {}
            }
        }
    }

    /// Merges into `client_id`'s session, which this node holds, the messages of `late`, another
    /// version of the session that came too late to be installed: a handover after the session
    /// came here from a copy or from another node, or the version not chosen of two (see
    /// [`fresher`]). Each message counts by the stamp it was routed with, as a relay does (through
    /// the move window, which opens if it is not open), so what the session took already is
    /// dropped, and what is still on its way here directly is not (seed 91539: a node restarted
    /// owning the client, took the session from its store, and merged a late handover whose
    /// messages raised the marks; an earlier message routed to it before its crash, held on the
    /// link meanwhile, then came and was refused as taken). Seed 165:
    /// an old owner crashed holding messages no copy had (its writes had not committed), took them
    /// again after its restart as duplicates of what its store held, and acknowledged them; its
    /// handover then came after the new owner had taken the session from its copy, and was
    /// dropped with them.
    ///
    /// A QoS 2 message the late version sent to its client, who may have had it, goes on under
    /// its own packet identifier or not at all ([`Engine::merge_late_flow`]). Left out, as by
    /// [`Engine::relay_queue`]: a message without a stamp. A message of an origin's incarnation
    /// older than the session's mark is refused by the stamp check (see
    /// [`crate::session::Session::take_stamp`]).
    pub(super) fn merge_late(&mut self, client_id: &ByteString, lates: Vec<StoredSession>) {
        let Some(&sid) = self.by_client.get(client_id) else {
            return;
        };
        if lates.iter().any(|late| !late.messages.is_empty()) {
            self.open_window_over_marks(client_id, sid);
        }
        let outer = self.stamp;
        for m in lates
            .into_iter()
            .flat_map(|late| late.messages.into_values())
        {
            let Some(stamp) = m.stamp else {
                continue;
            };
            self.stamp = Some(stamp);
            match m.state {
                OutboundState::Sent(pid) | OutboundState::Released(pid)
                    if m.qos == QoS::ExactlyOnce =>
                {
                    self.merge_late_flow(sid, m, pid);
                }
                _ => self.route_plain_to(&m.message, Some(sid)),
            }
        }
        self.stamp = outer;
    }

    /// Merges a QoS 2 message a late version of session `sid` had sent under packet id `pid`
    /// (with [`Engine::stamp`] set to its stamp). Its client may have it under that id, and
    /// would take it again under another, so it goes on under `pid` alone, if `pid` is free in
    /// the session: a PUBLISH (DUP set) the client takes once, if the session did not take it
    /// (seed 1954: the node that held the session crashed with it sent on a connection its
    /// client had left, and its late handover was merged without it); a PUBREL (the client has
    /// it) in any case, which frees the id at the client. With `pid` taken here it is left out:
    /// a second delivery is worse than a loss for QoS 2. Sent at once if the client is online,
    /// even past its Receive Maximum (it is a resend of a flow the client may hold already).
    fn merge_late_flow(&mut self, sid: SessionId, m: StoredMessage, pid: u16) {
        let released = matches!(m.state, OutboundState::Released(_));
        let free = (self.sessions.get(&sid)).is_some_and(|s| !s.inflight.contains_key(&pid));
        if !free || !self.take_stamp(sid, !released) {
            return;
        }
        let enabled = self.persist.enabled();
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let mut out = Outbound {
            seq: session.take_seq(),
            message: m.message,
            qos: m.qos,
            retain: m.retain,
            sub_ids: m.sub_ids,
            stored: false,
            shared: None,
            stamp: m.stamp,
        };
        if session.is_persistent() && enabled {
            out.stored = true;
            if released {
                // As its flow went: sent, then released.
                let sent = out.put_op(&session.client_id, OutboundState::Sent(pid));
                self.persist.push(sent);
            }
            self.persist.push(out.put_op(&session.client_id, m.state));
        }
        let flow = if released {
            Flow::Released
        } else {
            Flow::Published
        };
        let held_by = None;
        session
            .inflight
            .insert(pid, Inflight { out, flow, held_by });
        if session.conn.is_some() {
            self.resend_flows(sid, Some(pid));
        }
    }

    /// Opens a [`MoveWindow`] on `client_id`'s session, just installed here from another node's
    /// handover or this node's copy: relays for it may come for as long as its old node sends
    /// them, and then take as long again. A window the handover `carried` goes on. Returns the
    /// write that stores it (for a persistent session), which goes in the same log entry as the
    /// session: a copy with the session's marks but not its window would drop, once taken over,
    /// what the window had still to take (seed 5172: two messages).
    pub(super) fn open_move_window(
        &mut self,
        client_id: &ByteString,
        carried: Option<TakenSince>,
    ) -> Option<StoreOp> {
        let node = self.cluster.as_ref()?;
        let until = self.now + relay_window(&node.config) * 2;
        let sid = self.by_client.get(client_id).copied();
        let s = sid.and_then(|sid| self.sessions.get_mut(&sid))?;
        let window = MoveWindow::new(&s.seen, carried, until);
        let put = s.is_persistent().then(|| StoreOp::PutWindow {
            client_id: client_id.clone(),
            window: Box::new(window.taken().clone()),
        });
        s.window = Some(Box::new(window));
        put
    }

    /// Opens a [`MoveWindow`] over session `sid`'s marks now, unless one is open: a relay for it
    /// arrived, or a late version of it is merged ([`Engine::merge_late`]), so messages reach it
    /// by two ways, and a relayed one may come ahead of earlier ones of its origin still on their
    /// way here. Judged by the marks alone, those were dropped as taken (seed 67767: a node cut
    /// off kept its session while a claimant waited for it in vain; the node learned from a
    /// snapshot that its own newer claim was in force, so the session never moved and no window
    /// opened; the claimant relayed what it had kept, and four earlier messages held on a link
    /// through the partition were refused when they came). Nothing above the marks was taken
    /// before, so the window refuses whatever they refused.
    fn open_window_over_marks(&mut self, client_id: &ByteString, sid: SessionId) {
        let now = self.now;
        let open = (self.sessions.get(&sid))
            .and_then(|s| s.window.as_ref())
            .is_some_and(|w| w.open(now));
        if !open {
            if let Some(put) = self.open_move_window(client_id, None) {
                self.persist.push(put);
            }
        }
    }

    /// Reopens the [`MoveWindow`] the store kept for `session` (being restored), unless it closed
    /// meanwhile: then the store forgets it.
    pub(in crate::engine) fn restore_move_window(
        &mut self,
        session: &mut Session,
        taken: TakenSince,
    ) {
        let window = (self.cluster.as_ref()).and_then(|node| {
            let latest = self.now + relay_window(&node.config) * 2;
            MoveWindow::restored(taken, self.now, latest)
        });
        if window.is_none() {
            self.persist.push(StoreOp::DeleteWindow {
                client_id: session.client_id.clone(),
            });
        }
        session.window = window.map(Box::new);
    }

    /// Relays `message` for `client_id`'s session, judged by `stamp`, to `to`, as far into the
    /// log as this node has applied. Stored until `to` acknowledges it ([`StoreOp::PutRelay`]):
    /// what made this node relay it (a link message, say) is acknowledged once that is durable,
    /// and a restart sends it again ([`Engine::resend_stored_relays`]).
    pub(in crate::engine) fn send_relay(
        &mut self,
        to: u16,
        client_id: ByteString,
        message: Arc<Message>,
        stamp: Stamp,
    ) {
        self.persist.push(StoreOp::PutRelay {
            client_id: client_id.clone(),
            stamp,
            message: message.clone(),
        });
        let relay = PeerMessage::Relay {
            client_id,
            message,
            stamp,
            after: self.cluster.as_ref().map_or(0, |node| node.position()),
        };
        self.send_peer(to, relay);
    }

    /// Sends again, after a restart replayed the log, the relays this node stored and had not
    /// seen acknowledged: to the owner of each session now (or into the session, if this node
    /// owns it; dropped if nobody does).
    pub(super) fn resend_stored_relays(&mut self) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let relays = std::mem::take(&mut node.stored_relays);
        for ((client_id, stamp), message) in relays {
            self.reroute_relay(client_id, message, stamp);
        }
    }

    /// Routes again a relay this node stored (its link to its destination gave way, or this node
    /// restarted): as if it had just arrived here. Its record goes, and comes again if it is
    /// relayed on.
    pub(in crate::engine) fn reroute_relay(
        &mut self,
        client_id: ByteString,
        message: Arc<Message>,
        stamp: Stamp,
    ) {
        self.persist.push(StoreOp::DeleteRelay {
            client_id: client_id.clone(),
            stamp,
        });
        self.relay_arrived(client_id, message, stamp);
    }

    /// Passes what was kept for `client_id`'s session, which was on its way here when a newer
    /// claim took it on to `to`, behind the session just handed on there: as relays, whose
    /// acknowledgements are released here (as any relay's). Dropped, they were lost when nothing
    /// else had routed them there (seed 199). What still arrives for the session here is relayed
    /// on too, as after a handover.
    pub(super) fn pass_on_kept(&mut self, to: u16, client_id: ByteString, kept: Vec<Kept>) {
        let now = self.now;
        if let Some(node) = &mut self.cluster {
            node.handed_over(&client_id, now);
        }
        for k in &kept {
            let Some(stamp) = k.stamp else {
                continue;
            };
            self.send_relay(to, client_id.clone(), k.message.clone(), stamp);
        }
        self.deliver_kept(kept, None);
    }

    /// Delivers what was kept for a session now installed here as `sid` (`None`: it never came,
    /// or went on to another node), and releases the acknowledgements it held.
    pub(super) fn deliver_kept(&mut self, kept: Vec<Kept>, sid: Option<SessionId>) {
        if kept.is_empty() {
            return;
        }
        let outer = self.stamp;
        for k in &kept {
            if let Some(sid) = sid {
                self.stamp = k.stamp;
                self.route_plain_to(&k.message, Some(sid));
            }
        }
        self.stamp = outer;
        // The batch being built holds the session and what it took (written whole through the
        // log when it was installed): acknowledged once that is durable and committed.
        let batch = (self.persist.mark() > 0).then(|| self.persist.building());
        let Some(node) = &mut self.cluster else {
            return;
        };
        for k in kept {
            match (k.hold, batch) {
                (Hold::Link(from, seq), _) => node.links.release(from, seq, batch),
                (Hold::Receipt(seq), Some(batch)) => node.self_receipts.push((batch, seq)),
                (Hold::Receipt(seq), None) => self.persist.peer_stored(seq),
            }
        }
        self.confirm_links();
        self.release_held();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ProtocolVersion;

    /// A late version's QoS 2 flows go on under their own packet identifiers: a PUBLISH the
    /// session did not take, once, with DUP set; not one whose identifier the session uses now,
    /// nor one it took; a PUBREL whatever the session took (it frees the identifier).
    #[test]
    fn a_late_versions_qos2_flows_go_on_under_their_own_packet_ids() {
        use crate::codec::{Delivery, Packet, TopicName};
        use crate::sim::{expect, Sim};
        let mut sim = Sim::new(crate::config::Config::default());
        let mut connect = Sim::connect_packet("c", ProtocolVersion::V5);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(3600);
        expect::connack(sim.connect_with("c", connect.clone()));
        sim.subscribe("c", "t", QoS::ExactlyOnce);
        sim.drop_connection("c");
        let flow = |payload: &'static str, state, seq| {
            let message = Message {
                topic: TopicName::new("t").expect("valid"),
                payload: bytes::Bytes::from_static(payload.as_bytes()),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: Default::default(),
                origin: None,
                expires_at: None,
            };
            let stamp = Stamp {
                node: 2,
                incarnation: 5,
                seq,
            };
            StoredMessage {
                qos: QoS::ExactlyOnce,
                state,
                retain: false,
                sub_ids: Vec::new(),
                message: Arc::new(message),
                stamp: Some(stamp),
            }
        };
        let mut late = marks(&[]).expect("a session");
        late.messages
            .insert(1, flow("sent", OutboundState::Sent(7), 1));
        late.messages
            .insert(2, flow("same id", OutboundState::Sent(7), 2));
        late.messages
            .insert(3, flow("taken", OutboundState::Sent(9), 1));
        late.messages
            .insert(4, flow("released", OutboundState::Released(11), 1));
        sim.engine.merge_late(&"c".into(), vec![*late]);
        let ack = expect::connack(sim.connect_with("c", connect));
        assert!(ack.session_present);
        let packets = sim.recv_all("c");
        assert_eq!(expect::payloads(&packets), ["sent"]);
        let Some(Packet::Publish(publish)) = packets.first() else {
            panic!("{packets:?}");
        };
        assert!(publish.dup);
        assert!(matches!(publish.delivery, Delivery::ExactlyOnce(id) if id.get() == 7));
        let released = packets.iter().any(|p| match p {
            Packet::PubRel(rel) => rel.packet_id.get() == 11,
            _ => false,
        });
        assert!(released, "{packets:?}");
    }

    fn marks(seen: &[(u16, (u64, u64))]) -> Option<Box<StoredSession>> {
        Some(Box::new(StoredSession {
            protocol: ProtocolVersion::V5,
            expiry_interval: 60,
            offline_since: None,
            will: None,
            subscriptions: Default::default(),
            messages: Default::default(),
            incoming: Default::default(),
            seen: seen.iter().copied().collect(),
            window: None,
            next_packet_id: None,
        }))
    }

    fn fresher_of(
        a: Option<Box<StoredSession>>,
        b: Option<Box<StoredSession>>,
    ) -> Option<Box<StoredSession>> {
        let (fresher, other) = fresher(a.clone(), b.clone());
        // The other is the one not chosen, never lost.
        let both = [a, b].into_iter().flatten().count();
        assert_eq!([&fresher, &other].into_iter().flatten().count(), both);
        fresher
    }

    fn seen_of(s: Option<Box<StoredSession>>) -> Vec<(u16, (u64, u64))> {
        s.map(|s| s.seen.into_iter().collect()).unwrap_or_default()
    }

    #[test]
    fn the_fresher_session_is_the_one_that_took_more() {
        let copy = [(2, (7, 10))];
        let more = [(2, (7, 12))];
        assert_eq!(seen_of(fresher_of(marks(&copy), marks(&more))), more);
        assert_eq!(seen_of(fresher_of(marks(&more), marks(&copy))), more);
        assert_eq!(
            seen_of(fresher_of(marks(&copy), marks(&copy))),
            copy,
            "a tie: the first"
        );
        let other_origin = [(2, (7, 10)), (3, (1, 1))];
        assert_eq!(
            seen_of(fresher_of(marks(&copy), marks(&other_origin))),
            other_origin
        );
        // Not comparable (each took something the other did not, or another incarnation): the
        // first.
        let split = [(2, (7, 9)), (3, (1, 1))];
        assert_eq!(seen_of(fresher_of(marks(&copy), marks(&split))), copy);
        let restarted = [(2, (8, 1))];
        assert_eq!(seen_of(fresher_of(marks(&copy), marks(&restarted))), copy);
        assert_eq!(seen_of(fresher_of(None, marks(&copy))), copy);
        assert_eq!(seen_of(fresher_of(marks(&copy), None)), copy);
    }

    #[test]
    fn of_several_late_versions_the_freshest_is_installed_and_every_other_one_merged() {
        let copy = [(2, (7, 10))];
        let most = [(2, (7, 14))];
        let more = [(2, (7, 12))];
        let late = |seen: &[(u16, (u64, u64))]| *marks(seen).expect("a session");
        let (best, others) = freshest(marks(&copy), vec![late(&more), late(&most)]);
        assert_eq!(seen_of(best), most);
        let others: Vec<_> = (others.into_iter())
            .map(|o| seen_of(Some(Box::new(o))))
            .collect();
        assert_eq!(others, [copy.to_vec(), more.to_vec()], "none is lost");
        // No copy: the late ones alone.
        let (best, others) = freshest(None, vec![late(&more)]);
        assert_eq!(seen_of(best), more);
        assert!(others.is_empty());
    }
}
