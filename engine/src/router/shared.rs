//! Shared subscriptions (`$share/{group}/{filter}`): each message matching a group's filter goes to
//! one member of the group, chosen by the configured strategy.
//!
//! A group is identified by its whole subscription filter (`$share/g/a/+`): two groups with the same
//! name and different filters are different groups, as MQTT 5.0 §4.8.2 says. Members are sessions;
//! online members are preferred, and when every member is offline the message is queued on one of
//! them (the engine moves it to the first member that comes back, see `engine/shared.rs`).

use std::collections::BTreeMap;

use bytestring::ByteString;

use super::TopicTrie;
use crate::config::SharedStrategy;
use crate::rng::Rng;
use crate::session::{SessionId, Sub};

/// One group: its members and where the strategy left off.
#[derive(Debug, Default)]
struct Group {
    members: BTreeMap<SessionId, Sub>,
    /// The member chosen last: round robin continues after it, sticky stays with it while it is online.
    last: Option<SessionId>,
}

/// Every shared subscription group, matchable against topic names.
#[derive(Debug, Default)]
pub(crate) struct SharedGroups {
    /// Groups by the filter they match, keyed by their whole `$share/...` filter.
    trie: TopicTrie<ByteString, ()>,
    groups: BTreeMap<ByteString, Group>,
    members: usize,
}

/// What a message routed to a group needs: the group, the chosen member and its subscription.
#[derive(Clone, Debug)]
pub(crate) struct Choice {
    pub(crate) group: ByteString,
    pub(crate) sid: SessionId,
    pub(crate) sub: Sub,
}

impl SharedGroups {
    /// How many (group, member) subscriptions there are.
    pub(crate) fn len(&self) -> usize {
        self.members
    }

    /// Adds `sid` to the group of `full` (a `$share/{group}/{filter}` filter) with `sub`, or updates
    /// its options; `filter` is the part matched against topics. Returns whether `sid` joined.
    pub(crate) fn insert(
        &mut self,
        full: &ByteString,
        filter: &str,
        sid: SessionId,
        sub: Sub,
    ) -> bool {
        let group = self.groups.entry(full.clone()).or_insert_with(|| {
            self.trie.insert(filter, full.clone(), ());
            Group::default()
        });
        let joined = group.members.insert(sid, sub).is_none();
        if joined {
            self.members += 1;
        }
        joined
    }

    /// How many members `group` has.
    pub(crate) fn member_count(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |g| g.members.len())
    }

    /// Removes `sid` from the group of `full`; returns whether it was a member.
    pub(crate) fn remove(&mut self, full: &str, filter: &str, sid: SessionId) -> bool {
        let Some(group) = self.groups.get_mut(full) else {
            return false;
        };
        if group.members.remove(&sid).is_none() {
            return false;
        }
        self.members -= 1;
        if group.last == Some(sid) {
            // Round robin continues from the member before; any value works for sticky.
            group.last = group.members.range(..sid).next_back().map(|(s, _)| *s);
        }
        if group.members.is_empty() {
            if let Some((key, _)) = self.groups.remove_entry(full) {
                self.trie.remove(filter, &key);
            }
        }
        true
    }

    /// The members of `group`, in order.
    pub(crate) fn members(&self, group: &str) -> Vec<SessionId> {
        self.groups
            .get(group)
            .map(|g| g.members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The groups whose filter matches `topic`, in a deterministic order.
    pub(crate) fn matching(&self, topic: &str) -> Vec<ByteString> {
        let mut out = Vec::new();
        self.trie
            .for_each_match(topic, |group, ()| out.push(group.clone()));
        out
    }

    /// Chooses the member of `group` to receive a message on `topic` from `publisher`: among the
    /// members `online` says are online (all members if none is), never `exclude`.
    pub(crate) fn choose(
        &mut self,
        group: &ByteString,
        pick: &Pick<'_>,
        online: impl Fn(SessionId) -> bool,
        rng: &mut Rng,
    ) -> Option<Choice> {
        let g = self.groups.get_mut(group)?;
        let eligible: Vec<SessionId> = g
            .members
            .keys()
            .copied()
            .filter(|sid| Some(*sid) != pick.exclude)
            .collect();
        let online: Vec<SessionId> = eligible.iter().copied().filter(|s| online(*s)).collect();
        let candidates = if online.is_empty() { eligible } else { online };
        let len = candidates.len();
        if len == 0 {
            return None;
        }
        let after_last = || {
            // The first candidate after the last chosen member, wrapping around.
            g.last
                .and_then(|last| candidates.iter().position(|s| *s > last))
                .unwrap_or(0)
        };
        let index = match pick.strategy {
            SharedStrategy::RoundRobin => after_last(),
            SharedStrategy::Sticky => g
                .last
                .and_then(|last| candidates.iter().position(|s| *s == last))
                .unwrap_or_else(after_last),
            SharedStrategy::Random => usize::try_from(rng.below(len as u64)).unwrap_or(0),
            SharedStrategy::HashTopic => bucket(pick.topic.as_bytes(), len),
            SharedStrategy::HashPublisher => bucket(pick.publisher.unwrap_or("").as_bytes(), len),
        };
        let sid = candidates[index.min(len - 1)];
        g.last = Some(sid);
        let sub = g.members.get(&sid)?.clone();
        Some(Choice {
            group: group.clone(),
            sid,
            sub,
        })
    }
}

/// What a choice depends on besides the group.
pub(crate) struct Pick<'a> {
    pub(crate) strategy: SharedStrategy,
    pub(crate) topic: &'a str,
    pub(crate) publisher: Option<&'a str>,
    /// A member that must not get it (the one handing it over).
    pub(crate) exclude: Option<SessionId>,
}

/// `key`'s bucket among `len` (FNV-1a: stable across runs and platforms, unlike std's hasher).
fn bucket(key: &[u8], len: usize) -> usize {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % len as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::SubscriptionOptions;

    fn sub() -> Sub {
        Sub {
            options: SubscriptionOptions::default(),
            id: None,
        }
    }

    fn groups(members: &[SessionId]) -> (SharedGroups, ByteString) {
        let mut g = SharedGroups::default();
        let full = ByteString::from("$share/g/a/+");
        for sid in members {
            g.insert(&full, "a/+", *sid, sub());
        }
        (g, full)
    }

    fn picks(strategy: SharedStrategy, online: &[SessionId], n: usize) -> Vec<SessionId> {
        let (mut g, full) = groups(&[1, 2, 3]);
        let mut rng = Rng::new(1);
        let pick = Pick {
            strategy,
            topic: "a/b",
            publisher: Some("p"),
            exclude: None,
        };
        (0..n)
            .filter_map(|_| g.choose(&full, &pick, |s| online.contains(&s), &mut rng))
            .map(|c| c.sid)
            .collect()
    }

    #[test]
    fn round_robin_cycles_through_online_members() {
        assert_eq!(
            picks(SharedStrategy::RoundRobin, &[1, 2, 3], 4),
            [1, 2, 3, 1]
        );
        assert_eq!(picks(SharedStrategy::RoundRobin, &[1, 3], 3), [1, 3, 1]);
        // Nobody online: still chosen (the message is queued there), in turn.
        assert_eq!(picks(SharedStrategy::RoundRobin, &[], 2), [1, 2]);
    }

    #[test]
    fn sticky_and_hash_keep_choosing_the_same_member() {
        let s = picks(SharedStrategy::Sticky, &[2, 3], 3);
        assert!(s.iter().all(|x| *x == s[0]), "{s:?}");
        let h = picks(SharedStrategy::HashTopic, &[1, 2, 3], 3);
        assert!(h.iter().all(|x| *x == h[0]), "{h:?}");
        let p = picks(SharedStrategy::HashPublisher, &[1, 2, 3], 3);
        assert!(p.iter().all(|x| *x == p[0]), "{p:?}");
        let r = picks(SharedStrategy::Random, &[1, 2, 3], 30);
        assert!(r.contains(&1) && r.contains(&2) && r.contains(&3), "{r:?}");
    }

    #[test]
    fn exclusion_and_removal() {
        let (mut g, full) = groups(&[1, 2]);
        let mut rng = Rng::new(1);
        let pick = Pick {
            strategy: SharedStrategy::RoundRobin,
            topic: "a/b",
            publisher: None,
            exclude: Some(1),
        };
        let chosen = g.choose(&full, &pick, |_| true, &mut rng).map(|c| c.sid);
        assert_eq!(chosen, Some(2));
        assert_eq!(g.len(), 2);
        assert!(g.remove("$share/g/a/+", "a/+", 2));
        assert!(g.choose(&full, &pick, |_| true, &mut rng).is_none());
        assert!(g.remove("$share/g/a/+", "a/+", 1));
        assert!(g.matching("a/b").is_empty(), "empty groups are dropped");
        assert_eq!(g.len(), 0);
    }
}
