//! Reliable, ordered, idempotent delivery of [`PeerMessage`]s between two nodes over a network that
//! loses, duplicates and reorders frames.
//!
//! Each message gets the next sequence number of the sender's incarnation and is resent every
//! retransmission interval until the receiver acknowledges it. The receiver delivers in sequence
//! order exactly once per incarnation pair: a frame at or below what it delivered is a duplicate
//! (acknowledged again, not delivered), a frame ahead of a gap waits for the gap. A receiver that
//! does not know the sender's incarnation (its own restart, or the sender's) starts at the oldest
//! number the sender still holds, which every data frame carries; so does one whose sender gave up
//! on older messages.
//!
//! **An acknowledgement means done, durably.** The receiver acknowledges a message only once what
//! it did with it is stored (and, for session writes, committed in the log): the engine reports
//! the storage batch each delivered message wrote to ([`Links::processed`]) and acknowledges as
//! batches become durable ([`Links::confirm`]). A receiver that crashes before then gets the
//! message again from the sender after its restart. A message the engine cannot be done with yet
//! (a session handed over ahead of the claim it is for, kept in memory until the claim applies) is
//! held ([`Links::hold`]) and released with its batch once it is done ([`Links::release`]); the
//! acknowledgement of what follows it waits too, as acknowledgements are cumulative. This is also
//! the receipt a publisher's
//! acknowledgement waits for: acknowledging on arrival once left a publisher waiting for ever for
//! a receipt the crashed receiver never sent (the simulation's seed 6).
//!
//! A peer that acknowledged nothing for the give-up interval while messages waited for it is
//! considered gone: what waits for it is dropped (and reported, so the publishers'
//! acknowledgements it held are released). Progress is counted from acknowledgements, not from any
//! traffic: two raft followers never talk to each other, so silence alone says nothing.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::io::PeerMessage;
use crate::time::Instant;

use super::wire::Frame;

/// Resends per peer per retransmission round, so a long outage does not become one burst.
const RESEND_BATCH: usize = 256;

/// Frames or messages, each with the peer it is for.
pub(crate) type ForPeers<T> = Vec<(u16, T)>;

/// The links to every other node.
#[derive(Debug)]
pub(crate) struct Links {
    /// This node's incarnation.
    incarnation: u64,
    retransmit: Duration,
    give_up: Duration,
    links: BTreeMap<u16, Link>,
}

#[derive(Debug, Default)]
struct Link {
    /// The next sequence number to send.
    next_seq: u64,
    /// Sent, not yet acknowledged: (message, when last sent).
    unacked: BTreeMap<u64, (PeerMessage, Instant)>,
    /// The incarnation of the peer last heard from, and how far it was delivered here in order.
    theirs: Option<(u64, u64)>,
    /// How far what was delivered here in order is done durably (acknowledged).
    confirmed: u64,
    /// Delivered, not yet done durably, in order: (sequence number, what it waits for).
    unconfirmed: VecDeque<(u64, Done)>,
    /// Frames of `theirs` ahead of a gap.
    early: BTreeMap<u64, PeerMessage>,
    /// Since when the oldest unacknowledged message waits without progress: the first send into
    /// an empty window, or the last acknowledgement that moved it.
    progress: Instant,
}

/// What a delivered message waits for before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    /// The storage batch it wrote to, if any, to be durable.
    Batch(Option<u64>),
    /// The engine to release it ([`Links::release`]).
    Held,
}

impl Links {
    pub(crate) fn new(incarnation: u64, retransmit: Duration, give_up: Duration) -> Links {
        Links {
            incarnation,
            retransmit,
            give_up,
            links: BTreeMap::new(),
        }
    }

    /// Queues `message` for `to`; returns the frame to send now.
    pub(crate) fn send(&mut self, to: u16, message: PeerMessage, now: Instant) -> Frame {
        let link = self.links.entry(to).or_default();
        link.next_seq += 1;
        let seq = link.next_seq;
        if link.unacked.is_empty() {
            link.progress = now;
        }
        link.unacked.insert(seq, (message.clone(), now));
        Frame::Data {
            incarnation: self.incarnation,
            base: link.unacked.keys().next().copied().unwrap_or(seq),
            seq,
            message,
        }
    }

    /// The incarnation of `node` last heard on its link, if any.
    pub(crate) fn peer_incarnation(&self, node: u16) -> Option<u64> {
        self.links.get(&node)?.theirs.map(|(inc, _)| inc)
    }

    /// Takes a data frame from `from`: the messages now deliverable in order, with their sequence
    /// numbers (report each to [`Links::processed`] once handled), and the acknowledgement to send
    /// back (of what is done so far).
    pub(crate) fn receive(
        &mut self,
        from: u16,
        incarnation: u64,
        base: u64,
        seq: u64,
        message: PeerMessage,
    ) -> (Vec<(u64, PeerMessage)>, Frame) {
        let link = self.links.entry(from).or_default();
        let delivered = match link.theirs {
            // The sender gave up on what lies below `base`: it never comes.
            Some((inc, delivered)) if inc == incarnation => delivered.max(base.saturating_sub(1)),
            _ => {
                link.early.clear();
                link.unconfirmed.clear();
                link.confirmed = base.saturating_sub(1);
                base.saturating_sub(1)
            }
        };
        link.early.retain(|s, _| *s > delivered);
        link.confirmed = link.confirmed.max(base.saturating_sub(1));
        let confirmed = link.confirmed;
        link.unconfirmed.retain(|(s, _)| *s > confirmed);
        let mut upto = delivered;
        let mut out = Vec::new();
        if seq > delivered {
            link.early.insert(seq, message);
            while let Some(next) = link.early.remove(&(upto + 1)) {
                upto += 1;
                out.push((upto, next));
            }
        }
        link.theirs = Some((incarnation, upto));
        let ack = Frame::Ack {
            incarnation,
            upto: link.confirmed,
        };
        (out, ack)
    }

    /// Message `seq` from `from` was handled; `batch` is the storage batch it wrote to, if any.
    pub(crate) fn processed(&mut self, from: u16, seq: u64, batch: Option<u64>) {
        if let Some(link) = self.links.get_mut(&from) {
            if seq > link.confirmed {
                link.unconfirmed.push_back((seq, Done::Batch(batch)));
            }
        }
    }

    /// Message `seq` from `from` was handled, but is not done with: it is not acknowledged, nor is
    /// anything after it, until [`Links::release`]. A receiver that crashes meanwhile gets it
    /// again after its restart.
    pub(crate) fn hold(&mut self, from: u16, seq: u64) {
        if let Some(link) = self.links.get_mut(&from) {
            if seq > link.confirmed {
                link.unconfirmed.push_back((seq, Done::Held));
            }
        }
    }

    /// The held message `seq` from `from` is done with; `batch` is the storage batch it wrote to,
    /// if any. Nothing happens if the link started over meanwhile (the sender restarted or gave
    /// up on the message).
    pub(crate) fn release(&mut self, from: u16, seq: u64, batch: Option<u64>) {
        let Some(link) = self.links.get_mut(&from) else {
            return;
        };
        if let Some((_, done)) = link
            .unconfirmed
            .iter_mut()
            .find(|(s, done)| *s == seq && *done == Done::Held)
        {
            *done = Done::Batch(batch);
        }
    }

    /// Acknowledges, to each sender, what is now done durably (`durable` says whether a storage
    /// batch is).
    pub(crate) fn confirm(&mut self, durable: impl Fn(u64) -> bool) -> Vec<(u16, Frame)> {
        let mut acks = Vec::new();
        for (&from, link) in &mut self.links {
            let Some((incarnation, _)) = link.theirs else {
                continue;
            };
            let before = link.confirmed;
            while let Some(&(seq, Done::Batch(batch))) = link.unconfirmed.front() {
                if !batch.is_none_or(&durable) {
                    break;
                }
                link.confirmed = link.confirmed.max(seq);
                link.unconfirmed.pop_front();
            }
            if link.confirmed > before {
                let upto = link.confirmed;
                acks.push((from, Frame::Ack { incarnation, upto }));
            }
        }
        acks
    }

    /// Takes an acknowledgement from `from`: the messages it confirms.
    pub(crate) fn acked(
        &mut self,
        from: u16,
        incarnation: u64,
        upto: u64,
        now: Instant,
    ) -> Vec<PeerMessage> {
        let link = self.links.entry(from).or_default();
        if incarnation != self.incarnation {
            return Vec::new();
        }
        let kept = link.unacked.split_off(&(upto + 1));
        let done = std::mem::replace(&mut link.unacked, kept);
        if !done.is_empty() {
            link.progress = now;
        }
        done.into_values().map(|(m, _)| m).collect()
    }

    /// What to resend at `now`, and the messages dropped for peers given up on.
    pub(crate) fn poll(&mut self, now: Instant) -> (ForPeers<Frame>, ForPeers<PeerMessage>) {
        let mut resend = Vec::new();
        let mut dropped = Vec::new();
        for (&to, link) in &mut self.links {
            if link.unacked.is_empty() {
                continue;
            }
            if now.saturating_duration_since(link.progress) >= self.give_up {
                dropped.extend(
                    std::mem::take(&mut link.unacked)
                        .into_values()
                        .map(|(m, _)| (to, m)),
                );
                continue;
            }
            let base = link.unacked.keys().next().copied().unwrap_or(0);
            for (&seq, (message, sent)) in link.unacked.iter_mut() {
                if resend.len() >= RESEND_BATCH {
                    break;
                }
                if now.saturating_duration_since(*sent) >= self.retransmit {
                    *sent = now;
                    resend.push((
                        to,
                        Frame::Data {
                            incarnation: self.incarnation,
                            base,
                            seq,
                            message: message.clone(),
                        },
                    ));
                }
            }
        }
        (resend, dropped)
    }

    /// Takes what waits for `to` (a node declared down): it goes elsewhere now. The next message to
    /// `to` carries a base past it, so `to` does not wait for it.
    pub(crate) fn take(&mut self, to: u16) -> Vec<PeerMessage> {
        self.links
            .get_mut(&to)
            .map(|link| {
                std::mem::take(&mut link.unacked)
                    .into_values()
                    .map(|(m, _)| m)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether anything waits for an acknowledgement.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> bool {
        self.links.values().any(|l| !l.unacked.is_empty())
    }

    /// How many messages wait for an acknowledgement, over all peers.
    pub(crate) fn unacked(&self) -> usize {
        self.links.values().map(|l| l.unacked.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> PeerMessage {
        PeerMessage::Stored { seq }
    }

    fn data(frame: Frame) -> (u64, u64, u64, PeerMessage) {
        match frame {
            Frame::Data {
                incarnation,
                base,
                seq,
                message,
            } => (incarnation, base, seq, message),
            other => panic!("not data: {other:?}"),
        }
    }

    #[test]
    fn reordered_and_duplicated_frames_deliver_once_in_order() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(5));
        let frames: Vec<_> = (1..=3).map(|i| data(a.send(2, msg(i), t))).collect();
        let mut got = Vec::new();
        for i in [2, 0, 0, 1, 2] {
            let (inc, base, seq, m) = frames[i].clone();
            let (out, _) = b.receive(1, inc, base, seq, m);
            got.extend(out.into_iter().map(|(_, m)| m));
        }
        assert_eq!(got, vec![msg(1), msg(2), msg(3)]);
    }

    #[test]
    fn lost_frames_are_resent_until_acknowledged() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let _lost = a.send(2, msg(1), t);
        assert!(a.poll(t).0.is_empty(), "not before the interval");
        let later = t + Duration::from_millis(100);
        let (resend, dropped) = a.poll(later);
        assert_eq!(resend.len(), 1);
        assert!(dropped.is_empty());
        assert_eq!(a.acked(2, 11, 1, later), vec![msg(1)]);
        assert!(!a.pending());
    }

    #[test]
    fn a_restarted_receiver_starts_at_the_senders_oldest_unacknowledged() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(5));
        for i in 1..=2 {
            let (inc, base, seq, m) = data(a.send(2, msg(i), t));
            b.receive(1, inc, base, seq, m);
            b.processed(1, seq, None);
        }
        for (_, ack) in b.confirm(|_| true) {
            let Frame::Ack { incarnation, upto } = ack else {
                panic!("not an ack: {ack:?}");
            };
            assert_eq!(a.acked(2, incarnation, upto, t), vec![msg(1), msg(2)]);
        }
        let f3 = data(a.send(2, msg(3), t));
        // b restarts and lost everything.
        let mut b = Links::new(23, Duration::from_millis(100), Duration::from_secs(5));
        let (out, ack) = b.receive(1, f3.0, f3.1, f3.2, f3.3);
        assert_eq!(out, vec![(3, msg(3))]);
        assert_eq!(
            ack,
            Frame::Ack {
                incarnation: 11,
                upto: 2
            }
        );
        b.processed(1, 3, None);
        assert_eq!(
            b.confirm(|_| true),
            vec![(
                1,
                Frame::Ack {
                    incarnation: 11,
                    upto: 3
                }
            )]
        );
    }

    #[test]
    fn a_message_is_acknowledged_once_what_it_wrote_is_durable_and_resent_to_a_crashed_receiver() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(5));
        let (inc, base, seq, m) = data(a.send(2, msg(1), t));
        let (out, ack) = b.receive(1, inc, base, seq, m);
        assert_eq!(out.len(), 1);
        b.processed(1, seq, Some(7));
        assert_eq!(
            ack,
            Frame::Ack {
                incarnation: 11,
                upto: 0
            }
        );
        assert!(
            b.confirm(|batch| batch < 7).is_empty(),
            "batch 7 not durable"
        );
        // b crashes before batch 7 is durable: a still holds the message and sends it again.
        let later = t + Duration::from_millis(100);
        let (resend, _) = a.poll(later);
        let (inc, base, seq, m) = data(resend.into_iter().next().expect("resent").1);
        let mut b = Links::new(23, Duration::from_millis(100), Duration::from_secs(5));
        let (out, _) = b.receive(1, inc, base, seq, m);
        assert_eq!(out, vec![(1, msg(1))]);
    }

    #[test]
    fn a_held_message_is_acknowledged_with_what_follows_it_once_released() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(5));
        let upto = |acks: Vec<(u16, Frame)>| match acks.as_slice() {
            [(1, Frame::Ack { upto, .. })] => Some(*upto),
            _ => None,
        };
        for i in 1..=3 {
            let (inc, base, seq, m) = data(a.send(2, msg(i), t));
            b.receive(1, inc, base, seq, m);
            match i {
                2 => b.hold(1, seq),
                _ => b.processed(1, seq, None),
            }
        }
        assert_eq!(upto(b.confirm(|_| true)), Some(1), "not past the held one");
        b.release(1, 2, Some(9));
        assert_eq!(
            upto(b.confirm(|batch| batch < 9)),
            None,
            "its batch not durable"
        );
        assert_eq!(upto(b.confirm(|_| true)), Some(3));
    }

    #[test]
    fn a_receiver_that_crashes_holding_a_message_gets_it_again() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(5));
        let (inc, base, seq, m) = data(a.send(2, msg(1), t));
        b.receive(1, inc, base, seq, m);
        b.hold(1, seq);
        assert!(b.confirm(|_| true).is_empty());
        let (resend, _) = a.poll(t + Duration::from_millis(100));
        let (inc, base, seq, m) = data(resend.into_iter().next().expect("resent").1);
        let mut b = Links::new(23, Duration::from_millis(100), Duration::from_secs(5));
        let (out, _) = b.receive(1, inc, base, seq, m);
        assert_eq!(out, vec![(1, msg(1))]);
    }

    #[test]
    fn a_receiver_skips_what_the_sender_gave_up_on() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Links::new(22, Duration::from_millis(100), Duration::from_secs(1));
        let (inc, base, seq, m) = data(a.send(2, msg(1), t));
        b.receive(1, inc, base, seq, m);
        b.processed(1, seq, None);
        for (_, ack) in b.confirm(|_| true) {
            if let Frame::Ack { incarnation, upto } = ack {
                a.acked(2, incarnation, upto, t);
            }
        }
        let _lost = a.send(2, msg(2), t);
        let (_, dropped) = a.poll(t + Duration::from_secs(1));
        assert_eq!(dropped, vec![(2, msg(2))]);
        // Message 2 never arrives; message 3 must not wait for it.
        let (inc, base, seq, m) = data(a.send(2, msg(3), t + Duration::from_secs(2)));
        let (out, _) = b.receive(1, inc, base, seq, m);
        assert_eq!(out, vec![(3, msg(3))]);
    }

    #[test]
    fn a_silent_peer_is_given_up_on() {
        let t = Instant::ZERO;
        let mut a = Links::new(11, Duration::from_millis(100), Duration::from_secs(1));
        a.send(2, msg(1), t);
        let (_, dropped) = a.poll(t + Duration::from_secs(1));
        assert_eq!(dropped, vec![(2, msg(1))]);
        assert!(!a.pending());
    }
}
