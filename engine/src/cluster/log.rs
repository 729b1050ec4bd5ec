//! The raft log as this node holds it in memory: the last snapshot, the entries after it, the
//! hard state. raft-rs reads it through [`Storage`]; the engine writes it (and mirrors every write
//! to the store as [`crate::io::StoreOp`]s).
//!
//! Why not raft-rs's `MemStorage`: its snapshots carry no data (it builds them from the commit
//! index on demand), and compacting it loses the term of the entry before the first one kept. A
//! node that joins, or falls behind a compaction, needs the table, the retained messages and the
//! session copies, which only the engine can put in a snapshot.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The log: entries `snapshot.index + 1 ..= last_index`.
#[derive(Default)]
pub(crate) struct LogStore {
    hard_state: HardState,
    /// The configuration at the start: the static members, or none for a node that joins.
    initial: ConfState,
    /// The last snapshot: the state at its index, which the entries continue. Index 0: none.
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl LogStore {
    /// A log that starts from `conf` (the voters of a cluster's first start, or nobody).
    pub(crate) fn new(conf: ConfState) -> LogStore {
        LogStore {
            initial: conf,
            ..LogStore::default()
        }
    }

    /// The index of the last snapshot (0: none).
    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The last snapshot.
    pub(crate) fn last_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub(crate) fn last(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// How many entries follow the snapshot.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn set_hard_state(&mut self, mut hs: HardState) {
        // What a snapshot holds is committed, whatever an older hard state said.
        hs.commit = hs.commit.max(self.snapshot_index());
        self.hard_state = hs;
    }

    /// Appends `entries`, replacing whatever the log held from the first one's index on. Entries
    /// at or before the snapshot are skipped (a stale append).
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let base = self.snapshot_index();
        let fresh: Vec<&Entry> = entries.iter().filter(|e| e.index > base).collect();
        let Some(first) = fresh.first() else {
            return;
        };
        let keep = (first.index - base - 1) as usize;
        self.entries.truncate(keep.min(self.entries.len()));
        if self.last() + 1 != first.index {
            // A gap: raft never appends one; refusing keeps the log contiguous.
            return;
        }
        self.entries.extend(fresh.into_iter().cloned());
    }

    /// Makes `snapshot` the log's start: it replaces every entry up to its index. A snapshot
    /// this node took of its own applied state keeps the entries after it; one received from a
    /// leader replaces the whole log (the entries after it come next).
    pub(crate) fn install(&mut self, snapshot: Snapshot, keep_after: bool) {
        let index = snapshot.get_metadata().index;
        if index < self.snapshot_index() {
            return;
        }
        let drop = (index - self.snapshot_index()).min(self.entries.len() as u64) as usize;
        if keep_after {
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
            let meta = snapshot.get_metadata();
            self.hard_state.term = self.hard_state.term.max(meta.term);
            self.hard_state.commit = self.hard_state.commit.max(index);
        }
        self.snapshot = snapshot;
    }

    /// The term of entry `index`, if the log still knows it.
    pub(crate) fn term_of(&self, index: u64) -> Option<u64> {
        let base = self.snapshot_index();
        if index == base {
            return Some(self.snapshot.get_metadata().term);
        }
        let at = index.checked_sub(base + 1)?;
        self.entries.get(at as usize).map(|e| e.term)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let conf = if self.snapshot_index() == 0 {
            self.initial.clone()
        } else {
            self.snapshot.get_metadata().get_conf_state().clone()
        };
        Ok(RaftState::new(self.hard_state.clone(), conf))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let base = self.snapshot_index();
        if low <= base {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let (lo, hi) = ((low - base - 1) as usize, (high - base - 1) as usize);
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(hi - lo);
        let mut size = 0u64;
        for e in &self.entries[lo..hi] {
            size += u64::from(protobuf::Message::compute_size(e));
            // raft-rs wants at least one entry, whatever its size.
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Before the first compaction there is no snapshot, and no follower needs one (the whole
        // log is here); raft asks again later.
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s
    }

    #[test]
    fn a_compaction_keeps_the_term_of_its_last_entry_and_what_follows() {
        let mut log = LogStore::new(ConfState::from((vec![1, 2, 3], vec![])));
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]);
        log.install(snapshot(3, 2), true);
        assert_eq!(log.first_index().ok(), Some(4));
        assert_eq!(log.last_index().ok(), Some(4));
        assert_eq!(log.term(3).ok(), Some(2));
        assert!(log.term(2).is_err());
        assert!(log
            .entries(3, 5, None, GetEntriesContext::empty(false))
            .is_err());
        let rest = log
            .entries(4, 5, None, GetEntriesContext::empty(false))
            .unwrap_or_default();
        assert_eq!(rest.len(), 1);
        assert_eq!(
            log.snapshot(0, 2).map(|s| s.get_metadata().index).ok(),
            Some(3)
        );
    }

    #[test]
    fn an_append_replaces_the_suffix_and_a_received_snapshot_the_log() {
        let mut log = LogStore::new(ConfState::default());
        assert!(log.snapshot(0, 1).is_err());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(2, 2)]);
        assert_eq!(log.last(), 2);
        assert_eq!(log.term(2).ok(), Some(2));
        log.install(snapshot(10, 3), false);
        assert_eq!(log.len(), 0);
        assert_eq!(log.first_index().ok(), Some(11));
        assert_eq!(
            log.initial_state().map(|s| s.hard_state.commit).ok(),
            Some(10)
        );
        // An append that leaves a gap is refused.
        log.append(&[entry(13, 3)]);
        assert_eq!(log.last(), 10);
        log.append(&[entry(11, 3)]);
        assert_eq!(log.last(), 11);
    }
}
