//! Tenants: which tenant a client belongs to, its mount point on topics going in and out, and the
//! limits and counters its clients share.

use std::sync::Arc;

use bytestring::ByteString;

use crate::codec::{TopicFilter, TopicName};
use crate::session::SessionId;

use super::Engine;

/// What a tenant's clients did, for metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantStats {
    /// Its clients connected now.
    pub connections: usize,
    /// CONNECTs admitted since start.
    pub connects: u64,
    /// CONNECTs refused over its connection limit.
    pub connects_refused: u64,
    /// PUBLISH packets accepted from its clients.
    pub publishes_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// PUBLISH packets held back, dropped or refused over its rate limits.
    pub publishes_over_rate: u64,
    /// Subscriptions its sessions hold now (sessions restored after a restart count once their
    /// client connects again).
    pub subscriptions: usize,
    /// Subscriptions refused over its subscription limit.
    pub subscriptions_refused: u64,
    /// Messages queued in its sessions now.
    pub queued_messages: usize,
    /// Their payload bytes.
    pub queued_bytes: usize,
}

/// A tenant's live state, beside its configuration.
#[derive(Debug, Default)]
pub(crate) struct TenantState {
    pub(crate) stats: TenantStats,
    /// The publish rates its clients share.
    pub(crate) limits: super::guard::PublishLimits,
}

impl Engine {
    /// The tenant a client belongs to: the first whose listener, user name prefix or certificate
    /// name pattern claims it.
    pub(super) fn tenant_of(
        &self,
        listener: &str,
        username: Option<&str>,
        cert_name: Option<&str>,
    ) -> Option<usize> {
        self.config.tenants.iter().position(|t| {
            t.listeners.iter().any(|l| l == listener)
                || t.username_prefix
                    .as_deref()
                    .is_some_and(|p| username.is_some_and(|u| u.starts_with(p)))
                || t.cert_name
                    .as_deref()
                    .is_some_and(|g| cert_name.is_some_and(|n| crate::limits::glob::matches(g, n)))
        })
    }

    /// The tenant's name, for the ACL.
    pub(super) fn tenant_name(&self, tenant: Option<usize>) -> Option<&str> {
        tenant
            .and_then(|i| self.config.tenants.get(i))
            .map(|t| t.name.as_str())
    }

    /// A session's mount point, if its tenant has one.
    pub(super) fn mount_of(&self, sid: SessionId) -> Option<Arc<str>> {
        self.sessions.get(&sid).and_then(|s| s.mount.clone())
    }

    /// Adds `delta` to the subscription count of `tenant`.
    pub(super) fn count_subscriptions(&mut self, tenant: Option<usize>, delta: isize) {
        if let Some(state) = tenant.and_then(|t| self.tenants.get_mut(t)) {
            state.stats.subscriptions = state.stats.subscriptions.saturating_add_signed(delta);
        }
    }

    /// Whether `sid`'s tenant is at its subscription limit (counted and reported if so).
    pub(super) fn tenant_subscriptions_full(&mut self, sid: SessionId) -> bool {
        let Some(t) = self.sessions.get(&sid).and_then(|s| s.tenant) else {
            return false;
        };
        let max = self.config.tenants.get(t).and_then(|t| t.max_subscriptions);
        let Some(state) = self.tenants.get_mut(t) else {
            return false;
        };
        let full = max.is_some_and(|max| state.stats.subscriptions >= max);
        if full {
            state.stats.subscriptions_refused += 1;
        }
        full
    }

    /// A session's queue: messages and bytes.
    pub(super) fn queue_size(&self, sid: SessionId) -> (usize, usize) {
        self.sessions
            .get(&sid)
            .map_or((0, 0), |s| (s.queue.len(), s.queued_bytes))
    }

    /// Adds how `sid`'s queue changed since `before` to its tenant's totals.
    pub(super) fn settle_queue(&mut self, sid: SessionId, before: (usize, usize)) {
        let (after, tenant) = match self.sessions.get(&sid) {
            Some(s) => ((s.queue.len(), s.queued_bytes), s.tenant),
            None => ((0, 0), None),
        };
        if let Some(state) = tenant.and_then(|t| self.tenants.get_mut(t)) {
            let st = &mut state.stats;
            st.queued_messages = (st.queued_messages + after.0).saturating_sub(before.0);
            st.queued_bytes = (st.queued_bytes + after.1).saturating_sub(before.1);
        }
    }

    /// Moves a session's queue and subscriptions between tenant totals (its client came back
    /// through another tenant, or the session ends with `to` = `None`).
    pub(super) fn move_tenant(&mut self, sid: SessionId, from: Option<usize>, to: Option<usize>) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let (messages, bytes, subs) = (s.queue.len(), s.queued_bytes, s.subscriptions.len());
        if let Some(state) = from.and_then(|t| self.tenants.get_mut(t)) {
            let st = &mut state.stats;
            st.queued_messages = st.queued_messages.saturating_sub(messages);
            st.queued_bytes = st.queued_bytes.saturating_sub(bytes);
            st.subscriptions = st.subscriptions.saturating_sub(subs);
        }
        if let Some(state) = to.and_then(|t| self.tenants.get_mut(t)) {
            let st = &mut state.stats;
            st.queued_messages += messages;
            st.queued_bytes += bytes;
            st.subscriptions += subs;
        }
    }

    /// The queue limits for one more message to `sid`: the engine's, lowered so that its tenant's
    /// total stays within the tenant's (what the session holds counts as its own room).
    pub(super) fn queue_limits(
        &self,
        sid: SessionId,
        (messages, bytes): (usize, usize),
    ) -> crate::session::QueueLimits {
        let mut limits = crate::session::QueueLimits {
            messages: self.config.max_queued_messages,
            bytes: self.config.max_queued_bytes,
        };
        let tenant = self.sessions.get(&sid).and_then(|s| s.tenant);
        if let (Some(t), Some(state)) = (
            tenant.and_then(|t| self.config.tenants.get(t)),
            tenant.and_then(|t| self.tenants.get(t)),
        ) {
            let others = |total: usize, own: usize| total.saturating_sub(own);
            if let Some(max) = t.max_queued_messages {
                let room = max.saturating_sub(others(state.stats.queued_messages, messages));
                limits.messages = limits.messages.min(room);
            }
            if let Some(max) = t.max_queued_bytes {
                let room = max.saturating_sub(others(state.stats.queued_bytes, bytes));
                limits.bytes = limits.bytes.min(room);
            }
        }
        limits
    }

    /// Every tenant's counters, in configuration order.
    pub fn tenant_stats(&self) -> impl Iterator<Item = (&str, &TenantStats)> {
        self.config
            .tenants
            .iter()
            .zip(&self.tenants)
            .map(|(t, s)| (t.name.as_str(), &s.stats))
    }
}

/// `topic` under `mount`; `None` if the result is not a valid topic name.
pub(super) fn mount_topic(mount: &str, topic: &TopicName) -> Option<TopicName> {
    TopicName::new(format!("{mount}{}", topic.as_str())).ok()
}

/// `filter` under `mount` (inside `$share/{group}/` for a shared subscription).
pub(super) fn mount_filter(mount: &str, filter: &TopicFilter) -> Option<TopicFilter> {
    let text = match filter.shared() {
        Some((group, inner)) => format!("$share/{group}/{mount}{inner}"),
        None => format!("{mount}{}", filter.as_str()),
    };
    TopicFilter::new(text).ok()
}

/// A stored (mounted) filter as its client wrote it.
pub(super) fn unmount_filter(mount: &str, filter: &ByteString) -> String {
    match filter
        .strip_prefix("$share/")
        .and_then(|r| r.split_once('/'))
    {
        Some((group, inner)) => format!(
            "$share/{group}/{}",
            inner.strip_prefix(mount).unwrap_or(inner)
        ),
        None => filter.strip_prefix(mount).unwrap_or(filter).to_string(),
    }
}

/// A topic as the client sees it: without its mount point.
pub(super) fn unmount_topic(mount: Option<&str>, topic: &TopicName) -> TopicName {
    mount
        .and_then(|m| topic.as_str().strip_prefix(m))
        .and_then(|rest| TopicName::new(rest.to_string()).ok())
        .unwrap_or_else(|| topic.clone())
}
