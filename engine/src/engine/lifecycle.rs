//! How connections and sessions end: DISCONNECT, lost connections, timeouts, wills and session expiry.

use std::time::Duration;

use crate::codec::{Disconnect, ReasonCode};
use crate::io::{CloseReason, ConnId, Event, StoreOp};
use crate::session::SessionId;
use crate::timer::TimerKind;

use super::conn::Phase;
use super::Engine;

impl Engine {
    /// Closes connection `id`: flushes what it may still send, tells the shell, detaches its session.
    /// `will` says whether the session's will message is due (every end but a normal DISCONNECT).
    pub(super) fn close(&mut self, id: ConnId, reason: CloseReason, will: bool) {
        self.close_inner(id, reason, will, true);
    }

    fn close_inner(&mut self, id: ConnId, reason: CloseReason, will: bool, tell_shell: bool) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        self.timers.cancel(TimerKind::ConnectTimeout(id));
        self.timers.cancel(TimerKind::KeepAlive(id));
        self.timers.cancel(TimerKind::Throttle(id));
        self.holding.remove(&id);
        if let Some(t) = c.tenant.and_then(|t| self.tenants.get_mut(t)) {
            t.stats.connections = t.stats.connections.saturating_sub(1);
        }
        if !c.out.is_empty() && tell_shell {
            // Bytes already released (a CONNACK refusal, a DISCONNECT) go out before the close.
            let data = c.out.split().freeze();
            self.stats.bytes_sent += data.len() as u64;
            self.transmits.push_back(super::Transmit { conn: id, data });
        }
        if tell_shell {
            self.events.push_back(Event::Close {
                conn: id,
                reason: reason.clone(),
            });
        }
        self.events.push_back(Event::ClientDisconnected {
            conn: id,
            client_id: c.client_id.clone(),
            reason,
        });
        if let Phase::Connected(sid) = c.phase {
            self.session_offline(sid, id, will);
        }
    }

    /// The transport ended on its own (or after our close; then this is a no-op).
    pub(super) fn connection_lost(&mut self, id: ConnId) {
        self.close_inner(id, CloseReason::ConnectionLost, true, false);
    }

    /// The client sent DISCONNECT.
    pub(super) fn client_disconnect(&mut self, id: ConnId, sid: SessionId, d: Disconnect) {
        if let Some(new_expiry) = d.properties.session_expiry_interval {
            let Some(session) = self.sessions.get_mut(&sid) else {
                return;
            };
            if session.expiry_interval == 0 && new_expiry != 0 {
                // [MQTT-3.14.2-2]: a session that was to end with the connection cannot be revived.
                return self.violation(
                    id,
                    ReasonCode::ProtocolError,
                    "DISCONNECT sets a session expiry after CONNECT set none".into(),
                );
            }
            let was_persistent = session.is_persistent();
            session.expiry_interval = new_expiry.min(self.config.max_session_expiry);
            // From a persistent session to 0: the session ends with this connection, and its record
            // must go from the store too (end_session only deletes what is still persistent).
            self.record_session(sid, was_persistent);
        }
        // Only 0x04 asks for the will; every other reason is a normal disconnection [MQTT-3.14.4-3].
        let will = d.reason == ReasonCode::DisconnectWithWill;
        self.close(
            id,
            CloseReason::ClientDisconnected { reason: d.reason },
            will,
        );
    }

    /// Session `sid` lost its connection `conn`.
    fn session_offline(&mut self, sid: SessionId, conn: ConnId, will: bool) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.conn != Some(conn) {
            return;
        }
        session.conn = None;
        session.offline_since = Some(self.now);
        let expiry = session.expiry_interval;
        let pending = if will { session.will.take() } else { None };
        session.will = pending.clone();
        if expiry == 0 {
            // The session ends now; end_session publishes the will.
            return self.end_session(sid);
        }
        self.hand_over_shared(sid, false);
        if let Some(pending) = pending {
            let delay = pending.delay.min(expiry);
            if delay == 0 {
                self.publish_will(sid);
            } else {
                let at = self.now + Duration::from_secs(u64::from(delay));
                self.timers.set(TimerKind::WillDelay(sid), at);
            }
        }
        if expiry != u32::MAX {
            let at = self.now + Duration::from_secs(u64::from(expiry));
            self.timers.set(TimerKind::SessionExpiry(sid), at);
        }
        // Record when it went offline (its expiry runs from then, across a restart) and its will.
        self.record_session(sid, false);
    }

    /// [`crate::Input::Shutdown`]: every connection is closed (v5: 0x8B, or the redirect's reason
    /// and Server Reference). Persistent sessions are stored as they are, their wills included: the
    /// clients did nothing wrong, so no will is published now, and one whose client does not come
    /// back is published after the restart once its delay is over, as if the connection had just
    /// dropped.
    pub(super) fn shutdown(&mut self) {
        let reason = self
            .config
            .redirect
            .as_ref()
            .map_or(ReasonCode::ServerShuttingDown, |r| r.reason());
        let wills: Vec<(SessionId, super::super::session::PendingWill)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some() && s.is_persistent())
            .filter_map(|(sid, s)| Some((*sid, s.will.clone()?)))
            .collect();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in conns {
            self.disconnect_with(id, reason, None, CloseReason::ServerShutdown, false);
        }
        for (sid, will) in wills {
            if let Some(session) = self.sessions.get_mut(&sid) {
                session.will = Some(will);
                self.record_session(sid, false);
            }
        }
    }

    /// Publishes the session's pending will, if it has one.
    fn publish_will(&mut self, sid: SessionId) {
        self.timers.cancel(TimerKind::WillDelay(sid));
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(pending) = session.will.take() else {
            return;
        };
        let client_id = session.client_id.clone();
        // Its store record still holds the will until this input's batch is durable.
        let stored = session.is_persistent() && self.persist.enabled();
        self.publish_will_message(&client_id, pending.will, stored);
    }

    /// Brings the store's record of session `sid` up to date after its expiry interval, connection or
    /// will changed: a
    /// persistent session is (re)written; one that was persistent and no longer is gets deleted, with
    /// everything stored under it, and its messages are marked as no longer stored.
    pub(super) fn record_session(&mut self, sid: SessionId, was_persistent: bool) {
        if !self.persist.enabled() {
            return;
        }
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.is_persistent() {
            self.persist.push(StoreOp::PutSession {
                client_id: session.client_id.clone(),
                protocol: session.protocol,
                expiry_interval: session.expiry_interval,
                offline_since: session.offline_since,
                will: session.will.as_ref().map(|w| w.will.clone()),
            });
        } else if was_persistent {
            self.persist.push(StoreOp::DeleteSession {
                client_id: session.client_id.clone(),
            });
            session.forget_stored();
        }
    }

    /// Removes a session and everything in it; a will still pending is published first.
    pub(super) fn end_session(&mut self, sid: SessionId) {
        self.end_session_keeping(sid, false);
    }

    /// [`Engine::end_session`], leaving the session's stored records in place if `keep_records`
    /// (a cluster node deletes them once the handover carrying the session arrived).
    pub(super) fn end_session_keeping(&mut self, sid: SessionId, keep_records: bool) {
        self.publish_will(sid);
        self.hand_over_shared(sid, true);
        self.timers.cancel(TimerKind::SessionExpiry(sid));
        let tenant = self.sessions.get(&sid).and_then(|s| s.tenant);
        self.move_tenant(sid, tenant, None);
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        if self.by_client.get(&session.client_id) == Some(&sid) {
            self.by_client.remove(&session.client_id);
        }
        for filter in session.subscriptions.keys() {
            self.router.remove(filter, sid);
        }
        if session.is_persistent() && !keep_records {
            self.persist.push(StoreOp::DeleteSession {
                client_id: session.client_id.clone(),
            });
        }
        self.release_client(&session.client_id);
    }

    /// Runs every timer that is due.
    pub(super) fn fire_timers(&mut self) {
        while let Some(kind) = self.timers.pop_due(self.now) {
            match kind {
                TimerKind::ConnectTimeout(id) => self.close(id, CloseReason::ConnectTimeout, false),
                TimerKind::KeepAlive(id) => self.disconnect_with(
                    id,
                    ReasonCode::KeepAliveTimeout,
                    None,
                    CloseReason::KeepAliveTimeout,
                    true,
                ),
                TimerKind::WillDelay(sid) => {
                    self.publish_will(sid);
                    self.record_session(sid, false);
                }
                TimerKind::SessionExpiry(sid) => {
                    if let Some(s) = self.sessions.get(&sid) {
                        self.events.push_back(Event::SessionExpired {
                            client_id: s.client_id.clone(),
                        });
                    }
                    self.end_session(sid);
                }
                TimerKind::Sys => self.publish_sys(),
                TimerKind::ClusterTick => self.cluster_tick(),
                TimerKind::Throttle(id) => self.unthrottle(id),
            }
        }
    }
}
