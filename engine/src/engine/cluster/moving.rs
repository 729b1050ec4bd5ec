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
//!   nothing acknowledged.

use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::TopicFilter;
use crate::io::Stamp;
use crate::message::Message;
use crate::session::SessionId;
use crate::stored::StoredSession;

use super::{Engine, Node};

/// A message kept for a session the claimant still waits for.
#[derive(Debug)]
pub(super) struct Kept {
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

/// Whether `topic` matches one of the session's ordinary (not shared) subscriptions.
fn subscribed(session: &StoredSession, topic: &str) -> bool {
    session
        .subscriptions
        .keys()
        .filter_map(|f| TopicFilter::new(f.clone()).ok())
        .any(|f| f.shared().is_none() && f.matches(topic))
}

impl Node {
    /// A claim moved `client_id` to `to`: if it has a persistent session, its filters are routed
    /// there from now on, until `to`'s interest covers them.
    pub(super) fn session_moving(&mut self, client_id: &ByteString, to: u16) {
        if self.replicas.has(client_id) {
            self.moving.insert(client_id.clone(), to);
        }
    }

    /// The claimants (other than this node) of moving sessions subscribed to `topic`, without
    /// their own interest for it yet. Forgets the moves that settled: their claimant's applied
    /// interest covers every ordinary filter of the session, or the copy is gone.
    pub(in crate::engine) fn claimants(&mut self, topic: &str) -> Vec<u16> {
        let me = self.me();
        let mut to = Vec::new();
        let mut settled = Vec::new();
        for (client_id, owner) in &self.moving {
            let Some(copy) = self.replicas.session(client_id) else {
                settled.push(client_id.clone());
                continue;
            };
            let covered = copy
                .subscriptions
                .keys()
                .filter(|f| !f.starts_with("$share/"))
                .all(|f| self.table.count(*owner, f) > 0);
            if covered {
                settled.push(client_id.clone());
            } else if *owner != me && !to.contains(owner) && subscribed(copy, topic) {
                to.push(*owner);
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
    /// subscribes to it.
    pub(in crate::engine) fn keep_for_awaited(&mut self, message: &Arc<Message>) {
        let stamp = self.stamp;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.awaiting.is_empty() {
            return;
        }
        let topic = message.topic.as_str();
        let waiting: Vec<ByteString> = (node.awaiting.keys())
            .filter(|c| (node.replicas.session(c)).is_some_and(|s| subscribed(s, topic)))
            .cloned()
            .collect();
        for client_id in waiting {
            let Some(node) = &mut self.cluster else {
                return;
            };
            let hold = match node.delivering.take() {
                Some((from, seq)) => Hold::Link(from, seq),
                None => Hold::Receipt(self.persist.await_peer()),
            };
            let Some(node) = &mut self.cluster else {
                return;
            };
            if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
                let message = message.clone();
                awaiting.kept.push(Kept {
                    message,
                    stamp,
                    hold,
                });
            }
        }
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
