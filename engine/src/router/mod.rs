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

/// How many local subscriptions each filter has, and the filters that gained their first or lost their
/// last since the other engines were last told.
#[derive(Debug, Default)]
struct Interest {
    counts: BTreeMap<ByteString, u32>,
    changes: Vec<(ByteString, bool)>,
}

impl Interest {
    fn add(&mut self, filter: &ByteString) {
        let count = self.counts.entry(filter.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.changes.push((filter.clone(), true));
        }
    }

    fn remove(&mut self, filter: &str) {
        let Some(count) = self.counts.get_mut(filter) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            if let Some((filter, _)) = self.counts.remove_entry(filter) {
                self.changes.push((filter, false));
            }
        }
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

    /// The filters (whole, `$share/...` included) that gained their first subscription (`true`) or
    /// lost their last (`false`) since the last call, in order; empty unless tracking.
    pub(crate) fn interest_changes(&mut self) -> Vec<(ByteString, bool)> {
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
