//! The engine's timers: a table of deadlines, earliest first. Nothing here reads a clock; the shell calls
//! [`crate::Engine::handle`] with [`crate::Input::Timeout`] when the earliest deadline has come.

use std::collections::{BTreeMap, BTreeSet};

use crate::io::ConnId;
use crate::session::SessionId;
use crate::time::Instant;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// CONNECT must arrive by then.
    ConnectTimeout(ConnId),
    /// A packet must arrive by then (1.5 × keep alive).
    KeepAlive(ConnId),
    /// A throttled connection's stalled PUBLISH may go on.
    Throttle(ConnId),
    /// A delayed will message is due.
    WillDelay(SessionId),
    /// An offline session ends.
    SessionExpiry(SessionId),
    /// The `$SYS` topics are due for an update.
    Sys,
    /// The cluster's raft tick.
    ClusterTick,
}

impl TimerKind {
    /// A short name for traces and debugging ("why does the engine want to wake up?").
    pub(crate) fn name(self) -> &'static str {
        match self {
            TimerKind::ConnectTimeout(_) => "connect timeout",
            TimerKind::KeepAlive(_) => "keep alive",
            TimerKind::Throttle(_) => "rate limit",
            TimerKind::WillDelay(_) => "will delay",
            TimerKind::SessionExpiry(_) => "session expiry",
            TimerKind::Sys => "$SYS update",
            TimerKind::ClusterTick => "cluster tick",
        }
    }
}

/// At most one deadline per [`TimerKind`]; setting it again moves it.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeSet<(Instant, TimerKind)>,
    deadlines: BTreeMap<TimerKind, Instant>,
}

impl Timers {
    /// Sets (or moves) the deadline of `kind`.
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        if let Some(old) = self.deadlines.insert(kind, at) {
            self.queue.remove(&(old, kind));
        }
        self.queue.insert((at, kind));
    }

    /// Removes the deadline of `kind`, if any.
    pub(crate) fn cancel(&mut self, kind: TimerKind) {
        if let Some(old) = self.deadlines.remove(&kind) {
            self.queue.remove(&(old, kind));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<(Instant, TimerKind)> {
        self.queue.first().copied()
    }

    /// Removes and returns the earliest deadline at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKind> {
        let &(at, kind) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.remove(&(at, kind));
        self.deadlines.remove(&kind);
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_moving_a_deadline() {
        let mut t = Timers::default();
        t.set(TimerKind::KeepAlive(ConnId(1)), Instant::from_millis(300));
        t.set(TimerKind::KeepAlive(ConnId(2)), Instant::from_millis(100));
        t.set(TimerKind::KeepAlive(ConnId(2)), Instant::from_millis(500));
        assert_eq!(
            t.next(),
            Some((Instant::from_millis(300), TimerKind::KeepAlive(ConnId(1))))
        );
        assert_eq!(t.pop_due(Instant::from_millis(299)), None);
        assert_eq!(
            t.pop_due(Instant::from_millis(600)),
            Some(TimerKind::KeepAlive(ConnId(1)))
        );
        t.cancel(TimerKind::KeepAlive(ConnId(2)));
        assert_eq!(t.next(), None);
    }
}
