//! One network connection as the engine sees it: decoder state, protocol phase, and the bytes waiting to
//! go out (some of them held until a storage batch is durable).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;

use crate::codec::{Connect, Decoder, ProtocolVersion, TopicName};
use crate::io::ConnMeta;
use crate::session::SessionId;

use super::alias::OutboundAliases;

/// Where a connection is in its life.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Accepted; the first packet must be CONNECT.
    AwaitingConnect,
    /// CONNECT received and put to the authenticator; later bytes wait, undecoded, in `inbuf`.
    Authenticating(Box<Connect>),
    /// Enhanced authentication: we sent AUTH 0x18 and wait for the client's AUTH.
    Challenged(Box<Connect>),
    /// Cluster: admitted here, waiting for this node's claim of the client identifier to commit;
    /// later bytes wait in `inbuf`.
    Claiming(Box<super::cluster::Claiming>),
    /// CONNACK sent; attached to a session.
    Connected(SessionId),
}

/// Where a re-authentication of a connected client stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reauth {
    /// The client's last AUTH is with the authenticator.
    AwaitingAuthenticator,
    /// We sent AUTH 0x18 and wait for the client's answer.
    AwaitingClient,
}

/// Bytes waiting for storage batch `seq` to be durable.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) seq: u64,
    pub(crate) bytes: BytesMut,
    /// QoS 1 PUBACKs among them: unacknowledged publishes count against our Receive Maximum.
    pub(crate) acks: usize,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) meta: ConnMeta,
    pub(crate) decoder: Decoder,
    pub(crate) inbuf: BytesMut,
    pub(crate) phase: Phase,
    /// Cluster: this node's claim of the CONNECT's client identifier committed; whether the
    /// identifier was assigned.
    pub(crate) claimed: Option<bool>,
    pub(crate) version: Option<ProtocolVersion>,
    pub(crate) client_id: Option<ByteString>,
    pub(crate) keep_alive: Option<Duration>,
    /// Bytes ready for `poll_transmit`.
    pub(crate) out: BytesMut,
    /// Bytes that may leave only once the batch they follow is durable, in order.
    pub(crate) held: VecDeque<Held>,
    /// Bytes handed to the shell and not yet reported flushed.
    pub(crate) unflushed: usize,
    /// Whether `out` is listed for the next transmit sweep.
    pub(crate) dirty: bool,
    /// v5 topic aliases the client set.
    pub(crate) aliases: BTreeMap<u16, TopicName>,
    /// v5 topic aliases we set towards the client.
    pub(crate) out_aliases: OutboundAliases,
    /// The client's v5 Request Problem Information (reason strings allowed).
    pub(crate) problem_info: bool,
    /// Whether the CONNACK is still held (always in the first held entry: nothing precedes it), so a
    /// failed storage batch is answered with a refusing CONNACK rather than a DISCONNECT.
    pub(crate) connack_held: bool,
    /// The enhanced authentication method of its CONNECT (every AUTH must name it).
    pub(crate) auth_method: Option<ByteString>,
    /// The user name of its CONNECT, for authentication events.
    pub(crate) username: Option<ByteString>,
    /// A re-authentication in progress.
    pub(crate) reauth: Option<Reauth>,
    /// The client's Maximum Packet Size (v5), which nothing we send may exceed [MQTT-3.1.2-24].
    pub(crate) max_packet_out: Option<u32>,
    /// The claims its authenticator vouched for, until the session takes them at admission.
    pub(crate) claims: Vec<(String, String)>,
    /// Its publish rate limits.
    pub(crate) limits: super::guard::PublishLimits,
    /// A PUBLISH over a throttling rate limit, handled when the limit allows; nothing after it is
    /// decoded meanwhile. Boxed: rare, and a `Publish` would double the size of every connection.
    pub(crate) stalled: Option<Box<crate::codec::Publish>>,
    /// Whether the shell was told to stop reading ([`crate::Event::ReadPaused`]).
    pub(crate) read_paused: bool,
    /// The tenant it counts against while connected.
    pub(crate) tenant: Option<usize>,
}

impl Conn {
    pub(crate) fn new(meta: ConnMeta, max_packet_size: usize) -> Conn {
        Conn {
            meta,
            decoder: Decoder::new(max_packet_size),
            inbuf: BytesMut::new(),
            phase: Phase::AwaitingConnect,
            claimed: None,
            version: None,
            client_id: None,
            keep_alive: None,
            out: BytesMut::new(),
            held: VecDeque::new(),
            unflushed: 0,
            dirty: false,
            aliases: BTreeMap::new(),
            out_aliases: OutboundAliases::default(),
            problem_info: true,
            connack_held: false,
            auth_method: None,
            username: None,
            reauth: None,
            max_packet_out: None,
            claims: Vec::new(),
            limits: Default::default(),
            stalled: None,
            read_paused: false,
            tenant: None,
        }
    }

    pub(crate) fn session(&self) -> Option<SessionId> {
        match self.phase {
            Phase::Connected(sid) => Some(sid),
            _ => None,
        }
    }

    pub(crate) fn is_v5(&self) -> bool {
        self.version.is_some_and(ProtocolVersion::is_v5)
    }

    /// Bytes written for this connection that the shell has not yet flushed.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.unflushed + self.out.len() + self.held.iter().map(|h| h.bytes.len()).sum::<usize>()
    }

    /// QoS 1 PUBACKs not yet sent because they wait for storage.
    pub(crate) fn held_acks(&self) -> usize {
        self.held.iter().map(|h| h.acks).sum()
    }
}
