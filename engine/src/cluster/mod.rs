//! Several broker nodes as one: a replicated table (client ownership, subscription interest, retained
//! messages) kept by raft, and reliable links that carry publishes straight to the nodes that need
//! them. Everything here is sans-IO like the rest of the engine: raft (tikv's `raft` crate) is ticked
//! from [`crate::Input::Timeout`], its messages leave as [`crate::Event::Cluster`] frames and its log
//! as storage batches, and what another node sends comes in as [`crate::Input::Cluster`].
//!
//! See `docs/cluster.md` for the consistency model of each kind of state.

pub(crate) mod link;
pub(crate) mod log;
pub(crate) mod parts;
pub(crate) mod replica;
#[cfg(feature = "sim")]
pub mod sample;
pub(crate) mod table;
pub(crate) mod wire;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message as RaftMessage, Snapshot};
use raft::{RawNode, StateRole};

use crate::config::ConfigError;
use crate::io::StoreOp;
use crate::rng::Rng;
use crate::stored::StoredRaft;

pub use wire::{WireError, FORMAT};

/// What a handover carries at most, unless the maximum packet size is larger: the shell's frame
/// limit (`max(16 MiB, max_packet_size + 1 MiB)`) less room for the rest of the frame.
pub const HANDOVER_BUDGET: usize = 15 << 20;

/// What one [`wire::Command::Session`] log entry carries at most (a single larger write goes
/// alone): raft's own limit per message, so replication never needs frames near the shell's limit.
pub(crate) const WRITES_BUDGET: usize = 1 << 20;

/// The largest raft message part: a snapshot larger than this travels in parts (see
/// [`parts`]), each well under the shell's frame limit of at least 16 MiB.
pub const SNAPSHOT_PART: usize = 8 << 20;

/// Where a node is reached, as the admin API's join gives it and the log carries it to every node
/// (opaque to the engine: the shell dials it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddress {
    /// `host:port` of its cluster listener.
    pub address: String,
    /// The name its certificate carries, if not the address's host.
    pub server_name: Option<String>,
    /// `host:port` where its MQTT clients connect (a drain's Server Reference).
    pub mqtt: Option<String>,
}

/// This node's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's number, 1 to 65535, unique in the cluster.
    pub node: u16,
    /// Every node of the cluster at its first start, this one included (the static seed list; the
    /// raft voters until the admin API adds or removes one). For a node that joins, the nodes it
    /// may hear from before it is added.
    pub members: Vec<u16>,
    /// Whether this node joins a running cluster (it starts with no raft configuration and waits
    /// to be added through a member's admin API) rather than founding one with `members`.
    pub join: bool,
    /// Log entries applied since the last snapshot before the node takes another and drops them
    /// (a node that falls behind, or joins, gets the snapshot).
    pub snapshot_entries: usize,
    /// The raft tick.
    pub tick: Duration,
    /// Ticks without a leader before a follower stands for election (each node waits between this
    /// and twice this, drawn once from the engine's seed).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// How long a link message waits for its acknowledgement before it is sent again.
    pub retransmit: Duration,
    /// How long the leader hears nothing from a member before it declares it down (its sessions
    /// and what was routed to it go to the leader). A link whose messages stay unacknowledged
    /// for twice this drops them (and releases the publishers' acknowledgements they held).
    pub peer_timeout: Duration,
    /// How long a node may go without a raft leader before it disconnects its clients (v5: 0x88
    /// Server unavailable) so they reconnect to a node in the majority. Shorter than
    /// `peer_timeout`: the other nodes give up on a cut-off node only after its clients were told.
    pub fence_after: Duration,
    /// How long a CONNECT waits for its claim of the client identifier to commit before it is
    /// refused (0x88 Server unavailable): without a majority, no client can be admitted.
    pub claim_timeout: Duration,
    /// How long a resuming CONNECT (clean start 0) whose client was owned by another node waits
    /// for that node to hand the session over before it gets a fresh one (the old owner is dead
    /// or cut off).
    pub handover_timeout: Duration,
    /// The largest part a snapshot is sent in, in bytes ([`SNAPSHOT_PART`]; the simulation uses
    /// less, so that its small snapshots travel in parts too).
    pub snapshot_part: usize,
}

impl ClusterConfig {
    /// A cluster of `members` seen from `node`, with default timings (100 ms ticks, elections after
    /// 1–2 s, heartbeats every 200 ms, resends after 200 ms, clients fenced after 4 s without a
    /// leader, peers given up after 10 s, claims refused after 5 s, handovers waited for 1 s).
    pub fn new(node: u16, members: Vec<u16>) -> ClusterConfig {
        ClusterConfig {
            node,
            members,
            join: false,
            snapshot_entries: 10_000,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            retransmit: Duration::from_millis(200),
            peer_timeout: Duration::from_secs(10),
            fence_after: Duration::from_secs(4),
            claim_timeout: Duration::from_secs(5),
            handover_timeout: Duration::from_secs(1),
            snapshot_part: SNAPSHOT_PART,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.node == 0 {
            return Err(ConfigError {
                key: "cluster.node",
                fix: "give this node a number from 1 to 65535",
            });
        }
        if !self.members.contains(&self.node) {
            return Err(ConfigError {
                key: "cluster.members",
                fix: "list every node of the cluster, this one (cluster.node) included",
            });
        }
        if self.snapshot_entries == 0 {
            return Err(ConfigError {
                key: "cluster.snapshot_entries",
                fix: "take a snapshot after at least 1 entry",
            });
        }
        if self.snapshot_part == 0 || self.snapshot_part > HANDOVER_BUDGET {
            return Err(ConfigError {
                key: "cluster.snapshot_part_bytes",
                fix: "send snapshots in parts of 1 to 15728640 bytes (15 MiB: a part must fit a link frame)",
            });
        }
        if self.members.contains(&0) {
            return Err(ConfigError {
                key: "cluster.members",
                fix: "number nodes from 1 to 65535",
            });
        }
        if self.tick.is_zero() || self.heartbeat_ticks == 0 {
            return Err(ConfigError {
                key: "cluster.tick_ms",
                fix: "use a tick and heartbeat of at least 1",
            });
        }
        if self.fence_after >= self.peer_timeout {
            return Err(ConfigError {
                key: "cluster.fence_after_ms",
                fix: "make it shorter than cluster.peer_timeout_ms",
            });
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError {
                key: "cluster.election_ticks",
                fix: "make the election timeout longer than the heartbeat interval",
            });
        }
        Ok(())
    }

    /// The other nodes.
    pub fn others(&self) -> impl Iterator<Item = u16> + '_ {
        self.members.iter().copied().filter(|n| *n != self.node)
    }
}

/// What the cluster layer counts, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Whether this node is the raft leader now.
    pub leader: bool,
    /// The raft term.
    pub term: u64,
    /// The last log index applied here.
    pub applied: u64,
    /// Frames from other nodes that did not decode.
    pub bad_frames: u64,
    /// Link messages dropped because their node stayed silent past the peer timeout.
    pub peer_drops: u64,
    /// Link messages waiting for an acknowledgement.
    pub unacked: u64,
    /// CONNECTs refused because their claim did not commit in time.
    pub claims_timed_out: u64,
    /// Times this node went too long without a leader and disconnected its clients.
    pub fenced: u64,
    /// Sessions this node handed over to another node.
    pub handovers_sent: u64,
    /// Sessions another node handed over to this one.
    pub handovers_received: u64,
    /// Resuming CONNECTs that gave up waiting for their session and started a fresh one.
    pub handover_timeouts: u64,
    /// Queued messages left behind by a handover because the session exceeded what one link frame
    /// carries ([`HANDOVER_BUDGET`], or the maximum packet size if larger).
    pub handover_messages_dropped: u64,
    /// Late copies of a message that a session took before it moved here, not delivered again.
    pub duplicates_dropped: u64,
    /// Persistent sessions of other nodes copied here (from their writes in the log).
    pub replicated_sessions: u64,
    /// Session writes of this node proposed to the log and not yet committed (what holds its
    /// acknowledgements).
    pub writes_uncommitted: u64,
    /// Resuming CONNECTs whose old node never handed the session over (dead, or cut off) and that
    /// got it from this node's copy instead.
    pub failovers: u64,
    /// The index of the last snapshot (the log starts after it).
    pub snapshot_index: u64,
    /// Log entries held after the snapshot.
    pub log_entries: u64,
    /// Snapshots this node took of its applied state.
    pub snapshots_taken: u64,
    /// Snapshots this node received from a leader (it had fallen behind what the log still
    /// held, or joined).
    pub snapshots_received: u64,
    /// Nodes declared down, as this node applied it (their sessions adopted by the leader that
    /// declared them).
    pub nodes_down: u64,
    /// Sessions this node adopted from nodes declared down.
    pub sessions_adopted: u64,
    /// Parts of raft messages too large for one frame (snapshots) received.
    pub raft_parts_received: u64,
}

/// The raft node and its storage, as the engine drives it.
pub(crate) struct Raft {
    pub(crate) node: RawNode<log::LogStore>,
    /// Readies appended but waiting for their storage batch: (batch, ready number, the messages
    /// that may only leave once it is durable).
    pub(crate) held: VecDeque<(u64, u64, Vec<RaftMessage>)>,
    /// A snapshot received from the leader, applied to the state but not yet reported to raft
    /// as applied (raft only takes that once it is durable).
    snapshot_applied: Option<u64>,
}

impl std::fmt::Debug for Raft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raft")
            .field("id", &self.node.raft.id)
            .field("term", &self.node.raft.term)
            .field("role", &self.node.raft.state)
            .finish_non_exhaustive()
    }
}

impl Raft {
    /// A raft node for `config`, over the snapshot, log and hard state `stored` (empty on a first
    /// start). The snapshot's state is the caller's to restore.
    pub(crate) fn new(config: &ClusterConfig, rng: &mut Rng, stored: &StoredRaft) -> Raft {
        let voters: Vec<u64> = if config.join {
            Vec::new()
        } else {
            config.members.iter().map(|n| u64::from(*n)).collect()
        };
        let mut storage = log::LogStore::new(ConfState::from((voters, vec![])));
        if let Some(snapshot) = stored
            .snapshot
            .as_ref()
            .and_then(|b| Snapshot::parse_from_bytes(b).ok())
        {
            storage.install(snapshot, false);
        }
        let entries: Vec<Entry> = stored
            .entries
            .values()
            .filter_map(|b| Entry::parse_from_bytes(b).ok())
            .collect();
        // Stored entries are contiguous from the snapshot's index on.
        storage.append(&entries);
        if let Some(hs) = stored
            .hard_state
            .as_ref()
            .and_then(|b| HardState::parse_from_bytes(b).ok())
        {
            storage.set_hard_state(hs);
        }
        // raft-rs draws each election timeout from an unseeded generator in [min, max): pinning
        // max = min + 1 takes it out. The jitter that keeps nodes from standing together comes from
        // the engine's seed instead: a timeout drawn once per start, and ticks of random length.
        let base = config.election_ticks;
        let election = base + rng.below(base as u64) as usize;
        let raft_config = raft::Config {
            id: u64::from(config.node),
            election_tick: election,
            min_election_tick: election,
            max_election_tick: election + 1,
            heartbeat_tick: config.heartbeat_ticks,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            applied: 0,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        // The configuration is ours and valid, and the log store cannot fail to load.
        let node = match RawNode::new(&raft_config, storage, &logger) {
            Ok(node) => node,
            Err(e) => unreachable_config(&e),
        };
        Raft {
            node,
            held: VecDeque::new(),
            snapshot_applied: None,
        }
    }

    /// Tells raft that ready `number` (and every one before it) is durable.
    pub(crate) fn persisted(&mut self, number: u64) {
        self.node.on_persist_ready(number);
        if let Some(index) = self.snapshot_applied {
            let log = &self.node.raft.raft_log;
            if log.persisted >= index {
                if log.applied < index {
                    self.node.advance_apply_to(index);
                }
                self.snapshot_applied = None;
            }
        }
    }

    /// Makes a snapshot received from the leader the log's start (its state is the caller's to
    /// restore); returns the storage writes.
    pub(crate) fn install_received(&mut self, snapshot: &Snapshot) -> [StoreOp; 2] {
        let index = snapshot.get_metadata().index;
        self.node.mut_store().install(snapshot.clone(), false);
        self.snapshot_applied = Some(index);
        [
            StoreOp::PutRaftSnapshot {
                index,
                snapshot: Bytes::from(snapshot.write_to_bytes().unwrap_or_default()),
            },
            StoreOp::TruncateRaftLog { from: index + 1 },
        ]
    }

    /// A snapshot of the applied state `data` at the last applied index, which replaces the log up
    /// to it; returns its storage write (`None` if nothing was applied since the last snapshot).
    pub(crate) fn compact(&mut self, data: Bytes) -> Option<StoreOp> {
        let index = self.node.raft.raft_log.applied;
        if index <= self.node.store().snapshot_index() {
            return None;
        }
        let term = self.node.store().term_of(index)?;
        let mut snapshot = Snapshot {
            data,
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        let bytes = Bytes::from(snapshot.write_to_bytes().unwrap_or_default());
        self.node.mut_store().install(snapshot, true);
        Some(StoreOp::PutRaftSnapshot {
            index,
            snapshot: bytes,
        })
    }

    /// Entries applied since the last snapshot.
    pub(crate) fn since_snapshot(&self) -> u64 {
        self.node
            .raft
            .raft_log
            .applied
            .saturating_sub(self.node.store().snapshot_index())
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub(crate) fn leader(&self) -> Option<u16> {
        u16::try_from(self.node.raft.leader_id)
            .ok()
            .filter(|l| *l != 0)
    }
}

#[cold]
fn unreachable_config(e: &raft::Error) -> ! {
    // Only a configuration error can make RawNode::new fail over a LogStore, and ours is checked.
    panic!("raft rejected the engine's configuration: {e}")
}

/// The storage writes of appending `entries` (replacing any stored suffix from their first index).
pub(crate) fn entry_ops(entries: &[Entry]) -> Vec<StoreOp> {
    let mut ops = Vec::with_capacity(entries.len() + 1);
    if let Some(first) = entries.first() {
        ops.push(StoreOp::TruncateRaftLog { from: first.index });
    }
    for e in entries {
        ops.push(StoreOp::PutRaftEntry {
            index: e.index,
            entry: Bytes::from(e.write_to_bytes().unwrap_or_default()),
        });
    }
    ops
}

/// The storage write of a hard state.
pub(crate) fn hard_state_op(hs: &HardState) -> StoreOp {
    StoreOp::PutRaftHardState {
        hard_state: Bytes::from(hs.write_to_bytes().unwrap_or_default()),
    }
}

/// A raft message as a frame's payload.
pub(crate) fn encode_raft(message: &RaftMessage) -> Bytes {
    Bytes::from(message.write_to_bytes().unwrap_or_default())
}

/// A raft message from a frame's payload.
pub(crate) fn decode_raft(bytes: &[u8]) -> Option<RaftMessage> {
    RaftMessage::parse_from_bytes(bytes).ok()
}

/// Whether a log entry carries a command (not raft's own empty or configuration entries).
pub(crate) fn is_command(entry: &Entry) -> bool {
    entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_part_that_cannot_fit_a_frame_is_refused_naming_the_key() {
        let mut config = ClusterConfig::new(1, vec![1, 2, 3]);
        assert_eq!(config.validate(), Ok(()));
        for bad in [0, HANDOVER_BUDGET + 1] {
            config.snapshot_part = bad;
            let error = config.validate().expect_err("refused");
            assert_eq!(error.key, "cluster.snapshot_part_bytes");
        }
    }
}
