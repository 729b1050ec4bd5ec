//! `$SYS/broker/...`: the broker's counters as retained messages, updated every
//! [`crate::Config::sys_interval`].
//!
//! Only values that changed since the last update are published (uptime changes every time), as
//! Mosquitto does, so a subscriber to `$SYS/#` is not flooded with repeats. They are retained in memory
//! but never written to storage: they describe this run, and the next update rebuilds them after a
//! restart. Leading wildcards do not match `$SYS` topics [MQTT-4.7.2-1]: subscribe to `$SYS/#`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{QoS, TopicName};
use crate::message::Message;
use crate::time::Instant;
use crate::timer::TimerKind;

use super::conn::Phase;
use super::Engine;

/// What the `$SYS` publisher remembers between updates.
#[derive(Debug, Default)]
pub(super) struct SysState {
    /// When the engine first saw time (its start, for uptime).
    started: Option<Instant>,
    /// The last value published per topic.
    last: BTreeMap<&'static str, String>,
}

impl Engine {
    /// On the first input: notes the start time and schedules the first update.
    pub(super) fn start_sys(&mut self) {
        if self.sys.started.is_some() {
            return;
        }
        self.sys.started = Some(self.now);
        if let Some(interval) = self.config.sys_interval {
            self.timers.set(TimerKind::Sys, self.now + interval);
        }
    }

    /// Publishes the `$SYS` values that changed and schedules the next update.
    pub(super) fn publish_sys(&mut self) {
        let Some(interval) = self.config.sys_interval else {
            return;
        };
        self.timers.set(TimerKind::Sys, self.now + interval);
        for (topic, value) in self.sys_values() {
            if self.sys.last.get(topic) == Some(&value) {
                continue;
            }
            let Ok(name) = TopicName::new(format!("$SYS/broker/{topic}")) else {
                continue;
            };
            let message = Arc::new(Message {
                topic: name,
                payload: Bytes::from(value.clone().into_bytes()),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                origin: None,
                expires_at: None,
            });
            self.sys.last.insert(topic, value);
            if self.config.retain_available {
                self.retained.insert(message.clone());
            }
            self.route(message);
        }
    }

    /// Every `$SYS/broker/` topic (relative) and its current value.
    fn sys_values(&self) -> Vec<(&'static str, String)> {
        let uptime = self
            .sys
            .started
            .map_or(0, |s| self.now.saturating_duration_since(s).as_secs());
        let connected = self
            .conns
            .values()
            .filter(|c| matches!(c.phase, Phase::Connected(_)))
            .count();
        let sessions = self.sessions.len();
        let own = if self.config.retain_available {
            self.sys.last.len()
        } else {
            0
        };
        let retained = self.retained.len().saturating_sub(own);
        let s = &self.stats;
        vec![
            ("version", format!("cicada {}", env!("CARGO_PKG_VERSION"))),
            ("uptime", format!("{uptime} seconds")),
            ("clients/connected", connected.to_string()),
            (
                "clients/disconnected",
                (sessions - connected.min(sessions)).to_string(),
            ),
            ("clients/total", sessions.to_string()),
            ("connections/accepted", s.connections_accepted.to_string()),
            ("messages/received", s.publishes_received.to_string()),
            ("messages/sent", s.publishes_sent.to_string()),
            ("messages/dropped", s.messages_dropped.to_string()),
            ("bytes/received", s.bytes_received.to_string()),
            ("bytes/sent", s.bytes_sent.to_string()),
            ("subscriptions/count", self.router.len().to_string()),
            // Clients' retained messages, not these.
            ("retained messages/count", retained.to_string()),
        ]
    }
}
