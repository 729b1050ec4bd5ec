//! What a node knew when it made each session write of the batch being built.
//!
//! A session's writes go to the log at the end of the input, but one input can apply several
//! entries of the log, and what each write may claim depends on the log as the node knew it when
//! it made the write: how far it had applied (`Written::seen`, which the copies judge by, see
//! `Table::writes_to`) and whether it owned the session (only an owner's writes go to the log). So
//! the node notes, before it applies more and before a claim changes an owner, the position in the
//! batch and what held for the writes before it.

use std::collections::BTreeMap;

use bytestring::ByteString;

/// The notes for one batch, by position in it (ascending).
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// The batch they are for (another batch's writes have none).
    batch: u64,
    /// Before each position where the node applied more: how far it had applied.
    seen: Vec<(usize, u64)>,
    /// Per client whose owner a claim changed: before each such position, whether this node
    /// owned it.
    owned: BTreeMap<ByteString, Vec<(usize, bool)>>,
}

impl Marks {
    /// The notes for `batch`, the ones of an earlier batch dropped.
    fn of(&mut self, batch: u64) -> &mut Marks {
        if self.batch != batch {
            *self = Marks {
                batch,
                ..Marks::default()
            };
        }
        self
    }

    /// The writes of `batch` before `at` were made having applied the log as far as `seen`
    /// (kept if an earlier note covers the same position: they were made before that).
    pub(super) fn seen(&mut self, batch: u64, at: usize, seen: u64) {
        let marks = self.of(batch);
        if marks.seen.last().is_none_or(|(pos, _)| *pos < at) {
            marks.seen.push((at, seen));
        }
    }

    /// The writes of `batch` before `at` were made when this node owned `client` (`mine`) or
    /// not (kept if an earlier note covers the same position).
    pub(super) fn owned(&mut self, batch: u64, at: usize, client: &ByteString, mine: bool) {
        let marks = self.of(batch).owned.entry(client.clone()).or_default();
        if marks.last().is_none_or(|(pos, _)| *pos < at) {
            marks.push((at, mine));
        }
    }

    /// How far the node had applied the log when it made the write at `at` of `batch`, if it
    /// applied more since.
    pub(super) fn seen_at(&self, batch: u64, at: usize) -> Option<u64> {
        (self.batch == batch)
            .then(|| first_after(&self.seen, at))
            .flatten()
    }

    /// Whether the node owned `client` when it made the write at `at` of `batch`, if a claim
    /// changed its owner since.
    pub(super) fn owned_at(&self, batch: u64, at: usize, client: &ByteString) -> Option<bool> {
        (self.batch == batch)
            .then(|| self.owned.get(client))
            .flatten()
            .and_then(|marks| first_after(marks, at))
    }

    /// The writes of `batch` up to `cursor` went to the log: their notes are done with.
    pub(super) fn taken(&mut self, batch: u64, cursor: usize) {
        let marks = self.of(batch);
        marks.seen.retain(|(pos, _)| *pos > cursor);
        marks.owned.retain(|_, m| {
            m.retain(|(pos, _)| *pos > cursor);
            !m.is_empty()
        });
    }
}

/// The value of the first note after position `at`.
fn first_after<T: Copy>(marks: &[(usize, T)], at: usize) -> Option<T> {
    let i = marks.partition_point(|(pos, _)| *pos <= at);
    marks.get(i).map(|(_, value)| *value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_gets_what_held_when_it_was_made() {
        let mut m = Marks::default();
        let c: ByteString = "c".into();
        // Batch 3: two writes (0, 1), then entry 11 applied; a write (2), then a claim moved
        // "c" away and entry 12 applied; a write (3).
        m.seen(3, 2, 10);
        m.seen(3, 3, 11);
        m.owned(3, 3, &c, true);
        m.seen(3, 3, 12);
        assert_eq!(m.seen_at(3, 0), Some(10));
        assert_eq!(m.seen_at(3, 1), Some(10));
        assert_eq!(
            m.seen_at(3, 2),
            Some(11),
            "the first note covers the position"
        );
        assert_eq!(m.seen_at(3, 3), None, "the node's current view");
        assert_eq!(m.owned_at(3, 2, &c), Some(true));
        assert_eq!(m.owned_at(3, 3, &c), None);
        assert_eq!(m.owned_at(3, 0, &"d".into()), None, "no claim moved it");
        assert_eq!(m.seen_at(4, 0), None, "another batch");
        m.taken(3, 2);
        assert_eq!(m.seen_at(3, 3), None);
        assert_eq!(
            m.owned_at(3, 2, &c),
            Some(true),
            "position 3 is still ahead"
        );
        m.seen(4, 0, 13);
        assert_eq!(m.owned_at(3, 2, &c), None, "a new batch forgets the last");
    }
}
