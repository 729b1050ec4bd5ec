//! The broker's guards: the ACL on PUBLISH, SUBSCRIBE and wills, bans, the connect rate per address,
//! and per-client publish rate limits with their overload policies.
//!
//! Every decision here is pure: the rules come from [`crate::Config`] and inputs, the time is the
//! engine's. What is refused is reported as [`Event::Refused`] so the shell can log the client and
//! the rule, and counted in [`super::Stats`].

use bytestring::ByteString;

use crate::acl::Who;
use crate::codec::{Ack, Delivery, Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicFilter};
use crate::config::{OverloadPolicy, RateLimit};
use crate::io::{CloseReason, ConnId, Event, Refusal};
use crate::limits::{Ban, TokenBucket};
use crate::session::SessionId;
use crate::timer::TimerKind;

use super::Engine;

/// How many addresses the connect-rate table remembers.
pub(super) const CONNECT_RATE_ADDRESSES: usize = 65_536;

/// The per-connection state of the publish rate limits.
#[derive(Debug, Default)]
pub(crate) struct PublishLimits {
    // Boxed: most connections have no limit, and every connection carries this.
    messages: Option<Box<(TokenBucket, OverloadPolicy)>>,
    bytes: Option<Box<(TokenBucket, OverloadPolicy)>>,
}

impl PublishLimits {
    /// Buckets for these limits, full at `now`.
    pub(crate) fn new(
        messages: Option<RateLimit>,
        bytes: Option<RateLimit>,
        now: crate::time::Instant,
    ) -> PublishLimits {
        let bucket = |limit: Option<RateLimit>| {
            limit.map(|l| {
                Box::new((
                    TokenBucket::new(l.rate.per_sec, l.rate.burst, now),
                    l.policy,
                ))
            })
        };
        PublishLimits {
            messages: bucket(messages),
            bytes: bucket(bytes),
        }
    }

    /// The limit a PUBLISH of `size` payload bytes is over at `now`, if any.
    fn over(&self, now: crate::time::Instant, size: u64, whose: &'static str) -> Option<Verdict> {
        let check =
            |bucket: &Option<Box<(TokenBucket, OverloadPolicy)>>, n: u64, name: &'static str| {
                let (bucket, policy) = bucket.as_deref()?;
                let ready_at = bucket.ready_at(now, n);
                (ready_at > now).then_some(Verdict::Over {
                    limit: name,
                    policy: *policy,
                    ready_at,
                })
            };
        let (messages, bytes) = if whose.is_empty() {
            ("publish_messages_per_sec", "publish_bytes_per_sec")
        } else {
            (
                "tenant publish_messages_per_sec",
                "tenant publish_bytes_per_sec",
            )
        };
        check(&self.messages, 1, messages).or_else(|| check(&self.bytes, size, bytes))
    }

    /// Takes a PUBLISH's cost.
    fn charge(&mut self, now: crate::time::Instant, size: u64) {
        if let Some((bucket, _)) = self.messages.as_deref_mut() {
            bucket.try_take(now, 1);
        }
        if let Some((bucket, _)) = self.bytes.as_deref_mut() {
            bucket.try_take(now, size);
        }
    }
}

/// What a rate limit says about one PUBLISH.
enum Verdict {
    Pass,
    /// Over `limit`: wait until the instant, drop, or disconnect.
    Over {
        limit: &'static str,
        policy: OverloadPolicy,
        ready_at: crate::time::Instant,
    },
}

impl Engine {
    /// The ACL's view of a connected session's client.
    fn who(&self, sid: SessionId) -> Option<Who<'_>> {
        let s = self.sessions.get(&sid)?;
        let principal = s.principal.as_ref()?;
        Some(Who {
            client_id: &s.client_id,
            username: principal.username.as_deref(),
            tenant: self.tenant_name(s.tenant),
            claims: &principal.claims,
        })
    }

    /// Fresh publish rate limits for a connection admitted now.
    pub(super) fn publish_limits(&self) -> PublishLimits {
        let q = &self.config.quotas;
        PublishLimits::new(q.publish_messages, q.publish_bytes, self.now)
    }

    /// A PUBLISH from a connected client, through its rate limits (the ACL comes once its topic alias
    /// is resolved, in `inbound_publish`).
    pub(super) fn guarded_publish(&mut self, id: ConnId, sid: SessionId, p: Publish, mark: usize) {
        match self.rate_verdict(id, &p) {
            Verdict::Pass => {}
            Verdict::Over {
                limit,
                policy: OverloadPolicy::Throttle,
                ready_at,
            } => {
                // Handled when the bucket allows it; meanwhile nothing behind it is read.
                self.stats.publishes_throttled += 1;
                if self.conns.get(&id).is_some_and(|c| !c.read_paused) {
                    // Once per episode, not per packet held back: a flood must not flood the log.
                    self.report(sid, Refusal::Throttled { limit });
                }
                if let Some(c) = self.conns.get_mut(&id) {
                    c.stalled = Some(Box::new(p));
                    if let Some(ka) = c.keep_alive {
                        // The client is not idle: it is being held back.
                        self.timers
                            .set(TimerKind::KeepAlive(id), ready_at + ka.mul_f32(1.5));
                    }
                }
                self.timers.set(TimerKind::Throttle(id), ready_at);
                if let Some(c) = self.conns.get_mut(&id) {
                    if !std::mem::replace(&mut c.read_paused, true) {
                        self.events.push_back(Event::ReadPaused { conn: id });
                    }
                }
                return;
            }
            Verdict::Over {
                limit,
                policy: OverloadPolicy::Drop,
                ..
            } => {
                self.report(sid, Refusal::PublishDropped { limit });
                self.stats.publishes_dropped_by_quota += 1;
                return self.refuse_publish(id, &p, ReasonCode::QuotaExceeded, mark);
            }
            Verdict::Over {
                limit,
                policy: OverloadPolicy::Disconnect,
                ..
            } => {
                let why = format!("PUBLISH over the client's {limit} limit");
                return self.kick(id, ReasonCode::MessageRateTooHigh, why);
            }
        }
        self.inbound_publish(id, sid, p, mark);
    }

    /// Whether the ACL refuses a PUBLISH to `topic` (reported and answered if so).
    pub(super) fn publish_denied(
        &mut self,
        id: ConnId,
        sid: SessionId,
        p: &Publish,
        topic: &crate::codec::TopicName,
        mark: usize,
    ) -> bool {
        let Some(acl) = self.config.acl.clone() else {
            return false;
        };
        let allowed = self
            .who(sid)
            .is_some_and(|who| acl.may_publish(&who, topic.as_str(), p.delivery.qos(), p.retain));
        if allowed {
            return false;
        }
        self.stats.publishes_denied += 1;
        self.report(
            sid,
            Refusal::PublishDenied {
                topic: topic.clone(),
            },
        );
        self.refuse_publish(id, p, ReasonCode::NotAuthorized, mark);
        true
    }

    /// Takes `p`'s cost from the connection's and its tenant's buckets, or says which limit it is
    /// over. Every bucket is checked before any is charged, so a publish refused by one limit does
    /// not use up another.
    fn rate_verdict(&mut self, id: ConnId, p: &Publish) -> Verdict {
        let now = self.now;
        let size = p.payload.len() as u64;
        let Some(c) = self.conns.get_mut(&id) else {
            return Verdict::Pass;
        };
        let tenant = c.tenant.and_then(|t| self.tenants.get_mut(t));
        if let Some(state) = tenant {
            if let Some(over) = state.limits.over(now, size, "tenant ") {
                state.stats.publishes_over_rate += 1;
                return over;
            }
        }
        if let Some(over) = c.limits.over(now, size, "") {
            return over;
        }
        c.limits.charge(now, size);
        if let Some(state) = c.tenant.and_then(|t| self.tenants.get_mut(t)) {
            state.limits.charge(now, size);
        }
        Verdict::Pass
    }

    /// The throttle on `id` is over: handle the PUBLISH that waited, then what is buffered behind it.
    pub(super) fn unthrottle(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(p) = c.stalled.take() else {
            return;
        };
        self.on_packet(id, Packet::Publish(*p));
        self.process_inbuf(id);
        // Reading resumes only once the backlog is handled, so a flood cannot pile up in memory.
        if let Some(c) = self.conns.get_mut(&id) {
            if c.stalled.is_none() && std::mem::take(&mut c.read_paused) {
                self.events.push_back(Event::ReadResumed { conn: id });
            }
        }
    }

    /// Answers a refused PUBLISH: v5 QoS 1/2 get `reason` in PUBACK/PUBREC (which ends a QoS 2
    /// exchange), 3.x QoS 1/2 are acknowledged as usual (3.x has no way to say no), QoS 0 gets nothing.
    fn refuse_publish(&mut self, id: ConnId, p: &Publish, reason: ReasonCode, mark: usize) {
        let v5 = self.conns.get(&id).is_some_and(|c| c.is_v5());
        let mut ack = match p.delivery {
            Delivery::AtMostOnce => return,
            Delivery::AtLeastOnce(pid) | Delivery::ExactlyOnce(pid) => Ack::new(pid),
        };
        if v5 {
            ack.reason = reason;
        }
        let packet = match p.delivery {
            Delivery::ExactlyOnce(_) => Packet::PubRec(ack),
            _ => Packet::PubAck(ack),
        };
        self.send(id, &packet, mark);
    }

    /// The granted QoS of a subscription under the ACL and the subscription quotas (the
    /// session's, then its tenant's), or the SUBACK code that refuses it.
    pub(super) fn subscribe_verdict(
        &mut self,
        sid: SessionId,
        filter: &TopicFilter,
        qos: QoS,
    ) -> Result<QoS, ReasonCode> {
        let mut granted = qos;
        if let Some(acl) = self.config.acl.clone() {
            let plain = filter.shared().map_or(filter.as_str(), |(_, f)| f);
            match self
                .who(sid)
                .and_then(|who| acl.may_subscribe(&who, plain, qos))
            {
                Some(q) => granted = q,
                None => {
                    self.stats.subscriptions_denied += 1;
                    let filter = filter.as_bytestring().clone();
                    self.report(sid, Refusal::SubscribeDenied { filter });
                    return Err(ReasonCode::UnspecifiedError);
                }
            }
        }
        let (existing, count, tenant) = self.sessions.get(&sid).map_or((false, 0, None), |s| {
            // The session holds its subscriptions under its mount point.
            let key = match s.mount.as_deref() {
                Some(m) => super::tenant::mount_filter(m, filter)
                    .map(|f| s.subscriptions.contains_key(f.as_str())),
                None => Some(s.subscriptions.contains_key(filter.as_str())),
            };
            (key.unwrap_or(false), s.subscriptions.len(), s.tenant)
        });
        if existing {
            // Replacing a subscription is not one more.
            return Ok(granted);
        }
        if let Some((max, policy)) = self.config.quotas.max_subscriptions {
            if count >= max {
                return self.too_many_subscriptions(sid, max, policy);
            }
        }
        if self.tenant_subscriptions_full(sid) {
            let max = tenant
                .and_then(|t| self.config.tenants.get(t))
                .and_then(|t| t.max_subscriptions)
                .unwrap_or(0);
            self.report(sid, Refusal::TooManySubscriptions { max });
            return Err(ReasonCode::QuotaExceeded);
        }
        Ok(granted)
    }

    fn too_many_subscriptions(
        &mut self,
        sid: SessionId,
        max: usize,
        policy: OverloadPolicy,
    ) -> Result<QoS, ReasonCode> {
        self.stats.subscriptions_over_quota += 1;
        self.report(sid, Refusal::TooManySubscriptions { max });
        if policy == OverloadPolicy::Disconnect {
            if let Some(conn) = self.sessions.get(&sid).and_then(|s| s.conn) {
                // After SUBACK would be too late to matter: the client goes now.
                let why = format!("more than {max} subscriptions");
                self.kick(conn, ReasonCode::QuotaExceeded, why);
            }
        }
        Err(ReasonCode::QuotaExceeded)
    }

    /// Checks a CONNECT against the bans and the connect rate of its address, before authentication
    /// (so a banned or storming client costs no password hashing).
    pub(super) fn connect_guard(
        &mut self,
        client_id: &ByteString,
        username: Option<&str>,
        peer: &str,
    ) -> Option<ReasonCode> {
        if let Some(ban) = self.banned(client_id, username, peer) {
            return Some(ban);
        }
        if let Some(table) = self.connect_rates.as_mut() {
            if !table.try_take(self.now, peer) {
                self.stats.connects_rate_limited += 1;
                self.events.push_back(Event::Refused {
                    client_id: client_id.clone(),
                    what: Refusal::ConnectRateExceeded,
                });
                return Some(ReasonCode::ConnectionRateExceeded);
            }
        }
        None
    }

    /// 0x8A if a ban matches, reported.
    pub(super) fn banned(
        &mut self,
        client_id: &ByteString,
        username: Option<&str>,
        peer: &str,
    ) -> Option<ReasonCode> {
        let ban = self.bans.find(self.now, client_id, username, peer)?;
        let ban = ban.target.to_string();
        self.stats.connects_banned += 1;
        self.events.push_back(Event::Refused {
            client_id: client_id.clone(),
            what: Refusal::Banned { ban },
        });
        Some(ReasonCode::Banned)
    }

    /// A new ACL: subscriptions it denies are removed, those it grants lower are lowered.
    pub(super) fn set_acl(&mut self, acl: Option<std::sync::Arc<crate::acl::Acl>>) {
        self.config.acl = acl;
        let Some(acl) = self.config.acl.clone() else {
            return;
        };
        let sids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in sids {
            let Some(who) = self.who(sid) else {
                continue;
            };
            let mut revoked = Vec::new();
            let mut lowered = Vec::new();
            if let Some(s) = self.sessions.get(&sid) {
                let mount = s.mount.as_deref().unwrap_or("");
                for (filter, sub) in &s.subscriptions {
                    // The ACL speaks the client's topics: without the mount point.
                    let plain = TopicFilter::new(super::tenant::unmount_filter(mount, filter))
                        .ok()
                        .map(|f| f.shared().map_or(f.as_str(), |(_, p)| p).to_string());
                    let Some(plain) = plain else { continue };
                    match acl.may_subscribe(&who, &plain, sub.options.qos) {
                        None => revoked.push(filter.clone()),
                        Some(q) if q < sub.options.qos => lowered.push((filter.clone(), q)),
                        Some(_) => {}
                    }
                }
            }
            for (filter, qos) in lowered {
                self.lower_subscription(sid, &filter, qos);
            }
            for filter in revoked {
                self.remove_subscription(sid, &filter);
                self.stats.subscriptions_denied += 1;
                self.report(sid, Refusal::SubscriptionRevoked { filter });
            }
        }
    }

    /// New bans: connected clients they match are disconnected with 0x98.
    pub(super) fn set_bans(&mut self, bans: Vec<Ban>) {
        self.bans.replace_all(bans);
        let matched: Vec<(ConnId, String)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session().is_some())
            .filter_map(|(id, c)| {
                let client_id = c.client_id.as_deref().unwrap_or_default();
                self.bans
                    .find(self.now, client_id, c.username.as_deref(), &c.meta.peer)
                    .map(|ban| (*id, format!("banned: {}", ban.target)))
            })
            .collect();
        for (id, why) in matched {
            self.kick(id, ReasonCode::AdministrativeAction, why);
        }
    }

    /// Disconnects a connected client on purpose, publishing its will.
    pub(super) fn kick(&mut self, id: ConnId, reason: ReasonCode, why: String) {
        let reason = if reason.allowed_in(crate::codec::PacketType::Disconnect) {
            reason
        } else {
            ReasonCode::AdministrativeAction
        };
        let close = CloseReason::Kicked {
            reason,
            why: why.clone(),
        };
        self.disconnect_with(id, reason, Some(why), close, true);
    }

    fn report(&mut self, sid: SessionId, what: Refusal) {
        if let Some(s) = self.sessions.get(&sid) {
            self.events.push_back(Event::Refused {
                client_id: s.client_id.clone(),
                what,
            });
        }
    }
}

/// 3.x SUBACK has one failure code; v5 keeps the reason (0x80 for an ACL denial, 0x97 for the quota).
pub(super) fn suback_failure(protocol: ProtocolVersion, reason: ReasonCode) -> ReasonCode {
    if protocol.is_v5() {
        reason
    } else {
        ReasonCode::UnspecifiedError
    }
}
