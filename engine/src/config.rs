//! Engine configuration: every protocol limit, explicit and checked.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::QoS;

/// How CONNECT credentials are checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Authentication {
    /// Every client is accepted as the user it claims (tests and embedders; the `cicada` shell
    /// always asks its authenticator, which decides anonymous access per listener).
    #[default]
    AllowAll,
    /// Each CONNECT is put to the shell as [`crate::Event::Authenticate`]; the engine waits for
    /// [`crate::Input::AuthDecided`] before answering, queueing whatever the client sends meanwhile.
    External,
}

/// The limits and switches of one engine. `Config::default()` is a sensible production broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest packet accepted from a client, in bytes (header included). Advertised to v5 clients.
    pub max_packet_size: u32,
    /// How many QoS 1/2 PUBLISHes a client may have unacknowledged towards us (v5 Receive Maximum).
    pub receive_maximum: u16,
    /// How many QoS 1/2 PUBLISHes we keep unacknowledged towards one client (further capped by its
    /// Receive Maximum).
    pub max_inflight: u16,
    /// Messages queued per session beyond the inflight window (online or offline).
    pub max_queued_messages: usize,
    /// Payload bytes queued per session.
    pub max_queued_bytes: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions (MQTT makes this optional).
    pub queue_qos0_offline: bool,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Highest QoS granted to subscriptions and accepted in PUBLISH.
    pub max_qos: QoS,
    /// Whether retained messages are stored.
    pub retain_available: bool,
    /// Highest topic alias a v5 client may use towards us (0 disables aliases).
    pub topic_alias_maximum: u16,
    /// Most topic aliases we assign towards one v5 connection (further capped by the client's Topic
    /// Alias Maximum; 0 sends every topic by name).
    pub max_outbound_topic_aliases: u16,
    /// Cap on the session expiry a client may ask for, in seconds (v3 persistent sessions get this).
    pub max_session_expiry: u32,
    /// Cap on keep alive; v5 clients asking for more (or for none) are told this as Server Keep Alive.
    pub max_keep_alive: Option<u16>,
    /// Time allowed between accepting a connection and receiving its CONNECT.
    pub connect_timeout: Duration,
    /// Bytes handed to the shell for one connection and not yet reported flushed, beyond which no more
    /// PUBLISHes are written to it (they wait in the session queue).
    pub send_window: usize,
    /// Whether QoS 1/2 acknowledgements wait for storage ([`crate::Event::Persist`]). Off means an
    /// in-memory broker: no storage batches are produced at all.
    pub durable: bool,
    /// How CONNECT is authenticated.
    pub authentication: Authentication,
    /// Longest client identifier accepted.
    pub max_client_id_length: usize,
    /// Prefix of client identifiers the broker assigns.
    pub assigned_client_id_prefix: String,
    /// Whether `$share/{group}/{filter}` subscriptions are offered (advertised to v5 clients).
    pub shared_subscriptions: bool,
    /// This engine's place among the engines of one process (one per core): with more than one, it
    /// exchanges subscription interest and publishes with the others as [`crate::PeerMessage`]s.
    pub shard: crate::Shard,
    /// This engine's node in a cluster, if it is one (see [`crate::cluster`]); a cluster node runs one
    /// engine (`shard` must be the default).
    pub cluster: Option<crate::ClusterConfig>,
    /// How a shared subscription group picks the member that gets a message.
    pub shared_strategy: SharedStrategy,
    /// How often the `$SYS/broker/...` topics are updated; `None` publishes none. Off by default here
    /// so tests see only what they cause; the `cicada` binary turns it on (every 10 s).
    pub sys_interval: Option<Duration>,
    /// Whether subscriptions may use `+` and `#` (advertised to v5 clients; off refuses such filters
    /// with 0xA2).
    pub wildcard_subscriptions: bool,
    /// Whether SUBSCRIBE may carry a Subscription Identifier (advertised to v5 clients; off
    /// disconnects a client that sends one with 0xA1).
    pub subscription_identifiers: bool,
    /// The prefix of the Response Information a v5 client gets when it asks for it (Request Response
    /// Information = 1): the prefix followed by its client identifier, a topic base only it is meant to
    /// use for responses. `None` sends none (the client must pick its own response topics).
    pub response_information_prefix: Option<String>,
    /// Send clients elsewhere: every CONNECT is refused with this redirection (v5: 0x9C/0x9D with a
    /// Server Reference; 3.x: 0x03 server unavailable), and a shutdown tells v5 clients where to go.
    /// Changed at runtime with [`crate::Input::SetRedirect`] (draining a node).
    pub redirect: Option<Redirect>,
    /// Topic filters whose messages raise [`crate::Event::MessagePublished`] and
    /// [`crate::Event::MessageDelivered`] (the shell's webhooks). Empty, the default: no such events
    /// and no cost per message.
    pub message_events: Vec<crate::codec::TopicFilter>,
    /// The MQTT 5 enhanced authentication methods offered (e.g. `SCRAM-SHA-256`); a CONNECT naming
    /// another gets 0x8C. They run in the authenticator, so they need [`Authentication::External`].
    pub auth_methods: Vec<String>,
    /// The access control list checked on every PUBLISH, SUBSCRIBE and will; `None` allows everything.
    /// Replaced at runtime with [`crate::Input::SetAcl`].
    pub acl: Option<Arc<crate::acl::Acl>>,
    /// Per-client quotas and rate limits.
    pub quotas: Quotas,
    /// Tenants: namespaces whose clients' topics live under a mount point, with their own limits.
    /// A client belongs to the first tenant that claims it.
    pub tenants: Vec<Tenant>,
}

/// A tenant: which clients belong to it, where their topics live, and what they may use together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenant {
    /// Its name (in ACL `tenant` rules and `%t`, logs and stats).
    pub name: String,
    /// Prefix put before every topic its clients use (and taken off what they receive), e.g.
    /// `acme/`: they cannot see or reach other tenants' topics. Empty: no isolation.
    pub mount_point: String,
    /// Clients connecting through these listeners belong to it.
    pub listeners: Vec<String>,
    /// Clients whose (proven) user name starts with this belong to it.
    pub username_prefix: Option<String>,
    /// Clients whose certificate name matches this `*` glob belong to it.
    pub cert_name: Option<String>,
    /// Most of its clients connected at once; more are refused with 0x97 (3.x: 0x03).
    pub max_connections: Option<usize>,
    /// PUBLISH packets per second from all its clients together.
    pub publish_messages: Option<RateLimit>,
    /// PUBLISH payload bytes per second from all its clients together.
    pub publish_bytes: Option<RateLimit>,
    /// Most subscriptions all its sessions hold together; more get SUBACK 0x97 (3.x: 0x80).
    pub max_subscriptions: Option<usize>,
    /// Most messages queued in all its sessions together; beyond, messages are dropped as when a
    /// session's own queue is full (QoS 0 first), counted.
    pub max_queued_messages: Option<usize>,
    /// Most payload bytes queued in all its sessions together.
    pub max_queued_bytes: Option<usize>,
}

/// A rate: `per_sec` on average, with bursts of up to `burst` at once (a token bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: NonZeroU64,
    /// The bucket's size.
    pub burst: NonZeroU64,
}

/// What happens to a client that goes over a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverloadPolicy {
    /// Stop reading from it until the limit allows the next packet ([`crate::Event::ReadPaused`]):
    /// nothing is lost, the client is slowed down by TCP. Rate limits only.
    #[default]
    Throttle,
    /// Refuse what is over the limit and count it: v5 QoS 1/2 get 0x97 Quota exceeded, QoS 0 and 3.x
    /// publishes are dropped silently; subscriptions get 0x97 (v5) / 0x80 (3.x).
    Drop,
    /// Disconnect the client: 0x96 Message rate too high for rates, 0x97 Quota exceeded for quotas.
    Disconnect,
}

/// A rate limit and what to do when it is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// The rate.
    pub rate: Rate,
    /// The policy.
    pub policy: OverloadPolicy,
}

/// Per-client quotas and rate limits; all off by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// PUBLISH packets per second from one client.
    pub publish_messages: Option<RateLimit>,
    /// PUBLISH payload bytes per second from one client (a message larger than the burst passes
    /// when the bucket is full and puts it in debt).
    pub publish_bytes: Option<RateLimit>,
    /// Most subscriptions one session holds, and what happens to one more (`Drop` or `Disconnect`).
    pub max_subscriptions: Option<(usize, OverloadPolicy)>,
    /// CONNECTs per second from one IP address; more are refused with 0x9F Connection rate exceeded
    /// (3.x: 0x03 server unavailable).
    pub connect_rate_per_address: Option<Rate>,
    /// What happens when a connected client's session queue is full ([`Config::max_queued_messages`]
    /// / [`Config::max_queued_bytes`]): `Drop` (the default) drops and counts messages, `Disconnect`
    /// also disconnects the slow consumer with 0x97 (its session stays, with what it holds).
    pub queue_full: OverloadPolicy,
}
impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            publish_messages: None,
            publish_bytes: None,
            max_subscriptions: None,
            connect_rate_per_address: None,
            queue_full: OverloadPolicy::Drop,
        }
    }
}

/// Where clients should connect instead (MQTT 5.0 §4.11, server redirection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The Server Reference sent to v5 clients: one or more `host[:port]`, space separated.
    pub server_reference: String,
    /// Moved for good (0x9D Server moved) rather than for now (0x9C Use another server).
    pub permanent: bool,
}

impl Redirect {
    /// The reason code that carries this redirection.
    pub fn reason(&self) -> crate::codec::ReasonCode {
        if self.permanent {
            crate::codec::ReasonCode::ServerMoved
        } else {
            crate::codec::ReasonCode::UseAnotherServer
        }
    }
}

/// How a shared subscription group picks the member that gets a message. Online members are always
/// preferred; when none is online the message is queued on the member picked among all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SharedStrategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// A member drawn from the engine's seeded generator.
    Random,
    /// The member chosen last, as long as it stays online (then the next in turn).
    Sticky,
    /// A member fixed by the topic name, so one topic's messages stay in order on one member.
    HashTopic,
    /// A member fixed by the publisher's client identifier.
    HashPublisher,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_packet_size: 1024 * 1024,
            message_events: Vec::new(),
            receive_maximum: 1024,
            max_inflight: 64,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            queue_qos0_offline: false,
            max_topic_length: 65_535,
            max_topic_levels: 128,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            topic_alias_maximum: 64,
            max_outbound_topic_aliases: 64,
            max_session_expiry: u32::MAX,
            max_keep_alive: None,
            connect_timeout: Duration::from_secs(10),
            send_window: 1024 * 1024,
            durable: true,
            authentication: Authentication::AllowAll,
            max_client_id_length: 256,
            assigned_client_id_prefix: "cicada-".to_string(),
            shared_subscriptions: true,
            shard: crate::Shard::default(),
            cluster: None,
            shared_strategy: SharedStrategy::RoundRobin,
            sys_interval: None,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            response_information_prefix: None,
            redirect: None,
            auth_methods: Vec::new(),
            acl: None,
            quotas: Quotas::default(),
            tenants: Vec::new(),
        }
    }
}

/// A configuration value the engine cannot work with; names the key and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{key}`: {fix}")]
pub struct ConfigError {
    /// The configuration key.
    pub key: &'static str,
    /// What to change.
    pub fix: &'static str,
}

impl Config {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, fix| Err(ConfigError { key, fix });
        if self.shard.count == 0 || self.shard.index >= self.shard.count {
            return fail(
                "shard",
                "use an index below the count of engines, and at least one engine",
            );
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            if self.shard.is_sharded() {
                return fail(
                    "cluster",
                    "run one engine per cluster node (workers = 1 with [cluster])",
                );
            }
        }
        if self.max_packet_size < 64 {
            return fail("max_packet_size", "use at least 64 bytes");
        }
        if self.receive_maximum == 0 {
            return fail("receive_maximum", "use at least 1 (MQTT forbids 0)");
        }
        if self.max_inflight == 0 {
            return fail("max_inflight", "use at least 1");
        }
        if self.max_topic_length == 0 || self.max_topic_length > 65_535 {
            return fail("max_topic_length", "use 1 to 65535 bytes");
        }
        if self.max_topic_levels == 0 {
            return fail("max_topic_levels", "use at least 1");
        }
        if self.send_window == 0 {
            return fail("send_window", "use at least 1 byte");
        }
        if self.max_keep_alive == Some(0) {
            return fail("max_keep_alive", "use at least 1 second, or leave it unset");
        }
        if self
            .sys_interval
            .is_some_and(|i| i < Duration::from_secs(1))
        {
            return fail("sys_interval", "use at least 1 second, or leave it unset");
        }
        if self
            .redirect
            .as_ref()
            .is_some_and(|r| r.server_reference.trim().is_empty())
        {
            return fail("redirect.server_reference", "name at least one host[:port]");
        }
        if !self.auth_methods.is_empty() && self.authentication != Authentication::External {
            return fail(
                "auth_methods",
                "enhanced authentication runs in the authenticator: set authentication to External",
            );
        }
        if self
            .quotas
            .max_subscriptions
            .is_some_and(|(_, policy)| policy == OverloadPolicy::Throttle)
        {
            return fail(
                "quotas.max_subscriptions_policy",
                "use \"drop\" or \"disconnect\" (throttling applies to rates only)",
            );
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if t.name.is_empty() || self.tenants[..i].iter().any(|o| o.name == t.name) {
                return fail("tenant.name", "give every tenant its own, non-empty name");
            }
            let m = &t.mount_point;
            if m.contains(['+', '#', '\0'])
                || m.starts_with('$')
                || (!m.is_empty() && !m.ends_with('/'))
            {
                return fail(
                    "tenant.mount_point",
                    "use a topic prefix ending with `/`, without wildcards, not starting with `$` (e.g. \"acme/\")",
                );
            }
            if t.listeners.is_empty() && t.username_prefix.is_none() && t.cert_name.is_none() {
                return fail(
                    "tenant.listeners",
                    "say which clients belong to the tenant: listeners, username_prefix or cert_name",
                );
            }
        }
        if self.quotas.queue_full == OverloadPolicy::Throttle {
            return fail(
                "quotas.queue_full_policy",
                "use \"drop\" or \"disconnect\" (a subscriber cannot be throttled)",
            );
        }
        if self.max_client_id_length < 23 {
            return fail("max_client_id_length", "use at least 23 (MQTT requires it)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_errors_name_the_key() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = Config {
            receive_maximum: 0,
            ..Config::default()
        };
        let err = bad.validate().expect_err("invalid");
        assert_eq!(err.key, "receive_maximum");
        assert!(err.to_string().contains("receive_maximum"));
    }
}
