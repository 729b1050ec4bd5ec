//! Copies of every persistent session of the cluster, kept by applying the session writes owners
//! put in the log ([`super::wire::Command::Session`]), this node's own included. When an owner
//! dies, the node its client reconnects to takes the session from its copy: every write the owner
//! acknowledged anything for had committed, so the copy holds it (see `docs/cluster.md`,
//! "Replicated sessions"). Built from the log alone, the copies are the same on every node at the
//! same index, so a snapshot of them is the log's.

use std::collections::BTreeMap;

use bytestring::ByteString;

use crate::io::StoreOp;
use crate::stored::{StoredSession, StoredState};

/// The copies on one node.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    /// The sessions, as a store would hold them (only `sessions` is used).
    state: StoredState,
    /// The node whose writes built each copy.
    writer: BTreeMap<ByteString, u16>,
}

impl Replicas {
    /// Applies a write `node` made to the session it owns. A write from a node other than the one
    /// that built the copy starts the copy over: the session moved, and its new owner's first
    /// writes are the whole session (a handover or a copy it took in, behind a delete) or a new
    /// one (its record first). Any other write from such a node is an earlier owner's, made
    /// before the client moved and committed after it came back: it is ignored, as the copy holds
    /// the session since. (Seed 105, once snapshots came in parts: such a write started the copy
    /// over with nothing but itself, and the session was lost.)
    pub(crate) fn apply(&mut self, node: u16, op: &StoreOp) {
        let Some(client_id) = op.session_client() else {
            return;
        };
        if self.writer.get(client_id) != Some(&node) {
            let starts = matches!(
                op,
                StoreOp::PutSession { .. } | StoreOp::DeleteSession { .. }
            );
            if !starts {
                return;
            }
            self.state.sessions.remove(client_id);
            self.writer.insert(client_id.clone(), node);
        }
        self.state.apply(std::slice::from_ref(op));
        if !self.state.sessions.contains_key(client_id) {
            self.writer.remove(client_id);
        }
    }

    /// A copy of the copy of `client_id`'s session, which stays.
    pub(crate) fn copy(&self, client_id: &ByteString) -> Option<StoredSession> {
        self.state.sessions.get(client_id).cloned()
    }

    /// The copy of `client_id`'s session.
    pub(crate) fn session(&self, client_id: &ByteString) -> Option<&StoredSession> {
        self.state.sessions.get(client_id)
    }

    /// The node whose writes built the copy of `client_id`'s session.
    pub(crate) fn writer(&self, client_id: &ByteString) -> Option<u16> {
        self.writer.get(client_id).copied()
    }

    /// Whether there is a copy of `client_id`'s session.
    pub(crate) fn has(&self, client_id: &ByteString) -> bool {
        self.state.sessions.contains_key(client_id)
    }

    /// Drops the copy of `client_id`'s session (it ended for good).
    pub(crate) fn forget(&mut self, client_id: &ByteString) {
        self.writer.remove(client_id);
        self.state.sessions.remove(client_id);
    }

    /// How many sessions are copied here.
    pub(crate) fn len(&self) -> usize {
        self.state.sessions.len()
    }

    /// Every copy with its writer, in client order (for a snapshot, written straight from them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ByteString, u16, &StoredSession)> {
        self.state
            .sessions
            .iter()
            .filter_map(|(c, s)| Some((c, *self.writer.get(c)?, s)))
    }

    /// The copies a snapshot carried.
    pub(crate) fn restore(copies: Vec<(ByteString, u16, StoredSession)>) -> Replicas {
        let mut r = Replicas::default();
        for (client, writer, session) in copies {
            r.writer.insert(client.clone(), writer);
            r.state.sessions.insert(client, session);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ProtocolVersion;

    fn put_session(client: &str) -> StoreOp {
        StoreOp::PutSession {
            client_id: client.into(),
            protocol: ProtocolVersion::V5,
            expiry_interval: 60,
            offline_since: None,
            will: None,
        }
    }

    fn put_incoming(client: &str, packet_id: u16) -> StoreOp {
        StoreOp::PutIncoming {
            client_id: client.into(),
            packet_id,
        }
    }

    #[test]
    fn a_new_writer_starts_the_copy_over() {
        let mut r = Replicas::default();
        r.apply(1, &put_session("c"));
        r.apply(1, &put_incoming("c", 7));
        assert_eq!(r.len(), 1);
        // Node 2 took the session over and writes it whole: what node 1 wrote is gone.
        r.apply(2, &put_session("c"));
        r.apply(2, &put_incoming("c", 8));
        let copy = r.copy(&"c".into()).expect("a copy");
        assert_eq!(copy.incoming.into_iter().collect::<Vec<_>>(), [8]);
        // A snapshot carries the copy and its writer.
        let copies = r
            .iter()
            .map(|(c, w, s)| (c.clone(), w, s.clone()))
            .collect();
        let restored = Replicas::restore(copies);
        assert!(restored.iter().eq(r.iter()));
        assert_eq!(restored.writer.get("c"), Some(&2));
    }

    #[test]
    fn a_stray_write_from_an_earlier_owner_leaves_the_copy_alone() {
        let mut r = Replicas::default();
        r.apply(1, &put_session("c"));
        r.apply(1, &put_incoming("c", 7));
        // Node 2 held the session before; a write it made then commits only now.
        r.apply(2, &put_incoming("c", 8));
        let copy = r.copy(&"c".into()).expect("the copy stays");
        assert_eq!(copy.incoming.into_iter().collect::<Vec<_>>(), [7]);
        assert_eq!(r.writer(&"c".into()), Some(1));
    }

    #[test]
    fn writes_to_no_session_are_ignored_and_deletion_forgets() {
        let mut r = Replicas::default();
        r.apply(1, &put_incoming("c", 7));
        assert_eq!(r.len(), 0);
        r.apply(1, &put_session("c"));
        r.apply(
            1,
            &StoreOp::DeleteSession {
                client_id: "c".into(),
            },
        );
        assert_eq!(r.len(), 0);
        assert!(r.writer.is_empty());
    }
}
