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
}

impl Persistence {
    pub(crate) fn new(enabled: bool) -> Persistence {
        Persistence {
            enabled,
            ops: Vec::new(),
            next_seq: 1,
            durable_upto: 0,
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

    /// How many operations the batch holds so far: compare before and after handling a packet to know
    /// whether its reply must wait.
    pub(crate) fn mark(&self) -> usize {
        self.ops.len()
    }

    /// The batch the operations added since `mark` belong to, if any were added.
    pub(crate) fn gate_since(&self, mark: usize) -> Option<u64> {
        (self.ops.len() > mark).then_some(self.next_seq)
    }

    /// The number of the batch being built (what a reply depending on it must wait for).
    pub(crate) fn building(&self) -> u64 {
        self.next_seq
    }

    /// Whether batch `seq` is durable.
    pub(crate) fn is_durable(&self, seq: u64) -> bool {
        seq <= self.durable_upto
    }

    /// Records that batches up to `upto` are durable; ignores reports that go backwards.
    pub(crate) fn persisted(&mut self, upto: PersistSeq) {
        // A report for a batch never emitted is a shell bug; clamp so it cannot release future replies.
        let upto = upto.0.min(self.next_seq - 1);
        self.durable_upto = self.durable_upto.max(upto);
    }

    /// Closes the batch being built, if it has operations.
    pub(crate) fn seal(&mut self) -> Option<(PersistSeq, Vec<StoreOp>)> {
        if self.ops.is_empty() {
            return None;
        }
        let seq = PersistSeq(self.next_seq);
        self.next_seq += 1;
        Some((seq, std::mem::take(&mut self.ops)))
    }
}
