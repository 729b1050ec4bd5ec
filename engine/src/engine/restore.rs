//! Starting from what a store loaded: persistent sessions come back offline, with their subscriptions,
//! queues, inflight flows and wills; retained messages come back; what expired while the broker was down
//! ends now.

use std::time::Duration;

use crate::io::{Event, OutboundState, StoreOp};
use crate::session::{Flow, Inflight, Outbound, PendingWill, Session, SessionId, Sub};
use crate::stored::{StoredSession, StoredState};
use crate::time::Instant;
use crate::timer::TimerKind;

use super::Engine;

impl Engine {
    /// Loads `state` (what the store held at start) into a fresh engine at `now`. Call it once, before
    /// any other input, and drain outputs after it as after [`Engine::handle`]: sessions that expired
    /// while the broker was down are deleted (their wills published), which emits a storage batch.
    ///
    /// Time: stored instants (when a session went offline, when a message expires) only mean something
    /// across a restart if the shell's [`Instant`] origin is fixed in wall-clock time (the shells use the
    /// Unix epoch). A stored instant later than `now` (the clock went back) counts as `now`.
    ///
    /// A session that was connected when the broker stopped counts as having lost its connection at
    /// `now`: its expiry and will delay run from the restart.
    pub fn restore(&mut self, now: Instant, state: StoredState) {
        debug_assert!(
            self.sessions.is_empty() && self.conns.is_empty(),
            "restore must come before any other input"
        );
        self.now = self.now.max(now);
        self.restore_cluster(&state.raft, state.relays, state.handed_over);
        // A cluster node's retained messages come from replaying the log: its own store may hold
        // one whose replication never committed.
        let retained = match self.cluster {
            Some(_) => Default::default(),
            None => state.retained,
        };
        for message in retained.into_values() {
            if !message.is_expired(self.now) {
                self.retained.insert(message);
            } else {
                self.persist.push(StoreOp::DeleteRetained {
                    topic: message.topic.clone(),
                });
            }
        }
        // Every session first, so the will of one that expired reaches subscribers restored after it.
        let mut expired = Vec::new();
        for (client_id, stored) in state.sessions {
            if let Some(sid) = self.restore_session(client_id, stored) {
                expired.push(sid);
            }
        }
        for sid in expired {
            if let Some(s) = self.sessions.get(&sid) {
                self.events.push_back(Event::SessionExpired {
                    client_id: s.client_id.clone(),
                });
            }
            // Publishes a will still pending, then deletes the session and its stored record.
            self.end_session(sid);
        }
        self.note_restored_sessions();
        // Wills whose delay passed while the broker was down go out now, not at the first unrelated input.
        self.fire_timers();
        self.finish();
    }

    /// Rebuilds one session; returns it if it expired while the broker was down.
    pub(super) fn restore_session(
        &mut self,
        client_id: bytestring::ByteString,
        stored: StoredSession,
    ) -> Option<SessionId> {
        let sid = self.next_session;
        self.next_session += 1;
        let mut session = Session::new(client_id.clone(), stored.protocol);
        let next_packet_id = stored.next_packet_id;
        session.expiry_interval = stored.expiry_interval;
        let offline_since = stored.offline_since.unwrap_or(self.now).min(self.now);
        session.offline_since = Some(offline_since);
        session.will = stored.will.map(|will| PendingWill {
            delay: will.properties.will_delay_interval.unwrap_or(0),
            will,
        });
        for (filter, sub) in stored.subscriptions {
            let sub = Sub {
                options: sub.options,
                id: sub.id,
            };
            self.router.insert(&filter, sid, sub.clone());
            session.subscriptions.insert(filter, sub);
        }
        if let Some(&last) = stored.messages.keys().next_back() {
            session.continue_after(last);
        }
        for (seq, m) in stored.messages {
            let out = Outbound {
                shared: None,
                seq,
                message: m.message,
                qos: m.qos,
                retain: m.retain,
                sub_ids: m.sub_ids,
                stored: true,
                stamp: m.stamp,
            };
            match m.state {
                OutboundState::Queued => session.restore_queued(out),
                OutboundState::Sent(pid) => {
                    session.inflight.insert(
                        pid,
                        Inflight {
                            out,
                            flow: Flow::Published,
                            held_by: None,
                        },
                    );
                }
                OutboundState::Released(pid) => {
                    session.inflight.insert(
                        pid,
                        Inflight {
                            out,
                            flow: Flow::Released,
                            held_by: None,
                        },
                    );
                }
            }
        }
        session.continue_packet_ids(next_packet_id, 0);
        session.incoming = stored.incoming;
        session.seen = stored.seen;
        if let Some(taken) = stored.window {
            self.restore_move_window(&mut session, *taken);
        }
        let expiry = session.expiry_interval;
        let will_delay = session.will.as_ref().map(|w| w.delay.min(expiry));
        self.sessions.insert(sid, session);
        self.by_client.insert(client_id.clone(), sid);

        if let Some(delay) = will_delay {
            let at = offline_since + Duration::from_secs(u64::from(delay));
            self.timers.set(TimerKind::WillDelay(sid), at);
        }
        if expiry != u32::MAX {
            let at = offline_since + Duration::from_secs(u64::from(expiry));
            if at <= self.now {
                return Some(sid);
            }
            self.timers.set(TimerKind::SessionExpiry(sid), at);
        }
        None
    }
}
