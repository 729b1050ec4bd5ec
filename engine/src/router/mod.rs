//! Subscription routing: which sessions a topic name reaches, and with what QoS and identifiers.

mod shared;
mod trie;

pub(crate) use shared::Pick;
pub use trie::TopicTrie;

use bytestring::ByteString;

use crate::codec::split_shared;
use crate::session::{SessionId, Sub};
use shared::SharedGroups;

/// Every subscription of every session: ordinary ones in a trie, shared ones in their groups.
#[derive(Debug, Default)]
pub(crate) struct Router {
    pub(crate) plain: TopicTrie<SessionId, Sub>,
    pub(crate) shared: SharedGroups,
}

impl Router {
    /// How many subscriptions there are (a session's membership in a group counts as one).
    pub(crate) fn len(&self) -> usize {
        self.plain.len() + self.shared.len()
    }

    /// Adds or replaces `sid`'s subscription to `filter` (a `$share/...` filter joins its group).
    pub(crate) fn insert(&mut self, filter: &ByteString, sid: SessionId, sub: Sub) {
        match split_shared(filter) {
            Some((_, matched)) => self.shared.insert(filter, matched, sid, sub),
            None => {
                self.plain.insert(filter, sid, sub);
            }
        }
    }

    /// Removes `sid`'s subscription to `filter`.
    pub(crate) fn remove(&mut self, filter: &str, sid: SessionId) {
        match split_shared(filter) {
            Some((_, matched)) => {
                self.shared.remove(filter, matched, sid);
            }
            None => {
                self.plain.remove(filter, &sid);
            }
        }
    }
}
