//! Raft messages too large for one link frame travel in parts. Only a snapshot gets that large: it
//! carries the whole replicated state (table, session copies, retained messages), while raft
//! batches entries to 1 MiB per message. The shell caps a frame at 16 MiB (or the maximum packet
//! size plus 1 MiB, if larger); without parts, a state larger than that could never reach a node
//! that fell behind the log or joined.
//!
//! Parts carry no acknowledgement of their own. A lost part leaves its message incomplete, the
//! follower does not install the snapshot, its next answer tells the leader so, and the leader
//! sends the snapshot again (under a new id).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::wire::Frame;

/// How many parts one message may have: with the default part size, snapshots up to 4 GiB.
pub(crate) const MAX_PARTS: u32 = 512;

/// How many messages from one sender may be gathered at once. Parts of one message arrive in
/// order on a connection, but a reconnection (or the simulation's network) can interleave a
/// resent snapshot with what is left of the last: the oldest gathered goes first.
const GATHERING_PER_SENDER: usize = 2;

/// A part that cannot belong to any message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PartError {
    /// The part's numbers do not fit together.
    #[error(
        "raft message part {part} of {parts}: parts must number 1 to {MAX_PARTS}, parts from 0"
    )]
    Numbering {
        /// The part's number.
        part: u32,
        /// The number of parts it claims.
        parts: u32,
    },
}

/// One message being gathered.
#[derive(Debug)]
struct Gathering {
    id: u64,
    parts: u32,
    got: BTreeMap<u32, Bytes>,
}

/// Splits this node's large raft messages and gathers other nodes'.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The largest part, in bytes.
    size: usize,
    /// The id of this node's next large message; starts from the node's incarnation so that a
    /// restarted node's ids do not meet its last incarnation's parts still on their way.
    next_id: u64,
    gathering: BTreeMap<u16, VecDeque<Gathering>>,
}

impl Parts {
    /// Parts of at most `size` bytes (at least 1); ids start from `first_id`.
    pub(crate) fn new(size: usize, first_id: u64) -> Parts {
        Parts {
            size: size.max(1),
            next_id: first_id,
            gathering: BTreeMap::new(),
        }
    }

    /// The frames that carry a raft message's `bytes`: one frame, or its parts.
    pub(crate) fn split(&mut self, bytes: Bytes) -> Vec<Frame> {
        if bytes.len() <= self.size {
            return vec![Frame::Raft(bytes)];
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let parts = bytes.len().div_ceil(self.size);
        let parts = u32::try_from(parts).unwrap_or(u32::MAX);
        (0..parts)
            .map(|part| {
                let start = part as usize * self.size;
                let end = (start + self.size).min(bytes.len());
                Frame::RaftPart {
                    id,
                    part,
                    parts,
                    bytes: bytes.slice(start..end),
                }
            })
            .collect()
    }

    /// A part from node `from`: the whole message once its last part arrived.
    pub(crate) fn gather(
        &mut self,
        from: u16,
        id: u64,
        part: u32,
        parts: u32,
        bytes: Bytes,
    ) -> Result<Option<Bytes>, PartError> {
        if parts == 0 || parts > MAX_PARTS || part >= parts {
            return Err(PartError::Numbering { part, parts });
        }
        let queue = self.gathering.entry(from).or_default();
        let at = match queue.iter().position(|g| g.id == id) {
            Some(at) => at,
            None => {
                if queue.len() == GATHERING_PER_SENDER {
                    queue.pop_front();
                }
                queue.push_back(Gathering {
                    id,
                    parts,
                    got: BTreeMap::new(),
                });
                queue.len() - 1
            }
        };
        let Some(g) = queue.get_mut(at) else {
            return Ok(None);
        };
        if g.parts != parts {
            // The same id with another count: not the message gathered so far. Start over.
            g.parts = parts;
            g.got.clear();
        }
        g.got.insert(part, bytes);
        if g.got.len() < g.parts as usize {
            return Ok(None);
        }
        let Some(done) = queue.remove(at) else {
            return Ok(None);
        };
        let mut whole = BytesMut::with_capacity(done.got.values().map(Bytes::len).sum());
        for bytes in done.got.into_values() {
            whole.extend_from_slice(&bytes);
        }
        Ok(Some(whole.freeze()))
    }

    /// Forgets what `node` sent in part (it left the cluster).
    pub(crate) fn forget(&mut self, node: u16) {
        self.gathering.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(frames: Vec<Frame>) -> Vec<(u64, u32, u32, Bytes)> {
        frames
            .into_iter()
            .map(|f| match f {
                Frame::RaftPart {
                    id,
                    part,
                    parts,
                    bytes,
                } => (id, part, parts, bytes),
                other => panic!("not a part: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_small_message_is_one_frame_and_a_large_one_parts_that_gather_back_in_any_order() {
        let mut sender = Parts::new(4, 100);
        let small = Bytes::from_static(b"abcd");
        assert_eq!(sender.split(small.clone()), vec![Frame::Raft(small)]);
        let large = Bytes::from_static(b"0123456789");
        let mut parts = parts_of(sender.split(large.clone()));
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|(id, _, n, _)| *id == 100 && *n == 3));
        parts.reverse();
        let mut receiver = Parts::new(4, 0);
        let mut whole = Vec::new();
        for (id, part, n, bytes) in parts {
            whole.push(receiver.gather(2, id, part, n, bytes).expect("fits"));
        }
        assert_eq!(whole, [None, None, Some(large)]);
    }

    #[test]
    fn a_resent_message_interleaved_with_the_last_still_gathers_and_bad_numbers_are_errors() {
        let mut sender = Parts::new(2, 7);
        let first = parts_of(sender.split(Bytes::from_static(b"aabbcc")));
        let second = parts_of(sender.split(Bytes::from_static(b"xxyy")));
        let mut receiver = Parts::new(2, 0);
        let mut gather = |(id, part, n, bytes): (u64, u32, u32, Bytes)| {
            receiver.gather(1, id, part, n, bytes).expect("fits")
        };
        // The first loses its middle part; the second arrives whole around its remains.
        assert_eq!(gather(first[0].clone()), None);
        assert_eq!(gather(second[0].clone()), None);
        assert_eq!(gather(first[2].clone()), None);
        assert_eq!(gather(second[1].clone()), Some(Bytes::from_static(b"xxyy")));
        assert_eq!(
            receiver.gather(1, 9, 3, 3, Bytes::new()),
            Err(PartError::Numbering { part: 3, parts: 3 })
        );
        assert_eq!(
            receiver.gather(1, 9, 0, MAX_PARTS + 1, Bytes::new()),
            Err(PartError::Numbering {
                part: 0,
                parts: MAX_PARTS + 1
            })
        );
    }
}
