//! SUBSCRIBE and UNSUBSCRIBE: granted QoS, per-filter reason codes, retained messages on subscribe.

use std::sync::Arc;

use crate::codec::{
    Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use bytestring::ByteString;

use crate::io::{ConnId, StoreOp};
use crate::message::Message;
use crate::session::{SessionId, Sub};

use super::Engine;

impl Engine {
    pub(super) fn subscribe(&mut self, id: ConnId, sid: SessionId, s: Subscribe, mark: usize) {
        let Some(protocol) = self.sessions.get(&sid).map(|s| s.protocol) else {
            return;
        };
        let mut reasons = Vec::with_capacity(s.subscriptions.len());
        // Retained messages to send after SUBACK: (message, granted QoS, subscription id).
        let mut retained: Vec<(Arc<Message>, QoS, Sub)> = Vec::new();
        if s.subscriptions
            .iter()
            .any(|sub| sub.filter.shared().is_some() && sub.options.no_local)
        {
            return self.violation(
                id,
                ReasonCode::ProtocolError,
                "[MQTT-3.8.3-4] No Local set on a shared subscription".into(),
            );
        }
        if s.properties.subscription_identifier.is_some() && !self.config.subscription_identifiers {
            return self.violation(
                id,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                "a Subscription Identifier, which this server does not support (CONNACK said so)"
                    .into(),
            );
        }
        for subscription in s.subscriptions {
            let filter = subscription.filter;
            let shared = filter.shared().is_some();
            let reason = if shared && !self.config.shared_subscriptions {
                ReasonCode::SharedSubscriptionsNotSupported
            } else if filter.has_wildcards() && !self.config.wildcard_subscriptions {
                ReasonCode::WildcardSubscriptionsNotSupported
            } else if !self.topic_within_limits(filter.as_str()) {
                ReasonCode::TopicFilterInvalid
            } else {
                let verdict = self.subscribe_verdict(sid, &filter, subscription.options.qos);
                let mounted = match self.mount_of(sid) {
                    None => Some(filter.clone()),
                    Some(mount) => super::tenant::mount_filter(&mount, &filter)
                        .filter(|f| self.topic_within_limits(f.as_str())),
                };
                match verdict {
                    Ok(_) if mounted.is_none() => ReasonCode::TopicFilterInvalid,
                    Ok(granted) => {
                        let sub = Sub {
                            options: crate::codec::SubscriptionOptions {
                                qos: granted.min(self.config.max_qos),
                                ..subscription.options
                            },
                            id: s.properties.subscription_identifier,
                        };
                        let filter = mounted.unwrap_or(filter);
                        self.add_subscription(sid, &filter, sub, &mut retained)
                    }
                    Err(_) if !self.conns.contains_key(&id) => {
                        // The quota's policy disconnected the client.
                        return;
                    }
                    Err(reason) => super::guard::suback_failure(protocol, reason),
                }
            };
            reasons.push(reason);
        }
        let ack = SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reasons,
        };
        // Other engines learn of the filters this gained before the SUBACK leaves.
        if self.cluster.is_none() {
            self.announce_interest();
        }
        self.send(id, &Packet::SubAck(ack), mark);
        for (message, granted, sub) in retained {
            // Retained messages go out with RETAIN set, whatever Retain As Published says [MQTT-3.3.1-9].
            let qos = message.qos.min(granted);
            self.enqueue(sid, message, qos, true, sub.id.into_iter().collect(), None);
        }
    }

    pub(super) fn unsubscribe(&mut self, id: ConnId, sid: SessionId, u: Unsubscribe, mark: usize) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let mut reasons = Vec::with_capacity(u.filters.len());
        let v5 = session.protocol.is_v5();
        let mount = session.mount.clone();
        for filter in u.filters {
            let filter = match mount.as_deref() {
                Some(m) => super::tenant::mount_filter(m, &filter).unwrap_or(filter),
                None => filter,
            };
            let removed = self.remove_subscription(sid, filter.as_bytestring());
            reasons.push(if removed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        if !v5 {
            reasons.clear();
        }
        let ack = UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reasons,
        };
        self.send(id, &Packet::UnsubAck(ack), mark);
    }

    /// Adds (or replaces) a granted subscription, collecting the retained messages it gets; the
    /// SUBACK code for it.
    fn add_subscription(
        &mut self,
        sid: SessionId,
        filter: &crate::codec::TopicFilter,
        sub: Sub,
        retained: &mut Vec<(Arc<Message>, QoS, Sub)>,
    ) -> ReasonCode {
        let shared = filter.shared().is_some();
        let qos = sub.options.qos;
        let key = filter.as_bytestring().clone();
        let Some(session) = self.sessions.get_mut(&sid) else {
            return ReasonCode::UnspecifiedError;
        };
        let existed = session
            .subscriptions
            .insert(key.clone(), sub.clone())
            .is_some();
        let tenant = session.tenant;
        self.router.insert(filter.as_bytestring(), sid, sub.clone());
        if session.is_persistent() {
            self.persist.push(StoreOp::PutSubscription {
                client_id: session.client_id.clone(),
                filter: key,
                options: sub.options,
                id: sub.id,
            });
        }
        if !existed {
            self.count_subscriptions(tenant, 1);
        }
        // A shared subscription gets no retained messages (MQTT 5.0 §4.8.2).
        let send_retained = !shared
            && match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let now = self.now;
            self.retained.for_each_match(filter.as_str(), |m| {
                if !m.is_expired(now) {
                    retained.push((m.clone(), qos, sub.clone()));
                }
            });
        }
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }

    /// Removes a subscription of a session (router, session, storage); whether it existed.
    pub(super) fn remove_subscription(&mut self, sid: SessionId, filter: &ByteString) -> bool {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return false;
        };
        if session.subscriptions.remove(filter).is_none() {
            return false;
        }
        let tenant = session.tenant;
        self.router.remove(filter, sid);
        if session.is_persistent() {
            self.persist.push(StoreOp::DeleteSubscription {
                client_id: session.client_id.clone(),
                filter: filter.clone(),
            });
        }
        self.count_subscriptions(tenant, -1);
        true
    }

    /// Lowers the QoS of a subscription (an ACL reload granting less).
    pub(super) fn lower_subscription(&mut self, sid: SessionId, filter: &ByteString, qos: QoS) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(sub) = session.subscriptions.get_mut(filter) else {
            return;
        };
        sub.options.qos = qos;
        let sub = sub.clone();
        self.router.insert(filter, sid, sub.clone());
        if session.is_persistent() {
            self.persist.push(StoreOp::PutSubscription {
                client_id: session.client_id.clone(),
                filter: filter.clone(),
                options: sub.options,
                id: sub.id,
            });
        }
    }
}
