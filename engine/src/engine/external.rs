//! Messages published from outside MQTT (the HTTP publish API): checked like a client's PUBLISH —
//! the ACL for the principal, topic limits, maximum QoS, retain availability, payload format — then
//! routed like one, and answered once what they changed is durable, as a PUBACK would be.

use std::sync::Arc;

use crate::acl::Who;
use crate::codec::ReasonCode;
use crate::io::{Event, ExternalPublish, Principal, PublishOutcome};
use crate::message::Message;

use super::Engine;

/// An answer waiting for its storage batch.
#[derive(Debug)]
pub(super) struct Waiting {
    seq: u64,
    request: u64,
}

impl Engine {
    /// [`crate::Input::Publish`].
    pub(super) fn external_publish(
        &mut self,
        request: u64,
        principal: &Principal,
        publish: ExternalPublish,
    ) {
        if let Err((reason, why)) = self.external_rule_broken(principal, &publish) {
            if reason == ReasonCode::NotAuthorized {
                self.stats.publishes_denied += 1;
            }
            let outcome = PublishOutcome::Refused { reason, why };
            self.events.push_back(Event::Published { request, outcome });
            return;
        }
        let mark = self.persist.mark();
        self.stats.publishes_received += 1;
        self.stats.publishes_received_by_qos[super::deliver::qos_index(publish.qos)] += 1;
        let expires_at = Message::expiry_from(self.now, publish.properties.message_expiry_interval);
        self.accept_message(Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties.into(),
            origin: None,
            expires_at,
        }));
        match self.persist.gate_since(mark) {
            Some(seq) => self.external_waiting.push_back(Waiting { seq, request }),
            None => self.events.push_back(Event::Published {
                request,
                outcome: PublishOutcome::Accepted,
            }),
        }
    }

    /// The reason code and rule an outside publish breaks, if any.
    fn external_rule_broken(
        &self,
        principal: &Principal,
        p: &ExternalPublish,
    ) -> Result<(), (ReasonCode, String)> {
        let topic = p.topic.as_str();
        if p.properties.topic_alias.is_some() || !p.properties.subscription_identifiers.is_empty() {
            let rule = "a topic alias or subscription identifier has no meaning outside MQTT";
            return Err((ReasonCode::ProtocolError, rule.into()));
        }
        if let Some(broken) = self.message_rule_broken(
            topic,
            p.qos,
            p.retain,
            p.properties.payload_format_indicator,
            &p.payload,
        ) {
            return Err(broken);
        }
        let max = self.config.max_packet_size as usize;
        if p.payload.len() > max {
            let rule = format!("payload larger than the maximum packet size of {max} bytes");
            return Err((ReasonCode::PacketTooLarge, rule));
        }
        if let Some(acl) = &self.config.acl {
            let who = Who {
                client_id: "",
                username: principal.username.as_deref(),
                tenant: None,
                claims: &principal.claims,
            };
            if !acl.may_publish(&who, topic, p.qos, p.retain) {
                let rule = format!("the ACL does not let this user publish to {topic:?}");
                return Err((ReasonCode::NotAuthorized, rule));
            }
        }
        Ok(())
    }

    /// Answers outside publishes whose batch is now durable (called after every input).
    pub(super) fn answer_external(&mut self) {
        while let Some(front) = self.external_waiting.front() {
            if !self.persist.is_durable(front.seq) {
                return;
            }
            let request = front.request;
            self.external_waiting.pop_front();
            self.events.push_back(Event::Published {
                request,
                outcome: PublishOutcome::Accepted,
            });
        }
    }

    /// Batch `seq` failed: the outside publishes waiting on it are answered with the failure.
    pub(super) fn fail_external(&mut self, seq: u64) {
        let events = &mut self.events;
        self.external_waiting.retain(|w| {
            if w.seq != seq {
                return true;
            }
            events.push_back(Event::Published {
                request: w.request,
                outcome: PublishOutcome::StorageFailed,
            });
            false
        });
    }
}
