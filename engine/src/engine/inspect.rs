//! What operators may look at and change while the broker runs: sessions and their subscriptions,
//! retained messages, topic statistics, queue totals, and a new configuration's live parts.
//!
//! Everything here reads the engine's state as of the last input; nothing changes it except the
//! inputs handled at the bottom ([`crate::Input::DeleteSession`], [`crate::Input::DeleteRetained`],
//! [`crate::Input::Reconfigure`]), which go through [`Engine::handle`] like any other.

use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{ProtocolVersion, QoS, TopicName};
use crate::config::Config;
use crate::io::{ConnId, Event, StoreOp};
use crate::message::Message;
use crate::session::{Session, SessionId};
use crate::time::Instant;

use super::Engine;

/// One session as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client identifier.
    pub client_id: ByteString,
    /// The connection attached, while the client is connected.
    pub conn: Option<ConnId>,
    /// The protocol its client last spoke.
    pub protocol: ProtocolVersion,
    /// The connected client's address.
    pub peer: Option<String>,
    /// The listener the connected client came in on.
    pub listener: Option<String>,
    /// Who its client proved to be at its last CONNECT (`None`: anonymous, or not connected since a
    /// restart).
    pub username: Option<ByteString>,
    /// Its tenant's name, if it belongs to one.
    pub tenant: Option<String>,
    /// Seconds it outlives its connection (`u32::MAX`: forever).
    pub expiry_interval: u32,
    /// When its connection ended, while it has none.
    pub offline_since: Option<Instant>,
    /// How many subscriptions it has.
    pub subscriptions: usize,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Their payload bytes.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
}

/// One subscription of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The subscriber.
    pub client_id: ByteString,
    /// The topic filter as stored (a tenant's mount point included; `$share/...` for shared ones).
    pub filter: ByteString,
    /// The maximum QoS granted.
    pub qos: QoS,
    /// v5 No Local.
    pub no_local: bool,
    /// v5 Retain As Published.
    pub retain_as_published: bool,
    /// v5 Retain Handling (0, 1 or 2).
    pub retain_handling: u8,
    /// The v5 Subscription Identifier, if any.
    pub id: Option<u32>,
}

/// Who a topic reaches, and what it retains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// The topic.
    pub topic: TopicName,
    /// Sessions an ordinary subscription of which matches it.
    pub subscribers: usize,
    /// Shared subscription groups matching it (each delivers to one member).
    pub shared_groups: usize,
    /// Its retained message, if it has one.
    pub retained: Option<Arc<Message>>,
}

/// Sums over every session, for gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Clients connected (CONNACK sent).
    pub connected: usize,
    /// Messages queued in sessions, not yet sent.
    pub queued: usize,
    /// Their payload bytes.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
}

/// What [`crate::Input::Reconfigure`] did, reported as [`Event::Reconfigured`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Settings that changed and are now in force (as [`Config`] field names).
    pub applied: Vec<&'static str>,
    /// Settings that changed but cannot change while clients are connected (they were advertised
    /// to clients at CONNECT, or shape stored state): they take effect at the next start.
    pub needs_restart: Vec<&'static str>,
    /// Why the new configuration was refused as a whole (it failed validation); nothing changed.
    pub rejected: Option<String>,
}

impl Engine {
    /// Every session, in creation order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.values().map(|s| self.session_info_of(s))
    }

    /// The session of `client_id`, if there is one.
    pub fn session(&self, client_id: &str) -> Option<SessionInfo> {
        self.session_by_client(client_id)
            .map(|(_, s)| self.session_info_of(s))
    }

    /// The subscriptions of `client_id`'s session, in filter order; `None` without a session.
    pub fn subscriptions_of(&self, client_id: &str) -> Option<Vec<SubscriptionInfo>> {
        self.session_by_client(client_id)
            .map(|(_, s)| subscriptions(s).collect())
    }

    /// Every subscription of every session.
    pub fn subscriptions(&self) -> impl Iterator<Item = SubscriptionInfo> + '_ {
        self.sessions.values().flat_map(subscriptions)
    }

    /// Up to `limit` retained messages whose topics match `filter`, in topic order (leading
    /// wildcards do not match `$` topics).
    pub fn retained_matching(&self, filter: &str, limit: usize) -> Vec<Arc<Message>> {
        let mut found = Vec::new();
        self.retained.for_each_match(filter, |m| {
            if found.len() < limit {
                found.push(m.clone());
            }
        });
        found
    }

    /// The retained message of `topic`, if it has one.
    pub fn retained(&self, topic: &TopicName) -> Option<Arc<Message>> {
        self.retained_matching(topic.as_str(), 1).pop()
    }

    /// How many sessions and shared groups a message on `topic` would reach, and its retained
    /// message.
    pub fn topic_stats(&self, topic: &TopicName) -> TopicStats {
        let mut subscribers = 0;
        self.router
            .plain
            .for_each_match(topic.as_str(), |_, _| subscribers += 1);
        TopicStats {
            topic: topic.clone(),
            subscribers,
            shared_groups: self.router.shared.matching(topic.as_str()).len(),
            retained: self.retained(topic),
        }
    }

    /// Queue and inflight sums over every session.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            connected: self.sessions.values().filter(|s| s.conn.is_some()).count(),
            ..Totals::default()
        };
        for s in self.sessions.values() {
            totals.queued += s.queue.len();
            totals.queued_bytes += s.queued_bytes;
            totals.inflight += s.inflight.len();
        }
        totals
    }

    fn session_by_client(&self, client_id: &str) -> Option<(SessionId, &Session)> {
        let sid = *self.by_client.get(&ByteString::from(client_id))?;
        self.sessions.get(&sid).map(|s| (sid, s))
    }

    fn session_info_of(&self, s: &Session) -> SessionInfo {
        let conn = s.conn.and_then(|id| self.conns.get(&id));
        SessionInfo {
            client_id: s.client_id.clone(),
            conn: s.conn,
            protocol: s.protocol,
            peer: conn.map(|c| c.meta.peer.clone()),
            listener: conn.map(|c| c.meta.listener.clone()),
            username: s.principal.as_ref().and_then(|p| p.username.clone()),
            tenant: self.tenant_name(s.tenant).map(str::to_string),
            expiry_interval: s.expiry_interval,
            offline_since: s.offline_since,
            subscriptions: s.subscriptions.len(),
            queued: s.queue.len(),
            queued_bytes: s.queued_bytes,
            inflight: s.inflight.len(),
        }
    }

    /// [`crate::Input::DeleteSession`]: the client (if connected) is disconnected with 0x98 and the
    /// session is removed with everything in it, from storage too. A pending will is published, as
    /// for any session that ends.
    pub(super) fn delete_session(&mut self, client_id: &str) {
        let Some((sid, session)) = self.session_by_client(client_id) else {
            return;
        };
        if let Some(conn) = session.conn {
            let why = "session deleted by an administrator".to_string();
            self.kick(conn, crate::codec::ReasonCode::AdministrativeAction, why);
        }
        // Kicking ends a session that expires with its connection; any other ends here.
        if self.sessions.contains_key(&sid) {
            self.end_session(sid);
        }
    }

    /// Clears the retained message of `topic`, in memory and in storage.
    pub(super) fn clear_retained(&mut self, topic: &TopicName) {
        self.retained.remove(topic.as_str());
        // Written even when nothing was retained in memory: an earlier delete that emptied the topic
        // may still be in a batch not yet durable, and this delete's acknowledgement must not
        // overtake it (after a crash the old message would come back).
        self.persist.push(StoreOp::DeleteRetained {
            topic: topic.clone(),
        });
    }

    /// [`crate::Input::Reconfigure`]: takes the settings of `new` that can change live, keeps the
    /// others, and reports both as [`Event::Reconfigured`].
    ///
    /// Live settings apply from the next packet or connection on: limits a connected client was
    /// told in its CONNACK (Receive Maximum, Maximum QoS, Topic Alias Maximum, retain, wildcard,
    /// shared-subscription and identifier support) would turn its next packet into a protocol error,
    /// so they wait for a restart, as do storage, authentication and tenants. Rate limits apply to
    /// connections made after the change.
    pub(super) fn reconfigure(&mut self, new: Config) {
        let mut report = Reconfigured::default();
        if let Err(e) = new.validate() {
            report.rejected = Some(e.to_string());
            self.events.push_back(Event::Reconfigured(report));
            return;
        }
        let old = &mut self.config;
        macro_rules! live {
            ($($field:ident),* $(,)?) => {$(
                if old.$field != new.$field {
                    old.$field = new.$field.clone();
                    report.applied.push(stringify!($field));
                }
            )*};
        }
        macro_rules! at_restart {
            ($($field:ident),* $(,)?) => {$(
                if old.$field != new.$field {
                    report.needs_restart.push(stringify!($field));
                }
            )*};
        }
        live!(
            max_packet_size,
            max_inflight,
            max_queued_messages,
            max_queued_bytes,
            queue_qos0_offline,
            max_topic_length,
            max_topic_levels,
            max_outbound_topic_aliases,
            max_session_expiry,
            max_keep_alive,
            connect_timeout,
            send_window,
            max_client_id_length,
            assigned_client_id_prefix,
            shared_strategy,
            response_information_prefix,
            redirect,
        );
        at_restart!(
            receive_maximum,
            max_qos,
            retain_available,
            topic_alias_maximum,
            durable,
            authentication,
            shared_subscriptions,
            sys_interval,
            wildcard_subscriptions,
            subscription_identifiers,
            auth_methods,
            tenants,
            shard,
            cluster,
            message_events,
        );
        if old.quotas != new.quotas {
            if old.quotas.connect_rate_per_address != new.quotas.connect_rate_per_address {
                self.connect_rates = new.quotas.connect_rate_per_address.map(|rate| {
                    crate::limits::RateTable::new(
                        rate.per_sec,
                        rate.burst,
                        super::guard::CONNECT_RATE_ADDRESSES,
                    )
                });
            }
            self.config.quotas = new.quotas;
            report.applied.push("quotas");
        }
        if self.config.acl != new.acl {
            report.applied.push("acl");
            self.set_acl(new.acl);
        }
        self.events.push_back(Event::Reconfigured(report));
    }
}

fn subscriptions(s: &Session) -> impl Iterator<Item = SubscriptionInfo> + '_ {
    s.subscriptions
        .iter()
        .map(|(filter, sub)| SubscriptionInfo {
            client_id: s.client_id.clone(),
            filter: filter.clone(),
            qos: sub.options.qos,
            no_local: sub.options.no_local,
            retain_as_published: sub.options.retain_as_published,
            retain_handling: sub.options.retain_handling as u8,
            id: sub.id.map(|id| id.get()),
        })
}
