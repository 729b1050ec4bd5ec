//! The engine task's side of the HTTP publish API: each message becomes an `Input::Publish`, and the
//! caller is answered once the engine has answered every message of its request.

use std::collections::BTreeMap;

use bytes::Bytes;
use cicada_engine::{ConnId, ExternalPublish, Input, Principal, PublishOutcome};
use tokio::sync::oneshot;
use tracing::info;

use super::EngineTask;
use crate::http::Reply;

/// HTTP publish requests waiting for the engine's answers.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The number the next message gets; a request's messages get consecutive numbers.
    next: u64,
    /// By the number of a request's first message.
    calls: BTreeMap<u64, Call>,
}

#[derive(Debug)]
struct Call {
    outcomes: Vec<Option<PublishOutcome>>,
    left: usize,
    /// For the log: who published, and each message's topic.
    user: Option<String>,
    topics: Vec<String>,
    reply: oneshot::Sender<Reply>,
}

impl Pending {
    /// Records an engine answer; returns the caller's reply once its request is complete.
    fn answered(
        &mut self,
        request: u64,
        outcome: PublishOutcome,
    ) -> Option<(oneshot::Sender<Reply>, Vec<PublishOutcome>)> {
        let (&first, call) = self.calls.range_mut(..=request).next_back()?;
        let index = usize::try_from(request - first).ok()?;
        if let PublishOutcome::Refused { reason, why } = &outcome {
            info!(
                user = call.user.as_deref().unwrap_or("(anonymous)"),
                topic = call.topics.get(index).map_or("", String::as_str),
                %reason,
                "HTTP publish refused: {why}"
            );
        }
        let slot = call.outcomes.get_mut(index)?;
        if slot.replace(outcome).is_none() {
            call.left -= 1;
        }
        if call.left > 0 {
            return None;
        }
        let call = self.calls.remove(&first)?;
        let outcomes = call.outcomes.into_iter().flatten().collect();
        Some((call.reply, outcomes))
    }
}

impl EngineTask {
    /// Hands a request's messages to the engine; the reply goes out from [`EngineTask::published`].
    pub(super) fn publish(
        &mut self,
        principal: Principal,
        messages: Vec<ExternalPublish>,
        reply: oneshot::Sender<Reply>,
        batch: &mut BTreeMap<ConnId, Vec<Bytes>>,
    ) {
        if messages.is_empty() {
            let _ = reply.send(Reply::Published(Vec::new()));
            return;
        }
        let first = self.publishing.next;
        self.publishing.next += messages.len() as u64;
        self.publishing.calls.insert(
            first,
            Call {
                outcomes: vec![None; messages.len()],
                left: messages.len(),
                user: principal.username.as_deref().map(str::to_string),
                topics: messages.iter().map(|m| m.topic.to_string()).collect(),
                reply,
            },
        );
        for (request, publish) in (first..).zip(messages) {
            let now = self.now();
            self.engine.handle(
                now,
                Input::Publish {
                    request,
                    principal: principal.clone(),
                    publish,
                },
            );
            self.drain(batch);
        }
    }

    /// The engine answered message `request`.
    pub(super) fn published(&mut self, request: u64, outcome: PublishOutcome) {
        if let Some((reply, outcomes)) = self.publishing.answered(request, outcome) {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(Reply::Published(outcomes));
        }
    }
}
