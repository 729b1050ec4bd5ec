//! Durability as an output: storage operations accumulate while an input is handled and leave as one
//! batch ([`crate::Event::Persist`]); replies that depend on them wait until the shell reports the batch
//! durable.

use crate::io::{PersistSeq, StoreOp};

/// The batch being built and what is known to be durable.
#[derive(Debug)]
pub(crate) struct Persistence {
    enabled: bool,
    ops: Vec<StoreOp>,
    /// The number the batch being built will carry.
    next_seq: u64,
    /// Every batch up to this one is durable.
    durable_upto: u64,
    /// Batches that also wait for other engines to store what they were forwarded (see
    /// [`Persistence::await_peer`]): how many answers each still needs.
    receipts: std::collections::BTreeMap<u64, usize>,
    /// Batches that also wait for their session writes to commit in a cluster's log (see
    /// [`Persistence::await_replication`]): how many log entries each still needs.
    replication: std::collections::BTreeMap<u64, usize>,
    /// Receipts registered on the batch being built; counted in marks, so a gate covers them.
    building_receipts: usize,
}

impl Persistence {
    pub(crate) fn new(enabled: bool) -> Persistence {
        Persistence {
            enabled,
            ops: Vec::new(),
            next_seq: 1,
            durable_upto: 0,
            receipts: std::collections::BTreeMap::new(),
            replication: std::collections::BTreeMap::new(),
            building_receipts: 0,
        }
    }

    /// Whether operations are recorded at all (an in-memory broker records none).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds an operation to the batch being built.
    pub(crate) fn push(&mut self, op: StoreOp) {
        if self.enabled {
            self.ops.push(op);
        }
    }

    /// The operations added to the batch being built from position `from` on.
    pub(crate) fn ops_since(&self, from: usize) -> &[StoreOp] {
        self.ops.get(from..).unwrap_or_default()
    }

    /// How many operations the batch being built holds.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// How many operations the batch holds so far: compare before and after handling a packet to know
    /// whether its reply must wait.
    pub(crate) fn mark(&self) -> usize {
        self.ops.len() + self.building_receipts
    }

    /// The batch the operations added since `mark` belong to, if any were added.
    pub(crate) fn gate_since(&self, mark: usize) -> Option<u64> {
        (self.mark() > mark).then_some(self.next_seq)
    }

    /// Makes the batch being built wait, besides storage, for one more engine to report a forwarded
    /// message stored ([`Persistence::peer_stored`]); returns the batch. The batch is written even
    /// if it holds no operation, so its acknowledgements are released in order.
    pub(crate) fn await_peer(&mut self) -> u64 {
        self.building_receipts += 1;
        *self.receipts.entry(self.next_seq).or_insert(0) += 1;
        self.next_seq
    }

    /// Makes batch `seq` (built or sealed, still waiting for a receipt) wait for one more.
    pub(crate) fn await_more(&mut self, seq: u64) {
        *self.receipts.entry(seq).or_insert(0) += 1;
    }

    /// Another engine stored what batch `seq` forwarded to it.
    pub(crate) fn peer_stored(&mut self, seq: u64) {
        count_down(&mut self.receipts, seq);
    }

    /// Makes the batch being built wait, besides storage, for one more log entry of its session
    /// writes to commit ([`Persistence::replicated`]); returns the batch.
    pub(crate) fn await_replication(&mut self) -> u64 {
        self.building_receipts += 1;
        *self.replication.entry(self.next_seq).or_insert(0) += 1;
        self.next_seq
    }

    /// One log entry of batch `seq`'s session writes committed.
    pub(crate) fn replicated(&mut self, seq: u64) {
        count_down(&mut self.replication, seq);
    }

    /// Whether batch `seq` is on disk and its session writes committed (what a forwarded message
    /// stored in it may be confirmed on: replication never waits for another batch, so two nodes
    /// confirming to each other cannot wait on each other).
    pub(crate) fn is_replicated(&self, seq: u64) -> bool {
        self.is_stored(seq) && self.replication.range(..=seq).next().is_none()
    }

    /// Whether batch `seq` is on disk (other engines' receipts aside).
    pub(crate) fn is_stored(&self, seq: u64) -> bool {
        seq <= self.durable_upto
    }

    /// The number of the batch being built (what a reply depending on it must wait for).
    pub(crate) fn building(&self) -> u64 {
        self.next_seq
    }

    /// Whether batch `seq` is durable, and every engine it forwarded messages to stored them.
    pub(crate) fn is_durable(&self, seq: u64) -> bool {
        self.is_replicated(seq) && self.receipts.range(..=seq).next().is_none()
    }

    /// Records that batches up to `upto` are durable; ignores reports that go backwards.
    pub(crate) fn persisted(&mut self, upto: PersistSeq) {
        // A report for a batch never emitted is a shell bug; clamp so it cannot release future replies.
        let upto = upto.0.min(self.next_seq - 1);
        self.durable_upto = self.durable_upto.max(upto);
    }

    /// Closes the batch being built, if it has operations or awaits receipts.
    pub(crate) fn seal(&mut self) -> Option<(PersistSeq, Vec<StoreOp>)> {
        if self.ops.is_empty() && self.building_receipts == 0 {
            return None;
        }
        self.building_receipts = 0;
        let seq = PersistSeq(self.next_seq);
        self.next_seq += 1;
        Some((seq, std::mem::take(&mut self.ops)))
    }
}

/// Takes one from batch `seq`'s count, forgetting it at zero.
fn count_down(counts: &mut std::collections::BTreeMap<u64, usize>, seq: u64) {
    if let Some(waiting) = counts.get_mut(&seq) {
        *waiting -= 1;
        if *waiting == 0 {
            counts.remove(&seq);
        }
    }
}
