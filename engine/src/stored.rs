//! What a store holds: the fold of every [`StoreOp`] the engine emitted, in order. It is what a store
//! loads at start and hands to [`crate::Engine::restore`], and the in-memory store is exactly this.
//!
//! Defining the fold here, next to the operations, keeps one meaning of every operation for every store
//! and for the simulation's crash model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{ProtocolVersion, QoS, SubscriptionId, SubscriptionOptions, Will};
use crate::io::{OutboundState, StoreOp};
use crate::message::Message;
use crate::time::Instant;

/// Everything stored: persistent sessions and retained messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Persistent sessions by client identifier.
    pub sessions: BTreeMap<ByteString, StoredSession>,
    /// Retained messages by topic.
    pub retained: BTreeMap<ByteString, Arc<Message>>,
    /// A cluster node's relays not yet acknowledged, by client identifier and stamp (see
    /// [`StoreOp::PutRelay`]).
    pub relays: BTreeMap<(ByteString, crate::Stamp), Arc<Message>>,
    /// A cluster node's sessions stored only as versions handed over (see
    /// [`StoreOp::PutHandedOver`]).
    pub handed_over: BTreeSet<ByteString>,
    /// A cluster node's raft log and hard state.
    pub raft: StoredRaft,
}

/// A cluster node's raft state as stored ([`StoreOp::PutRaftEntry`] and friends), opaque to the
/// store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRaft {
    /// The hard state (term, vote, commit), as raft encodes it.
    pub hard_state: Option<bytes::Bytes>,
    /// Log entries by index, as raft encodes them (those after the snapshot).
    pub entries: BTreeMap<u64, bytes::Bytes>,
    /// The last snapshot, as raft encodes it: the state the entries continue.
    pub snapshot: Option<bytes::Bytes>,
}

/// A persistent session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// Its protocol version.
    pub protocol: ProtocolVersion,
    /// Seconds it outlives its connection (`u32::MAX`: forever).
    pub expiry_interval: u32,
    /// When its connection ended; `None` if it was connected when the broker stopped.
    pub offline_since: Option<Instant>,
    /// The will still to be published.
    pub will: Option<Will>,
    /// Subscriptions by topic filter.
    pub subscriptions: BTreeMap<ByteString, StoredSubscription>,
    /// QoS 1/2 messages on their way to the client, by their position in the session's stream.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// QoS 2 packet ids received (PUBREC sent) whose PUBREL has not come.
    pub incoming: BTreeSet<u16>,
    /// Cluster nodes only: the last message identity taken per origin node, as (incarnation,
    /// counter) (see [`crate::Stamp`]).
    pub seen: BTreeMap<u16, (u64, u64)>,
    /// Cluster nodes only: what the session took since it last moved, while that is still judged
    /// message by message (in a handover, and stored while the window is open).
    pub window: Option<Box<TakenSince>>,
    /// Cluster nodes only, in a handover: the packet identifier its node would have taken next.
    /// The next node goes on from there, not from its lowest free one: another version of the
    /// session (taken from a copy that lacked the last PUBLISHes its old node sent) may have used
    /// the ids after its highest, and its client may still hold them. Not stored: a restored
    /// session goes on after the id of its latest inflight message.
    pub next_packet_id: Option<u16>,
}

/// What a session took since it moved between cluster nodes, message by message (see
/// `session::MoveWindow`). A handover carries it while the window is open: a message routed
/// before the first move can still be relayed after the second, behind later ones of its origin
/// that the session took, and the marks alone would take it as had. The store keeps it for the
/// same reason across a restart ([`StoreOp::PutWindow`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TakenSince {
    /// Per origin incarnation (node, incarnation), the mark everything at or below of which
    /// counts as taken.
    pub floor: BTreeMap<(u16, u64), u64>,
    /// Per origin incarnation, the stamps above its floor taken since.
    pub taken: BTreeMap<(u16, u64), BTreeSet<u64>>,
    /// When the window closes, on this node's clock: known to the node that holds the session
    /// and its store, not to other nodes (a handover and the cluster log leave it out; the node
    /// that takes the session in opens its own).
    pub until: Option<Instant>,
}

impl TakenSince {
    /// Records that the window took `stamp` (whatever its floor).
    pub fn insert(&mut self, stamp: crate::Stamp) {
        let key = (stamp.node, stamp.incarnation);
        if stamp.seq > self.floor.get(&key).copied().unwrap_or(0) {
            self.taken.entry(key).or_default().insert(stamp.seq);
        }
    }
}

/// A subscription as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Its options (QoS already capped to what was granted).
    pub options: SubscriptionOptions,
    /// Its v5 subscription identifier.
    pub id: Option<SubscriptionId>,
}

/// A message of a session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The QoS it is delivered at.
    pub qos: QoS,
    /// Where it is in the QoS flow.
    pub state: OutboundState,
    /// The RETAIN flag it is delivered with.
    pub retain: bool,
    /// The identifiers of the subscriptions it matched.
    pub sub_ids: Vec<SubscriptionId>,
    /// The message.
    pub message: Arc<Message>,
    /// Cluster nodes only: the identity it was routed with (see [`crate::Stamp`]).
    pub stamp: Option<crate::Stamp>,
}

impl StoredSession {
    /// Keeps the session's encoding within about `budget` bytes by dropping its newest messages
    /// (a handover travels as one link frame, which has a size limit); returns how many went.
    pub fn trim_to(&mut self, budget: usize) -> usize {
        /// What a message or subscription costs in a frame beyond its topic and payload: the
        /// fields around it, generously.
        const OVERHEAD: usize = 64;
        let mut used: usize = self.subscriptions.keys().map(|f| f.len() + OVERHEAD).sum();
        let mut keep = 0;
        for m in self.messages.values() {
            used = used.saturating_add(m.message.queued_size() + OVERHEAD);
            if used > budget {
                break;
            }
            keep += 1;
        }
        let dropped = self.messages.len() - keep;
        if let Some(&first_dropped) = self.messages.keys().nth(keep) {
            self.messages.split_off(&first_dropped);
        }
        dropped
    }

    /// The storage writes that store this session for `client_id` from nothing (what a node writes
    /// for a session handed over to it).
    pub fn ops(&self, client_id: &ByteString) -> Vec<StoreOp> {
        let mut ops = vec![StoreOp::PutSession {
            client_id: client_id.clone(),
            protocol: self.protocol,
            expiry_interval: self.expiry_interval,
            offline_since: self.offline_since,
            will: self.will.clone(),
        }];
        for (filter, sub) in &self.subscriptions {
            ops.push(StoreOp::PutSubscription {
                client_id: client_id.clone(),
                filter: filter.clone(),
                options: sub.options,
                id: sub.id,
            });
        }
        for (seq, m) in &self.messages {
            ops.push(StoreOp::put_message(client_id.clone(), *seq, m.clone()));
        }
        for packet_id in &self.incoming {
            ops.push(StoreOp::PutIncoming {
                client_id: client_id.clone(),
                packet_id: *packet_id,
            });
        }
        for (&node, &(incarnation, seq)) in &self.seen {
            ops.push(StoreOp::PutSeen {
                client_id: client_id.clone(),
                stamp: crate::Stamp {
                    node,
                    incarnation,
                    seq,
                },
            });
        }
        if let Some(window) = &self.window {
            ops.push(StoreOp::PutWindow {
                client_id: client_id.clone(),
                window: window.clone(),
            });
        }
        ops
    }
}

impl StoredState {
    /// Applies one batch of operations. An operation under a session that is not stored is ignored:
    /// the engine deletes a session with everything under it, so nothing may outlive it.
    pub fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            self.apply_one(op);
        }
    }

    fn apply_one(&mut self, op: &StoreOp) {
        match op {
            StoreOp::PutSession {
                client_id,
                protocol,
                expiry_interval,
                offline_since,
                will,
            } => {
                let s = self
                    .sessions
                    .entry(client_id.clone())
                    .or_insert_with(|| StoredSession {
                        protocol: *protocol,
                        expiry_interval: *expiry_interval,
                        offline_since: None,
                        will: None,
                        subscriptions: BTreeMap::new(),
                        messages: BTreeMap::new(),
                        incoming: BTreeSet::new(),
                        seen: BTreeMap::new(),
                        window: None,
                        next_packet_id: None,
                    });
                s.protocol = *protocol;
                s.expiry_interval = *expiry_interval;
                s.offline_since = *offline_since;
                s.will.clone_from(will);
            }
            StoreOp::DeleteSession { client_id } => {
                self.sessions.remove(client_id);
                self.handed_over.remove(client_id);
            }
            StoreOp::PutSubscription {
                client_id,
                filter,
                options,
                id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.subscriptions.insert(
                        filter.clone(),
                        StoredSubscription {
                            options: *options,
                            id: *id,
                        },
                    );
                }
            }
            StoreOp::DeleteSubscription { client_id, filter } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.subscriptions.remove(filter);
                }
            }
            StoreOp::PutMessage { .. } => {
                if let Some((client_id, seq, m)) = op.stored_message() {
                    if let Some(s) = self.sessions.get_mut(client_id) {
                        s.messages.insert(seq, m);
                    }
                }
            }
            StoreOp::DeleteMessage { client_id, seq } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.messages.remove(seq);
                }
            }
            StoreOp::PutIncoming {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.incoming.insert(*packet_id);
                }
            }
            StoreOp::DeleteIncoming {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.incoming.remove(packet_id);
                }
            }
            StoreOp::PutSeen { client_id, stamp } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.seen.insert(stamp.node, (stamp.incarnation, stamp.seq));
                }
            }
            StoreOp::PutWindow { client_id, window } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.window = Some(window.clone());
                }
            }
            StoreOp::PutTaken { client_id, stamp } => {
                if let Some(w) = (self.sessions.get_mut(client_id)).and_then(|s| s.window.as_mut())
                {
                    w.insert(*stamp);
                }
            }
            StoreOp::DeleteWindow { client_id } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.window = None;
                }
            }
            StoreOp::PutRetained { message } => {
                self.retained
                    .insert(message.topic.as_bytestring().clone(), message.clone());
            }
            StoreOp::DeleteRetained { topic } => {
                self.retained.remove(topic.as_bytestring());
            }
            StoreOp::PutRelay {
                client_id,
                stamp,
                message,
            } => {
                self.relays
                    .insert((client_id.clone(), *stamp), message.clone());
            }
            StoreOp::DeleteRelay { client_id, stamp } => {
                self.relays.remove(&(client_id.clone(), *stamp));
            }
            StoreOp::PutHandedOver { client_id } => {
                self.handed_over.insert(client_id.clone());
            }
            StoreOp::PutRaftEntry { index, entry } => {
                self.raft.entries.insert(*index, entry.clone());
            }
            StoreOp::TruncateRaftLog { from } => {
                self.raft.entries.split_off(from);
            }
            StoreOp::PutRaftSnapshot { index, snapshot } => {
                self.raft.snapshot = Some(snapshot.clone());
                self.raft.entries = self.raft.entries.split_off(&(index + 1));
            }
            StoreOp::PutRaftHardState { hard_state } => {
                self.raft.hard_state = Some(hard_state.clone());
            }
        }
    }
}
