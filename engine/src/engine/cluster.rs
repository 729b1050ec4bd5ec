//! The engine as one node of a cluster (see [`crate::cluster`]): driving raft, applying the
//! replicated table, parking CONNECTs until their claim commits, and the links to other nodes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, EntryType, MessageType};
use raft::SnapshotStatus;

use crate::cluster::link::Links;
use crate::cluster::parts::Parts;
use crate::cluster::replica::Replicas;
use crate::cluster::table::{Change, RetainedBy, Table};
use crate::cluster::wire::{Command, Frame, State, Written};
use crate::cluster::{self, ClusterConfig, ClusterStats, Raft};
use crate::codec::{Connect, QoS, ReasonCode, Will};
use crate::io::{CloseReason, ConnId, Event, PeerMessage, Stamp, StoreOp};
use crate::message::Message;
use crate::persist::Persistence;
use crate::retained::RetainedStore;
use crate::router::TopicTrie;
use crate::stored::{StoredRaft, StoredSession};
use crate::time::Instant;
use crate::timer::TimerKind;

use super::conn::Phase;
use super::Engine;

mod marks;
mod moving;

/// The cluster side of an engine.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) config: ClusterConfig,
    raft: Raft,
    pub(super) table: Table,
    links: Links,
    incarnation: u64,
    /// Proposals not yet seen applied, by token: the command and when it was last proposed.
    pending: BTreeMap<u64, (Command, Instant)>,
    next_token: u64,
    /// What this node's sessions subscribe to, as the router reports it.
    desired: BTreeMap<ByteString, u32>,
    /// When each filter's interest was last proposed.
    proposed: BTreeMap<ByteString, Instant>,
    interest_version: u64,
    /// CONNECTs waiting for their claim, by the claim's token: the connection and its deadline.
    parked: BTreeMap<u64, (ConnId, Instant)>,
    /// Since when this node has known no leader.
    leaderless_since: Option<Instant>,
    /// Whether its clients were disconnected for it.
    fenced: bool,
    /// The claim each session here was admitted under, (incarnation, token): released with it.
    /// The incarnation may be an earlier one of this node's (its claim committed while it was
    /// down).
    admitted: BTreeMap<ByteString, (u64, u64)>,
    /// The counter of the last message this node routed (see [`Stamp`]).
    next_stamp: u64,
    /// Client identifiers whose claim committed here while another node held their session: what
    /// waits for that node's handover.
    awaiting: BTreeMap<ByteString, Awaiting>,
    /// Handovers that arrived before their claim applied here.
    early: BTreeMap<ByteString, Early>,
    /// Persistent sessions on their way to a new owner, by client: the owner, which this node
    /// also routes their filters to until its own interest covers them (see [`moving`]).
    moving: BTreeMap<ByteString, moving::Moving>,
    /// Persistent sessions this node handed over, by client: until when it relays what still
    /// arrives for them (see [`moving`]).
    handed: BTreeMap<ByteString, Instant>,
    /// Handovers of sessions on their way from here, by client: how many the links still hold.
    handing: BTreeMap<ByteString, u32>,
    /// Sessions that ended here while a handover of them was on its way, by client, as their
    /// records stay in this node's store until the last such handover is acknowledged (see
    /// [`Engine::end_unreplicated`]). A session of the client that starts here meanwhile
    /// replaces them ([`Engine::take_kept`]).
    kept: BTreeMap<ByteString, StoredSession>,
    /// Messages of sessions another node handed over here that this node handed on (see
    /// [`Engine::pass_on_handover`]), by client and stamp: how many such handovers still on
    /// their way hold the message's relay record in this node's store.
    passing: BTreeMap<(ByteString, Stamp), u32>,
    /// The relays this node's store held at its restart, sent again once the log is replayed
    /// (see [`StoreOp::PutRelay`]).
    stored_relays: BTreeMap<(ByteString, Stamp), Arc<Message>>,
    /// The sessions this node's store held at its restart only as versions handed over (see
    /// [`StoreOp::PutHandedOver`]), sorted out once the log is replayed.
    stored_handed_over: BTreeSet<ByteString>,
    /// The sessions this node restored from its store at its start (see
    /// [`Engine::set_superseded_aside`]).
    restored: BTreeSet<crate::session::SessionId>,
    /// Incarnations of other nodes that this node saw a later `Start` replace (in an entry it
    /// applied, or in a table a snapshot replaced; since this node started). A link may still
    /// report one as the last it heard (this node was cut off from the whole incarnation that
    /// followed it): such a one is not among a node's latest ([`Node::incarnations_of`]).
    retired: BTreeMap<u16, BTreeSet<u64>>,
    /// The link message being handled, (sender, sequence number): a handler that cannot be done
    /// with it yet takes it, and releases it later (see [`Links::hold`]).
    delivering: Option<(u16, u64)>,
    /// The log index this node had committed before it restarted: replaying up to it rebuilds the
    /// table without acting on sessions again (handovers were sent, sessions ended, before).
    replay_until: u64,
    /// Copies of the persistent sessions other nodes own.
    replicas: Replicas,
    /// This node's session writes not yet proposed, oldest first: (writes, their cost, the batch
    /// that waits for them).
    queued_writes: VecDeque<(Written, usize, Option<u64>)>,
    /// The session writes in the log's hands: one entry at a time, so they commit in order
    /// whatever the network does to proposals (see `propose_writes`).
    writes: Option<Writes>,
    /// The number of the last session writes entry this incarnation made.
    next_write: u64,
    /// How far into the batch being built (its number, a position) session writes were taken.
    writes_cursor: (u64, usize),
    /// Writes of batches (by number, positions) that stay off the log (see `end_unreplicated`).
    unreplicated: Vec<(u64, std::ops::Range<usize>)>,
    /// What this node knew when it made each session write of the batch being built.
    marks: marks::Marks,
    /// A membership change asked for through the admin API, proposed until it applies, and
    /// when it was last proposed.
    conf_pending: Option<(ConfChange, Instant)>,
    /// The membership changed: take a snapshot at once (a node that joins needs one that
    /// includes it).
    force_snapshot: bool,
    /// This node was removed from the cluster: it serves no client and proposes nothing.
    removed: bool,
    /// When a frame last came from each node (the leader declares a silent member down).
    heard: BTreeMap<u16, Instant>,
    /// Since when this node leads: silence before that counts from then.
    leading_since: Option<Instant>,
    /// When this node, leading, last proposed each node down.
    down_proposed: BTreeMap<u16, Instant>,
    /// Messages from each node held, in order, until this node applied as many `Down`s as their
    /// sender had (a publish's `after`): (link sequence number, message).
    held: BTreeMap<u16, VecDeque<(u64, PeerMessage)>>,
    /// Publishes redirected to this node itself from a node declared down: (the batch here that
    /// stored them, the publisher's batch waiting for that).
    self_receipts: Vec<(u64, u64)>,
    /// Wills that came due while this node had no leader: (client identifier, message). The
    /// cluster may be declaring this node down meanwhile, and then the adopter publishes them
    /// (from the table or the sessions' copies); so they wait for a [`Command::Wills`] of this
    /// node to apply, which the log orders after any such `Down`.
    withheld: Vec<(ByteString, Arc<Message>)>,
    /// Whether the `Wills` for them is proposed.
    wills_proposed: bool,
    /// Wills of persistent sessions that came due here, waiting for the storage batch that took
    /// them out of their session to be durable and its session writes to commit: (batch, client
    /// identifier, message). Published before, a crash losing the batch restored the session
    /// with its will, and the restarted node published it again (seed 803); or the node, cut
    /// off before the write committed, was declared down, and the adopter published it again
    /// from the session's copy. A claim that moves the client first carries the will on with
    /// the session (see [`Engine::hand_over`]).
    unstored: Vec<Unstored>,
    /// Wills of clean sessions that came due here, waiting for this node's `Release` of their
    /// client to take them out of the table: until it applies, the table says the will is still
    /// due, and whoever the log makes take it out (an adopter, this node's next incarnation)
    /// publishes it (seed 1077: the adopter of a node cut off just after it published one).
    /// Keyed by (client identifier, the claim the connection was admitted under). Another
    /// node's claim of the client moves the will to [`Table::replaced`], where it still waits
    /// for the release.
    releasing: BTreeMap<(ByteString, (u64, u64)), Arc<Message>>,
    /// The retained messages as the log set them, by topic: what a snapshot holds. The engine's
    /// store also has this node's own at once, before they commit (its clients read their own
    /// writes), and some never do (seed 5057: a node's snapshot held one, and the node came back
    /// from it with a retained message no other node had).
    retained: BTreeMap<ByteString, Arc<Message>>,
    /// This node's `Retain` proposals whose publisher's acknowledgement waits for them to
    /// commit, by token: the batch held. Acknowledged at once, a retained message whose node
    /// crashed before the proposal reached the leader was lost (seed 5057).
    retain_holds: BTreeMap<u64, u64>,
    /// The index of the last log entry applied (what a `Retain` says this node had seen).
    applied: u64,
    /// Splits this node's snapshots into frames and gathers other nodes'.
    parts: Parts,
    stats: ClusterStats,
}

/// How often a membership change is proposed again until it applies (raft drops one proposed
/// while another is under way).
const CONF_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Session writes of this node proposed to the log ([`Command::Session`]).
#[derive(Debug)]
struct Writes {
    command: Command,
    /// The storage batches that wait for their commit.
    batches: Vec<u64>,
    /// When they were last proposed.
    proposed: Instant,
}

/// A persistent session's will that came due, waiting for the storage batch that took it out of
/// the session (see `Node::unstored`).
#[derive(Debug)]
struct Unstored {
    batch: u64,
    client_id: ByteString,
    /// Kept as the client sent it, so a handover can put it back into the session.
    will: Will,
    /// When it came due (what the message's expiry runs from).
    due: Instant,
}

/// A session on its way here from another node.
#[derive(Debug)]
struct Awaiting {
    /// This node's claim it comes for: (incarnation, token).
    claim: (u64, u64),
    /// The claim it will be admitted under: the newest of this node's claims since (a client
    /// that reconnected here while its session was on its way).
    admit: (u64, u64),
    /// The CONNECT waiting for it, if its client is still there.
    conn: Option<ConnId>,
    /// When the wait ends with a fresh session.
    deadline: Instant,
    /// A newer claim took the client to another node meanwhile: what arrives goes on there, for
    /// that claim.
    owed: Option<(u16, (u64, u64))>,
    /// The node the session comes from, if the log said (the owner before `claim`, another node):
    /// a handover for `claim` that another node sends is a version it found stale, sent under
    /// the claim in force in an older table ([`Engine::hand_over_found`]), not the session. Seed
    /// 59483: a node that had been cut off found in an old snapshot that the session it held was
    /// another node's under a claim that node still waited on; the client had been on a third
    /// node since, which had taken a QoS 2 message to it, and the stale version was taken for the
    /// session and sent the message again.
    from: Option<u16>,
    /// Sessions that arrived for older claims of this node meanwhile: every version, since each
    /// may hold messages the others lack.
    late: Vec<StoredSession>,
    /// The ordinary filters of the session's copy as the wait began, which this node's interest
    /// counts while it waits ([`crate::router::Router::hold_interest`]): a node that ended a
    /// stale version of the session and waits for it under its own newer claim would otherwise
    /// withdraw its interest meanwhile, and the others route its messages nowhere once their
    /// routing to it as a claimant settled (seed 62041: a node behind the log handed over its
    /// stale version, took its own claim, and its interest went to 0 and back to 1 around the
    /// session's arrival; a message published in between reached no node).
    interest: Vec<ByteString>,
    /// Messages routed here for the session meanwhile, delivered once it is installed.
    kept: Vec<moving::Kept>,
}

impl Awaiting {
    /// Whether a handover for `claim` that `sender` sent (`None`: not from a link) can be the
    /// session waited for, by who sent it (see [`Awaiting::from`]).
    fn sent_by(&self, sender: Option<u16>, claim: (u64, u64)) -> bool {
        match (self.from, sender) {
            (Some(from), Some(sender)) => claim != self.claim || from == sender,
            _ => true,
        }
    }
}

/// A handover ahead of its claim. Held in memory only, so its link message is not acknowledged
/// until the claim applies and the session is stored: a crash meanwhile loses nothing, the old
/// owner sends it again (seed 200: a node crashed holding one, and the session's later
/// owner got a stale copy of it instead).
#[derive(Debug)]
struct Early {
    claim: (u64, u64),
    session: Option<Box<StoredSession>>,
    arrived: Instant,
    /// How far its sender had applied the log (see [`PeerMessage::Handover`]).
    sent_at: u64,
    /// The link message it came in, held.
    link: Option<(u16, u64)>,
    /// What arrived for the session since, relayed behind it by the node it came from (see
    /// `Engine::keep`).
    kept: Vec<moving::Kept>,
}

/// A CONNECT whose claim is on its way through the log.
#[derive(Debug)]
pub(crate) struct Claiming {
    pub(crate) connect: Box<Connect>,
    pub(crate) auth_data: Option<Bytes>,
    /// The client identifier claimed (assigned, if the client sent none).
    pub(crate) client_id: ByteString,
    /// Whether the identifier was assigned (CONNACK then says so).
    pub(crate) assigned: bool,
}

/// A proposal's tag in the entry's context: who proposed it, and its token.
fn context(node: u16, incarnation: u64, token: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(18);
    c.extend_from_slice(&node.to_be_bytes());
    c.extend_from_slice(&incarnation.to_be_bytes());
    c.extend_from_slice(&token.to_be_bytes());
    c
}

fn parse_context(c: &[u8]) -> Option<(u16, u64, u64)> {
    let node = u16::from_be_bytes(c.get(0..2)?.try_into().ok()?);
    let inc = u64::from_be_bytes(c.get(2..10)?.try_into().ok()?);
    let token = u64::from_be_bytes(c.get(10..18)?.try_into().ok()?);
    Some((node, inc, token))
}

/// How far past the packet identifier of its latest inflight message a session taken from a copy
/// goes on: half the id space, away from the ids its old node took next.
const FAILOVER_PACKET_ID_JUMP: u16 = 1 << 15;

impl Node {
    pub(super) fn new(config: ClusterConfig, rng: &mut crate::rng::Rng) -> Node {
        let raft = Raft::new(&config, rng, &StoredRaft::default());
        let incarnation = rng.next_u64();
        // A link gives up later than the leader declares its peer down, so what waits for a dead
        // node is redirected to its sessions' adopter rather than dropped.
        let links = Links::new(incarnation, config.retransmit, config.peer_timeout * 2);
        let parts = Parts::new(config.snapshot_part, incarnation);
        let mut node = Node {
            config,
            raft,
            table: Table::default(),
            links,
            incarnation,
            pending: BTreeMap::new(),
            next_token: 0,
            desired: BTreeMap::new(),
            proposed: BTreeMap::new(),
            interest_version: 0,
            parked: BTreeMap::new(),
            admitted: BTreeMap::new(),
            leaderless_since: None,
            fenced: false,
            next_stamp: 0,
            awaiting: BTreeMap::new(),
            early: BTreeMap::new(),
            moving: BTreeMap::new(),
            handed: BTreeMap::new(),
            passing: BTreeMap::new(),
            stored_relays: BTreeMap::new(),
            stored_handed_over: BTreeSet::new(),
            restored: BTreeSet::new(),
            retired: BTreeMap::new(),
            handing: BTreeMap::new(),
            kept: Default::default(),
            delivering: None,
            replay_until: 0,
            replicas: Replicas::default(),
            queued_writes: VecDeque::new(),
            writes: None,
            next_write: 0,
            writes_cursor: (0, 0),
            marks: marks::Marks::default(),
            unreplicated: Vec::new(),
            conf_pending: None,
            force_snapshot: false,
            removed: false,
            heard: BTreeMap::new(),
            leading_since: None,
            down_proposed: BTreeMap::new(),
            held: BTreeMap::new(),
            self_receipts: Vec::new(),
            withheld: Vec::new(),
            unstored: Vec::new(),
            releasing: BTreeMap::new(),
            retained: BTreeMap::new(),
            retain_holds: BTreeMap::new(),
            applied: 0,
            wills_proposed: false,
            parts,
            stats: ClusterStats::default(),
        };
        let me = node.me();
        node.submit(|_| Command::Start {
            node: me,
            incarnation,
        });
        node
    }

    /// Hands the command `make` builds for the next token to raft, and keeps it until it is seen
    /// applied; returns the token.
    fn submit(&mut self, make: impl FnOnce(u64) -> Command) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.pending.insert(token, (make(token), Instant::ZERO));
        token
    }

    /// Whether a `Retain` of this node for `topic` waits to apply.
    fn retaining(&self, topic: &ByteString) -> bool {
        self.pending.values().any(|(command, _)| {
            matches!(command, Command::Retain { message, .. } if message.topic.as_bytestring() == topic)
        })
    }

    /// Whether the table holds the will of `client_id`'s connection here, under the claim the
    /// session here was admitted with (not that of a newer connection that took it over).
    fn will_in_table(&self, client_id: &ByteString) -> Option<(u64, u64)> {
        let claim = *self.admitted.get(client_id)?;
        self.will_held(client_id, claim).then_some(claim)
    }

    /// Whether the table still holds the will of this node's connection of `client_id` admitted
    /// under `claim`: in force, or replaced by another node's claim (not by one of this node's:
    /// this node took the connection over, and published the will then).
    fn will_held(&self, client_id: &ByteString, (incarnation, token): (u64, u64)) -> bool {
        let me = self.me();
        if incarnation != self.incarnation {
            return false;
        }
        let in_force = self.table.claims.get(&(client_id.clone(), me))
            == Some(&(incarnation, token))
            && (self.table.wills.get(client_id))
                .is_some_and(|(n, inc, _)| (*n, *inc) == (me, incarnation));
        in_force || (self.table.replaced).contains_key(&(client_id.clone(), me, incarnation, token))
    }

    /// Whether this incarnation's `Start` applied: before, the log may still hold what the others
    /// did while this node was down.
    fn started(&self) -> bool {
        self.table.incarnations.get(&self.me()) == Some(&self.incarnation)
    }

    fn me(&self) -> u16 {
        self.config.node
    }

    /// The incarnations of `origin` this node knows to be its latest: its own, for this node;
    /// for another, the one its last `Start` applied here gave and the one its link last heard
    /// (either may learn of a restart first), unless a `Start` replaced the latter already (seed
    /// 51529: a node cut off for the whole of another's second incarnation still had its first
    /// from the link, took a relay of it for the newest, and delivered a QoS 2 message twice).
    /// See [`crate::session::Session::take_stamp`].
    pub(super) fn incarnations_of(&self, origin: u16) -> [Option<u64>; 2] {
        if origin == self.me() {
            return [Some(self.incarnation), None];
        }
        let retired = self.retired.get(&origin);
        [
            self.table.incarnations.get(&origin).copied(),
            (self.links.peer_incarnation(origin))
                .filter(|inc| !retired.is_some_and(|r| r.contains(inc))),
        ]
    }

    /// Records that `origin`'s incarnation `old` gave way to `new` in the table.
    fn retire(&mut self, origin: u16, old: Option<u64>, new: Option<u64>) {
        if let Some(old) = old.filter(|old| Some(*old) != new && origin != self.me()) {
            self.retired.entry(origin).or_default().insert(old);
        }
    }

    /// Whether a handover of `client_id` for `claim`, whose sender had applied the log to
    /// `sent_at`, is the session of this node's tenure, whichever of this node's applied claims
    /// it names: the sender sent it as it applied the very entry that gave this node the client
    /// (`Table::owned_since`), and no other node has owned the client since; later claims of this
    /// node only took it over here. Only for a claim of this node's that applied (a CONNECT's:
    /// tokens start at 1): a late handover passed on under another node's claim, or one with a
    /// restarted node's flows alone (under its incarnation and token 0, which may be this node's
    /// own, passed back to it), may have been sent at that position too (seeds 20587 and 32815:
    /// such a one was taken for the session).
    /// (Seed 21815: a node behind the log got the handover for its claim and learned of that
    /// claim and its next one from a snapshot; it waited for a handover for the next one, which
    /// nobody sends, took the session from its copy at the deadline, and delivered a QoS 2
    /// message again that the handover's sender had completed.)
    fn opens_tenure(&self, client_id: &ByteString, claim: (u64, u64), sent_at: u64) -> bool {
        let applied = self.table.claims.get(&(client_id.clone(), self.me()));
        claim.0 == self.incarnation
            && claim.1 > 0
            && applied.is_some_and(|(inc, token)| *inc == claim.0 && *token >= claim.1)
            && self.table.owners.get(client_id) == Some(&self.me())
            && self.table.owned_since.get(client_id) == Some(&sent_at)
    }

    /// Whether a handover of `client_id` for `claim`, sent at `sent_at`, is the session this node
    /// waits for under `awaited`: sent for that claim, or opening this node's tenure.
    fn answers(
        &self,
        client_id: &ByteString,
        awaited: (u64, u64),
        claim: (u64, u64),
        sent_at: u64,
    ) -> bool {
        claim == awaited || self.opens_tenure(client_id, claim, sent_at)
    }

    /// Whether `claim`, if this node's, may not have applied here yet: a handover for it, sent
    /// by a node that had applied the log to `sent_at`, came ahead of it. The claim in force here
    /// does not say on its own: a claim that applied and whose client then left has none (seed
    /// 620: a handover for such a claim waited for ever as early, holding its link's
    /// acknowledgements). A claim of an earlier incarnation (a CONNECT's: tokens start at 1) may
    /// be ahead too, for a node that restarted behind the log; it is older than any claim of this
    /// incarnation, and the order of two earlier incarnations is not known here, so one that is
    /// not the last applied counts as ahead until this node applied as far as `sent_at` (seed
    /// 18563: such a handover, taken for late, was merged into the stale version the node had
    /// restored from its store, without its marks).
    fn claim_ahead(&self, client_id: &ByteString, claim: (u64, u64), sent_at: u64) -> bool {
        if self.position() >= sent_at {
            return false;
        }
        let applied = self.table.claims.get(&(client_id.clone(), self.me()));
        if claim.0 == self.incarnation {
            return applied.is_none_or(|(inc, token)| *inc != claim.0 || *token < claim.1);
        }
        claim.1 > 0 && applied.is_none_or(|a| *a != claim && a.0 != self.incarnation)
    }

    /// How far this node had applied the log, as what it proposes now says (the index of the
    /// last entry applied, or the snapshot's it started from).
    fn seen(&self) -> u64 {
        self.applied.max(self.raft.node.store().snapshot_index())
    }

    /// Notes, before this node applies more of the log, how far it had applied when it made the
    /// writes of batch `batch` before position `at`. A session's writes go to the log at the end
    /// of the input, each saying how far its node had applied when it made it: the copies take a
    /// write only from the node that owned the session since then (`Table::writes_to`). Labelled
    /// at the end instead, a write made for a session this node handed over on one entry was
    /// taken for the owner's when the next entry gave the session back (seed 3319: the record a
    /// handover's disconnect rewrote started the copies over with nothing else, and the session
    /// later taken from a copy had no subscription).
    fn mark_seen(&mut self, batch: u64, at: usize) {
        let seen = self.seen();
        self.marks.seen(batch, at, seen);
    }

    /// Notes, before a claim changes the owner of `client` (or a snapshot may), whether this
    /// node owned it (`mine`) when it made the writes of batch `batch` before position `at`.
    /// Only an owner's writes go to the log, so the copies can take every write of the node that
    /// built them (see `Change::SessionWrites`). A release or a node declared down only takes
    /// clients away: writes made before them, judged by the table after, stay off the log,
    /// which they would be moot in anyway.
    fn mark_owner(&mut self, batch: u64, at: usize, client: &ByteString, mine: bool) {
        self.marks.owned(batch, at, client, mine);
    }

    /// Whether this node owned `client` when it made the write at position `at` of batch
    /// `batch` (see [`Node::mark_owner`]).
    fn owned_at(&self, batch: u64, at: usize, client: &ByteString) -> bool {
        (self.marks.owned_at(batch, at, client))
            .unwrap_or_else(|| self.table.owners.get(client) == Some(&self.me()))
    }

    /// How far this node had applied the log when it made the write at position `at` of batch
    /// `batch` (see [`Node::mark_seen`]).
    fn seen_at(&self, batch: u64, at: usize) -> u64 {
        (self.marks.seen_at(batch, at)).unwrap_or_else(|| self.seen())
    }

    /// How far this node has applied the log, entries of every kind counted (a leader's empty
    /// entry, a membership change): what a routed message or a handover says its sender had
    /// applied, and what its receiver compares. [`Node::seen`] counts commands only, so a node
    /// whose last entries are empty would never reach a sender's snapshot index past them.
    pub(super) fn position(&self) -> u64 {
        let raft = &self.raft.node;
        (self.applied.max(raft.raft.raft_log.applied)).max(raft.store().snapshot_index())
    }

    /// Steps a raft message that came whole or was gathered from parts. Messages for another
    /// term or from a stale leader are raft's to ignore.
    fn step_raft(&mut self, bytes: &[u8]) {
        match cluster::decode_raft(bytes) {
            Some(m) => {
                let _ = self.raft.node.step(m);
            }
            None => self.stats.bad_frames += 1,
        }
    }

    /// The voters and learners of the raft configuration in force here.
    fn conf_members(&self) -> Vec<u16> {
        let conf = self.raft.node.raft.prs().conf().to_conf_state();
        conf.voters
            .iter()
            .chain(&conf.learners)
            .filter_map(|id| u16::try_from(*id).ok())
            .collect()
    }

    /// Whether frames from `node` are taken: a member, a founding member (the configuration's
    /// seeds), or anyone while this node has no configuration yet (it joins, and the leader that
    /// brings it in may be a node added after its seeds were written).
    /// Asked for every frame: raft's progress map (one entry per voter and learner) answers
    /// without building the configuration.
    fn knows(&self, node: u16) -> bool {
        let progress = self.raft.node.raft.prs();
        progress.get(u64::from(node)).is_some()
            || self.config.members.contains(&node)
            || progress.iter().len() == 0
    }
}

impl Engine {
    /// This engine's number among its peers: its node in a cluster, its shard otherwise.
    pub(super) fn me(&self) -> u16 {
        match &self.cluster {
            Some(node) => node.config.node,
            None => self.config.shard.index,
        }
    }

    /// Whether publishes may need to go to other engines or nodes.
    pub(super) fn has_peers(&self) -> bool {
        self.config.shard.is_sharded() || self.cluster.is_some()
    }

    /// Sends `message` to peer `to`: another engine of this node, or another node over its link.
    pub(super) fn send_peer(&mut self, to: u16, message: PeerMessage) {
        match &mut self.cluster {
            Some(node) => {
                let frame = node.links.send(to, message, self.now);
                self.events.push_back(Event::Cluster {
                    to,
                    frame: frame.encode(self.now),
                });
            }
            None => self.events.push_back(Event::Peer { to, message }),
        }
    }

    /// Restarts raft over what the store held (before any other input): the snapshot's state,
    /// then the log after it, replayed at the first input.
    pub(super) fn restore_cluster(
        &mut self,
        stored: &StoredRaft,
        relays: BTreeMap<(ByteString, Stamp), Arc<Message>>,
        handed_over: BTreeSet<ByteString>,
    ) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        node.stored_relays = relays;
        node.stored_handed_over = handed_over;
        if stored.entries.is_empty() && stored.hard_state.is_none() && stored.snapshot.is_none() {
            return;
        }
        node.raft = Raft::new(&node.config, &mut self.rng, stored);
        node.replay_until = node.raft.node.raft.raft_log.committed;
        let data = node.raft.node.store().last_snapshot().data.clone();
        if !data.is_empty() {
            self.install_state(&data, false);
        }
    }

    /// Takes a snapshot of the applied state once `snapshot_entries` entries were applied since
    /// the last one, and drops the log up to it.
    fn compact_log(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let force = std::mem::take(&mut node.force_snapshot);
        if !force && node.raft.since_snapshot() < node.config.snapshot_entries as u64 {
            return;
        }
        node.retained.retain(|_, m| !m.is_expired(now));
        let retained: Vec<Arc<Message>> = node.retained.values().cloned().collect();
        let data = State::encode(&node.table, &node.replicas, &retained, now);
        if let Some(op) = node.raft.compact(data) {
            node.stats.snapshots_taken += 1;
            self.persist.push(op);
        }
    }

    /// Replaces the applied state with a snapshot's: at a restart (`live` false: the sessions are
    /// not restored yet, and the log replay that follows settles them), or from the leader (this
    /// node fell behind what the log still holds): then it acts as at the end of a replay.
    fn install_state(&mut self, data: &Bytes, live: bool) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let state = match State::decode(data.clone(), now) {
            Ok(state) => state,
            Err(error) => {
                // Every node would fail on it alike: nothing better to do than say so.
                node.stats.bad_frames += 1;
                self.events.push_back(Event::ClusterFrameRejected {
                    from: 0,
                    why: format!("snapshot: {error}"),
                });
                return;
            }
        };
        let me = node.me();
        // Whether this node owned the clients it wrote to so far in this batch, by the table
        // the snapshot replaces.
        let (batch, at) = (self.persist.building(), self.persist.len());
        let written: BTreeSet<ByteString> = unproposed_writes(node, &self.persist)
            .filter_map(|(_, op)| op.session_client().cloned())
            .collect();
        for client in written {
            let mine = node.table.owners.get(&client) == Some(&me);
            node.mark_owner(batch, at, &client, mine);
        }
        let old = std::mem::replace(&mut node.table, state.table);
        for (n, inc) in &old.incarnations {
            let new = node.table.incarnations.get(n).copied();
            node.retire(*n, Some(*inc), new);
        }
        // Clients this node owned by the table the snapshot replaces and still owns since the
        // same entry (no other node took them in between): a session it holds for one of them
        // is the latest.
        let owned_on: BTreeSet<ByteString> = (old.owners.iter())
            .filter(|(client, owner)| {
                **owner == me
                    && node.table.owners.get(*client) == Some(&me)
                    && node.table.owned_since.get(*client) == old.owned_since.get(*client)
            })
            .map(|(client, _)| client.clone())
            .collect();
        node.replicas = Replicas::restore(state.copies);
        if live {
            node.moves_in_snapshot(&old);
        }
        node.retained = (state.retained.iter())
            .map(|m| (m.topic.as_bytestring().clone(), m.clone()))
            .collect();
        let gone: Vec<(u16, ByteString)> =
            old.interest.into_keys().filter(|(n, _)| *n != me).collect();
        let interest: Vec<(u16, ByteString, u32)> = node
            .table
            .interest
            .iter()
            .filter(|((n, _), (_, count))| *n != me && *count > 0)
            .map(|((n, filter), (_, count))| (*n, filter.clone(), *count))
            .collect();
        // This node's writes entry in the log's hands, if what the snapshot covers committed it.
        let committed = match (&node.writes, node.table.session_seq.get(&me)) {
            (
                Some(Writes {
                    command: Command::Session { seq, .. },
                    ..
                }),
                Some(applied),
            ) if seq <= applied && node.table.incarnations.get(&me) == Some(&node.incarnation) => {
                Some(*seq)
            }
            _ => None,
        };
        for (n, filter) in gone {
            self.peer_interest(n, filter, 0);
        }
        for (n, filter, count) in interest {
            self.peer_interest(n, filter, count);
        }
        if self.config.retain_available {
            self.retained = RetainedStore::default();
            for message in state.retained {
                self.retained.insert(message);
            }
        }
        self.members_changed();
        if live {
            if let Some(seq) = committed {
                self.writes_committed(seq);
            }
            self.drop_unowned_sessions(true);
            self.claims_in_snapshot(&owned_on);
            self.awaits_in_snapshot();
            self.set_superseded_aside();
            self.await_missing_sessions();
            self.retains_in_snapshot();
            let me_down = self
                .cluster
                .as_ref()
                .filter(|node| node.table.is_down(node.me(), node.incarnation))
                .map(|node| node.incarnation);
            if let Some(incarnation) = me_down {
                // Declared down while cut off, and the snapshot says so (not the entry).
                self.taken_down(incarnation);
            }
        }
    }

    /// This node's `Retain` proposals that committed inside a snapshot it received (it never saw
    /// their entries) are done: the table names this node's incarnation, with that token or a
    /// later one, as the last to set the topic. One that a later message from another node
    /// replaced stays pending and is proposed again (the snapshot cannot tell whether it
    /// committed): it then commits without taking effect, as its proposal predates the other.
    fn retains_in_snapshot(&mut self) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let (me, incarnation) = (node.me(), node.incarnation);
        let settled: Vec<u64> = node
            .pending
            .iter()
            .filter_map(|(token, (command, _))| match command {
                Command::Retain { message, .. } => {
                    let by = node.table.retained_by.get(message.topic.as_bytestring());
                    by.filter(|by| {
                        (by.node, by.incarnation) == (me, incarnation) && by.token >= *token
                    })
                    .map(|_| *token)
                }
                _ => None,
            })
            .collect();
        let mut batches = Vec::new();
        for token in settled {
            node.pending.remove(&token);
            batches.extend(node.retain_holds.remove(&token));
        }
        self.batches_replicated(&batches);
    }

    /// This node's claims that committed inside a snapshot it received (it never saw their
    /// entries) take effect as if it had applied them: the CONNECT parked for one is admitted, or
    /// refused if a later claim took the client on. The snapshot does not say which node owned the
    /// client before. If this node owned it by the table the snapshot replaced and nobody took it
    /// in between (`owned_on`: the entry that gave it this node is the same), and the node holds
    /// its session, that session goes on here, as after a claim of this node's that followed its
    /// own. Otherwise the writer of this node's copy of the session stands for the owner before,
    /// so a session held elsewhere is still waited for. (Seed 23141: a node took the session in a
    /// handover, and a second claim of its own came in a snapshot before it wrote the session; it
    /// waited for the writer of the copy, which had handed the session over already, and the
    /// client's CONNECT there was never accepted. Seed 21098: a node that had owned the client
    /// long before, behind the log, took its stale session for the latest.)
    fn claims_in_snapshot(&mut self, owned_on: &BTreeSet<ByteString>) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let (me, incarnation) = (node.me(), node.incarnation);
        let settled: Vec<(u64, ByteString, bool)> = node
            .pending
            .iter()
            .filter_map(|(token, (command, _))| match command {
                Command::Claim { client_id, .. }
                    if node.table.claims.get(&(client_id.clone(), me))
                        == Some(&(incarnation, *token)) =>
                {
                    let owned = node.table.owners.get(client_id) == Some(&me);
                    Some((*token, client_id.clone(), owned))
                }
                _ => None,
            })
            .collect();
        for (token, client_id, owned) in settled {
            let Some(node) = &mut self.cluster else {
                return;
            };
            node.pending.remove(&token);
            let conn = node.parked.remove(&token).map(|(conn, _)| conn);
            if !owned {
                if let Some(conn) = conn {
                    self.refuse_claiming(conn);
                }
                continue;
            }
            let early = node.early.remove(&client_id);
            let from = if owned_on.contains(&client_id) && self.by_client.contains_key(&client_id) {
                Some(me)
            } else {
                node.replicas.writer(&client_id)
            };
            self.own_claim(client_id, from, false, (incarnation, token), conn, early);
        }
    }

    /// Sessions this node waits for whose client a later claim inside a snapshot took to another
    /// node: as if it had applied that claim, the waiting CONNECT is refused and what arrives goes
    /// on to the new owner. (Seed 12, once snapshots came in parts: a node admitted its waiting
    /// CONNECT at the deadline although the table it had installed gave the client to another.)
    fn awaits_in_snapshot(&mut self) {
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let moved: Vec<(ByteString, u16, (u64, u64))> = node
            .awaiting
            .keys()
            .filter_map(|client| {
                let owner = *node.table.owners.get(client)?;
                let claim = *node.table.claims.get(&(client.clone(), owner))?;
                (owner != me).then(|| (client.clone(), owner, claim))
            })
            .collect();
        for (client_id, to, claim) in moved {
            self.hand_over(client_id, to, claim);
        }
    }

    /// Asks the cluster to add `node` (see [`crate::Input::ClusterAddMember`]).
    pub(super) fn add_member(&mut self, node: u16, address: cluster::MemberAddress) {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = u64::from(node);
        cc.context = Bytes::from(address.encode());
        self.change_members(cc);
    }

    /// Asks the cluster to remove `node` (see [`crate::Input::ClusterRemoveMember`]).
    pub(super) fn remove_member(&mut self, node: u16) {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = u64::from(node);
        self.change_members(cc);
    }

    fn change_members(&mut self, cc: ConfChange) {
        if let Some(node) = &mut self.cluster {
            if cc.node_id != 0 && !node.removed {
                node.conf_pending = Some((cc, Instant::ZERO));
            }
        }
    }

    /// A membership change committed: raft takes it, the table keeps the new node's address (or
    /// forgets the old one's, and what it subscribed to), and the shell hears who the members are.
    fn apply_conf_change(&mut self, entry: &raft::eraftpb::Entry) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let Ok(cc) = ConfChange::parse_from_bytes(&entry.data) else {
            node.stats.bad_frames += 1;
            return;
        };
        let done = node.conf_pending.as_ref().is_some_and(|(pending, _)| {
            pending.node_id == cc.node_id && pending.get_change_type() == cc.get_change_type()
        });
        if done {
            node.conf_pending = None;
        }
        // Raft refuses what would break it (the last voter leaving), on every node alike.
        if node.raft.node.apply_conf_change(&cc).is_err() {
            return;
        }
        let Ok(id) = u16::try_from(cc.node_id) else {
            return;
        };
        let me = node.me();
        let mut gone = Vec::new();
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if let Ok(address) = cluster::MemberAddress::decode(cc.context.clone()) {
                    node.table.members.insert(id, address);
                }
                node.force_snapshot = true;
            }
            ConfChangeType::RemoveNode => {
                node.parts.forget(id);
                node.table.members.remove(&id);
                node.table.incarnations.remove(&id);
                node.table.down.remove(&id);
                node.table.session_seq.remove(&id);
                node.table.interest.retain(|(n, filter), _| {
                    if *n == id {
                        gone.push(filter.clone());
                    }
                    *n != id
                });
                if id == me {
                    node.removed = true;
                    node.pending.clear();
                    node.queued_writes.clear();
                    if node.raft.is_leader() {
                        // Not in the configuration any more: let the others elect a leader.
                        let term = node.raft.node.raft.term;
                        node.raft.node.raft.become_follower(term, raft::INVALID_ID);
                    }
                }
            }
        }
        if id == me && node.removed {
            let conns: Vec<ConnId> = self.sessions.values().filter_map(|s| s.conn).collect();
            for conn in conns {
                let why = "this node was removed from the cluster".to_string();
                self.kick(conn, ReasonCode::ServerUnavailable, why);
            }
        } else {
            for filter in gone {
                self.peer_interest(id, filter, 0);
            }
        }
        self.members_changed();
    }

    /// Tells the shell who the other members are now (nothing while this node has no
    /// configuration: it is joining, and keeps its seeds).
    fn members_changed(&mut self) {
        let Some(node) = &self.cluster else {
            return;
        };
        let all = node.conf_members();
        if all.is_empty() {
            return;
        }
        let me = node.me();
        let members = all
            .into_iter()
            .filter(|n| *n != me)
            .map(|n| (n, node.table.members.get(&n).cloned()))
            .collect();
        self.events.push_back(Event::ClusterMembers { members });
    }

    /// A frame from node `from`.
    pub(super) fn cluster_frame(&mut self, from: u16, frame: Bytes) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if from == node.me() || !node.knows(from) {
            node.stats.bad_frames += 1;
            return;
        }
        node.heard.insert(from, now);
        let frame = match Frame::decode(frame, now) {
            Ok(frame) => frame,
            Err(error) => {
                node.stats.bad_frames += 1;
                self.events.push_back(Event::ClusterFrameRejected {
                    from,
                    why: error.to_string(),
                });
                return;
            }
        };
        match frame {
            Frame::Raft(bytes) => node.step_raft(&bytes),
            Frame::RaftPart {
                id,
                part,
                parts,
                bytes,
            } => {
                node.stats.raft_parts_received += 1;
                match node.parts.gather(from, id, part, parts, bytes) {
                    Ok(Some(whole)) => node.step_raft(&whole),
                    Ok(None) => {}
                    Err(error) => {
                        node.stats.bad_frames += 1;
                        self.events.push_back(Event::ClusterFrameRejected {
                            from,
                            why: error.to_string(),
                        });
                    }
                }
            }
            Frame::Ack { incarnation, upto } => {
                // The acknowledgement is the receipt: `from` stored the messages.
                let acked = node.links.acked(from, incarnation, upto, now);
                self.link_receipts(acked);
            }
            Frame::Data {
                incarnation,
                base,
                seq,
                message,
            } => {
                let (messages, ack) = node.links.receive(from, incarnation, base, seq, message);
                self.events.push_back(Event::Cluster {
                    to: from,
                    frame: ack.encode(now),
                });
                for (seq, m) in messages {
                    self.take_link_message(from, seq, m);
                }
                self.confirm_links();
            }
        }
    }

    /// Link messages done with (acknowledged, or given up on): their publishers' receipts are
    /// released, and so are the acknowledgements that waited for them; relays are no longer
    /// stored (acknowledged: one given up on is routed again instead).
    fn link_receipts(&mut self, messages: Vec<PeerMessage>) {
        let mut released = false;
        for message in messages {
            if let PeerMessage::Relay {
                client_id, stamp, ..
            } = &message
            {
                self.persist.push(StoreOp::DeleteRelay {
                    client_id: client_id.clone(),
                    stamp: *stamp,
                });
            }
            if let PeerMessage::Handover {
                client_id,
                session: Some(session),
                ..
            } = &message
            {
                self.passed_on(client_id, session);
                self.handover_done(client_id);
            }
            if let PeerMessage::Publish {
                receipt: Some(seq), ..
            }
            | PeerMessage::Handover {
                receipt: Some(seq), ..
            } = message
            {
                self.persist.peer_stored(seq);
                released = true;
            }
        }
        if released {
            self.release_held();
        }
    }

    /// Handles a message from `from`'s link, or holds it, with what follows it from `from`, until
    /// this node applied the log as far as its sender had when it routed it: a node that adopted
    /// a down node's sessions must hold them before their messages arrive, and a node that owns a
    /// session it never got (a restarted claimant) must wait for it before its messages arrive.
    fn take_link_message(&mut self, from: u16, seq: u64, message: PeerMessage) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let seen = node.position();
        let queue = node.held.entry(from).or_default();
        if !queue.is_empty() || ahead_of(&message, seen) {
            queue.push_back((seq, message));
            return;
        }
        self.handle_link_message(from, seq, message);
    }

    fn handle_link_message(&mut self, from: u16, seq: u64, message: PeerMessage) {
        let mark = self.persist.mark();
        let outer = self
            .cluster
            .as_mut()
            .and_then(|node| node.delivering.replace((from, seq)));
        self.peer_message(message);
        let batch = self.persist.gate_since(mark);
        if let Some(node) = &mut self.cluster {
            match std::mem::replace(&mut node.delivering, outer) {
                Some(_) => node.links.processed(from, seq, batch),
                None => node.links.hold(from, seq),
            }
        }
    }

    /// An early handover is done with: its link message is acknowledged once `batch` (what
    /// taking it in wrote, if anything) is durable.
    /// What it still kept is dropped, and acknowledged: the session did not come here.
    fn early_done(&mut self, early: Option<Early>, batch: Option<u64>) {
        let Some(early) = early else {
            return;
        };
        self.deliver_kept(early.kept, None);
        if let (Some((from, seq)), Some(node)) = (early.link, &mut self.cluster) {
            node.links.release(from, seq, batch);
            self.confirm_links();
        }
    }

    /// Handles the held link messages whose `Down`s this node has now applied.
    fn release_link_holds(&mut self) {
        loop {
            let Some(node) = &mut self.cluster else {
                return;
            };
            let seen = node.position();
            let next = node.held.iter_mut().find_map(|(from, queue)| {
                let ready = queue.front().is_some_and(|(_, m)| !ahead_of(m, seen));
                ready
                    .then(|| queue.pop_front().map(|(seq, m)| (*from, seq, m)))
                    .flatten()
            });
            node.held.retain(|_, queue| !queue.is_empty());
            let Some((from, seq, message)) = next else {
                break;
            };
            self.handle_link_message(from, seq, message);
        }
        self.confirm_links();
    }

    /// Acknowledges on each link what is now done durably (see [`cluster::link`]), and releases
    /// the publishers' acknowledgements that wait for what was redirected to this node itself.
    pub(super) fn confirm_links(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let persist = &self.persist;
        for (to, frame) in node.links.confirm(|batch| persist.is_replicated(batch)) {
            self.events.push_back(Event::Cluster {
                to,
                frame: frame.encode(now),
            });
        }
        let mut stored = Vec::new();
        node.self_receipts.retain(|&(batch, seq)| {
            let done = persist.is_replicated(batch);
            if done {
                stored.push(seq);
            }
            !done
        });
        if !stored.is_empty() {
            for seq in stored {
                self.persist.peer_stored(seq);
            }
            self.release_held();
        }
    }

    /// The leader declares down a member it heard nothing from for `peer_timeout` (counted from
    /// when it became leader): the node's sessions become the leader's, and so does what was
    /// routed to it. The node itself fenced its clients before (`fence_after` is shorter).
    fn declare_down(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if !node.raft.is_leader() || node.removed {
            node.leading_since = None;
            return;
        }
        let since = *node.leading_since.get_or_insert(now);
        let (me, timeout) = (node.me(), node.config.peer_timeout);
        let silent: Vec<(u16, u64)> = node
            .conf_members()
            .into_iter()
            .filter(|n| *n != me && !node.table.down.contains_key(n))
            .filter_map(|n| Some((n, *node.table.incarnations.get(&n)?)))
            .filter(|(n, _)| {
                let last = node.heard.get(n).map_or(since, |h| (*h).max(since));
                let again = node
                    .down_proposed
                    .get(n)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= timeout);
                again && now.saturating_duration_since(last) >= timeout
            })
            .collect();
        for (gone, incarnation) in silent {
            node.down_proposed.insert(gone, now);
            node.submit(|_| Command::Down {
                node: gone,
                incarnation,
                adopter: me,
            });
        }
    }

    /// Node `gone` is declared down and `adopter` takes its sessions (see [`Table::adopt`]).
    fn node_down(&mut self, index: u64, gone: u16, adopter: u16, replaying: bool) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let me = node.me();
        let my_incarnation = node.incarnation;
        let replicas = &node.replicas;
        let adoption = node.table.adopt(index, gone, adopter, |c| replicas.has(c));
        node.stats.nodes_down += 1;
        let waiting = if gone == me {
            Vec::new()
        } else {
            node.links.take(gone)
        };
        for (n, filter, count) in adoption.interest {
            if n != me {
                self.peer_interest(n, filter, count);
            }
        }
        if replaying {
            return;
        }
        if gone == me {
            return self.taken_down(my_incarnation);
        }
        if adopter == me {
            for client_id in adoption.moved {
                self.adopt_session(client_id);
            }
            self.publish_cluster_wills(adoption.wills);
        }
        for message in waiting {
            self.redirect(adopter, message);
        }
    }

    /// Takes in, from its copy, the session of a client this node adopted from a node declared
    /// down: offline until its client comes back (here, or elsewhere through a handover).
    fn adopt_session(&mut self, client_id: ByteString) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let Some(copy) = node.replicas.copy(&client_id) else {
            return;
        };
        let claim = node.table.claims.get(&(client_id.clone(), node.me()));
        let claim = claim.copied().unwrap_or((node.incarnation, 0));
        node.stats.sessions_adopted += 1;
        self.install_session(&client_id, Some(Box::new(copy)), true);
        if let Some(node) = &mut self.cluster {
            node.admitted.insert(client_id, claim);
        }
    }

    /// Publishes a will that came due for `client_id`'s session here. On a cluster node, a will
    /// the replicated state still holds waits until the log took it out: that of a session in the
    /// store (`stored`) for the batch that takes it out of the session (`unstored`), that of a
    /// clean session for the release of the claim it came with (`releasing`). Any will waits
    /// while this node has no leader (`withheld`).
    pub(super) fn publish_will_message(
        &mut self,
        client_id: &ByteString,
        will: Will,
        stored: bool,
    ) {
        let batch = self.persist.building();
        let now = self.now;
        if let Some(node) = &mut self.cluster {
            if stored && node.started() {
                node.unstored.push(Unstored {
                    batch,
                    client_id: client_id.clone(),
                    will,
                    due: now,
                });
                return;
            }
        }
        let message = Arc::new(Message::from_will(will, client_id.clone(), now));
        match &mut self.cluster {
            Some(node) if stored => {
                // A session restored at a restart: while this node was down, another may have
                // taken it from its copy and published the will. The `Wills` entry this node
                // proposes comes after any such claim in the log (seed 939).
                node.withheld.push((client_id.clone(), message));
            }
            Some(node) => match node.will_in_table(client_id) {
                Some(claim) => {
                    node.releasing.insert((client_id.clone(), claim), message);
                }
                None => self.will_due(client_id, message),
            },
            _ => self.will_due(client_id, message),
        }
    }

    /// Publishes the wills whose session's batch is now durable and committed (see `unstored`).
    pub(super) fn stored_wills(&mut self) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.unstored.is_empty() {
            return;
        }
        let persist = &self.persist;
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut node.unstored)
            .into_iter()
            .partition(|u| persist.is_replicated(u.batch));
        node.unstored = waiting;
        for u in due {
            let message = Message::from_will(u.will, u.client_id.clone(), u.due);
            self.will_due(&u.client_id, Arc::new(message));
        }
    }

    /// Publishes a will, unless this node has no leader: then it waits in `withheld`.
    fn will_due(&mut self, client_id: &ByteString, message: Arc<Message>) {
        if let Some(node) = &mut self.cluster {
            if node.raft.leader().is_none() {
                node.withheld.push((client_id.clone(), message));
                return;
            }
        }
        self.accept_message(message);
    }

    /// Publishes the wills this node took out of the table (see [`Table::wills`]): their
    /// connections died with their node.
    fn publish_cluster_wills(&mut self, wills: Vec<(ByteString, Will)>) {
        for (client_id, will) in wills {
            let message = Message::from_will(will, client_id, self.now);
            self.accept_message(Arc::new(message));
        }
    }

    /// A message that waited for a node declared down goes where that node's sessions went: a
    /// publish to the adopter (its shared groups to another member), under the same receipt, and
    /// to the nodes that need it now (sessions that moved off the node took their copies without
    /// it: seed 17; the stamp drops it where it was taken already); a relay or a handover to its
    /// session's owner ([`Engine::reroute_handover`]).
    fn redirect(&mut self, adopter: u16, message: PeerMessage) {
        if let PeerMessage::Handover { .. } = message {
            return self.reroute_handover(message);
        }
        if let PeerMessage::Relay {
            client_id,
            message,
            stamp,
            ..
        } = message
        {
            return self.reroute_relay(client_id, message, stamp);
        }
        let PeerMessage::Publish {
            message,
            plain,
            groups,
            receipt,
            from,
            stamp,
            after: routed_at,
        } = message
        else {
            return;
        };
        let me = self.me();
        let after = self.cluster.as_ref().map_or(0, |node| node.position());
        if plain {
            self.redirect_to_moved_here(&message, stamp, routed_at, receipt);
        }
        let mut shares: BTreeMap<u16, (bool, Vec<ByteString>)> = BTreeMap::new();
        if plain {
            shares.entry(adopter).or_default().0 = true;
            let topic = message.topic.as_str();
            let mut others = self.peers.plain_for(topic);
            if let Some(node) = &mut self.cluster {
                others.extend(node.claimants(topic));
            }
            for to in others.into_iter().filter(|to| *to != me) {
                shares.entry(to).or_default().0 = true;
            }
        }
        for group in groups {
            if let Some(chosen) = self.choose_engine(&group, &message) {
                shares.entry(chosen).or_default().1.push(group);
            }
        }
        // A session this node waits for may have been the down node's: what waited for that node
        // is this session's too (routed here, it would be kept the same way).
        if plain && !shares.contains_key(&me) {
            self.keep_redirected(&message, stamp, receipt);
        }
        for (to, (plain, groups)) in shares {
            if let Some(seq) = receipt {
                self.persist.await_more(seq);
            }
            let publish = PeerMessage::Publish {
                message: message.clone(),
                plain,
                groups,
                receipt,
                from,
                stamp,
                after,
            };
            if to != me {
                self.send_peer(to, publish);
                continue;
            }
            let mark = self.persist.mark();
            self.peer_message(publish);
            self.own_share_done(mark, receipt);
        }
        if let Some(seq) = receipt {
            // The down node's share, now the others'.
            self.persist.peer_stored(seq);
            self.release_held();
        }
    }

    /// The publishes this node gave up on (their node, `to`, acknowledged nothing for twice
    /// `peer_timeout`, and was not declared down) still reach the persistent sessions they were
    /// for. Those that moved since this node routed them (`after`): `to` would have relayed them
    /// there, and their owners now did not get them. Those this node holds take them here, the
    /// others' owners get relays (seed 62155: the roamer's node crashed with two messages routed
    /// to it, the session moved to another node, and the publisher's node gave up on the crashed
    /// one just after its restart). And those that stayed on `to` get relays, which go again
    /// until `to` acknowledges them (or to its adopter, once it is declared down). Each
    /// publisher's acknowledgement waits until that is stored. `to`'s other subscribers lose
    /// them (see docs/cluster.md, "Giving up").
    fn relay_given_up(&mut self, dropped: &[(u16, PeerMessage)]) {
        let mut stayed: BTreeMap<u16, TopicTrie<ByteString, ()>> = BTreeMap::new();
        for (to, message) in dropped {
            let PeerMessage::Publish {
                message,
                plain: true,
                receipt,
                stamp,
                after,
                ..
            } = message
            else {
                continue;
            };
            self.redirect_to_moved_here(message, *stamp, *after, *receipt);
            if let Some(seq) = receipt {
                self.persist.await_more(*seq);
            }
            let mark = self.persist.mark();
            let outer = std::mem::replace(&mut self.stamp, *stamp);
            self.relay_to_moved(message, *after);
            self.stamp = outer;
            if let (Some(stamp), Some(node)) = (stamp, &self.cluster) {
                let subscribers = stayed
                    .entry(*to)
                    .or_insert_with(|| node.subscribers_on(*to));
                let mut clients = BTreeSet::new();
                subscribers.for_each_match(message.topic.as_str(), |client, ()| {
                    if !node.table.moved_since(*after).any(|moved| moved == client) {
                        clients.insert(client.clone());
                    }
                });
                for client_id in clients {
                    self.send_relay(*to, client_id, message.clone(), *stamp);
                }
            }
            self.own_share_done(mark, *receipt);
        }
    }

    /// Delivers `message`, which waited here for a node declared down, to the persistent
    /// sessions this node holds that moved since this node routed it (`routed_at`): it went to
    /// their owner then, perhaps the down node, and this node's sessions took it only if they
    /// were here already (those drop it by its stamp). Seed 4137: the roamer's node died with
    /// three messages waiting for it; the publisher's node took the session from its copy and
    /// never delivered them. What it writes holds the message's receipt, as any share does.
    fn redirect_to_moved_here(
        &mut self,
        message: &Arc<Message>,
        stamp: Option<Stamp>,
        routed_at: u64,
        receipt: Option<u64>,
    ) {
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let here: Vec<crate::session::SessionId> = (node.table.moved_since(routed_at))
            .filter(|client| node.table.owners.get(*client) == Some(&me))
            .filter_map(|client| self.by_client.get(client).copied())
            .collect();
        if here.is_empty() {
            return;
        }
        if let Some(seq) = receipt {
            self.persist.await_more(seq);
        }
        let mark = self.persist.mark();
        let outer = std::mem::replace(&mut self.stamp, stamp);
        for sid in here {
            self.route_plain_to(message, Some(sid));
        }
        self.stamp = outer;
        self.own_share_done(mark, receipt);
    }

    /// This node took its own share of a redirected message (receipt `receipt`), writing what
    /// follows `mark`: the share is acknowledged once that is durable, or at once if nothing was
    /// written.
    fn own_share_done(&mut self, mark: usize, receipt: Option<u64>) {
        let Some(seq) = receipt else {
            return;
        };
        match (self.persist.gate_since(mark), &mut self.cluster) {
            (Some(batch), Some(node)) => node.self_receipts.push((batch, seq)),
            _ => self.persist.peer_stored(seq),
        }
    }

    /// This node applied its own `Down`: it was cut off, and the others gave up on it. Its
    /// sessions are the adopter's now, so it ends them here (their wills with them: the sessions
    /// live on there) and disconnects any client left; then it says it is back, and serves anew.
    fn taken_down(&mut self, incarnation: u64) {
        for s in self.sessions.values_mut() {
            s.will = None;
        }
        if let Some(node) = &mut self.cluster {
            node.withheld.clear();
            node.unstored.clear();
            node.releasing.clear();
        }
        let conns: Vec<ConnId> = self.sessions.values().filter_map(|s| s.conn).collect();
        for conn in conns {
            let why = "the cluster declared this node down".to_string();
            self.kick(conn, ReasonCode::ServerUnavailable, why);
        }
        // The sessions this node waited for are the adopter's now (or a newer claimant's): what
        // it kept for them and the late versions it got go on there, and the acknowledgements
        // they held are released (seed 13653: dropped with them, a kept message's receipt held
        // every later storage batch for ever, and with it every CONNACK).
        let waits = match &mut self.cluster {
            Some(node) => std::mem::take(&mut node.awaiting),
            None => BTreeMap::new(),
        };
        for (client_id, awaiting) in waits {
            self.release_interest(&awaiting.interest);
            if let Some(conn) = awaiting.conn {
                self.refuse_claiming(conn);
            }
            let me = self.me();
            let owner = (self.cluster.as_ref()).and_then(|n| n.table.owners.get(&client_id));
            match owner.copied().filter(|o| *o != me) {
                Some(to) => {
                    self.pass_on_late(to, &client_id, awaiting.claim, awaiting.late);
                    self.pass_on_kept(to, client_id, awaiting.kept);
                }
                None => self.deliver_kept(awaiting.kept, None),
            }
        }
        self.drop_unowned_sessions(true);
        if let Some(node) = &mut self.cluster {
            let me = node.me();
            node.submit(|_| Command::Up {
                node: me,
                incarnation,
            });
        }
    }

    /// The raft tick: advances raft's clock, resends what links and proposals lost, and refuses
    /// CONNECTs whose claim took too long.
    pub(super) fn cluster_tick(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        node.raft.node.tick();
        // Each tick lasts 75–125% of the configured one, drawn from the engine's seed: nodes that
        // drew the same election timeout (raft's own draw is pinned, see `Raft::new`) still drift
        // apart, so their elections do not keep colliding.
        let tick = node
            .config
            .tick
            .mul_f64(0.75 + self.rng.below(500) as f64 / 1000.0);
        self.timers.set(TimerKind::ClusterTick, now + tick);
        let (resend, dropped) = node.links.poll(now);
        for (to, frame) in resend {
            self.events.push_back(Event::Cluster {
                to,
                frame: frame.encode(now),
            });
        }
        node.stats.peer_drops += dropped.len() as u64;
        // The node is gone: its subscribers' sessions went with it (see docs/cluster.md). A relay
        // or a handover goes again: to the session's owner now (an adopter, once the node is
        // declared down), or to the same node, which may only be cut off from this one.
        let (again, dropped): (Vec<_>, Vec<_>) = (dropped.into_iter()).partition(|(_, m)| {
            matches!(
                m,
                PeerMessage::Relay { .. }
                    | PeerMessage::Handover {
                        session: Some(_),
                        ..
                    }
            )
        });
        self.relay_given_up(&dropped);
        self.link_receipts(dropped.into_iter().map(|(_, m)| m).collect());
        for (_, message) in again {
            match message {
                PeerMessage::Relay {
                    client_id,
                    message,
                    stamp,
                    ..
                } => self.reroute_relay(client_id, message, stamp),
                handover => self.reroute_handover(handover),
            }
        }
        let late: Vec<(u64, ConnId)> = match &self.cluster {
            Some(node) => node
                .parked
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(token, (conn, _))| (*token, *conn))
                .collect(),
            None => Vec::new(),
        };
        for (token, conn) in late {
            if let Some(node) = &mut self.cluster {
                node.parked.remove(&token);
                node.pending.remove(&token);
                node.stats.claims_timed_out += 1;
            }
            self.refuse_claiming(conn);
        }
        self.handover_deadlines();
        self.reconcile_interest(false);
        self.fence();
        self.declare_down();
    }

    /// A node cut off from the majority disconnects its clients before the others give up on it,
    /// so a client never stays on a node whose publishes and subscriptions no longer reach the
    /// cluster; while it stays cut off, CONNECTs fail for want of a commit.
    fn fence(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.raft.leader().is_some() {
            node.leaderless_since = None;
            node.fenced = false;
            if !node.withheld.is_empty() && !node.wills_proposed {
                node.wills_proposed = true;
                let (me, incarnation) = (node.me(), node.incarnation);
                node.submit(|_| Command::Wills {
                    node: me,
                    incarnation,
                });
            }
            return;
        }
        let since = *node.leaderless_since.get_or_insert(now);
        if node.fenced || now.saturating_duration_since(since) < node.config.fence_after {
            return;
        }
        node.fenced = true;
        node.stats.fenced += 1;
        let conns: Vec<ConnId> = self.sessions.values().filter_map(|s| s.conn).collect();
        for conn in conns {
            let why = "this node lost contact with the cluster's majority".to_string();
            self.kick(conn, ReasonCode::ServerUnavailable, why);
        }
    }

    /// Parks a CONNECT until this node's claim of its client identifier commits.
    pub(super) fn park_for_claim(&mut self, conn: ConnId, claiming: Claiming, will: Option<Will>) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.removed {
            // Out of the cluster: no claim of this node can commit.
            return self.refuse(
                conn,
                claiming.connect.protocol,
                ReasonCode::ServerUnavailable,
            );
        }
        let (me, incarnation) = (node.me(), node.incarnation);
        let client_id = claiming.client_id.clone();
        let token = node.submit(|token| Command::Claim {
            client_id,
            node: me,
            incarnation,
            token,
            will: will.map(Box::new),
        });
        node.parked
            .insert(token, (conn, now + node.config.claim_timeout));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Claiming(Box::new(claiming));
        }
    }

    /// Proposes what waits (new, or not seen applied within the retransmission interval).
    fn propose_pending(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.raft.leader().is_none() {
            // Raft drops proposals without a leader; they wait for one.
            return;
        }
        if node.removed {
            return;
        }
        let heir = node
            .conf_members()
            .into_iter()
            .find(|n| *n != node.config.node);
        if let Some((cc, last)) = &mut node.conf_pending {
            if *last == Instant::ZERO || now.saturating_duration_since(*last) >= CONF_RETRY {
                let removing_leader = cc.get_change_type() == ConfChangeType::RemoveNode
                    && node.raft.is_leader()
                    && cc.node_id == u64::from(node.config.node);
                match heir.filter(|_| removing_leader) {
                    // A leader that leaves hands the leadership on first: a removed leader would
                    // go on leading a cluster it is not in.
                    Some(heir) => node.raft.node.transfer_leader(u64::from(heir)),
                    None => {
                        let _ = node.raft.node.propose_conf_change(Vec::new(), cc.clone());
                    }
                }
                *last = now.max(Instant::from_micros(1));
            }
        }
        let (me, inc, retransmit) = (node.me(), node.incarnation, node.config.retransmit);
        for (token, (command, last)) in node.pending.iter_mut() {
            if *last != Instant::ZERO && now.saturating_duration_since(*last) < retransmit {
                continue;
            }
            let data = command.encode(now);
            if node
                .raft
                .node
                .propose(context(me, inc, *token), data)
                .is_ok()
            {
                *last = now.max(Instant::from_micros(1));
            }
        }
        self.propose_writes();
    }

    /// Proposes this node's next session writes entry, or again the one in the log's hands if it
    /// did not commit within the retransmission interval (a proposal lost with a leader). One
    /// entry at a time: proposals from one node can reach the leader out of order (raft forwards
    /// them as they come), and writes must apply in the order they were made. What queues
    /// meanwhile goes in the next entry together, so the log sees fewer, larger entries under load.
    fn propose_writes(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if node.raft.leader().is_none()
            || node.table.incarnations.get(&node.me()) != Some(&node.incarnation)
        {
            // Raft drops proposals without a leader, and the table refuses session writes
            // before this incarnation's Start applied.
            return;
        }
        if node.writes.is_none() && !node.queued_writes.is_empty() {
            let mut writes: Vec<Written> = Vec::new();
            let mut batches = Vec::new();
            let mut used = 0;
            while let Some((_, cost, _)) = node.queued_writes.front() {
                if !writes.is_empty() && used + cost > cluster::WRITES_BUDGET {
                    break;
                }
                let Some((more, cost, batch)) = node.queued_writes.pop_front() else {
                    break;
                };
                used += cost;
                match writes.last_mut() {
                    Some(last) if last.seen == more.seen => last.ops.extend(more.ops),
                    _ => writes.push(more),
                }
                batches.extend(batch);
            }
            node.next_write += 1;
            node.writes = Some(Writes {
                command: Command::Session {
                    node: node.config.node,
                    incarnation: node.incarnation,
                    seq: node.next_write,
                    writes,
                },
                batches,
                proposed: Instant::ZERO,
            });
        }
        let retransmit = node.config.retransmit;
        if let Some(w) = &mut node.writes {
            let due = w.proposed == Instant::ZERO
                || now.saturating_duration_since(w.proposed) >= retransmit;
            if due
                && node
                    .raft
                    .node
                    .propose(Vec::new(), w.command.encode(now))
                    .is_ok()
            {
                w.proposed = now.max(Instant::from_micros(1));
            }
        }
    }

    /// Sends the session writes added to the batch being built since the last call through the
    /// log: the batch is durable only once they committed, so nothing is acknowledged that one
    /// node's loss could take (acknowledge after the replicated commit). Returns whether there
    /// were any.
    pub(super) fn replicate_writes(&mut self) -> bool {
        let Some(node) = &mut self.cluster else {
            return false;
        };
        let batch = self.persist.building();
        // In runs made at the same point of the log; those this node made for a session it did
        // not own then stay off it.
        let mut runs: Vec<(u64, Vec<StoreOp>)> = Vec::new();
        for (at, op) in unproposed_writes(node, &self.persist) {
            let owned = op
                .session_client()
                .is_some_and(|c| node.owned_at(batch, at, c));
            if !owned {
                continue;
            }
            let seen = node.seen_at(batch, at);
            match runs.last_mut() {
                Some((s, ops)) if *s == seen => ops.push(op.clone()),
                _ => runs.push((seen, vec![op.clone()])),
            }
        }
        let cursor = self.persist.len();
        node.writes_cursor = (batch, cursor);
        node.unreplicated.retain(|(b, _)| *b == batch);
        node.marks.taken(batch, cursor);
        if runs.is_empty() {
            return false;
        }
        for (seen, ops) in runs {
            self.queue_writes_made(ops, true, seen);
        }
        self.propose_writes();
        true
    }

    /// Queues `ops` as session writes (in pieces of at most [`cluster::WRITES_BUDGET`]), the
    /// batch being built waiting for each piece if `hold`.
    fn queue_writes(&mut self, ops: Vec<StoreOp>, hold: bool) {
        if let Some(seen) = self.cluster.as_ref().map(|node| node.seen()) {
            self.queue_writes_made(ops, hold, seen);
        }
    }

    /// [`Engine::queue_writes`] for writes made when this node had applied the log as far as
    /// `seen`.
    fn queue_writes_made(&mut self, ops: Vec<StoreOp>, hold: bool, seen: u64) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        for (ops, cost) in split_writes(ops) {
            let batch = hold.then(|| self.persist.await_replication());
            node.queued_writes
                .push_back((Written { seen, ops }, cost, batch));
        }
    }

    /// This node's session writes entry `seq` committed: the batches it held are released, and
    /// the next entry goes.
    fn writes_committed(&mut self, seq: u64) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let done = matches!(
            &node.writes,
            Some(Writes { command: Command::Session { seq: s, .. }, .. }) if *s == seq
        );
        if !done {
            return;
        }
        let batches = node.writes.take().map(|w| w.batches).unwrap_or_default();
        self.batches_replicated(&batches);
        self.propose_writes();
    }

    /// What waited for `batches`' log entries to commit goes on: acknowledgements, receipts,
    /// wills.
    fn batches_replicated(&mut self, batches: &[u64]) {
        for batch in batches {
            self.persist.replicated(*batch);
        }
        if !batches.is_empty() {
            self.release_held();
            self.answer_receipts();
            self.stored_wills();
        }
    }

    /// Records the router's interest changes and proposes them; unless `changes_only`, also
    /// re-proposes every filter whose applied count differs from this node's and was not proposed
    /// lately (what the log lost).
    pub(super) fn reconcile_interest(&mut self, changes_only: bool) {
        let changes = self.router.interest_changes();
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let mut dirty: Vec<ByteString> = Vec::new();
        for (filter, count) in changes {
            if count == 0 {
                node.desired.remove(&filter);
            } else {
                node.desired.insert(filter.clone(), count);
            }
            dirty.push(filter);
        }
        if !changes_only && node.table.incarnations.get(&node.me()) == Some(&node.incarnation) {
            // Also whatever the log lost: filters whose applied count is not ours.
            let me = node.me();
            let stale = |f: &ByteString, n: &Node| {
                n.proposed
                    .get(f)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= n.config.retransmit)
            };
            for (filter, count) in &node.desired {
                if node.table.count(me, filter) != *count && stale(filter, node) {
                    dirty.push(filter.clone());
                }
            }
            let gone: Vec<ByteString> = node
                .table
                .filters_of(me)
                .filter(|(f, _)| !node.desired.contains_key(*f) && stale(f, node))
                .map(|(f, _)| f.clone())
                .collect();
            dirty.extend(gone);
        }
        dirty.sort();
        dirty.dedup();
        for filter in dirty {
            node.interest_version += 1;
            let count = node.desired.get(&filter).copied().unwrap_or(0);
            node.proposed.insert(filter.clone(), now);
            let command = Command::Interest {
                node: node.me(),
                incarnation: node.incarnation,
                version: node.interest_version,
                filter,
                count,
            };
            // Interest is not kept pending: the next reconciliation resends what did not apply.
            if node.raft.leader().is_some() {
                let _ = node.raft.node.propose(Vec::new(), command.encode(now));
            }
        }
    }

    /// Proposes a retained message (or its removal) for every node. The batch being built (its
    /// acknowledgements) waits for the entry to commit if the message is QoS 1 or 2 and storage
    /// is on, like the session writes that carry the same promise.
    pub(super) fn replicate_retained(&mut self, message: Arc<Message>) {
        let hold = message.qos != QoS::AtMostOnce && self.persist.enabled();
        if let Some(node) = &mut self.cluster {
            let seen = node.seen();
            let token = node.submit(|_| Command::Retain { message, seen });
            if hold && !node.removed {
                let batch = self.persist.await_replication();
                node.retain_holds.insert(token, batch);
            }
        }
    }

    /// Proposes that this node no longer holds `client_id`, if the table says it does.
    pub(super) fn release_client(&mut self, client_id: &ByteString) {
        if let Some(node) = &mut self.cluster {
            let me = node.me();
            if let Some((incarnation, token)) = node.admitted.remove(client_id) {
                let replaced = (client_id.clone(), me, incarnation, token);
                if node.table.owners.get(client_id) == Some(&me)
                    || node.table.replaced.contains_key(&replaced)
                {
                    let seen = node.seen();
                    node.submit(|_| Command::Release {
                        client_id: client_id.clone(),
                        node: me,
                        incarnation,
                        token,
                        seen,
                    });
                }
            }
        }
    }

    /// Runs raft until it has nothing more to do: sends its messages, stores its log, applies what
    /// committed. Called at the end of every input.
    pub(super) fn cluster_ready(&mut self) {
        if self.cluster.is_none() {
            return;
        }
        self.propose_pending();
        loop {
            self.release_durable();
            let now = self.now;
            let enabled = self.persist.enabled();
            let Some(node) = &mut self.cluster else {
                return;
            };
            if !node.raft.node.has_ready() {
                break;
            }
            let mut rd = node.raft.node.ready();
            let mut snapshots_sent = Vec::new();
            for m in rd.take_messages() {
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    snapshots_sent.push(m.to);
                }
                push_raft(&mut self.events, &mut node.parts, &m, now);
            }
            let committed = rd.take_committed_entries();
            let entries = rd.take_entries();
            let mark = self.persist.mark();
            let snapshot = (!rd.snapshot().is_empty()).then(|| rd.snapshot().clone());
            if let Some(s) = &snapshot {
                node.mark_seen(self.persist.building(), self.persist.len());
                for op in node.raft.install_received(s) {
                    self.persist.push(op);
                }
                node.stats.snapshots_received += 1;
            }
            if !entries.is_empty() {
                node.raft.node.mut_store().append(&entries);
                for op in cluster::entry_ops(&entries) {
                    self.persist.push(op);
                }
            }
            if let Some(hs) = rd.hs() {
                node.raft.node.mut_store().set_hard_state(hs.clone());
                self.persist.push(cluster::hard_state_op(hs));
            }
            let persisted = rd.take_persisted_messages();
            let number = rd.number();
            node.raft.node.advance_append_async(rd);
            // Frames carry no delivery report: the leader takes a snapshot as sent, and the
            // follower's next answer shows whether it arrived (if not, it goes again). Otherwise
            // raft would wait for a report forever.
            for to in snapshots_sent {
                node.raft.node.report_snapshot(to, SnapshotStatus::Finish);
            }
            // A ready with nothing to store still waits behind an earlier one that has: raft
            // takes persistence reports in order, and one would cover the other.
            let gate = self.persist.gate_since(mark).filter(|_| enabled);
            match gate.or_else(|| node.raft.held.back().map(|(batch, _, _)| *batch)) {
                Some(batch) => node.raft.held.push_back((batch, number, persisted)),
                None => {
                    node.raft.persisted(number);
                    for m in &persisted {
                        push_raft(&mut self.events, &mut node.parts, m, now);
                    }
                }
            }
            if let Some(s) = snapshot {
                self.install_state(&s.data, true);
            }
            let last = committed.last().map(|e| e.index);
            for entry in committed {
                self.apply_entry(&entry);
            }
            if let (Some(index), Some(node)) = (last, &mut self.cluster) {
                node.raft.node.advance_apply_to(index);
            }
            self.compact_log();
            self.release_link_holds();
        }
        let replayed = self.cluster.as_ref().is_some_and(|node| {
            node.replay_until != 0 && node.raft.node.raft.raft_log.applied >= node.replay_until
        });
        if replayed {
            if let Some(node) = &mut self.cluster {
                node.replay_until = 0;
            }
            self.set_handed_over_aside();
            self.drop_unowned_sessions(false);
            self.await_missing_sessions();
            self.resend_stored_relays();
        }
        if let Some(node) = &mut self.cluster {
            // A received snapshot is applied before raft hears it was (once it is durable).
            let snapshot = node.raft.node.store().snapshot_index();
            node.stats.applied = node.raft.node.raft.raft_log.applied.max(snapshot);
            node.stats.snapshot_index = snapshot;
            node.stats.log_entries = node.raft.node.store().len() as u64;
            node.stats.leader = node.raft.is_leader();
            node.stats.term = node.raft.node.raft.term;
            node.stats.unacked = node.links.unacked() as u64;
            node.stats.replicated_sessions = node.replicas.len() as u64;
            node.stats.writes_uncommitted =
                (node.queued_writes.len() + usize::from(node.writes.is_some())) as u64;
        }
    }

    /// Tells raft which held readies are now durable and sends the messages they held.
    fn release_durable(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        while let Some((batch, number, _)) = node.raft.held.front() {
            if !self.persist.is_stored(*batch) {
                break;
            }
            let number = *number;
            if let Some((_, _, messages)) = node.raft.held.pop_front() {
                node.raft.persisted(number);
                for m in &messages {
                    push_raft(&mut self.events, &mut node.parts, m, now);
                }
            }
        }
    }

    fn apply_entry(&mut self, entry: &raft::eraftpb::Entry) {
        if entry.get_entry_type() == EntryType::EntryConfChange {
            return self.apply_conf_change(entry);
        }
        if !cluster::is_command(entry) {
            return;
        }
        let Some(node) = &mut self.cluster else {
            return;
        };
        node.mark_seen(self.persist.building(), self.persist.len());
        node.applied = entry.index;
        let by = parse_context(&entry.context);
        if let Some((from, inc, token)) = by {
            if from == node.me() && inc == node.incarnation {
                node.pending.remove(&token);
                if let Some(batch) = node.retain_holds.remove(&token) {
                    // Committed, whatever applying it does.
                    self.batches_replicated(&[batch]);
                }
            }
        }
        let Some(node) = &mut self.cluster else {
            return;
        };
        let command = match Command::decode(Bytes::copy_from_slice(&entry.data), self.now) {
            Ok(command) => command,
            Err(error) => {
                // Every node applies the same log, so every node skips the same entry.
                node.stats.bad_frames += 1;
                self.events.push_back(Event::ClusterFrameRejected {
                    from: 0,
                    why: format!("log entry {}: {error}", entry.index),
                });
                return;
            }
        };
        if let Command::Retain { message, seen } = &command {
            let topic = message.topic.as_bytestring();
            let newer = by.is_none_or(|(node_id, incarnation, token)| {
                let by = RetainedBy {
                    node: node_id,
                    incarnation,
                    token,
                    seen: *seen,
                    at: entry.index,
                };
                node.table.retain(topic, by)
            });
            let mine = by.is_some_and(|(n, inc, _)| (n, inc) == (node.me(), node.incarnation));
            if newer {
                match message.payload.is_empty() {
                    true => node.retained.remove(topic),
                    false => node.retained.insert(topic.clone(), message.clone()),
                };
            }
            // A node shows its clients its own message at once (read your writes); one the log put
            // behind the message in force is taken back unless another of its own is on the way.
            let show = newer || (mine && !node.retaining(topic));
            if show && self.config.retain_available {
                match node.retained.get(topic) {
                    Some(message) => self.retained.insert(message.clone()),
                    None => {
                        self.retained.remove(topic);
                    }
                }
            }
            return;
        }
        let me = node.me();
        let my_incarnation = node.incarnation;
        let started = match &command {
            Command::Start { node: n, .. } => Some((*n, node.table.incarnations.get(n).copied())),
            _ => None,
        };
        let change = node.table.apply(entry.index, &command);
        if let Some((n, old)) = started {
            let new = node.table.incarnations.get(&n).copied();
            node.retire(n, old, new);
        }
        if let Command::Release { client_id, .. } = &command {
            if !node.table.owners.contains_key(client_id) {
                // The session ended for good.
                node.replicas.forget(client_id);
            }
        }
        match change {
            Change::None => {}
            Change::Down {
                node: gone,
                adopter,
            } => {
                let replaying = entry.index <= node.replay_until;
                self.node_down(entry.index, gone, adopter, replaying);
            }
            Change::Released {
                client_id,
                node: from,
                claim,
            } => {
                if from == me && claim.0 == my_incarnation {
                    if let Some(message) = node.releasing.remove(&(client_id.clone(), claim)) {
                        self.will_due(&client_id, message);
                    }
                }
            }
            Change::WillsDue { node: from } => {
                if from == me && by.is_some_and(|(_, inc, _)| inc == my_incarnation) {
                    node.wills_proposed = false;
                    let withheld = std::mem::take(&mut node.withheld);
                    for (_, message) in withheld {
                        self.accept_message(message);
                    }
                }
            }
            Change::SessionWrites { node: from, seq } => {
                let Command::Session {
                    incarnation,
                    writes,
                    ..
                } = command
                else {
                    return;
                };
                for written in &writes {
                    for op in &written.ops {
                        // The owner in force writes a session, since it has owned it. So does
                        // the node whose writes built the copy, until another starts it over:
                        // each of its writes was made while it owned the session (the others
                        // stay off the log), and one that commits after the client moved is
                        // what a handover carries too; if that never arrives (its node crashed
                        // before the link delivered it), the copy still has it (seed 3818: four
                        // acknowledged messages lost). Not its delete: a node that restarted
                        // writes its sessions whole, a delete first, and what the copy has
                        // beyond its store would go (seed 91).
                        let owner = op.session_client().is_some_and(|c| {
                            node.table.writes_to(c, from, written.seen)
                                || (node.replicas.writer(c) == Some(from)
                                    && !matches!(op, StoreOp::DeleteSession { .. }))
                        });
                        if owner {
                            node.replicas.apply(from, op);
                        }
                    }
                }
                if from == me && incarnation == my_incarnation {
                    self.writes_committed(seq);
                }
            }
            Change::Owner {
                client_id,
                from,
                to,
                incarnation,
                token,
            } => {
                let replaying = entry.index <= node.replay_until;
                let mine = from == Some(me);
                node.mark_owner(
                    self.persist.building(),
                    self.persist.len(),
                    &client_id,
                    mine,
                );
                let announced = node.table.interest_version(to);
                node.session_moving(&client_id, to, announced);
                // A claim of this node took the wills of its ended connections out of the table
                // (another node's moves them to `replaced`, still due).
                let first = (client_id.clone(), (0, 0));
                let last = (client_id.clone(), (u64::MAX, u64::MAX));
                let out: Vec<(u64, u64)> = (node.releasing.range(first..=last))
                    .map(|((_, claim), _)| *claim)
                    .filter(|claim| !node.will_held(&client_id, *claim))
                    .collect();
                for claim in out {
                    let Some(node) = &mut self.cluster else {
                        return;
                    };
                    if let Some(message) = node.releasing.remove(&(client_id.clone(), claim)) {
                        self.will_due(&client_id, message);
                    }
                }
                let Some(node) = &mut self.cluster else {
                    return;
                };
                if to == me && incarnation == my_incarnation {
                    let conn = node.parked.remove(&token).map(|(conn, _)| conn);
                    let early = node.early.remove(&client_id);
                    self.own_claim(client_id, from, true, (incarnation, token), conn, early);
                } else if to == me && !replaying {
                    // A claim this node made before it restarted, whose CONNECT died with it: the
                    // session still comes here (its old owner sends the handover again, as this
                    // node never acknowledged it), and what this node hands over next waits for it.
                    let early = node.early.remove(&client_id);
                    self.own_claim(client_id, from, true, (incarnation, token), None, early);
                } else if to != me && !replaying {
                    let claim = (incarnation, token);
                    if from == Some(me) {
                        self.hand_over(client_id, to, claim);
                    } else {
                        self.lose_client(&client_id);
                    }
                }
            }
            Change::Interest {
                node: from,
                filter,
                count,
            } => {
                if from != me {
                    self.peer_interest(from, filter, count);
                }
            }
            Change::Forgotten {
                node: from,
                filters,
                wills,
            } => {
                let replaying = entry.index <= node.replay_until;
                if from != me {
                    node.sessions_restarting(from);
                    for filter in filters {
                        self.peer_interest(from, filter, 0);
                    }
                } else if !replaying {
                    // This node restarted: the connections of its last incarnation died with
                    // it, and nobody else publishes their wills.
                    self.publish_cluster_wills(wills);
                }
            }
        }
    }

    /// This node's claim of `client_id` committed. A resuming CONNECT whose client another node
    /// held waits for that node's handover (unless it already came); anything else is admitted now.
    fn own_claim(
        &mut self,
        client_id: ByteString,
        from: Option<u16>,
        from_log: bool,
        claim: (u64, u64),
        conn: Option<ConnId>,
        early: Option<Early>,
    ) {
        let now = self.now;
        let me = self.me();
        // A CONNECT whose connection closed while its claim was on its way is no CONNECT: the
        // session must still come here (the old owner hands it over), or it would be lost.
        let claiming = conn.and_then(|conn| match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Claiming(c)) => Some((conn, !c.connect.clean_start)),
            _ => None,
        });
        let conn = claiming.map(|(conn, _)| conn);
        let resuming = claiming.is_none_or(|(_, resuming)| resuming);
        // Another node held the session, or this node did before it restarted without it ever
        // arriving here (a claim of its earlier incarnation committed while it was down).
        let elsewhere =
            from.is_some_and(|from| from != self.me() || !self.by_client.contains_key(&client_id));
        let Some(node) = &mut self.cluster else {
            return;
        };
        // What came for the session behind its early handover goes where the session goes.
        let mut early = early;
        let mut kept = (early.as_mut()).map_or_else(Vec::new, |e| std::mem::take(&mut e.kept));
        if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
            // An older claim of this node still waits for the session: this newer claim takes
            // its place (and takes back a relay promised to another node meanwhile: that node
            // gives up waiting and hands nothing over). An early handover for another claim of
            // this node is a late version of the session, as below.
            awaiting.kept.append(&mut kept);
            if let Some(session) = early.as_mut().and_then(|e| e.session.take()) {
                awaiting.late.push(*session);
            }
            awaiting.owed = None;
            awaiting.admit = claim;
            let older = std::mem::replace(&mut awaiting.conn, conn.filter(|_| resuming));
            if !resuming {
                let (kept, interest) = (node.awaiting.remove(&client_id))
                    .map(|a| (a.kept, a.interest))
                    .unwrap_or_default();
                self.release_interest(&interest);
                self.deliver_kept(kept, None);
                self.admit_claimed(client_id, claim, conn);
            }
            if let Some(older) = older {
                self.refuse_claiming(older);
            }
            return self.early_done(early, None);
        }
        if !(elsewhere && resuming) {
            // A fresh session, or the one already here: a copy of another node's is stale.
            self.deliver_kept(kept, None);
            self.discard_copy(&client_id);
            self.admit_claimed(client_id, claim, conn);
            return self.early_done(early, None);
        }
        let node = self.cluster.as_ref();
        let answers =
            |e: &Early| node.is_some_and(|n| n.answers(&client_id, claim, e.claim, e.sent_at));
        match early {
            Some(mut early) if answers(&early) => {
                let mark = self.persist.mark();
                self.install_session(&client_id, early.session.take(), false);
                let sid = self.by_client.get(&client_id).copied();
                self.deliver_kept(kept, sid);
                self.admit_claimed(client_id, claim, conn);
                let batch = self.persist.gate_since(mark);
                self.early_done(Some(early), batch);
            }
            mut other => {
                // An early handover for an older claim of this node (a newer one applied with
                // it in a snapshot) is a late version of the session: the one waited for now may
                // lack what it has (seed 8149: four messages only it had were dropped).
                let late = (other.as_mut()).and_then(|e| e.session.take());
                self.early_done(other, None);
                // A version of the session this node still holds is stale (it is merged into the
                // one that comes), and so is a connection attached to it: it predates this
                // claim's CONNECT, and other nodes took the client in between (seed 21162: a node
                // behind the log learned of its new claim from a snapshot, and the client's old
                // connection stayed attached there while the client moved on).
                if let Some(sid) = self.by_client.get(&client_id).copied() {
                    self.take_over_stale_connection(sid);
                }
                let Some(node) = &mut self.cluster else {
                    return;
                };
                let deadline = now + node.config.handover_timeout;
                let interest: Vec<ByteString> = (node.replicas.session(&client_id))
                    .map(|copy| moving::ordinary_filters(copy).cloned().collect())
                    .unwrap_or_default();
                for filter in &interest {
                    self.router.hold_interest(filter);
                }
                let Some(node) = &mut self.cluster else {
                    return;
                };
                node.awaiting.insert(
                    client_id,
                    Awaiting {
                        claim,
                        admit: claim,
                        conn,
                        deadline,
                        owed: None,
                        from: from.filter(|from| from_log && *from != me),
                        late: late.into_iter().map(|l| *l).collect(),
                        kept,
                        interest,
                    },
                );
            }
        }
    }

    /// Ends what a wait for a session held of this node's interest ([`Awaiting::interest`]).
    fn release_interest(&mut self, filters: &[ByteString]) {
        for filter in filters {
            self.router.release_interest(filter);
        }
    }

    /// Refuses a CONNECT still waiting for its claim or session (v5: 0x88 Server unavailable):
    /// a newer CONNECT of its client took its place.
    fn refuse_claiming(&mut self, conn: ConnId) {
        if let Some(Phase::Claiming(c)) = self.conns.get(&conn).map(|c| &c.phase) {
            let protocol = c.connect.protocol;
            self.refuse(conn, protocol, ReasonCode::ServerUnavailable);
        }
    }

    /// Admits the CONNECT (if still there) whose `claim` of `client_id` committed, and records the
    /// claim the session here now holds.
    fn admit_claimed(&mut self, client_id: ByteString, claim: (u64, u64), conn: Option<ConnId>) {
        if let Some(conn) = conn {
            self.claimed(conn);
        }
        // Recorded after admitting: a session this CONNECT took over here is released under its
        // own, older claim, which the table then ignores.
        if let Some(node) = &mut self.cluster {
            node.admitted.insert(client_id, claim);
        }
    }

    /// A newer claim took `client_id` from this node to `to`: its session here goes there (as a
    /// store would hold it, with its high-water marks), its connection is taken over. A session
    /// still on its way here follows on when it arrives. Without a persistent session, `to` is told
    /// at once, so it does not wait.
    fn hand_over(&mut self, client_id: ByteString, to: u16, claim: (u64, u64)) {
        let now = self.now;
        if let Some(node) = &mut self.cluster {
            if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
                awaiting.owed = Some((to, claim));
                if let Some(conn) = awaiting.conn.take() {
                    self.refuse_claiming(conn);
                }
                return;
            }
        }
        let mut session = None;
        let mut left_behind = 0;
        let budget = self.handover_budget();
        if let Some(sid) = self.by_client.get(&client_id).copied() {
            self.take_over_connection(sid);
            // Queued messages of shared groups go to another member here, as when a session ends.
            self.hand_over_shared(sid, true);
            if let Some(mut snapshot) = self.handed_over_version(sid) {
                left_behind = snapshot.trim_to(budget);
                session = Some(Box::new(snapshot));
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                // The session lives on there: as on a takeover here, its will is not published.
                s.will = None;
            }
            if self.sessions.contains_key(&sid) {
                self.end_unreplicated(sid, session.is_some());
            }
        }
        // The copies of the session (this node's too) stay as this node last wrote it until the
        // new owner writes: if it dies first, they are the session.
        if let Some(node) = &mut self.cluster {
            // A will kept back here goes with the session too: the copies hold it, and a new
            // owner that takes the session from them publishes it unless its client resumes.
            node.withheld.retain(|(c, _)| *c != client_id);
            // So does a will waiting for the write that takes it out of the session: that write
            // is this node's, now no longer the owner's, so it never reaches the copies. Published
            // here as well, it went out twice when the new owner died before writing the session
            // and the next one took it from a copy (seed 4687). The new owner publishes it, unless
            // its client resumes, as on a takeover.
            let (carried, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut node.unstored)
                .into_iter()
                .partition(|u| u.client_id == client_id);
            node.unstored = kept;
            if let (Some(s), Some(u)) = (session.as_mut(), carried.into_iter().last()) {
                s.will = Some(u.will);
            }
            if session.is_none() && !self.by_client.contains_key(&client_id) {
                // This node owned the client without ever holding its session (its claim
                // committed while it was down): what it knows is its copy of the last owner's.
                // It keeps the copy: the next owner may die before it writes the session.
                session = node.replicas.copy(&client_id).map(Box::new);
            }
            node.stats.handovers_sent += u64::from(session.is_some());
            if session.is_some() {
                node.handed_over(&client_id, now);
            }
            node.stats.handover_messages_dropped += left_behind as u64;
        }

        self.send_handover(to, client_id, claim, session);
    }

    /// How much of a session one handover carries at most (see `Session::handed_over`).
    fn handover_budget(&self) -> usize {
        cluster::HANDOVER_BUDGET.max(self.config.max_packet_size as usize)
    }

    /// Sends `client_id`'s session (or none) to `to` for its `claim`. This node's writes to the
    /// session that have not committed yet never will count: only the owner in force writes a
    /// session, and that is `to` now. Their messages go along in the session, so what
    /// acknowledges them waits for `to` to have it (see [`PeerMessage::Handover`]'s receipt).
    /// Counted as committed, they were acknowledged and lost with the handover when this node
    /// crashed before sending it (seed 26).
    fn send_handover(
        &mut self,
        to: u16,
        client_id: ByteString,
        claim: (u64, u64),
        session: Option<Box<StoredSession>>,
    ) {
        let receipt = self.moot_writes(&client_id);
        match receipt {
            Some(batch) if batch == self.persist.building() => {
                self.persist.await_peer();
            }
            Some(batch) => self.persist.await_more(batch),
            None => {}
        }
        let applied = self.cluster.as_ref().map_or(0, |node| node.position());
        if let (Some(node), true) = (&mut self.cluster, session.is_some()) {
            *node.handing.entry(client_id.clone()).or_insert(0) += 1;
        }
        let message = PeerMessage::Handover {
            client_id,
            claim,
            session,
            receipt,
            applied,
        };
        self.send_peer(to, message);
    }

    /// The oldest storage batch that waits for this node's session writes to `client_id` not
    /// committed yet: in the log's hands, queued, or still in the batch being built.
    fn moot_writes(&self, client_id: &ByteString) -> Option<u64> {
        let node = self.cluster.as_ref()?;
        let touches = |ops: &[StoreOp]| ops.iter().any(|op| op.session_client() == Some(client_id));
        let in_flight = node.writes.as_ref().and_then(|w| {
            let Command::Session { writes, .. } = &w.command else {
                return None;
            };
            let touched = writes.iter().any(|written| touches(&written.ops));
            touched.then(|| w.batches.iter().min().copied()).flatten()
        });
        let queued = (node.queued_writes.iter())
            .filter(|(written, _, _)| touches(&written.ops))
            .filter_map(|(_, _, batch)| *batch)
            .min();
        let building = unproposed_writes(node, &self.persist)
            .any(|(_, op)| op.session_client() == Some(client_id))
            .then(|| self.persist.building());
        in_flight.into_iter().chain(queued).chain(building).min()
    }

    /// A session another node handed over for this node's `claim` of `client_id`.
    pub(super) fn handover_arrived(
        &mut self,
        client_id: ByteString,
        claim: (u64, u64),
        session: Option<Box<StoredSession>>,
        sent_at: u64,
    ) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let me = node.me();
        let sender = node.delivering.map(|(from, _)| from);
        if node.awaiting.get(&client_id).is_some_and(|a| {
            node.answers(&client_id, a.claim, claim, sent_at) && a.sent_by(sender, claim)
        }) {
            let Some(awaiting) = node.awaiting.remove(&client_id) else {
                return;
            };
            self.release_interest(&awaiting.interest);
            // A session sent for a newer claim of this node meanwhile may have taken more.
            let (session, others) = moving::freshest(session, awaiting.late);
            if let Some((to, theirs)) = awaiting.owed {
                self.pass_on_handover(to, client_id.clone(), theirs, session);
                self.pass_on_late(to, &client_id, claim, others);
                return self.pass_on_kept(to, client_id, awaiting.kept);
            }
            self.install_session(&client_id, session, false);
            self.merge_late(&client_id, others);
            let sid = self.by_client.get(&client_id).copied();
            self.deliver_kept(awaiting.kept, sid);
            return self.admit_claimed(client_id, awaiting.admit, awaiting.conn);
        }
        // Ahead of its claim (the old owner applied it first)?
        if node.claim_ahead(&client_id, claim, sent_at) {
            let mut early = Early {
                claim,
                session,
                arrived: now,
                sent_at,
                link: node.delivering.take(),
                kept: Vec::new(),
            };
            let mut replaced = node.early.remove(&client_id);
            if let Some(replaced) = &mut replaced {
                early.kept.append(&mut replaced.kept);
            }
            node.early.insert(client_id, early);
            return self.early_done(replaced, None);
        }
        // Late: a wait that timed out, a claim this node made before it restarted, or an old owner
        // replaying its log. The session is not dropped while nobody else may have it: it stays
        // here if this node still owns the client and holds nothing for it, or goes on to the node
        // that owns it now, which treats it the same way. A node that holds the session merges in
        // what the late one has that it did not take (`merge_late`).
        let Some(session) = session else {
            return;
        };
        match node.table.owners.get(&client_id).copied() {
            Some(owner) if owner == me => {
                if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
                    // Sent for an older claim of this node (perhaps before it restarted): the
                    // session if the one awaited never comes and this node has no copy.
                    awaiting.late.push(*session);
                } else if !self.by_client.contains_key(&client_id) {
                    self.install_session(&client_id, Some(session), false);
                } else {
                    self.merge_late(&client_id, vec![*session]);
                }
            }
            Some(owner) => {
                // Under the claim it came for, not the owner's: the owner must not take it for
                // the handover it may be waiting for (which is newer), only as its fallback.
                // What its sender relays behind it follows it there (seed 3998: three relays
                // reached a node that had passed the late session on, and were dropped).
                if let Some(node) = &mut self.cluster {
                    node.handed_over(&client_id, now);
                }
                self.pass_on_handover(owner, client_id, claim, Some(session));
            }
            None => {}
        }
    }

    /// Takes a session in, handed over or (`failover`) from this node's copy: stores it, restores
    /// it (offline until its CONNECT is admitted) with the high-water marks it brought. Its writes
    /// go through the log whole, so every other node's copy starts over from it.
    fn install_session(
        &mut self,
        client_id: &ByteString,
        session: Option<Box<StoredSession>>,
        failover: bool,
    ) {
        let Some(mut stored) = session else {
            self.discard_copy(client_id);
            return;
        };
        let carried = stored.window.take().map(|w| *w);
        // A copy, taken here or passed on by a node that waited for the session, does not know
        // what its last node took next (a live session's handover does).
        let from_copy = stored.next_packet_id.is_none();
        let mut held = self.take_kept(client_id);
        let start = self.persist.len();
        if let Some(old) = self.by_client.get(client_id).copied() {
            // A version this node held (from its own store, or one it took messages into while
            // it thought it owned the client): the one installed is the session now, and what
            // this one took that it lacks is merged in below (seed 16899: a node cut off took
            // two messages into the session it still thought its own, learned from a snapshot
            // that a newer claim of its own gave the client back, and installed the handover
            // from the node in between, without them).
            if let Some(s) = self.sessions.get_mut(&old) {
                s.will = None;
            }
            held = held.or(self.handed_over_version(old));
            self.end_session(old);
        }
        let mut ops = stored.ops(client_id);
        self.restore_session(client_id.clone(), *stored);
        if from_copy {
            // The copy may lack the last PUBLISHes its old node sent, under the ids after its
            // latest, which the client may still hold: they are left alone (the
            // packet-identifier case in docs/cluster.md; seeds 1954, 2732).
            let sid = self.by_client.get(client_id).copied();
            if let Some(s) = sid.and_then(|sid| self.sessions.get_mut(&sid)) {
                s.continue_packet_ids(None, FAILOVER_PACKET_ID_JUMP);
            }
        }
        ops.extend(self.open_move_window(client_id, carried));
        for op in &ops {
            self.persist.push(op.clone());
        }
        // Through the log as one entry, a delete in front: every copy is replaced at once, never
        // deleted without the session that replaces it (the node may die between two entries).
        let mut writes = vec![StoreOp::DeleteSession {
            client_id: client_id.clone(),
        }];
        writes.extend(ops);
        if let Some(node) = &mut self.cluster {
            let batch = self.persist.building();
            node.unreplicated.push((batch, start..self.persist.len()));
        }
        self.queue_writes(writes, true);
        if let Some(node) = &mut self.cluster {
            if failover {
                node.stats.failovers += 1;
            } else {
                node.stats.handovers_received += 1;
            }
        }
        self.merge_late(client_id, held.into_iter().collect());
    }

    /// Deletes every copy of `client_id`'s session through the log, ahead of whatever this node
    /// writes for it next, unless this node holds the session (then its own writes keep the
    /// copies right). The copy is stale: the client starts afresh here, or its session arrived
    /// from elsewhere and is written whole, and a copy this node wrote last would otherwise take
    /// the new writes on top of the old ones.
    fn discard_copy(&mut self, client_id: &ByteString) {
        let stale = !self.by_client.contains_key(client_id)
            && self
                .cluster
                .as_ref()
                .is_some_and(|node| node.replicas.has(client_id));
        if stale {
            let delete = StoreOp::DeleteSession {
                client_id: client_id.clone(),
            };
            self.queue_writes(vec![delete], false);
        }
    }

    /// Ends the waits for handovers that did not come in time (the old owner is dead or cut
    /// off): the CONNECT gets the session from this node's copy, or a fresh one without a copy
    /// (when the client moved on meanwhile, the copy goes to its new node instead); and forgets
    /// early handovers whose claim can no longer apply here.
    ///
    /// An early handover's claim committed (its old owner applied it), so it applies here once
    /// this node catches up with the log, however long that takes: such a handover waits on,
    /// holding its link's acknowledgement, as any message for a session does on a node that is
    /// behind. Forgotten at the timeout, it took with it what it kept (acknowledged, as its holds
    /// were released) and the session, which the copy then replaced (seed 18). Once its claim
    /// applied without taking it (inside a snapshot, with no CONNECT waiting for it), or a newer
    /// claim superseded it, it is a late handover (see [`Engine::handover_arrived`]); if this node
    /// was declared down (its claims no longer apply), it is forgotten.
    fn handover_deadlines(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let timeout = node.config.handover_timeout;
        let (expired, early) = std::mem::take(&mut node.early)
            .into_iter()
            .partition(|(_, e)| now.saturating_duration_since(e.arrived) >= timeout);
        node.early = early;
        let expired: BTreeMap<ByteString, Early> = expired;
        for (client_id, mut e) in expired {
            let Some(node) = &mut self.cluster else {
                return;
            };
            if node.table.is_down(node.me(), node.incarnation) {
                self.early_done(Some(e), None);
                continue;
            }
            if node.claim_ahead(&client_id, e.claim, e.sent_at) {
                e.arrived = now;
                node.early.insert(client_id, e);
                continue;
            }
            let owner = node.table.owners.get(&client_id).copied();
            let me = node.me();
            let mark = self.persist.mark();
            let kept = std::mem::take(&mut e.kept);
            self.handover_arrived(client_id.clone(), e.claim, e.session.take(), e.sent_at);
            match owner {
                Some(owner) if owner != me => self.pass_on_kept(owner, client_id, kept),
                _ => {
                    let sid = self.by_client.get(&client_id).copied();
                    self.deliver_kept(kept, sid);
                }
            }
            let batch = self.persist.gate_since(mark);
            self.early_done(Some(e), batch);
        }
        let Some(node) = &mut self.cluster else {
            return;
        };
        let due: Vec<ByteString> = node
            .awaiting
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for client_id in due {
            let Some(node) = &mut self.cluster else {
                return;
            };
            let Some(awaiting) = node.awaiting.remove(&client_id) else {
                continue;
            };
            let copy = node.replicas.copy(&client_id).map(Box::new);
            self.release_interest(&awaiting.interest);
            let Some(node) = &mut self.cluster else {
                return;
            };
            node.stats.handover_timeouts += 1;
            let (copy, others) = moving::freshest(copy, awaiting.late);
            match awaiting.owed {
                Some((to, claim)) => {
                    self.pass_on_handover(to, client_id.clone(), claim, copy);
                    self.pass_on_late(to, &client_id, awaiting.claim, others);
                    self.pass_on_kept(to, client_id, awaiting.kept);
                }
                None => {
                    self.install_session(&client_id, copy, true);
                    self.merge_late(&client_id, others);
                    let sid = self.by_client.get(&client_id).copied();
                    self.deliver_kept(awaiting.kept, sid);
                    self.admit_claimed(client_id, awaiting.admit, awaiting.conn);
                }
            }
        }
    }

    /// After a restart replayed the log: sessions restored from this node's store whose client the
    /// table gives to another node are stale copies (the handover happened before the crash, or
    /// the new owner gave up waiting) and end, without their wills. The sessions it still owns are
    /// written whole through the log: the crash may have lost writes here that committed there,
    /// or the reverse, and the other nodes' copies must be this store's. A node that was `live`
    /// all along (it found the move in a snapshot, or applied its own `Down`) also hands each
    /// stale session over: it holds everything this node wrote to it, while a restarted node's
    /// store may lack writes that committed, which the copies have.
    fn drop_unowned_sessions(&mut self, live: bool) {
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let stale: Vec<_> = self
            .sessions
            .iter()
            .filter(|(_, s)| node.table.owners.get(&s.client_id) != Some(&me))
            .map(|(sid, _)| *sid)
            .collect();
        let mut owned = Vec::new();
        for s in self.sessions.values() {
            if s.is_persistent() && node.table.owners.get(&s.client_id) == Some(&me) {
                owned.push(StoreOp::DeleteSession {
                    client_id: s.client_id.clone(),
                });
                owned.extend(s.stored(self.now).ops(&s.client_id));
            }
        }
        self.queue_writes(owned, false);
        if let Some(node) = &mut self.cluster {
            // Wills that came due here while this node had no leader, or before its writes could
            // commit (restored sessions' at a restart, say): those whose client another node
            // owns now are not this node's to publish (seed 939: the new owner had published
            // one from its copy). Those of clients nobody owns stay: a clean session's release
            // may have committed inside the snapshot just installed.
            let me = node.me();
            let table = &node.table;
            let mine = |client: &ByteString| table.owners.get(client).is_none_or(|o| *o == me);
            node.withheld.retain(|(client, _)| mine(client));
            node.unstored.retain(|u| mine(&u.client_id));
        }
        let now = self.now;
        for sid in stale {
            // Its client, if connected here, reconnects to the owner (seed 20110: a node that
            // learned from a snapshot that its connected client's session was another node's
            // handed the session over and ended it, but left the connection open, attached to
            // nothing; the client waited there for messages that went to the owner).
            self.take_over_stale_connection(sid);
            // With its will, as a handover carries it.
            self.hand_over_found(sid, live);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.will = None;
                // What still arrives for it goes on to its owner, as after a handover.
                if let (true, Some(node)) = (s.is_persistent(), &mut self.cluster) {
                    node.handed_over(&s.client_id, now);
                }
            }
            self.relay_queue(sid);
            let handing = (self.sessions.get(&sid).zip(self.cluster.as_ref()))
                .is_some_and(|(s, node)| node.handing.contains_key(&s.client_id));
            self.end_unreplicated(sid, handing);
        }
    }

    /// After a restart replayed the log, or a snapshot was installed: the persistent sessions the
    /// table gives to this node that it does not hold and does not wait for yet (their handover
    /// was on its way when it crashed, or its store lost them, or their claim applied inside the
    /// snapshot) are waited for as for a claim of its earlier incarnation. The old owner sends the handover
    /// again (its link never had it acknowledged), what arrives for the session meanwhile is
    /// kept, and at the deadline the copy is taken. Seed 2818: a claimant crashed before the
    /// session arrived, learned of its claim from a snapshot after its restart, and the eleven
    /// messages routed to it for the session while it was down reached a node that neither held
    /// nor waited for the session.
    fn await_missing_sessions(&mut self) {
        let Some(node) = &self.cluster else {
            return;
        };
        let me = node.me();
        let missing: Vec<(ByteString, (u64, u64), Option<u16>)> = (node.table.owners.iter())
            .filter(|(client, owner)| **owner == me && !self.by_client.contains_key(*client))
            .filter(|(client, _)| node.replicas.has(client) && !node.awaiting.contains_key(*client))
            .filter_map(|(client, _)| {
                let claim = *node.table.claims.get(&(client.clone(), me))?;
                Some((client.clone(), claim, node.replicas.writer(client)))
            })
            .collect();
        for (client_id, claim, from) in missing {
            let early = (self.cluster.as_mut()).and_then(|node| node.early.remove(&client_id));
            self.own_claim(client_id, from, false, claim, None, early);
        }
    }

    /// After a restart replayed the log: a session this node's store held only as a version
    /// handed over ([`StoreOp::PutHandedOver`]) is not the session here. If the table gives its
    /// client to another node, it goes there as any stale session does
    /// ([`Engine::drop_unowned_sessions`]). If this node owns the client again (a claim made after
    /// the handover), the version is set aside as before the restart ([`Node::kept`]): the node
    /// waits for the session ([`Engine::await_missing_sessions`]) and merges the version into it
    /// ([`Engine::take_kept`]). Taken for the session, it was written whole through the log over
    /// the copies (seed 24039: a QoS 2 message completed elsewhere went to the client again).
    /// Without a copy to fall back on, the version stays the session, its records rewritten
    /// whole here (which drops the mark).
    fn set_handed_over_aside(&mut self) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        let me = node.me();
        let handed_over = std::mem::take(&mut node.stored_handed_over);
        let (aside, live): (Vec<_>, Vec<_>) = (handed_over.iter())
            .filter(|c| node.table.owners.get(*c) == Some(&me))
            .filter_map(|c| Some((self.by_client.get(c).copied()?, node.replicas.has(c))))
            .partition(|(_, copied)| *copied);
        for (sid, _) in aside {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.will = None;
            }
            self.end_unreplicated(sid, true);
        }
        for (sid, _) in live {
            let Some(s) = self.sessions.get(&sid) else {
                continue;
            };
            let client_id = s.client_id.clone();
            let mut ops = vec![StoreOp::DeleteSession {
                client_id: client_id.clone(),
            }];
            ops.extend(s.stored(self.now).ops(&client_id));
            self.push_unreplicated(ops);
        }
    }

    /// Notes the sessions just restored from this node's store (at its start).
    pub(super) fn note_restored_sessions(&mut self) {
        if let Some(node) = &mut self.cluster {
            node.restored = self.sessions.keys().copied().collect();
        }
    }

    /// Once a restarted node installed a snapshot (it was behind the log): a session it restored
    /// from its store, whose client it owns by a claim of an earlier incarnation while another
    /// node wrote the copies since, is not the session. The node held it before; the session
    /// went on elsewhere (from a copy, or handed over), and came back to the node's claim, whose
    /// handover never arrived before the restart. Like a version handed over
    /// ([`Engine::set_handed_over_aside`]), it is set aside: the node waits for the session
    /// ([`Engine::await_missing_sessions`]), whose old owner sends it again, and merges the
    /// version into it. Taken for the session, it was handed on to the next claimant without
    /// the marks of what the session took elsewhere, and old messages held on a link to the
    /// node went to the client a second time (seed 18563: a QoS 2 message twice). Not judged at
    /// the end of the replay of the node's own log: the entry with its own writes of the session
    /// may follow the commit index it had stored, and it then took its own session for
    /// superseded (seed 97191: the version set aside stayed in its store for good). Its own log
    /// goes on to apply as entries do, and a claim applied that way waits for the session anyway
    /// ([`Engine::own_claim`]). A snapshot covers what committed up to it: a node that gets one
    /// was behind every write it had acknowledged, and one it had not acknowledged is sent again,
    /// and taken, while it waits. And only if the copy took more than the version (its marks are
    /// above): a node whose own writes of the session it took from its copy never committed (it
    /// was cut off, then crashed) restored a version the copy's writer did not supersede, with
    /// messages no copy had (seed 105726, on the first fix: set aside, its seven messages reached
    /// the next owner after the marks of its copy had passed them, and were dropped).
    fn set_superseded_aside(&mut self) {
        let Some(node) = &self.cluster else {
            return;
        };
        let (me, table) = (node.me(), &node.table);
        let earlier_claim = |client_id: &ByteString| {
            (table.claims.get(&(client_id.clone(), me)))
                .is_some_and(|(incarnation, _)| *incarnation != node.incarnation)
        };
        let superseded: Vec<_> = (node.restored.iter())
            .filter_map(|sid| Some((*sid, self.sessions.get(sid)?)))
            .filter(|(_, s)| s.is_persistent() && !node.awaiting.contains_key(&s.client_id))
            .filter(|(_, s)| table.owners.get(&s.client_id) == Some(&me))
            .filter(|(_, s)| earlier_claim(&s.client_id))
            .filter(|(_, s)| (node.replicas.writer(&s.client_id)).is_some_and(|w| w != me))
            .filter(|(_, s)| {
                (node.replicas.session(&s.client_id))
                    .is_some_and(|copy| moving::took_more(&copy.seen, &s.seen))
            })
            .map(|(sid, _)| sid)
            .collect();
        for sid in superseded {
            if let Some(node) = &mut self.cluster {
                node.restored.remove(&sid);
            }
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.will = None;
            }
            self.end_unreplicated(sid, true);
        }
    }

    /// Stores `ops` as this node's own, not as writes of the session's owner: they never go
    /// through the log to the copies.
    fn push_unreplicated(&mut self, ops: Vec<StoreOp>) {
        let start = self.persist.len();
        for op in ops {
            self.persist.push(op);
        }
        let end = self.persist.len();
        if let Some(node) = &mut self.cluster {
            node.unreplicated
                .push((self.persist.building(), start..end));
        }
    }

    /// Ends session `sid` because another node owns its client now. Its store deletions are this
    /// node's own, not writes of the session's owner: they never reach the copies, even when this
    /// node claims the client back before the batch is sealed (then the table would take them for
    /// the owner's).
    ///
    /// With `handing` (a handover of the session is on its way), the session's records stay in
    /// this node's store until the handover is acknowledged ([`Engine::handover_done`]): the
    /// handover may carry messages no copy has (writes made moot by the move), and if this node
    /// crashes before it arrives, the store still has them, and the restarted node relays them to
    /// the owner ([`Engine::relay_queue`]; seed 11154: three acknowledged messages lost with the
    /// handover).
    fn end_unreplicated(&mut self, sid: crate::session::SessionId, handing: bool) {
        let start = self.persist.len();
        let client_id = self.sessions.get(&sid).map(|s| s.client_id.clone());
        let kept = handing.then(|| self.handed_over_version(sid)).flatten();
        self.end_session_keeping(sid, handing);
        if let (Some(client_id), Some(_)) = (&client_id, &kept) {
            let client_id = client_id.clone();
            self.persist.push(StoreOp::PutHandedOver { client_id });
        }
        let end = self.persist.len();
        if let Some(node) = &mut self.cluster {
            node.unreplicated
                .push((self.persist.building(), start..end));
            if let (Some(client_id), Some(kept)) = (client_id, kept) {
                node.kept.insert(client_id, kept);
            }
        }
    }

    /// Deletes the records of `client_id`'s session kept in this node's store for its handover
    /// ([`Engine::end_unreplicated`]), and returns the version they hold: once the last handover
    /// is acknowledged ([`Engine::handover_done`]), or as soon as a session of the client starts
    /// here again (installed, which merges the version in, or admitted). Left in place under a
    /// new session, they were restored with its records at a restart, and the messages the old
    /// one's relays brought again went in twice (seed 21131: a QoS 2 message delivered twice).
    fn take_kept(&mut self, client_id: &ByteString) -> Option<StoredSession> {
        let kept = self.cluster.as_mut()?.kept.remove(client_id)?;
        self.push_unreplicated(vec![StoreOp::DeleteSession {
            client_id: client_id.clone(),
        }]);
        Some(kept)
    }

    /// A handover from here that will not arrive (its link gave up on the node, or the node was
    /// declared down) releases what waited for it (seed 3051: a publisher was never acknowledged
    /// again), and its session goes on to the client's owner now, as a late one (merged there
    /// into the session it holds, by stamps): the session lives on in the copies, which lack the
    /// writes the move made moot, and the handover may be all that has them.
    fn reroute_handover(&mut self, message: PeerMessage) {
        let PeerMessage::Handover {
            client_id,
            claim,
            session,
            receipt,
            ..
        } = message
        else {
            return;
        };
        if let Some(seq) = receipt {
            self.persist.peer_stored(seq);
            self.release_held();
        }
        let Some(session) = session else {
            return;
        };
        // Its relay records go (`pass_on_handover` stores them again if it goes on from here).
        self.passed_on(&client_id, &session);
        let session = Some(session);
        let sent_at = self.cluster.as_ref().map_or(0, |node| node.position());
        self.handover_arrived(client_id.clone(), claim, session, sent_at);
        self.handover_done(&client_id);
    }

    /// A handover of `client_id`'s session from here is acknowledged (or given up on): once none
    /// is left on its way, the records of a session that ended here meanwhile go, unless this
    /// node holds the session again (its install wrote it whole).
    fn handover_done(&mut self, client_id: &ByteString) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        match node.handing.get_mut(client_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return;
            }
            Some(_) => {
                node.handing.remove(client_id);
            }
            None => return,
        }
        if self.by_client.contains_key(client_id) {
            // Its records are the session's here now (`take_kept` ran as it started).
            node.kept.remove(client_id);
            return;
        }
        self.take_kept(client_id);
    }

    /// The identity of the next message this node routes, if it is a cluster node.
    pub(super) fn next_stamp(&mut self) -> Option<Stamp> {
        let node = self.cluster.as_mut()?;
        node.next_stamp += 1;
        Some(Stamp {
            node: node.config.node,
            incarnation: node.incarnation,
            seq: node.next_stamp,
        })
    }

    pub(super) fn count_duplicate(&mut self) {
        if let Some(node) = &mut self.cluster {
            node.stats.duplicates_dropped += 1;
        }
    }

    /// The claim of a parked CONNECT committed: admit it.
    fn claimed(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Phase::Claiming(_) = &c.phase else {
            return;
        };
        let Phase::Claiming(claiming) = std::mem::replace(&mut c.phase, Phase::AwaitingConnect)
        else {
            return;
        };
        let Claiming {
            mut connect,
            auth_data,
            client_id,
            assigned,
        } = *claiming;
        connect.client_id = client_id;
        c.claimed = Some(assigned);
        // The session admitted here (resumed or fresh) is the client's now, not the one whose
        // records were kept for its handover.
        self.take_kept(&connect.client_id);
        let mark = self.persist.mark();
        self.admit(conn, connect, mark, auth_data);
        self.process_inbuf(conn);
    }

    /// Another node owns `client_id` now: its connection here is taken over and its session here ends
    /// (the client resumes it, if persistent, as a new session there: see docs/cluster.md).
    fn lose_client(&mut self, client_id: &ByteString) {
        let Some(sid) = self.by_client.get(client_id).copied() else {
            return;
        };
        self.take_over_connection(sid);
        if self.sessions.contains_key(&sid) {
            self.end_unreplicated(sid, false);
        }
    }

    /// Disconnects session `sid`'s client, if connected: another node's claim took it (v5: 0x8E
    /// Session taken over).
    fn take_over_connection(&mut self, sid: crate::session::SessionId) {
        if let Some(conn) = self.sessions.get(&sid).and_then(|s| s.conn) {
            self.disconnect_with(
                conn,
                ReasonCode::SessionTakenOver,
                None,
                CloseReason::SessionTakenOver,
                true,
            );
        }
    }

    /// [`Engine::take_over_connection`] of a stale version of a session, which other nodes have
    /// held since: the connection's will stays in the version, not published here. The session
    /// goes on elsewhere with its will (a handover carries it, the copies hold it), and the node
    /// that holds it publishes it, unless the client resumed there (seed 42610: a node back from
    /// a partition published a will as it took the connection over, and so had the owner, which
    /// had taken the session from its copy meanwhile).
    fn take_over_stale_connection(&mut self, sid: crate::session::SessionId) {
        let will = self.sessions.get_mut(&sid).and_then(|s| s.will.take());
        self.take_over_connection(sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.will = will;
        }
    }

    /// The cluster's counters, if this engine is a cluster node.
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.cluster.as_ref().map(|n| n.stats)
    }

    /// The node that owns `client_id` in this node's applied table.
    pub fn cluster_owner(&self, client_id: &str) -> Option<u16> {
        self.cluster
            .as_ref()
            .and_then(|n| n.table.owners.get(client_id).copied())
    }

    /// Every client identifier's owner in this node's applied table.
    pub fn cluster_owners(&self) -> Option<&BTreeMap<ByteString, u16>> {
        self.cluster.as_ref().map(|n| &n.table.owners)
    }

    /// What this node built from the log: its table and its copies of the persistent sessions
    /// (who wrote each, its filters, messages and packet identifiers), as text. Nodes that applied
    /// the same prefix of the log give the same, whatever snapshots each took or received.
    pub fn cluster_digest(&self) -> Option<String> {
        let node = self.cluster.as_ref()?;
        let copies: Vec<_> = node
            .replicas
            .iter()
            .map(|(client, writer, s)| {
                let filters: Vec<_> = s.subscriptions.keys().collect();
                let messages: Vec<_> = s.messages.keys().collect();
                (client, writer, filters, messages, &s.incoming)
            })
            .collect();
        Some(format!("{:?} {copies:?}", node.table))
    }

    /// The cluster's members as this node's raft configuration has them (itself included), and
    /// the addresses the log gave the ones added since the first start.
    pub fn cluster_members(&self) -> Option<Vec<(u16, Option<cluster::MemberAddress>)>> {
        let node = self.cluster.as_ref()?;
        Some(
            node.conf_members()
                .into_iter()
                .map(|n| (n, node.table.members.get(&n).cloned()))
                .collect(),
        )
    }

    /// Whether this node was removed from the cluster.
    pub fn cluster_removed(&self) -> bool {
        self.cluster.as_ref().is_some_and(|n| n.removed)
    }

    /// How many subscriptions to `filter` this node's applied table gives `node`.
    pub fn cluster_interest(&self, node: u16, filter: &str) -> u32 {
        self.cluster.as_ref().map_or(0, |n| {
            n.table.count(node, &ByteString::from(filter.to_owned()))
        })
    }

    /// The current raft leader as this node knows it.
    pub fn cluster_leader(&self) -> Option<u16> {
        self.cluster.as_ref().and_then(|n| n.raft.leader())
    }
}

/// This node's session writes in the batch being built that did not go to the log yet (see
/// `Engine::replicate_writes`), without those that stay off it (see `end_unreplicated`).
fn unproposed_writes<'a>(
    node: &'a Node,
    persist: &'a Persistence,
) -> impl Iterator<Item = (usize, &'a StoreOp)> {
    let batch = persist.building();
    let from = match node.writes_cursor {
        (b, at) if b == batch => at,
        _ => 0,
    };
    let skipped =
        move |at: &usize| (node.unreplicated.iter()).any(|(b, r)| *b == batch && r.contains(at));
    (from..)
        .zip(persist.ops_since(from))
        .filter(move |(at, op)| op.session_client().is_some() && !skipped(at))
}

/// Session writes cut into pieces of at most [`cluster::WRITES_BUDGET`] (a single larger write
/// goes alone), in order, each with its cost.
fn split_writes(ops: Vec<StoreOp>) -> Vec<(Vec<StoreOp>, usize)> {
    /// What a write costs beyond its client identifier, topic, filter and payload, generously.
    const OVERHEAD: usize = 64;
    let cost = |op: &StoreOp| {
        let extra = match op {
            StoreOp::PutMessage { message, .. } => {
                message.topic.as_str().len() + message.payload.len()
            }
            StoreOp::PutSubscription { filter, .. }
            | StoreOp::DeleteSubscription { filter, .. } => filter.len(),
            _ => 0,
        };
        op.session_client().map_or(0, |c| c.len()) + extra + OVERHEAD
    };
    let mut pieces: Vec<(Vec<StoreOp>, usize)> = Vec::new();
    for op in ops {
        let c = cost(&op);
        match pieces.last_mut() {
            Some((last, used)) if *used + c <= cluster::WRITES_BUDGET => {
                last.push(op);
                *used += c;
            }
            _ => pieces.push((vec![op], c)),
        }
    }
    pieces
}

fn push_raft(
    events: &mut std::collections::VecDeque<Event>,
    parts: &mut Parts,
    m: &raft::eraftpb::Message,
    now: Instant,
) {
    if let Ok(to) = u16::try_from(m.to) {
        for frame in parts.split(cluster::encode_raft(m)) {
            events.push_back(Event::Cluster {
                to,
                frame: frame.encode(now),
            });
        }
    }
}

/// Whether `message` (a routed publish or a relay) was sent by a node that had applied the log
/// further than this node has (`seen`).
fn ahead_of(message: &PeerMessage, seen: u64) -> bool {
    matches!(
        message,
        PeerMessage::Publish { after, .. } | PeerMessage::Relay { after, .. } if *after > seen
    )
}
