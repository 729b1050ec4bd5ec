//! The engine as one node of a cluster (see [`crate::cluster`]): driving raft, applying the
//! replicated table, parking CONNECTs until their claim commits, and the links to other nodes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use crate::cluster::link::Links;
use crate::cluster::replica::Replicas;
use crate::cluster::table::{Change, Table};
use crate::cluster::wire::{Command, Frame};
use crate::cluster::{self, ClusterConfig, ClusterStats, Raft};
use crate::codec::{Connect, ReasonCode};
use crate::io::{CloseReason, ConnId, Event, PeerMessage, Stamp, StoreOp};
use crate::message::Message;
use crate::stored::{StoredRaft, StoredSession};
use crate::time::Instant;
use crate::timer::TimerKind;

use super::conn::Phase;
use super::Engine;

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
    /// The claim each session here was admitted under (released with it).
    admitted: BTreeMap<ByteString, u64>,
    /// The counter of the last message this node routed (see [`Stamp`]).
    next_stamp: u64,
    /// Client identifiers whose claim committed here while another node held their session: what
    /// waits for that node's handover.
    awaiting: BTreeMap<ByteString, Awaiting>,
    /// Handovers that arrived before their claim applied here.
    early: BTreeMap<ByteString, Early>,
    /// The log index this node had committed before it restarted: replaying up to it rebuilds the
    /// table without acting on sessions again (handovers were sent, sessions ended, before).
    replay_until: u64,
    /// Copies of the persistent sessions other nodes own.
    replicas: Replicas,
    /// This node's session writes not yet proposed, oldest first: (writes, their cost, the batch
    /// that waits for them).
    queued_writes: VecDeque<(Vec<StoreOp>, usize, Option<u64>)>,
    /// The session writes in the log's hands: one entry at a time, so they commit in order
    /// whatever the network does to proposals (see `propose_writes`).
    writes: Option<Writes>,
    /// The number of the last session writes entry this incarnation made.
    next_write: u64,
    /// How far into the batch being built (its number, a position) session writes were taken.
    writes_cursor: (u64, usize),
    /// Writes of batches (by number, positions) that stay off the log (see `end_unreplicated`).
    unreplicated: Vec<(u64, std::ops::Range<usize>)>,
    stats: ClusterStats,
}

/// Session writes of this node proposed to the log ([`Command::Session`]).
#[derive(Debug)]
struct Writes {
    command: Command,
    /// The storage batches that wait for their commit.
    batches: Vec<u64>,
    /// When they were last proposed.
    proposed: Instant,
}

/// A session on its way here from another node.
#[derive(Debug)]
struct Awaiting {
    /// This node's claim it comes for: (incarnation, token).
    claim: (u64, u64),
    /// The claim it will be admitted under: the newest of this node's claims since (a client
    /// that reconnected here while its session was on its way).
    token: u64,
    /// The CONNECT waiting for it, if its client is still there.
    conn: Option<ConnId>,
    /// When the wait ends with a fresh session.
    deadline: Instant,
    /// A newer claim took the client to another node meanwhile: what arrives goes on there, for
    /// that claim.
    owed: Option<(u16, (u64, u64))>,
    /// A session that arrived for an older claim of this node meanwhile.
    late: Option<Box<StoredSession>>,
}

/// A handover ahead of its claim.
#[derive(Debug)]
struct Early {
    claim: (u64, u64),
    session: Option<Box<StoredSession>>,
    arrived: Instant,
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

impl Node {
    pub(super) fn new(config: ClusterConfig, rng: &mut crate::rng::Rng) -> Node {
        let raft = Raft::new(&config, rng, &StoredRaft::default());
        let incarnation = rng.next_u64();
        let links = Links::new(incarnation, config.retransmit, config.peer_timeout);
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
            replay_until: 0,
            replicas: Replicas::default(),
            queued_writes: VecDeque::new(),
            writes: None,
            next_write: 0,
            writes_cursor: (0, 0),
            unreplicated: Vec::new(),
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

    fn me(&self) -> u16 {
        self.config.node
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

    /// Restarts raft over what the store held (before any other input).
    pub(super) fn restore_cluster(&mut self, stored: &StoredRaft) {
        if let Some(node) = &mut self.cluster {
            if !stored.entries.is_empty() || stored.hard_state.is_some() {
                node.raft = Raft::new(&node.config, &mut self.rng, stored);
                node.replay_until = node.raft.node.raft.raft_log.committed;
            }
        }
    }

    /// A frame from node `from`.
    pub(super) fn cluster_frame(&mut self, from: u16, frame: Bytes) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        if from == node.me() || !node.config.members.contains(&from) {
            node.stats.bad_frames += 1;
            return;
        }
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
            Frame::Raft(bytes) => match cluster::decode_raft(&bytes) {
                // Messages for another term or from a stale leader are raft's to ignore.
                Some(m) => {
                    let _ = node.raft.node.step(m);
                }
                None => node.stats.bad_frames += 1,
            },
            Frame::Ack { incarnation, upto } => node.links.acked(from, incarnation, upto, now),
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
                for m in messages {
                    self.peer_message(m);
                }
            }
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
        let mut released = false;
        for message in dropped {
            if let PeerMessage::Publish {
                receipt: Some(seq), ..
            } = message
            {
                // The node is gone: its subscribers' sessions went with it (see docs/cluster.md).
                self.persist.peer_stored(seq);
                released = true;
            }
        }
        if released {
            self.release_held();
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
    pub(super) fn park_for_claim(&mut self, conn: ConnId, claiming: Claiming) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let (me, incarnation) = (node.me(), node.incarnation);
        let client_id = claiming.client_id.clone();
        let token = node.submit(|token| Command::Claim {
            client_id,
            node: me,
            incarnation,
            token,
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
            let mut ops = Vec::new();
            let mut batches = Vec::new();
            let mut used = 0;
            while let Some((_, cost, _)) = node.queued_writes.front() {
                if !ops.is_empty() && used + cost > cluster::WRITES_BUDGET {
                    break;
                }
                let Some((more, cost, batch)) = node.queued_writes.pop_front() else {
                    break;
                };
                used += cost;
                ops.extend(more);
                batches.extend(batch);
            }
            node.next_write += 1;
            node.writes = Some(Writes {
                command: Command::Session {
                    node: node.config.node,
                    incarnation: node.incarnation,
                    seq: node.next_write,
                    ops,
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
        let from = match node.writes_cursor {
            (b, at) if b == batch => at,
            _ => 0,
        };
        node.writes_cursor = (batch, self.persist.len());
        node.unreplicated.retain(|(b, _)| *b == batch);
        let skipped = |at: usize| node.unreplicated.iter().any(|(_, r)| r.contains(&at));
        let ops: Vec<StoreOp> = (from..)
            .zip(self.persist.ops_since(from))
            .filter(|(at, op)| op.session_client().is_some() && !skipped(*at))
            .map(|(_, op)| op.clone())
            .collect();
        if ops.is_empty() {
            return false;
        }
        self.queue_writes(ops, true);
        self.propose_writes();
        true
    }

    /// Queues `ops` as session writes (in pieces of at most [`cluster::WRITES_BUDGET`]), the
    /// batch being built waiting for each piece if `hold`.
    fn queue_writes(&mut self, ops: Vec<StoreOp>, hold: bool) {
        let Some(node) = &mut self.cluster else {
            return;
        };
        for (ops, cost) in split_writes(ops) {
            let batch = hold.then(|| self.persist.await_replication());
            node.queued_writes.push_back((ops, cost, batch));
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
        for batch in &batches {
            self.persist.replicated(*batch);
        }
        if !batches.is_empty() {
            self.release_held();
            self.answer_receipts();
        }
        self.propose_writes();
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

    /// Proposes a retained message (or its removal) for every node.
    pub(super) fn replicate_retained(&mut self, message: Arc<Message>) {
        if let Some(node) = &mut self.cluster {
            node.submit(|_| Command::Retain { message });
        }
    }

    /// Proposes that this node no longer holds `client_id`, if the table says it does.
    pub(super) fn release_client(&mut self, client_id: &ByteString) {
        if let Some(node) = &mut self.cluster {
            let me = node.me();
            if let Some(token) = node.admitted.remove(client_id) {
                if node.table.owners.get(client_id) == Some(&me) {
                    let incarnation = node.incarnation;
                    node.submit(|_| Command::Release {
                        client_id: client_id.clone(),
                        node: me,
                        incarnation,
                        token,
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
            for m in rd.take_messages() {
                push_raft(&mut self.events, &m, now);
            }
            let committed = rd.take_committed_entries();
            let entries = rd.take_entries();
            let mark = self.persist.mark();
            if !entries.is_empty() {
                let _ = node.raft.node.mut_store().wl().append(&entries);
                for op in cluster::entry_ops(&entries) {
                    self.persist.push(op);
                }
            }
            if let Some(hs) = rd.hs() {
                node.raft.node.mut_store().wl().set_hardstate(hs.clone());
                self.persist.push(cluster::hard_state_op(hs));
            }
            let persisted = rd.take_persisted_messages();
            let number = rd.number();
            node.raft.node.advance_append_async(rd);
            // A ready with nothing to store still waits behind an earlier one that has: raft
            // takes persistence reports in order, and one would cover the other.
            let gate = self.persist.gate_since(mark).filter(|_| enabled);
            match gate.or_else(|| node.raft.held.back().map(|(batch, _, _)| *batch)) {
                Some(batch) => node.raft.held.push_back((batch, number, persisted)),
                None => {
                    node.raft.node.on_persist_ready(number);
                    for m in &persisted {
                        push_raft(&mut self.events, m, now);
                    }
                }
            }
            let last = committed.last().map(|e| e.index);
            for entry in committed {
                self.apply_entry(&entry);
            }
            if let (Some(index), Some(node)) = (last, &mut self.cluster) {
                node.raft.node.advance_apply_to(index);
                node.stats.applied = index;
                if node.replay_until != 0 && index >= node.replay_until {
                    node.replay_until = 0;
                    self.drop_unowned_sessions();
                }
            }
        }
        if let Some(node) = &mut self.cluster {
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
                node.raft.node.on_persist_ready(number);
                for m in &messages {
                    push_raft(&mut self.events, m, now);
                }
            }
        }
    }

    fn apply_entry(&mut self, entry: &raft::eraftpb::Entry) {
        if !cluster::is_command(entry) {
            return;
        }
        let Some(node) = &mut self.cluster else {
            return;
        };
        let by = parse_context(&entry.context);
        if let Some((from, inc, token)) = by {
            if from == node.me() && inc == node.incarnation {
                node.pending.remove(&token);
            }
        }
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
        if let Command::Retain { message } = &command {
            let topic = message.topic.as_bytestring();
            let newer = by.is_none_or(|by| node.table.retain(topic, by));
            if newer && self.config.retain_available {
                if message.payload.is_empty() {
                    self.retained.remove(message.topic.as_str());
                } else {
                    self.retained.insert(message.clone());
                }
            }
            return;
        }
        let me = node.me();
        let my_incarnation = node.incarnation;
        let change = node.table.apply(&command);
        if let Command::Release { client_id, .. } = &command {
            if !node.table.owners.contains_key(client_id) {
                // The session ended for good.
                node.replicas.forget(client_id);
            }
        }
        match change {
            Change::None => {}
            Change::SessionWrites { node: from, seq } => {
                let Command::Session {
                    incarnation, ops, ..
                } = command
                else {
                    return;
                };
                if from == me {
                    if incarnation == my_incarnation {
                        self.writes_committed(seq);
                    }
                    return;
                }
                for op in &ops {
                    // Only the owner in force writes a session: what an old owner wrote after
                    // the client moved went with its handover.
                    let owner = op.session_client().and_then(|c| node.table.owners.get(c));
                    if owner == Some(&from) {
                        node.replicas.apply(from, op);
                    }
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
                if to == me && incarnation == my_incarnation {
                    let conn = node.parked.remove(&token).map(|(conn, _)| conn);
                    let early = node.early.remove(&client_id);
                    self.own_claim(client_id, from, (incarnation, token), conn, early);
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
            } => {
                if from != me {
                    for filter in filters {
                        self.peer_interest(from, filter, 0);
                    }
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
        claim: (u64, u64),
        conn: Option<ConnId>,
        early: Option<Early>,
    ) {
        let now = self.now;
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
        if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
            // An older claim of this node still waits for the session: this newer claim takes
            // its place (and takes back a relay promised to another node meanwhile: that node
            // gives up waiting and hands nothing over).
            awaiting.owed = None;
            awaiting.token = claim.1;
            let older = std::mem::replace(&mut awaiting.conn, conn.filter(|_| resuming));
            if !resuming {
                node.awaiting.remove(&client_id);
                self.admit_claimed(client_id, claim.1, conn);
            }
            if let Some(older) = older {
                self.refuse_claiming(older);
            }
            return;
        }
        if !(elsewhere && resuming) {
            // A fresh session, or the one already here: a copy of another node's is stale.
            node.replicas.forget(&client_id);
            return self.admit_claimed(client_id, claim.1, conn);
        }
        match early.filter(|e| e.claim == claim) {
            Some(early) => {
                self.install_session(&client_id, early.session, false);
                self.admit_claimed(client_id, claim.1, conn);
            }
            None => {
                let deadline = now + node.config.handover_timeout;
                node.awaiting.insert(
                    client_id,
                    Awaiting {
                        claim,
                        token: claim.1,
                        conn,
                        deadline,
                        owed: None,
                        late: None,
                    },
                );
            }
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

    /// Admits the CONNECT (if still there) whose claim `token` of `client_id` committed, and
    /// records the claim the session here now holds.
    fn admit_claimed(&mut self, client_id: ByteString, token: u64, conn: Option<ConnId>) {
        if let Some(conn) = conn {
            self.claimed(conn);
        }
        // Recorded after admitting: a session this CONNECT took over here is released under its
        // own, older claim, which the table then ignores.
        if let Some(node) = &mut self.cluster {
            node.admitted.insert(client_id, token);
        }
    }

    /// A newer claim took `client_id` from this node to `to`: its session here goes there (as a
    /// store would hold it, with its high-water marks), its connection is taken over. A session
    /// still on its way here follows on when it arrives. Without a persistent session, `to` is told
    /// at once, so it does not wait.
    fn hand_over(&mut self, client_id: ByteString, to: u16, claim: (u64, u64)) {
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
        let budget = cluster::HANDOVER_BUDGET.max(self.config.max_packet_size as usize);
        if let Some(sid) = self.by_client.get(&client_id).copied() {
            self.take_over_connection(sid);
            // Queued messages of shared groups go to another member here, as when a session ends.
            self.hand_over_shared(sid, true);
            if let Some(s) = self.sessions.get_mut(&sid) {
                if s.is_persistent() {
                    let mut snapshot = s.snapshot();
                    left_behind = snapshot.trim_to(budget);
                    session = Some(Box::new(snapshot));
                }
                // The session lives on there: as on a takeover here, its will is not published.
                s.will = None;
            }
            if self.sessions.contains_key(&sid) {
                self.end_unreplicated(sid);
            }
        }
        if let Some(node) = &mut self.cluster {
            if let Some(sent) = &session {
                // Kept as this node's copy until the new owner writes the session: if it dies
                // first, this copy is the session (the other nodes' copies may lag what was sent).
                node.replicas
                    .keep(&client_id, sent.as_ref().clone(), node.config.node);
            }
            if session.is_none() && !self.by_client.contains_key(&client_id) {
                // This node owned the client without ever holding its session (its claim
                // committed while it was down): what it knows is its copy of the last owner's.
                // It keeps the copy: the next owner may die before it writes the session.
                session = node.replicas.copy(&client_id).map(Box::new);
            }
            node.stats.handovers_sent += u64::from(session.is_some());
            node.stats.handover_messages_dropped += left_behind as u64;
        }

        self.send_peer(
            to,
            PeerMessage::Handover {
                client_id,
                claim,
                session,
            },
        );
    }

    /// A session another node handed over for this node's `claim` of `client_id`.
    pub(super) fn handover_arrived(
        &mut self,
        client_id: ByteString,
        claim: (u64, u64),
        session: Option<Box<StoredSession>>,
    ) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let me = node.me();
        if node
            .awaiting
            .get(&client_id)
            .is_some_and(|a| a.claim == claim)
        {
            let Some(awaiting) = node.awaiting.remove(&client_id) else {
                return;
            };
            if let Some((to, theirs)) = awaiting.owed {
                let message = PeerMessage::Handover {
                    client_id,
                    claim: theirs,
                    session,
                };
                return self.send_peer(to, message);
            }
            self.install_session(&client_id, session, false);
            return self.admit_claimed(client_id, awaiting.token, awaiting.conn);
        }
        // Ahead of its claim (the old owner applied it first)?
        let applied = node.table.claims.get(&(client_id.clone(), me));
        let ahead = claim.0 == node.incarnation
            && applied.is_none_or(|(inc, token)| *inc != claim.0 || *token < claim.1);
        if ahead {
            let early = Early {
                claim,
                session,
                arrived: now,
            };
            node.early.insert(client_id, early);
            return;
        }
        // Late: a wait that timed out, a claim this node made before it restarted, or an old owner
        // replaying its log. The session is not dropped while nobody else may have it: it stays
        // here if this node still owns the client and holds nothing for it, or goes on to the node
        // that owns it now, which treats it the same way.
        let Some(session) = session else {
            return;
        };
        match node.table.owners.get(&client_id).copied() {
            Some(owner) if owner == me => {
                if let Some(awaiting) = node.awaiting.get_mut(&client_id) {
                    // Sent for an older claim of this node (perhaps before it restarted): the
                    // session if the one awaited never comes and this node has no copy.
                    awaiting.late = Some(session);
                } else if !self.by_client.contains_key(&client_id) {
                    self.install_session(&client_id, Some(session), false);
                }
            }
            Some(owner) => {
                // Under the claim it came for, not the owner's: the owner must not take it for
                // the handover it may be waiting for (which is newer), only as its fallback.
                let message = PeerMessage::Handover {
                    client_id,
                    claim,
                    session: Some(session),
                };
                self.send_peer(owner, message);
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
        if let Some(node) = &mut self.cluster {
            node.replicas.forget(client_id);
        }
        let Some(stored) = session else {
            return;
        };
        if let Some(old) = self.by_client.get(client_id).copied() {
            // A stale copy (from this node's own store): the one handed over is the session now.
            if let Some(s) = self.sessions.get_mut(&old) {
                s.will = None;
            }
            self.end_session(old);
        }
        for op in stored.ops(client_id) {
            self.persist.push(op);
        }
        self.restore_session(client_id.clone(), *stored);
        if let Some(node) = &mut self.cluster {
            if failover {
                node.stats.failovers += 1;
            } else {
                node.stats.handovers_received += 1;
            }
        }
    }

    /// Ends the waits for handovers that did not come in time (the old owner is dead or cut
    /// off): the CONNECT gets the session from this node's copy, or a fresh one without a copy
    /// (when the client moved on meanwhile, the copy goes to its new node instead); and forgets
    /// early handovers whose claim never applied.
    fn handover_deadlines(&mut self) {
        let now = self.now;
        let Some(node) = &mut self.cluster else {
            return;
        };
        let timeout = node.config.handover_timeout;
        node.early
            .retain(|_, e| now.saturating_duration_since(e.arrived) < timeout);
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
            node.stats.handover_timeouts += 1;
            let copy = match awaiting.owed {
                // Passed on, the copy is kept here too: the next owner may die before it writes.
                Some(_) => node.replicas.copy(&client_id),
                None => node.replicas.take(&client_id),
            }
            .map(Box::new)
            .or(awaiting.late);
            match awaiting.owed {
                Some((to, claim)) => self.send_peer(
                    to,
                    PeerMessage::Handover {
                        client_id,
                        claim,
                        session: copy,
                    },
                ),
                None => {
                    self.install_session(&client_id, copy, true);
                    self.admit_claimed(client_id, awaiting.token, awaiting.conn);
                }
            }
        }
    }

    /// After a restart replayed the log: sessions restored from this node's store whose client the
    /// table gives to another node are stale copies (the handover happened before the crash, or
    /// the new owner gave up waiting) and end, without their wills. The sessions it still owns are
    /// written whole through the log: the crash may have lost writes here that committed there,
    /// or the reverse, and the other nodes' copies must be this store's.
    fn drop_unowned_sessions(&mut self) {
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
                owned.extend(s.snapshot().ops(&s.client_id));
            }
        }
        self.queue_writes(owned, false);
        for sid in stale {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.will = None;
            }
            self.end_unreplicated(sid);
        }
    }

    /// Ends session `sid` because another node owns its client now. Its store deletions are this
    /// node's own, not writes of the session's owner: they never reach the copies, even when this
    /// node claims the client back before the batch is sealed (then the table would take them for
    /// the owner's).
    fn end_unreplicated(&mut self, sid: crate::session::SessionId) {
        let start = self.persist.len();
        self.end_session(sid);
        let end = self.persist.len();
        if let Some(node) = &mut self.cluster {
            node.unreplicated
                .push((self.persist.building(), start..end));
        }
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
            self.end_unreplicated(sid);
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
    m: &raft::eraftpb::Message,
    now: Instant,
) {
    if let Ok(to) = u16::try_from(m.to) {
        events.push_back(Event::Cluster {
            to,
            frame: Frame::Raft(cluster::encode_raft(m)).encode(now),
        });
    }
}
