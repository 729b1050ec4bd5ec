//! Shared subscriptions in the engine: one member of each matching group gets a message, and a group's
//! messages move between members as they go offline and come back.
//!
//! What moves when a member goes offline: its queued messages of the group (any QoS) and its
//! unacknowledged QoS 1 deliveries (the client may have them already: at least once allows the
//! duplicate). Its QoS 2 deliveries in progress stay: the spec requires completing them with that client
//! when it reconnects [MQTT-4.8.2-4], and never sending them to another once its session ends
//! [MQTT-4.8.2-5]. They move to an online member; when the member's session ends, to any member. When a
//! member comes online it takes the group's messages queued on offline members.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::QoS;
use crate::io::StoreOp;
use crate::message::Message;
use crate::router::Pick;
use crate::session::{Outbound, SessionId};

use super::Engine;

impl Engine {
    /// Queues `message` for one member of every shared group its topic matches, never `exclude`.
    pub(super) fn route_shared(&mut self, message: &Arc<Message>, exclude: Option<SessionId>) {
        for group in self.router.shared.matching(message.topic.as_str()) {
            self.deliver_to_group(&group, message, exclude);
        }
    }

    /// Queues `message` for the member of `group` the strategy picks; false if there is none.
    pub(super) fn deliver_to_group(
        &mut self,
        group: &ByteString,
        message: &Arc<Message>,
        exclude: Option<SessionId>,
    ) -> bool {
        let pick = Pick {
            strategy: self.config.shared_strategy,
            topic: message.topic.as_str(),
            publisher: message.origin.as_deref(),
            exclude,
        };
        let sessions = &self.sessions;
        let online = |sid| sessions.get(&sid).is_some_and(|s| s.conn.is_some());
        let Some(choice) = self
            .router
            .shared
            .choose(group, &pick, online, &mut self.rng)
        else {
            return false;
        };
        self.take_stamp(choice.sid, false);
        let qos = message.qos.min(choice.sub.options.qos);
        let retain = message.retain && choice.sub.options.retain_as_published;
        let sub_ids = choice.sub.id.into_iter().collect();
        self.enqueue(
            choice.sid,
            message.clone(),
            qos,
            retain,
            sub_ids,
            Some(choice.group),
        );
        true
    }

    /// Whether `group` has a member other than `sid` that can take its messages now: an online one,
    /// or (`ending`: `sid`'s session ends, so anywhere is better than nowhere) any.
    fn group_can_take(&self, group: &str, sid: SessionId, ending: bool) -> bool {
        self.router.shared.members(group).into_iter().any(|m| {
            m != sid && (ending || self.sessions.get(&m).is_some_and(|s| s.conn.is_some()))
        })
    }

    /// Session `sid` went offline (`ending`: its session ends): hands its group messages to other
    /// members, as the module doc says.
    pub(super) fn hand_over_shared(&mut self, sid: SessionId, ending: bool) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let groups: BTreeSet<ByteString> = session
            .queue
            .iter()
            .chain(session.inflight.values().map(|f| &f.out))
            .filter_map(|out| out.shared.clone())
            .collect();
        let movable: BTreeSet<ByteString> = groups
            .into_iter()
            .filter(|g| self.group_can_take(g, sid, ending))
            .collect();
        if movable.is_empty() {
            return;
        }
        let moves = |out: &Outbound| out.shared.as_ref().is_some_and(|g| movable.contains(g));
        let moving = self.take_shared(sid, &moves, true);
        for out in moving {
            if let Some(group) = &out.shared {
                self.deliver_to_group(group, &out.message, Some(sid));
            }
        }
    }

    /// Session `sid` is online again: it takes the queued messages of its groups from offline members.
    pub(super) fn claim_shared(&mut self, sid: SessionId) {
        let Some(session) = self.sessions.get(&sid) else {
            return;
        };
        let groups: Vec<ByteString> = session
            .subscriptions
            .keys()
            .filter(|f| f.starts_with(crate::codec::SHARED_PREFIX))
            .cloned()
            .collect();
        for group in groups {
            let Some(sub) = self
                .sessions
                .get(&sid)
                .and_then(|s| s.subscriptions.get(&group))
                .cloned()
            else {
                continue;
            };
            for member in self.router.shared.members(&group) {
                let offline = self.sessions.get(&member).is_some_and(|s| s.conn.is_none());
                if member == sid || !offline {
                    continue;
                }
                let of_group = |out: &Outbound| out.shared.as_ref() == Some(&group);
                for out in self.take_shared(member, &of_group, false) {
                    let qos = out.message.qos.min(sub.options.qos);
                    let retain = out.message.retain && sub.options.retain_as_published;
                    let ids = sub.id.into_iter().collect();
                    self.enqueue(sid, out.message, qos, retain, ids, Some(group.clone()));
                }
            }
        }
    }

    /// Removes from session `sid` the queued messages `moves` selects and, with `inflight`, its
    /// unacknowledged QoS 1 deliveries it selects; deletes their stored copies.
    fn take_shared(
        &mut self,
        sid: SessionId,
        moves: &dyn Fn(&Outbound) -> bool,
        inflight: bool,
    ) -> Vec<Outbound> {
        let before = self.queue_size(sid);
        let taken = self.take_shared_queue(sid, moves, inflight);
        self.settle_queue(sid, before);
        taken
    }

    /// [`Engine::take_shared`] without the tenant's queue accounting.
    fn take_shared_queue(
        &mut self,
        sid: SessionId,
        moves: &dyn Fn(&Outbound) -> bool,
        inflight: bool,
    ) -> Vec<Outbound> {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(session.queue.len());
        while let Some(out) = session.pop() {
            if moves(&out) {
                taken.push(out);
            } else {
                kept.push_back(out);
            }
        }
        for out in kept {
            session.restore_queued(out);
        }
        if inflight {
            let pids: Vec<u16> = session
                .inflight
                .iter()
                .filter(|(_, f)| f.out.qos == QoS::AtLeastOnce && moves(&f.out))
                .map(|(pid, _)| *pid)
                .collect();
            for pid in pids {
                if let Some(f) = session.inflight.remove(&pid) {
                    taken.push(f.out);
                }
            }
        }
        taken.sort_by_key(|out| out.seq);
        for out in &mut taken {
            if std::mem::take(&mut out.stored) {
                self.persist.push(StoreOp::DeleteMessage {
                    client_id: session.client_id.clone(),
                    seq: out.seq,
                });
            }
        }
        taken
    }
}
