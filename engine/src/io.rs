//! What goes into the engine and what comes out of it.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::SubscriptionId;
use crate::codec::{
    ProtocolVersion, PublishProperties, QoS, ReasonCode, SubscriptionOptions, TopicName, Will,
};
use crate::message::Message;
use crate::time::Instant;

/// A connection, numbered by the shell; unique for the engine's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// What the shell knows about a connection when it accepts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnMeta {
    /// The peer's address, for logs and authentication (the real client's behind a PROXY header).
    pub peer: String,
    /// The listener it came in on.
    pub listener: String,
    /// The verified client certificate's identity, on TLS, WSS and QUIC listeners with client
    /// certificates; handed to the authenticator.
    pub identity: Option<CertIdentity>,
    /// A user name the transport vouches for (the certificate identity, when the listener says to use
    /// it as the user name). It replaces CONNECT's User Name, so a client cannot claim another.
    pub username: Option<ByteString>,
}

/// Who a verified client certificate names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject's Common Name, if it has one.
    pub common_name: Option<String>,
    /// Subject Alternative Names (DNS names, e-mail addresses, URIs, IP addresses), as text.
    pub alt_names: Vec<String>,
}

impl CertIdentity {
    /// The name to use as a user name: the Common Name, or else the first alternative name.
    pub fn name(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or_else(|| self.alt_names.first().map(String::as_str))
    }
}

/// Who an authenticated client is, as its authenticator established it: what ACL rules, bans and
/// `%u` placeholders look at. The user name may differ from CONNECT's (a JWT's subject, a SCRAM user,
/// a certificate name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The proven user name; `None` for an anonymous client.
    pub username: Option<ByteString>,
    /// Facts the authenticator vouches for (e.g. a JWT's claims), for ACL `claim` rules; sorted by name.
    pub claims: Vec<(String, String)>,
}

/// A storage batch's sequence number; batches are numbered 1, 2, 3... in the order they are emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PersistSeq(pub u64);

/// An authenticator's answer to [`Event::Authenticate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Let the client in (or, for a re-authentication, keep it: AUTH 0x00).
    Allow,
    /// Enhanced authentication only: let the client in with the method's final data (e.g. SCRAM's
    /// server-final-message), sent as Authentication Data in CONNACK (or AUTH 0x00 on
    /// re-authentication).
    AllowWithData {
        /// The method's last word.
        data: Bytes,
    },
    /// Let the client in as `principal` (with `data` as for [`AuthDecision::AllowWithData`] when
    /// enhanced authentication is in use). `Allow` and `AllowWithData` let it in as the user name it
    /// claimed, without claims.
    Authenticated {
        /// Who the client proved to be.
        principal: Principal,
        /// The enhanced authentication method's last word, if any.
        data: Option<Bytes>,
    },
    /// Enhanced authentication only: challenge the client with AUTH 0x18 carrying `data`; its answer
    /// comes back as [`Event::Authenticate`] with [`AuthStage::Continue`].
    Continue {
        /// The challenge.
        data: Bytes,
    },
    /// Refuse it: `reason` goes into CONNACK (0x86 bad credentials, 0x87 not authorized, ...). A
    /// failed re-authentication is a DISCONNECT with it (0x87 if it is a CONNACK-only code).
    Deny {
        /// The CONNACK reason code (mapped to the closest 3.x return code for 3.x clients).
        reason: ReasonCode,
    },
}

/// Which step of an authentication [`Event::Authenticate`] asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStage {
    /// A CONNECT: credentials, and for enhanced authentication the method's first data.
    Connect,
    /// The client's answer (AUTH 0x18) to the challenge last sent with [`AuthDecision::Continue`].
    Continue,
    /// A connected client starts a re-authentication (AUTH 0x19) with its CONNECT's method.
    Reauthenticate,
}

/// A message between the engines of one node (see [`crate::Shard`]), carried by the shell from an
/// [`Event::Peer`] of one engine to an [`Input::Peer`] of another, in order and without loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// A message published on another engine. It is never forwarded again.
    Publish {
        /// The message. When it is retained, the receiving engine updates its retained store (in
        /// memory: the publishing engine stored it).
        message: Arc<Message>,
        /// Deliver it to this engine's ordinary subscribers.
        plain: bool,
        /// Deliver it to one member of each of these shared groups (whole `$share/...` filters): the
        /// publishing engine chose this engine for them.
        groups: Vec<ByteString>,
        /// The publishing engine's storage batch that waits for this engine to store the message
        /// (its publisher's acknowledgement does): answer [`PeerMessage::Stored`] once it is durable
        /// here. `None` for QoS 0 or without durability.
        receipt: Option<u64>,
        /// The publishing engine.
        from: u16,
        /// The message's identity in a cluster (`None` between the engines of one node): a
        /// session that moved between nodes recognises a late copy of what it already got.
        stamp: Option<Stamp>,
        /// In a cluster, how far the sender had applied the log when it routed this (0 between
        /// the engines of one node): the receiver handles it only once it applied as far, so it
        /// knows every claim, move and adoption the sender routed by. A node that adopted a down
        /// node's sessions holds them before their messages; a restarted node that owns a
        /// session it never got waits for it, and keeps what comes for it (seed 2818).
        after: u64,
    },
    /// The receiving engine stored what batch `seq` of this engine forwarded to it.
    Stored {
        /// The batch.
        seq: u64,
    },
    /// The sending engine's clients now subscribe to `filter` (a whole filter, `$share/...`
    /// included) `count` times (0: no longer). Sent for an ordinary filter's first and last
    /// subscription, and for every change of a shared group's membership.
    Interest {
        /// The engine whose subscriptions changed.
        from: u16,
        /// The filter.
        filter: ByteString,
        /// How many of its sessions subscribe to it (a shared group's members there).
        count: u32,
        /// For a filter gained (`count` above 0): the sender's batch that waits until the
        /// receiver took this in, answered at once with [`PeerMessage::Stored`]. It holds the
        /// SUBACK, so a message published on any engine after the client got its SUBACK reaches
        /// the subscription.
        receipt: Option<u64>,
    },
    /// A cluster node hands a client's session to the node whose claim of the client identifier
    /// took it away (see `docs/cluster.md`, "Session handover").
    Handover {
        /// The client identifier.
        client_id: ByteString,
        /// The claim it is handed over for: the new owner's (incarnation, token).
        claim: (u64, u64),
        /// The session as a store would hold it (with its high-water marks), without its will;
        /// `None` when the old owner held no session worth keeping (the new owner then starts a
        /// fresh one at once).
        session: Option<Box<crate::stored::StoredSession>>,
        /// The sender's storage batch that waits for the link's acknowledgement, as a publish's
        /// does (see `receipt` there): the oldest holding the sender's writes to the session that
        /// the move made moot. Their messages are in the session, and durable only once the new
        /// owner wrote it whole through the log.
        receipt: Option<u64>,
        /// How far the sender had applied the log when it sent this (the claim had applied
        /// there): once the receiver applied as far, the claim has applied there too, or lies
        /// inside a snapshot it installed, and a handover that came ahead of it is late.
        applied: u64,
    },
    /// A message for a session that left the sending node: it arrived there after the handover,
    /// and goes to the node that holds the session now, for that session alone (see
    /// `docs/cluster.md`, "Messages published during a move").
    Relay {
        /// The session's client identifier.
        client_id: ByteString,
        /// The message, as it arrived at the sending node.
        message: Arc<Message>,
        /// Its identity, which the session judges it by.
        stamp: Stamp,
        /// How far the sender had applied the log when it sent this (by which it took the
        /// receiver for the session's owner): the receiver holds it until it applied as far, as
        /// it holds a routed publish (seed 1179: a node that lagged behind the claim that gave it
        /// the session dropped three relays as not its own).
        after: u64,
    },
}

/// Where and when a message entered the cluster: its origin node, that node's incarnation, and a
/// counter the origin increases with every message it routes. A node's messages reach any one node
/// in counter order (the link between two nodes is ordered), so a session needs only the highest
/// counter it took per origin to recognise a copy it already had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The origin node.
    pub node: u16,
    /// Its incarnation when it routed the message.
    pub incarnation: u64,
    /// Its counter.
    pub seq: u64,
}

/// Everything that can happen to the engine: the single entry point [`crate::Engine::handle`] takes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The shell accepted a connection.
    Accepted {
        /// Its number.
        conn: ConnId,
        /// Where it comes from.
        meta: ConnMeta,
    },
    /// Bytes arrived on a connection.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes, in order, any size.
        data: Bytes,
    },
    /// The shell wrote `bytes` of what [`crate::Engine::poll_transmit`] gave it for `conn` to the socket.
    Flushed {
        /// The connection.
        conn: ConnId,
        /// How many bytes left the process.
        bytes: usize,
    },
    /// The connection is gone (peer closed, I/O error, or the shell closed it after [`Event::Close`]).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// Every storage batch up to and including `upto` is durable.
    Persisted {
        /// The last durable batch.
        upto: PersistSeq,
    },
    /// A storage batch could not be written.
    PersistFailed {
        /// The failed batch.
        seq: PersistSeq,
    },
    /// The authenticator answered for a connection.
    AuthDecided {
        /// The connection.
        conn: ConnId,
        /// The answer.
        decision: AuthDecision,
    },
    /// A frame from cluster node `from`, as its [`Event::Cluster`] gave it.
    Cluster {
        /// The sending node.
        from: u16,
        /// The frame.
        frame: Bytes,
    },
    /// A message from another engine.
    Peer {
        /// The message.
        message: PeerMessage,
    },
    /// Publish a message on behalf of someone who is not an MQTT client (the HTTP publish API),
    /// checked and routed like a client's PUBLISH; answered with [`Event::Published`] once what it
    /// changed (retained message, persistent sessions' queues) is durable.
    Publish {
        /// The shell's number for the request, echoed in the answer.
        request: u64,
        /// Who publishes, as the authenticator proved it; the ACL is checked for this user with an
        /// empty client identifier.
        principal: Principal,
        /// The message.
        publish: ExternalPublish,
    },
    /// The instant returned by [`crate::Engine::poll_timeout`] has come.
    Timeout,
    /// The broker is stopping: every connection is closed (v5 clients are told 0x8B first, or
    /// 0x9C/0x9D with the Server Reference while a redirect is set). Sessions stay as they are; wills
    /// are not published, since the clients did nothing wrong.
    Shutdown,
    /// Replaces the access control list ([`crate::Config::acl`]). Subscriptions of connected clients
    /// (and of offline sessions whose client connected since the start) that the new list denies are
    /// removed, and those it grants at a lower QoS are lowered; nobody is disconnected.
    SetAcl {
        /// The new list; `None` allows everything.
        acl: Option<std::sync::Arc<crate::acl::Acl>>,
    },
    /// Replaces the bans. Connected clients that a new ban matches are disconnected (v5: 0x98
    /// Administrative action).
    SetBans {
        /// Every ban in force.
        bans: Vec<crate::limits::Ban>,
    },
    /// Disconnect a client (v5: DISCONNECT with `reason`), publishing its will; e.g. its credentials
    /// were revoked by a reload.
    Kick {
        /// The connection.
        conn: ConnId,
        /// The DISCONNECT reason code (0x87 not authorized, 0x98 administrative action, ...).
        reason: ReasonCode,
        /// Why, for the log and the v5 Reason String.
        why: String,
    },
    /// Removes a session (an administrator's request): its client, if connected, is disconnected
    /// (v5: 0x98 Administrative action) and everything stored for it is deleted. A pending will is
    /// published, as for any session that ends.
    DeleteSession {
        /// The client identifier.
        client_id: ByteString,
    },
    /// Clears the retained message of a topic, in memory and in storage (an administrator's request).
    DeleteRetained {
        /// The topic.
        topic: TopicName,
    },
    /// A new configuration (a reload): its settings that can change live take effect, the others are
    /// kept until a restart; [`Event::Reconfigured`] reports which are which.
    Reconfigure {
        /// The new configuration.
        config: Box<crate::Config>,
    },
    /// From now on send new clients elsewhere (`Some`), or serve them again (`None`); replaces
    /// [`crate::Config::redirect`]. Connected clients stay (a drain follows with [`Input::Shutdown`]).
    SetRedirect {
        /// The redirection, if any.
        redirect: Option<crate::config::Redirect>,
    },
    /// Adds node `node`, reached at `address`, to the cluster: a raft configuration change,
    /// proposed until it commits, then applied on every node ([`Event::ClusterMembers`]). The new
    /// node starts with `cluster.join` and gets the state as a snapshot.
    ClusterAddMember {
        /// Its number.
        node: u16,
        /// Where it is reached.
        address: crate::cluster::MemberAddress,
    },
    /// Removes node `node` from the cluster (drain it first: its clients' sessions fail over only
    /// when they reconnect elsewhere).
    ClusterRemoveMember {
        /// Its number.
        node: u16,
    },
}

/// A message published from outside MQTT ([`Input::Publish`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalPublish {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// The QoS subscribers get it at (at most their subscription's).
    pub qos: QoS,
    /// Whether it replaces the topic's retained message.
    pub retain: bool,
    /// Its v5 properties; Topic Alias and Subscription Identifier are refused.
    pub properties: PublishProperties,
}

/// The answer to an [`Input::Publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Routed, and what it changed is durable.
    Accepted,
    /// Refused, with the reason code a client's PUBACK would carry and the rule broken.
    Refused {
        /// The reason code.
        reason: ReasonCode,
        /// The rule, for the caller and the log.
        why: String,
    },
    /// Routed, but the storage batch it was in failed: it may not survive a restart.
    StorageFailed,
}

/// What a session's stored message is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundState {
    /// Queued, not yet sent.
    Queued,
    /// Sent as PUBLISH with this packet id; waiting for PUBACK or PUBREC.
    Sent(u16),
    /// PUBREC received, PUBREL sent with this packet id; waiting for PUBCOMP.
    Released(u16),
}

/// One write in a storage batch. Keys are the client identifier plus a per-session sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Create or update a persistent session.
    PutSession {
        /// The client identifier.
        client_id: ByteString,
        /// Its protocol version.
        protocol: ProtocolVersion,
        /// Seconds it outlives its connection (`u32::MAX`: forever).
        expiry_interval: u32,
        /// When its connection ended; `None` while it is connected (after a crash, the restart counts
        /// as the moment the connection ended).
        offline_since: Option<Instant>,
        /// The will still to be published for it (possibly after its Will Delay Interval).
        will: Option<Will>,
    },
    /// Delete a session with everything stored under it.
    DeleteSession {
        /// The client identifier.
        client_id: ByteString,
    },
    /// Add or replace a subscription of a persistent session.
    PutSubscription {
        /// The client identifier.
        client_id: ByteString,
        /// The topic filter.
        filter: ByteString,
        /// Its options.
        options: SubscriptionOptions,
        /// Its v5 subscription identifier.
        id: Option<SubscriptionId>,
    },
    /// Remove a subscription.
    DeleteSubscription {
        /// The client identifier.
        client_id: ByteString,
        /// The topic filter.
        filter: ByteString,
    },
    /// Store a message for a persistent session, or record its new state.
    PutMessage {
        /// The client identifier.
        client_id: ByteString,
        /// Its position in the session's queue.
        seq: u64,
        /// The QoS it is delivered at.
        qos: QoS,
        /// Where it is in the QoS flow.
        state: OutboundState,
        /// The RETAIN flag it is delivered with.
        retain: bool,
        /// The identifiers of the subscriptions it matched (v5).
        sub_ids: Vec<SubscriptionId>,
        /// The message.
        message: Arc<Message>,
        /// Cluster nodes only: the identity it was routed with, so a node that gets this session
        /// late can tell whether the session it holds took the message (see [`Stamp`]).
        stamp: Option<Stamp>,
    },
    /// Forget a delivered (or expired) message.
    DeleteMessage {
        /// The client identifier.
        client_id: ByteString,
        /// Its position in the session's queue.
        seq: u64,
    },
    /// Remember that a QoS 2 PUBLISH with this packet id was received and acknowledged with PUBREC.
    PutIncoming {
        /// The client identifier.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: u16,
    },
    /// The PUBREL for that packet id arrived.
    DeleteIncoming {
        /// The client identifier.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: u16,
    },
    /// A cluster node's session took a message from `stamp.node` (see [`Stamp`]): its
    /// high-water mark for that origin, kept so a restart does not forget what it took.
    PutSeen {
        /// The client identifier.
        client_id: ByteString,
        /// The origin's incarnation and counter (the key is the client and the origin node).
        stamp: Stamp,
    },
    /// A cluster node's session moved here and judges, for a while, each message by the stamps
    /// it took since instead of by its marks (see `session::MoveWindow`): kept so a restart does
    /// not fall back to the marks, which take a message routed before the move and relayed
    /// late as had (seed 804). Replaces any window stored for the session.
    PutWindow {
        /// The client identifier.
        client_id: ByteString,
        /// The floor per origin incarnation, the stamps above it taken so far, and (in this
        /// node's store; a write through the cluster log leaves it out) when the window closes.
        window: Box<crate::stored::TakenSince>,
    },
    /// The session's window took `stamp` (a stamp above the floor of its origin incarnation).
    PutTaken {
        /// The client identifier.
        client_id: ByteString,
        /// What it took.
        stamp: Stamp,
    },
    /// The session's window closed: its marks judge again.
    DeleteWindow {
        /// The client identifier.
        client_id: ByteString,
    },
    /// Set the retained message of a topic.
    PutRetained {
        /// The message (its topic is the key).
        message: Arc<Message>,
    },
    /// Clear the retained message of a topic.
    DeleteRetained {
        /// The topic.
        topic: TopicName,
    },
    /// A cluster node relays `message` for `client_id`'s session to the node that owns it now
    /// (it arrived here after the session left): kept until that node acknowledges it, and sent
    /// again after a restart, since this node acknowledged the message on its own link when it
    /// relayed it (seeds 7840 and 8670: relays lost with their sender's crash). Not a session
    /// write: this node's own, whoever holds the session.
    PutRelay {
        /// The client identifier.
        client_id: ByteString,
        /// The identity the message was routed with (the key, with the client).
        stamp: Stamp,
        /// The message.
        message: Arc<Message>,
    },
    /// The relay arrived, or is given up on.
    DeleteRelay {
        /// The client identifier.
        client_id: ByteString,
        /// The identity the message was routed with.
        stamp: Stamp,
    },
    /// A cluster node ended `client_id`'s session while a handover of it was on its way: the
    /// session's records stay in its store until the handover is acknowledged (or a session of
    /// the client starts there again), but they are a version handed over, not the session there.
    /// A restart that finds the node the client's owner again waits for the session rather than
    /// taking them for it (seed 24039: a node restarted with such records, owned the client by a
    /// claim of its earlier incarnation, and sent a QoS 2 message again that the session had
    /// completed elsewhere). Cleared by [`StoreOp::DeleteSession`]. Not a session write: this
    /// node's own.
    PutHandedOver {
        /// The client identifier.
        client_id: ByteString,
    },
    /// Store a raft log entry (cluster nodes), replacing any entry at `index`.
    PutRaftEntry {
        /// Its index in the log.
        index: u64,
        /// The entry, as raft encodes it.
        entry: Bytes,
    },
    /// Delete every stored raft log entry from `from` on (a new leader overwrote them).
    TruncateRaftLog {
        /// The first index deleted.
        from: u64,
    },
    /// Store a raft snapshot (cluster nodes), replacing the last one, and delete every stored log
    /// entry up to its index (the snapshot holds what they did).
    PutRaftSnapshot {
        /// The snapshot's last index.
        index: u64,
        /// The snapshot, as raft encodes it.
        snapshot: Bytes,
    },
    /// Store raft's hard state (term, vote, commit).
    PutRaftHardState {
        /// The hard state, as raft encodes it.
        hard_state: Bytes,
    },
}

impl StoreOp {
    /// The write that stores message `m` at `seq` of `client_id`'s session.
    pub fn put_message(
        client_id: ByteString,
        seq: u64,
        m: crate::stored::StoredMessage,
    ) -> StoreOp {
        StoreOp::PutMessage {
            client_id,
            seq,
            qos: m.qos,
            state: m.state,
            retain: m.retain,
            sub_ids: m.sub_ids,
            message: m.message,
            stamp: m.stamp,
        }
    }

    /// A [`StoreOp::PutMessage`] as its client, position and message as stored; `None` for any
    /// other write.
    pub fn stored_message(&self) -> Option<(&ByteString, u64, crate::stored::StoredMessage)> {
        match self {
            StoreOp::PutMessage {
                client_id,
                seq,
                qos,
                state,
                retain,
                sub_ids,
                message,
                stamp,
            } => Some((
                client_id,
                *seq,
                crate::stored::StoredMessage {
                    qos: *qos,
                    state: *state,
                    retain: *retain,
                    sub_ids: sub_ids.clone(),
                    message: message.clone(),
                    stamp: *stamp,
                },
            )),
            _ => None,
        }
    }

    /// The client whose persistent session this write changes (`None` for retained messages,
    /// relays and the raft log).
    pub fn session_client(&self) -> Option<&ByteString> {
        match self {
            StoreOp::PutSession { client_id, .. }
            | StoreOp::DeleteSession { client_id }
            | StoreOp::PutSubscription { client_id, .. }
            | StoreOp::DeleteSubscription { client_id, .. }
            | StoreOp::PutMessage { client_id, .. }
            | StoreOp::DeleteMessage { client_id, .. }
            | StoreOp::PutIncoming { client_id, .. }
            | StoreOp::DeleteIncoming { client_id, .. }
            | StoreOp::PutSeen { client_id, .. }
            | StoreOp::PutWindow { client_id, .. }
            | StoreOp::PutTaken { client_id, .. }
            | StoreOp::DeleteWindow { client_id } => Some(client_id),
            StoreOp::PutRetained { .. }
            | StoreOp::DeleteRetained { .. }
            | StoreOp::PutRelay { .. }
            | StoreOp::DeleteRelay { .. }
            | StoreOp::PutHandedOver { .. }
            | StoreOp::PutRaftEntry { .. }
            | StoreOp::TruncateRaftLog { .. }
            | StoreOp::PutRaftSnapshot { .. }
            | StoreOp::PutRaftHardState { .. } => None,
        }
    }
}

/// Why the engine closes a connection or saw it end.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnected {
        /// Its reason code (0 for 3.x).
        reason: ReasonCode,
    },
    /// The transport ended without DISCONNECT.
    ConnectionLost,
    /// The client broke a protocol rule.
    ProtocolViolation {
        /// The reason code sent (or that would be, for 3.x).
        reason: ReasonCode,
        /// The rule broken, for the log line.
        rule: String,
    },
    /// Nothing received for 1.5 times the keep alive.
    KeepAliveTimeout,
    /// No CONNECT within the connect timeout.
    ConnectTimeout,
    /// Another connection took over the session (0x8E).
    SessionTakenOver,
    /// CONNECT was refused (the CONNACK carries the reason).
    ConnectRefused {
        /// The CONNACK reason.
        reason: ReasonCode,
    },
    /// A re-authentication failed (the DISCONNECT carries the reason).
    ReauthenticationFailed {
        /// The DISCONNECT reason.
        reason: ReasonCode,
    },
    /// A storage batch holding this connection's acknowledgements failed.
    StorageFailed,
    /// The broker is shutting down.
    ServerShutdown,
    /// The broker disconnected the client on purpose ([`Input::Kick`], a ban, a quota).
    Kicked {
        /// The DISCONNECT reason.
        reason: ReasonCode,
        /// Why.
        why: String,
    },
}

/// Why a message was not delivered to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The session queue was full (messages or bytes).
    QueueFull,
    /// A QoS 0 message was pushed out of a full queue by a newer one.
    QoS0Evicted,
    /// The message expired before it could be delivered.
    Expired,
    /// The encoded PUBLISH exceeds the client's Maximum Packet Size.
    TooLargeForClient,
    /// QoS 0 to an offline session, and queueing those is off.
    Offline,
}

/// What [`Event::Refused`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The ACL denied a PUBLISH to this topic.
    PublishDenied {
        /// The topic.
        topic: TopicName,
    },
    /// The ACL denied a subscription to this filter.
    SubscribeDenied {
        /// The filter.
        filter: ByteString,
    },
    /// An ACL reload took this subscription away.
    SubscriptionRevoked {
        /// The filter.
        filter: ByteString,
    },
    /// A PUBLISH over the client's rate limit was dropped.
    PublishDropped {
        /// The limit (`publish_messages_per_sec` / `publish_bytes_per_sec`).
        limit: &'static str,
    },
    /// A PUBLISH over the client's rate limit waits (reading is paused).
    Throttled {
        /// The limit.
        limit: &'static str,
    },
    /// A SUBSCRIBE over the subscription quota.
    TooManySubscriptions {
        /// The quota.
        max: usize,
    },
    /// CONNECT refused: a ban matched.
    Banned {
        /// The ban, as written in the ban file.
        ban: String,
    },
    /// CONNECT refused: too many connects from the client's address.
    ConnectRateExceeded,
    /// CONNECT refused: the ACL does not allow its will's topic.
    WillDenied {
        /// The topic.
        topic: TopicName,
    },
}

/// Something the shell must do or may log, pulled with [`crate::Engine::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The answer to [`Input::Publish`] `request`.
    Published {
        /// The request's number.
        request: u64,
        /// What came of it.
        outcome: PublishOutcome,
    },
    /// Give this message to engine `to` of this node as [`Input::Peer`].
    Peer {
        /// The receiving engine's [`crate::Shard::index`].
        to: u16,
        /// The message.
        message: PeerMessage,
    },
    /// Close the connection after writing everything already taken from `poll_transmit` for it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Write these operations atomically, then report [`Input::Persisted`] (or `PersistFailed`).
    Persist {
        /// The batch number.
        seq: PersistSeq,
        /// The writes, in order.
        ops: Vec<StoreOp>,
    },
    /// Check these credentials and answer with [`Input::AuthDecided`].
    Authenticate {
        /// The connection.
        conn: ConnId,
        /// The client identifier (as sent; may be empty).
        client_id: ByteString,
        /// The user name, if any.
        username: Option<ByteString>,
        /// The password, if any.
        password: Option<Bytes>,
        /// The peer address from [`ConnMeta`].
        peer: String,
        /// The listener from [`ConnMeta`] (anonymous access is allowed per listener).
        listener: String,
        /// The verified client certificate's identity from [`ConnMeta`], if any.
        identity: Option<CertIdentity>,
        /// The enhanced authentication method (CONNECT's Authentication Method), if any.
        method: Option<ByteString>,
        /// The method's data from this step's CONNECT or AUTH, if any.
        data: Option<Bytes>,
        /// Which step this is.
        stage: AuthStage,
    },
    /// A client completed CONNECT.
    ClientConnected {
        /// The connection.
        conn: ConnId,
        /// The client identifier (assigned if the client sent none).
        client_id: ByteString,
        /// The protocol spoken.
        protocol: ProtocolVersion,
        /// Whether an existing session was resumed.
        session_present: bool,
    },
    /// A client's connection ended.
    ClientDisconnected {
        /// The connection.
        conn: ConnId,
        /// The client identifier, if CONNECT got that far.
        client_id: Option<ByteString>,
        /// Why.
        reason: CloseReason,
    },
    /// A message was not delivered to a session.
    MessageDropped {
        /// The subscriber.
        client_id: ByteString,
        /// The message topic.
        topic: TopicName,
        /// Why.
        reason: DropReason,
    },
    /// A PUBLISH or SUBSCRIBE was refused by the ACL or a quota, or a connection was throttled: for
    /// the log (naming client and rule) and metrics.
    Refused {
        /// The client.
        client_id: ByteString,
        /// What was refused.
        what: Refusal,
    },
    /// Stop reading from `conn` until [`Event::ReadResumed`]: the client exceeded a rate limit whose
    /// policy is to throttle. What it already sent waits in the engine; TCP pushes back on the rest.
    ReadPaused {
        /// The connection.
        conn: ConnId,
    },
    /// Read from `conn` again: everything it sent before [`Event::ReadPaused`] has been handled.
    ReadResumed {
        /// The connection.
        conn: ConnId,
    },
    /// What [`Input::Reconfigure`] changed, and what waits for a restart.
    Reconfigured(crate::Reconfigured),
    /// A session expired and was removed.
    SessionExpired {
        /// The client identifier.
        client_id: ByteString,
    },
    /// A message on a topic [`crate::Config::message_events`] watches was accepted (from a client,
    /// a will or [`Input::Publish`]); its publisher is `message.origin`.
    MessagePublished {
        /// The message.
        message: std::sync::Arc<crate::Message>,
    },
    /// A message on a watched topic reached a subscriber: written to it at QoS 0, acknowledged by it
    /// (PUBACK, PUBCOMP) at QoS 1 and 2.
    MessageDelivered {
        /// The subscriber.
        client_id: ByteString,
        /// The QoS it was delivered with.
        qos: crate::codec::QoS,
        /// The message.
        message: std::sync::Arc<crate::Message>,
    },
    /// Send `frame` to cluster node `to` (see [`crate::cluster`]). Frames may be lost, duplicated or
    /// reordered: the engine resends what matters. Deliver them as [`Input::Cluster`].
    Cluster {
        /// The node.
        to: u16,
        /// The frame, whole; the transport delimits it.
        frame: Bytes,
    },
    /// The cluster's members are now these (after a change through the log, or as the log or a
    /// snapshot told this node at start): every other member, with the address the log gave it
    /// (`None`: one of the founding members, whose address is in the configuration). Links to
    /// nodes not listed can go.
    ClusterMembers {
        /// The other members.
        members: Vec<(u16, Option<crate::cluster::MemberAddress>)>,
    },
    /// A frame (or replicated log entry) from another node could not be read, and was ignored.
    ClusterFrameRejected {
        /// The sending node (0 for a log entry).
        from: u16,
        /// What was wrong.
        why: String,
    },
}
