//! PUBLISH from clients: topic aliases, limits, QoS 1/2 acknowledgements and exactly-once reception.

use std::sync::Arc;

use crate::codec::{Ack, Delivery, Packet, PacketId, Publish, ReasonCode};
use crate::io::{ConnId, StoreOp};
use crate::message::Message;
use crate::session::SessionId;

use super::Engine;

impl Engine {
    pub(super) fn inbound_publish(&mut self, id: ConnId, sid: SessionId, p: Publish, mark: usize) {
        let Some(topic) = self.resolve_topic(id, &p) else {
            return;
        };
        if let Some(rule) = self.publish_rule_broken(id, sid, &p, topic.as_str()) {
            return self.violation(id, rule.0, rule.1);
        }
        if self.publish_denied(id, sid, &p, &topic, mark) {
            return;
        }
        let topic = match self.mount_of(sid) {
            None => topic,
            Some(mount) => match super::tenant::mount_topic(&mount, &topic) {
                Some(mounted) if self.topic_within_limits(mounted.as_str()) => mounted,
                _ => {
                    let rule = format!("topic under the mount point {mount:?} exceeds the limits");
                    return self.violation(id, ReasonCode::TopicNameInvalid, rule);
                }
            },
        };
        if let Some(state) = self
            .conns
            .get(&id)
            .and_then(|c| c.tenant)
            .and_then(|t| self.tenants.get_mut(t))
        {
            state.stats.publishes_received += 1;
            state.stats.bytes_received += p.payload.len() as u64;
        }
        self.stats.publishes_received += 1;
        self.stats.publishes_received_by_qos[super::deliver::qos_index(p.delivery.qos())] += 1;
        let origin = self.sessions.get(&sid).map(|s| s.client_id.clone());
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expires_at = Message::expiry_from(self.now, properties.message_expiry_interval);
        let message = Arc::new(Message {
            topic,
            payload: p.payload,
            qos: p.delivery.qos(),
            retain: p.retain,
            properties: properties.into(),
            origin,
            expires_at,
        });
        match p.delivery {
            Delivery::AtMostOnce => self.accept_message(message),
            Delivery::AtLeastOnce(pid) => {
                self.accept_message(message);
                self.send(id, &Packet::PubAck(Ack::new(pid)), mark);
                if let Some(held) = self.conns.get_mut(&id).and_then(|c| c.held.back_mut()) {
                    held.acks += 1;
                }
            }
            Delivery::ExactlyOnce(pid) => {
                let duplicate = self
                    .sessions
                    .get(&sid)
                    .is_some_and(|s| s.incoming.contains(&pid.get()));
                if !duplicate {
                    // Delivered now, once; a resent PUBLISH with this id only gets PUBREC again.
                    self.accept_message(message);
                    if let Some(s) = self.sessions.get_mut(&sid) {
                        s.incoming.insert(pid.get());
                        if s.is_persistent() {
                            self.persist.push(StoreOp::PutIncoming {
                                client_id: s.client_id.clone(),
                                packet_id: pid.get(),
                            });
                        }
                    }
                }
                self.send(id, &Packet::PubRec(Ack::new(pid)), mark);
            }
        }
    }

    /// The topic a PUBLISH is for, resolving and recording v5 topic aliases. `None` after a violation.
    fn resolve_topic(&mut self, id: ConnId, p: &Publish) -> Option<crate::codec::TopicName> {
        let Some(alias) = p.properties.topic_alias else {
            return Some(p.topic.clone());
        };
        let max = self.config.topic_alias_maximum;
        if alias.get() > max {
            let rule = format!("topic alias {alias} exceeds the maximum of {max}");
            self.violation(id, ReasonCode::TopicAliasInvalid, rule);
            return None;
        }
        let c = self.conns.get_mut(&id)?;
        if !p.topic.is_empty() {
            c.aliases.insert(alias.get(), p.topic.clone());
            return Some(p.topic.clone());
        }
        match c.aliases.get(&alias.get()) {
            Some(topic) => Some(topic.clone()),
            None => {
                let rule = format!("topic alias {alias} used before it was set");
                self.violation(id, ReasonCode::ProtocolError, rule);
                None
            }
        }
    }

    /// The limit or rule a client's PUBLISH breaks, with the reason code to disconnect with.
    fn publish_rule_broken(
        &self,
        id: ConnId,
        sid: SessionId,
        p: &Publish,
        topic: &str,
    ) -> Option<(ReasonCode, String)> {
        let qos = p.delivery.qos();
        if !p.properties.subscription_identifiers.is_empty() {
            let rule = "a client's PUBLISH must not carry a subscription identifier";
            return Some((ReasonCode::ProtocolError, rule.into()));
        }
        if let Some(broken) = self.message_rule_broken(
            topic,
            qos,
            p.retain,
            p.properties.payload_format_indicator,
            &p.payload,
        ) {
            return Some(broken);
        }
        if qos > crate::codec::QoS::AtMostOnce {
            let held = self.conns.get(&id).map_or(0, |c| c.held_acks());
            let incoming = self.sessions.get(&sid).map_or(0, |s| s.incoming.len());
            let is_resend = matches!(p.delivery, Delivery::ExactlyOnce(pid)
                if self.sessions.get(&sid).is_some_and(|s| s.incoming.contains(&pid.get())));
            if !is_resend && held + incoming >= usize::from(self.config.receive_maximum) {
                let rule = format!(
                    "more than {} unacknowledged QoS 1/2 publishes",
                    self.config.receive_maximum
                );
                return Some((ReasonCode::ReceiveMaximumExceeded, rule));
            }
        }
        None
    }

    /// The rule a message breaks whoever publishes it (a client or the HTTP API): topic limits,
    /// maximum QoS, retain availability, a payload that is not the UTF-8 its indicator says.
    pub(super) fn message_rule_broken(
        &self,
        topic: &str,
        qos: crate::codec::QoS,
        retain: bool,
        payload_format_indicator: Option<bool>,
        payload: &[u8],
    ) -> Option<(ReasonCode, String)> {
        if !self.topic_within_limits(topic) {
            let rule = format!(
                "topic exceeds the limits of {} bytes and {} levels",
                self.config.max_topic_length, self.config.max_topic_levels
            );
            return Some((ReasonCode::TopicNameInvalid, rule));
        }
        if qos > self.config.max_qos {
            let rule = format!(
                "QoS {} above the maximum QoS {}",
                qos.as_u8(),
                self.config.max_qos.as_u8()
            );
            return Some((ReasonCode::QoSNotSupported, rule));
        }
        if retain && !self.config.retain_available {
            return Some((
                ReasonCode::RetainNotSupported,
                "retain is not available".into(),
            ));
        }
        if payload_format_indicator == Some(true) && std::str::from_utf8(payload).is_err() {
            let rule = "payload format indicator says UTF-8 but the payload is not";
            return Some((ReasonCode::PayloadFormatInvalid, rule.into()));
        }
        None
    }

    /// A message accepted from a client or a will: update the retained store, then route it.
    pub(super) fn accept_message(&mut self, message: Arc<Message>) {
        if watches(&self.config.message_events, &message.topic) {
            self.events.push_back(crate::Event::MessagePublished {
                message: message.clone(),
            });
        }
        if message.retain && self.config.retain_available {
            if message.payload.is_empty() {
                self.clear_retained(&message.topic);
            } else {
                self.retained.insert(message.clone());
                self.persist.push(StoreOp::PutRetained {
                    message: message.clone(),
                });
            }
        }
        if self.has_peers() {
            self.route_everywhere(message);
        } else {
            self.route(message);
        }
    }

    /// PUBREL from the client: the QoS 2 exchange it started is complete.
    pub(super) fn inbound_released(&mut self, id: ConnId, sid: SessionId, ack: Ack, mark: usize) {
        let pid: PacketId = ack.packet_id;
        let mut reason = ReasonCode::Success;
        if let Some(s) = self.sessions.get_mut(&sid) {
            if s.incoming.remove(&pid.get()) {
                if s.is_persistent() {
                    self.persist.push(StoreOp::DeleteIncoming {
                        client_id: s.client_id.clone(),
                        packet_id: pid.get(),
                    });
                }
            } else if s.protocol.is_v5() {
                reason = ReasonCode::PacketIdentifierNotFound;
            }
        }
        let mut comp = Ack::new(pid);
        comp.reason = reason;
        self.send(id, &Packet::PubComp(comp), mark);
    }
}

/// Whether `topic`'s messages raise events ([`crate::Config::message_events`]).
pub(super) fn watches(
    filters: &[crate::codec::TopicFilter],
    topic: &crate::codec::TopicName,
) -> bool {
    filters.iter().any(|f| f.matches(topic.as_str()))
}
