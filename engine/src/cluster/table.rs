//! The replicated state every node holds the same copy of, built by applying the committed log in
//! order: who owns each client identifier, and which filters each node's sessions subscribe to.
//! (Retained messages are applied to the engine's retained store directly.)

use std::collections::{BTreeMap, BTreeSet};

use bytestring::ByteString;

use super::wire::Command;
use super::MemberAddress;
use crate::codec::Will;

/// The applied state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Table {
    /// Client identifier → the node that owns its session.
    pub(crate) owners: BTreeMap<ByteString, u16>,
    /// Client identifier → the index of the entry that gave its owner the session: a claim of
    /// a node that did not own it, or an adoption. Its keys are those of `owners`, always (both
    /// change only through [`Table::set_owner`] and [`Table::drop_owner`]). A session write
    /// applies only if its node had applied that entry when it made the write (see
    /// [`Table::writes_to`]).
    pub(crate) owned_since: BTreeMap<ByteString, u64>,
    /// The reverse of `owned_since`: entry index → the clients whose owner it changed, for
    /// [`Table::moved_since`]. Derived (a snapshot rebuilds it), so never encoded.
    pub(crate) moved_at: BTreeMap<u64, BTreeSet<ByteString>>,
    /// The last claim applied per (client identifier, node): (incarnation, token).
    pub(crate) claims: BTreeMap<(ByteString, u16), (u64, u64)>,
    /// Each node's current incarnation, as its last `Start` said.
    pub(crate) incarnations: BTreeMap<u16, u64>,
    /// (node, filter) → (version, subscription count).
    pub(crate) interest: BTreeMap<(u16, ByteString), (u64, u32)>,
    /// Topic → the entry that set its retained message last (see [`Table::retain`]).
    pub(crate) retained_by: BTreeMap<ByteString, RetainedBy>,
    /// The last [`Command::Session`] applied per node, in its current incarnation.
    pub(crate) session_seq: BTreeMap<u16, u64>,
    /// The addresses of the nodes added through the admin API (the founding members' are in each
    /// node's configuration).
    pub(crate) members: BTreeMap<u16, MemberAddress>,
    /// Nodes declared down ([`Command::Down`]): node → (its incarnation then, the node that
    /// adopted its sessions). Such a node owns nothing and is routed nothing, and its claims and
    /// interest are ignored, until it starts again or says it is back ([`Command::Up`]).
    pub(crate) down: BTreeMap<u16, (u64, u16)>,
    /// How many `Down`s were applied: a publish routed after one carries this count, and its
    /// receiver handles it only once it applied as many (so the adopter holds the sessions the
    /// publish was routed to it for).
    pub(crate) downs: u64,
    /// The wills of clients whose sessions end with their connection, as their claim carried
    /// them: client identifier → (owner, its incarnation, the will). Whoever takes one out of
    /// the table through the log publishes it, so it is published once: the adopter of a node
    /// declared down, or the node itself when it starts again. A release or a newer claim of the
    /// client drops it (the owner published it, or had no reason to). Persistent sessions' wills
    /// travel in their copies instead.
    pub(crate) wills: BTreeMap<ByteString, (u16, u64, Will)>,
    /// The wills another node's claim took out of `wills`, by (client identifier, node,
    /// incarnation, token of the claim they came with). The claim says nothing of the connection
    /// that will belongs to: its node may be dead (the client reconnected elsewhere before the
    /// node was declared down) or about to see the claim and close it. So the will stays due,
    /// and is taken out like one in `wills`: by that node's release of the claim (it publishes
    /// it), its next `Start` (it publishes it) or its `Down` (the adopter publishes it).
    pub(crate) replaced: BTreeMap<(ByteString, u16, u64, u64), Will>,
}

/// The `Retain` entry that set a topic's retained message (see [`Table::retain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetainedBy {
    /// The node that proposed it.
    pub(crate) node: u16,
    /// Its incarnation then.
    pub(crate) incarnation: u64,
    /// The proposal's token.
    pub(crate) token: u64,
    /// How far that node had applied the log when it proposed it.
    pub(crate) seen: u64,
    /// The entry's own index.
    pub(crate) at: u64,
}

/// What declaring a node down changed (see [`Table::adopt`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Adoption {
    /// The clients whose sessions the adopter now owns (they had a copy).
    pub(crate) moved: Vec<ByteString>,
    /// Applied counts that changed: (node, filter, count).
    pub(crate) interest: Vec<(u16, ByteString, u32)>,
    /// The wills of the node's clients whose sessions died with it, for the adopter to publish.
    pub(crate) wills: Vec<(ByteString, Will)>,
}

/// What applying a command changed, for the engine to act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing the engine must act on.
    None,
    /// `client_id` is owned by `to` (for its claim `token` of `incarnation`), and was by `from`.
    Owner {
        client_id: ByteString,
        from: Option<u16>,
        to: u16,
        incarnation: u64,
        token: u64,
    },
    /// `node`'s count for `filter` is now `count`.
    Interest {
        node: u16,
        filter: ByteString,
        count: u32,
    },
    /// `node` restarted: these filters of its old incarnation are gone, and so are the
    /// connections its old incarnation held, whose wills `node` now publishes.
    Forgotten {
        node: u16,
        filters: Vec<ByteString>,
        wills: Vec<(ByteString, Will)>,
    },
    /// `node`'s session writes number `seq` are next in order: apply them.
    SessionWrites { node: u16, seq: u64 },
    /// `node` is down, `adopter` takes its sessions: call [`Table::adopt`].
    Down { node: u16, adopter: u16 },
    /// `node`, not declared down, publishes the wills it kept back.
    WillsDue { node: u16 },
    /// `node`'s release of `client_id` (under a claim of `incarnation`) took its connection's
    /// will out of the table: if the connection ended badly, `node` publishes it now.
    Released {
        client_id: ByteString,
        node: u16,
        claim: (u64, u64),
    },
}

impl Table {
    /// Applies one committed command, the log's entry `index`. Retained messages are the
    /// caller's.
    pub(crate) fn apply(&mut self, index: u64, command: &Command) -> Change {
        match command {
            Command::Claim {
                client_id,
                node,
                incarnation,
                token,
                will,
            } => {
                if self.is_down(*node, *incarnation) {
                    return Change::None;
                }
                let key = (client_id.clone(), *node);
                if let Some((inc, t)) = self.claims.get(&key) {
                    if inc == incarnation && t >= token {
                        return Change::None;
                    }
                }
                let before = self.wills.remove(client_id);
                self.claims.insert(key, (*incarnation, *token));
                let from = self.set_owner(client_id, *node, index);
                if let Some(will) = will {
                    let entry = (*node, *incarnation, (**will).clone());
                    self.wills.insert(client_id.clone(), entry);
                }
                // The connection before, if any, is replaced. On the same node, its will is that
                // node's business now (it takes the connection over); on another, it stays due.
                if let Some((n, inc, will)) = before.filter(|(n, _, _)| n != node) {
                    let claim = self.claims.get(&(client_id.clone(), n));
                    if let Some(&(_, token)) = claim.filter(|(i, _)| *i == inc) {
                        self.replaced
                            .insert((client_id.clone(), n, inc, token), will);
                    }
                }
                Change::Owner {
                    client_id: client_id.clone(),
                    from,
                    to: *node,
                    incarnation: *incarnation,
                    token: *token,
                }
            }
            Command::Release {
                client_id,
                node,
                incarnation,
                token,
                seen,
            } => {
                let current = self.claims.get(&(client_id.clone(), *node));
                if self.owners.get(client_id) == Some(node)
                    && current == Some(&(*incarnation, *token))
                    && self.owned_since.get(client_id).is_some_and(|i| i <= seen)
                {
                    self.drop_owner(client_id);
                    self.forget_claims(client_id);
                    if self.wills.remove(client_id).is_some() {
                        return Change::Released {
                            client_id: client_id.clone(),
                            node: *node,
                            claim: (*incarnation, *token),
                        };
                    }
                }
                let key = (client_id.clone(), *node, *incarnation, *token);
                if self.replaced.remove(&key).is_some() {
                    return Change::Released {
                        client_id: client_id.clone(),
                        node: *node,
                        claim: (*incarnation, *token),
                    };
                }
                Change::None
            }
            Command::Start { node, incarnation } => {
                if self.incarnations.insert(*node, *incarnation) == Some(*incarnation) {
                    // A resent Start must not forget what the incarnation subscribed since.
                    return Change::None;
                }
                self.session_seq.remove(node);
                self.down.remove(node);
                let mut filters = Vec::new();
                self.interest.retain(|(n, filter), _| {
                    if n == node {
                        filters.push(filter.clone());
                    }
                    n != node
                });
                let mut wills = Vec::new();
                self.wills.retain(|client, (n, inc, will)| {
                    let old = n == node && inc != incarnation;
                    if old {
                        wills.push((client.clone(), will.clone()));
                    }
                    !old
                });
                self.replaced.retain(|(client, n, inc, _), will| {
                    let old = n == node && inc != incarnation;
                    if old {
                        wills.push((client.clone(), will.clone()));
                    }
                    !old
                });
                Change::Forgotten {
                    node: *node,
                    filters,
                    wills,
                }
            }
            Command::Interest {
                node,
                incarnation,
                version,
                filter,
                count,
            } => {
                if self.incarnations.get(node) != Some(incarnation)
                    || self.is_down(*node, *incarnation)
                {
                    return Change::None;
                }
                let key = (*node, filter.clone());
                if self.interest.get(&key).is_some_and(|(v, _)| v >= version) {
                    return Change::None;
                }
                self.interest.insert(key, (*version, *count));
                Change::Interest {
                    node: *node,
                    filter: filter.clone(),
                    count: *count,
                }
            }
            Command::Retain { .. } => Change::None,
            Command::Wills { node, incarnation } => {
                if self.incarnations.get(node) != Some(incarnation)
                    || self.is_down(*node, *incarnation)
                {
                    return Change::None;
                }
                Change::WillsDue { node: *node }
            }
            Command::Down {
                node,
                incarnation,
                adopter,
            } => {
                let adopter_live =
                    self.incarnations.contains_key(adopter) && !self.down.contains_key(adopter);
                if node == adopter
                    || self.incarnations.get(node) != Some(incarnation)
                    || self.down.contains_key(node)
                    || !adopter_live
                {
                    return Change::None;
                }
                self.down.insert(*node, (*incarnation, *adopter));
                self.downs += 1;
                Change::Down {
                    node: *node,
                    adopter: *adopter,
                }
            }
            Command::Up { node, incarnation } => {
                if self.is_down(*node, *incarnation) {
                    self.down.remove(node);
                }
                Change::None
            }
            Command::Session {
                node,
                incarnation,
                seq,
                ..
            } => {
                if self.incarnations.get(node) != Some(incarnation) {
                    return Change::None;
                }
                let last = self.session_seq.entry(*node).or_insert(0);
                if *seq != *last + 1 {
                    // A duplicate (at or below), or past a gap its proposer will fill by
                    // proposing again from the gap.
                    return Change::None;
                }
                *last = *seq;
                Change::SessionWrites {
                    node: *node,
                    seq: *seq,
                }
            }
        }
    }

    /// Whether `node`'s `incarnation` is declared down.
    pub(crate) fn is_down(&self, node: u16, incarnation: u64) -> bool {
        self.down
            .get(&node)
            .is_some_and(|(inc, _)| *inc == incarnation)
    }

    /// Hands the down `node`'s clients to `adopter` (by the `Down` at `index`): those with a copy of their session
    /// (`has_copy`) become the adopter's, the others (their sessions died with the node) nobody's.
    /// The wills of the sessions that died go to the adopter to publish, with the wills of the
    /// node's connections that other nodes' claims replaced; those of the sessions it takes in
    /// are in their copies.
    /// The node's interest in plain filters becomes the adopter's, added to its own, so publishes
    /// reach the adopted sessions at once; the adopter corrects its counts to what its sessions
    /// subscribe to by its next interest entries. Its shared-group counts go: any other member
    /// may take those messages.
    pub(crate) fn adopt(
        &mut self,
        index: u64,
        node: u16,
        adopter: u16,
        has_copy: impl Fn(&ByteString) -> bool,
    ) -> Adoption {
        let mut adoption = Adoption::default();
        let adopter_incarnation = self.incarnations.get(&adopter).copied().unwrap_or(0);
        let clients: Vec<ByteString> = self
            .owners
            .iter()
            .filter(|(_, owner)| **owner == node)
            .map(|(c, _)| c.clone())
            .collect();
        for client in clients {
            let will = self.wills.remove(&client).map(|(_, _, will)| will);
            if has_copy(&client) {
                self.set_owner(&client, adopter, index);
                let key = (client.clone(), adopter);
                // The adopter releases it under this claim; a claim of its own in this
                // incarnation is newer than none, so token 0 never shadows one.
                let current = self
                    .claims
                    .get(&key)
                    .filter(|(inc, _)| *inc == adopter_incarnation);
                if current.is_none() {
                    self.claims.insert(key, (adopter_incarnation, 0));
                }
                adoption.moved.push(client);
            } else {
                self.drop_owner(&client);
                self.forget_claims(&client);
                if let Some(will) = will {
                    adoption.wills.push((client, will));
                }
            }
        }
        self.replaced.retain(|(client, n, _, _), will| {
            if *n == node {
                adoption.wills.push((client.clone(), will.clone()));
            }
            *n != node
        });
        let filters: Vec<(ByteString, u32)> = self
            .interest
            .iter()
            .filter(|((n, _), _)| *n == node)
            .map(|((_, f), (_, count))| (f.clone(), *count))
            .collect();
        for (filter, count) in filters {
            self.interest.remove(&(node, filter.clone()));
            adoption.interest.push((node, filter.clone(), 0));
            if count > 0 && crate::codec::split_shared(&filter).is_none() {
                let entry = self
                    .interest
                    .entry((adopter, filter.clone()))
                    .or_insert((0, 0));
                entry.1 += count;
                adoption.interest.push((adopter, filter, entry.1));
            }
        }
        adoption
    }

    /// Makes `node` the owner of `client_id` by the entry at `index`; returns the owner before.
    /// The session has been `node`'s since then, unless it already was.
    fn set_owner(&mut self, client_id: &ByteString, node: u16, index: u64) -> Option<u16> {
        let before = self.owners.insert(client_id.clone(), node);
        if before != Some(node) {
            let was = self.owned_since.insert(client_id.clone(), index);
            self.unmark_moved(client_id, was);
            self.mark_moved(client_id.clone(), index);
        }
        before
    }

    /// Leaves `client_id` without an owner.
    fn drop_owner(&mut self, client_id: &ByteString) {
        self.owners.remove(client_id);
        let was = self.owned_since.remove(client_id);
        self.unmark_moved(client_id, was);
    }

    /// Records in `moved_at` that the entry at `index` gave `client_id` its owner.
    pub(crate) fn mark_moved(&mut self, client_id: ByteString, index: u64) {
        self.moved_at.entry(index).or_default().insert(client_id);
    }

    fn unmark_moved(&mut self, client_id: &ByteString, index: Option<u64>) {
        let Some(index) = index else {
            return;
        };
        if let Some(clients) = self.moved_at.get_mut(&index) {
            clients.remove(client_id);
            if clients.is_empty() {
                self.moved_at.remove(&index);
            }
        }
    }

    /// The clients whose owner changed after the log's entry `index`, and has not since.
    pub(crate) fn moved_since(&self, index: u64) -> impl Iterator<Item = &ByteString> {
        (self.moved_at.range(index.saturating_add(1)..)).flat_map(|(_, clients)| clients)
    }

    /// Whether `node`'s write to `client_id`'s session, made when it had applied the log up to
    /// `seen`, applies: only the owner in force writes a session, and only what it wrote since
    /// the entry that gave it the session. A node that owned the session before and still
    /// thought so (it restarted from its store behind the log, or was cut off) may have written
    /// it after the client had moved away and back; the session's copies took in the owners'
    /// writes in between, and the stale write would overwrite them (seed 459).
    pub(crate) fn writes_to(&self, client_id: &ByteString, node: u16, seen: u64) -> bool {
        self.owners.get(client_id) == Some(&node)
            && self.owned_since.get(client_id).is_some_and(|i| *i <= seen)
    }

    /// Forgets every node's claim of `client_id`: the range of its keys, not a scan of the whole
    /// map, as a node declared down can take its thousands of clients with it at once.
    fn forget_claims(&mut self, client_id: &ByteString) {
        let first = (client_id.clone(), u16::MIN);
        let last = (client_id.clone(), u16::MAX);
        let keys: Vec<(ByteString, u16)> = self
            .claims
            .range(first..=last)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.claims.remove(&key);
        }
    }

    /// Whether the retained message `by` proposed for `topic` replaces the one in force; records
    /// it if so. One node incarnation's messages take effect in the order it made them (a resent
    /// older one is ignored). Another node's replaces the one in force if that one had applied
    /// where it was proposed, or else if it was proposed knowing more of the log: the log index
    /// a node had applied stands for when it proposed, so a message held up in a partition,
    /// whose publisher may have given up on it and published again elsewhere, does not win over
    /// the newer one, whichever commits first (seeds 47 and 3837).
    pub(crate) fn retain(&mut self, topic: &ByteString, by: RetainedBy) -> bool {
        if let Some(current) = self.retained_by.get(topic) {
            let same = (current.node, current.incarnation) == (by.node, by.incarnation);
            let unseen = current.at > by.seen;
            if (same && current.token >= by.token) || (!same && unseen && by.seen <= current.seen) {
                return false;
            }
        }
        self.retained_by.insert(topic.clone(), by);
        true
    }

    /// `node`'s applied count for `filter`.
    pub(crate) fn count(&self, node: u16, filter: &ByteString) -> u32 {
        self.interest
            .get(&(node, filter.clone()))
            .map_or(0, |(_, c)| *c)
    }

    /// The newest version of `node`'s applied interest entries (0 without any). A node numbers
    /// its interest entries across filters, so this tells the entries it made later.
    pub(crate) fn interest_version(&self, node: u16) -> u64 {
        (self.interest.range((node, ByteString::new())..))
            .take_while(|((n, _), _)| *n == node)
            .map(|(_, (version, _))| *version)
            .max()
            .unwrap_or(0)
    }

    /// Whether `node`'s applied interest in `filter` is a non-zero count by an entry newer than
    /// version `after`.
    pub(crate) fn announced_since(&self, node: u16, filter: &ByteString, after: u64) -> bool {
        self.interest
            .get(&(node, filter.clone()))
            .is_some_and(|(version, count)| *version > after && *count > 0)
    }

    /// Filters `node` has a non-zero applied count for.
    pub(crate) fn filters_of(&self, node: u16) -> impl Iterator<Item = (&ByteString, u32)> {
        self.interest
            .iter()
            .filter(move |((n, _), (_, c))| *n == node && *c > 0)
            .map(|((_, f), (_, c))| (f, *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(version: u64, count: u32) -> Command {
        Command::Interest {
            node: 2,
            incarnation: 9,
            version,
            filter: "a/#".into(),
            count,
        }
    }

    #[test]
    fn interest_keeps_the_newest_version_of_the_current_incarnation() {
        let mut t = Table::default();
        assert_eq!(
            t.apply(0, &interest(1, 1)),
            Change::None,
            "unknown incarnation"
        );
        t.apply(
            0,
            &Command::Start {
                node: 2,
                incarnation: 9,
            },
        );
        t.apply(0, &interest(2, 1));
        assert_eq!(t.apply(0, &interest(1, 0)), Change::None, "older version");
        assert_eq!(t.count(2, &"a/#".into()), 1);
        let resent = Command::Start {
            node: 2,
            incarnation: 9,
        };
        assert_eq!(t.apply(0, &resent), Change::None, "a resent Start");
        assert_eq!(t.count(2, &"a/#".into()), 1);
        let restart = t.apply(
            0,
            &Command::Start {
                node: 2,
                incarnation: 10,
            },
        );
        assert_eq!(
            restart,
            Change::Forgotten {
                node: 2,
                filters: vec!["a/#".into()],
                wills: Vec::new(),
            }
        );
        assert_eq!(t.count(2, &"a/#".into()), 0);
    }

    #[test]
    fn interest_announced_since_a_version_ignores_what_came_before() {
        let mut t = Table::default();
        let start = Command::Start {
            node: 2,
            incarnation: 9,
        };
        t.apply(0, &start);
        assert_eq!(t.interest_version(2), 0);
        t.apply(0, &interest(3, 1));
        let before = t.interest_version(2);
        assert_eq!(before, 3);
        let filter = "a/#".into();
        assert!(t.announced_since(2, &filter, 0));
        assert!(!t.announced_since(2, &filter, before), "the old interest");
        t.apply(0, &interest(4, 0));
        assert!(!t.announced_since(2, &filter, before), "a decrement");
        t.apply(0, &interest(5, 1));
        assert!(t.announced_since(2, &filter, before));
        assert_eq!(t.interest_version(1), 0, "another node's");
    }

    #[test]
    fn a_retained_message_replaces_only_what_its_node_had_seen_or_its_own_older_ones() {
        let by = |node, token, seen, at| RetainedBy {
            node,
            incarnation: 1,
            token,
            seen,
            at,
        };
        let mut t = Table::default();
        let topic: ByteString = "r/x".into();
        let steps = [
            (by(1, 5, 3, 10), true, "the first"),
            (by(1, 4, 3, 11), false, "node 1's older one, resent"),
            (by(1, 6, 3, 12), true, "node 1's next, unseen or not"),
            (
                by(2, 1, 2, 13),
                false,
                "node 2 had not applied it and knew less",
            ),
            (
                by(2, 2, 11, 14),
                true,
                "node 2 had not applied it but knew more",
            ),
            (
                by(1, 7, 11, 15),
                false,
                "node 1 had not applied it and knew as much",
            ),
            (by(1, 8, 14, 16), true, "node 1 had applied node 2's"),
        ];
        for (proposal, takes_effect, why) in steps {
            assert_eq!(t.retain(&topic, proposal), takes_effect, "{why}");
        }
        assert_eq!(t.retained_by.get(&topic), Some(&by(1, 8, 14, 16)));
        let other: ByteString = "r/y".into();
        assert!(t.retain(&other, by(2, 3, 0, 16)), "topics are apart");
    }

    #[test]
    fn session_writes_apply_once_in_order_per_incarnation() {
        let mut t = Table::default();
        let writes = |incarnation, seq| Command::Session {
            node: 2,
            incarnation,
            seq,
            writes: Vec::new(),
        };
        let start = |incarnation| Command::Start {
            node: 2,
            incarnation,
        };
        assert_eq!(t.apply(0, &writes(9, 1)), Change::None, "before its Start");
        t.apply(0, &start(9));
        let next = |seq| Change::SessionWrites { node: 2, seq };
        assert_eq!(t.apply(0, &writes(9, 2)), Change::None, "past a gap");
        assert_eq!(t.apply(0, &writes(9, 1)), next(1));
        assert_eq!(t.apply(0, &writes(9, 1)), Change::None, "a duplicate");
        assert_eq!(t.apply(0, &writes(9, 2)), next(2));
        t.apply(0, &start(10));
        assert_eq!(
            t.apply(0, &writes(9, 3)),
            Change::None,
            "an old incarnation"
        );
        assert_eq!(t.apply(0, &writes(10, 1)), next(1), "counts again from 1");
    }

    /// Node `node`'s claim `token` of client "c", in its incarnation 1.
    fn claim(node: u16, token: u64) -> Command {
        Command::Claim {
            client_id: "c".into(),
            node,
            incarnation: 1,
            token,
            will: None,
        }
    }

    #[test]
    fn one_owner_per_client_and_release_only_by_the_owner() {
        let mut t = Table::default();
        t.apply(0, &claim(1, 1));
        assert_eq!(
            t.apply(0, &claim(2, 1)),
            Change::Owner {
                client_id: "c".into(),
                from: Some(1),
                to: 2,
                incarnation: 1,
                token: 1,
            }
        );
        assert_eq!(t.apply(0, &claim(1, 1)), Change::None, "a late duplicate");
        assert_eq!(t.owners.get("c"), Some(&2));
        let release = |node, token| Command::Release {
            client_id: "c".into(),
            node,
            incarnation: 1,
            token,
            seen: u64::MAX,
        };
        t.apply(0, &release(1, 1));
        assert_eq!(t.owners.get("c"), Some(&2), "not the owner");
        t.apply(0, &claim(2, 2));
        t.apply(0, &release(2, 1));
        assert_eq!(
            t.owners.get("c"),
            Some(&2),
            "a claim newer than the one released"
        );
        t.apply(0, &release(2, 2));
        assert!(t.owners.is_empty());
    }

    #[test]
    fn a_release_ends_only_an_ownership_its_node_knew_of() {
        let mut t = Table::default();
        let release = |token, seen| Command::Release {
            client_id: "c".into(),
            node: 1,
            incarnation: 1,
            token,
            seen,
        };
        t.apply(10, &claim(1, 6));
        // Node 2 takes the client; node 1, taking its connection over, releases claim 6 (for
        // the will the claim replaced) knowing the log as far as 20.
        t.apply(20, &claim(2, 1));
        // Node 2's client ends: its release forgets every claim of the client.
        t.apply(
            30,
            &Command::Release {
                client_id: "c".into(),
                node: 2,
                incarnation: 1,
                token: 1,
                seen: 30,
            },
        );
        assert!(t.owners.is_empty());
        // A resend of node 1's claim 6 applies again: node 1 serves the client under it.
        t.apply(40, &claim(1, 6));
        assert_eq!(t.owners.get("c"), Some(&1));
        t.apply(50, &release(6, 20));
        assert_eq!(
            t.owners.get("c"),
            Some(&1),
            "released before it owned again"
        );
        t.apply(60, &release(6, 45));
        assert!(t.owners.is_empty(), "released knowing it owned");
    }

    #[test]
    fn a_session_write_applies_only_if_its_node_owned_the_session_since_it_was_made() {
        let mut t = Table::default();
        for n in [1, 3] {
            t.apply(
                1,
                &Command::Start {
                    node: n,
                    incarnation: 1,
                },
            );
        }
        let c: ByteString = "c".into();
        t.apply(5, &claim(1, 1));
        assert!(t.writes_to(&c, 1, 5), "made once the claim applied");
        assert!(!t.writes_to(&c, 1, 4), "made before its claim applied");
        t.apply(7, &claim(3, 1));
        assert!(!t.writes_to(&c, 1, 6), "not the owner any more");
        t.apply(9, &claim(1, 2));
        assert!(
            !t.writes_to(&c, 1, 6),
            "made before the client moved away and back (seed 459)"
        );
        assert!(t.writes_to(&c, 1, 9));
        t.apply(12, &claim(1, 3));
        assert!(
            t.writes_to(&c, 1, 10),
            "a new claim of the owner keeps what it wrote meanwhile"
        );
        t.apply(
            13,
            &Command::Down {
                node: 1,
                incarnation: 1,
                adopter: 3,
            },
        );
        t.adopt(13, 1, 3, |_| true);
        assert!(!t.writes_to(&c, 3, 12), "made before the adoption");
        assert!(t.writes_to(&c, 3, 13));
        // Node 3 releases it under its claim of before, which the adoption kept.
        t.apply(
            14,
            &Command::Release {
                client_id: c.clone(),
                node: 3,
                incarnation: 1,
                token: 1,
                seen: u64::MAX,
            },
        );
        assert!(!t.writes_to(&c, 3, 14), "nobody's");
        assert!(t.owned_since.is_empty());
    }

    fn will(payload: &'static str) -> Will {
        Will {
            topic: crate::codec::TopicName::new("status").expect("a topic"),
            payload: bytes::Bytes::from_static(payload.as_bytes()),
            qos: crate::codec::QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    fn claim_with_will(client: &str, node: u16, token: u64, payload: &'static str) -> Command {
        Command::Claim {
            client_id: client.into(),
            node,
            incarnation: 1,
            token,
            will: Some(Box::new(will(payload))),
        }
    }

    #[test]
    fn a_claims_will_lives_until_release_or_the_next_claim_and_is_handed_out_once() {
        let mut t = Table::default();
        for node in [1, 2] {
            t.apply(
                0,
                &Command::Start {
                    node,
                    incarnation: 1,
                },
            );
        }
        t.apply(0, &claim_with_will("a", 1, 1, "a-first"));
        // A newer claim replaces the will (its owner dealt with the one before).
        t.apply(0, &claim_with_will("a", 1, 2, "a-second"));
        assert_eq!(
            t.wills.get("a").map(|w| w.2.payload.as_ref()),
            Some(&b"a-second"[..])
        );
        t.apply(0, &claim_with_will("b", 1, 3, "b"));
        let release = Command::Release {
            client_id: "b".into(),
            node: 1,
            incarnation: 1,
            token: 3,
            seen: u64::MAX,
        };
        assert_eq!(
            t.apply(0, &release),
            Change::Released {
                client_id: "b".into(),
                node: 1,
                claim: (1, 3),
            },
            "its owner publishes it now if it is due"
        );
        assert_eq!(t.apply(0, &release), Change::None, "once");
        assert!(
            !t.wills.contains_key("b"),
            "released: its owner published it or had no reason to"
        );
        t.apply(0, &claim_with_will("c", 1, 4, "c"));
        t.apply(0, &claim_with_will("d", 1, 5, "d"));
        // Node 1 is declared down: the wills of clients without a copy go to the adopter, once.
        t.apply(
            0,
            &Command::Down {
                node: 1,
                incarnation: 1,
                adopter: 2,
            },
        );
        let adoption = t.adopt(0, 1, 2, |c| c == "d");
        let expected = [("a", &b"a-second"[..]), ("c", b"c")];
        assert_eq!(payloads(&adoption.wills), expected);
        assert!(
            t.wills.is_empty(),
            "d's will is in its copy, the rest went to the adopter"
        );
        // A restarted node gets back the wills its last incarnation left in the table.
        t.apply(0, &claim_with_will("e", 2, 1, "e"));
        assert_eq!(payloads(&restart(&mut t, 2, 2)), [("e", &b"e"[..])]);
        assert!(t.wills.is_empty());
        // Its wills are due only if it was not declared down.
        let due = Command::Wills {
            node: 2,
            incarnation: 2,
        };
        assert_eq!(t.apply(0, &due), Change::WillsDue { node: 2 });
        t.apply(
            0,
            &Command::Start {
                node: 3,
                incarnation: 1,
            },
        );
        t.apply(
            0,
            &Command::Down {
                node: 2,
                incarnation: 2,
                adopter: 3,
            },
        );
        assert_eq!(t.apply(0, &due), Change::None);
    }

    /// Applies `node`'s restart as `incarnation`: the wills its last incarnation left.
    fn restart(t: &mut Table, node: u16, incarnation: u64) -> Vec<(ByteString, Will)> {
        let change = t.apply(0, &Command::Start { node, incarnation });
        let Change::Forgotten { wills, .. } = change else {
            panic!("not a restart: {change:?}");
        };
        wills
    }

    fn payloads(wills: &[(ByteString, Will)]) -> Vec<(&str, &[u8])> {
        wills
            .iter()
            .map(|(c, w)| (&**c, w.payload.as_ref()))
            .collect()
    }

    fn release_of(client: &str, node: u16, token: u64) -> Command {
        Command::Release {
            client_id: client.into(),
            node,
            incarnation: 1,
            token,
            seen: u64::MAX,
        }
    }

    #[test]
    fn a_will_another_nodes_claim_replaced_stays_due_until_its_node_releases_restarts_or_dies() {
        let mut t = Table::default();
        for node in [1, 2, 3] {
            t.apply(
                0,
                &Command::Start {
                    node,
                    incarnation: 1,
                },
            );
        }
        // "a", "b" and "c" connect to node 1, then reconnect to node 2 (with a will of their own).
        for (token, client) in (1..).zip(["a", "b", "c"]) {
            t.apply(0, &claim_with_will(client, 1, token, "on 1"));
            t.apply(0, &claim_with_will(client, 2, token, "on 2"));
        }
        assert_eq!(t.replaced.len(), 3);
        assert!(t.wills.values().all(|(n, _, _)| *n == 2));
        // Node 1 releases "a" (it closed the connection): it publishes that will, once.
        assert_eq!(
            t.apply(0, &release_of("a", 1, 1)),
            Change::Released {
                client_id: "a".into(),
                node: 1,
                claim: (1, 1),
            }
        );
        assert_eq!(t.apply(0, &release_of("a", 1, 1)), Change::None, "once");
        assert_eq!(t.owners.get("a"), Some(&2), "the client stays node 2's");
        // A release under another claim is not this will's.
        assert_eq!(t.apply(0, &release_of("b", 1, 9)), Change::None);
        // Node 1 restarts: its last incarnation's "b" will is its to publish.
        t.apply(0, &claim_with_will("d", 3, 4, "on 3"));
        t.apply(0, &claim_with_will("d", 1, 4, "on 1"));
        t.apply(0, &claim_with_will("d", 3, 5, "on 3 again"));
        let forgotten = restart(&mut t, 1, 2);
        let expected = [("b", &b"on 1"[..]), ("c", b"on 1"), ("d", b"on 1")];
        assert_eq!(payloads(&forgotten), expected);
        // Node 3 is declared down: the adopter publishes the wills of its connections: "d"'s
        // last (in force), "d"'s first (replaced when the client moved to node 1), and "e"'s
        // (replaced by node 2's claim); none of node 2's.
        t.apply(0, &claim_with_will("e", 3, 6, "on 3"));
        t.apply(0, &claim_with_will("e", 2, 6, "on 2"));
        t.apply(
            0,
            &Command::Down {
                node: 3,
                incarnation: 1,
                adopter: 2,
            },
        );
        let adoption = t.adopt(0, 3, 2, |_| false);
        let expected = [("d", &b"on 3 again"[..]), ("d", b"on 3"), ("e", b"on 3")];
        assert_eq!(payloads(&adoption.wills), expected);
        assert!(t.replaced.is_empty());
    }
}
