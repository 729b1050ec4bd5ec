//! What a session took since it last moved to this node, message by message.
//!
//! A session's high-water marks (the last stamp taken per origin) recognise a copy of a message it
//! already took only while each origin's messages reach it in order. A message the node it left
//! relays to it (one that arrived there after the handover, see `engine/cluster/moving.rs`) comes
//! after later messages of the same origin that reached this node directly, so for a while after a
//! move the session remembers each stamp it took above the marks it came with, and judges every
//! message by that instead: taken before if at or below those marks, or remembered.

use std::collections::BTreeMap;

use crate::io::Stamp;
use crate::stored::TakenSince;
use crate::time::Instant;

/// How many stamps of one origin a window remembers; past that, the oldest fold into the mark (a
/// relayed message that old is taken as had, so never delivered twice, but may be missed).
const REMEMBERED: usize = 4096;

/// The stamps a session took since it moved here, until it closes (`taken.until`, always set).
#[derive(Debug)]
pub(crate) struct MoveWindow {
    taken: TakenSince,
}

impl MoveWindow {
    /// A window over the marks `seen` (origin → (incarnation, counter)) the session came with,
    /// or over what the window of the node it came from took (`carried`, for a session that
    /// moved again before that window closed).
    pub(crate) fn new(
        seen: &BTreeMap<u16, (u64, u64)>,
        carried: Option<TakenSince>,
        until: Instant,
    ) -> MoveWindow {
        let mut taken = carried.unwrap_or_else(|| TakenSince {
            floor: (seen.iter())
                .map(|(node, (inc, seq))| ((*node, *inc), *seq))
                .collect(),
            ..TakenSince::default()
        });
        taken.until = Some(until);
        MoveWindow { taken }
    }

    /// The window a store kept, if it is still open at `now`; it closes at `latest` at the
    /// latest (a clock that jumped back since it was stored would keep it open for longer).
    pub(crate) fn restored(
        mut taken: TakenSince,
        now: Instant,
        latest: Instant,
    ) -> Option<MoveWindow> {
        let until = taken.until?.min(latest);
        if until <= now {
            return None;
        }
        taken.until = Some(until);
        // Past what a window remembers, the oldest fold into the floor, as when they were taken.
        for (key, seqs) in &mut taken.taken {
            while seqs.len() > REMEMBERED {
                if let Some(oldest) = seqs.pop_first() {
                    taken.floor.insert(*key, oldest);
                }
            }
        }
        Some(MoveWindow { taken })
    }

    /// What the window took, and when it closes: what the store keeps (a handover leaves out
    /// `until`).
    pub(crate) fn taken(&self) -> &TakenSince {
        &self.taken
    }

    /// Whether the window still applies at `now`.
    pub(crate) fn open(&self, now: Instant) -> bool {
        self.taken.until.is_some_and(|until| now < until)
    }

    /// Whether the window judges `stamp`'s origin incarnation from what it knows of it: a mark it
    /// came with or a stamp it took.
    pub(crate) fn knows(&self, stamp: &Stamp) -> bool {
        let key = (stamp.node, stamp.incarnation);
        self.taken.floor.contains_key(&key) || self.taken.taken.contains_key(&key)
    }

    /// Whether the window remembers taking `stamp` (above its floor): what the store must learn.
    pub(crate) fn remembers(&self, stamp: &Stamp) -> bool {
        (self.taken.taken.get(&(stamp.node, stamp.incarnation)))
            .is_some_and(|t| t.contains(&stamp.seq))
    }

    /// Records that the session takes `stamp`; false if it took it before (and `check`).
    pub(crate) fn take(&mut self, stamp: Stamp, check: bool) -> bool {
        let key = (stamp.node, stamp.incarnation);
        let floor = self.taken.floor.get(&key).copied().unwrap_or(0);
        let taken = self.taken.taken.entry(key).or_default();
        if check && (stamp.seq <= floor || taken.contains(&stamp.seq)) {
            return false;
        }
        if stamp.seq > floor {
            taken.insert(stamp.seq);
        }
        if taken.len() > REMEMBERED {
            if let Some(oldest) = taken.pop_first() {
                self.taken.floor.insert(key, oldest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64) -> Stamp {
        Stamp {
            node: 2,
            incarnation: 7,
            seq,
        }
    }

    #[test]
    fn a_late_message_is_taken_once_and_what_came_along_never() {
        let seen = BTreeMap::from([(2, (7, 10))]);
        let mut w = MoveWindow::new(&seen, None, Instant::from_micros(1_000));
        assert!(!w.take(stamp(10), true), "at the mark it came with");
        assert!(w.take(stamp(15), true), "direct");
        assert!(w.take(stamp(12), true), "relayed, after a later one");
        assert!(!w.take(stamp(12), true), "its copy");
        assert!(!w.take(stamp(15), true), "the direct one's copy");
        assert!(w.take(stamp(11), true));
        // Another incarnation of the origin counts from nothing.
        let other = Stamp {
            incarnation: 8,
            ..stamp(3)
        };
        assert!(w.take(other, true));
        assert!(!w.take(other, true));
        assert!(w.open(Instant::from_micros(999)));
        assert!(!w.open(Instant::from_micros(1_000)));
    }

    #[test]
    fn a_window_carried_on_judges_as_the_one_it_came_from() {
        let seen = BTreeMap::from([(2, (7, 10))]);
        let mut first = MoveWindow::new(&seen, None, Instant::from_micros(1_000));
        assert!(first.take(stamp(25), true), "direct, after the first move");
        // The session moves on: its marks say 25 now, but 22 was never taken.
        let marks = BTreeMap::from([(2, (7, 25))]);
        let carried = Some(first.taken().clone());
        let mut second = MoveWindow::new(&marks, carried, Instant::from_micros(2_000));
        assert!(second.take(stamp(22), true), "relayed after both moves");
        assert!(
            !second.take(stamp(25), true),
            "taken before the second move"
        );
        assert!(!second.take(stamp(10), true), "at the first floor");
        let fresh =
            MoveWindow::new(&marks, None, Instant::from_micros(2_000)).take(stamp(22), true);
        assert!(!fresh, "the marks alone refuse it");
    }

    #[test]
    fn a_stored_window_reopens_until_it_closes_and_no_longer() {
        let seen = BTreeMap::from([(2, (7, 10))]);
        let mut w = MoveWindow::new(&seen, None, Instant::from_micros(1_000));
        assert!(w.take(stamp(15), true));
        assert!(w.remembers(&stamp(15)));
        assert!(!w.remembers(&stamp(12)));
        let stored = w.taken().clone();
        let at = |micros| Instant::from_micros(micros);
        assert!(MoveWindow::restored(stored.clone(), at(1_000), at(5_000)).is_none());
        let mut back = MoveWindow::restored(stored.clone(), at(500), at(5_000)).expect("open");
        assert!(!back.take(stamp(15), true), "taken before the restart");
        assert!(back.take(stamp(12), true), "relayed after it");
        // A clock that went back since: closes no later than it would from now.
        let back = MoveWindow::restored(stored, at(100), at(300)).expect("open");
        assert!(back.open(at(299)) && !back.open(at(300)));
        // One a handover carried (no end of its own) is not a stored one.
        let carried = TakenSince {
            until: None,
            ..w.taken().clone()
        };
        assert!(MoveWindow::restored(carried, at(0), at(5_000)).is_none());
    }

    #[test]
    fn past_what_it_remembers_the_oldest_count_as_taken() {
        let mut w = MoveWindow::new(&BTreeMap::new(), None, Instant::from_micros(1));
        for seq in (2..).step_by(2).take(REMEMBERED + 1) {
            assert!(w.take(stamp(seq), true));
        }
        assert!(
            !w.take(stamp(1), true),
            "below the oldest remembered: refused"
        );
        assert!(!w.take(stamp(2), true), "folded into the mark");
        assert!(w.take(stamp(5), true), "a gap still remembered");
    }
}
