//! Subscription routing: which sessions a topic name reaches, and with what QoS and identifiers.

mod shared;
mod trie;

pub(crate) use shared::Pick;
pub use trie::TopicTrie;

use std::collections::BTreeMap;

use bytestring::ByteString;

use crate::codec::split_shared;
use crate::session::{SessionId, Sub};
use shared::SharedGroups;

/// Every subscription of every session: ordinary ones in a trie, shared ones in their groups.
#[derive(Debug, Default)]
pub(crate) struct Router {
    pub(crate) plain: TopicTrie<SessionId, Sub>,
    pub(crate) shared: SharedGroups,
    /// With other engines to tell (see [`Router::track_interest`]): which filters are subscribed.
    interest: Option<Interest>,
}

/// How many local subscriptions each filter has, and the changes the other engines have not been told:
/// an ordinary filter's first and last subscription, every change of a shared group's membership
/// (they balance groups by member count).
#[derive(Debug, Default)]
struct Interest {
    counts: BTreeMap<ByteString, u32>,
    changes: Vec<(ByteString, u32)>,
}

impl Interest {
    fn changed(&mut self, filter: &ByteString, count: u32) {
        let shared = split_shared(filter).is_some();
        if shared || count <= 1 {
            self.changes.push((filter.clone(), count));
        }
    }

    fn add(&mut self, filter: &ByteString) {
        let count = self.counts.entry(filter.clone()).or_insert(0);
        *count += 1;
        let count = *count;
        self.changed(filter, count);
    }

    fn remove(&mut self, filter: &str) {
        let Some((key, count)) = self.counts.remove_entry(filter) else {
            return;
        };
        let count = count - 1;
        if count > 0 {
            self.counts.insert(key.clone(), count);
        }
        self.changed(&key, count);
    }
}

impl Router {
    /// How many subscriptions there are (a session's membership in a group counts as one).
    pub(crate) fn len(&self) -> usize {
        self.plain.len() + self.shared.len()
    }

    /// Starts counting subscriptions per filter, for [`Router::interest_changes`].
    pub(crate) fn track_interest(&mut self) {
        self.interest.get_or_insert_with(Interest::default);
    }

    /// Counts `filter` as subscribed here without a subscription: a cluster node that waits for
    /// a session subscribed to it (see `Awaiting::interest`). Undone by
    /// [`Router::release_interest`].
    pub(crate) fn hold_interest(&mut self, filter: &ByteString) {
        if let Some(interest) = self.interest.as_mut() {
            interest.add(filter);
        }
    }

    /// Undoes one [`Router::hold_interest`] of `filter`.
    pub(crate) fn release_interest(&mut self, filter: &str) {
        if let Some(interest) = self.interest.as_mut() {
            interest.remove(filter);
        }
    }

    /// The filters (whole, `$share/...` included) whose subscription count changed as
    /// [`Interest`] says, with the new count, in order; empty unless tracking.
    pub(crate) fn interest_changes(&mut self) -> Vec<(ByteString, u32)> {
        self.interest
            .as_mut()
            .map(|i| std::mem::take(&mut i.changes))
            .unwrap_or_default()
    }

    /// Adds or replaces `sid`'s subscription to `filter` (a `$share/...` filter joins its group).
    pub(crate) fn insert(&mut self, filter: &ByteString, sid: SessionId, sub: Sub) {
        let added = match split_shared(filter) {
            Some((_, matched)) => self.shared.insert(filter, matched, sid, sub),
            None => self.plain.insert(filter, sid, sub).is_none(),
        };
        if let (true, Some(interest)) = (added, self.interest.as_mut()) {
            interest.add(filter);
        }
    }

    /// Removes `sid`'s subscription to `filter`.
    pub(crate) fn remove(&mut self, filter: &str, sid: SessionId) {
        let removed = match split_shared(filter) {
            Some((_, matched)) => self.shared.remove(filter, matched, sid),
            None => self.plain.remove(filter, &sid).is_some(),
        };
        if let (true, Some(interest)) = (removed, self.interest.as_mut()) {
            interest.remove(filter);
        }
    }
}
